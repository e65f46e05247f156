"""The Audience Portal's list: AEP's ``/audiences``, segment definitions and external audiences in one catalog.

Both kinds are answered in the shapes of Adobe's ``PlatformGeneratedAudience`` (type ``SegmentDefinition``) and
``ExternallyGeneratedAudience`` (type ``ExternalSegment``). Each carries ``metrics``: its size as the profile store
reads it now (ttl applied) and its last evaluation (the segment job or the external audience's run that last
changed it). A sandbox holds hundreds of audiences, not millions: the list is filtered, sorted and paged over their
metadata in memory, and only the page's sizes are read from the profile store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection

from audiencehub.domain.audiences import DEFAULT_NAMESPACE, TTL_DEFAULT
from audiencehub.errors import BadRequest, NotFound
from audiencehub.metadata import tables as t
from audiencehub.metadata.evaluations import latest as last_evaluations
from audiencehub.metadata.store import MetadataStore, Row, Scope, list_rows
from audiencehub.profile.base import ProfileStore
from audiencehub.services.merge_policies import sandbox_view
from audiencehub.services.segmentation import definition_view

DEFAULT_LIMIT, MAX_LIMIT = 20, 1000
DEFAULT_SORT = "creationTime:desc"
SEGMENT_TYPE, EXTERNAL_TYPE = "SegmentDefinition", "ExternalSegment"
PLATFORM_ORIGIN = "REAL_TIME_CUSTOMER_PROFILE"
PLATFORM_NAMESPACE = "AEPSegments"
PROFILE_SCHEMA = "_xdm.context.profile"
PUBLISHED = "published"
DEFINED_ON = [
    {
        "meta:resourceType": "unions",
        "meta:containerId": "tenant",
        "$ref": "https://ns.adobe.com/xdm/context/profile__union",
    }
]
METRICS_TYPE = {SEGMENT_TYPE: "segmentJob", EXTERNAL_TYPE: "audienceRun"}
"""``metrics.type``: what last evaluated the audience (AEP's examples say ``export``, its snapshot job)."""

PROPERTIES = (
    "id",
    "audienceId",
    "name",
    "description",
    "namespace",
    "type",
    "originName",
    "lifecycleState",
    "datasetId",
    "mergePolicyId",
    "createdBy",
)
"""The attributes ``property=name==value`` may name (exact, case-sensitive match)."""


@dataclass
class _Entry:
    view: dict[str, Any]
    created_ns: int

    @property
    def id(self) -> str:
        return str(self.view["id"])


def _text(field: str) -> Callable[[_Entry], Any]:
    return lambda e: str(e.view.get(field) or "").casefold()


SORTABLE: dict[str, Callable[[_Entry], Any]] = {
    "name": _text("name"),
    "description": _text("description"),
    "creationTime": lambda e: e.created_ns,
    "createEpoch": lambda e: e.created_ns,
    "updateTime": lambda e: e.view["updateTime"],
    "updateEpoch": lambda e: e.view["updateTime"],
    "audienceId": lambda e: str(e.view["audienceId"]),
    "id": lambda e: e.id,
    "type": lambda e: e.view["type"],
    "originName": lambda e: e.view["originName"],
    "namespace": lambda e: e.view["namespace"],
}


class AudiencePortalService:
    """``GET /audiences`` and ``GET /audiences/{id}`` over segment definitions and ACTIVE external audiences."""

    def __init__(self, store: MetadataStore, profiles: ProfileStore) -> None:
        self._store = store
        self._profiles = profiles

    def list(
        self,
        scope: Scope,
        *,
        start: int = 0,
        limit: int = DEFAULT_LIMIT,
        sort: str | None = None,
        properties: Sequence[str] = (),
        name: str | None = None,
        description: str | None = None,
        entity_type: str | None = None,
    ) -> dict[str, Any]:
        """AEP's ``AudiencesList``: ``children``, ``_page`` and ``_links`` (``next`` only when there is more)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: must be from 1 to {MAX_LIMIT}, got {limit}")
        if start < 0:
            raise BadRequest(f"start: must be 0 or more, got {start}")
        field, direction = parse_sort(sort or DEFAULT_SORT)
        wanted = [parse_property(p) for p in properties]
        with self._store.read() as conn:
            entries, evaluations = _entries(conn, scope), last_evaluations(conn, scope)
        found = [e for e in entries if _matches(e.view, wanted, name, description, entity_type)]
        key = SORTABLE[field]
        found.sort(key=lambda e: (key(e), e.created_ns, e.id), reverse=direction == "desc")
        total = len(found)
        chosen = found[start : start + limit]
        page: dict[str, Any] = {
            "totalCount": total,
            "totalPages": -(-total // limit),
            "sortField": field,
            "sort": direction,
            "pageSize": len(chosen),
            "limit": limit,
            "start": start,
        }
        links: dict[str, Any] = {}
        if start + limit < total:
            page["next"] = start + limit
            query: list[tuple[str, Any]] = [("start", start + limit), ("limit", limit)]
            query += [("sort", sort)] if sort else []
            query += [("property", p) for p in properties]
            query += [(k, v) for k, v in (("name", name), ("description", description), ("entityType", entity_type))]
            links["next"] = {"href": "@/audiences?" + urlencode([(k, v) for k, v in query if v is not None])}
        children = [self._with_metrics(scope, e.view, evaluations.get(e.id)) for e in chosen]
        return {"children": children, "_page": page, "_links": links}

    def get(self, scope: Scope, audience_id: str) -> dict[str, Any]:
        """One audience by its ``id`` (AEP's guide: the path takes ``id``, never an external ``audienceId``)."""
        with self._store.read() as conn:
            entries = [e for e in _entries(conn, scope) if e.id == audience_id]
            evaluations = last_evaluations(conn, scope)
        if not entries:
            raise NotFound(f"no audience {audience_id!r} in this sandbox (GET /audiences/{{id}} takes the id field)")
        return self._with_metrics(scope, entries[0].view, evaluations.get(audience_id))

    # -- views ---------------------------------------------------------------------------------------

    def _with_metrics(self, scope: Scope, view: dict[str, Any], evaluation: Row | None) -> dict[str, Any]:
        counts = self._profiles.counts(scope, view["id"])
        by_status = {s: int(counts.get(s, 0)) for s in ("realized", "existing", "exited")}
        metrics: dict[str, Any] = {
            "id": view["id"],
            "data": {
                "totalProfiles": by_status["realized"] + by_status["existing"],
                "totalProfilesByStatus": by_status,
            },
        }
        if evaluation is not None:
            metrics.update(
                type=METRICS_TYPE[view["type"]],
                jobId=evaluation["job_id"],
                updateEpoch=int(evaluation["evaluated_at"]),
            )
        return {**view, "metrics": metrics}


def _entries(conn: Connection, scope: Scope) -> list[_Entry]:
    """Every audience of the sandbox, without metrics; ``dependencies`` are the definitions that read each."""
    definitions = list_rows(conn, t.segment_definitions, scope)[0]
    externals = list_rows(conn, t.audiences, scope, state="ACTIVE")[0]
    readers: dict[str, list[str]] = {}
    for d in definitions:
        for used in [*d["dependencies"]["segments"], *d["dependencies"]["audiences"]]:
            readers.setdefault(used, []).append(d["id"])
    out = [_Entry(segment_audience_view(d, readers.get(d["id"], [])), d["created_ns"]) for d in definitions]
    out += [_Entry(external_audience_view(a, readers.get(a["id"], [])), a["created_ns"]) for a in externals]
    return out


def segment_audience_view(row: Row, readers: list[str]) -> dict[str, Any]:
    """A segment definition as a Platform-generated audience; ``readers`` are the definitions that read it."""
    definition = definition_view(row)
    return {
        "id": row["id"],
        "audienceId": row["id"],
        **definition,
        "isSystem": False,
        "labels": definition.get("labels", []),
        "createEpoch": row["created_at"] // 1000,
        "definedOn": [dict(d) for d in DEFINED_ON],
        "dependencies": readers,
        "type": SEGMENT_TYPE,
        "originName": PLATFORM_ORIGIN,
        "createdBy": row["created_by"],
        "lifecycleState": PUBLISHED,
        "namespace": PLATFORM_NAMESPACE,
    }


def external_audience_view(row: Row, readers: list[str]) -> dict[str, Any]:
    """An ACTIVE external audience (seed 003) as an externally generated audience."""
    spec = row["spec"]
    return {
        "id": row["id"],
        "audienceId": row["custom_audience_id"] or row["id"],
        "name": row["name"],
        "namespace": spec.get("namespace", DEFAULT_NAMESPACE),
        "imsOrgId": row["org_id"],
        "sandbox": sandbox_view(row["org_id"], row["sandbox"]),
        "isSystem": False,
        "description": spec.get("description") or "",
        "schema": {"name": PROFILE_SCHEMA},
        "type": EXTERNAL_TYPE,
        "originName": spec["originName"],
        "lifecycleState": PUBLISHED,
        "createdBy": row["created_by"],
        "datasetId": row["dataset_id"],
        "labels": spec.get("labels") or [],
        "ttlInDays": spec.get("ttlInDays", TTL_DEFAULT),
        "dependents": [],
        "dependencies": readers,
        "creationTime": row["created_at"] * 1000,
        "updateEpoch": row["updated_at"],
        "updateTime": row["updated_at"] * 1000,
        "createEpoch": row["created_at"],
    }


# -- query parameters ----------------------------------------------------------------------------


def parse_sort(sort: str) -> tuple[str, str]:
    """``attributeName[:asc|:desc]`` (ascending by default)."""
    field, _, direction = sort.partition(":")
    direction = direction or "asc"
    if field not in SORTABLE or direction not in ("asc", "desc"):
        raise BadRequest(f"sort: must be one of {', '.join(SORTABLE)} with :asc or :desc, got {sort!r}")
    return field, direction


def parse_property(text: str) -> tuple[str, str]:
    """``attributeName==value``."""
    field, sep, value = text.partition("==")
    if not sep or not field:
        raise BadRequest(f"property: must be written attributeName==value (as in audienceId==my-id), got {text!r}")
    if field not in PROPERTIES:
        raise BadRequest(f"property: audiences cannot be filtered by {field!r}; use one of {', '.join(PROPERTIES)}")
    return field, value


def _matches(
    view: dict[str, Any],
    wanted: list[tuple[str, str]],
    name: str | None,
    description: str | None,
    entity_type: str | None,
) -> bool:
    if any(view.get(field) is None or str(view[field]) != value for field, value in wanted):
        return False
    if name is not None and name.casefold() not in str(view["name"]).casefold():
        return False
    if description is not None and description.casefold() not in str(view.get("description") or "").casefold():
        return False
    return entity_type is None or entity_type == view["schema"]["name"]
