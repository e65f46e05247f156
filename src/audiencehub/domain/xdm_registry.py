"""The Schema Registry's rules that need no store: its names and limits, the ``Accept`` forms, the xed documents
that a request body makes (a tenant field group, a schema), the checks on bodies and patches, and the listing page.

Pure: no I/O. A field group's or schema's own references are read through a ``lookup`` the caller provides
(:data:`xdm.Lookup`); problems raise :class:`xdm.XdmInvalid`, which the services answer as 400s inside
:func:`invalid_as_bad_request`; the listing's parameters and containers raise the API's own errors.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from audiencehub.domain import xdm
from audiencehub.domain.xdm import IdentityField, ResolvedSchema, XdmInvalid
from audiencehub.errors import BadRequest, NotFound

BASE = "/data/foundation/schemaregistry"
SCHEMAS, MIXINS, CLASSES, UNIONS = "schemas", "mixins", "classes", "unions"
GLOBAL, TENANT = "global", "tenant"
IDENTITY = "xdm:descriptorIdentity"
TAGS = "/meta:immutableTags"
DEFAULT_LIMIT, MAX_LIMIT = 300, 500
ORDER_KEYS = ("title", "$id", "meta:altId", "version", "created", "updated")
# Keys of the answers that a client may send back in a PUT: read-only, never taken from the body.
READ_ONLY = frozenset(
    {
        "$id",
        "meta:altId",
        "meta:resourceType",
        "version",
        "imsOrg",
        "meta:extensible",
        "meta:abstract",
        "meta:extends",
        "meta:xdmType",
        "meta:registryMetadata",
        "meta:class",
        "meta:containerId",
        "meta:sandboxId",
        "meta:sandboxType",
        "meta:tenantNamespace",
        "refs",
        "$schema",
        "meta:status",
    }
)
SCHEMA_KEYS = frozenset({"title", "description", "type", "allOf", "meta:immutableTags"})
FIELD_GROUP_KEYS = frozenset({"title", "description", "type", "allOf", "definitions", "meta:intendedToExtend"})
DESCRIPTOR_KEYS = frozenset(
    {
        "@type",
        "xdm:sourceSchema",
        "xdm:sourceVersion",
        "xdm:sourceProperty",
        "xdm:namespace",
        "xdm:property",
        "xdm:isPrimary",
        # read-only, as answered:
        "@id",
        "imsOrg",
        "version",
        "meta:containerId",
        "meta:sandboxId",
        "meta:sandboxType",
        "meta:registryMetadata",
    }
)


class Form(StrEnum):
    """The ``Accept`` forms of one resource (``application/vnd.adobe.{form}+json; version=1``)."""

    XED = "xed"
    FULL = "xed-full"
    NOTEXT = "xed-notext"
    FULL_NOTEXT = "xed-full-notext"
    FULL_DESC = "xed-full-desc"

    @property
    def full(self) -> bool:
        return self.value.startswith("xed-full")


class DescriptorStyle(StrEnum):
    """The ``Accept`` forms of a descriptor listing: ids, API paths, or objects."""

    ID = "id"
    LINK = "link"
    FULL = "full"


@contextmanager
def invalid_as_bad_request() -> Iterator[None]:
    """Rule violations from the domain become 400s."""
    try:
        yield
    except XdmInvalid as exc:
        raise BadRequest(str(exc)) from exc


def etag(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def bump_version(version: str) -> str:
    major, _, minor = version.partition(".")
    return f"{major}.{int(minor or 0) + 1}"


def containers(org_id: str, sandbox: str) -> dict[str, str]:
    """The container fields of a sandbox's resources and descriptors."""
    return {
        "meta:containerId": TENANT,
        "meta:sandboxId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"audiencehub:{org_id}:{sandbox}")),
        "meta:sandboxType": "production" if sandbox == "prod" else "development",
    }


def registry_metadata(row: Mapping[str, Any], tag: str) -> dict[str, Any]:
    """``meta:registryMetadata`` of a stored resource or descriptor (``tag``: its eTag)."""
    return {
        "repo:createdDate": row["created_at"],
        "repo:lastModifiedDate": row["updated_at"],
        "xdm:createdClientId": row["created_client"],
        "xdm:lastModifiedClientId": row["updated_client"],
        "xdm:createdUserId": row["created_by"],
        "xdm:lastModifiedUserId": row["updated_by"],
        "eTag": tag,
    }


def field_group_doc(body: Any, tenant: str, rid: str, lookup: xdm.Lookup) -> dict[str, Any]:
    """The xed document of a tenant field group ``rid`` that ``body`` asks for, checked."""
    body = request_body(body, FIELD_GROUP_KEYS, "field group")
    xdm.check_object_type(body)
    title = xdm.text_field(body, "title", required=True)
    description = xdm.text_field(body, "description", required=False)
    extends = body.get("meta:intendedToExtend")
    if not isinstance(extends, list) or not extends:
        raise XdmInvalid("meta:intendedToExtend: a list of the $ids of the classes it extends is required")
    classes = []
    for n, cls in enumerate(extends):
        found = xdm.find_global(cls) if isinstance(cls, str) and xdm.global_kind(cls) == CLASSES else None
        if found is None:
            raise XdmInvalid(f"meta:intendedToExtend[{n}]: {cls!r} is not a class of this registry")
        classes.append(found["$id"])
    definitions = xdm.check_field_group_definitions(body.get("definitions"), tenant)
    own = [f"#/definitions/{name}" for name in definitions]
    refs = xdm.refs_of(body["allOf"]) if "allOf" in body else own
    for n, ref in enumerate(refs):
        if ref not in own and ref != xdm.CONTEXT_REF:
            raise XdmInvalid(
                f"allOf[{n}].$ref: {ref!r} is not one of this field group's definitions ({', '.join(own)})"
            )
    doc = {
        "$id": rid,
        "meta:altId": xdm.alt_id_of(rid),
        "meta:resourceType": MIXINS,
        "version": "1.0",
        "title": title,
        "type": "object",
        "description": description or "",
        "definitions": definitions,
        "allOf": [xdm.ref_entry(r) for r in refs],
        "meta:intendedToExtend": list(dict.fromkeys(classes)),
        "meta:extensible": True,
        "meta:abstract": True,
        "meta:xdmType": "object",
        "meta:tenantNamespace": f"_{tenant}",
    }
    xdm.resolve_document(doc, lookup)
    return doc


def schema_doc(body: Any, tenant: str, rid: str, lookup: xdm.Lookup) -> dict[str, Any]:
    """The xed document of a schema ``rid`` that ``body`` asks for: one class and field groups that extend it."""
    body = request_body(body, SCHEMA_KEYS, "schema")
    xdm.check_object_type(body)
    title = xdm.text_field(body, "title", required=True)
    description = xdm.text_field(body, "description", required=False)
    tags = body.get("meta:immutableTags", [])
    if not isinstance(tags, list) or any(tag != xdm.UNION_TAG for tag in tags):
        raise XdmInvalid(f"meta:immutableTags: only ['union'] (enabled for Profile) is supported, got {tags!r}")
    classes: list[dict[str, Any]] = []
    groups: list[Mapping[str, Any]] = []
    for n, ref in enumerate(xdm.refs_of(body.get("allOf"))):
        found = lookup(ref)
        if found is not None and found.get("meta:resourceType") == CLASSES:
            classes.append(dict(found))
        elif (
            found is not None
            and found.get("meta:resourceType") == MIXINS
            and (xdm.find_global(ref) is None or xdm.global_kind(ref) == MIXINS)
        ):
            groups.append(found)
        else:
            raise XdmInvalid(f"allOf[{n}].$ref: {ref!r} is not a class or field group in this sandbox")
    if len(classes) != 1:
        got = ", ".join(c["$id"] for c in classes) or "none"
        raise XdmInvalid(f"allOf: a schema references exactly one class, got {got}")
    cls = classes[0]
    for group in groups:
        if cls["$id"] not in group.get("meta:intendedToExtend", []):
            raise XdmInvalid(
                f"allOf: field group {group['$id']} ({group['title']!r}) extends "
                f"{', '.join(group.get('meta:intendedToExtend', []))}, not the schema's class {cls['$id']}"
            )
    refs = [cls["$id"], *dict.fromkeys(g["$id"] for g in groups)]
    extends = [cls["$id"], *cls.get("meta:extends", [])]
    for group in groups:
        extends += [group["$id"], *group.get("meta:extends", [])]
    doc: dict[str, Any] = {
        "$id": rid,
        "meta:altId": xdm.alt_id_of(rid),
        "meta:resourceType": SCHEMAS,
        "version": "1.0",
        "title": title,
        "type": "object",
        "description": description or "",
        "allOf": [xdm.ref_entry(r) for r in refs],
        "refs": refs,
        "meta:extensible": False,
        "meta:abstract": False,
        "meta:extends": list(dict.fromkeys(extends)),
        "meta:xdmType": "object",
        "meta:class": cls["$id"],
        "meta:tenantNamespace": f"_{tenant}",
    }
    if tags:
        doc["meta:immutableTags"] = [xdm.UNION_TAG]
    xdm.resolve_document(doc, lookup)
    return doc


def noun(kind: str) -> str:
    return {SCHEMAS: "schema", MIXINS: "field group", CLASSES: "class", UNIONS: "union"}.get(kind, kind)


def check_container(container: str) -> None:
    if container not in (GLOBAL, TENANT):
        raise NotFound(f"container {container!r}: use 'global' (Adobe's resources) or 'tenant' (your own)")


def standard_resources(kind: str) -> tuple[dict[str, Any], ...]:
    return {CLASSES: xdm.CLASSES, MIXINS: xdm.FIELD_GROUPS}.get(kind, ())


def request_body(body: Any, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise XdmInvalid(f"body: a JSON object (the {what}) is required, got {type(body).__name__}")
    unknown = sorted(k for k in body if k not in keys and k not in READ_ONLY)
    if unknown:
        raise XdmInvalid(f"{unknown[0]}: not a field of a {what} that can be sent")
    return body


def patched(old: dict[str, Any], ops: Any) -> dict[str, Any]:
    new = xdm.apply_patch(old, ops)
    for key in READ_ONLY:
        if new.get(key) != old.get(key):
            raise XdmInvalid(f"/{key}: read-only; it cannot be changed")
    return new


def removed_field(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> str | None:
    """The first field of ``before`` that ``after`` lacks or types differently, as a dotted path."""
    for name, field in before.items():
        path = f"{prefix}{name}"
        other = after.get(name)
        if other is None or xdm.shape(field) != xdm.shape(other):
            return path
        for key in ("properties",):
            if isinstance(field.get(key), Mapping):
                found = removed_field(field[key], other.get(key, {}), path + ".")
                if found:
                    return found
        for key in ("items", "additionalProperties"):
            if isinstance(field.get(key), Mapping):
                found = removed_field({"*": field[key]}, {"*": other.get(key, {})}, path + ".")
                if found:
                    return found
    return None


def namespace_code(body: Mapping[str, Any]) -> str:
    return str(body.get("xdm:code") or body.get("xdm:namespace"))


def property_filters(prop: str | None) -> list[tuple[str, str, str]]:
    """``property=key==value,key!=value`` as (key, op, value) triples."""
    out = []
    for part in (prop or "").split(","):
        if not part.strip():
            continue
        for op in ("==", "!="):
            if op in part:
                key, _, value = part.partition(op)
                out.append((key.strip(), op, value.strip()))
                break
        else:
            raise BadRequest(f"property: {part!r} is not key==value or key!=value")
    return out


def matches(doc: Mapping[str, Any], filters: list[tuple[str, str, str]]) -> bool:
    for key, op, value in filters:
        have = doc.get(key)
        hit = value in map(str, have) if isinstance(have, list) else str(have) == value
        if hit != (op == "=="):
            return False
    return True


def listing_page(
    kind: str,
    container: str,
    docs: list[dict[str, Any]],
    stamps: list[tuple[int, int]],
    *,
    full: bool,
    orderby: str | None,
    limit: int | None,
    start: str | None,
    prop: str | None,
) -> dict[str, Any]:
    """AEP's listing page: ``results``, ``_page`` (orderby, next, count) and ``_links``."""
    order = (orderby or "created").strip()
    keys = [k.strip() for k in order.split(",") if k.strip()]
    for key in keys:
        if key.lstrip("-+") not in ORDER_KEYS:
            raise BadRequest(f"orderby: {key!r} is not one of {', '.join(ORDER_KEYS)} (prefix - for descending)")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit: must be from 1 to {MAX_LIMIT}, got {limit}")
    size = limit or DEFAULT_LIMIT
    filters = property_filters(prop)
    items = [(d, s) for d, s in zip(docs, stamps, strict=True) if matches(d, filters)]

    def value(item: tuple[dict[str, Any], tuple[int, int]], key: str) -> Any:
        doc, (created, updated) = item
        return (
            {"created": created, "updated": updated}.get(key)
            if key in ("created", "updated")
            else str(doc.get(key, ""))
        )

    for key in reversed(keys):
        items.sort(key=functools.partial(value, key=key.lstrip("-+")), reverse=key.startswith("-"))
    primary = keys[0].lstrip("-+")
    descending = keys[0].startswith("-")
    if start is not None:
        items = [i for i in items if (str(value(i, primary)) < start if descending else str(value(i, primary)) > start)]
    shown, rest = items[:size], items[size:]
    nxt = str(value(shown[-1], primary)) if rest and shown else None

    def summary(doc: dict[str, Any]) -> dict[str, Any]:
        return {"$id": doc["$id"], "meta:altId": doc["meta:altId"], "version": doc["version"], "title": doc["title"]}

    query = {
        "orderby": order,
        "start": nxt,
        **({"limit": limit} if limit else {}),
        **({"property": prop} if prop else {}),
    }
    path = "fieldgroups" if kind == MIXINS else kind
    links: dict[str, Any] = {"next": f"{BASE}/{container}/{path}?{urlencode(query)}" if nxt is not None else None}
    if kind == SCHEMAS:
        links["global_schemas"] = {"href": f"{BASE}/global/schemas"}
    return {
        "results": [d if full else summary(d) for d, _ in shown],
        "_page": {"orderby": order, "next": nxt, "count": len(shown)},
        "_links": links,
    }


def legacy_schema(row: Mapping[str, Any], tenant: str) -> ResolvedSchema:
    """An external audience's dataset schema (services/audience_creation.py) as a resolved schema."""
    definition = row["definition"]
    identities = tuple(
        IdentityField((i["field"],), i["namespace"], bool(i["primary"])) for i in definition.get("meta:identities", [])
    )
    return ResolvedSchema(
        id=row["id"],
        alt_id=xdm.alt_id_of(row["id"]),
        title=row["title"],
        class_id=row["class_id"],
        properties=copy.deepcopy(definition.get("properties", {})),
        required=(),
        identities=identities,
        profile_enabled=False,
        version="1.0",
        tenant_id=tenant,
    )
