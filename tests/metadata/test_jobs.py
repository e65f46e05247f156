"""The job table and the audience evaluations on SQLite and PostgreSQL: enqueue, claim, heartbeat, finish,
orphans; concurrent claims take each job once."""

from __future__ import annotations

import threading
import time

from audiencehub.domain.segments import SegmentCounts
from audiencehub.metadata import evaluations, jobs
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, get_row

SCOPE = Scope("ORG@AdobeOrg", "prod")


def enqueue(store: MetadataStore, n: int) -> list[str]:
    with store.tx() as conn:
        return [jobs.enqueue(conn, SCOPE, "kind", f"ref-{i}", {"i": i}) for i in range(n)]


def claim(store: MetadataStore, worker: str) -> Row | None:
    with store.tx() as conn:
        return jobs.claim(conn, worker)


def status(store: MetadataStore, job_id: str) -> str:
    with store.read() as conn:
        row = get_row(conn, t.jobs, None, id=job_id)
    assert row is not None
    return str(row["status"])


def test_claims_take_the_oldest_queued_job_first(store: MetadataStore) -> None:
    ids = enqueue(store, 3)
    first = claim(store, "w1")
    assert first is not None and first["id"] == ids[0]
    assert (first["status"], first["worker_id"], first["attempts"], first["payload"]) == ("RUNNING", "w1", 1, {"i": 0})
    second = claim(store, "w2")
    assert second is not None and second["id"] == ids[1]


def test_an_empty_queue_gives_nothing(store: MetadataStore) -> None:
    assert claim(store, "w1") is None


def test_only_the_holder_heartbeats_finishes_or_requeues(store: MetadataStore) -> None:
    (job_id,) = enqueue(store, 1)
    got = claim(store, "w1")
    assert got is not None
    before = got["heartbeat_at"]
    with store.tx() as conn:
        jobs.heartbeat(conn, [job_id], "someone-else")
    with store.read() as conn:
        row = get_row(conn, t.jobs, None, id=job_id)
    assert row is not None and row["heartbeat_at"] == before
    with store.tx() as conn:
        jobs.heartbeat(conn, [job_id], "w1")
        assert not jobs.finish(conn, job_id, jobs.SUCCEEDED, worker_id="someone-else")
        assert not jobs.requeue(conn, job_id, worker_id="someone-else")
    with store.read() as conn:
        row = get_row(conn, t.jobs, None, id=job_id)
    assert row is not None and row["heartbeat_at"] >= before and row["status"] == "RUNNING"
    with store.tx() as conn:
        assert jobs.finish(conn, job_id, jobs.FAILED, "boom", worker_id="w1")
    assert status(store, job_id) == "FAILED"


def test_a_requeued_job_is_claimed_again_with_one_more_attempt(store: MetadataStore) -> None:
    (job_id,) = enqueue(store, 1)
    assert claim(store, "w1") is not None
    with store.tx() as conn:
        assert jobs.requeue(conn, job_id, worker_id="w1")
    again = claim(store, "w2")
    assert again is not None and (again["id"], again["attempts"], again["worker_id"]) == (job_id, 2, "w2")


def test_orphans_are_the_running_jobs_of_stopped_workers(store: MetadataStore) -> None:
    stale, _alive, unregistered = enqueue(store, 3)
    with store.tx() as conn:
        jobs.register(conn, "dead", host="h", pid=1, home=None, threads=1)
        jobs.register(conn, "live", host="h", pid=2, home=None, threads=1)
    for worker in ("dead", "live", "gone"):
        assert claim(store, worker) is not None
    with store.tx() as conn:
        conn.execute(t.workers.update().where(t.workers.c.id == "dead").values(heartbeat_at=time.time() - 600))
        conn.execute(t.jobs.update().where(t.jobs.c.id == stale).values(heartbeat_at=time.time() - 600))
    with store.read() as conn:
        found = jobs.orphans(conn, stale_before=time.time() - 60, worker_id="me")
    assert sorted(r["id"] for r in found) == sorted([stale, unregistered])
    orphan = next(r for r in found if r["id"] == stale)
    with store.tx() as conn:
        assert jobs.take_over(conn, orphan, "me")
        assert not jobs.take_over(conn, orphan, "peer")  # the first take-over changed the row
    with store.read() as conn:
        row = get_row(conn, t.jobs, None, id=stale)
    assert row is not None and row["worker_id"] == "me"


def test_workers_claiming_at_once_take_each_job_exactly_once(store: MetadataStore) -> None:
    ids = enqueue(store, 40)
    taken: dict[str, list[str]] = {}
    start = threading.Barrier(4)

    def work(worker: str) -> None:
        start.wait()
        mine = taken.setdefault(worker, [])
        while (job := claim(store, worker)) is not None:
            mine.append(job["id"])

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    claimed = [job_id for mine in taken.values() for job_id in mine]
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    assert all(status(store, job_id) == "RUNNING" for job_id in ids)


def test_the_latest_evaluation_of_each_audience(store: MetadataStore) -> None:
    with store.tx() as conn:
        evaluations.record(conn, SCOPE, "a1", "job-1", SegmentCounts(realized=5))
        evaluations.record(conn, SCOPE, "a1", "job-2", SegmentCounts(realized=1, existing=5, exited=2))
        evaluations.record(conn, SCOPE, "a2", "job-2", SegmentCounts(realized=7))
        evaluations.record(conn, Scope(SCOPE.org_id, "dev"), "a3", "job-3", SegmentCounts(realized=9))
    with store.read() as conn:
        latest = evaluations.latest(conn, SCOPE)
    assert sorted(latest) == ["a1", "a2"]
    assert (latest["a1"]["job_id"], latest["a1"]["existing"], latest["a1"]["exited"]) == ("job-2", 5, 2)
    assert latest["a2"]["realized"] == 7
