"""The Segmentation Service's segment definitions and segment jobs (prefix ``/data/core/ups``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Caller, Services, read_json
from audiencehub.api.routing import route

router = APIRouter(prefix="/data/core/ups/segment/definitions", tags=["Segment definitions"])
jobs = APIRouter(prefix="/data/core/ups/segment/jobs", tags=["Segment jobs"])

_EXPRESSION = {
    "type": "object",
    "required": ["value"],
    "properties": {"type": {"type": "string"}, "format": {"type": "string"}, "value": {"type": "string"}},
}
_ENABLED = {"type": "object", "properties": {"enabled": {"type": "boolean"}}}
DEFINITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "expression", "schema"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "expression": _EXPRESSION,
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
        "evaluationInfo": {
            "type": "object",
            "properties": {"batch": _ENABLED, "continuous": _ENABLED, "synchronous": _ENABLED},
        },
        "ttlInDays": {"type": "integer"},
        "mergePolicyId": {"type": "string"},
        "labels": {"type": "array", "items": {"type": "string"}},
    },
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@route(router, "GET", "", operation_id="listSegmentDefinitions")
def list_definitions(
    caller: Caller,
    services: Services,
    start: int = 0,
    limit: int = 100,
    page: int | None = None,
    sort: str | None = None,
) -> dict[str, Any]:
    return services.segmentation.list_definitions(caller.scope, start=start, limit=limit, page=page, sort=sort)


@route(router, "POST", "", operation_id="createSegmentDefinition", openapi_extra=_body(DEFINITION_SCHEMA))
async def create(request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    data = await read_json(request)
    body: dict[str, Any] = await run_in_threadpool(services.segmentation.create, caller, data)
    return body


@route(
    router,
    "POST",
    "/bulk-get",
    operation_id="bulkGetSegmentDefinitions",
    openapi_extra=_body({"type": "object", "properties": {"ids": {"type": "array"}}}),
)
async def bulk_get(request: Request, caller: Caller, services: Services) -> JSONResponse:
    data = await read_json(request)
    body = await run_in_threadpool(services.segmentation.bulk_get, caller.scope, data)
    return JSONResponse(body, status_code=207)


@route(router, "GET", "/{segment_id}", operation_id="retrieveSegmentDefinitionById")
def get(segment_id: str, caller: Caller, services: Services) -> dict[str, Any]:
    return services.segmentation.get(caller.scope, segment_id)


@route(
    router,
    "PATCH",
    "/{segment_id}",
    operation_id="patchSegmentDefinition",
    openapi_extra=_body({"type": "object"}),
)
async def patch(segment_id: str, request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    data = await read_json(request)
    body: dict[str, Any] = await run_in_threadpool(services.segmentation.patch, caller.scope, segment_id, data)
    return body


@route(router, "DELETE", "/{segment_id}", operation_id="deleteSegmentDefinition")
async def delete(segment_id: str, caller: Caller, services: Services) -> Response:
    await run_in_threadpool(services.segmentation.delete, caller.scope, segment_id)
    return Response(status_code=200)


_JOB_BODY = {
    "type": "array",
    "items": {"type": "object", "required": ["segmentId"], "properties": {"segmentId": {"type": "string"}}},
}


@route(jobs, "POST", "", operation_id="createSegmentJob", openapi_extra=_body(_JOB_BODY))
async def create_job(request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    data = await read_json(request, "a JSON array of segment ids")
    body: dict[str, Any] = await run_in_threadpool(services.segment_jobs.create_job, caller.scope, data)
    return body


@route(jobs, "GET", "", operation_id="listSegmentJobs")
def list_jobs(
    caller: Caller,
    services: Services,
    start: int = 0,
    limit: int = 100,
    status: str | None = None,
    sort: str | None = None,
) -> dict[str, Any]:
    return services.segment_jobs.list_jobs(caller.scope, start=start, limit=limit, status=status, sort=sort)


@route(jobs, "GET", "/{job_id}", operation_id="retrieveSegmentJob")
def get_job(job_id: str, caller: Caller, services: Services) -> dict[str, Any]:
    return services.segment_jobs.get_job(caller.scope, job_id)


@route(jobs, "DELETE", "/{job_id}", operation_id="deleteSegmentJob")
async def cancel_job(job_id: str, caller: Caller, services: Services) -> Response:
    await run_in_threadpool(services.segment_jobs.cancel_job, caller.scope, job_id)
    return Response(status_code=204)
