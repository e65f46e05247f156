"""The Query Service API subset (prefix ``/data/foundation/query``): connection parameters and queries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Caller, Services, read_json
from audiencehub.api.routing import route
from audiencehub.errors import BadRequest
from audiencehub.services.query_runs import DEFAULT_LIMIT

router = APIRouter(prefix="/data/foundation/query", tags=["Query Service"])
Q = "/queries"
DEFAULT_PG_PORT = 5433
WILDCARDS = ("", "0.0.0.0", "::")

CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["sql"],
                    "properties": {
                        "dbName": {"type": "string"},
                        "sql": {"type": "string"},
                        "queryParameters": {"type": "object"},
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "insertIntoParameters": {"type": "object"},
                        "ctasParameters": {"type": "object"},
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
                    "type": "object",
                    "required": ["op"],
                    "properties": {"op": {"type": "string", "enum": ["cancel", "soft_delete"]}},
                }
            }
        },
    }
}


@route(router, "GET", "/connection_parameters", operation_id="listConnectionParameters")
def connection_parameters(request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    settings = services.settings
    # NOTE: the PostgreSQL front end listens on AUDIENCEHUB_PG_PORT; a client reaches it at the host it reached us by
    # unless AUDIENCEHUB_PG_HOST names one.
    host = getattr(settings, "pg_host", None)
    if host in WILDCARDS or host is None:
        host = request.url.hostname or settings.host
    return {
        "version": 1,
        "host": host,
        "port": int(getattr(settings, "pg_port", DEFAULT_PG_PORT) or DEFAULT_PG_PORT),
        "username": caller.org_id,
        "token": request.headers["authorization"].strip().partition(" ")[2].strip(),
        "dbName": f"{caller.sandbox}:all",
    }


@route(router, "POST", Q, operation_id="createQuery", openapi_extra=CREATE_BODY)
async def create(request: Request, caller: Caller, services: Services) -> JSONResponse:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest(f"body: must be a JSON object, got {type(body).__name__}")
    answer = await run_in_threadpool(services.query_runs.create, caller, body, str(request.base_url))
    return JSONResponse(answer, status_code=202)


@route(router, "GET", Q, operation_id="listQueries")
def list_queries(
    request: Request,
    caller: Caller,
    services: Services,
    orderby: str | None = None,
    limit: int = DEFAULT_LIMIT,
    start: str | None = None,
    property: str | None = None,
    excludeSoftDeleted: bool = True,
) -> dict[str, Any]:
    return services.query_runs.list_queries(
        caller.scope,
        base_url=str(request.base_url),
        orderby=orderby,
        limit=limit,
        start=start,
        prop=property,
        exclude_soft_deleted=excludeSoftDeleted,
    )


@route(router, "GET", Q + "/{queryid}", operation_id="retrieveQuery")
def get(queryid: str, request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    return services.query_runs.get(caller.scope, queryid, str(request.base_url))


@route(router, "PATCH", Q + "/{queryid}", operation_id="cancelQuery", openapi_extra=PATCH_BODY)
async def patch(queryid: str, request: Request, caller: Caller, services: Services) -> JSONResponse:
    body = await read_json(request)
    answer = await run_in_threadpool(services.query_runs.patch, caller.scope, queryid, body)
    return JSONResponse(answer, status_code=202)


@route(router, "GET", Q + "/{queryid}/results", operation_id="downloadQueryResults")
def results(queryid: str, caller: Caller, services: Services, format: str = "csv") -> FileResponse:
    """audiencehub's addition: a successful query's rows as CSV (default), JSON (an array of objects) or Parquet."""
    path, media = services.query_runs.results(caller.scope, queryid, format)
    return FileResponse(path, media_type=media, filename=f"{queryid}.{format}")
