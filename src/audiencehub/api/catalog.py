"""The Catalog Service subset (prefix ``/data/foundation/catalog``): datasets and batches."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Caller, Services, read_json
from audiencehub.api.routing import route
from audiencehub.errors import BadRequest
from audiencehub.services.catalog import DEFAULT_LIMIT, json_patch_to_fields

router = APIRouter(prefix="/data/foundation/catalog", tags=["Catalog"])
D = "/dataSets"


def _ref(dataset_id: str) -> list[str]:
    return [f"@/dataSets/{dataset_id}"]


@route(router, "POST", D, operation_id="createDataset")
async def create(request: Request, caller: Caller, services: Services, requestDataSource: bool = False) -> JSONResponse:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest(f"body: must be a JSON object, got {type(body).__name__}")
    dataset_id = await run_in_threadpool(services.catalog.create_dataset, caller, body)
    return JSONResponse(_ref(dataset_id), status_code=201, headers={"Location": f"{router.prefix}{D}/{dataset_id}"})


@route(router, "GET", D, operation_id="listDatasets")
def list_datasets(
    caller: Caller,
    services: Services,
    limit: int = DEFAULT_LIMIT,
    start: int = 0,
    properties: str | None = None,
    name: str | None = None,
    orderBy: str | None = None,
) -> object:
    return services.catalog.list_datasets(
        caller.scope, limit=limit, start=start, properties=properties, name=name, order_by=orderBy
    )


@route(router, "GET", D + "/{dataset_id}", operation_id="retrieveDataset")
def get_dataset(dataset_id: str, caller: Caller, services: Services, properties: str | None = None) -> object:
    return services.catalog.dataset(caller.scope, dataset_id, properties)


@route(router, "PATCH", D + "/{dataset_id}", operation_id="patchDataset")
async def patch(dataset_id: str, request: Request, caller: Caller, services: Services) -> object:
    body = await read_json(request)
    if isinstance(body, list):  # JSON Patch, as AEP's guide enables Profile on a dataset
        body = json_patch_to_fields(body)
    if not isinstance(body, dict):
        raise BadRequest(f"body: must be a JSON object or a JSON Patch array, got {type(body).__name__}")
    return _ref(await run_in_threadpool(services.catalog.patch_dataset, caller, dataset_id, body))


@route(router, "DELETE", D + "/{dataset_id}", operation_id="deleteDataset")
def delete(dataset_id: str, caller: Caller, services: Services) -> object:
    return _ref(services.catalog.delete_dataset(caller.scope, dataset_id))


@route(router, "GET", "/batches", operation_id="listBatches")
def list_batches(
    caller: Caller,
    services: Services,
    dataSet: str | None = None,
    status: str | None = None,
    limit: int = DEFAULT_LIMIT,
    start: int = 0,
    orderBy: str | None = None,
    createdAfter: int | None = None,
    createdBefore: int | None = None,
) -> object:
    return services.catalog.list_batches(
        caller.scope,
        dataset_id=dataSet,
        status=status,
        limit=limit,
        start=start,
        order_by=orderBy,
        created_after=createdAfter,
        created_before=createdBefore,
    )


@route(router, "GET", "/batches/{batch_id}", operation_id="retrieveBatch")
def get_batch(batch_id: str, caller: Caller, services: Services) -> object:
    return services.catalog.batch(caller.scope, batch_id)
