"""The embedded job runner against a real SQLite job table."""

from __future__ import annotations

from pathlib import Path

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
