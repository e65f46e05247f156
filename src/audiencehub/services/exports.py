"""Export jobs (``/data/core/ups/export/jobs``): the profiles of chosen audiences, written into a dataset as XDM rows.

A job is created NEW with its batches registered in the catalog (``queued``); the ``export-job`` worker checks the
requested fields against the dataset's schema (seed 002's dataset is on the profile union schema), has the profile
store write the selected profiles into each batch's staging folder (``ProfileStore.export``: one aggregation in the
engine, nothing row by row), then publishes the folders and records batches and job in one metadata transaction.
A field the schema does not have fails the batches with that reason (the Catalog's batch ``errors``, seed 002's
Monitoring step) and the job FAILED with it. Each step can run again after a crash: the job is retryable.

The request's checks and the job's answer (AEP's shapes) are in ``services/export_shapes.py``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from audiencehub.domain.merge_policies import DATASET_PRECEDENCE
from audiencehub.domain.xdm import ResolvedSchema
from audiencehub.engines.xdm_sql import at, duck_type, kind, leaves
from audiencehub.errors import AudiencehubError, BadRequest, NotFound, TransientError
from audiencehub.metadata import jobs
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, get_row, insert_row, now, update_row
from audiencehub.profile.base import ProfileStore
from audiencehub.profile.exports import ExportField, ExportOutput, ExportSpec
from audiencehub.services.auth import Principal
from audiencehub.services.catalog import CatalogService, created_ms
from audiencehub.services.export_shapes import ExportRequests, field_names, job_view, member_filter, parse_time
from audiencehub.services.lake import Lake
from audiencehub.services.merge_policies import MergePolicyService

log = logging.getLogger(__name__)

JOB_EXPORT = "export-job"
LINK = "/export/jobs"
"""AEP's ``link.next`` is relative to the Segmentation API's root: ``/export/jobs/?limit=2&offset=...``."""
NEW, PROCESSING, SUCCEEDED, FAILED, CANCELLING = "NEW", "PROCESSING", "SUCCEEDED", "FAILED", "CANCELLING"
FINAL = (SUCCEEDED, FAILED)
LISTED = (NEW, PROCESSING, SUCCEEDED, FAILED)
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
SPECIAL = ("identityMap", "segmentMembership")
"""Fields the profile store keeps apart: identityMap is written when asked, segmentMembership always."""
CODE_FIELD = "EXPORT-1001-400"
CODE_FAILED = "EXPORT-1000-500"
JOB_ERROR = "0100000003"  # AEP's code for an export job's error
_OFFSET = re.compile(r"^(\d+)_(\d+)$")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ExportService:
    def __init__(
        self,
        store: MetadataStore,
        profiles: ProfileStore,
        lake: Lake,
        catalog: CatalogService,
        policies: MergePolicyService,
        schema_of: Callable[[Scope, str], ResolvedSchema],
        *,
        wake: Callable[[], None],
    ) -> None:
        self._store = store
        self._requests = ExportRequests(store, profiles, catalog, policies)
        self._profiles = profiles
        self._lake = lake
        self._catalog = catalog
        self._policies = policies
        self._schema_of = schema_of
        self._wake = wake

    # -- the API --------------------------------------------------------------------------------------

    def create(self, principal: Principal, data: Any, *, request_id: str | None = None) -> dict[str, Any]:
        scope = principal.scope
        if not isinstance(data, dict):
            raise BadRequest(f"body: must be a JSON object, got {type(data).__name__}")
        spec = self._requests.spec(scope, data)
        dataset_id = spec["destination"]["datasetId"]
        segments = spec["filter"].get("segments")
        if spec["destination"]["segmentPerBatch"] and segments:
            batches = [
                {
                    "segmentId": s["segmentId"],
                    "segmentNs": s["segmentNs"],
                    "status": s["status"],
                    "batchId": str(uuid.uuid4()),
                }
                for s in segments
            ]
        else:
            batches = [{"batchId": str(uuid.uuid4())}]
        stamp = now_ms()
        with self._store.tx() as conn:
            # The dataset's row lock orders this against a delete of the dataset: no batch of a deleted dataset.
            if get_row(conn, t.datasets, scope, for_update=True, id=dataset_id) is None:
                raise BadRequest(f"destination.datasetId: no dataset {dataset_id!r} in this sandbox")
            work_id = ""  # the job queue's row, named once this row has its id
            result = conn.execute(
                t.export_jobs.insert().values(
                    org_id=scope.org_id,
                    sandbox=scope.sandbox,
                    status=NEW,
                    spec=spec,
                    batches=batches,
                    metrics={},
                    errors=[],
                    work_id=work_id,
                    request_id=request_id or str(uuid.uuid4()),
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            job_id = int(key[0])
            _update(conn, job_id, {"work_id": jobs.enqueue(conn, scope, JOB_EXPORT, str(job_id))})
            for b in batches:
                insert_row(conn, t.batches, self._batch_row(scope, b["batchId"], dataset_id, job_id, principal))
            row = self._row(conn, scope, job_id)
        self._wake()
        return job_view(row)

    def get(self, scope: Scope, job_id: str) -> dict[str, Any]:
        with self._store.read() as conn:
            return job_view(self._visible(conn, scope, job_id))

    def list_jobs(
        self, scope: Scope, *, limit: int = DEFAULT_LIMIT, offset: str | None = None, status: str | None = None
    ) -> dict[str, Any]:
        """AEP's list: ``records`` newest first, ``page`` (``pageOffset``: creation time and id of the last record,
        the ``offset`` of the next page), ``link.next``. A plain number as ``offset`` skips that many records."""
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: must be from 1 to {MAX_LIMIT}, got {limit}")
        if status is not None and status not in LISTED:
            raise BadRequest(f"status: must be one of {', '.join(LISTED)}, got {status!r}")
        c = t.export_jobs.c
        stmt = select(t.export_jobs).where(c.org_id == scope.org_id, c.sandbox == scope.sandbox)
        stmt = stmt.where(c.status == status) if status else stmt.where(c.status != CANCELLING)
        skip = 0
        if offset:
            found = _OFFSET.match(offset.strip())
            if found:
                created, last = int(found.group(1)), int(found.group(2))
                stmt = stmt.where(or_(c.created_at < created, and_(c.created_at == created, c.id < last)))
            elif offset.strip().isdigit():
                skip = int(offset.strip())
            else:
                raise BadRequest(f"offset: must be {{creationTime}}_{{id}} as page.pageOffset answers, got {offset!r}")
        stmt = stmt.order_by(c.created_at.desc(), c.id.desc()).offset(skip).limit(limit + 1)
        with self._store.read() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        more, rows = len(rows) > limit, rows[:limit]
        page: dict[str, Any] = {"sortField": "createdTime", "sort": "desc", "pageSize": len(rows)}
        nxt = ""
        if rows:
            page["pageOffset"] = f"{rows[-1]['created_at']}_{rows[-1]['id']}"
            if more:
                nxt = f"{LINK}/?limit={limit}&offset={page['pageOffset']}" + (f"&status={status}" if status else "")
        return {"records": [job_view(r) for r in rows], "page": page, "link": {"next": nxt}}

    def cancel(self, scope: Scope, job_id: str) -> dict[str, Any]:
        """AEP's DELETE: the job is gone from the API; one that has not committed stops, its batches aborted."""
        with self._store.tx() as conn:
            # Every status change locks the job's row first: a cancel and a commit never both win (PostgreSQL).
            row = self._visible(conn, scope, job_id, lock=True)
            if row["status"] == PROCESSING:
                _update(conn, row["id"], {"status": CANCELLING, "updated_at": now_ms()})
            else:
                if row["status"] == NEW:
                    self._abort_batches(conn, scope, row)
                conn.execute(t.export_jobs.delete().where(t.export_jobs.c.id == row["id"]))
        return {"status": True, "message": "Export job has been marked for cancelling"}

    # -- the job --------------------------------------------------------------------------------------

    def execute(self, ref: str, scope: Scope) -> None:
        job_id = int(ref)
        with self._store.tx() as conn:
            row = get_row(conn, t.export_jobs, scope, for_update=True, id=job_id)
            if row is None or row["status"] in FINAL:
                return
            if row["status"] == CANCELLING:
                self._drop(conn, scope, row)
                return
            metrics = dict(row["metrics"])
            metrics.setdefault("totalTime", {"startTimeInMs": now_ms()})
            _update(conn, job_id, {"status": PROCESSING, "metrics": metrics, "updated_at": now_ms()})
            self._set_batches(conn, scope, row, "processing", started=True)
        try:
            self._run(scope, {**row, "metrics": metrics})
        except TransientError:
            raise  # the runner tries the job again
        except AudiencehubError as exc:
            self._fail(scope, job_id, exc.detail, code=CODE_FIELD if isinstance(exc, BadRequest) else exc.code)
        except Exception as exc:
            log.exception("export job %s failed", job_id)
            self._fail(scope, job_id, f"internal error ({type(exc).__name__}); the server log has the details")

    def recover(self, ref: str, scope: Scope) -> None:
        """The job's worker died for good: a job that committed stays; any other fails (or goes, if deleted)."""
        self._fail(scope, int(ref), "the server stopped while the job ran; nothing was written")

    def _run(self, scope: Scope, row: Row) -> None:
        spec = row["spec"]
        dataset_id = spec["destination"]["datasetId"]
        dataset = self._catalog.get_row(scope, dataset_id)  # NotFound: deleted since the job was created
        schema = self._schema_of(scope, dataset["schema_id"])
        export = self._export_spec(scope, spec, schema)
        segments = spec["filter"].get("segments")
        per_batch = len(row["batches"]) > 1 or "segmentId" in row["batches"][0]
        outputs: list[ExportOutput] = []
        for n, b in enumerate(row["batches"]):
            if segments is None:
                members = None
            else:  # with segmentPerBatch, batch n holds segment n
                members = (member_filter(segments[n]),) if per_batch else tuple(member_filter(s) for s in segments)
            staged = self._lake.staging(scope, b["batchId"]) / "out"
            self._lake.remove(staged.parent)  # what an earlier attempt left
            staged.mkdir(parents=True)
            outputs.append(ExportOutput(members, staged))
        started = now_ms()
        counts = self._profiles.export(scope, export, outputs)
        exported = now_ms()
        if self._status(scope, row["id"]) != PROCESSING:  # deleted meanwhile: nothing is published
            with self._store.tx() as conn:
                found = get_row(conn, t.export_jobs, scope, for_update=True, id=row["id"])
                if found is not None:
                    self._drop(conn, scope, found)
            self._clean(scope, row)
            return
        for b in row["batches"]:
            final = self._lake.batch(scope, dataset_id, b["batchId"])
            self._lake.remove(final)  # a folder an attempt published but never committed
            self._lake.publish(self._lake.staging(scope, b["batchId"]) / "out", final)
        sizes = [
            sum(p.stat().st_size for p in self._lake.batch(scope, dataset_id, b["batchId"]).glob("*.parquet"))
            for b in row["batches"]
        ]
        self._commit(scope, row, counts, sizes, started, exported)
        self._clean(scope, row)

    def _export_spec(self, scope: Scope, spec: dict[str, Any], schema: ResolvedSchema) -> ExportSpec:
        """The fields as leaves of the dataset's schema; BadRequest names the first one it does not have."""
        wanted = field_names(spec.get("fields") or "")
        identity_map = not wanted
        found: dict[tuple[str, ...], str] = {}
        if not wanted:
            found = {leaf.path: leaf.type for leaf in leaves(schema.properties) if leaf.path[0] not in SPECIAL}
        for name in wanted:
            path = tuple(name.split("."))
            node = at(schema.properties, path)
            if node is None:
                raise BadRequest(
                    f"field {name!r} does not exist in schema {schema.title!r} of the dataset; nothing was exported"
                )
            if path[0] == "identityMap":
                identity_map = True
                continue
            if path[0] == "segmentMembership":
                continue  # always written
            if kind(node) == "struct":
                found.update({leaf.path: leaf.type for leaf in leaves(node["properties"], path)})
            else:
                found[path] = duck_type(node)
        policy = self._policies.resolve(scope, spec["mergePolicy"]["id"])
        window = spec["filter"].get("segmentQualificationTime") or {}
        start, end = window.get("startTime"), window.get("endTime")
        after = spec["filter"].get("fromIngestTimestamp")
        return ExportSpec(
            fields=tuple(ExportField(p, sql_type) for p, sql_type in found.items()),
            identity_map=identity_map,
            qualified_from=parse_time(start, "startTime") if start else None,
            qualified_until=parse_time(end, "endTime") if end else None,
            updated_after=parse_time(after, "fromIngestTimestamp") if after else None,
            empty_profiles=bool(spec["filter"].get("emptyProfiles", False)),
            precedence=tuple(policy.dataset_order) if policy.attribute_merge == DATASET_PRECEDENCE else None,
        )

    def _commit(self, scope: Scope, row: Row, counts: list[int], sizes: list[int], started: int, exported: int) -> None:
        """Batches and job in one transaction: the batches become readable exactly when the job says SUCCEEDED."""
        dataset_id = row["spec"]["destination"]["datasetId"]
        with self._store.tx() as conn:
            current = get_row(conn, t.export_jobs, scope, for_update=True, id=row["id"])
            gone = get_row(conn, t.datasets, scope, for_update=True, id=dataset_id) is None
            if current is None or current["status"] != PROCESSING or gone:
                if current is not None:
                    if gone:
                        self._finish(conn, current, FAILED, [_error(f"dataset {dataset_id!r} was deleted")])
                    else:
                        self._drop(conn, scope, current)
                publish = False
            else:
                end = now_ms()
                for b, count, size in zip(row["batches"], counts, sizes, strict=True):
                    self._record_batch(conn, scope, b["batchId"], "success", records=count, size=size)
                metrics = dict(current["metrics"])
                begin = metrics.get("totalTime", {}).get("startTimeInMs") or current["created_at"]
                metrics.update(
                    totalTime=_span(begin, end),
                    profileExportTime=_span(started, exported),
                    aCPDatasetWriteTime=_span(exported, end),
                    totalExportedProfileCounter=sum(counts),
                )
                _update(conn, row["id"], {"status": SUCCEEDED, "metrics": metrics, "errors": [], "updated_at": end})
                publish = True
        if not publish:
            for b in row["batches"]:
                self._lake.remove(self._lake.batch(scope, dataset_id, b["batchId"]))

    def _fail(self, scope: Scope, job_id: int, reason: str, *, code: str = CODE_FAILED) -> None:
        with self._store.tx() as conn:
            row = get_row(conn, t.export_jobs, scope, for_update=True, id=job_id)
            if row is None or row["status"] in FINAL:
                return
            if row["status"] == CANCELLING:
                self._drop(conn, scope, row)
            else:
                for b in row["batches"]:
                    self._record_batch(
                        conn, scope, b["batchId"], "failed", errors=[{"code": code, "description": reason}]
                    )
                self._finish(conn, row, FAILED, [_error(reason)])
        dataset_id = row["spec"]["destination"]["datasetId"]
        for b in row["batches"]:  # folders an attempt published but never committed
            self._lake.remove(self._lake.batch(scope, dataset_id, b["batchId"]))
        self._clean(scope, row)

    def _finish(self, conn: Connection, row: Row, status: str, errors: list[dict[str, Any]]) -> None:
        end = now_ms()
        metrics = dict(row["metrics"])
        begin = metrics.get("totalTime", {}).get("startTimeInMs") or row["created_at"]
        metrics["totalTime"] = _span(begin, end)
        _update(conn, row["id"], {"status": status, "metrics": metrics, "errors": errors, "updated_at": end})

    def _drop(self, conn: Connection, scope: Scope, row: Row) -> None:
        """A deleted job: its uncommitted batches are aborted and its row goes."""
        self._abort_batches(conn, scope, row)
        conn.execute(t.export_jobs.delete().where(t.export_jobs.c.id == row["id"]))

    def _abort_batches(self, conn: Connection, scope: Scope, row: Row) -> None:
        for b in row["batches"]:
            found = get_row(conn, t.batches, scope, id=b["batchId"])
            if found is not None and found["status"] not in ("success", "failed"):
                self._record_batch(conn, scope, b["batchId"], "aborted")

    def _clean(self, scope: Scope, row: Row) -> None:
        for b in row["batches"]:
            self._lake.remove(self._lake.staging(scope, b["batchId"]))

    def _status(self, scope: Scope, job_id: int) -> str | None:
        with self._store.read() as conn:
            row = get_row(conn, t.export_jobs, scope, id=job_id)
        return None if row is None else str(row["status"])

    # -- catalog batches ------------------------------------------------------------------------------

    @staticmethod
    def _batch_row(scope: Scope, batch_id: str, dataset_id: str, job_id: int, principal: Principal) -> Row:
        stamp = now_ms()
        return {
            "id": batch_id,
            "org_id": scope.org_id,
            "sandbox": scope.sandbox,
            "dataset_id": dataset_id,
            "status": "queued",
            "record_count": 0,
            "size_bytes": 0,
            "created_at": now(),
            "created_ms": created_ms(),
            "props": {
                "inputFormat": {"format": "parquet"},
                "createdUser": principal.user,
                "createdClient": principal.client_id,
                "updated": stamp,
                "source": "export",
                "tags": {"exportJobId": [str(job_id)]},
            },
        }

    def _set_batches(self, conn: Connection, scope: Scope, row: Row, status: str, *, started: bool) -> None:
        for b in row["batches"]:
            found = get_row(conn, t.batches, scope, id=b["batchId"])
            if found is None or found["status"] in ("success", "failed", "aborted"):
                continue
            props = {**(found["props"] or {}), "updated": now_ms()}
            if started:
                props.setdefault("started", props["updated"])
            update_row(conn, t.batches, b["batchId"], {"status": status, "props": props})

    @staticmethod
    def _record_batch(
        conn: Connection,
        scope: Scope,
        batch_id: str,
        status: str,
        *,
        records: int = 0,
        size: int = 0,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        """The batch's outcome, as batch ingestion records one (``describe_batch`` reads it)."""
        found = get_row(conn, t.batches, scope, id=batch_id)
        if found is None:  # its dataset was deleted
            return
        stamp = now_ms()
        props = {
            **(found["props"] or {}),
            "updated": stamp,
            "completed": stamp,
            "failedRecordCount": 0,
            "recordsRead": records,
            "errors": errors or [],
        }
        update_row(
            conn,
            t.batches,
            batch_id,
            {
                "status": status,
                "record_count": records,
                "size_bytes": size,
                "completed_at": now(),
                "error": errors[0]["description"] if errors else None,
                "props": props,
            },
        )

    # -- rows -----------------------------------------------------------------------------------------

    @staticmethod
    def _row(conn: Connection, scope: Scope, job_id: int, *, lock: bool = False) -> Row:
        row = get_row(conn, t.export_jobs, scope, for_update=lock, id=job_id)
        if row is None:
            raise NotFound(f"no export job {job_id} in this sandbox")
        return row

    def _visible(self, conn: Connection, scope: Scope, job_id: str, *, lock: bool = False) -> Row:
        if not job_id.strip().isdigit():
            raise NotFound(f"no export job {job_id!r} in this sandbox (export job ids are numbers)")
        row = self._row(conn, scope, int(job_id), lock=lock)
        if row["status"] == CANCELLING:
            raise NotFound(f"no export job {job_id} in this sandbox (it was deleted)")
        return row


def _update(conn: Connection, job_id: int, values: dict[str, Any]) -> None:
    conn.execute(t.export_jobs.update().where(t.export_jobs.c.id == job_id).values(**values))


def _span(start: int, end: int) -> dict[str, int]:
    return {"startTimeInMs": start, "endTimeInMs": end, "totalTimeInMs": end - start}


def _error(message: str) -> dict[str, Any]:
    return {"code": JOB_ERROR, "msg": message}
