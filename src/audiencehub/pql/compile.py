"""PQL AST → boolean SQL over a :class:`~audiencehub.domain.segments.Plan`'s columns.

Values are bound parameters (``Plan.param``); field names become quoted identifiers of columns that exist
(checked against the sandbox's union schemas); nothing the user typed is pasted into SQL. Every comparison on a
value the profile lacks is false, so ``not`` of it is true (``not (country = "US")`` includes profiles without
a country).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from audiencehub.domain.segments import Attribute, EventCount, Flag, MemberSource, Payload, Plan
from audiencehub.engines.ingest_sql import ident
from audiencehub.pql.ast import (
    ACTIVE_STATUSES,
    And,
    Compare,
    Const,
    EventCondition,
    Exists,
    Field,
    InList,
    Membership,
    Node,
    Not,
    Or,
    PQLError,
    PQLUnsupported,
    StringMatch,
    TimeCondition,
    Value,
    walk,
)

PROFILE, EVENT, PAYLOAD = "profile", "event", "payload"
"""Where a condition's fields are: profile attributes, the event being tested, the membership's payload."""

NUMERIC = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "DOUBLE", "FLOAT", "DECIMAL"}
TEMPORAL = {"DATE", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP"}
INTERVAL = {
    "seconds": "to_seconds",
    "minutes": "to_minutes",
    "hours": "to_hours",
    "days": "to_days",
    "weeks": "to_weeks",
    "months": "to_months",
    "years": "to_years",
}
TRUNC = {
    "seconds": "second",
    "minutes": "minute",
    "hours": "hour",
    "days": "day",
    "weeks": "week",
    "months": "month",
    "years": "year",
}


@dataclass(frozen=True)
class Fields:
    """The fields an expression may name, dotted name → SQL type: the sandbox's profile union and its
    ExperienceEvent union."""

    profile: Mapping[str, str]
    event: Mapping[str, str]


Resolver = Callable[[Membership], tuple[MemberSource, Mapping[str, str]]]
"""Finds the audience a membership condition names: its source and its payload fields (name → SQL type);
raises :class:`PQLError` (at the node's ``pos``) when there is none."""


def _base(sql_type: str) -> str:
    return sql_type.split("(")[0].strip().upper()


class _Compiler:
    def __init__(
        self, plan: Plan, fields: Fields, resolve: Resolver, precedence: tuple[str, ...] | None, now: str
    ) -> None:
        self.plan = plan
        self.fields = fields
        self.resolve = resolve
        self.precedence = precedence
        self.now = now

    # -- boolean structure ------------------------------------------------------------------------

    def node(self, n: Node, scope: str) -> str:
        """SQL that is never NULL; fields are read in ``scope``."""
        if isinstance(n, And):
            return "(" + " AND ".join(self.node(i, scope) for i in n.items) + ")"
        if isinstance(n, Or):
            return "(" + " OR ".join(self.node(i, scope) for i in n.items) + ")"
        if isinstance(n, Not):
            return f"(NOT {self.node(n.item, scope)})"
        if isinstance(n, Const):
            return "true" if n.value else "false"
        if isinstance(n, Membership):
            if scope != PROFILE:
                raise PQLUnsupported("audience membership inside an event or payload condition is not supported", n.pos)
            return self.membership(n)
        if isinstance(n, EventCondition):
            if scope != PROFILE:
                raise PQLUnsupported("xEvent inside an event or payload condition is not supported", n.pos)
            return self.events(n)
        return f"coalesce({self.predicate(n, scope)}, false)"

    # -- leaf predicates --------------------------------------------------------------------------

    def predicate(self, n: Node, scope: str) -> str:
        if isinstance(n, Compare):
            col, t = self.field(n.field, scope)
            if "[]" in t or _base(t) in ("MAP", "STRUCT", "JSON"):
                raise PQLError(f"{n.field.name!r} is a {t} field; '{n.op}' compares single values", n.pos)
            op = "<>" if n.op == "!=" else n.op
            return f"({col} {op} {self.value(n.value, n.field, t)})"
        if isinstance(n, StringMatch):
            col, t = self.field(n.field, scope)
            if n.value.kind != "string":
                raise PQLError(f"{n.op}() takes a string, got {n.value.kind} {n.value.value!r}", n.value.pos)
            if t.endswith("[]") and n.op == "contains":  # an array field: does it hold the value
                if n.case_sensitive or _base(t[:-2]) != "VARCHAR":
                    return f"list_contains({col}, {self.value(n.value, n.field, t[:-2])})"
                want = self.plan.param(str(n.value.value).lower())
                return f"list_contains(list_transform({col}, lambda x: lower(x)), {want})"
            if _base(t) != "VARCHAR":
                raise PQLError(f"{n.field.name!r} is a {t} field; {n.op}() needs a string field", n.pos)
            text = str(n.value.value)
            if not n.case_sensitive:
                col, text = f"lower({col})", text.lower()
            p = self.plan.param(text)
            fn = {"contains": "contains", "startsWith": "starts_with", "endsWith": "suffix"}.get(n.op)
            return f"({col} = {p})" if fn is None else f"{fn}({col}, {p})"
        if isinstance(n, InList):
            col, t = self.field(n.field, scope)
            values = ", ".join(self.value(v, n.field, t) for v in n.values)
            return f"({col} {'NOT IN' if n.negate else 'IN'} ({values}))"
        if isinstance(n, Exists):
            col, _ = self.field(n.field, scope)
            return f"({col} IS {'' if n.negate else 'NOT '}NULL)"
        if isinstance(n, TimeCondition):
            return self.time(n, scope)
        raise PQLUnsupported(f"{type(n).__name__} is not supported here", getattr(n, "pos", 0))

    def field(self, f: Field, scope: str) -> tuple[str, str]:
        """The SQL reading the field in ``scope`` and its type."""
        if scope == EVENT:
            t = self.fields.event.get(f.name)
            if t is None:
                raise PQLError(f"{f.name!r} is not a field of the sandbox's ExperienceEvent schemas", f.pos)
            return ident(f.name), t
        if scope == PAYLOAD:
            source, payload = self._payload_scope
            pt = payload.get(f.name)
            if pt is None:
                known = ", ".join(sorted(payload)) or "none"
                raise PQLError(f"{f.name!r} is not a payload attribute of this audience (it has: {known})", f.pos)
            return ident(self.plan.column("p", Payload(source, f.name, pt))), pt
        t = self.fields.profile.get(f.name)
        if t is None:
            raise PQLError(f"{f.name!r} is not a field of the sandbox's Profile union schema", f.pos)
        return ident(self.plan.column("a", Attribute(f.name, t, self.precedence))), t

    def value(self, v: Value, f: Field, sql_type: str) -> str:
        """A parameter holding ``v`` as a value of the field's type; a value of another kind is an error."""
        base = _base(sql_type)

        def wrong() -> PQLError:
            return PQLError(f"{f.name!r} is a {sql_type} field and cannot be compared with {v.kind} {v.value!r}", v.pos)

        if base in NUMERIC:
            if v.kind != "number" or isinstance(v.value, bool):
                raise wrong()
            return self.plan.param(v.value)
        if base == "BOOLEAN":
            if v.kind != "boolean":
                raise wrong()
            return self.plan.param(bool(v.value))
        if base in TEMPORAL:
            if v.kind not in ("string", "date", "datetime"):
                raise wrong()
            return self.plan.param(_temporal(str(v.value), base == "DATE", v))
        if base == "VARCHAR":
            if v.kind != "string":
                raise wrong()
            return self.plan.param(str(v.value))
        raise wrong()

    def time(self, n: TimeCondition, scope: str) -> str:
        col, t = self.field(n.field, scope)
        if _base(t) not in TEMPORAL:
            raise PQLError(f"{n.field.name!r} is a {t} field; occurs needs a date or date-time field", n.pos)
        at = f"CAST({col} AS TIMESTAMPTZ)"
        sign = "-" if n.direction == "before" else "+"
        mark = f"({self.now} {sign} {INTERVAL[n.unit]}({int(n.amount)}))"
        if n.op in ("=", "!="):  # the same (or another) calendar unit as the mark
            unit = TRUNC[n.unit]
            op = "=" if n.op == "=" else "<>"
            return f"(date_trunc('{unit}', {at}) {op} date_trunc('{unit}', {mark}))"
        # The distance from now compared with N units; before now: nearer than N units is later than the mark.
        nearer = n.op in ("<", "<=")
        if n.direction == "before":
            cmp = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[n.op]
            side = f" AND {at} <= {self.now}" if nearer else ""
        else:
            cmp = n.op
            side = f" AND {at} >= {self.now}" if nearer else ""
        return f"({at} {cmp} {mark}{side})"

    # -- memberships and events -------------------------------------------------------------------

    def membership(self, n: Membership) -> str:
        source, payload = self.resolve(n)
        flag = f"coalesce({ident(self.plan.column('f', Flag(source, tuple(sorted(n.statuses)))))}, false)"
        if n.payload is None:
            return flag
        self._payload_scope = (source, payload)
        cond = self.node(n.payload, PAYLOAD)
        active = ident(self.plan.column("f", Flag(source, tuple(sorted(ACTIVE_STATUSES)))))
        return f"({flag} AND coalesce({active}, false) AND {cond})"

    def events(self, n: EventCondition) -> str:
        cond = None if n.condition is None else self.node(n.condition, EVENT)
        used = tuple(sorted({(f.name, t) for f, t in self._event_fields(n)}))
        if n.quantifier == "any":
            alias = ident(self.plan.column("e", EventCount(cond, used)))
            return f"(coalesce({alias}, 0) > 0)"
        if n.quantifier == "all":
            total = ident(self.plan.column("e", EventCount(None, ())))
            failing = ident(self.plan.column("e", EventCount(f"NOT {cond}" if cond else "false", used)))
            return f"(coalesce({total}, 0) > 0 AND coalesce({failing}, 0) = 0)"
        alias = ident(self.plan.column("e", EventCount(cond, used)))
        assert n.op is not None and n.count is not None
        op = "<>" if n.op == "!=" else n.op
        return f"(coalesce({alias}, 0) {op} {int(n.count)})"

    def _event_fields(self, n: EventCondition) -> list[tuple[Field, str]]:
        out = []
        for node in walk(n.condition) if n.condition is not None else []:
            f = getattr(node, "field", None)
            if isinstance(f, Field):
                out.append((f, self.fields.event[f.name]))
        return out

    _payload_scope: tuple[MemberSource, Mapping[str, str]]


def _temporal(text: str, date_only: bool, v: Value) -> dt.date | dt.datetime:
    try:
        if date_only and len(text) == 10:
            return dt.date.fromisoformat(text)
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PQLError(f"{text!r} is not an ISO 8601 date or date-time", v.pos) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.date() if date_only and len(text) == 10 else parsed


def compile_segment(
    plan: Plan,
    segment_id: str,
    expression: Node,
    fields: Fields,
    resolve: Resolver,
    *,
    precedence: tuple[str, ...] | None = None,
) -> str:
    """Adds the segment to ``plan`` and answers its condition's SQL; :class:`PQLError` for an expression that names
    what the sandbox lacks or compares values of the wrong kind."""
    plan.params.setdefault("now", plan.now)  # one "now" for every segment of the evaluation
    sql = _Compiler(plan, fields, resolve, precedence, "$now").node(expression, PROFILE)
    plan.segments.append((segment_id, sql))
    return sql
