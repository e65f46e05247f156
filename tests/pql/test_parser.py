"""The PQL parser: each accepted form → its exact AST; each rejected form → the error class, position and message."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

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
    PQLSyntaxError,
    PQLUnsupported,
    StringMatch,
    TimeCondition,
    Value,
)
from audiencehub.pql.parser import MAX_DEPTH, parse


def nopos(node: Any) -> Any:
    """``node`` with every ``pos`` set to 0, so that the table compares structure only."""
    if isinstance(node, tuple):
        return tuple(nopos(item) for item in node)
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return node
    changes = {f.name: nopos(getattr(node, f.name)) for f in dataclasses.fields(node) if f.name != "pos"}
    return dataclasses.replace(node, pos=0, **changes)


def F(dotted: str) -> Field:
    return Field(tuple(dotted.split(".")), 0)


def S(text: str) -> Value:
    return Value(text, "string", 0)


def N(number: float) -> Value:
    return Value(number, "number", 0)


def eq(field: str, value: Value, op: str = "=") -> Compare:
    return Compare(F(field), op, value, 0)  # type: ignore[arg-type]


def member(ns: str | None, sid: str, statuses: tuple[str, ...] = ACTIVE_STATUSES, payload: Node | None = None) -> Node:
    return Membership(ns, sid, statuses, payload, 0)


def time(field: str, op: str, amount: int, unit: str, direction: str = "before") -> TimeCondition:
    return TimeCondition(F(field), op, amount, unit, direction, 0)  # type: ignore[arg-type]


A, B, C = eq("a", N(1)), eq("b", N(2)), eq("c", N(3))

ACCEPTED: list[tuple[str, Node]] = [
    # AEP's documentation examples
    ('workAddress.country = "US"', eq("workAddress.country", S("US"))),
    (
        'homeAddress.countryCode = "US" and person.birthYear >= 1980',
        And((eq("homeAddress.countryCode", S("US")), eq("person.birthYear", N(1980), ">=")), 0),
    ),
    ('person.name.firstName != "Bob"', eq("person.name.firstName", S("Bob"), "!=")),
    (
        'segmentMembership.get("CustomerAudienceUpload").get("5d3f2a").status = "realized"',
        member("CustomerAudienceUpload", "5d3f2a", ("realized",)),
    ),
    (
        'segmentMembership.get("PartnerSeg").get("dmp-123").status in ["realized", "existing"]',
        member("PartnerSeg", "dmp-123", ("realized", "existing")),
    ),
    # comparisons and literals
    ("a < 1", eq("a", N(1), "<")),
    ("a <= 1", eq("a", N(1), "<=")),
    ("a > -3", eq("a", N(-3), ">")),
    ("a>=12.5", eq("a", N(12.5), ">=")),
    ("a = 1e3", eq("a", N(1000.0))),
    ("a = true", eq("a", Value(True, "boolean", 0))),
    ("a = FALSE", eq("a", Value(False, "boolean", 0))),
    ("a = 'single'", eq("a", S("single"))),
    (r'a = "q\"uo\\te\n\t\'"', eq("a", S("q\"uo\\te\n\t'"))),
    (r"a = '\u00e9'", eq("a", S("é"))),
    ('a = date("2024-01-31")', eq("a", Value("2024-01-31", "date", 0))),
    ("a = date(2020, 3, 14)", eq("a", Value("2020-03-14", "date", 0))),
    ('a < datetime("2024-01-31T10:00:00Z")', eq("a", Value("2024-01-31T10:00:00Z", "datetime", 0), "<")),
    (
        'a >= datetime("2024-01-31T10:00:00.123+02:00")',
        eq("a", Value("2024-01-31T10:00:00.123+02:00", "datetime", 0), ">="),
    ),
    ("_tenant.loyalty.tier = 'gold'", eq("_tenant.loyalty.tier", S("gold"))),
    ("`odd-name`.`x y` = 1", Compare(Field(("odd-name", "x y"), 0), "=", N(1), 0)),
    ("`and`.b = 1", eq("and.b", N(1))),
    ("person.birthYear2 = 1", eq("person.birthYear2", N(1))),
    # equals / notEqualTo / string matches
    ('a.equals("x")', eq("a", S("x"))),
    ('a.equals("x", true)', eq("a", S("x"))),
    ('a.equals("x", false)', StringMatch(F("a"), "equals", S("x"), False, 0)),
    ('a.notEqualTo("x")', Not(eq("a", S("x")), 0)),
    ('a.notEqualTo("x", false)', Not(StringMatch(F("a"), "equals", S("x"), False, 0), 0)),
    ('a.contains("x")', StringMatch(F("a"), "contains", S("x"), True, 0)),
    ('a.contains("x", false)', StringMatch(F("a"), "contains", S("x"), False, 0)),
    ('a.startsWith("x", true)', StringMatch(F("a"), "startsWith", S("x"), True, 0)),
    ('a.b.endsWith("x")', StringMatch(F("a.b"), "endsWith", S("x"), True, 0)),
    ('a contains "x"', StringMatch(F("a"), "contains", S("x"), True, 0)),
    ('a startsWith "x"', StringMatch(F("a"), "startsWith", S("x"), True, 0)),
    # lists
    ('a in ["a", "b"]', InList(F("a"), (S("a"), S("b")), False, 0)),
    ("a in [1, 2.5]", InList(F("a"), (N(1), N(2.5)), False, 0)),
    ('a notIn ["x"]', InList(F("a"), (S("x"),), True, 0)),
    ('a NOTIN ["x"]', InList(F("a"), (S("x"),), True, 0)),
    ('a not in ["x"]', InList(F("a"), (S("x"),), True, 0)),
    # existence
    ("a.b.exists()", Exists(F("a.b"), False, 0)),
    ("a.isNotNull()", Exists(F("a"), False, 0)),
    ("a.isNull()", Exists(F("a"), True, 0)),
    ("exists a.b", Exists(F("a.b"), False, 0)),
    ("not exists a.b", Exists(F("a.b"), True, 0)),
    ("a = null", Exists(F("a"), True, 0)),
    ("a != null", Exists(F("a"), False, 0)),
    # time
    ("t occurs < 7 days before now", time("t", "<", 7, "days")),
    ("t occurs 1 day before now", time("t", "=", 1, "days")),
    ("t.occurs >= 2 hours after now", time("t", ">=", 2, "hours", "after")),
    ("t occurs within 30 minutes before now", time("t", "<=", 30, "minutes")),
    ("t occurs != 1 second before now", time("t", "!=", 1, "seconds")),
    ("t occurs > 3 WEEK before NOW", time("t", ">", 3, "weeks")),
    ("t occurs <= 6 months before now", time("t", "<=", 6, "months")),
    ("t occurs = 1 year after now", time("t", "=", 1, "years", "after")),
    ("t occurs today", time("t", "=", 0, "days")),
    ("t.occurs yesterday", time("t", "=", 1, "days")),
    ("person.birthDate occurs 0 days before now()", time("person.birthDate", "=", 0, "days")),
    # audiences
    ('inSegment("abc")', member(None, "abc")),
    ('segmentMembership.get("ups").get("id").status = "existing"', member("ups", "id", ("existing",))),
    ('segmentMembership.get("ups").get("id").status != "exited"', member("ups", "id", ("realized", "existing"))),
    ('segmentMembership.get("ups").get("id").status notIn ["realized"]', member("ups", "id", ("existing", "exited"))),
    ('segmentMembership.get("ups").get("id").status in ["Exited", "exited"]', member("ups", "id", ("exited",))),
    (
        'segmentMembership.get("ns").get("id").payload.tier = "gold"',
        member("ns", "id", payload=eq("tier", S("gold"))),
    ),
    (
        'segmentMembership.get("ns").get("id").payload.prefs.color in ["red", "blue"]',
        member("ns", "id", payload=InList(F("prefs.color"), (S("red"), S("blue")), False, 0)),
    ),
    (
        'segmentMembership.get("ns").get("id").payload.code.startsWith("A", false)',
        member("ns", "id", payload=StringMatch(F("code"), "startsWith", S("A"), False, 0)),
    ),
    ('segmentMembership.get("ns").get("id").payload.x.exists()', member("ns", "id", payload=Exists(F("x"), False, 0))),
    # experience events: the three spellings of the event variable
    (
        'xEvent.any(eventType = "commerce.purchases")',
        EventCondition("any", eq("eventType", S("commerce.purchases")), None, None, 0),
    ),
    (
        'xEvent.any(X.eventType = "commerce.purchases")',
        EventCondition("any", eq("eventType", S("commerce.purchases")), None, None, 0),
    ),
    (
        'xEvent.all(e => e.eventType = "commerce.purchases")',
        EventCondition("all", eq("eventType", S("commerce.purchases")), None, None, 0),
    ),
    (
        "xEvent.any((e) => e.commerce.order.priceTotal > 100)",
        EventCondition("any", eq("commerce.order.priceTotal", N(100), ">"), None, None, 0),
    ),
    (
        'xEvent.count(X.eventType = "web.webpagedetails.pageViews" and X.timestamp occurs < 7 days before now) >= 3',
        EventCondition(
            "count",
            And((eq("eventType", S("web.webpagedetails.pageViews")), time("timestamp", "<", 7, "days")), 0),
            ">=",
            3,
            0,
        ),
    ),
    ("xEvent.count() = 0", EventCondition("count", None, "=", 0, 0)),
    ("XEVENT.ANY(a = 1)", EventCondition("any", A, None, None, 0)),
    # a binder's scope ends with its xEvent(...), which restores the profile's own binder (or none)
    (
        "xEvent.any(e => e.a = 1) and e.b = 2",
        And((EventCondition("any", A, None, None, 0), eq("e.b", N(2))), 0),
    ),
    (
        "p => xEvent.any(X.a = 1) and p.b = 2 and X.c = 3",
        And((EventCondition("any", A, None, None, 0), B, eq("X.c", N(3))), 0),
    ),
    # a lambda over the profile
    ('(Profile) => Profile.homeAddress.stateProvince = "CA"', eq("homeAddress.stateProvince", S("CA"))),
    ("p => p.a = 1 and b = 2", And((A, B), 0)),
    # boolean structure and precedence: not > and > or
    ("true", Const(True, 0)),
    ("FALSE", Const(False, 0)),
    ("a = 1 and b = 2 and c = 3", And((A, B, C), 0)),
    ("a = 1 or b = 2 OR c = 3", Or((A, B, C), 0)),
    ("a = 1 or b = 2 and c = 3", Or((A, And((B, C), 0)), 0)),
    ("a = 1 and b = 2 or c = 3", Or((And((A, B), 0), C), 0)),
    ("(a = 1 or b = 2) and c = 3", And((Or((A, B), 0), C), 0)),
    ("not a = 1 and b = 2", And((Not(A, 0), B), 0)),
    ("NOT (a = 1 or b = 2)", Not(Or((A, B), 0), 0)),
    ("not not a = 1", Not(Not(A, 0), 0)),
    ("((((a = 1))))", A),
    ("a = 1 and (b = 2 and c = 3)", And((A, And((B, C), 0)), 0)),
    (" \n a = 1 \t", A),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[text for text, _ in ACCEPTED])
def test_accepted_forms_parse_to_their_ast(text: str, expected: Node) -> None:
    assert nopos(parse(text)) == nopos(expected)


def test_positions_point_at_each_node_start() -> None:
    text = 'homeAddress.countryCode = "US" and person.birthYear >= 1980'
    assert parse(text) == And(
        (
            Compare(Field(("homeAddress", "countryCode"), 0), "=", Value("US", "string", 26), 0),
            Compare(Field(("person", "birthYear"), 35), ">=", Value(1980, "number", 55), 35),
        ),
        0,
    )


def test_positions_of_not_parentheses_and_events() -> None:
    text = '(a = 1) or not xEvent.any(X.t occurs today) or inSegment("s")'
    node = parse(text)
    assert isinstance(node, Or)
    assert node.pos == 0
    first, negated, membership = node.items
    assert first == Compare(Field(("a",), 1), "=", Value(1, "number", 5), 1)
    assert negated == Not(
        EventCondition("any", TimeCondition(Field(("t",), 26), "=", 0, "days", "before", 26), None, None, 15), 11
    )
    assert membership == Membership(None, "s", ACTIVE_STATUSES, None, 47)


def test_positions_of_membership_payload_and_dates() -> None:
    text = 'segmentMembership.get("n").get("i").payload.since > date("2024-01-31")'
    assert parse(text) == Membership(
        "n",
        "i",
        ACTIVE_STATUSES,
        Compare(Field(("since",), 44), ">", Value("2024-01-31", "date", 52), 44),
        0,
    )


def test_numbers_keep_int_or_float() -> None:
    assert isinstance(parse("a = 3").value.value, int)  # type: ignore[union-attr]
    assert isinstance(parse("a = 3.0").value.value, float)  # type: ignore[union-attr]


REJECTED: list[tuple[str, type[PQLError], int, str]] = [
    # not PQL
    ("", PQLSyntaxError, 0, "empty"),
    ("   \n ", PQLSyntaxError, 0, "empty"),
    ("(a = 1 and b = 2", PQLSyntaxError, 16, "expected ')' but found end of input"),
    ("(a = 1 b = 2)", PQLSyntaxError, 7, "expected ')' but found 'b'"),
    ("a = 1 b", PQLSyntaxError, 6, "found 'b'"),
    ("a = 1)", PQLSyntaxError, 5, "found ')'"),
    ("a = 1 and", PQLSyntaxError, 9, "expected a condition but found end of input"),
    ("a and b = 1", PQLSyntaxError, 2, "after 'a' but found 'and'"),
    ("a", PQLSyntaxError, 1, "after 'a'"),
    ("a =", PQLSyntaxError, 3, "expected a value"),
    ('"US" = a', PQLSyntaxError, 0, "expected a condition but found '\"US\"'"),
    ("a == 1", PQLSyntaxError, 2, "unknown operator '=='"),
    ("a <> 1", PQLSyntaxError, 2, "unknown operator '<>'"),
    ("a = 1 && b = 2", PQLSyntaxError, 6, "unknown operator '&&'"),
    ("a ~ 1", PQLSyntaxError, 2, "unexpected character '~'"),
    ("a = 'open", PQLSyntaxError, 4, "unterminated string"),
    (r'a = "\q"', PQLSyntaxError, 5, "unknown escape"),
    ("`open = 1", PQLSyntaxError, 0, "unterminated"),
    ("a in []", PQLSyntaxError, 6, "expected a value in the list but found ']'"),
    ('a in ["x",]', PQLSyntaxError, 10, "found ']'"),
    ('a in "x"', PQLSyntaxError, 5, "expected '['"),
    ('a = date("2024-13-01")', PQLSyntaxError, 9, "ISO 8601 date"),
    ('a = date("31/01/2024")', PQLSyntaxError, 9, "ISO 8601 date"),
    ('a = datetime("2024-01-31")', PQLSyntaxError, 13, "ISO 8601 datetime"),
    ("a = date(2024, 2, 30)", PQLSyntaxError, 9, "not a valid date"),
    ("a.equals(1)", PQLSyntaxError, 9, "expected a string argument"),
    ('a.contains("x", 1)', PQLSyntaxError, 16, "true or false"),
    ('a.equals("x"', PQLSyntaxError, 12, "expected ')'"),
    ("a.exists(b)", PQLSyntaxError, 9, "expected ')'"),
    ("a.", PQLSyntaxError, 2, "after '.'"),
    ("t occurs", PQLSyntaxError, 8, "whole number"),
    ("t occurs -1 days before now", PQLSyntaxError, 9, "whole number"),
    ("t occurs 1.5 days before now", PQLSyntaxError, 9, "whole number"),
    ("t occurs 3 fortnights before now", PQLSyntaxError, 11, "time unit"),
    ("t occurs 3 days ago", PQLSyntaxError, 16, "'before' or 'after'"),
    ("t occurs 3 days before", PQLSyntaxError, 22, "'now'"),
    ("inSegment(1)", PQLSyntaxError, 10, "audience id string"),
    ('inSegment("a", "b")', PQLSyntaxError, 13, "expected ')'"),
    ('segmentMembership.get("n").get("i").status = "active"', PQLSyntaxError, 45, "'realized', 'existing', 'exited'"),
    ('segmentMembership.get("n").get("i").status in ["realized", "gone"]', PQLSyntaxError, 59, "membership status"),
    ('segmentMembership.get("n").get("i").status < "realized"', PQLSyntaxError, 43, "after .status"),
    ("segmentMembership.get(1)", PQLSyntaxError, 22, "namespace"),
    ("xEvent.count(a = 1)", PQLSyntaxError, 19, "comparison"),
    ("xEvent.count() > -1", PQLSyntaxError, 17, "non-negative"),
    ("xEvent.any()", PQLSyntaxError, 11, "expected a condition"),
    ("xEvent = 1", PQLSyntaxError, 7, "'.any('"),
    ("xEvent.any a = 1", PQLSyntaxError, 11, "'('"),
    ("not", PQLSyntaxError, 3, "a condition"),
    ("$1.a = 1", PQLSyntaxError, 0, "unexpected character '$'"),
    ("a = 1" + "0" * 5000, PQLSyntaxError, 4, "too long"),
    ("(" * (MAX_DEPTH + 1) + "a = 1" + ")" * (MAX_DEPTH + 1), PQLSyntaxError, MAX_DEPTH, "nests"),
    ("not " * (MAX_DEPTH + 1) + "a = 1", PQLSyntaxError, 4 * MAX_DEPTH, "nests"),
    # PQL outside the subset
    ("CHAIN(xEvent, timestamp, [A: WHAT(eventType = 'x')])", PQLUnsupported, 0, "CHAIN(...) is not supported"),
    ("sum(a) > 1", PQLUnsupported, 0, "sum(...) is not supported"),
    ("xEvent.filter(X.a = 1).count() > 1", PQLUnsupported, 7, "xEvent.filter(...) is not supported"),
    ("xEvent.sum(X.a) > 1", PQLUnsupported, 7, "xEvent.sum(...) is not supported"),
    ("xEvent.topN(X.t, 1)", PQLUnsupported, 7, "xEvent.topN(...) is not supported"),
    ("xEvent.first(X.t)", PQLUnsupported, 7, "xEvent.first(...)"),
    ("xEvent.timestamp = 1", PQLUnsupported, 7, "xEvent.timestamp is not supported"),
    ("xEvent[X.a = 1]", PQLUnsupported, 6, "xEvent[...] is not supported"),
    ("xEvent.any(xEvent.any(a = 1))", PQLUnsupported, 11, "xEvent inside an xEvent condition"),
    ('xEvent.any(inSegment("s"))', PQLUnsupported, 11, "inSegment(...) inside an xEvent"),
    ('a.matches("x.*")', PQLUnsupported, 2, ".matches(...) is not supported"),
    ('a.like("x%")', PQLUnsupported, 2, ".like(...) is not supported"),
    ("a.sum() > 1", PQLUnsupported, 2, ".sum(...) is not supported"),
    ("person.birthdate.getMonth() = 6", PQLUnsupported, 17, ".getMonth(...) is not supported"),
    ("a = currentYear()", PQLUnsupported, 4, "currentYear(...) is not supported"),
    ("homeAddress.stateProvince = workAddress.stateProvince", PQLUnsupported, 28, "comparing with the field"),
    ("select X from xEvent where X.a = 1", PQLUnsupported, 0, "select ... from is not supported"),
    ("a = 1 where b = 2", PQLUnsupported, 6, "select ... from is not supported"),
    ("t occurs before now", PQLUnsupported, 9, "occurs before ... is not supported"),
    ('t occurs between date("2024-01-01") and now', PQLUnsupported, 9, "occurs between"),
    ('t occurs < 3 days before date("2024-01-01")', PQLUnsupported, 25, "only 'now'"),
    ("segmentMembership = 1", PQLUnsupported, 18, "segmentMembership is not supported"),
    ("segmentMembership.foo", PQLUnsupported, 18, "segmentMembership.foo is not supported"),
    ('segmentMembership.get("n").status = "realized"', PQLUnsupported, 27, "segmentMembership.get(...).status"),
    (
        'segmentMembership.get("n").get("i").get("j").status = "realized"',
        PQLUnsupported,
        36,
        "a third .get(...)",
    ),
    (
        'segmentMembership.get("n").get("i").lastQualificationTime occurs today',
        PQLUnsupported,
        36,
        ".lastQualificationTime",
    ),
    ('segmentMembership.get("n").get("i") = 1', PQLUnsupported, 36, "segmentMembership.get(...).get(...) is not"),
    ('segmentMembership.get("n").get("i").payload = 1', PQLUnsupported, 36, ".payload is not supported"),
]


@pytest.mark.parametrize(("text", "error", "pos", "fragment"), REJECTED, ids=[r[0][:60] for r in REJECTED])
def test_rejected_forms_name_the_problem(text: str, error: type[PQLError], pos: int, fragment: str) -> None:
    with pytest.raises(PQLError) as caught:
        parse(text)
    assert type(caught.value) is error, caught.value.message
    assert caught.value.pos == pos, caught.value.message
    assert fragment in caught.value.message


def test_error_messages_say_expected_and_found() -> None:
    with pytest.raises(PQLSyntaxError) as caught:
        parse("(a = 1 and b = 2 and)")
    assert caught.value.message == "expected a condition but found ')'"
    with pytest.raises(PQLSyntaxError) as caught:
        parse('(a = 1 or b = 2 c = "x") and d = 1')
    assert caught.value.message == "expected ')' but found 'c'"
    assert caught.value.describe('(a = 1 or b = 2 c = "x") and d = 1').startswith(
        "expected ')' but found 'c' at position 16"
    )


_ALPHABET = [
    *"abcXyz_019 .,()[]=!<>\"'`\\-\n",
    " and ",
    " or ",
    "not ",
    " in ",
    " notIn ",
    "xEvent.",
    "any(",
    "count(",
    ")",
    ".exists()",
    " occurs ",
    " days ",
    " before now",
    "segmentMembership",
    '.get("n")',
    ".status",
    ".payload.",
    "inSegment(",
    "date(",
    '"2024-01-31"',
    "=>",
    "e.",
    "select ",
]


def test_random_text_raises_only_pql_errors() -> None:
    rng = random.Random(20240131)
    outcomes = {"parsed": 0, "error": 0}
    for _ in range(600):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 30)))
        try:
            parse(text)
        except PQLError as error:
            assert 0 <= error.pos <= len(text), (text, error.pos)
            outcomes["error"] += 1
        else:
            outcomes["parsed"] += 1
    assert outcomes["error"] > 0


def test_mutated_valid_expressions_raise_only_pql_errors() -> None:
    rng = random.Random(7)
    texts = [text for text, _ in ACCEPTED]
    for _ in range(600):
        chars = list(rng.choice(texts))
        for _ in range(rng.randint(1, 3)):
            if not chars:
                break
            at = rng.randrange(len(chars))
            choice = rng.random()
            if choice < 0.4:
                del chars[at]
            elif choice < 0.7:
                chars.insert(at, rng.choice(_ALPHABET))
            else:
                chars[at], chars[-1] = chars[-1], chars[at]
        text = "".join(chars)
        try:
            parse(text)
        except PQLError as error:
            assert 0 <= error.pos <= len(text), (text, error.pos)
