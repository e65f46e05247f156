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
MAX_ORDER = 100


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
