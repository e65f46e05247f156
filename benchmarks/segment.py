"""Segmentation benchmark: 100 segment definitions over N profiles and 20 external audiences.

    .venv/bin/python benchmarks/segment.py --profiles 10000000 --threads 2

Builds a sandbox's profile store directly with DuckDB SQL (the tables, columns, indexes and registrations the
store's own write paths make): N profiles in ``identities`` (a fifth of them with a second identity), one profile
fragment dataset with five typed attributes (95% of profiles have a record; a few values are missing), and 20
external audiences (membership tables of 5%..50% of the profiles, some members exited or past the 30-day ttl, a
payload column ``tier``). Then 100 segment definitions, 80 on attributes and audiences and 20 that read those
segments (2 dependency levels), are compiled with ``compile_segment`` into one plan per level and evaluated with
``DuckDBProfileStore.evaluate``: a first evaluation (every member realized) and a second one over the same data
(the steady state: members existing). The floor, timed in the same run on the same database file and connection
settings, is the bare engine writing the same 100 member lists as hand-written queries, one
``CREATE TABLE s_k AS SELECT profile_id ...`` per segment that reads only the tables it needs, in one transaction.
Both sides must find the same members for every segment (counts and sets; the benchmark fails otherwise).
Prints seconds, segments x profiles per second, the ratio to the floor, and where the store's time goes.

``--store lake`` evaluates with the lake profile store instead: the same tables, written as Parquet files of one
version (profile ids as text) and committed through a SQLite metadata store, evaluated by ``--engine duckdb`` or
``--engine spark`` (``--spark-master``, default ``local[2]``); the floor stays the bare DuckDB one, and each
evaluation's members are checked against it (counts, and sets read from the segments' membership tables).

    .venv/bin/python benchmarks/segment.py --profiles 1000000 --store lake --engine spark
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import resource
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from audiencehub.domain.segments import SEGMENT_NAMESPACE, Attribute, Flag, MemberSource, Payload, Plan, SegmentCounts
from audiencehub.engines.duckdb import connect
from audiencehub.metadata.store import Scope
from audiencehub.pql.ast import Membership
from audiencehub.pql.compile import Fields, compile_segment
from audiencehub.pql.parser import parse
from audiencehub.profile import segments as evaluation
from audiencehub.profile.columns import PROFILE_ID, QUALIFIED_AT, RUN_ID, STATUS, fragment_table_for, table_for
from audiencehub.profile.duckdb import SCHEMA, DuckDBProfileStore
from audiencehub.profile.lake import LakeProfileStore

SCOPE = Scope("bench@AdobeOrg", "prod")
NAMESPACE = "CustomerAudienceUpload"
TTL_DAYS = 30
AUDIENCES = 20
LEVEL1, LEVEL2 = 80, 20
FIELDS = {
    "_bench.country": "VARCHAR",
    "person.age": "BIGINT",
    "loyalty.points": "DOUBLE",
    "_bench.vip": "BOOLEAN",
    "person.signupDate": "DATE",
}
COUNTRIES = ["US", "US", "US", "US", "GB", "GB", "FR", "DE", "DE", "ES", "IT", "NL", "BR", "MX", "JP", "IN", "CA"]
P = PROFILE_ID


def h(salt: int, modulo: int) -> str:
    """A pseudo-random whole number from 0 to ``modulo`` - 1 for profile number ``i`` (SQL), one stream per salt."""
    return f"CAST(hash(i, {salt}) % {modulo} AS BIGINT)"


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


COUNTRY, AGE, POINTS, VIP, SIGNUP = (q(f) for f in FIELDS)


# ----- the store ------------------------------------------------------------------------------------------------


def build(con: duckdb.DuckDBPyConnection, n: int, now: dt.datetime) -> tuple[str, list[str], dict[str, float]]:
    """Fills an empty store file; answers the fragment dataset id, the audience ids and the build timings."""
    timings: dict[str, float] = {}
    statements = [s.strip() for s in SCHEMA.split(";") if s.strip()]
    for s in statements:
        if not s.startswith("CREATE INDEX"):
            con.execute(s)
    start = time.perf_counter()
    con.execute("CREATE TEMP TABLE base AS SELECT i, gen_random_uuid() AS pid FROM range(?) t(i)", [n])
    con.execute(
        "INSERT INTO identities SELECT 'Email', 'user' || i || '@example.com', pid FROM base "
        "UNION ALL SELECT 'ECID', 'ecid-' || i, pid FROM base WHERE i % 5 = 0"
    )
    timings["identities_s"] = time.perf_counter() - start

    dataset = str(uuid.uuid4())
    tbl = fragment_table_for(dataset)
    start = time.perf_counter()
    cols = "".join(f", {q(name)} {t}" for name, t in FIELDS.items())
    con.execute(
        f"CREATE TABLE {tbl} ({P} UUID NOT NULL, __ah_batch VARCHAR NOT NULL, __ah_ts TIMESTAMPTZ NOT NULL, "
        f"__ah_seq BIGINT NOT NULL{cols})"
    )
    countries = "[" + ", ".join(f"'{c}'" for c in COUNTRIES) + "]"
    con.execute(
        f"""INSERT INTO {tbl} SELECT pid, 'batch-1', $now, i + 1,
            CASE WHEN {h(1, 100)} < 3 THEN NULL ELSE {countries}[1 + {h(2, len(COUNTRIES))}] END,
            CASE WHEN {h(3, 100)} < 5 THEN NULL ELSE 18 + {h(4, 60)} END,
            {h(5, 100000)} / 100.0,
            {h(6, 10)} = 0,
            CAST($now AS DATE) - CAST({h(7, 3650)} AS INTEGER)
        FROM base WHERE i % 20 <> 7""",
        {"now": now - dt.timedelta(days=1)},
    )
    con.execute("INSERT INTO fragment_tables VALUES (?, 'profile', ?)", [dataset, tbl])
    timings["fragments_s"] = time.perf_counter() - start

    audiences = []
    start = time.perf_counter()
    for k in range(AUDIENCES):
        audience = str(uuid.uuid4())
        mt = table_for(audience)
        share = 500 + k * 4500 // (AUDIENCES - 1)  # 5% .. 50%, in 1/10000
        con.execute(
            f"CREATE TABLE {mt} ({P} UUID NOT NULL, {STATUS} VARCHAR NOT NULL, {QUALIFIED_AT} TIMESTAMPTZ NOT NULL, "
            f"{RUN_ID} VARCHAR NOT NULL, tier VARCHAR)"
        )
        # 5% of the rows exited, 2% qualified before the ttl (they read exited), the rest realized or existing.
        con.execute(
            f"""INSERT INTO {mt} SELECT pid,
                CASE WHEN h % 100 < 5 THEN 'exited' WHEN h % 100 < 40 THEN 'existing' ELSE 'realized' END,
                $now - to_days(CASE WHEN h % 100 BETWEEN 5 AND 6 THEN 40 ELSE CAST(h % 25 AS INTEGER) END),
                'run-{k}', ['gold', 'silver', 'bronze', NULL][1 + h % 7 % 4]
            FROM (SELECT pid, {h(100 + k, 1 << 40)} AS h FROM base) WHERE h % 10000 < {share}""",
            {"now": now},
        )
        con.execute("INSERT INTO audiences VALUES (?, ?, ?, ?)", [audience, NAMESPACE, TTL_DAYS, mt])
        audiences.append(audience)
    timings["audiences_s"] = time.perf_counter() - start

    start = time.perf_counter()
    for s in statements:
        if s.startswith("CREATE INDEX"):
            con.execute(s)
    con.execute(f"CREATE INDEX {q(tbl + '_key')} ON {tbl} ({P})")
    for audience in audiences:
        mt = table_for(audience)
        con.execute(f"CREATE INDEX {q(mt + '_profile')} ON {mt} ({P})")
    con.execute("DROP TABLE base")
    con.execute("CHECKPOINT")
    timings["indexes_s"] = time.perf_counter() - start
    return dataset, audiences, timings


# ----- the segments: PQL and the hand-written floor query of each ---------------------------------------------------


@dataclass
class Segment:
    id: str
    level: int
    pql: str
    floor: str
    """SELECT of the members' profile ids (column ``PROFILE_ID``), reading only the tables it needs."""


class Catalogue:
    def __init__(self, dataset: str, audiences: list[str], now: dt.datetime, seed: int) -> None:
        self.frag = fragment_table_for(dataset)
        self.audiences = audiences
        self.now = f"TIMESTAMPTZ '{now.isoformat()}'"
        self.rng = random.Random(seed)
        self.segments: list[Segment] = []

    # floor pieces
    def active(self, audience: str, extra: str = "") -> str:
        return (
            f"(SELECT {P} FROM {table_for(audience)} WHERE {STATUS} IN ('realized', 'existing') "
            f"AND {QUALIFIED_AT} >= {self.now} - INTERVAL {TTL_DAYS} DAY{extra})"
        )

    def frag_where(self, cond: str) -> str:
        return f"SELECT {P} FROM {self.frag} WHERE {cond}"

    def seg_table(self, k: int) -> str:
        return f"s_{k}"

    # pickers
    def aud(self, n: int = 1) -> list[str]:
        return self.rng.sample(self.audiences, n)

    def level1(self, count: int) -> None:
        r = self.rng
        makers: list[tuple[int, Callable[[], tuple[str, str]]]] = [
            (12, self.t_attr_member),
            (10, self.t_or_members),
            (10, self.t_not_member_points),
            (8, self.t_payload),
            (8, self.t_attrs),
            (6, self.t_vip_date),
            (8, self.t_three_members),
            (6, self.t_occurs),
            (4, self.t_none_of),
            (8, self.t_points_or_member),
        ]
        assert sum(w for w, _ in makers) == count
        for weight, make in makers:
            for _ in range(weight):
                pql, floor = make()
                self.segments.append(Segment(str(uuid.uuid4()), 1, pql, floor))
        r.shuffle(self.segments)

    def level2(self, count: int) -> None:
        firsts = list(range(len(self.segments)))
        makers = [self.l2_and, self.l2_and_not, self.l2_or, self.l2_points, self.l2_audience]
        for n in range(count):
            a, b = self.rng.sample(firsts, 2)
            pql, floor = makers[n % len(makers)](a, b)
            self.segments.append(Segment(str(uuid.uuid4()), 2, pql, floor))

    def t_attr_member(self) -> tuple[str, str]:
        (a,) = self.aud()
        c, age = self.rng.choice(COUNTRIES), self.rng.randrange(20, 60)
        return (
            f'_bench.country = "{c}" and inSegment("{a}") and person.age >= {age}',
            f"SELECT f.{P} FROM {self.frag} f SEMI JOIN {self.active(a)} m USING ({P}) "
            f"WHERE f.{COUNTRY} = '{c}' AND f.{AGE} >= {age}",
        )

    def t_or_members(self) -> tuple[str, str]:
        a, b = self.aud(2)
        return f'inSegment("{a}") or inSegment("{b}")', f"SELECT {P} FROM {self.active(a)} UNION {self.active(b)[1:-1]}"

    def t_not_member_points(self) -> tuple[str, str]:
        (a,) = self.aud()
        x = self.rng.randrange(100, 900)
        return (
            f'not inSegment("{a}") and loyalty.points > {x}',
            f"SELECT f.{P} FROM {self.frag} f ANTI JOIN {self.active(a)} m USING ({P}) WHERE f.{POINTS} > {x}",
        )

    def t_payload(self) -> tuple[str, str]:
        (a,) = self.aud()
        tier = self.rng.choice(["gold", "silver"])
        pql = f'segmentMembership.get("{NAMESPACE}").get("{a}").payload.tier = "{tier}"'
        members = self.active(a, f" AND tier = '{tier}'")
        if self.rng.random() < 0.5:
            return pql, f"SELECT {P} FROM {members}"
        return (
            f"{pql} and _bench.vip = true",
            f"SELECT m.{P} FROM {members} m SEMI JOIN (SELECT {P} FROM {self.frag} WHERE {VIP}) f USING ({P})",
        )

    def t_attrs(self) -> tuple[str, str]:
        lo = self.rng.randrange(18, 50)
        hi = lo + self.rng.randrange(5, 20)
        c1, c2 = self.rng.sample(sorted(set(COUNTRIES)), 2)
        return (
            f'person.age >= {lo} and person.age < {hi} and _bench.country in ["{c1}", "{c2}"]',
            self.frag_where(f"{AGE} >= {lo} AND {AGE} < {hi} AND {COUNTRY} IN ('{c1}', '{c2}')"),
        )

    def t_vip_date(self) -> tuple[str, str]:
        year = self.rng.randrange(2017, 2024)
        return (
            f'_bench.vip = true and person.signupDate >= "{year}-01-01"',
            self.frag_where(f"{VIP} AND {SIGNUP} >= DATE '{year}-01-01'"),
        )

    def t_three_members(self) -> tuple[str, str]:
        a, b, c = self.aud(3)
        return (
            f'inSegment("{a}") and inSegment("{b}") and not inSegment("{c}")',
            f"SELECT x.{P} FROM {self.active(a)} x SEMI JOIN {self.active(b)} y USING ({P}) "
            f"ANTI JOIN {self.active(c)} z USING ({P})",
        )

    def t_occurs(self) -> tuple[str, str]:
        days = self.rng.choice([30, 90, 365, 730])
        at = f"CAST(f.{SIGNUP} AS TIMESTAMPTZ)"
        window = f"{at} > {self.now} - INTERVAL {days} DAY AND {at} <= {self.now}"
        pql = f"person.signupDate occurs < {days} days before now"
        if self.rng.random() < 0.5:
            return pql, f"SELECT f.{P} FROM {self.frag} f WHERE {window}"
        (a,) = self.aud()
        return (
            f'{pql} and inSegment("{a}")',
            f"SELECT f.{P} FROM {self.frag} f SEMI JOIN {self.active(a)} m USING ({P}) WHERE {window}",
        )

    def t_none_of(self) -> tuple[str, str]:
        a, b = self.aud(2)
        return (
            f'not inSegment("{a}") and not inSegment("{b}")',
            f"SELECT x.{P} FROM (SELECT DISTINCT profile_id AS {P} FROM identities) x "
            f"ANTI JOIN {self.active(a)} y USING ({P}) ANTI JOIN {self.active(b)} z USING ({P})",
        )

    def t_points_or_member(self) -> tuple[str, str]:
        (a,) = self.aud()
        x = self.rng.randrange(800, 990)
        return (
            f'loyalty.points > {x} or inSegment("{a}")',
            f"SELECT {P} FROM {self.frag} WHERE {POINTS} > {x} UNION {self.active(a)[1:-1]}",
        )

    def l2_and(self, a: int, b: int) -> tuple[str, str]:
        sa, sb = self.segments[a], self.segments[b]
        return (
            f'inSegment("{sa.id}") and inSegment("{sb.id}")',
            f"SELECT {P} FROM {self.seg_table(a)} SEMI JOIN {self.seg_table(b)} USING ({P})",
        )

    def l2_and_not(self, a: int, b: int) -> tuple[str, str]:
        sa, sb = self.segments[a], self.segments[b]
        return (
            f'inSegment("{sa.id}") and not inSegment("{sb.id}")',
            f"SELECT {P} FROM {self.seg_table(a)} ANTI JOIN {self.seg_table(b)} USING ({P})",
        )

    def l2_or(self, a: int, b: int) -> tuple[str, str]:
        sa, sb = self.segments[a], self.segments[b]
        return (
            f'inSegment("{sa.id}") or inSegment("{sb.id}")',
            f"SELECT {P} FROM {self.seg_table(a)} UNION SELECT {P} FROM {self.seg_table(b)}",
        )

    def l2_points(self, a: int, _: int) -> tuple[str, str]:
        sa = self.segments[a]
        x = self.rng.randrange(100, 900)
        return (
            f'inSegment("{sa.id}") and loyalty.points > {x}',
            f"SELECT f.{P} FROM {self.frag} f SEMI JOIN {self.seg_table(a)} USING ({P}) WHERE f.{POINTS} > {x}",
        )

    def l2_audience(self, a: int, _: int) -> tuple[str, str]:
        sa = self.segments[a]
        (aud,) = self.aud()
        return (
            f'inSegment("{sa.id}") and inSegment("{aud}")',
            f"SELECT {P} FROM {self.seg_table(a)} SEMI JOIN {self.active(aud)} m USING ({P})",
        )


def plans(segs: list[Segment], audiences: list[str], now: dt.datetime) -> list[Plan]:
    """One plan per dependency level, compiled as the Segmentation Service compiles a job."""
    known = {s.id for s in segs}

    def resolve(n: Membership) -> tuple[MemberSource, dict[str, str]]:
        if n.segment_id in known:
            return MemberSource("segment", n.segment_id, SEGMENT_NAMESPACE), {}
        assert n.segment_id in audiences, n.segment_id
        return MemberSource("audience", n.segment_id, NAMESPACE), {"tier": "VARCHAR"}

    fields = Fields(FIELDS, {})
    out = []
    for level in (1, 2):
        plan = Plan(now)
        for s in segs:
            if s.level == level:
                compile_segment(plan, s.id, parse(s.pql), fields, resolve)
        out.append(plan)
    return out


# ----- timing ------------------------------------------------------------------------------------------------------

KINDS = [
    ("query", re.compile(r'INSERT INTO "seg_')),  # a plan's result table: the evaluation and its write
    ("create", re.compile(r"CREATE OR REPLACE TABLE")),
    ("counts", re.compile(r"SELECT count")),
    ("views", re.compile(r"CREATE OR REPLACE VIEW")),
    ("register", re.compile(r"INSERT INTO (audiences|segment_results)")),
    ("drop old", re.compile(r"DROP TABLE")),
    ("commit", re.compile(r"COMMIT")),
]


WHAT_IF = {
    "none": "the store as it is",
    "unsorted": "result tables written in the engine's order, not sorted by profile id",
    "compressed": "result tables' codes compressed as DuckDB chooses, not stored uncompressed",
}


class TimedCursor:
    """A cursor that adds each statement's time to its kind's total (the statements of ``evaluate``); with a what-if,
    it changes the statements that write segment membership tables (to measure what an alternative would cost)."""

    def __init__(self, cur: duckdb.DuckDBPyConnection, totals: dict[str, float], what_if: str) -> None:
        self._cur = cur
        self._totals = totals
        self._what_if = what_if
        self._levels = 0

    def execute(self, sql: str, params: Any = None) -> Any:
        kind = next((k for k, pattern in KINDS if pattern.match(sql.lstrip())), "other")
        if self._what_if == "unsorted" and kind == "query":
            sql = sql.removesuffix(f" ORDER BY {P}")
        if self._what_if == "compressed" and kind == "create":
            sql = sql.replace(" USING COMPRESSION uncompressed", "")
        if kind == "query":  # one per plan: the store evaluates every dependency level in one plan
            self._levels += 1
            kind = f"query {self._levels}"
        start = time.perf_counter()
        out = self._cur.execute(sql) if params is None else self._cur.execute(sql, params)
        self._totals[kind] += time.perf_counter() - start
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


class TimedStore(DuckDBProfileStore):
    """The store, with each statement of its cursors timed by kind."""

    def __init__(self, lake: Path, *, what_if: str, **settings: Any) -> None:
        super().__init__(lake, **settings)
        self.totals: dict[str, float] = defaultdict(float)
        self.what_if = what_if

    @contextmanager
    def _cursor(self, scope: Scope) -> Iterator[duckdb.DuckDBPyConnection]:
        with super()._cursor(scope) as cur:
            yield TimedCursor(cur, self.totals, self.what_if)  # type: ignore[misc]


CPU: dict[str, list[float]] = defaultdict(list)
"""CPU seconds (the process's, every thread) of each evaluation and floor run: on a machine that others load, a
steadier measure of the work than the wall clock."""


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def evaluate(store: TimedStore, all_plans: list[Plan]) -> tuple[float, dict[str, SegmentCounts], dict[str, float]]:
    """One evaluation of every plan: seconds, counts per segment, seconds per kind of statement."""
    store.totals.clear()
    start, cpu = time.perf_counter(), cpu_seconds()
    counts = store.evaluate(SCOPE, str(uuid.uuid4()), all_plans, {})
    CPU["evaluation"].append(cpu_seconds() - cpu)
    return time.perf_counter() - start, counts, dict(store.totals)


def parts(con: duckdb.DuckDBPyConnection, plan: Plan) -> dict[str, float]:
    """The first plan's shared query, piece by piece: each joined relation materialized alone."""
    have = evaluation.tables(con)
    kinds: dict[type, dict[str, Any]] = defaultdict(dict)
    for alias, col in plan.columns.items():
        kinds[type(col)][alias] = col
    pieces = {"profiles (DISTINCT identities)": "SELECT DISTINCT profile_id FROM identities"}
    pieces["attributes (arg_max merge)"] = evaluation._attributes(have, kinds[Attribute])[0]
    pieces["profiles and membership flags (bitmasks)"] = evaluation._profiles(have, plan, kinds[Flag])
    payloads = evaluation._payloads(have, plan, kinds[Payload])
    pieces[f"{len(payloads)} payloads"] = " UNION ALL ".join(f"SELECT count(*) FROM ({sql})" for sql in payloads)
    pieces["whole query"] = evaluation.query(have, plan)
    out = {}
    for name, sql in pieces.items():
        start = time.perf_counter()
        used = set(re.findall(r"\$(\w+)", sql))
        con.execute(f"CREATE OR REPLACE TEMP TABLE piece AS {sql}", {k: v for k, v in plan.params.items() if k in used})
        out[name] = time.perf_counter() - start
    con.execute("DROP TABLE piece")
    return out


def lookups(store: DuckDBProfileStore, n: int, count: int = 40) -> float:
    """The median time of a profile lookup by identity (identities, external memberships, segment results), ms."""
    rng = random.Random(7)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        found = store.lookup(SCOPE, "Email", f"user{rng.randrange(n)}@example.com")
        times.append(time.perf_counter() - start)
        assert found is not None
    return sorted(times)[count // 2] * 1000


def disorder(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(rows, rows whose profile id is smaller than the row's before it) of the store's segment result tables."""
    rows = disordered = 0
    for (tbl,) in con.execute("SELECT tbl FROM segment_results GROUP BY tbl").fetchall():
        got = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {P} < before) FROM "
            f'(SELECT {P}, lag({P}) OVER (ORDER BY rowid) AS before FROM "{tbl}")'
        ).fetchone()
        assert got is not None
        rows, disordered = rows + got[0], disordered + got[1]
    return rows, disordered


def floor_run(con: duckdb.DuckDBPyConnection, cat: Catalogue) -> tuple[float, dict[str, int]]:
    """The hand-written queries, one table per segment, in one transaction: seconds and members per segment."""
    con.execute("BEGIN TRANSACTION")
    start, cpu = time.perf_counter(), cpu_seconds()
    for k, s in enumerate(cat.segments):
        con.execute(f"CREATE TABLE {cat.seg_table(k)} AS {s.floor}")
    con.execute("COMMIT")
    CPU["floor"].append(cpu_seconds() - cpu)
    seconds = time.perf_counter() - start
    counts = {}
    for k, s in enumerate(cat.segments):
        row = con.execute(f"SELECT count(*) FROM {cat.seg_table(k)}").fetchone()
        counts[s.id] = int(row[0]) if row else -1
    return seconds, counts


def mismatches(
    con: duckdb.DuckDBPyConnection, cat: Catalogue, runs: list[dict[str, SegmentCounts]], floor: dict[str, int]
) -> list[str]:
    """Segments whose members differ: in count between any evaluation and the floor, or (with equal counts) as sets."""
    wrong = []
    for k, s in enumerate(cat.segments):
        ours = [r[s.id].members for r in runs]
        if any(m != floor[s.id] for m in ours):
            wrong.append(f"s_{k}: ours {ours}, floor {floor[s.id]:,}: {s.pql}")
            continue
        row = con.execute(
            f"SELECT count(*) FROM (SELECT {P} FROM {table_for(s.id)} WHERE {STATUS} IN ('realized', 'existing') "
            f"EXCEPT SELECT {P} FROM {cat.seg_table(k)})"
        ).fetchone()
        if row is None or row[0]:
            wrong.append(f"s_{k}: {row[0] if row else '?'} of our members are not the floor's: {s.pql}")
    return wrong


def to_lake(con: duckdb.DuckDBPyConnection, store: LakeProfileStore, dataset: str, audiences: list[str]) -> float:
    """Writes the embedded store's tables as the lake store's first version (profile ids as text); seconds."""
    start = time.perf_counter()
    m = store.manifest(SCOPE)
    new = m.copy()
    folder = f"v{m.version + 1:08d}-bench"
    (store.root(SCOPE) / folder).mkdir(parents=True)

    def put(table: str, select: str) -> list[list[str]]:
        rel = f"{folder}/{table}-1.parquet"
        con.execute(f"COPY ({select}) TO '{store.root(SCOPE) / rel}' (FORMAT parquet)")
        new.tables[table] = [rel]
        return [[str(r[0]), str(r[1])] for r in con.execute(f"DESCRIBE {select}").fetchall()]

    ids = "SELECT ns, id, CAST(profile_id AS VARCHAR) AS profile_id FROM identities"
    put("identities", f"{ids} ORDER BY ns, id")
    put("identities_by_profile", f"{ids} ORDER BY profile_id, ns, id")
    key = f"CAST({P} AS VARCHAR) AS {P}, * EXCLUDE ({P})"
    tbl = fragment_table_for(dataset)
    new.fragments[dataset] = {"kind": "profile", "table": tbl, "columns": put(tbl, f"SELECT {key} FROM {tbl}")}
    for audience in audiences:
        mt = table_for(audience)
        columns = put(mt, f"SELECT {key} FROM {mt} ORDER BY {P}")
        new.audiences[audience] = {"namespace": NAMESPACE, "ttl_days": TTL_DAYS, "table": mt, "columns": columns}
    store._commit(SCOPE, m.version, new)
    return time.perf_counter() - start


def lake_members(con: duckdb.DuckDBPyConnection, store: LakeProfileStore, segment_id: str) -> str:
    """SQL of the segment's active members' profile ids in the lake store's current version (as UUIDs)."""
    files = [str(store.root(SCOPE) / f) for f in store.manifest(SCOPE).tables.get(table_for(segment_id), [])]
    if not files:
        return f"SELECT CAST(NULL AS UUID) AS {P} WHERE false"
    listed = ", ".join(f"'{f}'" for f in files)
    return f"SELECT CAST({P} AS UUID) AS {P} FROM read_parquet([{listed}]) WHERE {STATUS} IN ('realized', 'existing')"


def main_lake(args: argparse.Namespace) -> None:
    """``--store lake``: the lake store's evaluations against the same floor."""
    from audiencehub.engines.base import Engine
    from audiencehub.engines.duckdb import DuckDBEngine
    from audiencehub.metadata.store import MetadataStore

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    n = args.profiles
    with tempfile.TemporaryDirectory(prefix="ah-bench-segment-", dir=args.work) as tmp:
        work = Path(tmp)
        settings: dict[str, Any] = {"threads": args.threads, "memory_limit": args.memory_limit, "temp_dir": work / "t"}
        path = work / "embedded.duckdb"
        con = connect(str(path), **settings)
        t0 = time.perf_counter()
        dataset, audiences, timings = build(con, n, now)
        engine: Engine
        if args.engine == "spark":
            from audiencehub.engines.spark import SparkEngine

            engine = SparkEngine(master=args.spark_master, conf={"spark.driver.memory": args.spark_memory}, ui=False)
        else:
            engine = DuckDBEngine(threads=args.threads, memory_limit=args.memory_limit, temp_dir=work / "e")
        meta = MetadataStore(f"sqlite:///{work / 'metadata.db'}")
        meta.create_all()
        store = LakeProfileStore(work / "lake", engine, meta, **settings)
        timings["to_lake_s"] = to_lake(con, store, dataset, audiences)
        con.close()
        print(
            f"profiles: {n:,}  audiences: {AUDIENCES}  segments: {LEVEL1} + {LEVEL2} (2 levels)  store: lake  "
            f"engine: {args.engine}{f' {args.spark_master}' if args.engine == 'spark' else ''}  "
            f"threads: {args.threads or 'all'}  build {time.perf_counter() - t0:.1f}s ("
            + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
            + ")",
            flush=True,
        )
        cat = Catalogue(dataset, audiences, now, args.seed)
        cat.level1(LEVEL1)
        cat.level2(LEVEL2)
        all_plans = plans(cat.segments, audiences, now)
        con = connect(str(path), **settings)
        floor_before, _ = floor_run(con, cat)
        print(f"  floor (before): {floor_before:.2f}s", flush=True)
        for k in range(len(cat.segments)):
            con.execute(f"DROP TABLE {cat.seg_table(k)}")
        con.close()
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            counts = store.evaluate(SCOPE, str(uuid.uuid4()), all_plans, {})
            runs.append((time.perf_counter() - start, counts))
        con = connect(str(path), **settings)
        floor_after, floor = floor_run(con, cat)
        floor_s = min(floor_before, floor_after)
        wrong = []
        for k, s in enumerate(cat.segments):
            ours = [c[s.id].members for _, c in runs]
            if any(m != floor[s.id] for m in ours):
                wrong.append(f"s_{k}: ours {ours}, floor {floor[s.id]:,}: {s.pql}")
                continue
            row = con.execute(
                f"SELECT count(*) FROM ({lake_members(con, store, s.id)} EXCEPT SELECT {P} FROM {cat.seg_table(k)})"
            ).fetchone()
            if row is None or row[0]:
                wrong.append(f"s_{k}: {row[0] if row else '?'} of the lake's members are not the floor's: {s.pql}")
        con.close()
        store.close()
        meta.dispose()
    changed = [sid for sid, c in runs[1][1].items() if c.realized or c.exited]
    if wrong or changed:
        print("\n".join(wrong))
        raise SystemExit(
            f"{len(wrong)} segments differ from the floor; {len(changed)} changed in the second evaluation"
        )
    units = len(cat.segments) * n
    print("the same members as the floor for every segment, in both evaluations")
    for name, (secs, _) in zip(("first evaluation ", "second evaluation"), runs, strict=True):
        print(
            f"audiencehub lake ({args.engine}) {name}:  {secs:7.2f}s  {units / secs:>13,.0f} segment-profiles/s  "
            f"ratio to floor {secs / floor_s:.2f}"
        )
    print(
        f"floor ({len(cat.segments)} CREATE TABLE AS, bare DuckDB): {floor_s:7.2f}s  "
        f"{units / floor_s:>13,.0f} segment-profiles/s  (best of {floor_before:.2f}s before, {floor_after:.2f}s after)"
    )
    print(f"peak RSS of the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory-limit", default="75%")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: a temp folder)")
    parser.add_argument("--parts", action="store_true", help="Also time each piece of the level-1 query alone")
    parser.add_argument(
        "--what-if",
        choices=list(WHAT_IF),
        default="none",
        help="Measure an alternative way to write result tables (not the store's): "
        + "; ".join(f"{k}: {v}" for k, v in WHAT_IF.items()),
    )
    parser.add_argument("--store", choices=["duckdb", "lake"], default="duckdb", help="The profile store to evaluate")
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb", help="The lake store's engine")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--spark-memory", default="6g", help="spark.driver.memory (local masters run in the driver)")
    args = parser.parse_args()
    if args.store == "lake":
        main_lake(args)
        return
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    n = args.profiles

    with tempfile.TemporaryDirectory(prefix="ah-bench-segment-", dir=args.work) as tmp:
        work = Path(tmp)
        settings: dict[str, Any] = {"threads": args.threads, "memory_limit": args.memory_limit, "temp_dir": work / "t"}
        store = TimedStore(work / "lake", what_if=args.what_if, **settings)
        path = store.path(SCOPE)
        path.parent.mkdir(parents=True, exist_ok=True)
        con = connect(str(path), **settings)
        t0 = time.perf_counter()
        dataset, audiences, timings = build(con, n, now)
        con.close()
        print(
            f"profiles: {n:,}  audiences: {AUDIENCES}  segments: {LEVEL1} + {LEVEL2} (2 levels)  "
            f"threads: {args.threads or 'all'}  memory: {args.memory_limit}  what-if: {args.what_if}  "
            f"build {time.perf_counter() - t0:.1f}s (" + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + ")",
            flush=True,
        )
        cat = Catalogue(dataset, audiences, now, args.seed)
        cat.level1(LEVEL1)
        cat.level2(LEVEL2)
        t0 = time.perf_counter()
        all_plans = plans(cat.segments, audiences, now)
        compile_s = time.perf_counter() - t0

        # The floor runs before and after the store's evaluations (the best of both counts): on a shared machine,
        # a load that comes and goes then weighs less on the ratio.
        con = connect(str(path), **settings)
        floor_before, _ = floor_run(con, cat)
        print(f"  floor (before): {floor_before:.2f}s", flush=True)
        for k in range(len(cat.segments)):
            con.execute(f"DROP TABLE {cat.seg_table(k)}")
        con.execute("CHECKPOINT")
        con.close()

        first_s, first, first_parts = evaluate(store, all_plans)
        print(f"  first evaluation: {first_s:.2f}s", flush=True)
        second_s, second, second_parts = evaluate(store, all_plans)
        print(f"  second evaluation: {second_s:.2f}s", flush=True)
        lookup_ms = lookups(store, n)
        store.close()

        con = connect(str(path), **settings)
        floor_after, floor = floor_run(con, cat)
        floor_s = min(floor_before, floor_after)
        wrong = mismatches(con, cat, [first, second], floor)
        changed = [sid for sid, c in second.items() if c.realized or c.exited]
        piece_s = parts(con, all_plans[0]) if args.parts else {}
        result_rows, out_of_order = disorder(con)
        con.close()
    if wrong or changed:
        print("\n".join(wrong))
        raise SystemExit(
            f"{len(wrong)} segments differ between audiencehub and the floor; "
            f"{len(changed)} changed in the second evaluation over unchanged data"
        )

    members = sorted(floor.values())
    units = len(cat.segments) * n
    print(
        f"compiled {len(cat.segments)} definitions in {compile_s * 1000:.0f} ms; members per segment: min "
        f"{members[0]:,} median {members[len(members) // 2]:,} max {members[-1]:,} (all {sum(members):,}); "
        "the same members on both sides for every segment"
    )
    floor_cpu = min(CPU["floor"])
    for name, secs, prt, cpu in (
        ("first evaluation ", first_s, first_parts, CPU["evaluation"][0]),
        ("second evaluation", second_s, second_parts, CPU["evaluation"][1]),
    ):
        print(
            f"audiencehub {name}:  {secs:7.2f}s  {units / secs:>13,.0f} segment-profiles/s  "
            f"ratio to floor {secs / floor_s:.2f}  (CPU {cpu:.2f}s, ratio {cpu / floor_cpu:.2f})"
        )
        print("    " + "  ".join(f"{k} {v:.2f}s" for k, v in sorted(prt.items(), key=lambda kv: -kv[1])))
    print(
        f"floor ({len(cat.segments)} CREATE TABLE AS, bare DuckDB): {floor_s:7.2f}s  "
        f"{units / floor_s:>13,.0f} segment-profiles/s  (best of {floor_before:.2f}s before, {floor_after:.2f}s after; "
        f"CPU {floor_cpu:.2f}s)"
    )
    print(
        f"result rows: {result_rows:,}, {out_of_order:,} of them out of profile id order; "
        f"a profile lookup by identity: {lookup_ms:.1f} ms (median of 40)"
    )
    print(f"peak RSS of the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    if piece_s:
        print("level-1 query, each piece alone: " + "  ".join(f"{k} {v:.2f}s" for k, v in piece_s.items()))


if __name__ == "__main__":
    main()
