"""PQL text (``pql/text``) → AST (``pql/ast.py``): a hand-written recursive-descent parser for the subset
audiencehub evaluates.

Grammar (keywords are case-insensitive; backquoted identifiers are never keywords)::

    expr      := [binder "=>"] or            binder: Name | "(" Name ")"; paths starting with Name drop it
    or        := and ("or" and)*
    and       := not ("and" not)*
    not       := "not" "exists" path | "not" not | primary
    primary   := "(" or ")" | "true" | "false" | "exists" path | inSegment("id")
               | xEvent.(any|all)(cond) | xEvent.count([cond]) op N
               | segmentMembership.get("ns").get("id").(status <status-test> | payload.path <test>)
               | path <test>
    test      := op literal | "in" list | "notIn" list | "not" "in" list
               | ("contains"|"startsWith"|"endsWith") string
               | [.]occurs ([op] N unit | within N unit) (before|after) now | [.]occurs (today|yesterday)
               | .equals(s[, b]) | .notEqualTo(s[, b]) | .contains(s[, b]) | .startsWith(s[, b]) | .endsWith(s[, b])
               | .exists() | .isNotNull() | .isNull()
    literal   := string | number | true | false | date("YYYY-MM-DD") | date(y, m, d) | datetime("ISO 8601")

Choices where AEP's grammar gives latitude: ``not exists path`` is ``Exists(negate=True)`` (not ``Not(Exists)``);
``path = null`` / ``path != null`` are ``Exists(negate=True)`` / ``Exists(negate=False)``; ``inSegment`` and
``segmentMembership`` inside an ``xEvent`` condition are unsupported (an event condition holds event fields only).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Literal, NoReturn

from audiencehub.pql.ast import (
    ACTIVE_STATUSES,
    STATUSES,
    And,
    Compare,
    CompareOp,
    Const,
    EventCondition,
    Exists,
    Field,
    InList,
    Membership,
    Node,
    Not,
    Or,
    PQLSyntaxError,
    PQLUnsupported,
    StringMatch,
    TimeCondition,
    TimeUnit,
    Value,
)
from audiencehub.pql.lexer import Token, tokenize

__all__ = ["parse"]

MAX_DEPTH = 100
"""How deeply parentheses, ``not`` and ``xEvent`` may nest (deeper text is refused, never a RecursionError)."""

_OPS: dict[str, CompareOp] = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_PLURALS: tuple[TimeUnit, ...] = ("seconds", "minutes", "hours", "days", "weeks", "months", "years")
_UNITS: dict[str, TimeUnit] = {**{unit: unit for unit in _PLURALS}, **{unit[:-1]: unit for unit in _PLURALS}}
_STRING_METHODS: dict[str, Literal["contains", "startsWith", "endsWith"]] = {
    "contains": "contains",
    "startswith": "startsWith",
    "endswith": "endsWith",
}
_QUANTIFIERS: dict[str, Literal["any", "all", "count"]] = {"any": "any", "all": "all", "count": "count"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?")
# AEP's other `occurs` forms: `occurs before now`, `occurs on date(...)`, `occurs between ...`, `occurs this month`
_OCCURS_UNSUPPORTED = ("before", "after", "on", "between", "this", "last", "next")


def parse(text: str) -> Node:
    """The AST of a ``pql/text`` expression.

    Raises PQLSyntaxError (not PQL: an empty text, an unexpected token, trailing text, a bad date) and
    PQLUnsupported (PQL outside the subset: ``CHAIN(...)``, ``xEvent.filter(...)``, ``select ... from``);
    both carry ``pos``, the 0-based offset of the offending token.
    """
    if not text.strip():
        raise PQLSyntaxError("expected a condition but found an empty expression", 0)
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.source = tokenize(text)
        self.tokens: list[Token] = []  # read so far; the last one is `eof` once the text is exhausted
        self.i = 0
        self.depth = 0
        self.binder: str | None = None  # the lambda variable (`e => e.x`, `X.x` in xEvent) dropped from paths
        self.in_event = False

    # -- tokens --------------------------------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        want = self.i + ahead
        while len(self.tokens) <= want and not (self.tokens and self.tokens[-1].kind == "eof"):
            self.tokens.append(next(self.source))
        return self.tokens[min(want, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        if token.kind != "eof":
            self.i += 1
        return token

    @staticmethod
    def is_word(token: Token, *words: str) -> bool:
        """``token`` is one of the (lower-case) keywords ``words``, in any case, and not backquoted."""
        return token.kind == "ident" and not token.quoted and str(token.value).lower() in words

    def fail(self, expected: str) -> NoReturn:
        token = self.peek()
        if self.is_word(token, "select", "from", "where"):
            raise PQLUnsupported("select ... from is not supported", token.pos)
        raise PQLSyntaxError(f"expected {expected} but found {token.describe()}", token.pos)

    def expect(self, kind: str, expected: str) -> Token:
        if self.peek().kind != kind:
            self.fail(expected)
        return self.advance()

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise PQLSyntaxError(f"the expression nests more than {MAX_DEPTH} levels deep", token.pos)

    # -- boolean structure ---------------------------------------------------------------------------------------

    def parse(self) -> Node:
        self.binder = self.lambda_binder()
        node = self.parse_or()
        if self.peek().kind != "eof":
            self.fail("'and', 'or' or the end of the expression")
        return node

    def lambda_binder(self) -> str | None:
        """Consume ``Name =>`` or ``(Name) =>`` and return Name; None (consuming nothing) when absent."""
        first, second = self.peek(), self.peek(1)
        if first.kind == "ident" and second.kind == "=>":
            self.i += 2
            return str(first.value)
        if first.kind == "(" and second.kind == "ident" and self.peek(2).kind == ")" and self.peek(3).kind == "=>":
            self.i += 4
            return str(second.value)
        return None

    def parse_or(self) -> Node:
        start = self.peek().pos
        items = [self.parse_and()]
        while self.is_word(self.peek(), "or"):
            self.advance()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items), start)

    def parse_and(self) -> Node:
        start = self.peek().pos
        items = [self.parse_not()]
        while self.is_word(self.peek(), "and"):
            self.advance()
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items), start)

    def parse_not(self) -> Node:
        token = self.peek()
        if not self.is_word(token, "not"):
            return self.parse_primary()
        self.advance()
        if self.is_word(self.peek(), "exists"):
            self.advance()
            return Exists(self.parse_path(), True, token.pos)
        self.enter(token)
        try:
            return Not(self.parse_not(), token.pos)
        finally:
            self.depth -= 1

    def parse_primary(self) -> Node:
        token = self.peek()
        if token.kind == "(":
            self.advance()
            self.enter(token)
            try:
                node = self.parse_or()
            finally:
                self.depth -= 1
            self.expect(")", "')'")
            return node
        if token.kind != "ident":
            self.fail("a condition")
        if not token.quoted:
            word = str(token.value).lower()
            if word in ("true", "false"):
                self.advance()
                return Const(word == "true", token.pos)
            if word == "exists":
                self.advance()
                return Exists(self.parse_path(), False, token.pos)
            if word in ("and", "or", "select", "from", "where"):
                self.fail("a condition")
            if word == "insegment" and self.peek(1).kind == "(":
                return self.parse_in_segment()
            if self.peek(1).kind == "(":
                raise PQLUnsupported(f"the function {token.value}(...) is not supported", token.pos)
            if word == "xevent":
                return self.parse_xevent()
            if word == "segmentmembership":
                return self.parse_segment_membership()
        field = self.parse_path()
        return self.parse_test(field)

    # -- a field and its test ------------------------------------------------------------------------------------

    def parse_path(self, *, strip_binder: bool = True) -> Field:
        """``a.b.c`` up to (not including) a method call ``.name(`` or ``.occurs``."""
        first = self.expect("ident", "a field name")
        path = [str(first.value)]
        while self.peek().kind == "." and self.peek(1).kind == "ident":
            name = self.peek(1)
            if self.peek(2).kind == "(" or self.is_word(name, "occurs"):
                break
            self.i += 2
            path.append(str(name.value))
        if strip_binder and len(path) > 1 and not first.quoted and path[0] == self.binder:
            path = path[1:]
        return Field(tuple(path), first.pos)

    def parse_test(self, field: Field) -> Node:
        """What follows a field: a comparison, ``in`` list, string operator, ``occurs`` or a method call."""
        start = field.pos
        token = self.peek()
        if token.kind == ".":
            name = self.peek(1)
            if name.kind != "ident":
                self.advance()
                self.fail("a field name or a method after '.'")
            self.i += 2
            if self.is_word(name, "occurs") and self.peek().kind != "(":
                return self.parse_occurs(field)
            return self.parse_method(field, name)
        if token.kind == "op":
            self.advance()
            op = _OPS[str(token.value)]
            if op in ("=", "!=") and self.is_word(self.peek(), "null"):
                self.advance()
                return Exists(field, op == "=", start)
            return Compare(field, op, self.parse_literal("a value"), start)
        if self.is_word(token, "in", "notin") or (self.is_word(token, "not") and self.is_word(self.peek(1), "in")):
            negate = not self.is_word(token, "in")
            self.i += 2 if self.is_word(token, "not") else 1
            return InList(field, self.parse_list(), negate, start)
        if self.is_word(token, *_STRING_METHODS):
            self.advance()
            value = self.parse_string(f"a string after '{token.value}'")
            return StringMatch(field, _STRING_METHODS[str(token.value).lower()], value, True, start)
        if self.is_word(token, "occurs"):
            self.advance()
            return self.parse_occurs(field)
        self.fail(f"an operator ('=', '!=', '<', '<=', '>', '>=', 'in', 'occurs', ...) after '{field.name}'")

    def parse_method(self, field: Field, name: Token) -> Node:
        """``field.name(...)``; the ``(`` is next."""
        start = field.pos
        method = str(name.value).lower()
        if method in ("exists", "isnotnull", "isnull"):
            self.advance()
            self.expect(")", f"')' after .{name.value}(")
            return Exists(field, method == "isnull", start)
        if method not in ("equals", "notequalto", *_STRING_METHODS):
            raise PQLUnsupported(f"the method .{name.value}(...) is not supported", name.pos)
        self.advance()
        value = self.parse_string(f"a string argument to .{name.value}()")
        case_sensitive = True
        if self.peek().kind == ",":
            self.advance()
            case_sensitive = self.parse_bool(f"true or false (case sensitive) as .{name.value}()'s second argument")
        self.expect(")", "')'")
        if method in _STRING_METHODS:
            return StringMatch(field, _STRING_METHODS[method], value, case_sensitive, start)
        equal: Node = (
            Compare(field, "=", value, start) if case_sensitive else StringMatch(field, "equals", value, False, start)
        )
        return equal if method == "equals" else Not(equal, start)

    def parse_occurs(self, field: Field) -> TimeCondition:
        """After ``occurs``: ``[op] N unit before|after now``, ``within N unit ...``, ``today``, ``yesterday``."""
        token = self.peek()
        if self.is_word(token, "today", "yesterday"):
            self.advance()
            return TimeCondition(field, "=", 0 if self.is_word(token, "today") else 1, "days", "before", field.pos)
        if self.is_word(token, *_OCCURS_UNSUPPORTED):
            raise PQLUnsupported(f"occurs {token.value} ... is not supported", token.pos)
        op: CompareOp = "="
        if self.is_word(token, "within"):
            self.advance()
            op = "<="
        elif token.kind == "op":
            self.advance()
            op = _OPS[str(token.value)]
        amount = self.parse_count("a whole number of time units (or 'within', 'today', 'yesterday')")
        unit_token = self.peek()
        if unit_token.kind != "ident" or unit_token.quoted or str(unit_token.value).lower() not in _UNITS:
            self.fail("a time unit (seconds, minutes, hours, days, weeks, months or years)")
        self.advance()
        unit = _UNITS[str(unit_token.value).lower()]
        direction = self.peek()
        if not self.is_word(direction, "before", "after"):
            self.fail("'before' or 'after'")
        self.advance()
        now = self.peek()
        if now.kind == "ident" and not self.is_word(now, "now"):
            raise PQLUnsupported(f"occurs ... {direction.value} {now.value} is not supported (only 'now')", now.pos)
        self.expect("ident", "'now'")
        if self.peek().kind == "(" and self.peek(1).kind == ")":  # `now()`
            self.i += 2
        return TimeCondition(
            field, op, amount, unit, "before" if self.is_word(direction, "before") else "after", field.pos
        )

    # -- literals ------------------------------------------------------------------------------------------------

    def parse_literal(self, expected: str) -> Value:
        token = self.peek()
        if token.kind == "string":
            self.advance()
            return Value(str(token.value), "string", token.pos)
        if token.kind == "number":
            self.advance()
            return Value(token.value, "number", token.pos)
        if token.kind != "ident" or self.is_word(token, "and", "or", "not", "null", "select", "from", "where"):
            self.fail(expected)
        if not token.quoted:
            word = str(token.value).lower()
            if word in ("true", "false"):
                self.advance()
                return Value(word == "true", "boolean", token.pos)
            if self.peek(1).kind == "(":
                if word in ("date", "datetime"):
                    return self.parse_date(token)
                raise PQLUnsupported(f"the function {token.value}(...) is not supported", token.pos)
        other = self.parse_path()
        raise PQLUnsupported(
            f"comparing with the field '{other.name}' is not supported (only with a literal)", token.pos
        )

    def parse_date(self, name: Token) -> Value:
        """``date("YYYY-MM-DD")``, ``date(y, m, d)`` (AEP's documented form) or ``datetime("<ISO 8601>")``."""
        self.i += 2
        kind: Literal["date", "datetime"] = "date" if str(name.value).lower() == "date" else "datetime"
        token = self.peek()
        if token.kind == "number" and kind == "date":
            parts = [self.parse_count("a year")]
            for part in ("a month", "a day"):
                self.expect(",", "','")
                parts.append(self.parse_count(part))
            self.expect(")", "')'")
            try:
                text = date(*parts).isoformat()
            except (ValueError, OverflowError):
                raise PQLSyntaxError(f"date({', '.join(map(str, parts))}) is not a valid date", token.pos) from None
            return Value(text, "date", name.pos)
        if token.kind != "string":
            self.fail("an ISO 8601 date string" if kind == "date" else "an ISO 8601 date-time string")
        text = str(token.value)
        if not _valid_iso(text, kind):
            example = "2024-01-31" if kind == "date" else "2024-01-31T10:00:00Z"
            raise PQLSyntaxError(
                f'expected an ISO 8601 {kind} like "{example}" but found {token.describe()}', token.pos
            )
        self.advance()
        self.expect(")", "')'")
        return Value(text, kind, name.pos)

    def parse_list(self) -> tuple[Value, ...]:
        self.expect("[", "'['")
        values = [self.parse_literal("a value in the list")]
        while self.peek().kind == ",":
            self.advance()
            values.append(self.parse_literal("a value in the list"))
        self.expect("]", "',' or ']'")
        return tuple(values)

    def parse_string(self, expected: str) -> Value:
        token = self.expect("string", expected)
        return Value(str(token.value), "string", token.pos)

    def parse_bool(self, expected: str) -> bool:
        token = self.peek()
        if not self.is_word(token, "true", "false"):
            self.fail(expected)
        self.advance()
        return self.is_word(token, "true")

    def parse_count(self, expected: str) -> int:
        """A non-negative integer literal."""
        token = self.peek()
        if token.kind != "number" or not isinstance(token.value, int) or token.text.startswith("-"):
            self.fail(expected)
        self.advance()
        return token.value

    # -- audiences and events ------------------------------------------------------------------------------------

    def parse_in_segment(self) -> Membership:
        name = self.advance()
        self.advance()
        if self.in_event:
            raise PQLUnsupported("inSegment(...) inside an xEvent condition is not supported", name.pos)
        segment_id = self.parse_string("an audience id string")
        self.expect(")", "')'")
        return Membership(None, str(segment_id.value), ACTIVE_STATUSES, None, name.pos)

    def parse_segment_membership(self) -> Membership:
        root = self.advance()
        if self.in_event:
            raise PQLUnsupported("segmentMembership inside an xEvent condition is not supported", root.pos)
        keys: list[str] = []
        while self.peek().kind == "." and self.is_word(self.peek(1), "get") and self.peek(2).kind == "(":
            if len(keys) == 2:
                raise PQLUnsupported("a third .get(...) on segmentMembership is not supported", self.peek(1).pos)
            self.i += 3
            keys.append(str(self.parse_string("a namespace or audience id string").value))
            self.expect(")", "')'")
        dot, name, after = self.peek(), self.peek(1), self.peek(2)
        if len(keys) == 2 and dot.kind == "." and after.kind != "(":
            if self.is_word(name, "status"):
                self.i += 2
                return self.parse_status(keys[0], keys[1], root.pos)
            if self.is_word(name, "payload") and after.kind == ".":
                self.i += 3
                field = self.parse_path(strip_binder=False)
                return Membership(keys[0], keys[1], ACTIVE_STATUSES, self.parse_test(field), root.pos)
        written = "segmentMembership" + ".get(...)" * len(keys)
        if dot.kind == "." and name.kind == "ident":
            written += f".{name.value}" + ("(...)" if after.kind == "(" else "")
        hint = 'segmentMembership.get("<namespace>").get("<id>").status or .payload.<field>'
        where = name.pos if dot.kind == "." else dot.pos
        raise PQLUnsupported(f"{written} is not supported (write {hint})", where)

    def parse_status(self, namespace: str, segment_id: str, pos: int) -> Membership:
        """After ``.status``: ``= "s"``, ``!= "s"``, ``in [...]``, ``notIn [...]``."""
        token = self.peek()
        statuses: list[str] = []
        if token.kind == "op" and token.value in ("=", "!="):
            self.advance()
            statuses.append(self.parse_status_value())
            negate = token.value == "!="
        elif self.is_word(token, "in", "notin") or (self.is_word(token, "not") and self.is_word(self.peek(1), "in")):
            negate = not self.is_word(token, "in")
            self.i += 2 if self.is_word(token, "not") else 1
            self.expect("[", "'['")
            statuses.append(self.parse_status_value())
            while self.peek().kind == ",":
                self.advance()
                statuses.append(self.parse_status_value())
            self.expect("]", "',' or ']'")
        else:
            self.fail("'=', '!=', 'in' or 'notIn' after .status")
        # `in` keeps the order written (without repeats); `notIn` and `!=` take the complement in STATUSES' order
        chosen = tuple(s for s in STATUSES if s not in statuses) if negate else tuple(dict.fromkeys(statuses))
        return Membership(namespace, segment_id, chosen, None, pos)

    def parse_status_value(self) -> str:
        token = self.expect("string", "a membership status string")
        status = str(token.value).lower()
        if status not in STATUSES:
            allowed = ", ".join(f"'{s}'" for s in STATUSES)
            raise PQLSyntaxError(f"expected a membership status ({allowed}) but found {token.describe()}", token.pos)
        return status

    def parse_xevent(self) -> EventCondition:
        root = self.advance()
        if self.in_event:
            raise PQLUnsupported("xEvent inside an xEvent condition is not supported", root.pos)
        if self.peek().kind == "[":
            raise PQLUnsupported("xEvent[...] is not supported", self.peek().pos)
        dot, name = self.peek(), self.peek(1)
        if dot.kind != "." or name.kind != "ident":
            self.fail("'.any(', '.all(' or '.count(' after xEvent")
        method = str(name.value).lower()
        if method not in _QUANTIFIERS or name.quoted:
            written = f"xEvent.{name.value}" + ("(...)" if self.peek(2).kind == "(" else "")
            raise PQLUnsupported(f"{written} is not supported", name.pos)
        self.i += 2
        self.expect("(", f"'(' after xEvent.{name.value}")
        self.enter(root)
        saved = self.binder
        self.in_event, self.binder = True, "X"
        try:
            self.binder = self.lambda_binder() or "X"
            condition = None if method == "count" and self.peek().kind == ")" else self.parse_or()
            self.expect(")", "')'")
        finally:
            self.in_event, self.binder = False, saved
            self.depth -= 1
        if method != "count":
            return EventCondition(_QUANTIFIERS[method], condition, None, None, root.pos)
        op = self.peek()
        if op.kind != "op":
            self.fail("a comparison ('=', '!=', '<', '<=', '>', '>=') after xEvent.count(...)")
        self.advance()
        count = self.parse_count("a non-negative whole number after xEvent.count(...) " + str(op.value))
        return EventCondition("count", condition, _OPS[str(op.value)], count, root.pos)


def _valid_iso(text: str, kind: str) -> bool:
    if not (_DATE if kind == "date" else _DATETIME).fullmatch(text):
        return False
    try:
        (date.fromisoformat if kind == "date" else datetime.fromisoformat)(text)
    except ValueError:
        return False
    return True
