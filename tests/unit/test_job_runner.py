"""The embedded job runner against a real SQLite job table."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from audiencehub.jobs.runner import Handler, JobRunner
from audiencehub.metadata import jobs
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Scope, get_row
from tests.conftest import wait_for

SCOPE = Scope("ORG@AdobeOrg", "prod")


def _store(tmp_path: Path) -> MetadataStore:
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    store.create_all()
    return store


def _status(store: MetadataStore, job_id: str) -> str:
    with store.tx() as conn:
        row = get_row(conn, t.jobs, None, id=job_id)
    assert row is not None
    return str(row["status"])


def test_a_job_whose_handler_and_recovery_both_raise_does_not_stop_the_worker(tmp_path: Path) -> None:
    store = _store(tmp_path)
    done: list[str] = []

    def explode(ref: str, scope: Scope) -> None:
        raise RuntimeError(f"cannot do {ref}")

    runner = JobRunner(
        store,
        {
            "boom": Handler(execute=explode, recover=explode),
            "ok": Handler(execute=lambda ref, scope: done.append(ref), recover=lambda ref, scope: None),
        },
        workers=1,
        heartbeat_s=0.1,
        stale_after_s=5.0,
    )
    with store.tx() as conn:
        bad = jobs.enqueue(conn, SCOPE, "boom", "first")
        good = jobs.enqueue(conn, SCOPE, "ok", "second")
    runner.start()
    try:
        wait_for(lambda: done == ["second"], timeout=10, what="the job after the failing one")
        assert _status(store, bad) == jobs.FAILED
        assert _status(store, good) == jobs.SUCCEEDED
    finally:
        runner.stop()


def test_jobs_left_running_by_a_dead_process_are_recovered_on_start(tmp_path: Path) -> None:
    store = _store(tmp_path)
    recovered: list[str] = []
    with store.tx() as conn:
        job_id = jobs.enqueue(conn, SCOPE, "run", "r1")
        assert jobs.claim(conn, "a-worker-that-died") is not None
    runner = JobRunner(
        store,
        {"run": Handler(execute=lambda ref, scope: None, recover=lambda ref, scope: recovered.append(ref))},
        workers=1,
        heartbeat_s=0.1,
        stale_after_s=60.0,
    )
    runner.start()
    try:
        assert recovered == ["r1"]
        assert _status(store, job_id) == jobs.FAILED
    finally:
        runner.stop()


def test_a_job_of_an_unknown_kind_is_failed_and_the_worker_goes_on(tmp_path: Path) -> None:
    store = _store(tmp_path)
    done: list[str] = []
    runner = JobRunner(
        store,
        {"ok": Handler(execute=lambda ref, scope: done.append(ref), recover=lambda ref, scope: None)},
        workers=1,
        heartbeat_s=0.1,
        stale_after_s=5.0,
    )
    with store.tx() as conn:
        stray = jobs.enqueue(conn, SCOPE, "from-a-newer-version", "x")
        jobs.enqueue(conn, SCOPE, "ok", "after")
    runner.start()
    try:
        wait_for(lambda: done == ["after"], timeout=10, what="the job after the unknown one")
        assert _status(store, stray) == jobs.FAILED
    finally:
        runner.stop()


# -- several pools over one store (issue 7): on SQLite and on a real PostgreSQL -----------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    """One metadata store that several runners share, as worker processes do."""
    url = (
        f"sqlite:///{tmp_path / 'metadata.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    store = MetadataStore(url)
    store.create_all()
    yield store
    store.dispose()


def _runner(store: MetadataStore, handlers: dict[str, Handler], **kw: Any) -> JobRunner:
    values: dict[str, Any] = {"workers": 2, "heartbeat_s": 0.1, "stale_after_s": 30.0, "poll_s": 0.05}
    return JobRunner(store, handlers, **{**values, **kw})


def _job(store: MetadataStore, job_id: str) -> dict[str, Any]:
    with store.tx() as conn:
        row = get_row(conn, t.jobs, None, id=job_id)
    assert row is not None
    return row


def _orphan(store: MetadataStore, kind: str, *, worker: str, heartbeat_age: float, home: str | None = None) -> str:
    """A RUNNING job of a registered worker whose heartbeats stopped ``heartbeat_age`` seconds ago."""
    with store.tx() as conn:
        job_id = jobs.enqueue(conn, SCOPE, kind, f"ref-{uuid.uuid4().hex[:6]}")
        claimed = jobs.claim(conn, worker)
        assert claimed is not None and claimed["id"] == job_id
        if not any(w["id"] == worker for w in jobs.workers(conn)):
            jobs.register(conn, worker, host=socket.gethostname()[:255], pid=1, home=home, threads=1)
        old = time.time() - heartbeat_age
        conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(heartbeat_at=old))
        conn.execute(update(t.workers).where(t.workers.c.id == worker).values(heartbeat_at=old))
    return job_id


def test_two_pools_run_every_job_exactly_once(shared: MetadataStore) -> None:
    ran: list[tuple[str, str]] = []
    lock = threading.Lock()

    def handlers(name: str) -> dict[str, Handler]:
        def execute(ref: str, scope: Scope) -> None:
            time.sleep(0.005)  # long enough for the other pool's threads to claim meanwhile
            with lock:
                ran.append((ref, name))

        return {"work": Handler(execute=execute, recover=lambda ref, scope: None)}

    with shared.tx() as conn:
        ids = [jobs.enqueue(conn, SCOPE, "work", f"r{n}") for n in range(60)]
    a, b = _runner(shared, handlers("a")), _runner(shared, handlers("b"))
    a.start()
    b.start()
    try:
        wait_for(lambda: len(ran) >= 60, timeout=60, what="60 jobs")
        wait_for(lambda: all(_job(shared, j)["status"] == jobs.SUCCEEDED for j in ids), timeout=10, what="outcomes")
    finally:
        a.stop()
        b.stop()
    assert sorted(ref for ref, _ in ran) == sorted(f"r{n}" for n in range(60))  # each once
    assert {name for _, name in ran} == {"a", "b"}  # both pools got work
    assert {_job(shared, j)["attempts"] for j in ids} == {1}
    with shared.tx() as conn:
        assert jobs.workers(conn) == []  # a pool that stopped cleanly leaves the registry


def test_a_new_pool_leaves_a_live_peers_running_job_alone(shared: MetadataStore) -> None:
    started, release = threading.Event(), threading.Event()
    recovered: list[str] = []

    def slow(ref: str, scope: Scope) -> None:
        started.set()
        release.wait(30)

    handlers = {"slow": Handler(execute=slow, recover=lambda ref, scope: recovered.append(ref))}
    # A stale period far above the heartbeat: a loaded machine must not make the live job look stale.
    first = _runner(shared, handlers, workers=1, stale_after_s=5.0)
    with shared.tx() as conn:
        job_id = jobs.enqueue(conn, SCOPE, "slow", "busy")
    first.start()
    second = _runner(shared, handlers, workers=1, stale_after_s=5.0)
    try:
        assert started.wait(10)
        second.start()  # before issue 7, a start took every other worker's RUNNING job for an orphan
        deadline = time.monotonic() + 1.5  # many sweeps by the second pool
        while time.monotonic() < deadline:
            row = _job(shared, job_id)
            assert (row["status"], row["worker_id"]) == (jobs.RUNNING, first.worker_id)
            time.sleep(0.1)
        assert recovered == []
        release.set()
        wait_for(lambda: _job(shared, job_id)["status"] == jobs.SUCCEEDED, timeout=10, what="the slow job")
    finally:
        release.set()
        first.stop()
        second.stop()
    assert _job(shared, job_id)["attempts"] == 1


def test_a_dead_workers_jobs_are_retried_or_failed_with_the_reason(shared: MetadataStore) -> None:
    done: list[str] = []
    recovered: list[str] = []
    handlers = {
        "again": Handler(execute=lambda ref, scope: done.append(ref), recover=lambda r, s: None, retryable=True),
        "once": Handler(execute=lambda ref, scope: done.append(ref), recover=lambda r, s: recovered.append(r)),
    }
    again = _orphan(shared, "again", worker="dead-host:1:aaaa", heartbeat_age=5.0)
    once = _orphan(shared, "once", worker="dead-host:1:aaaa", heartbeat_age=5.0)
    runner = _runner(shared, handlers, stale_after_s=2.0)
    runner.start()
    try:
        wait_for(lambda: _job(shared, again)["status"] == jobs.SUCCEEDED, timeout=10, what="the retried job")
        row = _job(shared, once)
        assert (row["status"], row["error"]) == (jobs.FAILED, "the worker running this job stopped")
        assert recovered == [row["ref_id"]]
        assert done == [_job(shared, again)["ref_id"]]  # the non-retryable one never ran again
        assert _job(shared, again)["attempts"] == 2
        with shared.tx() as conn:
            assert [w["id"] for w in jobs.workers(conn)] == [runner.worker_id]  # the dead one is pruned
    finally:
        runner.stop()


def test_a_stale_job_waits_for_the_stale_period_when_its_worker_is_not_known_dead(shared: MetadataStore) -> None:
    handlers = {"once": Handler(execute=lambda ref, scope: None, recover=lambda r, s: None)}
    fresh = _orphan(shared, "once", worker="other-host:9:bbbb", heartbeat_age=0.0)
    # A job that IS stale: once a sweep has recovered it, that sweep has seen the fresh one too.
    stale = _orphan(shared, "once", worker="other-host:9:cccc", heartbeat_age=120.0)
    runner = _runner(shared, handlers, stale_after_s=60.0)
    runner.start()
    try:
        wait_for(lambda: _job(shared, stale)["status"] == jobs.FAILED, what="the stale job's recovery")
        assert _job(shared, fresh)["status"] == jobs.RUNNING
    finally:
        runner.stop()


def test_the_servers_restart_recovers_its_predecessors_jobs_at_once(shared: MetadataStore, tmp_path: Path) -> None:
    """The home's lock is held by one process per host: an earlier holder's pool on this host is gone."""
    home = tmp_path / "home"
    home.mkdir()
    handlers = {"once": Handler(execute=lambda ref, scope: None, recover=lambda r, s: None)}
    mine = _orphan(shared, "once", worker="old-server", heartbeat_age=0.0, home=str(home.resolve()))
    other_home = _orphan(shared, "once", worker="elsewhere", heartbeat_age=0.0, home=str(tmp_path / "other"))
    runner = _runner(shared, handlers, stale_after_s=60.0, home=home)
    runner.start()
    try:
        row = _job(shared, mine)
        assert (row["status"], row["error"]) == (jobs.FAILED, "the worker running this job stopped")
        assert _job(shared, other_home)["status"] == jobs.RUNNING
    finally:
        runner.stop()


def test_a_worker_whose_job_was_taken_over_cannot_overwrite_the_outcome(shared: MetadataStore) -> None:
    with shared.tx() as conn:
        job_id = jobs.enqueue(conn, SCOPE, "k", "r")
        job = jobs.claim(conn, "slow-worker")
        assert job is not None
        assert jobs.take_over(conn, job, "peer")
        assert not jobs.take_over(conn, job, "another-peer")  # one peer recovers it
        assert jobs.finish(conn, job_id, jobs.FAILED, "the worker running this job stopped", worker_id="peer")
        assert not jobs.finish(conn, job_id, jobs.SUCCEEDED, worker_id="slow-worker")
        assert not jobs.requeue(conn, job_id, worker_id="slow-worker")
    assert _job(shared, job_id)["status"] == jobs.FAILED


def test_a_server_without_job_threads_leaves_jobs_queued(shared: MetadataStore) -> None:
    runner = _runner(shared, {"k": Handler(execute=lambda r, s: None, recover=lambda r, s: None)}, workers=0)
    with shared.tx() as conn:
        job_id = jobs.enqueue(conn, SCOPE, "k", "r")
    runner.start()
    runner.wake()
    try:
        time.sleep(0.3)
        assert _job(shared, job_id)["status"] == jobs.QUEUED
        with shared.tx() as conn:
            assert jobs.workers(conn) == []
    finally:
        runner.stop()


def test_a_stop_waits_for_running_jobs_then_leaves_the_rest_to_recovery(shared: MetadataStore) -> None:
    release = threading.Event()
    started = threading.Event()

    def held(ref: str, scope: Scope) -> None:
        started.set()
        release.wait(30)

    handlers = {"held": Handler(execute=held, recover=lambda r, s: None)}
    runner = _runner(shared, handlers, workers=1)
    with shared.tx() as conn:
        job_id = jobs.enqueue(conn, SCOPE, "held", "r")
    runner.start()
    try:
        assert started.wait(10)
        assert runner.stop(0.3) == [job_id]
        assert _job(shared, job_id)["status"] == jobs.RUNNING  # no outcome invented: recovery decides
        with shared.tx() as conn:
            assert [w["id"] for w in jobs.workers(conn)] == [runner.worker_id]  # goes stale, then pruned
    finally:
        release.set()


def test_the_claim_locks_with_skip_locked_on_postgresql() -> None:
    stmt = (
        select(t.jobs.c.id)
        .where(t.jobs.c.status == jobs.QUEUED)
        .order_by(t.jobs.c.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    assert "FOR UPDATE SKIP LOCKED" in str(stmt.compile(dialect=postgresql.dialect()))
    assert "FOR UPDATE" not in str(stmt.compile(dialect=sqlite.dialect()))


def test_a_pool_taken_for_dead_registers_again(shared: MetadataStore) -> None:
    """A peer prunes a worker whose heartbeats were late; unregistered, its next jobs would look orphaned at once."""
    runner = _runner(shared, {}, workers=1)
    runner.start()
    try:
        with shared.tx() as conn:
            jobs.unregister(conn, runner.worker_id)

        def registered() -> bool:
            with shared.read() as conn:
                return [w["id"] for w in jobs.workers(conn)] == [runner.worker_id]

        wait_for(registered, timeout=10, what="the worker's row again")
    finally:
        runner.stop()
