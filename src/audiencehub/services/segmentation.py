"""The Segmentation Service: segment definitions, segment jobs, and re-evaluation when audiences change.

A definition's PQL is parsed and checked against the sandbox (its fields in the union schemas, the audiences it
names) when it is created or patched, and compiled again when a job evaluates it, since the sandbox may have
changed in between. A job evaluates its segments in dependency order, those of one level in one shared query
(``domain/segments.Plan``), and the profile store commits all of its memberships in one transaction with a marker;
the job's metadata follows. A job is idempotent per id: after a crash it runs again, or rolls forward when the
store already has it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, select

from audiencehub.domain import xdm
from audiencehub.domain.audiences import DEFAULT_NAMESPACE, AudienceField
from audiencehub.domain.segments import (
    SEGMENT_NAMESPACE,
    DefinitionSpec,
    MemberSource,
    Plan,
    SegmentCounts,
    check_definition,
    spec_of,
)
from audiencehub.domain.xdm import ResolvedSchema
from audiencehub.domain.xdm_standard import EVENT_CLASS, PROFILE_CLASS
from audiencehub.engines.ingest_sql import SQL_TYPE
from audiencehub.engines.xdm_sql import leaves
from audiencehub.errors import BadRequest, NotFound, Unprocessable
from audiencehub.metadata import evaluations, jobs
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, created_ns, get_row, insert_row, list_rows, update_row
from audiencehub.pql.ast import Membership, Node, PQLError
from audiencehub.pql.compile import Fields, compile_segment
from audiencehub.pql.parser import parse
from audiencehub.profile.base import ProfileStore
from audiencehub.services.auth import Principal
from audiencehub.services.merge_policies import MergePolicyService, sandbox_view

log = logging.getLogger(__name__)

JOB_SEGMENT = "segment-job"
DEFINITIONS = "/data/core/ups/segment/definitions"
JOBS = "/segment/jobs"
MAX_LIMIT = 1000
ALL = "*"
NEW, PROCESSING, SUCCEEDED, FAILED = "NEW", "PROCESSING", "SUCCEEDED", "FAILED"
CANCELLING, CANCELLED = "CANCELLING", "CANCELLED"
STREAMING = "streaming"  # the job source of continuous evaluation after a batch
FINAL = (SUCCEEDED, FAILED, CANCELLED)
SORTABLE = {"name": "name", "creationTime": "created_ns", "updateTime": "updated_at"}
NOT_FIELDS = {"identityMap", "segmentMembership"}  # kept in the identity graph and the membership tables


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SegmentationService:
    def __init__(
        self,
        store: MetadataStore,
        profiles: ProfileStore,
        merge_policies: MergePolicyService,
        schema_of: Callable[[Scope, str], ResolvedSchema],
        *,
        wake: Callable[[], None],
    ) -> None:
        self._store = store
        self._profiles = profiles
        self._policies = merge_policies
        self._schema_of = schema_of
        self._wake = wake
        self.clock: Callable[[], float] = time.time
        """The evaluations' "now" (ttl expiry, ``occurs ... before now``), in epoch seconds."""

    # -- segment definitions -----------------------------------------------------------------------

    def create(self, principal: Principal, data: Any) -> dict[str, Any]:
        scope = principal.scope
        spec = self._checked(data)
        policy = self._policies.resolve(scope, spec.merge_policy_id)
        spec = DefinitionSpec(**{**spec.__dict__, "merge_policy_id": policy.id})
        segment_id = str(uuid.uuid4())
        deps = self._dependencies(scope, segment_id, spec)
        stamp = now_ms()
        with self._store.tx() as conn:
            self._check_name(conn, scope, spec.name, None)
            insert_row(
                conn,
                t.segment_definitions,
                {
                    "id": segment_id,
                    "org_id": scope.org_id,
                    "sandbox": scope.sandbox,
                    "name": spec.name,
                    "spec": spec.to_spec(),
                    "dependencies": deps,
                    "created_by": principal.user,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "created_ns": created_ns(),
                },
            )
            row = self._row(conn, scope, segment_id)
        return definition_view(row)

    def get(self, scope: Scope, segment_id: str) -> dict[str, Any]:
        with self._store.read() as conn:
            return definition_view(self._row(conn, scope, segment_id))

    def list_definitions(
        self, scope: Scope, *, start: int = 0, limit: int = 100, page: int | None = None, sort: str | None = None
    ) -> dict[str, Any]:
        """AEP's list: ``segments``, ``page`` (totalCount, totalPages, sortField, sort, pageSize, limit), ``link``."""
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: must be from 1 to {MAX_LIMIT}, got {limit}")
        if start < 0 or (page is not None and page < 0):
            raise BadRequest(f"start: must be 0 or more, got {page if page is not None and page < 0 else start}")
        offset = page * limit if page is not None else start
        field, direction = _sort(sort or "creationTime:desc")
        column = t.segment_definitions.c[SORTABLE[field]]
        order = [column.desc() if direction == "desc" else column.asc(), t.segment_definitions.c.id]
        with self._store.read() as conn:
            rows, total = list_rows(conn, t.segment_definitions, scope, order_by=order, limit=limit, offset=offset)
        nxt = f"{DEFINITIONS}?start={offset + limit}&limit={limit}" if offset + limit < total else ""
        return {
            "segments": [definition_view(r) for r in rows],
            "page": {
                "totalCount": total,
                "totalPages": -(-total // limit),
                "sortField": field,
                "sort": direction,
                "pageSize": len(rows),
                "limit": limit,
            },
            "link": {"next": nxt},
        }

    def bulk_get(self, scope: Scope, data: Any) -> dict[str, Any]:
        ids = data.get("ids") if isinstance(data, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in ids):
            raise BadRequest(f'ids: must be a list of {{"id": "<segment id>"}} objects, got {ids!r}')
        out: dict[str, Any] = {}
        with self._store.read() as conn:
            for item in ids:
                row = get_row(conn, t.segment_definitions, scope, id=item["id"])
                out[item["id"]] = (
                    definition_view(row)
                    if row is not None
                    else {"id": item["id"], "status": 404, "message": f"no segment definition {item['id']!r}"}
                )
        return {"results": out}

    def patch(self, scope: Scope, segment_id: str, data: Any) -> dict[str, Any]:
        with self._store.read() as conn:
            row = self._row(conn, scope, segment_id)
        current = spec_of(row["name"], row["spec"])
        spec = self._checked(data, current)
        if spec.merge_policy_id != current.merge_policy_id:
            policy = self._policies.resolve(scope, spec.merge_policy_id)
            spec = DefinitionSpec(**{**spec.__dict__, "merge_policy_id": policy.id})
        deps = self._dependencies(scope, segment_id, spec)
        with self._store.tx() as conn:
            self._row(conn, scope, segment_id)
            self._check_name(conn, scope, spec.name, segment_id)
            self._check_acyclic(conn, scope, segment_id, deps["segments"])
            update_row(
                conn,
                t.segment_definitions,
                segment_id,
                {"name": spec.name, "spec": spec.to_spec(), "dependencies": deps, "updated_at": now_ms()},
            )
            row = self._row(conn, scope, segment_id)
        return definition_view(row)

    def delete(self, scope: Scope, segment_id: str) -> None:
        with self._store.tx() as conn:
            self._row(conn, scope, segment_id)
            users = self._dependents(conn, scope, segment_id, direct=True)
            if users:
                names = ", ".join(f"{r['name']!r} ({r['id']})" for r in users)
                raise Unprocessable(f"segment definition {segment_id} is used by {names}; change or delete those first")
            conn.execute(t.segment_definitions.delete().where(t.segment_definitions.c.id == segment_id))
        self._profiles.remove_audience(scope, segment_id)

    def users_of(self, scope: Scope, audience_id: str) -> list[str]:
        """Names of the segment definitions whose expression reads the audience (external or a segment)."""
        with self._store.read() as conn:
            return [r["name"] for r in self._dependents(conn, scope, audience_id, direct=True)]

    # -- checks ------------------------------------------------------------------------------------

    @staticmethod
    def _checked(data: Any, current: DefinitionSpec | None = None) -> DefinitionSpec:
        try:
            spec = check_definition(data, current)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return spec

    def _parse(self, spec: DefinitionSpec) -> Node:
        try:
            return parse(spec.expression)
        except PQLError as exc:
            raise BadRequest(f"expression.value: {exc.describe(spec.expression)}") from exc

    def _dependencies(self, scope: Scope, segment_id: str, spec: DefinitionSpec) -> dict[str, list[str]]:
        """Checks the expression against the sandbox (by compiling it) and answers the audiences it reads."""
        node = self._parse(spec)
        resolve = self._resolver(scope)
        try:
            compile_segment(Plan(dt.datetime.now(dt.UTC)), segment_id, node, self._fields(scope), resolve.source)
        except PQLError as exc:
            raise BadRequest(f"expression.value: {exc.describe(spec.expression)}") from exc
        if segment_id in resolve.segments:
            raise BadRequest(f"expression.value: a segment definition cannot use itself ({segment_id})")
        return {"segments": sorted(resolve.segments), "audiences": sorted(resolve.audiences)}

    @staticmethod
    def _check_name(conn: Connection, scope: Scope, name: str, segment_id: str | None) -> None:
        row = get_row(conn, t.segment_definitions, scope, name=name)
        if row is not None and row["id"] != segment_id:
            raise Unprocessable(f"name: a segment definition named {name!r} already exists ({row['id']})")

    def _check_acyclic(self, conn: Connection, scope: Scope, segment_id: str, uses: list[str]) -> None:
        """``segment_id`` may use ``uses`` only if none of them already depends on it."""
        graph = {r["id"]: r["dependencies"]["segments"] for r in self._all(conn, scope)}
        graph[segment_id] = uses
        path = _cycle(graph, segment_id)
        if path:
            raise BadRequest(
                f"expression.value: the segment definitions would depend on themselves: {' → '.join(path)}"
            )

    # -- resolution ----------------------------------------------------------------------------------

    def _fields(self, scope: Scope) -> Fields:
        return Fields(self._union_fields(scope, PROFILE_CLASS), self._union_fields(scope, EVENT_CLASS))

    def _union_fields(self, scope: Scope, class_id: str) -> dict[str, str]:
        try:
            schema = self._schema_of(scope, xdm.union_id(class_id))
        except NotFound:
            return {}
        return {leaf.name: leaf.type for leaf in leaves(schema.properties) if leaf.path[0] not in NOT_FIELDS}

    def _resolver(self, scope: Scope) -> _Resolver:
        with self._store.read() as conn:
            segments = {r["id"] for r in self._all(conn, scope)}
            audiences = list_rows(conn, t.audiences, scope, state="ACTIVE")[0]
        return _Resolver(scope, segments, audiences, self._profiles)

    # -- segment jobs --------------------------------------------------------------------------------

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
            defs = {r["id"]: r for r in self._all(conn, scope)}
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
        field, direction = _sort(sort or "creationTime:desc", ("creationTime", "updateTime"))
        column = t.segment_jobs.c["created_ns" if field == "creationTime" else "updated_at"]
        keys = {"status": status.upper()} if status else {}
        order = [column.desc() if direction == "desc" else column.asc(), t.segment_jobs.c.id]
        with self._store.read() as conn:
            rows, total = list_rows(conn, t.segment_jobs, scope, order_by=order, limit=limit, offset=start, **keys)
        return {"_page": {"totalCount": total, "pageSize": len(rows)}, "children": [job_view(r) for r in rows]}

    def cancel_job(self, scope: Scope, job_id: str) -> None:
        with self._store.tx() as conn:
            row = self._job_row(conn, scope, job_id)
            if row["status"] == NEW:
                self._settle_in(conn, row, CANCELLED)
            elif row["status"] == PROCESSING:
                update_row(conn, t.segment_jobs, job_id, {"status": CANCELLING, "updated_at": now_ms()})

    # -- the job -------------------------------------------------------------------------------------

    def execute(self, job_id: str, scope: Scope) -> None:
        with self._store.tx() as conn:
            row = get_row(conn, t.segment_jobs, scope, id=job_id)
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
            counts = self._profiles.evaluate(scope, job_id, plans, ttl)
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
        fields = self._fields(scope)
        resolve = self._resolver(scope)
        with self._store.read() as conn:
            defs = {r["id"]: r for r in self._all(conn, scope)}
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
            row = self._job_row(conn, scope, job_id)
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
            users = self._dependents(conn, scope, audience_id, direct=False)
            if not users:
                return None
            job_id = self._enqueue(conn, scope, users, "audience-update", {"audienceId": audience_id, "runId": run_id})
        self._wake()
        return job_id

    def profiles_changed(self, scope: Scope, dataset_id: str) -> str | None:
        """A batch changed profiles: queues one job for the definitions with continuous evaluation enabled (and
        those that read them), unless such a job is already waiting; answers the job id, if any."""
        with self._store.tx() as conn:
            defs = self._all(conn, scope)
            chosen = {r["id"]: r for r in defs if r["spec"]["evaluationInfo"]["continuous"]["enabled"]}
            if not chosen:
                return None
            waiting = list_rows(conn, t.segment_jobs, scope, status=NEW, source=STREAMING, limit=1)[0]
            if waiting:
                return str(waiting[0]["id"])  # it has not read the profiles yet: it will see this batch too
            for sid in list(chosen):
                for r in self._dependents(conn, scope, sid, direct=False):
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
                defs = [r for r in self._all(conn, scope) if r["spec"]["evaluationInfo"]["batch"]["enabled"]]
                if defs:
                    out.append(self._enqueue(conn, scope, defs, "scheduler", {}))
        if out:
            self._wake()
        return out

    # -- rows ----------------------------------------------------------------------------------------

    @staticmethod
    def _all(conn: Connection, scope: Scope) -> list[Row]:
        return list_rows(conn, t.segment_definitions, scope, order_by=t.segment_definitions.c.created_ns)[0]

    def _dependents(self, conn: Connection, scope: Scope, audience_id: str, *, direct: bool) -> list[Row]:
        """Definitions that read ``audience_id`` (directly, or also through other definitions)."""
        defs = self._all(conn, scope)
        found: dict[str, Row] = {}
        frontier = {audience_id}
        while frontier:
            nxt = set()
            for r in defs:
                uses = set(r["dependencies"]["segments"]) | set(r["dependencies"]["audiences"])
                if r["id"] not in found and uses & frontier:
                    found[r["id"]] = r
                    nxt.add(r["id"])
            frontier = set() if direct else nxt
        return list(found.values())

    @staticmethod
    def _row(conn: Connection, scope: Scope, segment_id: str) -> Row:
        row = get_row(conn, t.segment_definitions, scope, id=segment_id)
        if row is None:
            raise NotFound(f"no segment definition {segment_id!r} in this sandbox")
        return row

    @staticmethod
    def _job_row(conn: Connection, scope: Scope, job_id: str) -> Row:
        row = get_row(conn, t.segment_jobs, scope, id=job_id)
        if row is None:
            raise NotFound(f"no segment job {job_id!r} in this sandbox")
        return row


class _Resolver:
    """Finds the audience a membership condition names, and remembers which ones it found."""

    def __init__(self, scope: Scope, segments: set[str], audiences: list[Row], profiles: ProfileStore) -> None:
        self._scope = scope
        self._segment_ids = segments
        self._audiences = audiences
        self._profiles = profiles
        self.segments: set[str] = set()
        self.audiences: set[str] = set()

    def source(self, n: Membership) -> tuple[MemberSource, dict[str, str]]:
        ns, sid = n.namespace, n.segment_id
        if ns in (None, SEGMENT_NAMESPACE) and sid in self._segment_ids:
            self.segments.add(sid)
            if n.payload is not None:
                raise PQLError(
                    "payload conditions need an external audience; segment definitions have no payload", n.pos
                )
            return MemberSource("segment", sid, SEGMENT_NAMESPACE), {}
        if ns != SEGMENT_NAMESPACE:
            for row in self._audiences:
                spec = row["spec"]
                if sid in (row["id"], row["custom_audience_id"]) and ns in (
                    None,
                    spec.get("namespace", DEFAULT_NAMESPACE),
                ):
                    self.audiences.add(row["id"])
                    fields = [AudienceField.model_validate(f) for f in spec["fields"]]
                    payload = {f.name: SQL_TYPE[f.type] for f in fields if not f.identityNs}
                    return MemberSource("audience", row["id"], spec.get("namespace", DEFAULT_NAMESPACE)), payload
            found = [ns] if ns is not None else self._profiles.record_segments(self._scope, sid)
            if found:
                if n.payload is not None:
                    raise PQLError(
                        "payload conditions need an external audience; imported memberships have none", n.pos
                    )
                return MemberSource("records", sid, found[0]), {}
        where = "segment definition" if ns == SEGMENT_NAMESPACE else "segment definition or audience"
        raise PQLError(f"no {where} {sid!r} in this sandbox", n.pos)


def _sort(sort: str, allowed: tuple[str, ...] = tuple(SORTABLE)) -> tuple[str, str]:
    field, _, direction = sort.partition(":")
    direction = direction or "asc"
    if field not in allowed or direction not in ("asc", "desc"):
        raise BadRequest(f"sort: must be one of {', '.join(allowed)} with :asc or :desc, got {sort!r}")
    return field, direction


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


def _cycle(graph: dict[str, list[str]], start: str) -> list[str]:
    """A path start → ... → start through ``graph``, or empty."""
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, []):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return []


def definition_view(row: Row) -> dict[str, Any]:
    spec = row["spec"]
    body: dict[str, Any] = {
        "id": row["id"],
        "imsOrgId": row["org_id"],
        "sandbox": sandbox_view(row["org_id"], row["sandbox"]),
        "name": row["name"],
        "description": spec.get("description") or "",
        "expression": spec["expression"],
        "schema": spec["schema"],
        "evaluationInfo": spec["evaluationInfo"],
        "mergePolicyId": spec.get("mergePolicyId"),
        "profileInstanceId": "ups",
        "dataGovernancePolicy": {"excludeOptOut": True},
        "dependents": row["dependencies"]["segments"] + row["dependencies"]["audiences"],
        "creationTime": row["created_at"],
        "updateTime": row["updated_at"],
        "updateEpoch": row["updated_at"] // 1000,
    }
    if spec.get("ttlInDays") is not None:
        body["ttlInDays"] = spec["ttlInDays"]
    if spec.get("labels"):
        body["labels"] = spec["labels"]
    return body


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
