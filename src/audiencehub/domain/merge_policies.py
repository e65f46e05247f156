"""Merge policies: how a profile's fragments are joined (identity graph) and which value wins (attribute merge).

Pure rules only: the shape a policy is sent in, checked field by field; ``ValueError`` names the field and
the value, and the service turns it into a 400. Dataset ids in a precedence order are checked by the
service, which can see the sandbox's datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

NONE, PDG = "none", "pdg"
IDENTITY_GRAPHS = (NONE, PDG)
TIMESTAMP_ORDERED, DATASET_PRECEDENCE = "timestampOrdered", "dataSetPrecedence"
ATTRIBUTE_MERGES = (TIMESTAMP_ORDERED, DATASET_PRECEDENCE)
PROFILE_SCHEMA = "_xdm.context.profile"
SCHEMAS = (PROFILE_SCHEMA,)
DEFAULT_NAME = "Default Timebased"
"""The name of the policy every sandbox starts with (the name AEP gives an org's first default policy)."""
MAX_NAME = 256
MAX_ORDER = 50
"""The most datasets a precedence order may list (AEP's UI offers up to 50)."""


@dataclass(frozen=True)
class MergePolicy:
    id: str
    name: str
    identity_graph: str  # "none" | "pdg"
    attribute_merge: str  # "timestampOrdered" | "dataSetPrecedence"
    dataset_order: tuple[str, ...]  # for dataSetPrecedence: highest precedence first
    default: bool


@dataclass(frozen=True)
class PolicySpec:
    """Everything a client sets on a merge policy (the body of POST and PUT, the result of a PATCH)."""

    name: str
    schema: str
    identity_graph: str
    attribute_merge: str
    dataset_order: tuple[str, ...]
    default: bool
    active_on_edge: bool


DEFAULT_SPEC = PolicySpec(
    name=DEFAULT_NAME,
    schema=PROFILE_SCHEMA,
    identity_graph=PDG,
    attribute_merge=TIMESTAMP_ORDERED,
    dataset_order=(),
    default=True,
    active_on_edge=False,
)

FIELDS = {"name", "schema", "identityGraph", "attributeMerge", "default", "isActiveOnEdge"}
READ_ONLY = {"id", "imsOrgId", "sandbox", "version", "updateEpoch"}
"""Fields of an answer that a PUT may echo back; they are ignored, the server keeps its own."""


def parse_spec(data: Any, *, echo_allowed: bool = False) -> PolicySpec:
    """A create (or, with ``echo_allowed``, a PUT) body as a :class:`PolicySpec`; ``ValueError`` names the field."""
    if not isinstance(data, dict):
        raise ValueError(f"body: must be a JSON object, got {type(data).__name__}")
    allowed = FIELDS | READ_ONLY if echo_allowed else FIELDS
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{unknown[0]}: not a field of a merge policy (fields: {', '.join(sorted(FIELDS))})")
    for required in ("name", "schema", "identityGraph", "attributeMerge"):
        if required not in data:
            raise ValueError(f"{required}: required")
    graph = _typed(data["identityGraph"], "identityGraph", {"type"})
    merge = _typed(data["attributeMerge"], "attributeMerge", {"type", "order"})
    schema = data["schema"]
    if not isinstance(schema, dict) or "name" not in schema:
        raise ValueError(f"schema: must be an object with name ({PROFILE_SCHEMA!r}), got {schema!r}")
    if set(schema) - {"name"}:
        raise ValueError(f"schema.{sorted(set(schema) - {'name'})[0]}: not a field of schema (only name)")
    spec = PolicySpec(
        name=check_name(data["name"]),
        schema=check_schema(schema["name"]),
        identity_graph=check_identity_graph(graph["type"]),
        attribute_merge=check_attribute_merge(merge["type"]),
        dataset_order=(),
        default=check_bool(data.get("default", False), "default"),
        active_on_edge=check_bool(data.get("isActiveOnEdge", False), "isActiveOnEdge"),
    )
    return with_order(spec, merge.get("order"), "attributeMerge.order")


def _typed(value: Any, field: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict) or "type" not in value:
        raise ValueError(f"{field}: must be an object with type, got {value!r}")
    extra = sorted(set(value) - keys)
    if extra:
        raise ValueError(f"{field}.{extra[0]}: not a field of {field} (only {', '.join(sorted(keys))})")
    return value


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"name: a non-empty string is required, got {value!r}")
    if len(value.strip()) > MAX_NAME:
        raise ValueError(f"name: at most {MAX_NAME} characters, got {len(value.strip())}")
    return value.strip()


def check_schema(value: Any) -> str:
    if value not in SCHEMAS:
        raise ValueError(
            f"schema.name: {value!r} is not a schema class merge policies apply to (use {PROFILE_SCHEMA!r})"
        )
    return str(value)


def check_identity_graph(value: Any) -> str:
    if value not in IDENTITY_GRAPHS:
        raise ValueError(f"identityGraph.type: {value!r} is not one of {', '.join(IDENTITY_GRAPHS)}")
    return str(value)


def check_attribute_merge(value: Any) -> str:
    if value not in ATTRIBUTE_MERGES:
        raise ValueError(f"attributeMerge.type: {value!r} is not one of {', '.join(ATTRIBUTE_MERGES)}")
    return str(value)


def check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{field}: must be true or false, got {value!r}")
    return value


def with_order(spec: PolicySpec, order: Any, field: str) -> PolicySpec:
    """``spec`` with its dataset order checked against its attribute merge: required for dataSetPrecedence only."""
    if spec.attribute_merge == TIMESTAMP_ORDERED:
        if order not in (None, []):
            raise ValueError(
                f"{field}: only a dataSetPrecedence policy has an order (attributeMerge.type is timestampOrdered)"
            )
        return replace(spec, dataset_order=())
    if not isinstance(order, list) or not order:
        raise ValueError(f"{field}: a dataSetPrecedence policy needs a non-empty array of dataset ids, got {order!r}")
    if len(order) > MAX_ORDER:
        raise ValueError(f"{field}: at most {MAX_ORDER} datasets, got {len(order)}")
    seen: set[str] = set()
    for i, dataset_id in enumerate(order):
        if not isinstance(dataset_id, str) or not dataset_id.strip():
            raise ValueError(f"{field}[{i}]: a dataset id (string) is required, got {dataset_id!r}")
        if dataset_id in seen:
            raise ValueError(f"{field}[{i}]: dataset {dataset_id!r} is listed twice")
        seen.add(dataset_id)
    return replace(spec, dataset_order=tuple(order))


# -- PATCH ---------------------------------------------------------------------------------------

PATCH_OPS = ("add", "replace")
PATCH_PATHS = {
    "/name": "name",
    "/identityGraph.type": "identityGraph.type",
    "/identityGraph/type": "identityGraph.type",
    "/attributeMerge.type": "attributeMerge.type",
    "/attributeMerge/type": "attributeMerge.type",
    "/attributeMerge.order": "attributeMerge.order",
    "/attributeMerge/order": "attributeMerge.order",
    "/identityGraph": "identityGraph",
    "/attributeMerge": "attributeMerge",
    "/schema.name": "schema.name",
    "/schema/name": "schema.name",
    "/schema": "schema",
    "/default": "default",
    "/isActiveOnEdge": "isActiveOnEdge",
    "/idActiveOnEdge": "isActiveOnEdge",  # NOTE: the spelling in Adobe's OpenAPI spec of the PATCH paths
    "/version": "version",
}
OBJECTS = {
    "identityGraph": ("type", {"type"}),
    "attributeMerge": ("type", {"type", "order"}),
    "schema": ("name", {"name"}),
}
"""PATCH paths that replace a whole object: the key it must have, and the keys it may have."""


def apply_patch(spec: PolicySpec, ops: Any) -> PolicySpec:
    """``ops`` (one operation or an array of them, ``add``/``replace`` only) applied to ``spec``, then checked whole.

    ``/version`` is read-only (the server counts versions): a well-formed value is accepted and ignored, as
    the version a PUT body echoes is.
    """
    if isinstance(ops, dict):
        ops = [ops]  # NOTE: AEP's docs send a single operation object; its OpenAPI spec, an array
    if not isinstance(ops, list) or not ops:
        raise ValueError("body: a patch operation {op, path, value} or a non-empty array of them is required")
    fields: dict[str, Any] = {
        "name": spec.name,
        "schema.name": spec.schema,
        "identityGraph.type": spec.identity_graph,
        "attributeMerge.type": spec.attribute_merge,
        "attributeMerge.order": list(spec.dataset_order) or None,
        "default": spec.default,
        "isActiveOnEdge": spec.active_on_edge,
    }
    order_set = False
    for i, op in enumerate(ops):
        where = f"[{i}]"
        if not isinstance(op, dict):
            raise ValueError(f"{where}: a patch operation must be an object with op, path and value")
        kind = op.get("op")
        if not isinstance(kind, str) or kind.lower() not in PATCH_OPS:
            raise ValueError(f"{where}.op: {kind!r} is not supported (use add or replace)")
        path = op.get("path")
        target = PATCH_PATHS.get(path) if isinstance(path, str) else None
        if target is None:
            paths = ", ".join(p for p in PATCH_PATHS if "/" not in p[1:] and p != "/idActiveOnEdge")
            raise ValueError(f"{where}.path: {path!r} cannot be changed (use one of {paths})")
        if "value" not in op:
            raise ValueError(f"{where}.value: required for {path}")
        value = op["value"]
        if target in OBJECTS:
            key, allowed = OBJECTS[target]
            if not isinstance(value, dict) or key not in value or set(value) - allowed:
                raise ValueError(
                    f"{where}.value: {path} takes an object with {', '.join(sorted(allowed))}, got {value!r}"
                )
            fields[f"{target}.{key}"] = value[key]
            if target == "attributeMerge":
                fields["attributeMerge.order"], order_set = value.get("order"), True
            continue
        if target in ("default", "isActiveOnEdge"):
            value = _patch_bool(value, f"{where}.value ({target})")
        if target == "attributeMerge.order":
            order_set = True
        if target == "version":
            if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
                raise ValueError(
                    f"{where}.value: /version takes the policy's current version (an integer), got {value!r}"
                )
            continue
        fields[target] = value
    new = PolicySpec(
        name=check_name(fields["name"]),
        schema=check_schema(fields["schema.name"]),
        identity_graph=check_identity_graph(fields["identityGraph.type"]),
        attribute_merge=check_attribute_merge(fields["attributeMerge.type"]),
        dataset_order=(),
        default=fields["default"],
        active_on_edge=fields["isActiveOnEdge"],
    )
    order = fields["attributeMerge.order"]
    if new.attribute_merge == TIMESTAMP_ORDERED and not order_set:
        order = None  # switching to timestampOrdered drops the order it no longer uses
    return with_order(new, order, "attributeMerge.order")


def _patch_bool(value: Any, field: str) -> bool:
    # NOTE: AEP's own PATCH example sends ``"value": "true"``, a string.
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return check_bool(value, field)
