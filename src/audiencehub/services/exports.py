"""Export jobs (``/data/core/ups/export/jobs``): the profiles of chosen audiences, written into a dataset as XDM rows.

A job is created NEW with its batches registered in the catalog (``queued``); the ``export-job`` worker checks the
requested fields against the dataset's schema (seed 002's dataset is on the profile union schema), has the profile
store write the selected profiles into each batch's staging folder (``ProfileStore.export``: one aggregation in the
engine, nothing row by row), then publishes the folders and records batches and job in one metadata transaction.
A field the schema does not have fails the batches with that reason (the Catalog's batch ``errors``, seed 002's
Monitoring step) and the job FAILED with it. Each step can run again after a crash: the job is retryable.

Seed 002 sends ``filter.segments`` as one object that repeats ``segmentId``, ``segmentNs`` and ``status`` three
times. A JSON parser keeps only the last of repeated keys (AEP's would export only the third audience); the body is
read with :func:`keep_repeats` instead, and such an object becomes one filter per ``segmentId``, so the seed exports
its three audiences, and the job's answer lists them as three ``filter.segments`` items.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from audiencehub.domain.audiences import DEFAULT_NAMESPACE
from audiencehub.domain.merge_policies import DATASET_PRECEDENCE
from audiencehub.domain.segments import SEGMENT_NAMESPACE
from audiencehub.domain.xdm import ResolvedSchema
from audiencehub.engines.xdm_sql import at, duck_type, kind, leaves
from audiencehub.errors import AudiencehubError, BadRequest, NotFound, TransientError, Unprocessable
from audiencehub.metadata import jobs
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, get_row, insert_row, now, update_row
from audiencehub.profile.base import ProfileStore
from audiencehub.profile.exports import ExportField, ExportOutput, ExportSpec, MemberFilter
from audiencehub.services.auth import Principal
from audiencehub.services.catalog import KIND_XDM, CatalogService, created_ms
from audiencehub.services.external_audiences import find_active
from audiencehub.services.lake import Lake
from audiencehub.services.merge_policies import MergePolicyService

log = logging.getLogger(__name__)

JOB_EXPORT = "export-job"
LINK = "/export/jobs"
"""AEP's ``link.next`` is relative to the Segmentation API's root: ``/export/jobs/?limit=2&offset=...``."""
NEW, PROCESSING, SUCCEEDED, FAILED, CANCELLING = "NEW", "PROCESSING", "SUCCEEDED", "FAILED", "CANCELLING"
FINAL = (SUCCEEDED, FAILED)
LISTED = (NEW, PROCESSING, SUCCEEDED, FAILED)
STATUSES = ("realized", "existing", "exited")
DEFAULT_STATUSES = ("realized", "existing")
PROFILE_SCHEMA = "_xdm.context.profile"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
SPECIAL = ("identityMap", "segmentMembership")
"""Fields the profile store keeps apart: identityMap is written when asked, segmentMembership always."""
CODE_FIELD = "EXPORT-1001-400"
CODE_FAILED = "EXPORT-1000-500"
JOB_ERROR = "0100000003"  # AEP's code for an export job's error
_OFFSET = re.compile(r"^(\d+)_(\d+)$")
_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Repeated(dict[str, Any]):
    """A JSON object that repeats keys: the last value of each (as any parser keeps), and every pair in order."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def keep_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads(..., object_pairs_hook=keep_repeats)``: objects as usual, but one with repeated keys keeps them."""
    if len({k for k, _ in pairs}) == len(pairs):
        return dict(pairs)
    return Repeated(pairs)


def _split(item: Any) -> list[Any]:
    """One ``filter.segments`` item, or several when it repeats keys (seed 002): a new item starts at each key that
    the current one already has."""
    if not isinstance(item, Repeated):
        return [item]
    out: list[dict[str, Any]] = [{}]
    for key, value in item.pairs:
        if key in out[-1]:
            out.append({})
        out[-1][key] = value
    return out


def _time(value: Any, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise BadRequest(f"{where}: must be an RFC 3339 timestamp such as 2018-01-01T00:00:00Z, got {value!r}")
    try:
        stamp = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(
            f"{where}: must be an RFC 3339 timestamp such as 2018-01-01T00:00:00Z, got {value!r}"
        ) from None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)


def _object(body: dict[str, Any], key: str, where: str, *, required: bool = False) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        if required:
            raise BadRequest(f"{where}: is required")
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: must be an object, got {value!r}")
    return value


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
        spec = self._checked(scope, data)
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

    # -- the request ----------------------------------------------------------------------------------

    def _checked(self, scope: Scope, body: dict[str, Any]) -> dict[str, Any]:
        """The request as the job will run it; refusals name the field and the value."""
        destination = _object(body, "destination", "destination", required=True)
        dataset_id = destination.get("datasetId")
        if not isinstance(dataset_id, str) or not dataset_id.strip():
            raise BadRequest(
                f"destination.datasetId: the id of the dataset to write to is required, got {dataset_id!r}"
            )
        per_batch = destination.get("segmentPerBatch", False)
        if not isinstance(per_batch, bool):
            raise BadRequest(f"destination.segmentPerBatch: must be true or false, got {per_batch!r}")
        schema = _object(body, "schema", "schema", required=True)
        if schema.get("name") != PROFILE_SCHEMA:
            raise BadRequest(
                f"schema.name: must be {PROFILE_SCHEMA!r} (profiles are exported), got {schema.get('name')!r}"
            )
        try:
            dataset = self._catalog.get_row(scope, dataset_id.strip())
        except NotFound:
            raise BadRequest(f"destination.datasetId: no dataset {dataset_id!r} in this sandbox") from None
        if dataset["kind"] != KIND_XDM:
            raise BadRequest(f"destination.datasetId: dataset {dataset_id!r} belongs to an external audience")
        fields = body.get("fields")
        if fields is not None:
            if not isinstance(fields, str):
                raise BadRequest(f"fields: must be a comma-separated list of field paths, got {fields!r}")
            for name in _field_names(fields):
                if not _PATH.match(name):
                    raise BadRequest(f"fields: {name!r} is not a field path such as person.name.firstName")
        policy_body = _object(body, "mergePolicy", "mergePolicy")
        policy_id = policy_body.get("id")
        if policy_id is not None and not isinstance(policy_id, str):
            raise BadRequest(f"mergePolicy.id: must be a merge policy id, got {policy_id!r}")
        try:
            policy = self._policies.resolve(scope, policy_id)
        except NotFound:
            raise BadRequest(f"mergePolicy.id: no merge policy {policy_id!r} in this sandbox") from None
        additional = _object(body, "additionalFields", "additionalFields")
        if additional.get("eventList") is not None:
            raise Unprocessable("additionalFields.eventList: exporting ExperienceEvents with profiles is not supported")
        if _object(body, "evaluationInfo", "evaluationInfo").get("segmentation"):
            raise Unprocessable(
                "evaluationInfo.segmentation: evaluate the segments with a segment job first, then export"
            )
        spec: dict[str, Any] = {
            "filter": self._filter(scope, _object(body, "filter", "filter")),
            "destination": {"datasetId": dataset["id"], "segmentPerBatch": per_batch},
            "schema": {"name": PROFILE_SCHEMA},
            "mergePolicy": {"id": policy.id, "version": policy_body.get("version") or 1},
        }
        if fields is not None:
            spec["fields"] = fields
        return spec

    def _filter(self, scope: Scope, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        segments = body.get("segments")
        if segments is not None:
            items = segments if isinstance(segments, list) else [segments] if isinstance(segments, dict) else None
            if items is None:
                raise BadRequest(
                    f"filter.segments: must be a list of {{segmentId, segmentNs, status}}, got {segments!r}"
                )
            found = [part for item in items for part in _split(item)]
            out["segments"] = [self._segment(scope, n, item) for n, item in enumerate(found)]
        window = _object(body, "segmentQualificationTime", "filter.segmentQualificationTime")
        if window:
            kept = {}
            for key in ("startTime", "endTime"):
                if window.get(key) is not None:
                    _time(window[key], f"filter.segmentQualificationTime.{key}")
                    kept[key] = window[key]
            out["segmentQualificationTime"] = kept
        if body.get("fromIngestTimestamp") is not None:
            _time(body["fromIngestTimestamp"], "filter.fromIngestTimestamp")
            out["fromIngestTimestamp"] = body["fromIngestTimestamp"]
        if body.get("emptyProfiles") is not None:
            if not isinstance(body["emptyProfiles"], bool):
                raise BadRequest(f"filter.emptyProfiles: must be true or false, got {body['emptyProfiles']!r}")
            out["emptyProfiles"] = body["emptyProfiles"]
        return out

    def _segment(self, scope: Scope, n: int, item: Any) -> dict[str, Any]:
        where = f"filter.segments[{n}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where}: must be an object with segmentId, segmentNs and status, got {item!r}")
        segment_id = item.get("segmentId")
        if not isinstance(segment_id, str) or not segment_id.strip():
            raise BadRequest(f"{where}.segmentId: the id of a segment definition or audience is required")
        ns = item.get("segmentNs", SEGMENT_NAMESPACE)
        if not isinstance(ns, str) or not ns.strip():
            raise BadRequest(f"{where}.segmentNs: must be a namespace such as ups, got {ns!r}")
        statuses = item.get("status", list(DEFAULT_STATUSES))
        if isinstance(statuses, str):
            statuses = [statuses]  # AEP's own segmentPerBatch example answers "status": "exited"
        if not isinstance(statuses, list) or not statuses or any(s not in STATUSES for s in statuses):
            raise BadRequest(f"{where}.status: must be a list of {', '.join(STATUSES)}, got {statuses!r}")
        namespace, audience_id = self._resolve(scope, segment_id.strip(), ns.strip(), where)
        return {
            "segmentId": segment_id.strip(),
            "segmentNs": ns.strip(),
            "status": list(dict.fromkeys(statuses)),
            "__ah_member": {"namespace": namespace, "id": audience_id},
        }

    def _resolve(self, scope: Scope, segment_id: str, ns: str, where: str) -> tuple[str, str]:
        """The namespace and id under which the profile store holds the memberships a filter names: a segment
        definition (``ups``), an external audience (its own namespace, by its id or customAudienceId; named with
        ``ups`` too, as seed 002 names every audience it picked in the Audiences list), or records' own."""
        with self._store.read() as conn:
            if ns == SEGMENT_NAMESPACE and get_row(conn, t.segment_definitions, scope, id=segment_id) is not None:
                return SEGMENT_NAMESPACE, segment_id
            found = find_active(conn, scope, segment_id)
        if found is not None:
            own = (found["spec"] or {}).get("namespace", DEFAULT_NAMESPACE)
            if ns in (own, SEGMENT_NAMESPACE):
                return own, str(found["id"])
        if ns in self._profiles.record_segments(scope, segment_id):
            return ns, segment_id
        raise BadRequest(f"{where}.segmentId: no segment definition or audience {segment_id!r} in namespace {ns!r}")

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
                members = (_member(segments[n]),) if per_batch else tuple(_member(s) for s in segments)
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
        wanted = _field_names(spec.get("fields") or "")
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
            qualified_from=_time(start, "startTime") if start else None,
            qualified_until=_time(end, "endTime") if end else None,
            updated_after=_time(after, "fromIngestTimestamp") if after else None,
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


def _field_names(fields: str) -> list[str]:
    return list(dict.fromkeys(f.strip() for f in fields.split(",") if f.strip()))


def _update(conn: Connection, job_id: int, values: dict[str, Any]) -> None:
    conn.execute(t.export_jobs.update().where(t.export_jobs.c.id == job_id).values(**values))


def _member(segment: dict[str, Any]) -> MemberFilter:
    found = segment["__ah_member"]
    return MemberFilter(found["namespace"], found["id"], tuple(segment["status"]))


def _span(start: int, end: int) -> dict[str, int]:
    return {"startTimeInMs": start, "endTimeInMs": end, "totalTimeInMs": end - start}


def _error(message: str) -> dict[str, Any]:
    return {"code": JOB_ERROR, "msg": message}


def job_view(row: Row) -> dict[str, Any]:
    """An export job in AEP's ``ExportJobResponse`` shape."""
    spec = row["spec"]
    destination: dict[str, Any] = dict(spec["destination"])
    if destination["segmentPerBatch"] and "segmentId" in row["batches"][0]:
        destination["batches"] = [dict(b) for b in row["batches"]]
    else:
        destination["batchId"] = row["batches"][0]["batchId"]
    filters = dict(spec["filter"])
    if "segments" in filters:
        filters["segments"] = [{k: v for k, v in s.items() if not k.startswith("__ah_")} for s in filters["segments"]]
    metrics = dict(row["metrics"])
    metrics.setdefault("totalTime", {"startTimeInMs": row["created_at"]})
    body: dict[str, Any] = {
        "id": row["id"],
        "jobType": "BATCH",
        "destination": destination,
        "schema": spec["schema"],
        "imsOrgId": row["org_id"],
        "status": row["status"],
        "filter": filters,
        "mergePolicy": spec["mergePolicy"],
        "profileInstanceId": "ups",
        "metrics": metrics,
        "computeGatewayJobId": {"exportJob": row["work_id"]},
        "creationTime": row["created_at"],
        "updateTime": row["updated_at"],
        "requestId": row["request_id"],
    }
    if "fields" in spec:
        body["fields"] = spec["fields"]
    if row["errors"]:
        body["errors"] = row["errors"]
    return body
