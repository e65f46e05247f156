"""Seed 002's CJA transform as an API (an audiencehub extension): ``POST /data/core/ups/cja/transform``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Caller, Services, read_json
from audiencehub.api.routing import route
from audiencehub.services.cja import TransformRequest

router = APIRouter(prefix="/data/core/ups/cja", tags=["CJA transform (extension)"])

TRANSFORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["datasetId", "personIdField", "audienceIds"],
                    "properties": {
                        "datasetId": {"type": "string", "description": "The export job's dataset."},
                        "personIdField": {"type": "string", "example": "_demoemea.identification.core.email"},
                        "audienceIds": {"type": "array", "items": {"type": "string"}},
                        "tenant": {"type": "string", "example": "_demoemea"},
                        "statuses": {"type": "array", "items": {"type": "string"}, "default": ["realized"]},
                        "perPerson": {"type": "boolean", "default": False},
                        "ingest": {
                            "type": "object",
                            "properties": {"schemaName": {"type": "string"}, "datasetName": {"type": "string"}},
                        },
                    },
                }
            }
        },
    }
}


@route(router, "POST", "/transform", operation_id="cjaTransform", openapi_extra=TRANSFORM_BODY)
async def transform(request: Request, caller: Caller, services: Services) -> Response:
    parsed = TransformRequest.parse(await read_json(request))
    result = await run_in_threadpool(services.cja.transform, caller, parsed)
    if result.ingested is not None:
        await run_in_threadpool(services.cja.discard, result)
        return JSONResponse({"records": result.records, **result.ingested})
    return FileResponse(
        result.file,
        media_type="application/json",
        filename=result.file.name,
        headers={"X-Record-Count": str(result.records)},
        background=BackgroundTask(services.cja.discard, result),
    )
