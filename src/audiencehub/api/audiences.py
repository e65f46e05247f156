"""The Segmentation Service's audiences (prefix ``/data/core/ups/audiences``): the Audience Portal's list of segment
definitions and external audiences, with their sizes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from audiencehub.api.deps import Caller, Services
from audiencehub.api.routing import route
from audiencehub.services.audience_portal import DEFAULT_LIMIT

router = APIRouter(prefix="/data/core/ups/audiences", tags=["Audiences"])


@route(router, "GET", "", operation_id="listAudiences")
def list_audiences(
    caller: Caller,
    services: Services,
    start: int = 0,
    limit: int = DEFAULT_LIMIT,
    sort: str | None = None,
    property: Annotated[list[str] | None, Query()] = None,
    name: str | None = None,
    description: str | None = None,
    entityType: str | None = None,
) -> dict[str, Any]:
    return services.audience_portal.list(
        caller.scope,
        start=start,
        limit=limit,
        sort=sort,
        properties=property or [],
        name=name,
        description=description,
        entity_type=entityType,
    )


@route(router, "GET", "/{audience_id}", operation_id="getAudience")
def get_audience(audience_id: str, caller: Caller, services: Services) -> dict[str, Any]:
    return services.audience_portal.get(caller.scope, audience_id)
