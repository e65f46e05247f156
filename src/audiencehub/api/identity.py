"""The Identity Service namespace API (prefix ``/data/core/idnamespace``): list, create, read, replace."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Caller, Services, read_json
from audiencehub.api.routing import route
from audiencehub.domain.namespaces import CODE, IdType
from audiencehub.services.identity import parse_namespace_id

router = APIRouter(prefix="/data/core/idnamespace", tags=["Identity namespaces"])
N = "/identities"


def _body(required: list[str]) -> dict[str, Any]:
    id_types = [t.value for t in IdType]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": required,
                        "properties": {
                            "name": {"type": "string", "maxLength": 256},
                            "code": {"type": "string", "pattern": f"^{CODE.pattern}$"},
                            "idType": {"type": "string", "enum": id_types, "description": "in any case"},
                            "description": {"type": "string", "maxLength": 4096},
                        },
                    }
                }
            },
        }
    }


@route(router, "GET", N, operation_id="getIdNamespaces")
def list_namespaces(caller: Caller, services: Services) -> list[dict[str, Any]]:
    return [ns.public() for ns in services.namespaces.list(caller.scope)]


@route(router, "POST", N, operation_id="createNamespace", openapi_extra=_body(["name", "code", "idType"]))
async def create(request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    data = await read_json(request)
    ns = await run_in_threadpool(services.namespaces.create, caller.scope, data)
    return ns.public()


@route(router, "GET", N + "/{namespace_id}", operation_id="retrieveIdentityNamespace")
def get(namespace_id: str, caller: Caller, services: Services) -> dict[str, Any]:
    return services.namespaces.get(caller.scope, parse_namespace_id(namespace_id)).public()


# NOTE: Adobe's spec answers PUT with an array of the namespace (``type: array, items: updateNamespace``).
@route(router, "PUT", N + "/{namespace_id}", operation_id="updateIdentityNamespace", openapi_extra=_body(["name"]))
async def update(namespace_id: str, request: Request, caller: Caller, services: Services) -> list[dict[str, Any]]:
    key = parse_namespace_id(namespace_id)
    data = await read_json(request)
    ns = await run_in_threadpool(services.namespaces.update, caller.scope, key, data)
    return [ns.public()]
