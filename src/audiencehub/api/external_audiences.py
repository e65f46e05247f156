"""Seed 003's external audiences endpoint (prefix ``/data/core/ais``): parse, call a service, answer.

Handlers that read their body are ``async``; they hand the service call to the thread pool, because
services block (SQLite, the profile store's write lock) and the event loop must keep serving.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Caller, Services, json_body_schema, parse_body
from audiencehub.api.routing import route
from audiencehub.domain.audiences import AudienceCreate, AudiencePatch, RunCreate
from audiencehub.services.ingestion import ERRORS_CSV_HEADER

router = APIRouter(prefix="/data/core/ais", tags=["External audiences"])
EA = "/external-audience"
DEFAULT_LIMIT = 20


@route(router, "POST", EA, operation_id="createExternalAudience", openapi_extra=json_body_schema(AudienceCreate))
async def create(request: Request, caller: Caller, services: Services) -> JSONResponse:
    body = await parse_body(request, AudienceCreate)
    return JSONResponse(await run_in_threadpool(services.audiences.create, caller, body), status_code=202)


@route(router, "GET", EA, operation_id="listExternalAudiences")
def list_audiences(caller: Caller, services: Services, limit: int = DEFAULT_LIMIT, start: int = 0) -> dict[str, Any]:
    return services.audiences.list(caller.scope, limit=limit, start=start)


def get_operation(operation_id: str, caller: Caller, services: Services) -> dict[str, Any]:
    return services.audiences.operation(caller.scope, operation_id)


# NOTE: seed 003 spells this path both ways; both answer.
route(router, "GET", EA + "/operations/{operation_id}", operation_id="getExternalAudienceOperation")(get_operation)
route(router, "GET", "/external-audiences/operations/{operation_id}", include_in_schema=False)(get_operation)


@route(router, "GET", EA + "/{audience_id}", operation_id="getExternalAudience")
def get(audience_id: str, caller: Caller, services: Services) -> dict[str, Any]:
    return services.audiences.get(caller.scope, audience_id)


@route(
    router,
    "PATCH",
    EA + "/{audience_id}",
    operation_id="patchExternalAudience",
    openapi_extra=json_body_schema(AudiencePatch),
)
async def patch(audience_id: str, request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    body = await parse_body(request, AudiencePatch)
    return await run_in_threadpool(services.audiences.patch, caller, audience_id, body)


@route(router, "DELETE", EA + "/{audience_id}", operation_id="deleteExternalAudience", status_code=204)
def delete(audience_id: str, caller: Caller, services: Services) -> Response:
    services.audiences.delete(caller.scope, audience_id)
    return Response(status_code=204)


@route(
    router,
    "POST",
    EA + "/{audience_id}/runs",
    operation_id="startAudienceRun",
    openapi_extra=json_body_schema(RunCreate),
)
async def start_run(audience_id: str, request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    body = await parse_body(request, RunCreate)
    return await run_in_threadpool(services.audiences.start_run, caller, audience_id, body)


@route(router, "GET", EA + "/{audience_id}/runs", operation_id="listAudienceRuns")
def list_runs(
    audience_id: str, caller: Caller, services: Services, limit: int = DEFAULT_LIMIT, start: int = 0
) -> dict[str, Any]:
    return services.audiences.runs(caller.scope, audience_id, limit=limit, start=start)


@route(router, "GET", EA + "/{audience_id}/runs/{run_id}", operation_id="getAudienceRun")
def get_run(audience_id: str, run_id: str, caller: Caller, services: Services) -> dict[str, Any]:
    return services.audiences.run(caller.scope, audience_id, run_id)


@route(
    router,
    "GET",
    EA + "/{audience_id}/runs/{run_id}/errors",
    operation_id="getAudienceRunErrors",
    response_model=None,
)
def run_errors(audience_id: str, run_id: str, caller: Caller, services: Services) -> Response:
    """Extension: the run's rejected rows as CSV (file, record, line, column, value, reason)."""
    path = services.audiences.run_errors(caller.scope, audience_id, run_id)
    if path is None:
        return Response(ERRORS_CSV_HEADER, media_type="text/csv")
    return FileResponse(path, media_type="text/csv", filename=f"{run_id}-errors.csv")


@route(router, "GET", EA + "/{audience_id}/members", operation_id="listAudienceMembers")
def members(
    audience_id: str, caller: Caller, services: Services, limit: int = DEFAULT_LIMIT, start: int = 0
) -> dict[str, Any]:
    """Extension: the audience's members in the profile store, with status and payload."""
    return services.audiences.members(caller.scope, audience_id, limit=limit, start=start)
