"""Identity namespaces and the validation/normalization rule each one applies.

The rule is named here and implemented twice on purpose, because it runs in two places:
``normalize()`` below for single values (API lookups), and ``engines/ingest_sql.py`` for bulk
ingestion. ``tests/unit/test_namespace_rules.py`` checks that both agree value for value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class IdType(StrEnum):
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


@dataclass(frozen=True)
class Namespace:
    code: str
    id: int
    name: str
    id_type: IdType
    rule: Rule
    description: str = ""


STANDARD_NAMESPACES: tuple[Namespace, ...] = (
    Namespace("AdCloud", 411, "Adobe AdCloud", IdType.COOKIE, Rule.TEXT),
    Namespace("AAID", 10, "Adobe Analytics (Legacy ID)", IdType.COOKIE, Rule.TEXT),
    Namespace("TNTID", 9, "Adobe Target", IdType.CROSS_DEVICE, Rule.TEXT),
    Namespace("ECID", 4, "Experience Cloud ID", IdType.COOKIE, Rule.ECID),
    Namespace("Email", 6, "Email", IdType.EMAIL, Rule.EMAIL),
    Namespace("Email_LC_SHA256", 11, "Emails (SHA256, lowercased)", IdType.EMAIL, Rule.SHA256),
    Namespace("Phone", 7, "Phone", IdType.PHONE, Rule.PHONE),
    Namespace("Phone_E.164", 16, "Phone (E.164)", IdType.PHONE, Rule.PHONE),
    Namespace("Phone_SHA256", 8, "Phone (SHA256)", IdType.PHONE, Rule.SHA256),
    Namespace("GAID", 20914, "Google Ad ID (GAID)", IdType.DEVICE, Rule.UUID),
    Namespace("IDFA", 20915, "Apple IDFA (ID for Advertisers)", IdType.DEVICE, Rule.UUID),
    Namespace("CRMID", 20916, "CRM ID", IdType.CROSS_DEVICE, Rule.TEXT),
    Namespace("WAID", 1, "Windows AID", IdType.DEVICE, Rule.TEXT),
)

_BY_LOWER_CODE = {ns.code.lower(): ns for ns in STANDARD_NAMESPACES}


def find_standard(code: str) -> Namespace | None:
    """The standard namespace whose code matches ``code`` case-insensitively (``email`` → ``Email``)."""
    return _BY_LOWER_CODE.get(code.strip().lower())


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
