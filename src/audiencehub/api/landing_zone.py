"""The Data Landing Zone over HTTP: stream files in, list folders, download and delete files."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from audiencehub.api.deps import Caller, Services, stream_upload
from audiencehub.api.routing import route
from audiencehub.domain.paths import DLZ_CONTAINER
from audiencehub.errors import BadRequest

router = APIRouter(prefix="/data/foundation/connectors/landingzone", tags=["Landing zone"])


@route(router, "GET", "", operation_id="getLandingZone")
def container(caller: Caller, services: Services, type: str | None = None, recursive: bool = False) -> object:
    if type is not None:
        if type != "user_drop_zone":
            raise BadRequest(f"type: only user_drop_zone is supported, got {type!r}")
        return services.landing.container()
    return services.landing.describe(caller.scope, "", recursive=recursive)


@router.put("/{path:path}", operation_id="uploadFile", status_code=201)
async def upload(path: str, request: Request, caller: Caller, services: Services) -> JSONResponse:
    key, sink = services.landing.begin_upload(caller.scope, path)
    await stream_upload(request, sink)
    return JSONResponse({"containerName": DLZ_CONTAINER, "path": key, "size": sink.size}, status_code=201)


@router.get("/{path:path}", operation_id="getLandingZonePath", response_model=None)
def describe(path: str, caller: Caller, services: Services, recursive: bool = False) -> object:
    found = services.landing.describe(caller.scope, path, recursive=recursive)
    if isinstance(found, Path):
        return FileResponse(found, filename=found.name, media_type="application/octet-stream")
    return found


@router.delete("/{path:path}", operation_id="deleteLandingZonePath", status_code=204)
def delete(path: str, caller: Caller, services: Services) -> Response:
    services.landing.delete(caller.scope, path)
    return Response(status_code=204)
