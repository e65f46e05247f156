"""The Profile Access API subset (``/data/core/ups/access/entities``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from audiencehub.api.deps import Caller, Services
from audiencehub.api.routing import route

router = APIRouter(prefix="/data/core/ups/access", tags=["Profile access"])


@route(router, "GET", "/entities", operation_id="retrieveEntity")
def entity(
    caller: Caller,
    services: Services,
    schema_name: Annotated[str, Query(alias="schema.name")] = "_xdm.context.profile",
    entityId: str | None = None,
    entityIdNS: str | None = None,
    fields: str | None = None,
    mergePolicyId: str | None = None,
) -> object:
    return services.profile_access.entity(
        caller.scope,
        schema_name=schema_name,
        entity_id=entityId,
        entity_ns=entityIdNS,
        fields=fields,
        merge_policy_id=mergePolicyId,
    )
