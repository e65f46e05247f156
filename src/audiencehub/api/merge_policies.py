"""The Profile API's merge policy configuration (prefix ``/data/core/ups/config/mergePolicies``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Caller, Services, read_json
from audiencehub.api.routing import route
from audiencehub.domain.merge_policies import ATTRIBUTE_MERGES, IDENTITY_GRAPHS, SCHEMAS
from audiencehub.services.merge_policies import DEFAULT_LIMIT

router = APIRouter(prefix="/data/core/ups/config/mergePolicies", tags=["Merge policies"])
ONE = "/{merge_policy_id}"

_TYPED = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
POLICY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "schema", "identityGraph", "attributeMerge"],
    "properties": {
        "name": {"type": "string"},
        "schema": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "enum": list(SCHEMAS)}},
        },
        "identityGraph": {**_TYPED, "properties": {"type": {"type": "string", "enum": list(IDENTITY_GRAPHS)}}},
        "attributeMerge": {
            **_TYPED,
            "properties": {
                "type": {"type": "string", "enum": list(ATTRIBUTE_MERGES)},
                "order": {"type": "array", "items": {"type": "string"}},
            },
        },
        "default": {"type": "boolean"},
        "isActiveOnEdge": {"type": "boolean"},
    },
}
POLICY_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": POLICY_SCHEMA}}}}
PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["op", "path", "value"],
                        "properties": {"op": {"type": "string"}, "path": {"type": "string"}, "value": {}},
                    },
                }
            }
        },
    }
}
BULK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["ids"],
                    "properties": {
                        "ids": {
                            "type": "array",
                            "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
                        }
                    },
                }
            }
        },
    }
}


@route(router, "GET", "", operation_id="getMany")
def list_policies(
    caller: Caller,
    services: Services,
    start: str | None = None,
    limit: int = DEFAULT_LIMIT,
    orderby: str | None = None,
    order_by: Annotated[str | None, Query(alias="orderBy")] = None,
    schema_name: Annotated[str | None, Query(alias="schema.name")] = None,
    default: bool | None = None,
    is_active_on_edge: Annotated[bool | None, Query(alias="isActiveOnEdge")] = None,
    identity_graph: Annotated[str | None, Query(alias="identityGraph.type")] = None,
    attribute_merge: Annotated[str | None, Query(alias="attributeMerge.type")] = None,
) -> dict[str, Any]:
    # NOTE: AEP's guide spells the parameter orderBy, its OpenAPI spec orderby: both are read.
    return services.merge_policies.list(
        caller.scope,
        start=start,
        limit=limit,
        orderby=order_by if order_by is not None else orderby,
        schema=schema_name,
        default=default,
        active_on_edge=is_active_on_edge,
        identity_graph=identity_graph,
        attribute_merge=attribute_merge,
    )


@route(router, "POST", "", operation_id="createMergePolicy", openapi_extra=POLICY_BODY)
async def create(request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    data = await read_json(request)
    body: dict[str, Any] = await run_in_threadpool(services.merge_policies.create, caller.scope, data)
    return body


@route(router, "POST", "/bulk-get", operation_id="bulkGetMergePolicies", openapi_extra=BULK_BODY)
async def bulk_get(request: Request, caller: Caller, services: Services) -> JSONResponse:
    data = await read_json(request)
    body = await run_in_threadpool(services.merge_policies.bulk_get, caller.scope, data)
    return JSONResponse(body, status_code=207)


@route(router, "GET", ONE, operation_id="retrieveMergePolicy")
def get(merge_policy_id: str, caller: Caller, services: Services) -> dict[str, Any]:
    return services.merge_policies.get(caller.scope, merge_policy_id)


@route(router, "PUT", ONE, operation_id="updateMergePolicy", openapi_extra=POLICY_BODY)
async def replace(merge_policy_id: str, request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    data = await read_json(request)
    body: dict[str, Any] = await run_in_threadpool(services.merge_policies.replace, caller.scope, merge_policy_id, data)
    return body


@route(router, "PATCH", ONE, operation_id="patchMergePolicy", openapi_extra=PATCH_BODY)
async def patch(merge_policy_id: str, request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    ops = await read_json(request, "a patch operation or a JSON array of them")
    body: dict[str, Any] = await run_in_threadpool(services.merge_policies.patch, caller.scope, merge_policy_id, ops)
    return body


@route(router, "DELETE", ONE, operation_id="deleteMergePolicy")
def delete(merge_policy_id: str, caller: Caller, services: Services) -> Response:
    services.merge_policies.delete(caller.scope, merge_policy_id)
    return Response(status_code=200)  # AEP answers 200 with an empty body
