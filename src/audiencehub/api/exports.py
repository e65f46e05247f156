"""The Segmentation Service's export jobs (prefix ``/data/core/ups/export/jobs``)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Caller, Services
from audiencehub.api.routing import route
from audiencehub.errors import BadRequest
from audiencehub.services.export_shapes import keep_repeats
from audiencehub.services.exports import DEFAULT_LIMIT

router = APIRouter(prefix="/data/core/ups/export/jobs", tags=["Export jobs"])

_SEGMENT = {
    "type": "object",
    "properties": {
        "segmentId": {"type": "string"},
        "segmentNs": {"type": "string"},
        "status": {"type": "array", "items": {"type": "string", "enum": ["realized", "existing", "exited"]}},
    },
}
_TIME = {"type": "string", "format": "date-time"}
CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["destination", "schema"],
                    "properties": {
                        "fields": {"type": "string", "description": "Comma-separated field paths."},
                        "mergePolicy": {
                            "type": "object",
                            "properties": {"id": {"type": "string"}, "version": {"type": "number"}},
                        },
                        "filter": {
                            "type": "object",
                            "properties": {
                                "segments": {"type": "array", "items": _SEGMENT},
                                "segmentQualificationTime": {
                                    "type": "object",
                                    "properties": {"startTime": _TIME, "endTime": _TIME},
                                },
                                "fromIngestTimestamp": _TIME,
                                "emptyProfiles": {"type": "boolean"},
                            },
                        },
                        "destination": {
                            "type": "object",
                            "required": ["datasetId"],
                            "properties": {"datasetId": {"type": "string"}, "segmentPerBatch": {"type": "boolean"}},
                        },
                        "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
                    },
                }
            }
        },
    }
}


async def _body(request: Request) -> Any:
    """The JSON body; an object that repeats keys keeps every pair (seed 002's ``filter.segments``)."""
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("body: a JSON object is required")
    try:
        return json.loads(raw, object_pairs_hook=keep_repeats)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body: not valid JSON (not UTF-8 at byte {exc.start})") from exc
    except ValueError as exc:
        raise BadRequest(f"body: not valid JSON ({exc})") from exc


@route(router, "GET", "", operation_id="listExportJobs")
def list_jobs(
    caller: Caller,
    services: Services,
    limit: int = DEFAULT_LIMIT,
    offset: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    return services.exports.list_jobs(caller.scope, limit=limit, offset=offset, status=status)


@route(router, "POST", "", operation_id="createExportJob", openapi_extra=CREATE_BODY)
async def create(request: Request, caller: Caller, services: Services) -> JSONResponse:
    data = await _body(request)
    request_id = request.headers.get("x-request-id")
    body = await run_in_threadpool(services.exports.create, caller, data, request_id=request_id)
    # NOTE: AEP answers 200 (not 201) with the job, and its address in X-Location.
    return JSONResponse(body, headers={"X-Location": f"{router.prefix}/{body['id']}"})


@route(router, "GET", "/{job_id}", operation_id="retrieveExportJob")
def get(job_id: str, caller: Caller, services: Services) -> dict[str, Any]:
    return services.exports.get(caller.scope, job_id)


@route(router, "DELETE", "/{job_id}", operation_id="cancelExportJob")
def cancel(job_id: str, caller: Caller, services: Services) -> dict[str, Any]:
    return services.exports.cancel(caller.scope, job_id)
