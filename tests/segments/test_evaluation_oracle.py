"""Segment evaluation (PQL AST → compiled SQL → the profile store's memberships) checked against a pure-Python
evaluator of the AST (``tests/segments/oracle.py``) on random sandboxes and random expressions.

Each seed builds a sandbox straight in a profile store (identities, fragments of two profile datasets, two event
datasets, external audiences with ttl and payloads, imported memberships), draws 50 expressions (35 in a first plan,
15 in a second that also reads the first plan's segments) and evaluates them four times: again with nothing changed,
then after the data changed a day and 45 days later. Every time, every segment's membership table must be exactly
the oracle's.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from audiencehub.domain.segments import Plan, SegmentCounts
from audiencehub.metadata.store import Scope
from audiencehub.pql import ast as A
from audiencehub.pql.compile import compile_segment
from audiencehub.profile import segment_codes
from audiencehub.profile import segments as profile_segments
from audiencehub.profile.base import ProfileStore
from audiencehub.profile.duckdb import DuckDBProfileStore
from audiencehub.profile.segments import NO_TTL
from tests.segments.oracle import (
    DATASETS,
    DS_A,
    ORDERS,
    PROFILE_FIELDS,
    UNITS,
    Fragment,
    Gen,
    Oracle,
    World,
    fragment_table,
    instants,
    table,
)

SCOPE = Scope("oracle-org", "prod")
STARTS = (
    dt.datetime(2024, 3, 31, 12, 34, 56, 789012, tzinfo=dt.UTC),  # month end after a leap February
    dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),  # leap day, last microsecond
    dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC),  # a Monday, a year start
    dt.datetime(2023, 12, 31, 0, 0, tzinfo=dt.UTC),  # a Sunday, a year end
    dt.datetime(2025, 5, 31, 8, 0, tzinfo=dt.UTC),  # 31st before a 30-day month
    dt.datetime(2024, 8, 15, 13, 0, 30, 500000, tzinfo=dt.UTC),
)
OP_NAMES = {"=": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
Segment = tuple[str, A.Node, tuple[str, ...] | None]
"""(segment id, expression, the merge policy's dataset order or None)."""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBProfileStore]:
    s = DuckDBProfileStore(tmp_path, memory_limit="1GB", threads=2, temp_dir=tmp_path / "tmp")
    yield s
    s.close()


def cursor(store: DuckDBProfileStore) -> duckdb.DuckDBPyConnection:
    cur = store._connection(SCOPE).cursor()
    cur.execute("SET TimeZone = 'UTC'")
    return cur


def compile_plan(world: World, now: dt.datetime, segments: list[Segment]) -> Plan:
    plan = Plan(now)
    for sid, node, order in segments:
        compile_segment(plan, sid, node, world.fields(), world.source, precedence=order)
    return plan


def stored(cur: duckdb.DuckDBPyConnection, segment_id: str) -> dict[uuid.UUID, tuple[str, dt.datetime, str]]:
    rows = cur.execute(
        f"SELECT __ah_profile_id, __ah_status, __ah_qualified_at, __ah_run_id FROM {table(segment_id)}"
    ).fetchall()
    found = {r[0]: (r[1], r[2], r[3]) for r in rows}
    assert len(found) == len(rows), f"segment {segment_id}: a profile has several memberships"
    return found


def describe(world: World, oracle: Oracle, pid: uuid.UUID, order: tuple[str, ...] | None) -> str:
    merged = {leaf: oracle.merged(pid, leaf, order) for leaf in PROFILE_FIELDS}
    memberships = {aud.audience_id[:8]: aud.rows.get(pid) for aud in world.externals.values()}
    return f"profile {pid}: merged {merged}; audiences {memberships}; events {oracle.events.get(pid, [])}"


Stored = dict[uuid.UUID, tuple[str, dt.datetime, str]]


def evaluate_and_check(
    store: ProfileStore,
    world: World,
    now: dt.datetime,
    job: str,
    plans: list[list[Segment]],
    ttl: dict[str, int],
    read: Callable[[str], Stored] | None = None,
) -> dict[str, SegmentCounts]:
    """Evaluates the plans in one job and checks each segment's memberships (``read``: by default the embedded
    store's membership views) and counts against the oracle."""
    counts = store.evaluate(SCOPE, job, [compile_plan(world, now, p) for p in plans], ttl)
    if read is None:
        assert isinstance(store, DuckDBProfileStore)
        read = functools.partial(stored, cursor(store))
    for segments in plans:
        oracle = Oracle(world, now)  # after the previous plan's folds: later plans read those segments
        expected = {sid: oracle.members(node, order) for sid, node, order in segments}
        for sid, node, order in segments:
            want = world.fold(sid, expected[sid], now, job, ttl.get(sid, NO_TTL))
            got = read(sid)
            members = {pid for pid, (status, _, _) in got.items() if status in ("realized", "existing")}
            if members != expected[sid]:
                wrong = sorted(members ^ expected[sid])
                details = "\n".join(describe(world, oracle, pid, order) for pid in wrong[:3])
                raise AssertionError(
                    f"{job}: segment {sid} ({node}, order {order}): the store has {len(members)} members, the oracle "
                    f"{len(expected[sid])}; they differ on {len(wrong)}, e.g.\n{details}"
                )
            rows = {pid: (r.status, r.qualified_at, r.run_id) for pid, r in world.segments[sid].rows.items()}
            assert got == rows, f"{job}: segment {sid} ({node}): memberships differ from the oracle's fold"
            assert counts[sid] == want, f"{job}: segment {sid}: counts {counts[sid]} != the oracle's {want}"
    assert store.evaluation(SCOPE, job) == counts
    return counts


@pytest.mark.parametrize("seed", range(len(STARTS)))
def test_random_segments_match_the_python_evaluator(store: DuckDBProfileStore, seed: int) -> None:
    rng = random.Random(seed)
    start = STARTS[seed]
    world = World(rng, start)
    world.load(store._connection(SCOPE))
    gen = Gen(rng, world)

    def segment(reads: tuple[str, ...] = ()) -> Segment:
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        world.defined.add(sid)
        return sid, gen.profile(3, reads), rng.choice(ORDERS)

    first = [segment() for _ in range(35)]
    second = [segment(tuple(s for s, _, _ in first)) for _ in range(15)]
    ttl = {sid: 30 for sid, _, _ in first + second if rng.random() < 0.5}

    evaluate_and_check(store, world, start, "job-1", [first, second], ttl)
    again = evaluate_and_check(store, world, start, "job-2", [first, second], ttl)
    for sid, _, _ in first:  # nothing changed: the same members, all existing now
        assert again[sid].realized == 0 and again[sid].exited == 0, (sid, again[sid])
    for n, days in enumerate((1, 45), start=3):
        at = start + dt.timedelta(days=days)
        world.mutate(at)
        world.load(store._connection(SCOPE))
        evaluate_and_check(store, world, at, f"job-{n}", [first, second], ttl)


@pytest.mark.parametrize("start", [STARTS[0], STARTS[1], STARTS[2], STARTS[4]])
def test_every_occurs_form_matches_on_the_marks_it_names(store: DuckDBProfileStore, start: dt.datetime) -> None:
    """Single conditions, no boolean structure to hide a difference: every unit, operator, direction and a few
    amounts, on a date-time and a date field, over profiles that sit on (and a microsecond off) every mark."""
    world = World(random.Random(start.toordinal()), start, profiles=0)
    for at in sorted(set(instants(start, world.rng))):
        world.add_plain_profile(start, {"lastSeen": at, "person.birthDate": at.date()})
    world.add_plain_profile(start, {})  # neither field
    world.load(store._connection(SCOPE))
    segments: list[Segment] = []
    for name in ("lastSeen", "person.birthDate"):
        for unit in UNITS:
            for op in ("=", "<", "<=", ">", ">="):
                for direction in ("before", "after"):
                    for amount in (0, 1, 13) if op == "=" else (1, 13):
                        node = A.TimeCondition(A.Field(tuple(name.split(".")), 0), op, amount, unit, direction, 0)
                        sid = f"{name}-{OP_NAMES[op]}-{amount}-{unit}-{direction}"  # table m_<its letters, digits>
                        world.defined.add(sid)
                        segments.append((sid, node, None))
    evaluate_and_check(store, world, start, "occurs", [segments], {})


def test_more_membership_flags_than_one_bitmask_word_holds(store: DuckDBProfileStore) -> None:
    """The store packs membership flags 64 to a word: 25 segments read through three status sets make 75 flags."""
    rng = random.Random(64)
    now = STARTS[5]
    world = World(rng, now, profiles=30)
    world.load(store._connection(SCOPE))
    gen = Gen(rng, world)
    first: list[Segment] = []
    for n in range(25):
        world.defined.add(f"base{n}")
        first.append((f"base{n}", gen.profile(1), None))
    second: list[Segment] = []
    for n, (sid, _, _) in enumerate(first):
        for k, statuses in enumerate((A.ACTIVE_STATUSES, ("exited",), ("realized",))):
            world.defined.add(f"reads{n}x{k}")
            second.append((f"reads{n}x{k}", A.Membership(None, sid, statuses, None, 0), None))
    world.defined.add("any")
    second.append(("any", A.Or(tuple(node for _, node, _ in second), 0), None))
    evaluate_and_check(store, world, now, "w1", [first, second], {})
    world.mutate(now + dt.timedelta(days=1))
    world.load(store._connection(SCOPE))
    evaluate_and_check(store, world, now + dt.timedelta(days=1), "w2", [first, second], {})


def test_members_stay_existing_exit_when_they_stop_qualifying_and_reenter_as_realized(
    store: DuckDBProfileStore,
) -> None:
    now = STARTS[0]
    world = World(random.Random(99), now, profiles=12)
    world.load(store._connection(SCOPE))
    adults = "adults"
    world.defined.add(adults)
    expr = A.Compare(A.Field(("person", "age"), 0), ">=", A.Value(30, "number", 0), 0)
    plans: list[list[Segment]] = [[(adults, expr, None)]]
    first = evaluate_and_check(store, world, now, "j1", plans, {})[adults]
    assert first.realized > 0 and first.existing == 0 and first.exited == 0
    second = evaluate_and_check(store, world, now, "j2", plans, {})[adults]
    assert second == SegmentCounts(realized=0, existing=first.realized, exited=0)

    cur = cursor(store)
    member = next(pid for pid, (status, _, _) in stored(cur, adults).items() if status == "existing")

    def set_age(age: int, at: dt.datetime, seq: int) -> None:
        ds = DS_A
        world.fragments.append(
            Fragment(ds, member, at, "b1", seq, {leaf: None for leaf in DATASETS[ds]} | {"person.age": age})
        )
        cur.execute(
            f'INSERT INTO {fragment_table(ds)} (__ah_profile_id, __ah_batch, __ah_ts, __ah_seq, "person.age") '
            "VALUES (?, 'b1', ?, ?, ?)",
            [member, at, seq, age],
        )

    later = now + dt.timedelta(days=1)
    set_age(20, later, 10**10)
    third = evaluate_and_check(store, world, later, "j3", plans, {})[adults]
    assert third == SegmentCounts(realized=0, existing=first.realized - 1, exited=1)
    assert stored(cur, adults)[member] == ("exited", later, "j3")

    evaluate_and_check(store, world, later + dt.timedelta(hours=1), "j4", plans, {})
    assert stored(cur, adults)[member] == ("exited", later, "j3"), "an exited member keeps the job it left in"

    set_age(40, later + dt.timedelta(hours=2), 10**10 + 1)
    fifth = evaluate_and_check(store, world, later + dt.timedelta(hours=3), "j5", plans, {})[adults]
    assert fifth == SegmentCounts(realized=1, existing=first.realized - 1, exited=0)
    assert stored(cur, adults)[member][0] == "realized"


def test_codes_widen_from_16_to_32_bits_when_the_stamps_outgrow_them(store: DuckDBProfileStore) -> None:
    """The embedded store packs a result table's codes 4 to a BIGINT word while the sandbox's stamps fit 16-bit
    codes (its first 8,190), then 2 to a word; an evaluation that reads 16-bit codes of the previous one writes the
    same statuses as 32-bit codes, and both read back through the membership views."""
    now = STARTS[1]
    world, segments = loaded_world(store, 8190, now, 6)
    cur = cursor(store)

    def words() -> list[str]:
        return [
            str(r[0])
            for r in cur.execute(
                "SELECT column_name || ' ' || data_type FROM duckdb_columns() WHERE table_name IN "
                "(SELECT tbl FROM segment_results) AND column_name <> '__ah_profile_id' ORDER BY column_index"
            ).fetchall()
        ]

    first = evaluate_and_check(store, world, now, "narrow", [segments], {})
    assert words() == ["b16_0 BIGINT", "b16_1 BIGINT"]
    cur.execute("INSERT INTO segment_stamps VALUES (8188, 'an-old-job', ?)", [now])  # the stamps so far
    second = evaluate_and_check(store, world, now, "wide", [segments], {})
    assert words() == ["b32_0 BIGINT", "b32_1 BIGINT", "b32_2 BIGINT"]
    assert {sid: c.existing for sid, c in second.items()} == {sid: c.realized for sid, c in first.items()}
    assert any(c.existing for c in second.values())
    world.mutate(now + dt.timedelta(days=1))  # and words of 32-bit codes computed whole, over changed data
    world.load(store._connection(SCOPE))
    evaluate_and_check(store, world, now + dt.timedelta(days=1), "wide again", [segments], {})
    assert words() == ["b32_0 BIGINT", "b32_1 BIGINT", "b32_2 BIGINT"]


def test_a_job_of_fewer_segments_computes_their_words_without_the_old_codes_of_the_others(
    store: DuckDBProfileStore,
) -> None:
    """A job that evaluates the first 5 of 6 segments finds each of them in its old place: their words are computed
    whole from the old ones, and the sixth's old code, in the same old word, is not carried into the new table."""
    now = STARTS[3]
    world, segments = loaded_world(store, 56, now, 5)
    world.defined.add("aged")
    segments.append(("aged", A.Compare(A.Field(("person", "age"), 0), ">=", A.Value(0, "number", 0), 0), None))
    evaluate_and_check(store, world, now, "six", [segments], {})
    world.mutate(now + dt.timedelta(days=1))
    world.load(store._connection(SCOPE))
    later = now + dt.timedelta(days=1)
    evaluate_and_check(store, world, later, "five", [segments[:5]], {})
    cur = cursor(store)
    have = segment_codes.stored(cur)
    sixth = have[segments[5][0]]
    fifth = have[segments[4][0]]
    assert sixth.tbl != fifth.tbl and (fifth.col, fifth.bits) == (4, 16)
    assert cur.execute(f'SELECT count(*) FROM "{fifth.tbl}" WHERE b16_1 >> 16 <> 0').fetchone() == (0,)
    assert cur.execute(f'SELECT count(*) FROM "{sixth.tbl}" WHERE b16_1 >> 16 <> 0').fetchone() != (0,)
    evaluate_and_check(store, world, later + dt.timedelta(hours=1), "six again", [segments], {})


def test_a_result_table_with_a_column_per_code_from_before_the_packing_reads_and_is_replaced(
    store: DuckDBProfileStore,
) -> None:
    """Stores written before the codes were packed hold one INTEGER column ``c{k}`` per segment: their membership
    views and the next evaluation read them as before, and that evaluation writes packed words."""
    now = STARTS[2]
    world, segments = loaded_world(store, 77, now, 5)
    first = evaluate_and_check(store, world, now, "packed", [segments], {})
    cur = cursor(store)
    packed = {sid: stored(cur, sid) for sid, _, _ in segments}
    have = segment_codes.stored(cur)
    (tbl,) = {st.tbl for st in have.values()}
    codes = ", ".join(f"CAST({segment_codes.code_of(st)} AS INTEGER) AS c{st.col}" for st in have.values())
    cur.execute(f'CREATE TABLE legacy AS SELECT __ah_profile_id, {codes} FROM "{tbl}" ORDER BY 1')
    cur.execute(f'DROP TABLE "{tbl}"')
    cur.execute(f'ALTER TABLE legacy RENAME TO "{tbl}"')
    for sid, st in segment_codes.stored(cur).items():
        assert st.bits == 0
        cur.execute(f'CREATE OR REPLACE VIEW "{table(sid)}" AS {segment_codes.view(st)}')
    assert {sid: stored(cur, sid) for sid, _, _ in segments} == packed
    assert any(packed.values())
    second = evaluate_and_check(store, world, now, "after", [segments], {})
    assert {sid: c.existing for sid, c in second.items()} == {sid: c.realized for sid, c in first.items()}
    assert {st.bits for st in segment_codes.stored(cur).values()} == {16}


def snapshot(cur: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Every table of the store and its rows (in a stable order)."""
    names = [
        str(r[0])
        for r in cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name <> 'temp' ORDER BY 1"
        ).fetchall()
    ]
    return {name: sorted(map(repr, cur.execute(f'SELECT * FROM "{name}"').fetchall())) for name in names}


def loaded_world(store: DuckDBProfileStore, seed: int, now: dt.datetime, count: int) -> tuple[World, list[Segment]]:
    """A small random sandbox loaded in the store, and ``count`` random segment definitions over it."""
    rng = random.Random(seed)
    world = World(rng, now, profiles=20)
    world.load(store._connection(SCOPE))
    gen = Gen(rng, world)
    segments: list[Segment] = []
    for _ in range(count):
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        world.defined.add(sid)
        segments.append((sid, gen.profile(2), None))
    return world, segments


@pytest.mark.parametrize("fails_in", ["query", "write"])
@pytest.mark.parametrize("evaluated_before", [False, True])
def test_a_plan_that_fails_leaves_every_membership_table_as_it_was(
    store: DuckDBProfileStore, monkeypatch: pytest.MonkeyPatch, evaluated_before: bool, fails_in: str
) -> None:
    """A job fails in its second plan: the query of the plan fails, or the store fails right after it wrote the
    job's result table. Nothing of the job stays."""
    now = STARTS[2]
    world, segments = loaded_world(store, 7, now, 6)
    if evaluated_before:
        evaluate_and_check(store, world, now, "before", [segments[:3], segments[3:]], {})
        world.mutate(now + dt.timedelta(days=2))
        world.load(store._connection(SCOPE))
    cur = cursor(store)
    before = snapshot(cur)

    later = now + dt.timedelta(days=2)
    good, bad = compile_plan(world, later, segments[:3]), compile_plan(world, later, segments[3:])
    if fails_in == "query":
        bad.segments.append(("broken", "CAST('not a number' AS INTEGER) > 0"))
    else:
        build = profile_segments.build

        def failing_build(cur: duckdb.DuckDBPyConnection, have: Any, plan: Any, n: int, *args: Any) -> Any:
            counts = build(cur, have, plan, n, *args)
            if n == 0:  # the job's result table (every plan's segments: one pass) is written, then the disk is full
                raise OSError("No space left on device")
            return counts

        monkeypatch.setattr(profile_segments, "build", failing_build)
    with pytest.raises(duckdb.Error if fails_in == "query" else OSError):
        store.evaluate(SCOPE, "failing-job", [good, bad], {})
    monkeypatch.undo()

    assert snapshot(cur) == before
    assert store.evaluation(SCOPE, "failing-job") is None
    # The store is usable afterwards, and the job can run again.
    evaluate_and_check(store, world, later, "failing-job", [segments[:3], segments[3:]], {})


def test_writes_go_on_while_a_job_evaluates_and_readers_see_its_results_only_once_published(
    store: DuckDBProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's result tables are built without the sandbox's write lock: a write (here an external audience's
    registration, as a run does) completes while the job is held between its two plans, and readers see none of the
    job until it publishes."""
    now = STARTS[0]
    world, segments = loaded_world(store, 11, now, 4)
    built, release = threading.Event(), threading.Event()
    build = profile_segments.build

    def held_build(cur: duckdb.DuckDBPyConnection, have: Any, plan: Any, n: int, *args: Any) -> Any:
        counts = build(cur, have, plan, n, *args)
        if n == 0:
            built.set()
            assert release.wait(timeout=60), "the test never released the job"
        return counts

    monkeypatch.setattr(profile_segments, "build", held_build)
    plans = [compile_plan(world, now, segments[:2]), compile_plan(world, now, segments[2:])]
    failure: list[BaseException] = []

    def job() -> None:
        try:
            store.evaluate(SCOPE, "held-job", plans, {})
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    worker = threading.Thread(target=job)
    worker.start()
    try:
        assert built.wait(timeout=60), "the job never built its first plan"
        writer = threading.Thread(target=store.set_audience, args=(SCOPE, "an-audience", "Email", 30))
        writer.start()
        writer.join(timeout=30)
        assert not writer.is_alive(), "a write waited for the segment job"
        cur = cursor(store)
        registered = {str(r[0]) for r in cur.execute("SELECT audience_id FROM audiences").fetchall()}
        assert "an-audience" in registered
        assert not registered & {sid for sid, _, _ in segments}, "readers saw the job before it published"
        assert store.evaluation(SCOPE, "held-job") is None
    finally:
        release.set()
        worker.join(timeout=120)
    assert not failure, failure
    assert store.evaluation(SCOPE, "held-job") is not None
    registered = {str(r[0]) for r in cursor(store).execute("SELECT audience_id FROM audiences").fetchall()}
    assert {sid for sid, _, _ in segments} <= registered


@pytest.mark.parametrize("direction", ["before", "after"])
def test_occurs_not_equal_is_the_negation_of_occurs_equal(store: DuckDBProfileStore, direction: str) -> None:
    now = STARTS[0]
    world = World(random.Random(5), now, profiles=25)
    world.load(store._connection(SCOPE))
    field = A.Field(("lastSeen",), 0)
    segments: list[Segment] = []
    for unit in ("days", "months"):
        sid = f"not-{unit}-{direction}"
        world.defined.add(sid)
        segments.append((sid, A.TimeCondition(field, "!=", 1, unit, direction, 0), None))  # type: ignore[arg-type]
    evaluate_and_check(store, world, now, "ne", [segments], {})
