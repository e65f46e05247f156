"""XDM for the Schema Registry: resolution and the rules (the standard resources: ``xdm_standard``).

Pure: no I/O. A resource is an AEP-shaped JSON document (``$id``, ``meta:altId``, ``definitions``,
``allOf`` of ``$ref``s). :func:`resolve_document` follows a document's ``allOf`` (through a ``lookup``
that the caller provides) and merges every ``properties`` into one tree: the ``xed-full`` form.
Problems raise :class:`XdmInvalid`, whose message names the field path and the value.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# The standard resources and their ids live in xdm_standard; they stay importable from here.
from audiencehub.domain.xdm_standard import (  # noqa: F401
    AUDITABLE,
    CLASSES,
    CONTEXT_REF,
    EVENT_CLASS,
    FIELD_GROUPS,
    FRAGMENTS,
    GLOBAL_LIB_VERSION,
    IDENTITY_MAP,
    INTEGER_TYPES,
    JSON_SCHEMA,
    NS,
    PROFILE_CLASS,
    RECORD,
    SEGMENT_DEFINITION_CLASS,
    TIME_SERIES,
    UNION_EXTRAS,
    alt_id_of,
    find_global,
    global_kind,
    ref_entry,
)

UNION_SUFFIX = "__union"
UNION_TAG = "union"
STRING_FORMATS = frozenset({"date", "date-time", "email", "uri"})
FIELD_NAME = re.compile(r"(?!__)[A-Za-z_][A-Za-z0-9_]{0,127}")
TENANT_ID = re.compile(r"[a-z][a-z0-9]{0,63}")

Lookup = Callable[[str], Mapping[str, Any] | None]
"""The document of a resource by ``$id`` (or altId), or None when there is none."""


class XdmInvalid(ValueError):
    """A resource breaks a rule; the message names the field path and the value."""


@dataclass(frozen=True)
class IdentityField:
    path: tuple[str, ...]
    """("_demoemea", "personID") or ("_id",)."""
    namespace: str
    """The namespace code as the descriptor names it, e.g. "Email"."""
    primary: bool


@dataclass(frozen=True)
class ResolvedSchema:
    """A schema (or a union) with all of its fields: what ingestion, segmentation and exports read."""

    id: str
    """``$id``."""
    alt_id: str
    """``meta:altId``, e.g. ``_demoemea.schemas.0123...`` or ``_xdm.context.profile__union``."""
    title: str
    class_id: str
    """e.g. ``https://ns.adobe.com/xdm/context/profile``."""
    properties: dict[str, Any]
    """The xed-full ``properties``: objects ``{"type":"object","properties":{...}}``, arrays ``{"type":"array",
    "items":{...}}``, maps ``{"type":"object","additionalProperties":{...}}``; strings may carry ``format``
    (date, date-time, email, uri), ``enum``, ``maxLength``, ``pattern``; integers carry ``meta:xdmType``
    (long, int, short, byte)."""
    required: tuple[tuple[str, ...], ...]
    """Paths that must be present (("timestamp",) for events)."""
    identities: tuple[IdentityField, ...]
    profile_enabled: bool
    version: str
    tenant_id: str
    """Without the leading underscore."""

    def field(self, path: tuple[str, ...]) -> dict[str, Any] | None:
        """The definition of the field at ``path`` (through objects only), or None."""
        return field_at(self.properties, path)

    @property
    def primary_identity(self) -> IdentityField | None:
        return next((i for i in self.identities if i.primary), None)


# -- ids -------------------------------------------------------------------------------------------


def tenant_id_for(org_id: str) -> str:
    """The tenant id derived from an org id: lower case, letters and digits only, ``@AdobeOrg`` dropped.

    A ``t`` goes in front when the rest would start with a digit (or be empty): field names start
    with ``_{TENANT_ID}`` and XDM names do not start with a digit after the underscore.
    """
    base = re.sub(r"[^a-z0-9]", "", org_id.lower().removesuffix("@adobeorg"))
    if not base or base[0].isdigit():
        base = "t" + base
    return base[:64]


def check_tenant_id(value: str) -> str:
    if not TENANT_ID.fullmatch(value):
        raise XdmInvalid(
            f"tenant id {value!r} must start with a lower-case letter and hold only lower-case letters and digits "
            "(at most 64)"
        )
    return value


def union_id(class_id: str) -> str:
    return class_id + UNION_SUFFIX


def union_class(ref: str) -> str | None:
    """The class whose union ``ref`` names (as ``$id`` or altId), or None when ``ref`` is no union id."""
    if not ref.endswith(UNION_SUFFIX):
        return None
    base = ref.removesuffix(UNION_SUFFIX)
    if base.startswith("_"):
        base = NS + "/" + base[1:].replace(".", "/")
    return base


# -- resolution ------------------------------------------------------------------------------------


def resolve_document(doc: Mapping[str, Any], lookup: Lookup) -> tuple[dict[str, Any], tuple[tuple[str, ...], ...]]:
    """The merged ``properties`` of ``doc`` (its ``allOf`` followed through ``lookup``) and its required paths."""
    props: dict[str, Any] = {}
    required: list[tuple[str, ...]] = []
    _collect(doc, lookup, props, required, set())
    required.extend(_nested_required(props, ()))
    return props, tuple(dict.fromkeys(required))


def _collect(
    doc: Mapping[str, Any], lookup: Lookup, props: dict[str, Any], required: list[tuple[str, ...]], seen: set[str]
) -> None:
    required.extend((name,) for name in doc.get("required", []) if isinstance(name, str))
    for entry in doc.get("allOf", []):
        ref = entry.get("$ref") if isinstance(entry, Mapping) else None
        if not isinstance(ref, str) or ref == CONTEXT_REF:
            continue
        if ref.startswith("#/definitions/"):
            fragment = doc.get("definitions", {}).get(ref.removeprefix("#/definitions/"))
            if not isinstance(fragment, Mapping):
                raise XdmInvalid(f"allOf: {ref!r} names no definition of {doc.get('$id', 'this resource')}")
            merge_properties(props, fragment.get("properties", {}))
            required.extend((name,) for name in fragment.get("required", []) if isinstance(name, str))
            continue
        if ref in seen:
            continue
        seen.add(ref)
        other = lookup(ref)
        if other is None:
            raise XdmInvalid(f"allOf: $ref {ref!r} is not a class or field group of this registry")
        _collect(other, lookup, props, required, seen)
    merge_properties(props, doc.get("properties", {}))


def _nested_required(props: Mapping[str, Any], prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    for name, field in props.items():
        if isinstance(field, Mapping) and isinstance(field.get("properties"), Mapping):
            for sub in field.get("required", []):
                if isinstance(sub, str):
                    yield (*prefix, name, sub)
            yield from _nested_required(field["properties"], (*prefix, name))


def merge_properties(into: dict[str, Any], new: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> None:
    """Adds the fields of ``new`` to ``into``; objects merge field by field, anything else must agree."""
    for name, field in new.items():
        here = (*prefix, name)
        if name not in into:
            into[name] = copy.deepcopy(field)
            continue
        _merge_field(into[name], field, here)


def _merge_field(old: dict[str, Any], new: Mapping[str, Any], here: tuple[str, ...]) -> None:
    if shape(old) != shape(new):
        raise XdmInvalid(
            f"{'.'.join(here)}: defined twice with different types ({shape(old)} and {shape(new)}); "
            "a schema cannot hold both"
        )
    if isinstance(old.get("properties"), dict):
        merge_properties(old["properties"], new.get("properties", {}), here)
        extra = [n for n in new.get("required", []) if n not in old.get("required", [])]
        if extra:
            old["required"] = [*old.get("required", []), *extra]
    elif isinstance(old.get("additionalProperties"), dict):
        _merge_field(old["additionalProperties"], new["additionalProperties"], (*here, "*"))
    elif isinstance(old.get("items"), dict):
        _merge_field(old["items"], new["items"], (*here, "[]"))


def shape(field: Mapping[str, Any]) -> str:
    """What two definitions of one field must agree on: the type, and for leaves the XDM type and format."""
    kind = str(field.get("type"))
    if kind == "object":
        return "map" if "additionalProperties" in field and "properties" not in field else "object"
    if kind == "array":
        return "array"
    xdm = field.get("meta:xdmType", kind)
    return f"{kind}/{xdm}" + (f"/{field['format']}" if "format" in field else "")


def field_at(props: Mapping[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """The field at ``path`` walking through objects' ``properties`` (not into arrays or maps), or None."""
    node: Any = {"properties": props}
    for name in path:
        children = node.get("properties") if isinstance(node, Mapping) else None
        if not isinstance(children, Mapping) or name not in children:
            return None
        node = children[name]
    return dict(node) if isinstance(node, Mapping) else None


def pointer_path(pointer: str, where: str) -> tuple[str, ...]:
    """``/_demoemea/personID`` → ``("_demoemea", "personID")`` (JSON Pointer, with ``~1`` and ``~0``)."""
    if not isinstance(pointer, str) or not pointer.startswith("/") or pointer == "/":
        raise XdmInvalid(f"{where}: a path to a field like '/_tenant/field' is required, got {pointer!r}")
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/"))


def strip_text(value: Any) -> Any:
    """``value`` without ``title`` and ``description`` anywhere (the ``-notext`` forms)."""
    if isinstance(value, dict):
        return {k: strip_text(v) for k, v in value.items() if k not in ("title", "description")}
    if isinstance(value, list):
        return [strip_text(v) for v in value]
    return value


def strip_titles(value: Any) -> Any:
    """``value`` without ``title`` anywhere (the ``xed-full-desc`` form)."""
    if isinstance(value, dict):
        return {k: strip_titles(v) for k, v in value.items() if k != "title"}
    if isinstance(value, list):
        return [strip_titles(v) for v in value]
    return value


# -- custom fields ---------------------------------------------------------------------------------


def check_field_group_definitions(definitions: Any, tenant: str) -> dict[str, Any]:
    """A tenant field group's ``definitions``, checked and with ``meta:xdmType`` filled in.

    Every field lives under ``_{tenant}``: the strict form of AEP's rule (no root-level custom fields).
    """
    if not isinstance(definitions, dict) or not definitions:
        raise XdmInvalid("definitions: an object with at least one definition is required")
    namespace = f"_{tenant}"
    out: dict[str, Any] = {}
    for name, fragment in definitions.items():
        where = f"definitions.{name}"
        if not isinstance(fragment, dict) or not isinstance(fragment.get("properties"), dict):
            raise XdmInvalid(f"{where}.properties: an object of fields is required")
        unknown = sorted(set(fragment) - {"properties", "type", "required", "title", "description"})
        if unknown:
            raise XdmInvalid(f"{where}.{unknown[0]}: not supported in a field group definition")
        for key in fragment["properties"]:
            if key != namespace:
                raise XdmInvalid(
                    f"{where}.properties.{key}: custom fields must be nested under {namespace} "
                    f"(definitions.{name}.properties.{namespace}.properties.{key})"
                )
        checked = dict(fragment)
        checked["properties"] = check_fields(fragment["properties"], f"{where}.properties")
        tenant_field = checked["properties"].get(namespace)
        if tenant_field is not None and tenant_field.get("meta:xdmType") != "object":
            raise XdmInvalid(f"{where}.properties.{namespace}: must be an object with properties")
        out[name] = checked
    return out


def check_fields(fields: Any, where: str) -> dict[str, Any]:
    """Custom field definitions, checked, with ``meta:xdmType`` set as AEP stores it."""
    if not isinstance(fields, dict):
        raise XdmInvalid(f"{where}: an object of fields is required")
    return {name: _check_field(name, field, f"{where}.{name}") for name, field in fields.items()}


def _check_field(name: str, field: Any, where: str) -> dict[str, Any]:
    if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
        raise XdmInvalid(
            f"{where}: field name {name!r} must start with a letter or _ and hold only letters, digits and _ (not __)"
        )
    if not isinstance(field, dict):
        raise XdmInvalid(f"{where}: a field definition (an object with a type) is required")
    if "$ref" in field:
        raise XdmInvalid(f"{where}.$ref: data types are not supported here; define the fields inline")
    kind = field.get("type")
    out = dict(field)
    if kind == "string":
        out["meta:xdmType"] = _string_type(field, where)
    elif kind == "integer":
        out["meta:xdmType"] = _integer_type(field, where)
    elif kind in ("number", "boolean"):
        out["meta:xdmType"] = kind
    elif kind == "array":
        if not isinstance(field.get("items"), dict):
            raise XdmInvalid(f"{where}.items: an array needs the definition of its items")
        out["items"] = _check_field("items", field["items"], f"{where}.items")
        out["meta:xdmType"] = "array"
    elif kind == "object":
        has_props, has_map = "properties" in field, "additionalProperties" in field
        if has_props == has_map:
            raise XdmInvalid(f"{where}: an object needs either properties (fields) or additionalProperties (a map)")
        if has_props:
            out["properties"] = check_fields(field["properties"], f"{where}.properties")
            for sub in field.get("required", []):
                if sub not in out["properties"]:
                    raise XdmInvalid(f"{where}.required: {sub!r} is not a field of this object")
            out["meta:xdmType"] = "object"
        else:
            if not isinstance(field["additionalProperties"], dict):
                raise XdmInvalid(f"{where}.additionalProperties: the definition of the map's values is required")
            out["additionalProperties"] = _check_field(
                "additionalProperties", field["additionalProperties"], f"{where}.additionalProperties"
            )
            out["meta:xdmType"] = "map"
    else:
        raise XdmInvalid(f"{where}.type: {kind!r} is not a type; use string, integer, number, boolean, object or array")
    return out


def _string_type(field: Mapping[str, Any], where: str) -> str:
    fmt = field.get("format")
    if fmt is not None and fmt not in STRING_FORMATS:
        raise XdmInvalid(f"{where}.format: {fmt!r} is not one of {sorted(STRING_FORMATS)}")
    enum = field.get("enum")
    if enum is not None and (not isinstance(enum, list) or not all(isinstance(v, str) for v in enum) or not enum):
        raise XdmInvalid(f"{where}.enum: a list of strings is required, got {enum!r}")
    for key in ("maxLength", "minLength"):
        value = field.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise XdmInvalid(f"{where}.{key}: a whole number of 0 or more is required, got {value!r}")
    pattern = field.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise XdmInvalid(f"{where}.pattern: {pattern!r} is not a regular expression ({exc})") from exc
    return fmt if fmt in ("date", "date-time") else "string"


def _integer_type(field: Mapping[str, Any], where: str) -> str:
    declared = field.get("meta:xdmType")
    if declared is not None:
        if declared not in INTEGER_TYPES:
            raise XdmInvalid(f"{where}.meta:xdmType: {declared!r} is not one of {list(INTEGER_TYPES)}")
        return str(declared)
    low, high = field.get("minimum"), field.get("maximum")
    if low is None and high is None:
        return "int"
    # The narrowest XDM integer type that holds the declared range, as the registry infers it.
    for name, (lo, hi) in INTEGER_TYPES.items():
        if (low is None or low >= lo) and (high is None or high <= hi) and low is not None and high is not None:
            return name
    return "long"


# -- bodies ----------------------------------------------------------------------------------------


def refs_of(all_of: Any, where: str = "allOf") -> list[str]:
    """The ``$ref``s of an ``allOf`` list (each item ``{"$ref": ...}``)."""
    if not isinstance(all_of, list) or not all_of:
        raise XdmInvalid(f"{where}: a list of {{'$ref': ...}} objects is required")
    refs: list[str] = []
    for n, entry in enumerate(all_of):
        ref = entry.get("$ref") if isinstance(entry, dict) else None
        if not isinstance(ref, str) or not ref.strip():
            raise XdmInvalid(f"{where}[{n}].$ref: the $id of a class or field group is required, got {entry!r}")
        if ref not in refs:
            refs.append(ref.strip())
    return refs


def text_field(body: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise XdmInvalid(f"{name}: a non-empty string is required, got {value!r}")
    if len(value) > 1024:
        raise XdmInvalid(f"{name}: at most 1024 characters")
    return value.strip() if required else value


def check_object_type(body: Mapping[str, Any]) -> None:
    kind = body.get("type", "object")
    if kind != "object":
        raise XdmInvalid(f"type: must be 'object', got {kind!r}")


# -- JSON Patch (RFC 6902: add, remove, replace) -----------------------------------------------------


def apply_patch(doc: dict[str, Any], ops: Any) -> dict[str, Any]:
    """``doc`` with the patch ``ops`` applied (a new document; ``doc`` is left as it was)."""
    if not isinstance(ops, list) or not ops:
        raise XdmInvalid("body: a JSON array of patch operations ({op, path, value}) is required")
    out = copy.deepcopy(doc)
    for n, op in enumerate(ops):
        where = f"[{n}]"
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise XdmInvalid(f"{where}: a patch operation must be an object with op and path (and value)")
        kind = op["op"].lower()
        if kind not in ("add", "remove", "replace"):
            raise XdmInvalid(f"{where}.op: {op['op']!r} is not supported; use add, remove or replace")
        if kind != "remove" and "value" not in op:
            raise XdmInvalid(f"{where}.value: required for {kind}")
        path = op["path"]
        if not path.startswith("/"):
            raise XdmInvalid(f"{where}.path: {path!r} must start with /")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]
        parent: Any = out
        for token in tokens[:-1]:
            parent = _step(parent, token, f"{where}.path {path!r}")
        _apply(parent, tokens[-1], kind, copy.deepcopy(op.get("value")), f"{where}.path {path!r}")
    return out


def _step(node: Any, token: str, where: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise XdmInvalid(f"{where}: {token!r} does not exist")


def _apply(parent: Any, token: str, kind: str, value: Any, where: str) -> None:
    if isinstance(parent, dict):
        if kind != "add" and token not in parent:
            raise XdmInvalid(f"{where}: {token!r} does not exist")
        if kind == "remove":
            del parent[token]
        else:
            parent[token] = value
        return
    if isinstance(parent, list):
        if token == "-" and kind == "add":
            parent.append(value)
            return
        if not token.isdigit() or int(token) > len(parent) or (kind != "add" and int(token) == len(parent)):
            raise XdmInvalid(f"{where}: {token!r} is not an index of the list")
        index = int(token)
        if kind == "add":
            parent.insert(index, value)
        elif kind == "remove":
            del parent[index]
        else:
            parent[index] = value
        return
    raise XdmInvalid(f"{where}: cannot {kind} inside a {type(parent).__name__}")
