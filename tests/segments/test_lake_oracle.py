"""Segment evaluation on the lake profile store checked against the pure-Python evaluator (``oracle.py``), as
``test_evaluation_oracle.py`` checks the embedded store: random sandboxes, random expressions, four evaluations.

The sandbox is written straight into a version of the lake store (its tables as Parquet files, committed through the
metadata store), as ``World.load`` writes the embedded store's tables: identities, fragment tables (profile, event
and entity datasets), external audiences, records' own memberships. One test draws the oracle's full expressions
(attributes under merge policies, events, memberships); another memberships only, with more segments per job.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from audiencehub.domain.segments import SegmentCounts
from audiencehub.engines.base import Engine
from audiencehub.engines.duckdb import DuckDBEngine
from audiencehub.engines.ingest_sql import ident, lit
from audiencehub.metadata.store import MetadataStore
from audiencehub.pql import ast as A
from audiencehub.profile.columns import PROFILE_ID, table_for
from audiencehub.profile.duckdb import SCHEMA
from audiencehub.profile.lake import LakeProfileStore
from tests.segments import test_evaluation_oracle as embedded
from tests.segments.oracle import ORDERS, Gen, World
from tests.segments.test_evaluation_oracle import SCOPE, STARTS, Segment, compile_plan

LOADED = ("identities", "identities_by_profile", "fragment_memberships")


class MembershipGen(Gen):
    """The oracle's generator, with leaves that read memberships only: audiences (and their payloads), records'
    memberships, earlier segments, constants; with ``with_events``, event conditions too."""

    with_events = False

    def profile(self, depth: int, segments: tuple[str, ...] = ()) -> A.Node:
        rng = self.rng
        if depth > 0 and rng.random() < 0.55:
            kind = rng.choice(("and", "or", "not"))
            if kind == "not":
                return A.Not(self.profile(depth - 1, segments), 0)
            items = tuple(self.profile(depth - 1, segments) for _ in range(rng.randint(2, 3)))
            return A.And(items, 0) if kind == "and" else A.Or(items, 0)
        r = rng.random()
        if segments and r < 0.35:
            return A.Membership(rng.choice((None, "ups")), rng.choice(segments), self.statuses(), None, 0)
        if self.with_events and r < 0.55:
            return self.events()
        if r < 0.95:
            return self.membership()
        return A.Const(rng.random() < 0.5, 0)


@pytest.fixture
def metadata(tmp_path: Path) -> Iterator[MetadataStore]:
    meta = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    meta.create_all()
    yield meta
    meta.dispose()


def lake(tmp_path: Path, engine: Engine, metadata: MetadataStore) -> LakeProfileStore:
    return LakeProfileStore(
        tmp_path / "lake", engine, metadata, memory_limit="1GB", threads=2, temp_dir=tmp_path / "lake-tmp"
    )


@pytest.fixture
def store(tmp_path: Path, metadata: MetadataStore) -> Iterator[LakeProfileStore]:
    engine = DuckDBEngine(threads=2, memory_limit="1GB", temp_dir=tmp_path / "engine-tmp")
    s = lake(tmp_path, engine, metadata)
    yield s
    s.close()


def load(store: LakeProfileStore, world: World) -> None:
    """Writes the world (identities, external audiences, records' memberships) as the store's next version; the
    segments' tables carry over."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(SCHEMA)
        world.load(con)
        base = store.manifest(SCOPE)
        new = base.copy()
        folder = f"v{base.version + 1:08d}-{uuid.uuid4().hex[:12]}"
        (store.root(SCOPE) / folder).mkdir(parents=True)

        def put(table: str, select: str) -> list[list[str]]:
            rel = f"{folder}/{table}.parquet"
            con.execute(f"COPY ({select}) TO {lit(str(store.root(SCOPE) / rel))} (FORMAT parquet)")
            new.tables[table] = [rel]
            return [[str(r[0]), str(r[1])] for r in con.execute(f"DESCRIBE {select}").fetchall()]

        ids = "SELECT ns, id, CAST(profile_id AS VARCHAR) AS profile_id FROM identities"
        put("identities", f"{ids} ORDER BY ns, id")
        put("identities_by_profile", f"{ids} ORDER BY profile_id, ns, id")
        put(
            "fragment_memberships",
            "SELECT CAST(profile_id AS VARCHAR) AS profile_id, * EXCLUDE (profile_id) FROM fragment_memberships",
        )
        for dataset_id, kind, tbl in con.execute("SELECT dataset_id, kind, tbl FROM fragment_tables").fetchall():
            key = "" if kind == "entity" else f"CAST({PROFILE_ID} AS VARCHAR) AS {PROFILE_ID}, * EXCLUDE ({PROFILE_ID})"
            columns = put(tbl, f"SELECT {key or '*'} FROM {ident(tbl)}")
            new.fragments[dataset_id] = {"kind": kind, "table": tbl, "columns": columns}
        for aud in world.externals.values():
            tbl = table_for(aud.audience_id)
            new.audiences[aud.audience_id] = {"namespace": aud.namespace, "ttl_days": aud.ttl, "table": tbl}
            if not aud.stored:
                new.tables.pop(tbl, None)
                continue
            columns = put(
                tbl,
                f"SELECT CAST({PROFILE_ID} AS VARCHAR) AS {PROFILE_ID}, * EXCLUDE ({PROFILE_ID}) FROM {ident(tbl)} "
                f"ORDER BY {PROFILE_ID}",
            )
            new.audiences[aud.audience_id]["columns"] = columns
    finally:
        con.close()
    store._commit(SCOPE, base.version, new)


def stored(store: LakeProfileStore, segment_id: str) -> dict[uuid.UUID, tuple[str, dt.datetime, str]]:
    m = store.manifest(SCOPE)
    assert m.audiences[segment_id]["namespace"] == "ups"
    files = [store.root(SCOPE) / f for f in m.tables[table_for(segment_id)]]
    if not files:
        return {}
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(
            "SELECT __ah_profile_id, __ah_status, __ah_qualified_at, __ah_run_id FROM read_parquet(?)",
            [[str(f) for f in files]],
        ).fetchall()
    finally:
        con.close()
    found = {uuid.UUID(r[0]): (r[1], r[2], r[3]) for r in rows}
    assert len(found) == len(rows), f"segment {segment_id}: a profile has several memberships"
    return found


def evaluate_and_check(
    store: LakeProfileStore, world: World, now: dt.datetime, job: str, plans: list[list[Segment]], ttl: dict[str, int]
) -> dict[str, SegmentCounts]:
    """The embedded store's check (test_evaluation_oracle), reading the lake version's membership tables."""
    return embedded.evaluate_and_check(store, world, now, job, plans, ttl, read=lambda sid: stored(store, sid))


def scenario(
    rng: random.Random, world: World, first_n: int, second_n: int, *, full: bool = False
) -> tuple[list[Segment], list[Segment]]:
    gen = Gen(rng, world) if full else MembershipGen(rng, world)

    def segment(reads: tuple[str, ...] = ()) -> Segment:
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        world.defined.add(sid)
        return sid, gen.profile(3, reads), rng.choice(ORDERS) if full else None

    first = [segment() for _ in range(first_n)]
    second = [segment(tuple(s for s, _, _ in first)) for _ in range(second_n)]
    return first, second


@pytest.mark.parametrize(
    ("seed", "full"), [*((n, True) for n in range(len(STARTS))), *((n, False) for n in range(0, len(STARTS), 2))]
)
def test_random_segments_match_the_python_evaluator(store: LakeProfileStore, seed: int, full: bool) -> None:
    rng = random.Random(seed)
    start = STARTS[seed]
    world = World(rng, start)
    load(store, world)
    first, second = scenario(rng, world, 20 if full else 30, 8 if full else 12, full=full)
    ttl = {sid: 30 for sid, _, _ in first + second if rng.random() < 0.5}

    evaluate_and_check(store, world, start, "job-1", [first, second], ttl)
    again = evaluate_and_check(store, world, start, "job-2", [first, second], ttl)
    for sid, _, _ in first:  # nothing changed: the same members, all existing now
        assert again[sid].realized == 0 and again[sid].exited == 0, (sid, again[sid])
    for n, days in enumerate((1, 45), start=3):
        at = start + dt.timedelta(days=days)
        world.mutate(at)
        load(store, world)
        evaluate_and_check(store, world, at, f"job-{n}", [first, second], ttl)


def test_a_job_is_applied_once_and_a_failed_job_changes_nothing(store: LakeProfileStore) -> None:
    rng = random.Random(7)
    now = STARTS[0]
    world = World(rng, now, profiles=20)
    load(store, world)
    first, second = scenario(rng, world, 4, 2)
    counts = evaluate_and_check(store, world, now, "once", [first, second], {})
    version = store.manifest(SCOPE).version
    assert store.evaluate(SCOPE, "once", [compile_plan(world, now, first)], {}) == counts
    assert store.manifest(SCOPE).version == version  # nothing written the second time

    later = now + dt.timedelta(days=2)
    bad = compile_plan(world, later, second)
    bad.segments.append(("broken", "CAST('not a number' AS INTEGER) > 0"))
    with pytest.raises(Exception, match="not a number"):
        store.evaluate(SCOPE, "failing", [compile_plan(world, later, first), bad], {})
    assert store.manifest(SCOPE).version == version
    assert store.evaluation(SCOPE, "failing") is None
    evaluate_and_check(store, world, later, "failing", [first, second], {})  # it can run again
