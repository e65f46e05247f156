"""Segment jobs: evaluations of segment definitions, asked for through the API, by the daily schedule, after an
external audience's run commits, or after a batch reaches a profile dataset (continuous definitions).

A job evaluates its segments in dependency order, those of one level in one shared query (``domain/segments.Plan``),
and the profile store publishes all of its memberships in one transaction with a marker; the job's metadata
follows. A job is idempotent per id: after a crash it runs again, or rolls forward when the store already has it.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, select

from audiencehub.domain.segments import Plan, SegmentCounts, spec_of
from audiencehub.errors import BadRequest, NotFound
from audiencehub.metadata import evaluations, jobs
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, created_ns, get_row, insert_row, list_rows, update_row
from audiencehub.pql.ast import PQLError
from audiencehub.pql.compile import compile_segment
from audiencehub.pql.parser import parse
from audiencehub.profile.base import ProfileStore, ProfileStoreFailed
from audiencehub.services.merge_policies import MergePolicyService, sandbox_view
from audiencehub.services.segmentation import MAX_LIMIT, SegmentationService, now_ms, sort_order

JOB_SEGMENT = "segment-job"
JOBS = "/segment/jobs"
ALL = "*"
NEW, PROCESSING, SUCCEEDED, FAILED = "NEW", "PROCESSING", "SUCCEEDED", "FAILED"
CANCELLING, CANCELLED = "CANCELLING", "CANCELLED"
STREAMING = "streaming"  # the job source of continuous evaluation after a batch
FINAL = (SUCCEEDED, FAILED, CANCELLED)


class SegmentJobs:
    def __init__(
        self,
        store: MetadataStore,
        profiles: ProfileStore,
        definitions: SegmentationService,
        merge_policies: MergePolicyService,
        *,
        wake: Callable[[], None],
    ) -> None:
        self._store = store
        self._profiles = profiles
        self._definitions = definitions
        self._policies = merge_policies
        self._wake = wake
        self.clock: Callable[[], float] = time.time
        """The evaluations' "now" (ttl expiry, ``occurs ... before now``), in epoch seconds."""

    def create_job(
        self, scope: Scope, data: Any, *, source: str = "api", properties: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if not isinstance(data, list) or not data:
            raise BadRequest(f'the body must be a non-empty JSON array of {{"segmentId": "..."}} objects, got {data!r}')
        wanted: list[str] = []
        for n, item in enumerate(data):
            sid = item.get("segmentId") if isinstance(item, dict) else None
            if not isinstance(sid, str) or not sid:
                raise BadRequest(f"[{n}].segmentId: must be a segment definition id or {ALL!r}, got {item!r}")
            wanted.append(sid)
        with self._store.tx() as conn:
            defs = {r["id"]: r for r in self._definitions.definitions(conn, scope)}
            if ALL in wanted:
                chosen = [i for i, r in defs.items() if r["spec"]["evaluationInfo"]["batch"]["enabled"]]
            else:
                missing = [s for s in wanted if s not in defs]
                if missing:
                    raise BadRequest(f"segmentId: no segment definition {missing[0]!r} in this sandbox")
                chosen = list(dict.fromkeys(wanted))
            job_id = self._enqueue(conn, scope, [defs[i] for i in chosen], source, properties or {})
            row = self._job_row(conn, scope, job_id)
        self._wake()
        return job_view(row)

    def _enqueue(self, conn: Connection, scope: Scope, defs: list[Row], source: str, properties: dict[str, Any]) -> str:
        job_id = str(uuid.uuid4())
        stamp = now_ms()
        ordered = _levels({r["id"]: r["dependencies"]["segments"] for r in defs})
        by_id = {r["id"]: r for r in defs}
        insert_row(
            conn,
            t.segment_jobs,
            {
                "id": job_id,
                "org_id": scope.org_id,
                "sandbox": scope.sandbox,
                "status": NEW,
                "source": source,
                "segment_ids": ordered,
                "segments": [_job_segment(by_id[i]) for level in ordered for i in level],
                "metrics": {},
                "errors": [],
                "properties": properties,
                "created_at": stamp,
                "updated_at": stamp,
                "created_ns": created_ns(),
            },
        )
        jobs.enqueue(conn, scope, JOB_SEGMENT, job_id)
        return job_id

    def get_job(self, scope: Scope, job_id: str) -> dict[str, Any]:
        with self._store.read() as conn:
            return job_view(self._job_row(conn, scope, job_id))

    def list_jobs(
        self, scope: Scope, *, start: int = 0, limit: int = 100, status: str | None = None, sort: str | None = None
    ) -> dict[str, Any]:
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: must be from 1 to {MAX_LIMIT}, got {limit}")
        if start < 0:
            raise BadRequest(f"start: must be 0 or more, got {start}")
        field, direction = sort_order(sort or "creationTime:desc", ("creationTime", "updateTime"))
        column = t.segment_jobs.c["created_ns" if field == "creationTime" else "updated_at"]
        keys = {"status": status.upper()} if status else {}
        order = [column.desc() if direction == "desc" else column.asc(), t.segment_jobs.c.id]
        with self._store.read() as conn:
            rows, total = list_rows(conn, t.segment_jobs, scope, order_by=order, limit=limit, offset=start, **keys)
        return {"_page": {"totalCount": total, "pageSize": len(rows)}, "children": [job_view(r) for r in rows]}

    def cancel_job(self, scope: Scope, job_id: str) -> None:
        with self._store.tx() as conn:
            # Each status change locks the job's row first: a cancel and the job's start or end never both win.
            row = self._job_row(conn, scope, job_id, lock=True)
            if row["status"] == NEW:
                self._settle_in(conn, row, CANCELLED)
            elif row["status"] == PROCESSING:
                update_row(conn, t.segment_jobs, job_id, {"status": CANCELLING, "updated_at": now_ms()})

    # -- the job -------------------------------------------------------------------------------------

    def execute(self, job_id: str, scope: Scope) -> None:
        with self._store.tx() as conn:
            row = get_row(conn, t.segment_jobs, scope, for_update=True, id=job_id)
            if row is None or row["status"] in FINAL:
                return
            if row["status"] == CANCELLING:
                self._settle_in(conn, row, CANCELLED)
                return
            started = row["metrics"].get("totalTime", {}).get("startTimeInMs") or now_ms()
            update_row(
                conn,
                t.segment_jobs,
                job_id,
                {"status": PROCESSING, "updated_at": now_ms(), "metrics": {"totalTime": {"startTimeInMs": started}}},
            )
        counts = self._profiles.evaluation(scope, job_id)
        seg_start = now_ms()
        if counts is None:
            plans, ttl, errors = self._plans(scope, row)
            if errors:
                self._finish(scope, job_id, FAILED, errors=errors)
                return
            if self._status(scope, job_id) == CANCELLING:
                self._finish(scope, job_id, CANCELLED)
                return
            try:
                counts = self._profiles.evaluate(scope, job_id, plans, ttl)
            except ProfileStoreFailed as exc:  # e.g. out of memory: say why, not only that the job stopped
                self._finish(scope, job_id, FAILED, errors=[{"code": "0100000003", "msg": exc.detail}])
                return
        self._finish(scope, job_id, SUCCEEDED, counts=counts, seg_start=seg_start)

    def recover(self, job_id: str, scope: Scope) -> None:
        """The job's worker died or the job raised: roll forward if the store committed it, else fail it."""
        counts = self._profiles.evaluation(scope, job_id)
        if counts is not None:
            self._finish(scope, job_id, SUCCEEDED, counts=counts, seg_start=now_ms())
            return
        self._finish(
            scope,
            job_id,
            FAILED,
            errors=[{"code": "0100000003", "msg": "the job stopped before it committed; no membership changed"}],
        )

    def _plans(self, scope: Scope, job: Row) -> tuple[list[Plan], dict[str, int], list[dict[str, Any]]]:
        """One plan per dependency level, compiled against the sandbox as it is now."""
        at = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        fields = self._definitions.fields(scope)
        resolve = self._definitions.resolver(scope)
        with self._store.read() as conn:
            defs = {r["id"]: r for r in self._definitions.definitions(conn, scope)}
        plans, ttl, errors = [], {}, []
        for level in job["segment_ids"]:
            plan = Plan(at)
            for sid in level:
                row = defs.get(sid)
                if row is None:
                    errors.append(
                        {"code": "0100000001", "msg": f"segment definition {sid} was deleted", "segmentId": sid}
                    )
                    continue
                spec = spec_of(row["name"], row["spec"])
                policy = self._policies.resolve(scope, spec.merge_policy_id)
                order = tuple(policy.dataset_order) if policy.attribute_merge == "dataSetPrecedence" else None
                try:
                    compile_segment(plan, sid, parse(spec.expression), fields, resolve.source, precedence=order)
                except PQLError as exc:
                    errors.append({"code": "0100000002", "msg": exc.describe(spec.expression), "segmentId": sid})
                if spec.ttl_days is not None:
                    ttl[sid] = spec.ttl_days
            plans.append(plan)
        return plans, ttl, errors

    def _status(self, scope: Scope, job_id: str) -> str:
        with self._store.read() as conn:
            return str(self._job_row(conn, scope, job_id)["status"])

    def _finish(
        self,
        scope: Scope,
        job_id: str,
        status: str,
        *,
        counts: Mapping[str, SegmentCounts] | None = None,
        errors: list[dict[str, Any]] | None = None,
        seg_start: int | None = None,
    ) -> None:
        total = self._profiles.count_profiles(scope) if counts is not None else None
        with self._store.tx() as conn:
            row = self._job_row(conn, scope, job_id, lock=True)
            if row["status"] in FINAL:
                return
            metrics = dict(row["metrics"])
            end = now_ms()
            begin = metrics.get("totalTime", {}).get("startTimeInMs") or row["created_at"]
            metrics["totalTime"] = {"startTimeInMs": begin, "endTimeInMs": end, "totalTimeInMs": end - begin}
            if counts is not None:
                seg = seg_start or begin
                metrics["profileSegmentationTime"] = {
                    "startTimeInMs": seg,
                    "endTimeInMs": end,
                    "totalTimeInMs": end - seg,
                }
                metrics["totalProfiles"] = total
                metrics["segmentedProfileCounter"] = {k: v.members for k, v in counts.items()}
                metrics["segmentedProfileByStatusCounter"] = {
                    k: {"realized": v.realized, "existing": v.existing, "exited": v.exited} for k, v in counts.items()
                }
                for sid, c in counts.items():
                    evaluations.record(conn, scope, sid, job_id, c)
            update_row(
                conn,
                t.segment_jobs,
                job_id,
                {"status": status, "metrics": metrics, "errors": errors or [], "updated_at": end},
            )

    @staticmethod
    def _settle_in(conn: Connection, row: Row, status: str) -> None:
        update_row(conn, t.segment_jobs, row["id"], {"status": status, "updated_at": now_ms()})

    # -- re-evaluation and the daily schedule ------------------------------------------------------------

    def audience_changed(self, scope: Scope, audience_id: str, run_id: str) -> str | None:
        """An external audience's run committed: queues a job for every segment definition that reads the audience,
        directly or through other definitions. Answers the job id, if any."""
        with self._store.tx() as conn:
            users = self._definitions.dependents(conn, scope, audience_id, direct=False)
            if not users:
                return None
            job_id = self._enqueue(conn, scope, users, "audience-update", {"audienceId": audience_id, "runId": run_id})
        self._wake()
        return job_id

    def profiles_changed(self, scope: Scope, dataset_id: str) -> str | None:
        """A batch changed profiles: queues one job for the definitions with continuous evaluation enabled (and
        those that read them), unless such a job is already waiting; answers the job id, if any."""
        with self._store.tx() as conn:
            defs = self._definitions.definitions(conn, scope)
            chosen = {r["id"]: r for r in defs if r["spec"]["evaluationInfo"]["continuous"]["enabled"]}
            if not chosen:
                return None
            waiting = list_rows(conn, t.segment_jobs, scope, status=NEW, source=STREAMING, limit=1)[0]
            if waiting:
                return str(waiting[0]["id"])  # it has not read the profiles yet: it will see this batch too
            for sid in list(chosen):
                for r in self._definitions.dependents(conn, scope, sid, direct=False):
                    chosen[r["id"]] = r
            job_id = self._enqueue(conn, scope, list(chosen.values()), STREAMING, {"dataSetId": dataset_id})
        self._wake()
        return job_id

    def schedule_due(self) -> list[str]:
        """The daily job: one segment job per sandbox that has batch segment definitions."""
        with self._store.read() as conn:
            rows = conn.execute(
                select(t.segment_definitions.c.org_id, t.segment_definitions.c.sandbox).distinct()
            ).all()
        out = []
        for org_id, sandbox in rows:
            scope = Scope(org_id, sandbox)
            with self._store.tx() as conn:
                defs = [
                    r
                    for r in self._definitions.definitions(conn, scope)
                    if r["spec"]["evaluationInfo"]["batch"]["enabled"]
                ]
                if defs:
                    out.append(self._enqueue(conn, scope, defs, "scheduler", {}))
        if out:
            self._wake()
        return out

    # -- rows ----------------------------------------------------------------------------------------

    @staticmethod
    def _job_row(conn: Connection, scope: Scope, job_id: str, *, lock: bool = False) -> Row:
        row = get_row(conn, t.segment_jobs, scope, for_update=lock, id=job_id)
        if row is None:
            raise NotFound(f"no segment job {job_id!r} in this sandbox")
        return row


def _levels(graph: dict[str, list[str]]) -> list[list[str]]:
    """The segments in dependency levels: each level uses only segments of earlier levels (or outside the set)."""
    left = dict(graph)
    out = []
    while left:
        level = [s for s, uses in left.items() if not any(u in left for u in uses)]
        if not level:  # a cycle: create and patch refuse them, so only a concurrent change gets here
            level = list(left)
        out.append(level)
        for s in level:
            del left[s]
    return out


def _job_segment(row: Row) -> dict[str, Any]:
    spec = row["spec"]
    policy = spec.get("mergePolicyId")
    return {
        "segmentId": row["id"],
        "segment": {
            "id": row["id"],
            "expression": spec["expression"],
            "mergePolicyId": policy,
            "mergePolicy": {"id": policy, "version": 1},
        },
    }


def job_view(row: Row) -> dict[str, Any]:
    href = f"{JOBS}/{row['id']}"
    metrics = dict(row["metrics"])
    metrics.setdefault("totalTime", {"startTimeInMs": row["created_at"]})
    metrics.setdefault("profileSegmentationTime", {})
    return {
        "id": row["id"],
        "imsOrgId": row["org_id"],
        "sandbox": sandbox_view(row["org_id"], row["sandbox"]),
        "profileInstanceId": "ups",
        "source": row["source"],
        "status": row["status"],
        "segments": row["segments"],
        "metrics": metrics,
        "errors": row["errors"],
        "properties": row["properties"],
        "schema": {"name": "_xdm.context.profile"},
        "_links": {
            "cancel": {"href": href, "method": "DELETE"},
            "checkStatus": {"href": href, "method": "GET"},
        },
        "creationTime": row["created_at"],
        "updateTime": row["updated_at"],
        "updateEpoch": row["updated_at"] // 1000,
    }
