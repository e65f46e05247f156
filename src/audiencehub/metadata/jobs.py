"""The job table and the worker registry: durable work items that workers claim, heartbeat and finish.

Claiming takes the oldest QUEUED job: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` then the UPDATE in the
same transaction, so concurrent workers each lock a different row without waiting; on SQLite (whose write
transactions are serial, ``BEGIN IMMEDIATE``) the same statement without the lock clause. Either way the UPDATE is
conditional on the row still being QUEUED, so two workers never run the same job.

Ending or re-queueing a job names the worker that holds it: a worker whose job was taken over by a peer (its
heartbeat went stale) cannot overwrite the peer's outcome.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import Connection, delete, select, update

from audiencehub.metadata import tables as t
from audiencehub.metadata.store import Row, Scope

QUEUED, RUNNING, SUCCEEDED, FAILED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED"


def enqueue(conn: Connection, scope: Scope, kind: str, ref_id: str, payload: dict[str, Any] | None = None) -> str:
    job_id = str(uuid.uuid4())
    conn.execute(
        t.jobs.insert().values(
            id=job_id,
            org_id=scope.org_id,
            sandbox=scope.sandbox,
            kind=kind,
            ref_id=ref_id,
            payload=payload or {},
            status=QUEUED,
            attempts=0,
            created_at=time.time(),
        )
    )
    return job_id


def claim(conn: Connection, worker_id: str) -> Row | None:
    """The oldest queued job, now RUNNING for ``worker_id``; None when there is none."""
    for _ in range(5):
        # NOTE: SQLAlchemy leaves FOR UPDATE out on SQLite, whose BEGIN IMMEDIATE already serializes writers.
        row = conn.execute(
            select(t.jobs.c.id)
            .where(t.jobs.c.status == QUEUED)
            .order_by(t.jobs.c.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        stamp = time.time()
        won = conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == row.id, t.jobs.c.status == QUEUED)
            .values(
                status=RUNNING,
                worker_id=worker_id,
                heartbeat_at=stamp,
                started_at=stamp,
                finished_at=None,
                attempts=t.jobs.c.attempts + 1,
            )
        ).rowcount
        if won:
            got = conn.execute(select(t.jobs).where(t.jobs.c.id == row.id)).mappings().first()
            return dict(got) if got else None
    return None


def heartbeat(conn: Connection, job_ids: list[str], worker_id: str) -> None:
    if job_ids:
        conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id.in_(job_ids), t.jobs.c.worker_id == worker_id, t.jobs.c.status == RUNNING)
            .values(heartbeat_at=time.time())
        )


def _held(job_id: str, worker_id: str | None) -> list[Any]:
    conds = [t.jobs.c.id == job_id]
    if worker_id is not None:
        conds += [t.jobs.c.worker_id == worker_id, t.jobs.c.status == RUNNING]
    return conds


def finish(
    conn: Connection, job_id: str, status: str, error: str | None = None, *, worker_id: str | None = None
) -> bool:
    """Records the job's end; with ``worker_id``, only while that worker still holds it (False otherwise)."""
    done = conn.execute(
        update(t.jobs).where(*_held(job_id, worker_id)).values(status=status, error=error, finished_at=time.time())
    )
    return bool(done.rowcount)


def requeue(conn: Connection, job_id: str, *, worker_id: str | None = None) -> bool:
    """Puts the job back in the queue; with ``worker_id``, only while that worker still holds it."""
    done = conn.execute(update(t.jobs).where(*_held(job_id, worker_id)).values(status=QUEUED, worker_id=None))
    return bool(done.rowcount)


def take_over(conn: Connection, job: Row, worker_id: str) -> bool:
    """Makes ``worker_id`` the holder of an orphaned job, unless a peer took it first or its worker came back."""
    won = conn.execute(
        update(t.jobs)
        .where(
            t.jobs.c.id == job["id"],
            t.jobs.c.status == RUNNING,
            t.jobs.c.worker_id == job["worker_id"],
            t.jobs.c.attempts == job["attempts"],
            t.jobs.c.heartbeat_at == job["heartbeat_at"],
        )
        .values(worker_id=worker_id, heartbeat_at=time.time())
    ).rowcount
    return bool(won)


def orphans(conn: Connection, *, stale_before: float, worker_id: str, dead: frozenset[str] = frozenset()) -> list[Row]:
    """RUNNING jobs of other workers that stopped: the job's or its worker's heartbeat is older than
    ``stale_before``, its worker is not registered, or its worker is in ``dead``."""
    registered = {r.id: r.heartbeat_at for r in conn.execute(select(t.workers.c.id, t.workers.c.heartbeat_at)).all()}
    rows = [dict(r) for r in conn.execute(select(t.jobs).where(t.jobs.c.status == RUNNING)).mappings()]
    return [
        r
        for r in rows
        if r["worker_id"] != worker_id
        and (
            (r["heartbeat_at"] or 0) < stale_before
            or r["worker_id"] not in registered
            or registered[r["worker_id"]] < stale_before
            or r["worker_id"] in dead
        )
    ]


# -- the worker registry ---------------------------------------------------------------------------------------


def register(conn: Connection, worker_id: str, *, host: str, pid: int, home: str | None, threads: int) -> None:
    stamp = time.time()
    conn.execute(
        t.workers.insert().values(
            id=worker_id, host=host, pid=pid, home=home, threads=threads, started_at=stamp, heartbeat_at=stamp
        )
    )


def beat(conn: Connection, worker_id: str, job_ids: list[str]) -> bool:
    """The worker's own heartbeat and its running jobs', in one transaction; False when the worker has no row
    (a peer pruned it while its heartbeats were late): it must register again."""
    found = conn.execute(update(t.workers).where(t.workers.c.id == worker_id).values(heartbeat_at=time.time()))
    heartbeat(conn, job_ids, worker_id)
    return bool(found.rowcount)


def unregister(conn: Connection, worker_id: str) -> None:
    conn.execute(delete(t.workers).where(t.workers.c.id == worker_id))


def workers(conn: Connection) -> list[Row]:
    return [dict(r) for r in conn.execute(select(t.workers).order_by(t.workers.c.started_at)).mappings()]


def prune(conn: Connection, *, stale_before: float, dead: frozenset[str] = frozenset()) -> int:
    """Forgets stopped workers that hold no RUNNING job any more; returns how many."""
    holding = select(t.jobs.c.worker_id).where(t.jobs.c.status == RUNNING, t.jobs.c.worker_id.is_not(None))
    gone = t.workers.c.heartbeat_at < stale_before
    if dead:
        gone = gone | t.workers.c.id.in_(dead)
    return int(conn.execute(delete(t.workers).where(gone, t.workers.c.id.not_in(holding))).rowcount)
