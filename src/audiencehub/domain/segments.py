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
        """``$name`` bound to ``value``: user values never become SQL text."""
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
