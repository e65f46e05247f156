"""Export jobs' API shapes: the request checked into the spec a job runs, and the job as AEP answers it.

Seed 002 sends ``filter.segments`` as one object that repeats ``segmentId``, ``segmentNs`` and ``status`` three
times. A JSON parser keeps only the last of repeated keys (AEP's would export only the third audience); the body is
read with :func:`keep_repeats` instead, and such an object becomes one filter per ``segmentId``, so the seed exports
its three audiences, and the job's answer lists them as three ``filter.segments`` items.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from audiencehub.domain.audiences import DEFAULT_NAMESPACE
from audiencehub.domain.segments import SEGMENT_NAMESPACE
from audiencehub.errors import BadRequest, NotFound, Unprocessable
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, get_row
from audiencehub.profile.base import ProfileStore
from audiencehub.profile.exports import MemberFilter
from audiencehub.services.catalog import KIND_XDM, CatalogService
from audiencehub.services.external_audiences import find_active
from audiencehub.services.merge_policies import MergePolicyService

STATUSES = ("realized", "existing", "exited")
DEFAULT_STATUSES = ("realized", "existing")
PROFILE_SCHEMA = "_xdm.context.profile"
_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


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


def parse_time(value: Any, where: str) -> dt.datetime:
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


def field_names(fields: str) -> list[str]:
    return list(dict.fromkeys(f.strip() for f in fields.split(",") if f.strip()))


class ExportRequests:
    """Checks an export job's request against the sandbox (dataset, merge policy, audiences) into its spec."""

    def __init__(
        self, store: MetadataStore, profiles: ProfileStore, catalog: CatalogService, policies: MergePolicyService
    ) -> None:
        self._store = store
        self._profiles = profiles
        self._catalog = catalog
        self._policies = policies

    def spec(self, scope: Scope, body: dict[str, Any]) -> dict[str, Any]:
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
            for name in field_names(fields):
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
                    parse_time(window[key], f"filter.segmentQualificationTime.{key}")
                    kept[key] = window[key]
            out["segmentQualificationTime"] = kept
        if body.get("fromIngestTimestamp") is not None:
            parse_time(body["fromIngestTimestamp"], "filter.fromIngestTimestamp")
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


def member_filter(segment: dict[str, Any]) -> MemberFilter:
    found = segment["__ah_member"]
    return MemberFilter(found["namespace"], found["id"], tuple(segment["status"]))


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
