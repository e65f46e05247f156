"""The parsed form of a segment expression (the PQL subset audiencehub evaluates).

The parser (``pql/parser.py``) builds these nodes from ``pql/text``; the compiler (``pql/compile.py``)
turns them into engine SQL. Every node keeps ``pos``, the 0-based offset in the expression text where it
starts, so that a later error (an unknown field, a missing audience) can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal as TypingLiteral

ACTIVE_STATUSES = ("realized", "existing")
"""The statuses in which a profile counts as a member (``inSegment`` and the ``status in [...]`` form)."""
STATUSES = ("realized", "existing", "exited")

CompareOp = TypingLiteral["=", "!=", "<", "<=", ">", ">="]
TimeUnit = TypingLiteral["seconds", "minutes", "hours", "days", "weeks", "months", "years"]


@dataclass(frozen=True)
class Field:
    """A dotted path: a profile attribute, an event field (inside ``xEvent``) or a payload attribute."""

    path: tuple[str, ...]
    pos: int

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Value:
    """A literal. ``kind`` is ``string``, ``number``, ``boolean``, ``date`` (``date("2024-01-31")``) or
    ``datetime`` (``datetime("2024-01-31T10:00:00Z")``); dates keep their ISO text in ``value``."""

    value: str | int | float | bool
    kind: TypingLiteral["string", "number", "boolean", "date", "datetime"]
    pos: int


@dataclass(frozen=True)
class Compare:
    """``field <op> value``."""

    field: Field
    op: CompareOp
    value: Value
    pos: int


@dataclass(frozen=True)
class StringMatch:
    """``field.contains("x")``, ``field.startsWith("x")``, ``field.endsWith("x")``, ``field.equals("x", false)``;
    ``case_sensitive`` is False for the two-argument form ``field.contains("x", false)``."""

    field: Field
    op: TypingLiteral["contains", "startsWith", "endsWith", "equals"]
    value: Value
    case_sensitive: bool
    pos: int


@dataclass(frozen=True)
class InList:
    """``field in [v1, v2]`` (``negate``: ``field notIn [...]`` / ``not (field in [...])`` is a Not)."""

    field: Field
    values: tuple[Value, ...]
    negate: bool
    pos: int


@dataclass(frozen=True)
class Exists:
    """``field.exists()`` / ``field.isNotNull()`` / ``exists field``; ``negate`` for ``isNull()`` and
    ``not exists``."""

    field: Field
    negate: bool
    pos: int


@dataclass(frozen=True)
class TimeCondition:
    """``field occurs <op> N <unit> before|after now`` (also written ``field.occurs ...``).

    ``occurs within N days before now`` is ``op="<="``; ``occurs today`` is ``op="="``, ``amount=0``,
    ``unit="days"``. ``op`` compares the distance from now: ``< 7 days before now`` is a time less than
    seven days ago.
    """

    field: Field
    op: CompareOp
    amount: int
    unit: TimeUnit
    direction: TypingLiteral["before", "after"]
    pos: int


@dataclass(frozen=True)
class Membership:
    """A profile's membership of an audience.

    ``inSegment("id")`` is ``namespace=None`` (any audience with that id: a segment definition's id, an
    external audience's id or its audienceId), ``statuses=ACTIVE_STATUSES``.
    ``segmentMembership.get("ns").get("id").status in [...]`` names the namespace (``ups`` for segment
    definitions). ``payload`` (audiencehub's extension) is a condition on the membership's payload
    attributes, its fields relative to the payload: ``segmentMembership.get("ns").get("id").payload.tier =
    "gold"`` is ``Membership(ns, id, ACTIVE_STATUSES, Compare(Field(("tier",)), "=", "gold"))``.
    """

    namespace: str | None
    segment_id: str
    statuses: tuple[str, ...]
    payload: Node | None
    pos: int


@dataclass(frozen=True)
class EventCondition:
    """A condition over the profile's experience events.

    ``xEvent.any(cond)``: at least one event satisfies ``cond``; ``xEvent.all(cond)``: the profile has
    events and every one satisfies it; ``xEvent.count(cond) <op> N`` (``cond`` None: every event). Fields in
    ``cond`` are event fields (``eventType``, ``timestamp``, ``commerce.order.priceTotal``).
    """

    quantifier: TypingLiteral["any", "all", "count"]
    condition: Node | None
    op: CompareOp | None
    count: int | None
    pos: int


@dataclass(frozen=True)
class Const:
    """``true`` / ``false``."""

    value: bool
    pos: int


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class Not:
    item: Node
    pos: int


Node = Compare | StringMatch | InList | Exists | TimeCondition | Membership | EventCondition | Const | And | Or | Not


class PQLError(Exception):
    """An expression that cannot be evaluated; ``pos`` is the 0-based offset it points at."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos

    def describe(self, text: str) -> str:
        """``message at position P (line L, column C): <the text around it>``."""
        before = text[: self.pos]
        line = before.count("\n") + 1
        column = self.pos - (before.rfind("\n") + 1) + 1
        return f"{self.message} at position {self.pos} (line {line}, column {column})"


class PQLSyntaxError(PQLError):
    """The text is not PQL."""


class PQLUnsupported(PQLError):
    """Valid PQL outside the subset audiencehub evaluates; the message names the construct."""


def walk(node: Node) -> list[Node]:
    """The node and every node under it (event conditions and payload conditions included)."""
    out: list[Node] = [node]
    if isinstance(node, (And, Or)):
        for item in node.items:
            out += walk(item)
    elif isinstance(node, Not):
        out += walk(node.item)
    elif isinstance(node, EventCondition) and node.condition is not None:
        out += walk(node.condition)
    elif isinstance(node, Membership) and node.payload is not None:
        out += walk(node.payload)
    return out
