"""External audiences (seed 003): create, read, patch, delete, and their ingestion runs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, or_, select

from audiencehub.domain.audiences import (
    DEFAULT_NAMESPACE,
    STORED_NAMESPACE,
    TTL_DEFAULT,
    AudienceCreate,
    AudienceField,
    AudiencePatch,
    CloudType,
    RunCreate,
    SourceSpec,
    public_field,
    unknown_namespace,
)
from audiencehub.domain.connections import source_key
from audiencehub.domain.paths import landing_zone_key
from audiencehub.domain.runs import RunMetrics, Stage, StageState, Status
from audiencehub.errors import BadRequest, Duplicate, NotFound, Unprocessable
from audiencehub.metadata import jobs
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import (
    IntegrityError,
    MetadataStore,
    Row,
    Scope,
    created_ns,
    delete_rows,
    get_row,
    insert_row,
    list_rows,
    now,
    update_row,
)
from audiencehub.profile.base import ProfileStore
from audiencehub.services.auth import Principal
from audiencehub.services.connections import ConnectionService
from audiencehub.services.identity import NamespaceService
from audiencehub.services.lake import Lake

log = logging.getLogger(__name__)

CREATING, ACTIVE, DELETING = "CREATING", "ACTIVE", "DELETING"
JOB_CREATE = "audience.create"
JOB_RUN = "audience.run"
MAX_PAGE = 100


def find_active(conn: Connection, scope: Scope, ref: str) -> Row | None:
    """The sandbox's active external audience whose id or ``customAudienceId`` is ``ref``."""
    c = t.audiences.c
    row = (
        conn.execute(
            select(t.audiences).where(
                c.org_id == scope.org_id,
                c.sandbox == scope.sandbox,
                c.state == "ACTIVE",
                or_(c.id == ref, c.custom_audience_id == ref),
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


def page(items: list[dict[str, Any]], total: int, limit: int, start: int, key: str) -> dict[str, Any]:
    nxt = start + limit if start + limit < total else None
    return {key: items, "_page": {"totalCount": total, "pageSize": len(items), "start": start, "next": nxt}}


def check_paging(limit: int, start: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit: must be from 1 to {MAX_PAGE}, got {limit}")
    if start < 0:
        raise BadRequest(f"start: must be 0 or more, got {start}")


def audience_view(row: Row) -> dict[str, Any]:
    """An audience as ``GET``/``PATCH`` answer it (seed 003's PATCH response, plus extensions)."""
    spec = row["spec"]
    body: dict[str, Any] = {
        "audienceId": row["id"],
        "audienceName": row["name"],
    }
    if spec.get("description") is not None:
        body["description"] = spec["description"]
    if spec.get("customAudienceId"):
        body["customAudienceId"] = spec["customAudienceId"]
    body["fields"] = [public_field(f) for f in spec["fields"]]
    body["sourceSpec"] = SourceSpec.model_validate(spec["sourceSpec"]).params.model_dump(exclude_none=True)
    body["ttlInDays"] = spec.get("ttlInDays", TTL_DEFAULT)
    if spec.get("labels") is not None:
        body["labels"] = spec["labels"]
    body["audienceType"] = spec.get("audienceType", "people")
    body["originName"] = spec["originName"]
    body["namespace"] = spec.get("namespace", DEFAULT_NAMESPACE)
    if spec.get("tags"):
        body["tags"] = spec["tags"]
    body["datasetId"] = row["dataset_id"]
    body.update(
        createdBy=row["created_by"],
        createdAt=row["created_at"],
        updatedBy=row["updated_by"],
        updatedAt=row["updated_at"],
    )
    return body


def operation_view(op: Row, audience_name: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "operationId": op["id"],
        "status": Status(op["status"]).public,
        "operationDetails": op["details"],
        "audienceName": audience_name,
    }
    if op["status"] == Status.SUCCESS:
        body["audienceId"] = op["audience_id"]
    if op["error"]:
        body["error"] = {"message": op["error"]}
    body.update(
        createdBy=op["created_by"],
        createdAt=op["created_at"],
        updatedBy=op["updated_by"],
        updatedAt=op["updated_at"],
    )
    return body


def run_view(run: Row, audience_name: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "audienceName": audience_name,
        "audienceId": run["audience_id"],
        "runId": run["id"],
        "status": Status(run["status"]).public,
        "differentialIngestion": run["differential"],
        "dataFilterStartTime": run["filter_start"],
        "dataFilterEndTime": run["filter_end"],
        "createdAt": run["created_at"],
        "createdBy": run["created_by"],
        "details": [StageState.from_dict(s).public() for s in run["stages"]],
        "metrics": RunMetrics.from_dict(run["metrics"]).to_dict(),
    }
    if run["progress"] and not Status(run["status"]).finished:
        body["progress"] = run["progress"]
    if run["error"]:
        body["error"] = {"message": run["error"]}
    if run["finished_at"]:
        body["finishedAt"] = run["finished_at"]
    return body


class ExternalAudienceService:
    def __init__(
        self,
        store: MetadataStore,
        profiles: ProfileStore,
        lake: Lake,
        connections: ConnectionService,
        namespaces: NamespaceService,
        wake: Callable[[], None] = lambda: None,
        users_of: Callable[[Scope, str], list[str]] = lambda scope, audience_id: [],
    ) -> None:
        self._store = store
        self._profiles = profiles
        self._lake = lake
        self._connections = connections
        self._namespaces = namespaces
        self._wake = wake
        self._users_of = users_of
        """The names of the segment definitions that read an audience: it cannot be deleted while they do."""

    # -- audiences -------------------------------------------------------------------------

    def create(self, principal: Principal, body: AudienceCreate) -> dict[str, Any]:
        scope, stamp = principal.scope, now()
        self._resolve_namespaces(scope, body.fields)
        source = body.sourceSpec.params
        try:
            if source.resolved_cloud_type is CloudType.DLZ:
                landing_zone_key(source.path)
            else:
                source_key(source.path)
        except ValueError as exc:
            raise BadRequest(f"sourceSpec.path: {exc}") from exc

        audience_id, op_id = str(uuid.uuid4()), str(uuid.uuid4())
        details = body.details()
        spec = dict(details, sourceSpec=body.sourceSpec.model_dump(mode="json"), ttlInDays=body.ttlInDays)
        spec["namespace"] = body.namespace
        spec["fields"] = [f.stored() for f in body.fields]
        try:
            with self._store.tx() as conn:
                if source.baseConnectionId is not None and source.resolved_cloud_type is not CloudType.DLZ:
                    self._connections.resolve(scope, source.baseConnectionId, source.cloudType, conn, lock=True)
                self._check_unique(conn, scope, body.name, body.customAudienceId)
                insert_row(
                    conn,
                    t.audiences,
                    {
                        "id": audience_id,
                        "org_id": scope.org_id,
                        "sandbox": scope.sandbox,
                        "name": body.name,
                        "custom_audience_id": body.customAudienceId,
                        "state": CREATING,
                        "spec": spec,
                        "created_by": principal.user,
                        "created_at": stamp,
                        "created_ns": created_ns(),
                        "updated_by": principal.user,
                        "updated_at": stamp,
                    },
                )
                insert_row(
                    conn,
                    t.operations,
                    {
                        "id": op_id,
                        "org_id": scope.org_id,
                        "sandbox": scope.sandbox,
                        "audience_id": audience_id,
                        "status": Status.QUEUED.value,
                        "details": details,
                        "created_by": principal.user,
                        "created_at": stamp,
                        "updated_by": principal.user,
                        "updated_at": stamp,
                    },
                )
                jobs.enqueue(conn, scope, JOB_CREATE, op_id)
        except IntegrityError as exc:
            raise Duplicate(f"an audience named {body.name!r} (or with that customAudienceId) already exists") from exc
        self._wake()
        return {"operationId": op_id, "operationDetails": details}

    def _resolve_namespaces(self, scope: Scope, fields: list[AudienceField]) -> None:
        """Each field's identityNs as a namespace of the sandbox (standard or custom), by its canonical code.

        Custom namespaces are never deleted, so what is resolved here still holds when the audience commits.
        """
        problems = []
        with self._store.read() as conn:
            for i, field in enumerate(fields):
                if field.carries_stored_namespace:
                    problems.append(f"fields[{i}].{STORED_NAMESPACE}: is not a field that can be sent here")
                elif field.identityNs is not None:
                    ns = self._namespaces.resolve(scope, field.identityNs, conn)
                    if ns is None:
                        problems.append(f"fields[{i}].identityNs: {unknown_namespace(field.identityNs)}")
                    else:
                        field.use_namespace(ns)
        if problems:
            raise BadRequest("; ".join(problems))

    @staticmethod
    def _check_unique(conn: Connection, scope: Scope, name: str, custom_id: str | None) -> None:
        if get_row(conn, t.audiences, scope, name=name) is not None:
            raise Duplicate(f"name: an audience named {name!r} already exists in sandbox {scope.sandbox!r}")
        if custom_id and get_row(conn, t.audiences, scope, custom_audience_id=custom_id) is not None:
            raise Duplicate(f"customAudienceId: an audience with id {custom_id!r} already exists")

    def operation(self, scope: Scope, operation_id: str) -> dict[str, Any]:
        with self._store.read() as conn:
            op = get_row(conn, t.operations, scope, id=operation_id)
        if op is None:
            raise NotFound(f"no operation {operation_id!r} in this sandbox")
        return operation_view(op, op["details"].get("name", ""))

    def _active(self, conn: Connection, scope: Scope, audience_id: str, *, lock: bool = False) -> Row:
        """The ACTIVE audience; ``lock`` holds its row until the transaction ends (a change that depends on it)."""
        row = get_row(conn, t.audiences, scope, for_update=lock, id=audience_id)
        if row is None or row["state"] != ACTIVE:
            raise NotFound(f"no external audience {audience_id!r} in this sandbox")
        return row

    def get(self, scope: Scope, audience_id: str) -> dict[str, Any]:
        with self._store.read() as conn:
            row = self._active(conn, scope, audience_id)
        return audience_view(row)

    def list(self, scope: Scope, *, limit: int, start: int) -> dict[str, Any]:
        check_paging(limit, start)
        with self._store.read() as conn:
            rows, total = list_rows(
                conn,
                t.audiences,
                scope,
                state=ACTIVE,
                order_by=[t.audiences.c.created_ns.desc(), t.audiences.c.id],
                limit=limit,
                offset=start,
            )
        return page([audience_view(r) for r in rows], total, limit, start, "audiences")

    def patch(self, principal: Principal, audience_id: str, body: AudiencePatch) -> dict[str, Any]:
        if not body.model_fields_set:
            raise BadRequest("body: nothing to update; send description, labels, fields or ttlInDays")
        scope = principal.scope
        with self._store.tx() as conn:
            row = self._active(conn, scope, audience_id, lock=True)  # two PATCHes must not lose each other's change
            spec = dict(row["spec"])
            if "description" in body.model_fields_set:
                spec["description"] = body.description
            if "labels" in body.model_fields_set:
                spec["labels"] = body.labels
            if "ttlInDays" in body.model_fields_set:
                if body.ttlInDays is None:
                    raise BadRequest("ttlInDays: must be an integer from 1 to 90, got null")
                spec["ttlInDays"] = body.ttlInDays
            if body.fields is not None:
                spec["fields"] = _patch_field_labels(spec["fields"], body)
            update_row(
                conn,
                t.audiences,
                audience_id,
                {"spec": spec, "updated_by": principal.user, "updated_at": now()},
            )
            row = self._active(conn, scope, audience_id)
        self._profiles.set_audience(scope, audience_id, spec.get("namespace", DEFAULT_NAMESPACE), spec["ttlInDays"])
        return audience_view(row)

    def delete(self, scope: Scope, audience_id: str) -> None:
        # Marking the audience DELETING in the transaction that checks its runs closes the race with a new
        # run: from this commit on, the audience answers 404 and no run can start for it.
        users = self._users_of(scope, audience_id)
        if users:
            names = ", ".join(repr(n) for n in users)
            raise Unprocessable(
                f"audience {audience_id!r} is used by the segment definitions {names}; change them first"
            )
        with self._store.tx() as conn:
            # The audience's row lock orders this against start_run: one sees the other's commit (PostgreSQL).
            self._active(conn, scope, audience_id, lock=True)
            runs, _ = list_rows(conn, t.runs, scope, audience_id=audience_id)
            if any(not Status(r["status"]).finished for r in runs):
                raise Unprocessable(f"audience {audience_id!r} has a run in progress; delete it when the run ends")
            update_row(conn, t.audiences, audience_id, {"state": DELETING, "updated_at": now()})
        self._finish_delete(scope, audience_id)

    def resume_deletions(self) -> None:
        """Completes deletions that a stop interrupted (audiences left DELETING)."""
        with self._store.tx() as conn:
            rows, _ = list_rows(conn, t.audiences, None, state=DELETING)
        for row in rows:
            # One deletion that cannot finish must not keep the server (and every other org) down.
            try:
                self._finish_delete(Scope(row["org_id"], row["sandbox"]), row["id"])
            except Exception:
                log.exception("completing the deletion of audience %s failed; it stays DELETING", row["id"])

    def _finish_delete(self, scope: Scope, audience_id: str) -> None:
        """Removes memberships, then rows, then files; each step can be repeated after a crash."""
        self._profiles.remove_audience(scope, audience_id)
        with self._store.tx() as conn:
            row = get_row(conn, t.audiences, scope, for_update=True, id=audience_id)
            if row is None:
                return
            runs, _ = list_rows(conn, t.runs, scope, audience_id=audience_id)
            ops, _ = list_rows(conn, t.operations, scope, audience_id=audience_id)
            for ref in [r["id"] for r in runs] + [o["id"] for o in ops]:
                delete_rows(conn, t.jobs, ref_id=ref)
            delete_rows(conn, t.runs, audience_id=audience_id)
            delete_rows(conn, t.operations, audience_id=audience_id)
            if row["dataset_id"]:
                delete_rows(conn, t.batches, dataset_id=row["dataset_id"])
                delete_rows(conn, t.datasets, id=row["dataset_id"])
            if row["schema_id"]:
                delete_rows(conn, t.schemas, id=row["schema_id"])
            delete_rows(conn, t.audiences, id=audience_id)
        if row["dataset_id"]:
            self._lake.remove(self._lake.dataset(scope, row["dataset_id"]))
        for run in runs:
            self._lake.remove(self._lake.run_dir(scope, run["id"]))
            self._lake.remove(self._lake.staging(scope, run["id"]))

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, principal: Principal, audience_id: str, body: RunCreate) -> dict[str, Any]:
        scope, stamp = principal.scope, now()
        end = body.dataFilterEndTime if body.dataFilterEndTime is not None else stamp
        if end < body.dataFilterStartTime:
            raise BadRequest(
                f"dataFilterStartTime: {body.dataFilterStartTime} is after dataFilterEndTime (default now, {end})"
            )
        run_id = str(uuid.uuid4())
        with self._store.tx() as conn:
            audience = self._active(conn, scope, audience_id, lock=True)  # see delete()
            runs, _ = list_rows(conn, t.runs, scope, audience_id=audience_id)
            if any(not Status(r["status"]).finished for r in runs):
                raise Unprocessable(f"audience {audience_id!r} already has a run in progress; wait for it to finish")
            succeeded = any(r["status"] == Status.SUCCESS for r in runs)
            differential = (
                succeeded if body.differentialIngestion is None else (body.differentialIngestion and succeeded)
            )
            stages = [StageState(s, Status.QUEUED, str(uuid.uuid4())).to_dict() for s in Stage]
            try:
                insert_row(
                    conn,
                    t.runs,
                    {
                        "id": run_id,
                        "org_id": scope.org_id,
                        "sandbox": scope.sandbox,
                        "audience_id": audience_id,
                        "status": Status.QUEUED.value,
                        "differential": differential,
                        "replace_members": body.differentialIngestion is False,
                        "filter_start": body.dataFilterStartTime,
                        "filter_end": end,
                        "options": {"errorThresholdPercent": body.errorThresholdPercent},
                        "stages": stages,
                        "metrics": RunMetrics().to_dict(),
                        "created_by": principal.user,
                        "created_at": stamp,
                        "created_ns": created_ns(),
                        "updated_at": stamp,
                    },
                )
            except IntegrityError as exc:
                raise Unprocessable(f"audience {audience_id!r} already has a run in progress") from exc
            jobs.enqueue(conn, scope, JOB_RUN, run_id)
            run = get_row(conn, t.runs, scope, id=run_id)
        self._wake()
        assert run is not None
        view = run_view(run, audience["name"])
        for key in ("details", "metrics"):
            view.pop(key)
        return view

    def run(self, scope: Scope, audience_id: str, run_id: str) -> dict[str, Any]:
        with self._store.read() as conn:
            audience = self._active(conn, scope, audience_id)
            run = get_row(conn, t.runs, scope, id=run_id, audience_id=audience_id)
        if run is None:
            raise NotFound(f"no run {run_id!r} of audience {audience_id!r}")
        return run_view(run, audience["name"])

    def runs(self, scope: Scope, audience_id: str, *, limit: int, start: int) -> dict[str, Any]:
        check_paging(limit, start)
        with self._store.read() as conn:
            audience = self._active(conn, scope, audience_id)
            rows, total = list_rows(
                conn,
                t.runs,
                scope,
                audience_id=audience_id,
                order_by=[t.runs.c.created_ns.desc(), t.runs.c.id],
                limit=limit,
                offset=start,
            )
        return page([run_view(r, audience["name"]) for r in rows], total, limit, start, "runs")

    def run_errors(self, scope: Scope, audience_id: str, run_id: str) -> Path | None:
        """The run's rejected rows as CSV; None when the run rejected nothing."""
        self.run(scope, audience_id, run_id)
        path = self._lake.errors_file(scope, run_id)
        return path if path.exists() else None

    def members(self, scope: Scope, audience_id: str, *, limit: int, start: int) -> dict[str, Any]:
        check_paging(limit, start)
        self.get(scope, audience_id)
        profiles, total = self._profiles.members(scope, audience_id, limit=limit, offset=start)
        items = []
        for prof in profiles:
            mem = next(m for m in prof.memberships if m.audience_id == audience_id)
            items.append(
                {
                    "profileId": prof.profile_id,
                    "identities": [{"namespace": ns, "id": value} for ns, value in prof.identities],
                    "status": mem.status,
                    "lastQualificationTime": mem.last_qualification_time,
                    "payload": mem.payload,
                }
            )
        body = page(items, total, limit, start, "members")
        body["counts"] = self._profiles.counts(scope, audience_id)
        return body


def _patch_field_labels(fields: list[dict[str, Any]], body: AudiencePatch) -> list[dict[str, Any]]:
    by_name = {f["name"]: dict(f) for f in fields}
    for patch in body.fields or []:
        if patch.name not in by_name:
            raise BadRequest(f"fields: the audience has no field named {patch.name!r}")
        by_name[patch.name]["labels"] = patch.labels
    return [by_name[f["name"]] for f in fields]
