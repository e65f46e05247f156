"""Segment evaluation plans: what the PQL compiler asks of the profile store, in plain data.

``pql/compile.py`` turns the expressions of the segments evaluated together into one :class:`Plan`: boolean SQL per
segment over named columns (merged attributes, membership flags, payload values, event counts) and the list of those
columns. The profile store's backend computes each column once for all the segments of the plan (one scan of each
table, however many segments read it) and writes the memberships. Segments that share a plan share their scans.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

SEGMENT_NAMESPACE = "ups"
"""The ``segmentMembership`` namespace of segment definitions' memberships (AEP's)."""

MemberKind = Literal["audience", "segment", "records"]


@dataclass(frozen=True)
class MemberSource:
    """Where one audience's memberships are.

    ``audience``: an external audience's membership table (``ref`` its id; ttl applied on read);
    ``segment``: a segment definition's results (``ref`` its id); ``records``: memberships carried by
    profile records' own ``segmentMembership`` (``namespace`` and ``ref`` as the records name them).
    """

    kind: MemberKind
    ref: str
    namespace: str


@dataclass(frozen=True)
class Attribute:
    """A merged profile attribute: the newest non-null value of ``leaf`` by the merge policy."""

    leaf: str
    sql_type: str
    precedence: tuple[str, ...] | None
    """Dataset ids, highest first (a dataSetPrecedence merge policy); None orders by time."""


@dataclass(frozen=True)
class Flag:
    """True when the profile's membership of ``source`` has one of ``statuses``."""

    source: MemberSource
    statuses: tuple[str, ...]


@dataclass(frozen=True)
class Payload:
    """The payload attribute ``name`` of the profile's active membership of ``source`` (NULL otherwise)."""

    source: MemberSource
    name: str
    sql_type: str


@dataclass(frozen=True)
class EventCount:
    """How many of the profile's events satisfy ``condition`` (SQL over the event columns by their dotted names);
    None counts every event."""

    condition: str | None
    fields: tuple[tuple[str, str], ...]
    """(dotted name, SQL type) of the event fields the condition reads."""


Column = Attribute | Flag | Payload | EventCount


@dataclass
class Plan:
    """One evaluation query: the segments and every column their conditions read (by alias)."""

    now: dt.datetime
    columns: dict[str, Column] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    segments: list[tuple[str, str]] = field(default_factory=list)
    """(segment id, boolean SQL over the column aliases)."""

    def column(self, prefix: str, col: Column) -> str:
        """The alias of ``col``, added on first use: a column the plan already has is computed once."""
        for alias, have in self.columns.items():
            if have == col:
                return alias
        alias = f"__ah_{prefix}{len(self.columns)}"
        self.columns[alias] = col
        return alias

    def param(self, value: Any) -> str:
        """``$name`` bound to ``value``: user values never become SQL text. A value bound before (same type and
        value) keeps its name, so that identical conditions of two segments are one column."""
        for name, have in self.params.items():
            if type(have) is type(value) and have == value:
                return f"${name}"
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"${name}"


@dataclass
class SegmentCounts:
    """One segment's result in one evaluation (AEP's ``segmentedProfileByStatusCounter``)."""

    realized: int = 0
    """Entered in this evaluation."""
    existing: int = 0
    """Qualified before and still qualify."""
    exited: int = 0
    """Left in this evaluation."""

    @property
    def members(self) -> int:
        return self.realized + self.existing


SCHEMA_NAMES = ("_xdm.context.profile",)
EVALUATION_TYPES = ("batch", "continuous", "synchronous")


@dataclass(frozen=True)
class DefinitionSpec:
    """A segment definition's body, checked field by field."""

    name: str
    description: str | None
    expression: str
    evaluation: dict[str, bool]
    ttl_days: int | None
    merge_policy_id: str | None
    labels: list[str]

    def to_spec(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "expression": {"type": "PQL", "format": "pql/text", "value": self.expression},
            "schema": {"name": SCHEMA_NAMES[0]},
            "evaluationInfo": {k: {"enabled": self.evaluation[k]} for k in EVALUATION_TYPES},
            "ttlInDays": self.ttl_days,
            "mergePolicyId": self.merge_policy_id,
            "labels": self.labels,
        }


MAX_NAME = 256
"""The longest definition name the metadata store keeps (a VARCHAR(256) on PostgreSQL)."""


def _string(body: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ValueError(f"{key}: is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValueError(f"{key}: must be a non-empty string, got {value!r}")
    return value


def check_definition(body: Any, current: DefinitionSpec | None = None) -> DefinitionSpec:
    """The definition ``body`` describes (``current``: a PATCH over it, absent keys keep their value);
    ``ValueError`` names the field and the value."""
    if not isinstance(body, dict):
        raise ValueError(f"the body must be a JSON object, got {type(body).__name__}")
    partial = current is not None
    name = _string(body, "name", required=not partial)
    if name is not None and len(name) > MAX_NAME:
        raise ValueError(f"name: at most {MAX_NAME} characters, got {len(name)}")
    description = body.get("description", current.description if current else None)
    if description is not None and not isinstance(description, str):
        raise ValueError(f"description: must be a string, got {description!r}")
    expression = current.expression if current else ""
    if "expression" in body or not partial:
        expr = body.get("expression")
        if not isinstance(expr, dict):
            raise ValueError(f"expression: must be an object with type, format and value, got {expr!r}")
        if expr.get("type", "PQL") != "PQL":
            raise ValueError(f"expression.type: must be PQL, got {expr.get('type')!r}")
        if expr.get("format", "pql/text") != "pql/text":
            raise ValueError(f"expression.format: only pql/text is supported, got {expr.get('format')!r}")
        value = expr.get("value")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expression.value: must be a non-empty PQL string, got {value!r}")
        expression = value
    schema = body.get("schema", {"name": SCHEMA_NAMES[0]} if partial else None)
    if not isinstance(schema, dict) or schema.get("name") not in SCHEMA_NAMES:
        got = schema.get("name") if isinstance(schema, dict) else schema
        raise ValueError(f"schema.name: segment definitions are evaluated on {SCHEMA_NAMES[0]}, got {got!r}")
    evaluation = dict(current.evaluation) if current else {"batch": True, "continuous": False, "synchronous": False}
    info = body.get("evaluationInfo")
    if info is not None:
        if not isinstance(info, dict):
            raise ValueError(f"evaluationInfo: must be an object, got {info!r}")
        for key, value in info.items():
            if key not in EVALUATION_TYPES:
                raise ValueError(f"evaluationInfo.{key}: is not one of {', '.join(EVALUATION_TYPES)}")
            enabled = value.get("enabled") if isinstance(value, dict) else None
            if not isinstance(enabled, bool):
                raise ValueError(f"evaluationInfo.{key}.enabled: must be true or false, got {enabled!r}")
            evaluation[key] = enabled
    ttl = body.get("ttlInDays", current.ttl_days if current else None)
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 36500):
        raise ValueError(f"ttlInDays: must be a whole number of days from 1 to 36500, got {ttl!r}")
    policy = body.get("mergePolicyId", current.merge_policy_id if current else None)
    if policy is not None and not isinstance(policy, str):
        raise ValueError(f"mergePolicyId: must be a string, got {policy!r}")
    labels = body.get("labels", current.labels if current else [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"labels: must be a list of strings, got {labels!r}")
    return DefinitionSpec(
        name=name if name is not None else (current.name if current else ""),
        description=description,
        expression=expression,
        evaluation=evaluation,
        ttl_days=ttl,
        merge_policy_id=policy,
        labels=labels,
    )


def spec_of(name: str, spec: dict[str, Any]) -> DefinitionSpec:
    """The stored form back as a spec."""
    return DefinitionSpec(
        name=name,
        description=spec.get("description"),
        expression=spec["expression"]["value"],
        evaluation={k: bool(v["enabled"]) for k, v in spec["evaluationInfo"].items()},
        ttl_days=spec.get("ttlInDays"),
        merge_policy_id=spec.get("mergePolicyId"),
        labels=list(spec.get("labels") or []),
    )
