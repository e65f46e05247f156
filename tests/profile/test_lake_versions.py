"""The lake profile store's versions: a failed write changes nothing, racing writers from one base cannot both commit,
superseded versions and a crashed writer's files go after the grace period; and its SQL is portable."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from audiencehub.engines.base import Engine, EngineSession, Format, Progress
from audiencehub.engines.duckdb import DuckDBEngine
from audiencehub.errors import TransientError
from audiencehub.metadata.store import MetadataStore
from audiencehub.profile import lake, lake_work
from audiencehub.profile.duckdb import DuckDBProfileStore
from audiencehub.profile.lake import LakeProfileStore, Manifest
from tests.profile.test_lake_parity import (
    A1,
    SCOPE,
    duckdb_engine,
    lake_store,
    metadata_store,
    play,
    run,
    script,
    snapshot,
    view,
)


@pytest.fixture
def metadata(tmp_path: Path) -> Iterator[MetadataStore]:
    yield from metadata_store(tmp_path)


def _two_runs(tmp: Path) -> tuple[Any, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    first = run(tmp, "ra", [[("a@x.com", "C-1", "gold", 1, None), ("b@x.com", None, "gold", 2, None)]])
    second = run(tmp, "rb", [[("c@x.com", "C-1", "silver", 3, None), ("d@x.com", None, "gold", 4, None)]])
    return first, second


def test_a_write_that_fails_before_its_commit_leaves_the_previous_version(
    tmp_path: Path, metadata: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _two_runs(tmp_path / "files")
    store = lake_store(tmp_path, duckdb_engine(tmp_path), metadata)
    store.apply_audience(SCOPE, first)
    before = snapshot(store, [])
    folders = sorted(p.name for p in store.root(SCOPE).iterdir())

    def crash(*_: Any) -> None:
        raise RuntimeError("the worker died before its commit")

    monkeypatch.setattr(store, "_commit", crash)
    with pytest.raises(RuntimeError):
        store.apply_audience(SCOPE, second)
    assert store.manifest(SCOPE).version == 1
    assert snapshot(store, []) == before
    assert store.applied(SCOPE, "rb") is None
    assert sorted(p.name for p in store.root(SCOPE).iterdir()) == folders  # its version folder went with it
    monkeypatch.undo()
    assert store.apply_audience(SCOPE, second).membersRealized == 2  # the retry applies it
    store.close()


def test_of_two_writers_from_one_base_one_commits_and_the_other_builds_again_on_its_version(
    tmp_path: Path, metadata: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _two_runs(tmp_path / "files")
    # Two stores over one lake and one catalog: two worker processes.
    a = lake_store(tmp_path, duckdb_engine(tmp_path), metadata)
    b = lake_store(tmp_path, duckdb_engine(tmp_path), metadata)
    ready, go = threading.Event(), threading.Event()
    commit, commits = a._commit, []

    def held(*args: Any) -> None:
        commits.append(args[1])  # the version it builds on
        if len(commits) == 1:
            ready.set()  # a has built its version from version 0 ...
            assert go.wait(30)
        commit(*args)  # ... and commits it after b committed version 1: it loses, and builds again from 1

    monkeypatch.setattr(a, "_commit", held)
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            a.apply_audience(SCOPE, first)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    assert ready.wait(30)
    b.apply_audience(SCOPE, second)
    go.set()
    thread.join(30)
    # An ingestion run is never retried as a job, so the store itself must not fail it for a lost race.
    assert outcome == [None] and commits == [0, 1]
    assert a.applied(SCOPE, "ra") is not None and a.manifest(SCOPE).version == 2
    profile = a.lookup(SCOPE, "CRMID", "C-1")
    assert profile is not None and ("Email", "c@x.com") in profile.identities  # b's run kept C-1 first
    members, total = a.members(SCOPE, A1, limit=10, offset=0)
    emails = {i for p in members for ns, i in p.identities if ns == "Email"}
    assert total == 3 and emails == {"a@x.com", "b@x.com", "c@x.com", "d@x.com"}  # a's row joined c's profile
    a.close()
    b.close()


def test_a_write_that_loses_every_race_says_retry(
    tmp_path: Path, metadata: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = _two_runs(tmp_path / "files")
    store = lake_store(tmp_path, duckdb_engine(tmp_path), metadata)
    tries = []

    def lost(*args: Any) -> None:
        tries.append(args[1])
        raise TransientError("another writer committed first: retry")

    monkeypatch.setattr(store, "_commit", lost)
    with pytest.raises(TransientError, match="retry"):
        store.apply_audience(SCOPE, first)
    assert len(tries) == lake.RACES and store.manifest(SCOPE).version == 0 and store.applied(SCOPE, "ra") is None
    store.close()


def test_superseded_versions_and_a_crashed_writers_folder_go_after_the_grace_period(
    tmp_path: Path, metadata: MetadataStore
) -> None:
    first, second = _two_runs(tmp_path / "files")
    store = lake_store(tmp_path, duckdb_engine(tmp_path), metadata, grace_s=0)
    store.apply_audience(SCOPE, first)
    leftover = store.root(SCOPE) / "v00000002-deadbeef0000"  # a writer killed before its commit
    leftover.mkdir()
    (leftover / "identities-1.parquet").write_bytes(b"partial")
    store.apply_audience(SCOPE, second)
    m = store.manifest(SCOPE)
    named = {f.split("/")[0] for files in m.tables.values() for f in files}
    on_disk = {p.name for p in store.root(SCOPE).iterdir() if p.name != "_tmp"}
    assert on_disk == named and not leftover.exists()
    assert store.lookup(SCOPE, "Email", "a@x.com") is not None  # carried-over files stayed
    store.close()


class _Recording(Engine):
    """DuckDB, keeping every statement it ran."""

    name = "duckdb"

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.statements: list[str] = []

    @contextmanager
    def session(self, *, progress: Progress | None = None) -> Iterator[EngineSession]:
        outer = self

        class Session(EngineSession):
            def __init__(self, s: EngineSession) -> None:
                self.s = s

            def copy(
                self, select_sql: str, dest: Path, fmt: Format = "parquet", *, row_group_rows: int | None = None
            ) -> int:
                outer.statements.append(select_sql)
                return self.s.copy(select_sql, dest, fmt, row_group_rows=row_group_rows)

            def query(self, sql: str) -> list[tuple[Any, ...]]:
                outer.statements.append(sql)
                return self.s.query(sql)

            def interrupt(self) -> None:
                self.s.interrupt()

        with self.inner.session(progress=progress) as s:
            yield Session(s)


READ_PARQUET = re.compile(r"read_parquet\(\[[^\]]*\](?:, file_row_number = true)?\)")
DUCKDB_ONLY = re.compile(
    r"\b(QUALIFY|EXCLUDE|REPLACE|DISTINCT ON|UPDATE|DELETE|INSERT|gen_random_uuid|to_days)\b", re.I
)


def test_every_statement_of_a_write_is_portable_to_spark(tmp_path: Path, metadata: MetadataStore) -> None:
    engine = _Recording(duckdb_engine(tmp_path))
    store = lake_store(tmp_path, engine, metadata)
    play(store, script(tmp_path / "files"))
    store.close()
    assert len(engine.statements) > 20
    for sql in engine.statements:
        plain = READ_PARQUET.sub("some_table", sql)
        assert not DUCKDB_ONLY.search(plain), sql
        spark = sqlglot.transpile(plain, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE)[0]
        assert "some_table" in spark or "read_parquet" not in sql


def test_many_rows_sharing_a_new_secondary_identity_merge_as_in_the_embedded_store(
    tmp_path: Path, metadata: MetadataStore
) -> None:
    rows = [("first@x.com", "C-1", "t", 1, None)] + [(f"u{i:04d}@x.com", "C-1", "t", 1, None) for i in range(500)]
    files = tmp_path / "files"
    files.mkdir()
    audience_rows = run(files, "big", [rows, [("later@x.com", "C-1", "t", 1, None)]])
    embedded = DuckDBProfileStore(tmp_path / "emb", memory_limit="512MB", threads=2, temp_dir=tmp_path / "etmp")
    lake = lake_store(tmp_path, DuckDBEngine(threads=2, memory_limit="512MB", temp_dir=tmp_path / "t2"), metadata)
    try:
        assert lake.apply_audience(SCOPE, audience_rows) == embedded.apply_audience(SCOPE, audience_rows)
        for identity in [
            ("CRMID", "C-1"),
            ("Email", "first@x.com"),
            ("Email", "u0499@x.com"),
            ("Email", "later@x.com"),
        ]:
            assert view(lake.lookup(SCOPE, *identity)) == view(embedded.lookup(SCOPE, *identity))
        assert lake.count_profiles(SCOPE) == embedded.count_profiles(SCOPE) == 1
        assert lake.counts(SCOPE, A1) == embedded.counts(SCOPE, A1)
        assert isinstance(lake.manifest(SCOPE), Manifest)
    finally:
        lake.close()
        embedded.close()


def test_many_small_runs_compact_into_one_file_per_table_and_still_match(
    tmp_path: Path, metadata: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lake_work, "COMPACT_AT", 2)
    files = tmp_path / "files"
    files.mkdir()
    runs = [run(files, f"s{n}", [[(f"p{n}@x.com", f"C-{n % 2}", "t", n, None)]]) for n in range(5)]
    embedded = DuckDBProfileStore(tmp_path / "emb", memory_limit="512MB", threads=2, temp_dir=tmp_path / "etmp")
    store = lake_store(tmp_path, duckdb_engine(tmp_path), metadata)
    try:
        for rows in runs:
            assert store.apply_audience(SCOPE, rows) == embedded.apply_audience(SCOPE, rows)
        tables = store.manifest(SCOPE).tables
        assert all(len(tables[t]) <= 2 for t in ("identities", "identities_by_profile", "applied_runs"))
        for n in range(5):
            identity = ("Email", f"p{n}@x.com")
            assert view(store.lookup(SCOPE, *identity)) == view(embedded.lookup(SCOPE, *identity))
            assert store.applied(SCOPE, f"s{n}") == embedded.applied(SCOPE, f"s{n}")
        assert store.count_profiles(SCOPE) == embedded.count_profiles(SCOPE) == 2
    finally:
        store.close()
        embedded.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_writers_committing_at_once_one_wins_on_each_metadata_backend(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    catalog = MetadataStore(url)
    catalog.create_all()
    first, second = _two_runs(tmp_path / "files")
    stores = [lake_store(tmp_path, duckdb_engine(tmp_path), catalog) for _ in range(2)]
    both = threading.Barrier(2, timeout=30)
    bases: dict[int, list[int]] = {0: [], 1: []}
    for n, store in enumerate(stores):
        commit = store._commit

        def at_once(*args: Any, commit: Any = commit, n: int = n) -> None:
            bases[n].append(args[1])
            if len(bases[n]) == 1:
                both.wait()  # both built their version from version 0; now both commit
            commit(*args)

        monkeypatch.setattr(store, "_commit", at_once)
    outcome: dict[str, BaseException | None] = {}

    def write(store: LakeProfileStore, rows: Any) -> None:
        try:
            store.apply_audience(SCOPE, rows)
            outcome[rows.run_id] = None
        except BaseException as exc:
            outcome[rows.run_id] = exc

    threads = [threading.Thread(target=write, args=(s, r)) for s, r in zip(stores, (first, second), strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcome == {"ra": None, "rb": None}
    # The metadata store let exactly one commit on version 0; the other built again on version 1.
    assert sorted(bases.values()) == [[0], [0, 1]], bases
    assert stores[1].manifest(SCOPE).version == 2
    assert stores[1].applied(SCOPE, "ra") is not None and stores[1].applied(SCOPE, "rb") is not None
    assert stores[1].counts(SCOPE, A1) == {"realized": 3, "exited": 0}  # a and c share C-1: one profile
    for store in stores:
        store.close()
    catalog.dispose()


def test_tables_are_written_in_row_groups_small_enough_for_point_reads(
    tmp_path: Path, metadata: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    monkeypatch.setattr(lake_work, "POINT_READ_ROWS", 2048)  # DuckDB's smallest; the real 16,384 needs a large run
    rows = [(f"u{i}@x.com", None, "gold", i, None) for i in range(5000)]
    store = lake_store(tmp_path, duckdb_engine(tmp_path), metadata)
    (tmp_path / "files").mkdir()
    store.apply_audience(SCOPE, run(tmp_path / "files", "big", [rows], crm=False))
    m = store.manifest(SCOPE)
    for table in (lake.q.IDENTITIES, m.audiences[A1]["table"]):
        (path,) = [store.root(SCOPE) / f for f in m.tables[table]]
        meta = pq.read_metadata(path)
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert sum(sizes) == 5000 and max(sizes) <= 2048, (table, sizes)  # default: one group of 5000
    found = store.lookup(SCOPE, "Email", "u4321@x.com")
    assert found is not None and found.memberships
    store.close()


def test_compaction_merges_the_small_files_and_keeps_a_big_first_load(
    tmp_path: Path, metadata: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lake_work, "COMPACT_AT", 2)
    files = tmp_path / "files"
    files.mkdir()
    big = run(files, "big", [[(f"b{k}@x.com", f"C-{k}", "t", k, None) for k in range(3000)]])
    small = [run(files, f"s{n}", [[(f"p{n}@x.com", f"C-s{n}", "t", n, None)]]) for n in range(4)]
    embedded = DuckDBProfileStore(tmp_path / "emb", memory_limit="512MB", threads=2, temp_dir=tmp_path / "etmp")
    store = lake_store(tmp_path, duckdb_engine(tmp_path), metadata)
    try:
        assert store.apply_audience(SCOPE, big) == embedded.apply_audience(SCOPE, big)
        (loaded,) = store.manifest(SCOPE).tables["identities"]
        for rows in small:
            assert store.apply_audience(SCOPE, rows) == embedded.apply_audience(SCOPE, rows)
        identities = store.manifest(SCOPE).tables["identities"]
        assert len(identities) <= 2 and identities[0] == loaded  # the big file was never rewritten
        for identity in [
            ("Email", "b0@x.com"),
            ("Email", "b2999@x.com"),
            *(("Email", f"p{n}@x.com") for n in range(4)),
        ]:
            assert view(store.lookup(SCOPE, *identity)) == view(embedded.lookup(SCOPE, *identity))
        assert store.count_profiles(SCOPE) == embedded.count_profiles(SCOPE) == 3004
    finally:
        store.close()
        embedded.close()
