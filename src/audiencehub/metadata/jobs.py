"""The job table: durable work items that workers claim, heartbeat and finish.

Claiming is one conditional UPDATE, so two workers never run the same job (on PostgreSQL the
scale-out worker will use ``FOR UPDATE SKIP LOCKED``; the contract is the same).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import Connection, select, update

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
        row = conn.execute(
            select(t.jobs.c.id).where(t.jobs.c.status == QUEUED).order_by(t.jobs.c.created_at).limit(1)
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


def finish(conn: Connection, job_id: str, status: str, error: str | None = None) -> None:
    conn.execute(
        update(t.jobs).where(t.jobs.c.id == job_id).values(status=status, error=error, finished_at=time.time())
    )


def requeue(conn: Connection, job_id: str) -> None:
    conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(status=QUEUED, worker_id=None))


def orphans(conn: Connection, *, stale_before: float, not_worker: str | None = None) -> list[Row]:
    """RUNNING jobs whose heartbeat stopped before ``stale_before`` (or that belong to a dead worker)."""
    stmt = select(t.jobs).where(t.jobs.c.status == RUNNING)
    rows = [dict(r) for r in conn.execute(stmt).mappings()]
    return [
        r
        for r in rows
        if (r["heartbeat_at"] or 0) < stale_before or (not_worker is not None and r["worker_id"] != not_worker)
    ]
