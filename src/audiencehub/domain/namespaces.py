"""Identity namespaces and the validation/normalization rule each one applies.

The rule is named here and implemented twice on purpose, because it runs in two places:
``normalize()`` below for single values (API lookups), and ``engines/ingest_sql.py`` for bulk
ingestion. ``tests/unit/test_namespace_rules.py`` checks that both agree value for value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class IdType(StrEnum):
    """An identity namespace's type (AEP's ``idType``); it decides how its identities are linked and checked."""

    COOKIE = "COOKIE"
    CROSS_DEVICE = "CROSS_DEVICE"
    DEVICE = "DEVICE"
    EMAIL = "EMAIL"
    MOBILE = "MOBILE"
    NON_PEOPLE = "NON_PEOPLE"
    PHONE = "PHONE"


class Rule(StrEnum):
    """How an identity value is checked and normalized."""

    EMAIL = "email"  # trimmed, lower-cased, local@domain.tld
    SHA256 = "sha256"  # 64 hex characters, lower-cased
    PHONE = "phone"  # E.164: +, then 8 to 15 digits; spaces, dashes, dots and parentheses dropped
    ECID = "ecid"  # exactly 38 digits
    UUID = "uuid"  # device advertising ids (GAID, IDFA): a UUID, lower-cased
    TEXT = "text"  # any non-empty trimmed text


# createTime/updateTime (epoch ms) of the standard namespaces: AEP's own where its docs show them
# (CORE, ECID, AdCloud), otherwise CORE's.
STANDARD_TIME = 1441122419000


@dataclass(frozen=True)
class Namespace:
    code: str
    id: int
    name: str
    id_type: IdType
    rule: Rule
    description: str = ""
    custom: bool = False
    create_time: int = STANDARD_TIME
    """Epoch milliseconds, as AEP answers ``createTime``."""
    update_time: int = STANDARD_TIME

    def public(self) -> dict[str, Any]:
        """The namespace as AEP's Identity Service answers it (``GET /idnamespace/identities``)."""
        return {
            "updateTime": self.update_time,
            "code": self.code,
            "status": "ACTIVE",
            "description": self.description,
            "id": self.id,
            "createTime": self.create_time,
            "idType": self.id_type.value,
            "name": self.name,
            "custom": self.custom,
            "namespaceType": "Custom" if self.custom else "Standard",
        }


def _std(code: str, ns_id: int, name: str, id_type: IdType, rule: Rule, description: str, at: int = 0) -> Namespace:
    return Namespace(code, ns_id, name, id_type, rule, description, False, at or STANDARD_TIME, at or STANDARD_TIME)


# Ids from AEP's docs: CORE 0, ECID 4, Email 6, Phone 7, WAID 8, TNTID 9, AdCloud 411, GAID 20914, IDFA 20915
# (Privacy Service appendix, "Standard identity namespaces"; Identity Service, "List available namespaces").
# The others' ids are audiencehub's (AEP's docs do not list them); they never change once published.
STANDARD_NAMESPACES: tuple[Namespace, ...] = (
    _std("CORE", 0, "CORE", IdType.COOKIE, Rule.TEXT, "Adobe Audience Manager UUID", 1441122419000),
    _std("ECID", 4, "ECID", IdType.COOKIE, Rule.ECID, "Adobe Experience Cloud ID", 1495153678000),
    _std("Email", 6, "Email", IdType.EMAIL, Rule.EMAIL, "Email address"),
    _std("Phone", 7, "Phone", IdType.PHONE, Rule.PHONE, "Phone number"),
    _std("WAID", 8, "Windows AID", IdType.DEVICE, Rule.TEXT, "Windows advertising id"),
    _std("TNTID", 9, "Adobe Target", IdType.CROSS_DEVICE, Rule.TEXT, "Adobe Target ID"),
    _std("AAID", 10, "Adobe Analytics (Legacy ID)", IdType.COOKIE, Rule.TEXT, "Adobe Analytics legacy visitor id"),
    _std("Email_LC_SHA256", 11, "Emails (SHA256, lowercased)", IdType.EMAIL, Rule.SHA256, "Lower-cased email, SHA-256"),
    _std("Phone_SHA256", 12, "Phone (SHA256)", IdType.PHONE, Rule.SHA256, "SHA-256 of a phone number"),
    _std("Phone_E.164", 16, "Phone (E.164)", IdType.PHONE, Rule.PHONE, "Phone number in E.164 format"),
    _std("AdCloud", 411, "AdCloud", IdType.COOKIE, Rule.TEXT, "Adobe AdCloud - ID Syncing Partner", 1522783145000),
    _std("GAID", 20914, "Google Ad ID (GAID)", IdType.DEVICE, Rule.UUID, "Google advertising id"),
    _std("IDFA", 20915, "Apple IDFA (ID for Advertisers)", IdType.DEVICE, Rule.UUID, "Apple advertising id"),
    _std("CRMID", 20916, "CRM ID", IdType.CROSS_DEVICE, Rule.TEXT, "Customer id from a CRM system"),
)

_BY_LOWER_CODE = {ns.code.lower(): ns for ns in STANDARD_NAMESPACES}
_BY_ID = {ns.id: ns for ns in STANDARD_NAMESPACES}


def find_standard(code: str) -> Namespace | None:
    """The standard namespace whose code matches ``code`` case-insensitively (``email`` → ``Email``)."""
    return _BY_LOWER_CODE.get(code.strip().lower())


def find_standard_by_id(namespace_id: int) -> Namespace | None:
    return _BY_ID.get(namespace_id)


# -- custom namespaces -------------------------------------------------------------------------------

CUSTOM_ID_START = 10_000_001
"""The first custom namespace id of a sandbox: AEP's custom ids are 8-digit numbers (10093197), far from
the standard ones."""
CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,127}")
"""A namespace code: an ASCII letter, then letters, digits, ``_``, ``.`` and ``-`` (128 at most). AEP's spec
says "letters and numbers"; its own codes use ``_`` and ``.`` (``Email_LC_SHA256``, ``Phone_E.164``)."""
CODE_RULE = "an ASCII letter, then letters, digits, '_', '.' or '-' (at most 128 characters)"
NAME_MAX, DESCRIPTION_MAX = 256, 4096
# What an answer holds that a request may carry back (GET, change, PUT) and that is never taken from it.
READ_ONLY_KEYS = frozenset({"id", "status", "custom", "createTime", "updateTime", "namespaceType"})
BODY_KEYS = frozenset({"name", "code", "idType", "description"})
ID_TYPES = ", ".join(t.value for t in IdType)

# The rule of a custom namespace comes from its idType: only EMAIL and PHONE say what the values look
# like; a COOKIE, DEVICE, CROSS_DEVICE, MOBILE or NON_PEOPLE id is any non-empty text.
RULE_OF_ID_TYPE: dict[IdType, Rule] = {IdType.EMAIL: Rule.EMAIL, IdType.PHONE: Rule.PHONE}


def rule_for(id_type: IdType) -> Rule:
    return RULE_OF_ID_TYPE.get(id_type, Rule.TEXT)


def custom_namespace(
    code: str,
    namespace_id: int,
    id_type: IdType,
    *,
    name: str | None = None,
    description: str = "",
    create_time: int = 0,
    update_time: int = 0,
) -> Namespace:
    """A namespace of the org's own; its rule follows its idType (:func:`rule_for`)."""
    return Namespace(
        code, namespace_id, name or code, id_type, rule_for(id_type), description, True, create_time, update_time
    )


def parse_id_type(value: object) -> IdType:
    """``idType`` in any case (AEP's docs spell it ``Cross_device`` and ``CROSS_DEVICE``); ValueError names it."""
    if isinstance(value, str):
        for t in IdType:
            if value.strip().upper() == t.value:
                return t
    raise ValueError(f"idType: {value!r} is not an identity type; use one of {ID_TYPES}")


def validate_code(value: object) -> str:
    if not isinstance(value, str) or not CODE.fullmatch(value):
        raise ValueError(f"code: {value!r} is not a namespace code; a code is {CODE_RULE}")
    return value


@dataclass(frozen=True)
class NamespaceBody:
    """A create (POST) or replace (PUT) body; on PUT, code and idType only say what they must stay."""

    name: str
    code: str | None
    id_type: IdType | None
    description: str


def parse_body(data: Any, *, create: bool) -> NamespaceBody:
    """The body of ``POST``/``PUT /idnamespace/identities``; ValueError names the field and the value."""
    if not isinstance(data, dict):
        raise ValueError(f"body: must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - BODY_KEYS - READ_ONLY_KEYS)
    if unknown:
        raise ValueError(f"{unknown[0]}: not a field of an identity namespace (send {', '.join(sorted(BODY_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: a non-empty string is required, got {name!r}")
    if len(name) > NAME_MAX:
        raise ValueError(f"name: at most {NAME_MAX} characters, got {len(name)}")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise ValueError(f"description: must be a string, got {description!r}")
    if description is not None and len(description) > DESCRIPTION_MAX:
        raise ValueError(f"description: at most {DESCRIPTION_MAX} characters, got {len(description)}")
    for key in ("code", "idType"):
        if create and data.get(key) is None:
            raise ValueError(f"{key}: required" + (f" (one of {ID_TYPES})" if key == "idType" else ""))
    code = validate_code(data["code"]) if data.get("code") is not None else None
    id_type = parse_id_type(data["idType"]) if data.get("idType") is not None else None
    return NamespaceBody(name.strip(), code, id_type, description or "")


# Whitespace, spelled out: Python's str.strip() and \s mean every Unicode space, DuckDB's trim()
# only some and RE2's \s only ASCII, so both implementations name exactly these characters.
WHITESPACE = (
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The same set inside a regex character class, written so that Python's re and RE2 read it alike.
WHITESPACE_CLASS = "".join(f"\\x{ord(c):02x}" if ord(c) < 0x100 else c for c in WHITESPACE)

EMAIL_PATTERN = rf"[^@{WHITESPACE_CLASS}]+@[^@{WHITESPACE_CLASS}]+\.[^@{WHITESPACE_CLASS}]+"
SHA256_PATTERN = r"[0-9a-f]{64}"
PHONE_PATTERN = r"\+[1-9][0-9]{7,14}"
PHONE_STRIP_PATTERN = rf"[{WHITESPACE_CLASS}().\-]"
ECID_PATTERN = r"[0-9]{38}"
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

RULE_PATTERN: dict[Rule, str | None] = {
    Rule.EMAIL: EMAIL_PATTERN,
    Rule.SHA256: SHA256_PATTERN,
    Rule.PHONE: PHONE_PATTERN,
    Rule.ECID: ECID_PATTERN,
    Rule.UUID: UUID_PATTERN,
    Rule.TEXT: None,
}

RULE_REASON: dict[Rule, str] = {
    Rule.EMAIL: "is not a valid email address",
    Rule.SHA256: "is not a SHA-256 digest (64 hexadecimal characters)",
    Rule.PHONE: "is not an E.164 phone number (+ and 8 to 15 digits)",
    Rule.ECID: "is not an ECID (38 digits)",
    Rule.UUID: "is not a device advertising id (UUID)",
    Rule.TEXT: "is empty",
}

# Rules whose normalized form is lower case (SQL: lower() of the value trimmed of WHITESPACE).
LOWERCASE_RULES = frozenset({Rule.EMAIL, Rule.SHA256, Rule.UUID})


def lowercase(value: str) -> str:
    """Lower case as SQL's ``lower()`` gives it: one character at a time (Unicode simple case mapping).

    ``str.lower()`` differs in two places: a final capital sigma becomes ``ς`` and ``İ`` becomes ``i̇``.
    """
    return "".join("i" if c == "\u0130" else c.lower() for c in value)


def normalize(rule: Rule, value: str) -> str | None:
    """The normalized identity, or None when ``value`` breaks the rule."""
    v = value.strip(WHITESPACE)
    if rule in LOWERCASE_RULES:
        v = lowercase(v)
    elif rule is Rule.PHONE:
        v = re.sub(PHONE_STRIP_PATTERN, "", v)
    if not v:
        return None
    pattern = RULE_PATTERN[rule]
    if pattern is not None and re.fullmatch(pattern, v) is None:
        return None
    return v
