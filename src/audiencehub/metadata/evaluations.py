"""The history of audience sizes: one row per audience per evaluation (a segment job, an external audience's run).

The Audience Portal's sizes and reports read it; segment jobs and ingestion runs write it in the transaction that
records their outcome.
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy import Connection, func, select

from audiencehub.domain.segments import SegmentCounts
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import Row, Scope, created_ns, insert_row


def record(conn: Connection, scope: Scope, audience_id: str, job_id: str, c: SegmentCounts) -> None:
    insert_row(
        conn,
        t.audience_evaluations,
        {
            "id": str(uuid.uuid4()),
            "org_id": scope.org_id,
            "sandbox": scope.sandbox,
            "audience_id": audience_id,
            "job_id": job_id,
            "evaluated_at": int(time.time()),
            "created_ns": created_ns(),
            "realized": c.realized,
            "existing": c.existing,
            "exited": c.exited,
            "members": c.members,
        },
    )


def latest(conn: Connection, scope: Scope) -> dict[str, Row]:
    """The newest evaluation of every audience of the sandbox."""
    e = t.audience_evaluations.c
    newest = (
        select(e.audience_id, func.max(e.created_ns).label("at"))
        .where(e.org_id == scope.org_id, e.sandbox == scope.sandbox)
        .group_by(e.audience_id)
        .subquery()
    )
    rows = conn.execute(
        select(t.audience_evaluations)
        .join(newest, (e.audience_id == newest.c.audience_id) & (e.created_ns == newest.c.at))
        .where(e.org_id == scope.org_id, e.sandbox == scope.sandbox)
    ).mappings()
    return {r["audience_id"]: dict(r) for r in rows}
