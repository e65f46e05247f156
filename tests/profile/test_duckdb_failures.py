"""The embedded profile store after DuckDB invalidates a sandbox's database (a ``FatalException``).

A real one, provoked: a store with 40MB of memory applies a run of 400,000 new profiles; the commit cannot get
memory for the identities' index, and neither can its rollback, so DuckDB invalidates the database. The run must
fail with a reason that names the memory setting, and the next call must open the database again and find
everything the store had before that run, and nothing of it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from audiencehub.engines.ingest_sql import CHECK, VALUE, field_column, ident, lit
from audiencehub.profile.base import ProfileStoreFailed
from audiencehub.profile.duckdb import DuckDBProfileStore
from tests.conftest import wait_for
from tests.unit.test_profile_store import AUDIENCE, SCOPE, _rows, _validated

BIG = 400_000
LIMIT = "40MB"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBProfileStore]:
    s = DuckDBProfileStore(tmp_path / "lake", memory_limit=LIMIT, threads=2, temp_dir=tmp_path / "tmp")
    yield s
    s.close()


def _big_file(path: Path) -> Path:
    """A validated file of ``BIG`` new e-mail addresses (``big{n}@example.com``), every row accepted."""
    con = duckdb.connect()
    try:
        con.execute(
            f"COPY (SELECT 'big' || i || '@example.com' AS {ident(field_column('email'))}, "
            f"'gold' AS {ident(field_column('tier'))}, CAST(NULL AS INTEGER) AS {CHECK}, "
            f"CAST(NULL AS VARCHAR) AS {VALUE} FROM range({BIG}) t(i)) TO {lit(str(path))} (FORMAT parquet)"
        )
    finally:
        con.close()
    return path


def _fail_big_run(store: DuckDBProfileStore, tmp_path: Path) -> ProfileStoreFailed:
    with pytest.raises(ProfileStoreFailed) as failed:
        store.apply_audience(SCOPE, _rows([_big_file(tmp_path / "big.parquet")], run_id="big"))
    chain: list[BaseException] = []
    seen: BaseException | None = failed.value
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    # The point of these tests: DuckDB gave up on the database, not only on the statement.
    assert any(isinstance(e, duckdb.FatalException) for e in chain), [repr(e)[:200] for e in chain]
    return failed.value


def test_a_run_that_invalidates_the_database_fails_and_the_next_run_reopens_it(
    store: DuckDBProfileStore, tmp_path: Path
) -> None:
    small = [_validated(tmp_path / "a.parquet", ["email", "tier"], [("a@example.com", "gold")])]
    store.apply_audience(SCOPE, _rows(small, run_id="before"))

    failure = _fail_big_run(store, tmp_path)

    assert failure.detail.startswith(f"the profile store ran out of memory (AUDIENCEHUB_PROFILE_MEMORY_LIMIT={LIMIT})")
    assert "MiB used)" in failure.detail  # DuckDB's own words: "... could not allocate ... (38.1 MiB/38.1 MiB used)"
    # Reopened on the next call, without a restart: what committed before is there, nothing of the failed run is.
    assert store.applied(SCOPE, "big") is None
    assert store.lookup(SCOPE, "Email", "big0@example.com") is None
    assert store.count_profiles(SCOPE) == 1
    after = [_validated(tmp_path / "b.parquet", ["email", "tier"], [("b@example.com", "silver")])]
    result = store.apply_audience(SCOPE, _rows(after, run_id="after"))
    assert result.profilesCreated == 1
    assert store.count_profiles(SCOPE) == 2
    members, total = store.members(SCOPE, AUDIENCE, limit=10, offset=0)
    assert total == 2
    assert sorted(i for m in members for _, i in m.identities) == ["a@example.com", "b@example.com"]
    profile = store.lookup(SCOPE, "Email", "b@example.com")
    assert profile is not None and profile.memberships[0].payload == {"tier": "silver"}


def test_readers_on_other_threads_fail_at_most_with_the_stores_error_and_go_on_after_the_reopen(
    store: DuckDBProfileStore, tmp_path: Path
) -> None:
    small = [_validated(tmp_path / "a.parquet", ["email", "tier"], [("a@example.com", "gold")])]
    store.apply_audience(SCOPE, _rows(small, run_id="before"))
    stop = threading.Event()
    outcomes: list[str] = []
    unexpected: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                # A scan that takes a while, so that the failure often comes while one runs.
                with store._cursor(SCOPE) as cur:
                    cur.execute("SELECT sum(hash(i)) FROM range(3000000) t(i)").fetchall()
                found = store.lookup(SCOPE, "Email", "a@example.com")
                outcomes.append("ok" if found is not None else "missing")
            except ProfileStoreFailed:  # out of memory too, or its database failed under it
                outcomes.append("failed")
            except BaseException as exc:  # anything else is a bug: a dead connection leaked out, or a crash
                unexpected.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        _fail_big_run(store, tmp_path)
        after = [_validated(tmp_path / "b.parquet", ["email", "tier"], [("b@example.com", "silver")])]
        store.apply_audience(SCOPE, _rows(after, run_id="after"))
        seen = len(outcomes)
        # Until the readers have read the reopened database a few times (or one of them stopped on an error).
        wait_for(lambda: len(outcomes) >= seen + 4 or unexpected, what="reads after the reopen")
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)
    assert not any(r.is_alive() for r in readers), "a reader hangs"
    assert unexpected == []
    assert "missing" not in outcomes
    assert outcomes[-1] == "ok"
    assert store.count_profiles(SCOPE) == 2
