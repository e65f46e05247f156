"""A pure-Python reading of segment evaluation, the random sandboxes it is checked on and the random expressions.

The oracle never builds SQL: it merges each profile's fragments in Python, reads memberships and events from plain
lists, and evaluates the PQL AST by the semantics ``pql/compile.py`` documents:

- a comparison on a value the profile lacks is false, and ``not`` negates that;
- merged attribute = the newest non-null value by (timestamp, batch, seq); with a dataSetPrecedence order the listed
  datasets outrank the others (and each other, first highest), then the newest wins;
- a realized/existing membership whose ``qualified_at`` is older than ``now - ttl days`` reads exited; a
  ``segmentMembership`` record carried by the profile's own fragments reads as its newest (by qualified_at,
  received_at, seq) status, realized when it has none;
- payload conditions hold only for an active (realized/existing) membership;
- ``xEvent.all`` needs at least one event; ``xEvent.count`` counts 0 for a profile without events;
- ``occurs`` compares the distance from now with N units, where ``now ± N months/years`` is calendar arithmetic that
  clamps the day to the end of the month and ``=`` means the same truncated unit (ISO weeks start on Monday).

:class:`World` holds one sandbox's data (and writes it into a profile store's tables), :class:`Oracle` evaluates
expressions on it, :class:`World.fold` is the oracle's reading of how an evaluation changes a segment's memberships,
and :class:`Gen` draws random expressions.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb

from audiencehub.domain.segments import MemberSource, SegmentCounts
from audiencehub.pql import ast as A
from audiencehub.pql.compile import Fields

UTC = dt.UTC
ACTIVE = ("realized", "existing")
UNITS: tuple[A.TimeUnit, ...] = ("seconds", "minutes", "hours", "days", "weeks", "months", "years")
AMOUNTS = (0, 1, 2, 3, 7, 13, 30)
OPS: tuple[A.CompareOp, ...] = ("=", "!=", "<", "<=", ">", ">=")
TIME_OPS: tuple[A.CompareOp, ...] = ("=", "<", "<=", ">", ">=")  # '!=' has its own (xfail) test
QUANTIFIERS: tuple[Literal["any", "all", "count"], ...] = ("any", "all", "count")
MATCHES: tuple[Literal["contains", "startsWith", "endsWith", "equals"], ...] = (
    "contains",
    "startsWith",
    "endsWith",
    "equals",
)

DS_A, DS_B = "5f00000000000000000000aa", "5f00000000000000000000bb"
ENTITY_DS = "5f00000000000000000000cc"
EV_1, EV_2 = "5f00000000000000000000e1", "5f00000000000000000000e2"
ORDERS: tuple[tuple[str, ...] | None, ...] = (None, (DS_A, DS_B), (DS_B, DS_A), (DS_B,))
"""Merge policies a segment may be compiled with: time order, or dataSetPrecedence lists (the last leaves DS_A out)."""

PROFILE_FIELDS = {
    "person.name": "VARCHAR",
    "homeAddress.country": "VARCHAR",
    "person.age": "BIGINT",
    "loyalty.points": "DOUBLE",
    "flags.vip": "BOOLEAN",
    "person.birthDate": "DATE",
    "lastSeen": "TIMESTAMPTZ",
    "interests": "VARCHAR[]",
    "ghost.field": "VARCHAR",  # in the union schema, in no fragment table
}
DATASETS = {
    DS_A: [f for f in PROFILE_FIELDS if f != "ghost.field"],
    DS_B: ["person.name", "homeAddress.country", "person.age", "loyalty.points", "flags.vip", "lastSeen"],
}
EVENT_FIELDS = {
    "timestamp": "TIMESTAMPTZ",
    "eventType": "VARCHAR",
    "commerce.order.priceTotal": "DOUBLE",
    "quantity": "BIGINT",
}
EVENT_DATASETS = {
    EV_1: ["timestamp", "eventType", "commerce.order.priceTotal"],
    EV_2: ["timestamp", "eventType", "quantity"],
}
PAYLOAD_A1 = {"tier": "VARCHAR", "score": "BIGINT", "since": "TIMESTAMPTZ", "vip": "BOOLEAN"}
RECORD_SEGMENTS = (("ns1", "legacy1"), ("ns2", "legacy1"), ("ns1", "legacy2"))

NAMES = ("Alice", "alice", "ALICE", "Bob", "bobby", "Émile", "émile", "", "Zoë", "al")
COUNTRIES = ("US", "FR", "us", "DE")
POINTS = (0.0, 10.5, 99.99, -3.25, 100.0, 42.0)
INTERESTS = ("Golf", "golf", "Tennis", "chess")
EVENT_TYPES = ("purchase", "Purchase", "view", "cart.add")
TIERS = ("gold", "Gold", "silver", "bronze")
NOTES = ("hello", "HELLO world", "n/a")


def table(name: str) -> str:
    return "m_" + "".join(c for c in name.lower() if c.isalnum())


def fragment_table(dataset_id: str) -> str:
    return "f_" + "".join(c for c in dataset_id.lower() if c.isalnum())


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- time ------------------------------------------------------------------------------------------------------------


def add_months(t: dt.datetime, months: int) -> dt.datetime:
    """``t`` moved by whole calendar months, the day clamped to the end of the month (Mar 31 - 1 month = Feb 29)."""
    years, month0 = divmod(t.month - 1 + months, 12)
    year = t.year + years
    day = min(t.day, calendar.monthrange(year, month0 + 1)[1])
    return t.replace(year=year, month=month0 + 1, day=day)


@functools.cache
def shift(t: dt.datetime, amount: int, unit: str, sign: int) -> dt.datetime:
    if unit == "months":
        return add_months(t, sign * amount)
    if unit == "years":
        return add_months(t, sign * 12 * amount)
    return t + sign * dt.timedelta(**{unit: amount})


@functools.cache
def truncate(t: dt.datetime, unit: str) -> dt.datetime:
    t = t.astimezone(UTC)
    if unit == "seconds":
        return t.replace(microsecond=0)
    if unit == "minutes":
        return t.replace(second=0, microsecond=0)
    if unit == "hours":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "days":
        return day
    if unit == "weeks":
        return day - dt.timedelta(days=day.weekday())
    if unit == "months":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def instant(v: dt.date) -> dt.datetime:
    """A date as the instant it starts (midnight UTC); a date-time as itself."""
    if isinstance(v, dt.datetime):
        return v
    return dt.datetime(v.year, v.month, v.day, tzinfo=UTC)


def occurs(value: Any, n: A.TimeCondition, now: dt.datetime) -> bool:
    """``value occurs <op> N unit before|after now``: its distance from now (on that side of now) compared with N."""
    if value is None:
        return False
    at = instant(value)
    mark = shift(now, n.amount, n.unit, -1 if n.direction == "before" else 1)
    if n.op in ("=", "!="):
        same = truncate(at, n.unit) == truncate(mark, n.unit)
        return same if n.op == "=" else not same
    on_side = at <= now if n.direction == "before" else at >= now
    # Before now, a smaller distance is a later instant (after the mark); after now, an earlier one.
    nearer = at > mark if n.direction == "before" else at < mark
    farther = at < mark if n.direction == "before" else at > mark
    return {
        "<": nearer and on_side,
        "<=": (nearer or at == mark) and on_side,
        ">": farther,
        ">=": farther or at == mark,
    }[n.op]


def instants(now: dt.datetime, rng: random.Random) -> list[dt.datetime]:
    """Instants on and around every mark ``now ± N unit`` the generator can ask about, and some anywhere."""
    out = [now, now + dt.timedelta(microseconds=1), now - dt.timedelta(microseconds=1)]
    for unit in UNITS:
        for amount in AMOUNTS:
            for sign in (-1, 1):
                mark = shift(now, amount, unit, sign)
                out += [mark, mark + dt.timedelta(microseconds=1), mark - dt.timedelta(microseconds=1)]
                out.append(truncate(mark, unit))
    out += [now + dt.timedelta(seconds=rng.uniform(-4e8, 4e8)) for _ in range(60)]
    return out


# -- the sandbox -----------------------------------------------------------------------------------------------------


@dataclass
class Fragment:
    dataset: str
    pid: uuid.UUID
    ts: dt.datetime
    batch: str
    seq: int
    values: dict[str, Any]


@dataclass
class Row:
    """One membership: its status, when it took it, the run or job that wrote it, payload values."""

    status: str
    qualified_at: dt.datetime
    run_id: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Audience:
    audience_id: str
    namespace: str
    ttl: int
    payload_types: dict[str, str]
    rows: dict[uuid.UUID, Row]
    stored: bool = True
    """False: registered in ``audiences`` but without a membership table (the store skips it)."""

    def effective(self, pid: uuid.UUID, now: dt.datetime) -> Row | None:
        """The membership as read at ``now``: past its ttl, an active one reads exited (at its expiry)."""
        row = self.rows.get(pid) if self.stored else None
        if row is None:
            return None
        expiry = row.qualified_at + dt.timedelta(days=self.ttl)
        if row.status in ACTIVE and expiry < now:
            return Row("exited", expiry, row.run_id, row.payload)
        return row


@dataclass
class Record:
    """A ``segmentMembership`` entry of a profile fragment (``fragment_memberships``)."""

    pid: uuid.UUID
    ns: str
    segment_id: str
    status: str | None
    qualified_at: dt.datetime
    received_at: dt.datetime
    seq: int


@dataclass
class Event:
    dataset: str
    pid: uuid.UUID
    ts: dt.datetime
    values: dict[str, Any]


class World:
    """One sandbox: identities, profile fragments in two datasets, events, external audiences, imported memberships,
    and the oracle's own record of every segment's memberships."""

    def __init__(self, rng: random.Random, now: dt.datetime, profiles: int = 40) -> None:
        self.rng = rng
        self.seqs: set[int] = set()
        self.identities: list[tuple[str, str, uuid.UUID]] = []
        self.fragments: list[Fragment] = []
        self.events: list[Event] = []
        self.records: list[Record] = []
        self.segments: dict[str, Audience] = {}
        self.defined: set[str] = set()
        """The segment definitions' ids (what ``inSegment`` may name besides audiences and records)."""
        self.pool_now = now
        self.points_in_time = instants(now, rng)
        self.a1, self.a2, self.a3 = (str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(3))
        self.externals = {
            self.a1: Audience(self.a1, "CustomerAudienceUpload", 30, dict(PAYLOAD_A1), {}),
            self.a2: Audience(self.a2, "Other", 7, {"note": "VARCHAR"}, {}),
            self.a3: Audience(self.a3, "CustomerAudienceUpload", 30, {"tier": "VARCHAR"}, {}, stored=False),
        }
        self.orphans = [self.new_pid() for _ in range(3)]  # data for profiles the identity graph does not know
        for n in range(profiles):
            self.add_profile(now, n)
        for pid in self.orphans:
            self.add_fragments(pid, now)
            self.add_events(pid, now)

    # -- random data ---------------------------------------------------------------------------------------------

    def new_pid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def seq(self) -> int:
        while True:
            s = self.rng.randrange(10**9)
            if s not in self.seqs:
                self.seqs.add(s)
                return s

    def value(self, name: str, sql_type: str) -> Any:
        """A random value of a field (profile, event or payload): drawn from small pools so that literals hit."""
        rng = self.rng
        if sql_type == "VARCHAR":
            pool = {
                "homeAddress.country": COUNTRIES,
                "eventType": EVENT_TYPES,
                "tier": TIERS,
                "note": NOTES,
            }.get(name, NAMES)
            return rng.choice(pool)
        if sql_type == "BIGINT":
            return rng.randint(15, 70) if name != "quantity" else rng.randint(0, 5)
        if sql_type == "DOUBLE":
            return rng.choice(POINTS)
        if sql_type == "BOOLEAN":
            return rng.random() < 0.5
        if sql_type == "DATE":
            return instant_date(rng.choice(self.points_in_time))
        if sql_type == "TIMESTAMPTZ":
            return rng.choice(self.points_in_time)
        if sql_type == "VARCHAR[]":
            items: list[str | None] = list(rng.sample(INTERESTS, rng.randint(0, 3)))
            if rng.random() < 0.15:
                items.insert(rng.randint(0, len(items)), None)
            return items
        raise AssertionError(sql_type)

    def add_profile(self, now: dt.datetime, n: int) -> uuid.UUID:
        pid = self.new_pid()
        for k in range(self.rng.randint(1, 3)):
            self.identities.append(("Email" if k == 0 else "ECID", f"{pid.hex[:8]}.{n}.{k}@example.com", pid))
        if self.rng.random() < 0.9:
            self.add_fragments(pid, now)
        self.add_events(pid, now)
        for aud in self.externals.values():
            if self.rng.random() < 0.6:
                self.add_member(aud, pid, now)
        for ns, sid in RECORD_SEGMENTS:
            for _ in range(self.rng.choice((0, 0, 1, 2, 3))):
                self.add_record(pid, ns, sid, now)
        return pid

    def add_plain_profile(self, now: dt.datetime, values: dict[str, Any]) -> uuid.UUID:
        """A profile with one identity and one DS_A fragment holding ``values`` (its other leaves NULL)."""
        pid = self.new_pid()
        self.identities.append(("Email", f"{pid.hex}@example.com", pid))
        row = {leaf: values.get(leaf) for leaf in DATASETS[DS_A]}
        self.fragments.append(Fragment(DS_A, pid, now, "b1", self.seq(), row))
        return pid

    def add_fragments(self, pid: uuid.UUID, now: dt.datetime, rows: int | None = None) -> None:
        rng = self.rng
        for ds, leaves in DATASETS.items():
            if rows is None and rng.random() < 0.3:
                continue
            for _ in range(rng.randint(1, 3) if rows is None else rows):
                ts = now - rng.choice((dt.timedelta(0), dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(40)))
                values = {
                    leaf: None if rng.random() < 0.35 else self.value(leaf, PROFILE_FIELDS[leaf]) for leaf in leaves
                }
                self.fragments.append(Fragment(ds, pid, ts, rng.choice(("b1", "b2", "b10", "b9")), self.seq(), values))

    def add_events(self, pid: uuid.UUID, now: dt.datetime) -> None:
        rng = self.rng
        for _ in range(rng.choice((0, 0, 1, 2, 3, 5))):
            ds = rng.choice((EV_1, EV_2))
            values = {f: None if rng.random() < 0.15 else self.value(f, EVENT_FIELDS[f]) for f in EVENT_DATASETS[ds]}
            self.events.append(Event(ds, pid, now, values))

    def add_member(self, aud: Audience, pid: uuid.UUID, now: dt.datetime) -> None:
        rng = self.rng
        days = rng.choice((0, 1, 6, 7, 8, 29, 30, 31, 45))
        at = (
            now
            - dt.timedelta(days=days)
            + rng.choice((dt.timedelta(0), dt.timedelta(microseconds=1), -dt.timedelta(microseconds=1)))
        )
        status = rng.choice(("realized", "realized", "existing", "exited"))
        payload = {name: None if rng.random() < 0.2 else self.value(name, t) for name, t in aud.payload_types.items()}
        aud.rows[pid] = Row(status, at, f"run-{rng.randrange(100)}", payload)

    def add_record(self, pid: uuid.UUID, ns: str, sid: str, now: dt.datetime) -> None:
        rng = self.rng
        qualified = now - dt.timedelta(days=rng.choice((1, 2, 3)))
        received = now - dt.timedelta(hours=rng.choice((1, 2)))
        status = rng.choice((None, "realized", "existing", "exited"))
        self.records.append(Record(pid, ns, sid, status, qualified, received, self.seq()))

    def mutate(self, now: dt.datetime) -> None:
        """Changes between evaluations: newer fragments, new events, audience runs, a profile gone, one new."""
        rng = self.rng
        self.points_in_time = instants(now, rng)
        pids = self.profile_ids()
        for pid in rng.sample(sorted(pids), len(pids) // 3):
            self.add_fragments(pid, now, rows=1)
        for pid in rng.sample(sorted(pids), len(pids) // 5):
            self.add_events(pid, now)
        for aud in self.externals.values():
            for pid in rng.sample(sorted(pids), len(pids) // 4):
                if pid in aud.rows and rng.random() < 0.5:
                    aud.rows[pid] = Row("exited", now, "run-next", aud.rows[pid].payload)
                else:
                    self.add_member(aud, pid, now)
        for pid in rng.sample(sorted(pids), 3):
            ns, sid = rng.choice(RECORD_SEGMENTS)
            self.add_record(pid, ns, sid, now)
        gone = rng.choice(sorted(pids))
        self.identities = [i for i in self.identities if i[2] != gone]
        self.add_profile(now, len(self.identities))

    def profile_ids(self) -> set[uuid.UUID]:
        return {pid for _, _, pid in self.identities}

    # -- the store's tables --------------------------------------------------------------------------------------

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Writes everything but the segments' memberships (the evaluations' own) into the store's tables."""
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM identities")
        insert(con, "INSERT INTO identities VALUES (?, ?, ?)", [list(i) for i in self.identities])
        for ds, leaves in DATASETS.items():
            tbl = fragment_table(ds)
            cols = "".join(f", {q(leaf)} {PROFILE_FIELDS[leaf]}" for leaf in leaves)
            con.execute(
                f"CREATE OR REPLACE TABLE {tbl} (__ah_profile_id UUID NOT NULL, __ah_batch VARCHAR NOT NULL, "
                f"__ah_ts TIMESTAMPTZ NOT NULL, __ah_seq BIGINT NOT NULL{cols})"
            )
            rows = [
                [f.pid, f.batch, f.ts, f.seq, *(f.values[leaf] for leaf in leaves)]
                for f in self.fragments
                if f.dataset == ds
            ]
            insert(con, f"INSERT INTO {tbl} VALUES ({', '.join('?' * (4 + len(leaves)))})", rows)
            con.execute("INSERT OR REPLACE INTO fragment_tables VALUES (?, 'profile', ?)", [ds, tbl])
        # An entity (lookup) dataset with a field of the same name: not a profile fragment, never merged.
        tbl = fragment_table(ENTITY_DS)
        con.execute(
            f"CREATE OR REPLACE TABLE {tbl} (__ah_ns VARCHAR NOT NULL, __ah_id VARCHAR NOT NULL, "
            "__ah_batch VARCHAR NOT NULL, __ah_ts TIMESTAMPTZ NOT NULL, __ah_seq BIGINT NOT NULL, "
            '"person.name" VARCHAR)'
        )
        con.execute(f"INSERT INTO {tbl} VALUES ('sku', 'x', 'b1', now(), 1, 'Alice')")
        con.execute("INSERT OR REPLACE INTO fragment_tables VALUES (?, 'entity', ?)", [ENTITY_DS, tbl])
        for ds, names in EVENT_DATASETS.items():
            tbl = fragment_table(ds)
            cols = "".join(f", {q(name)} {EVENT_FIELDS[name]}" for name in names)
            con.execute(
                f"CREATE OR REPLACE TABLE {tbl} (__ah_profile_id UUID NOT NULL, __ah_batch VARCHAR NOT NULL, "
                f"__ah_ts TIMESTAMPTZ NOT NULL, __ah_seq BIGINT NOT NULL{cols})"
            )
            rows = [
                [e.pid, "b1", e.ts, n, *(e.values[name] for name in names)]
                for n, e in enumerate(self.events)
                if e.dataset == ds
            ]
            insert(con, f"INSERT INTO {tbl} VALUES ({', '.join('?' * (4 + len(names)))})", rows)
            con.execute("INSERT OR REPLACE INTO fragment_tables VALUES (?, 'event', ?)", [ds, tbl])
        for aud in self.externals.values():
            tbl = table(aud.audience_id)
            con.execute(
                "INSERT INTO audiences VALUES (?, ?, ?, ?) ON CONFLICT (audience_id) DO UPDATE SET "
                "namespace = excluded.namespace, ttl_days = excluded.ttl_days, tbl = excluded.tbl",
                [aud.audience_id, aud.namespace, aud.ttl, tbl],
            )
            if not aud.stored:
                continue
            cols = "".join(f", {q(name)} {t}" for name, t in aud.payload_types.items())
            con.execute(
                f"CREATE OR REPLACE TABLE {tbl} (__ah_profile_id UUID NOT NULL, __ah_status VARCHAR NOT NULL, "
                f"__ah_qualified_at TIMESTAMPTZ NOT NULL, __ah_run_id VARCHAR NOT NULL{cols})"
            )
            rows = [
                [pid, r.status, r.qualified_at, r.run_id, *(r.payload[name] for name in aud.payload_types)]
                for pid, r in aud.rows.items()
            ]
            marks = ", ".join("?" * (4 + len(aud.payload_types)))
            insert(con, f"INSERT INTO {tbl} VALUES ({marks})", rows)
        con.execute("DELETE FROM fragment_memberships")
        insert(
            con,
            "INSERT INTO fragment_memberships VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [[r.pid, r.ns, r.segment_id, r.status, r.qualified_at, DS_A, r.received_at, r.seq] for r in self.records],
        )
        con.execute("COMMIT")

    # -- compiling -----------------------------------------------------------------------------------------------

    def fields(self) -> Fields:
        return Fields(PROFILE_FIELDS, EVENT_FIELDS)

    def source(self, n: A.Membership) -> tuple[MemberSource, dict[str, str]]:
        """The resolver: what the segmentation service answers for the sandbox's segments, audiences and records."""
        if n.segment_id in self.defined and n.namespace in (None, "ups"):
            return MemberSource("segment", n.segment_id, "ups"), {}
        aud = self.externals.get(n.segment_id)
        if aud is not None and n.namespace in (None, aud.namespace):
            return MemberSource("audience", aud.audience_id, aud.namespace), aud.payload_types
        spaces = sorted({ns for ns, sid in RECORD_SEGMENTS if sid == n.segment_id})
        if n.namespace in spaces or (n.namespace is None and spaces):
            return MemberSource("records", n.segment_id, n.namespace or spaces[0]), {}
        raise A.PQLError(f"no audience {n.segment_id!r}", n.pos)

    # -- the oracle's reading of an evaluation's writes ----------------------------------------------------------

    def fold(self, segment_id: str, members: set[uuid.UUID], now: dt.datetime, job: str, ttl: int) -> SegmentCounts:
        """The segment's memberships after an evaluation at ``now`` found ``members``: a profile that qualifies
        enters (realized) unless it was an active member (existing); an active member that no longer qualifies exits
        now; an exited one stays as it was (a membership past its ttl exited when it expired)."""
        old = self.segments.get(segment_id)
        rows: dict[uuid.UUID, Row] = {}
        before = {} if old is None else {pid: old.effective(pid, now) for pid in old.rows}
        for pid in members:
            was = before.get(pid)
            rows[pid] = Row("existing" if was is not None and was.status in ACTIVE else "realized", now, job)
        for pid, was in before.items():
            if pid in members or was is None:
                continue
            rows[pid] = was if was.status == "exited" else Row("exited", now, job)
        self.segments[segment_id] = Audience(segment_id, "ups", ttl, {}, rows)
        statuses = [r.status for r in rows.values()]
        return SegmentCounts(
            realized=statuses.count("realized"),
            existing=statuses.count("existing"),
            exited=sum(1 for r in rows.values() if r.status == "exited" and r.run_id == job),
        )


def insert(con: duckdb.DuckDBPyConnection, sql: str, rows: list[list[Any]]) -> None:
    if rows:
        con.executemany(sql, rows)


def instant_date(t: dt.datetime) -> dt.date:
    return t.astimezone(UTC).date()


# -- the evaluator ---------------------------------------------------------------------------------------------------

Read = Callable[[A.Field], tuple[Any, str]]


def literal(v: A.Value, sql_type: str) -> Any:
    """The literal as a value of the field's type (dates as dates, date-times as aware instants)."""
    if sql_type in ("DATE", "TIMESTAMPTZ"):
        text = str(v.value)
        if sql_type == "DATE" and len(text) == 10:
            return dt.date.fromisoformat(text)
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return v.value


def compare(a: Any, op: str, b: Any) -> bool:
    if isinstance(a, dt.date) and isinstance(b, dt.date) and type(a) is not type(b):
        a, b = instant(a), instant(b)  # a date compared with an instant: the instant the date starts
    return {
        "=": a == b,
        "!=": a != b,
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[op]


def string_match(v: Any, n: A.StringMatch, sql_type: str) -> bool:
    if v is None:
        return False
    want = str(n.value.value)
    if sql_type == "VARCHAR[]":
        items = [x for x in v if x is not None]
        if not n.case_sensitive:
            items, want = [x.lower() for x in items], want.lower()
        return want in items
    text = str(v)
    if not n.case_sensitive:
        text, want = text.lower(), want.lower()
    return {
        "contains": want in text,
        "startsWith": text.startswith(want),
        "endsWith": text.endswith(want),
        "equals": text == want,
    }[n.op]


class Oracle:
    """Evaluates expressions on a :class:`World` as it stands, at ``now``."""

    def __init__(self, world: World, now: dt.datetime) -> None:
        self.world = world
        self.now = now
        self.profiles = world.profile_ids()
        self.fragments: dict[uuid.UUID, list[Fragment]] = {}
        for f in world.fragments:
            self.fragments.setdefault(f.pid, []).append(f)
        self.events: dict[uuid.UUID, list[Event]] = {}
        for e in world.events:
            self.events.setdefault(e.pid, []).append(e)
        self._merged: dict[tuple[uuid.UUID, str, tuple[str, ...] | None], Any] = {}

    def members(self, node: A.Node, precedence: tuple[str, ...] | None) -> set[uuid.UUID]:
        return {pid for pid in self.profiles if self.holds(node, pid, precedence)}

    def merged(self, pid: uuid.UUID, leaf: str, precedence: tuple[str, ...] | None) -> Any:
        key = (pid, leaf, precedence)
        if key not in self._merged:
            order = precedence or ()

            def rank(f: Fragment) -> tuple[int, dt.datetime, str, int]:
                outranks = len(order) - order.index(f.dataset) if f.dataset in order else 0
                return (outranks, f.ts, f.batch, f.seq)

            found = [f for f in self.fragments.get(pid, []) if f.values.get(leaf) is not None]
            self._merged[key] = max(found, key=rank).values[leaf] if found else None
        return self._merged[key]

    def status(self, source: MemberSource, pid: uuid.UUID) -> Row | None:
        if source.kind == "records":
            rows = [
                r
                for r in self.world.records
                if r.pid == pid and r.ns == source.namespace and r.segment_id == source.ref
            ]
            if not rows:
                return None
            newest = max(rows, key=lambda r: (r.qualified_at, r.received_at, r.seq))
            return Row(newest.status or "realized", newest.qualified_at, "")
        aud = (self.world.segments if source.kind == "segment" else self.world.externals).get(source.ref)
        return None if aud is None else aud.effective(pid, self.now)

    def holds(self, n: A.Node, pid: uuid.UUID, precedence: tuple[str, ...] | None) -> bool:
        def read(f: A.Field) -> tuple[Any, str]:
            return self.merged(pid, f.name, precedence), PROFILE_FIELDS[f.name]

        return self.truth(n, read, pid)

    def truth(self, n: A.Node, read: Read, pid: uuid.UUID | None = None) -> bool:
        if isinstance(n, A.And):
            return all(self.truth(i, read, pid) for i in n.items)
        if isinstance(n, A.Or):
            return any(self.truth(i, read, pid) for i in n.items)
        if isinstance(n, A.Not):
            return not self.truth(n.item, read, pid)
        if isinstance(n, A.Const):
            return n.value
        if isinstance(n, A.Membership):
            assert pid is not None
            return self.membership(n, pid)
        if isinstance(n, A.EventCondition):
            assert pid is not None
            return self.event_condition(n, pid)
        value, sql_type = read(n.field)
        if isinstance(n, A.Compare):
            return value is not None and compare(value, n.op, literal(n.value, sql_type))
        if isinstance(n, A.StringMatch):
            return string_match(value, n, sql_type)
        if isinstance(n, A.InList):
            if value is None:
                return False
            hit = any(compare(value, "=", literal(v, sql_type)) for v in n.values)
            return hit != n.negate
        if isinstance(n, A.Exists):
            return (value is not None) != n.negate
        if isinstance(n, A.TimeCondition):
            return occurs(value, n, self.now)
        raise AssertionError(n)

    def membership(self, n: A.Membership, pid: uuid.UUID) -> bool:
        source, types = self.world.source(n)
        row = self.status(source, pid)
        if row is None or row.status not in n.statuses:
            return False
        if n.payload is None:
            return True
        if row.status not in ACTIVE:
            return False
        return self.truth(n.payload, lambda f: (row.payload.get(f.name), types[f.name]))

    def event_condition(self, n: A.EventCondition, pid: uuid.UUID) -> bool:
        events = self.events.get(pid, [])
        cond = n.condition

        def ok(e: Event) -> bool:
            return cond is None or self.truth(cond, lambda f: (e.values.get(f.name), EVENT_FIELDS[f.name]))

        if n.quantifier == "any":
            return any(ok(e) for e in events)
        if n.quantifier == "all":
            return bool(events) and all(ok(e) for e in events)
        assert n.op is not None and n.count is not None
        return compare(sum(1 for e in events if ok(e)), n.op, n.count)


# -- random expressions ----------------------------------------------------------------------------------------------


class Gen:
    """Random expressions over a world's fields, audiences, imported memberships and (given) segments."""

    def __init__(self, rng: random.Random, world: World) -> None:
        self.rng = rng
        self.world = world

    def profile(self, depth: int, segments: tuple[str, ...] = ()) -> A.Node:
        rng = self.rng
        if depth > 0 and rng.random() < 0.55:
            kind = rng.choice(("and", "or", "not"))
            if kind == "not":
                return A.Not(self.profile(depth - 1, segments), 0)
            items = tuple(self.profile(depth - 1, segments) for _ in range(rng.randint(2, 3)))
            return A.And(items, 0) if kind == "and" else A.Or(items, 0)
        r = rng.random()
        if segments and r < 0.3:
            sid = rng.choice(segments)
            return A.Membership(rng.choice((None, "ups")), sid, self.statuses(), None, 0)
        if r < 0.45:
            return self.membership()
        if r < 0.6:
            return self.events()
        if r < 0.63:
            return A.Const(rng.random() < 0.5, 0)
        return self.predicate(PROFILE_FIELDS)

    def statuses(self) -> tuple[str, ...]:
        return self.rng.choice(
            (
                A.ACTIVE_STATUSES,
                A.ACTIVE_STATUSES,
                ("exited",),
                ("realized",),
                ("existing",),
                ("realized", "exited"),
                A.STATUSES,
            )
        )

    def membership(self) -> A.Node:
        rng = self.rng
        w = self.world
        if rng.random() < 0.3:
            space, sid = rng.choice(RECORD_SEGMENTS)
            named = space if sid == "legacy1" or rng.random() < 0.5 else None
            return A.Membership(named, sid, self.statuses(), None, 0)
        aud = w.externals[rng.choice((w.a1, w.a1, w.a2, w.a3))]
        ns = rng.choice((None, aud.namespace))
        payload = None
        statuses = self.statuses()
        if rng.random() < 0.5:
            payload = self.condition(aud.payload_types, rng.randint(0, 2))
            statuses = A.ACTIVE_STATUSES if rng.random() < 0.8 else statuses
        return A.Membership(ns, aud.audience_id, statuses, payload, 0)

    def events(self) -> A.Node:
        rng = self.rng
        quantifier = rng.choice(QUANTIFIERS)
        cond = self.condition(EVENT_FIELDS, rng.randint(0, 2))
        if quantifier == "count":
            return A.EventCondition(
                "count", None if rng.random() < 0.3 else cond, rng.choice(OPS), rng.randint(0, 3), 0
            )
        return A.EventCondition(quantifier, cond, None, None, 0)

    def condition(self, fields: dict[str, str], depth: int) -> A.Node:
        """A condition on one scope's fields (an event's, a payload's): no memberships, no events."""
        rng = self.rng
        if depth > 0 and rng.random() < 0.6:
            kind = rng.choice(("and", "or", "not"))
            if kind == "not":
                return A.Not(self.condition(fields, depth - 1), 0)
            items = tuple(self.condition(fields, depth - 1) for _ in range(rng.randint(2, 3)))
            return A.And(items, 0) if kind == "and" else A.Or(items, 0)
        if rng.random() < 0.05:
            return A.Const(rng.random() < 0.5, 0)
        return self.predicate(fields)

    def predicate(self, fields: dict[str, str]) -> A.Node:
        rng = self.rng
        name = rng.choice(sorted(fields))
        t = fields[name]
        f = A.Field(tuple(name.split(".")), 0)
        kinds = ["compare", "in", "exists"]
        if t == "VARCHAR":
            kinds += ["match", "match"]
        if t in ("DATE", "TIMESTAMPTZ"):
            kinds += ["occurs", "occurs", "occurs"]
        if t == "VARCHAR[]":
            kinds = ["match", "match", "exists"]
        kind = rng.choice(kinds)
        if kind == "exists":
            return A.Exists(f, rng.random() < 0.4, 0)
        if kind == "compare":
            return A.Compare(f, rng.choice(OPS), self.literal(name, t), 0)
        if kind == "in":
            values = tuple(self.literal(name, t) for _ in range(rng.randint(1, 3)))
            return A.InList(f, values, rng.random() < 0.3, 0)
        if kind == "occurs":
            unit = rng.choice(UNITS)
            op = rng.choice(TIME_OPS)
            return A.TimeCondition(f, op, rng.choice(AMOUNTS), unit, rng.choice(("before", "after")), 0)
        return self.match(f, name, t)

    def match(self, f: A.Field, name: str, t: str) -> A.Node:
        rng = self.rng
        if t == "VARCHAR[]":
            text = rng.choice((*INTERESTS, "GOLF", "ches"))
            return A.StringMatch(f, "contains", A.Value(text, "string", 0), rng.random() < 0.5, 0)
        source = str(self.world.value(name, t))
        start = rng.randint(0, len(source))
        end = rng.randint(start, len(source))
        op = rng.choice(MATCHES)
        text = source if op == "equals" and rng.random() < 0.7 else source[start:end]
        text = rng.choice((text, text.upper(), text.lower(), text))
        return A.StringMatch(f, op, A.Value(text, "string", 0), rng.random() < 0.5, 0)

    def literal(self, name: str, t: str) -> A.Value:
        rng = self.rng
        raw = self.world.value(name, t)
        if t == "BIGINT" and rng.random() < 0.2:
            raw = raw + 0.5
        if t == "DOUBLE" and rng.random() < 0.3:
            raw = round(raw)
        if t == "DATE" and rng.random() < 0.15:
            raw = rng.choice(self.world.points_in_time)
        if t == "TIMESTAMPTZ" and rng.random() < 0.15:
            raw = instant_date(rng.choice(self.world.points_in_time))
        if isinstance(raw, bool):
            return A.Value(raw, "boolean", 0)
        if isinstance(raw, int | float):
            return A.Value(raw, "number", 0)
        if isinstance(raw, dt.datetime):
            zone = rng.choice(
                (UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-5, minutes=-30)))
            )
            text = raw.astimezone(zone).isoformat()
            if zone is UTC:  # also written with Z, or without a zone (read as UTC)
                text = text.replace("+00:00", rng.choice(("+00:00", "Z", "")))
            return A.Value(text, rng.choice(("datetime", "datetime", "string")), 0)
        if isinstance(raw, dt.date):
            return A.Value(raw.isoformat(), rng.choice(("date", "date", "string")), 0)
        return A.Value(str(raw), "string", 0)
