"""Batch ingestion (``/data/foundation/import``) and failed-batch diagnostics (``/data/foundation/export``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Caller, Services, read_json, stream_upload
from audiencehub.api.routing import route
from audiencehub.errors import BadRequest

router = APIRouter(prefix="/data/foundation/import", tags=["Batch ingestion"])
diagnostics = APIRouter(prefix="/data/foundation/export", tags=["Batch ingestion"])


@route(router, "POST", "/batches", operation_id="createBatch")
async def create(request: Request, caller: Caller, services: Services) -> JSONResponse:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest(f"body: must be a JSON object, got {type(body).__name__}")
    return JSONResponse(await run_in_threadpool(services.batches.create, caller, body), status_code=201)


@router.put("/batches/{batch_id}/datasets/{dataset_id}/files/{file_path:path}", operation_id="uploadSmallFile")
async def upload(
    batch_id: str, dataset_id: str, file_path: str, request: Request, caller: Caller, services: Services
) -> Response:
    sink = await run_in_threadpool(services.batches.begin_upload, caller.scope, batch_id, dataset_id, file_path)
    await stream_upload(request, sink)
    return Response(status_code=200)


@route(router, "POST", "/batches/{batch_id}", operation_id="completeBatch")
def signal(batch_id: str, caller: Caller, services: Services, action: str = "") -> object:
    if action.upper() == "COMPLETE":
        return services.batches.complete(caller.scope, batch_id)
    if action.upper() == "ABORT":
        return services.batches.abort(caller.scope, batch_id)
    raise BadRequest(f"action: must be COMPLETE or ABORT, got {action!r}")


@route(diagnostics, "GET", "/batches/{batch_id}/failed", operation_id="listFailedBatchFiles", response_model=None)
def failed(batch_id: str, request: Request, caller: Caller, services: Services, path: str | None = None) -> object:
    if path is not None:
        found = services.batches.failed_file(caller.scope, batch_id, path)
        return FileResponse(found, filename=found.name, media_type="application/json")
    base = str(request.base_url).rstrip("/")
    files = services.batches.failed_files(caller.scope, batch_id)
    data = [
        {**f, "_links": {"self": {"href": f"{base}{diagnostics.prefix}/batches/{batch_id}/failed?path={f['name']}"}}}
        for f in files
    ]
    return {"data": data, "_page": {"limit": 100, "count": len(data)}}
