"""The Flow Service subset for base connections (prefix ``/data/foundation/flowservice``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Caller, Services, read_json
from audiencehub.api.routing import route
from audiencehub.errors import BadRequest
from audiencehub.services.connections import DEFAULT_LIMIT

router = APIRouter(prefix="/data/foundation/flowservice", tags=["Base connections"])
C = "/connections"

CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["name", "auth", "connectionSpec"],
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "auth": {
                            "type": "object",
                            "required": ["specName", "params"],
                            "properties": {"specName": {"type": "string"}, "params": {"type": "object"}},
                        },
                        "connectionSpec": {
                            "type": "object",
                            "required": ["id"],
                            "properties": {"id": {"type": "string"}, "version": {"type": "string"}},
                        },
                    },
                }
            }
        },
    }
}
PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["op", "path"],
                        "properties": {"op": {"type": "string"}, "path": {"type": "string"}, "value": {}},
                    },
                }
            }
        },
    }
}


@route(router, "POST", C, operation_id="createConnection", openapi_extra=CREATE_BODY)
async def create(request: Request, caller: Caller, services: Services) -> JSONResponse:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise BadRequest(f"body: must be a JSON object, got {type(data).__name__}")
    body = await run_in_threadpool(services.connections.create, caller, data)
    location = f"{router.prefix}{C}/{body['id']}"
    return JSONResponse(body, status_code=201, headers={"Location": location, "ETag": body["etag"]})


@route(router, "GET", C, operation_id="listConnections")
def list_connections(
    request: Request,
    caller: Caller,
    services: Services,
    limit: int = DEFAULT_LIMIT,
    continuationToken: str | None = None,
    orderby: str | None = None,
) -> dict[str, Any]:
    return services.connections.list(
        caller.scope, limit=limit, token=continuationToken, orderby=orderby, base_url=str(request.base_url)
    )


@route(router, "GET", C + "/{connection_id}", operation_id="retrieveConnection")
def get(connection_id: str, request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    # An HTTP API connection's inletUrl is answered at the address this client reached the server by.
    return services.connections.get(caller.scope, connection_id, base_url=str(request.base_url))


@route(router, "PATCH", C + "/{connection_id}", operation_id="patchConnection", openapi_extra=PATCH_BODY)
async def patch(
    connection_id: str,
    request: Request,
    caller: Caller,
    services: Services,
    if_match: str | None = Header(default=None),
) -> JSONResponse:
    ops = await read_json(request, "a JSON array of patch operations")
    body = await run_in_threadpool(services.connections.patch, caller, connection_id, if_match, ops)
    return JSONResponse(body, headers={"ETag": body["etag"]})


@route(router, "DELETE", C + "/{connection_id}", operation_id="deleteConnection", status_code=204)
def delete(connection_id: str, caller: Caller, services: Services) -> Response:
    services.connections.delete(caller.scope, connection_id)
    return Response(status_code=204)


def test(connection_id: str, caller: Caller, services: Services) -> dict[str, Any]:
    return services.connections.test(caller.scope, connection_id)


# NOTE: Adobe's spec tests with GET; the extension (and tools that treat a test as an action) POST.
route(router, "GET", C + "/{connection_id}/test", operation_id="testConnection")(test)
route(router, "POST", C + "/{connection_id}/test", operation_id="testConnectionPost")(test)
