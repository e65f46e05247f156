"""The Schema Registry subset (prefix ``/data/foundation/schemaregistry``): stats, classes, field groups,
schemas, descriptors and unions, in the ``global`` (Adobe's) and ``tenant`` (the sandbox's own) containers.

Resource ids in paths are a ``meta:altId`` or a URL-encoded ``$id`` (``{ref:path}``: the decoded ``$id``
holds slashes). GETs need AEP's ``Accept`` header, which picks the form of the answer.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Caller, Services, read_json
from audiencehub.api.routing import route
from audiencehub.domain.xdm_registry import CLASSES, MIXINS, SCHEMAS, TENANT, UNIONS, DescriptorStyle, Form
from audiencehub.errors import BadRequest

router = APIRouter(prefix="/data/foundation/schemaregistry", tags=["Schema Registry"])

ACCEPT = re.compile(r"application/vnd\.adobe\.(?P<form>[a-z0-9-]+)\+json(?P<params>(\s*;[^,]*)?)", re.IGNORECASE)
LOOKUP_EXAMPLE = "application/vnd.adobe.xed+json; version=1"
LISTING_EXAMPLE = "application/vnd.adobe.xed-id+json"
DESCRIPTOR_STYLES = {"": DescriptorStyle.FULL, "-id": DescriptorStyle.ID, "-link": DescriptorStyle.LINK}


def _accept(accept: str | None) -> tuple[str, dict[str, str]] | None:
    match = ACCEPT.search(accept or "")
    if match is None:
        return None
    params = {}
    for part in match["params"].split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            params[key.strip().lower()] = value.strip().strip('"')
    return match["form"].lower(), params


def _invalid(accept: str | None, example: str, why: str = "") -> BadRequest:
    return BadRequest(
        f"Accept: the supplied Accept header is not valid: {accept or '(none)'} - a valid Accept value looks like "
        f"{example}{why}"
    )


def lookup_form(accept: str | None) -> Form:
    """The form a lookup asks for: ``application/vnd.adobe.{xed|xed-full|...}+json; version=1``."""
    parsed = _accept(accept)
    forms = {f.value: f for f in Form}
    if parsed is None or parsed[0] not in forms:
        raise _invalid(accept, LOOKUP_EXAMPLE, f" (forms: {', '.join(forms)})")
    version = parsed[1].get("version")
    if version is None:
        raise _invalid(accept, LOOKUP_EXAMPLE, " (version should be specified)")
    if version.split(".")[0] != "1":
        raise _invalid(accept, LOOKUP_EXAMPLE, f" (version {version!r} does not exist; resources are at version 1)")
    return forms[parsed[0]]


def listing_full(accept: str | None) -> bool:
    """Whether a listing asks for whole documents (``xed+json``) rather than summaries (``xed-id+json``)."""
    parsed = _accept(accept)
    if parsed is None or parsed[0] not in ("xed", "xed-id") or "version" in parsed[1]:
        raise _invalid(accept, LISTING_EXAMPLE, " or application/vnd.adobe.xed+json (no version for lists)")
    return parsed[0] == "xed"


def descriptor_listing(accept: str | None) -> tuple[DescriptorStyle, bool]:
    parsed = _accept(accept)
    form = parsed[0] if parsed else ""
    paged = form.startswith("xdm-v2")
    style = DESCRIPTOR_STYLES.get(form.removeprefix("xdm-v2" if paged else "xdm"))
    if parsed is None or not form.startswith("xdm") or style is None:
        raise _invalid(accept, "application/vnd.adobe.xdm-id+json", " (or xdm-link, xdm, and their -v2 paged forms)")
    return style, paged


def _ref(ref: str) -> str:
    return ref.rstrip("/")


async def _body(request: Request, expected: str = "a JSON object") -> Any:
    return await read_json(request, expected)


# -- stats -------------------------------------------------------------------------------------------


@route(router, "GET", "/stats", operation_id="retrieveStats")
def stats(caller: Caller, services: Services) -> dict[str, Any]:
    return services.schemas.stats(caller)


# -- classes, field groups, schemas: lookups and listings -----------------------------------------------


def _lister(kind: str, operation_id: str, path: str) -> None:
    def listing(
        container: str,
        caller: Caller,
        services: Services,
        accept: str | None = Header(default=None),
        orderby: str | None = None,
        limit: int | None = None,
        start: str | None = None,
        property: str | None = None,
    ) -> dict[str, Any]:
        full = listing_full(accept)
        return services.schemas.list_resources(
            caller.scope, container, kind, full=full, orderby=orderby, limit=limit, start=start, prop=property
        )

    route(router, "GET", "/{container}/" + path, operation_id=operation_id)(listing)


def _getter(kind: str, operation_id: str, path: str, *, include: bool = True) -> None:
    def lookup(
        container: str, ref: str, caller: Caller, services: Services, accept: str | None = Header(default=None)
    ) -> dict[str, Any]:
        form = lookup_form(accept)
        return services.schemas.get_resource(caller.scope, container, kind, _ref(ref), form)

    route(router, "GET", "/{container}/" + path + "/{ref:path}", operation_id=operation_id, include_in_schema=include)(
        lookup
    )


_lister(CLASSES, "listClasses", "classes")
_getter(CLASSES, "retrieveClass", "classes")
for _path, _list_op, _get_op in (
    ("fieldgroups", "listFieldGroups", "retrieveFieldGroup"),
    ("mixins", "listMixins", "lookupMixin"),
):
    _lister(MIXINS, _list_op, _path)
    _getter(MIXINS, _get_op, _path)
_lister(SCHEMAS, "listSchemas", "schemas")
_getter(SCHEMAS, "retrieveSchema", "schemas")


@route(router, "GET", "/tenant/unions", operation_id="listUnionSchemas")
def list_unions(caller: Caller, services: Services, accept: str | None = Header(default=None)) -> dict[str, Any]:
    full = listing_full(accept)
    return services.schemas.list_resources(caller.scope, TENANT, UNIONS, full=full)


@route(router, "GET", "/tenant/unions/{ref:path}", operation_id="retrieveUnionSchema")
def get_union(
    ref: str, caller: Caller, services: Services, accept: str | None = Header(default=None)
) -> dict[str, Any]:
    form = lookup_form(accept)
    return services.schemas.get_resource(caller.scope, TENANT, UNIONS, _ref(ref), form)


# -- field groups: writes ---------------------------------------------------------------------------------


def _field_group_writes(path: str, create_op: str, put_op: str, patch_op: str, delete_op: str) -> None:
    async def create(request: Request, caller: Caller, services: Services) -> JSONResponse:
        body = await _body(request)
        created = await run_in_threadpool(services.schemas.create_field_group, caller, body)
        return JSONResponse(created, status_code=201)

    async def replace(ref: str, request: Request, caller: Caller, services: Services) -> dict[str, Any]:
        body = await _body(request)
        return await run_in_threadpool(services.schemas.replace_field_group, caller, _ref(ref), body)

    async def patch(ref: str, request: Request, caller: Caller, services: Services) -> dict[str, Any]:
        ops = await _body(request, "a JSON array of patch operations")
        return await run_in_threadpool(services.schemas.patch_field_group, caller, _ref(ref), ops)

    def delete(ref: str, caller: Caller, services: Services) -> Response:
        services.schemas.delete_field_group(caller.scope, _ref(ref))
        return Response(status_code=204)

    base = "/tenant/" + path
    route(router, "POST", base, operation_id=create_op, status_code=201)(create)
    route(router, "PUT", base + "/{ref:path}", operation_id=put_op)(replace)
    route(router, "PATCH", base + "/{ref:path}", operation_id=patch_op)(patch)
    route(router, "DELETE", base + "/{ref:path}", operation_id=delete_op, status_code=204)(delete)


_field_group_writes("fieldgroups", "createFieldGroup", "updateFieldGroup", "patchFieldGroup", "removeFieldGroup")
_field_group_writes("mixins", "createMixin", "replaceMixin", "updateMixin", "removeMixin")


# -- schemas: writes --------------------------------------------------------------------------------------


@route(router, "POST", "/tenant/schemas", operation_id="createSchema", status_code=201)
async def create_schema(request: Request, caller: Caller, services: Services) -> JSONResponse:
    body = await _body(request)
    created = await run_in_threadpool(services.schemas.create_schema, caller, body)
    return JSONResponse(created, status_code=201)


@route(router, "PUT", "/tenant/schemas/{ref:path}", operation_id="updateSchema")
async def replace_schema(ref: str, request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    body = await _body(request)
    return await run_in_threadpool(services.schemas.replace_schema, caller, _ref(ref), body)


@route(router, "PATCH", "/tenant/schemas/{ref:path}", operation_id="patchSchema")
async def patch_schema(ref: str, request: Request, caller: Caller, services: Services) -> dict[str, Any]:
    ops = await _body(request, "a JSON array of patch operations")
    return await run_in_threadpool(services.schemas.patch_schema, caller, _ref(ref), ops)


@route(router, "DELETE", "/tenant/schemas/{ref:path}", operation_id="deleteSchema", status_code=204)
def delete_schema(ref: str, caller: Caller, services: Services) -> Response:
    services.schemas.delete_schema(caller.scope, _ref(ref))
    return Response(status_code=204)


# -- descriptors ------------------------------------------------------------------------------------------


@route(router, "GET", "/{container}/descriptors", operation_id="listDescriptors")
def list_descriptors(
    container: str,
    caller: Caller,
    services: Services,
    accept: str | None = Header(default=None),
    property: str | None = None,
) -> dict[str, Any]:
    style, paged = descriptor_listing(accept)
    return services.schemas.descriptors.list_descriptors(caller.scope, container, style, paged=paged, prop=property)


@route(router, "GET", "/{container}/descriptors/{descriptor_id}", operation_id="retrieveDescriptor")
def get_descriptor(
    container: str, descriptor_id: str, caller: Caller, services: Services, accept: str | None = Header(default=None)
) -> dict[str, Any]:
    parsed = _accept(accept)
    if parsed is None or parsed[0] != "xdm":
        raise _invalid(accept, "application/vnd.adobe.xdm+json")
    return services.schemas.descriptors.get_descriptor(caller.scope, descriptor_id, container)


@route(router, "POST", "/tenant/descriptors", operation_id="createDescriptor", status_code=201)
async def create_descriptor(request: Request, caller: Caller, services: Services) -> JSONResponse:
    body = await _body(request)
    created = await run_in_threadpool(services.schemas.descriptors.create_descriptor, caller, body)
    return JSONResponse(created, status_code=201)


@route(router, "PUT", "/tenant/descriptors/{descriptor_id}", operation_id="updateDescriptor")
async def replace_descriptor(
    descriptor_id: str, request: Request, caller: Caller, services: Services
) -> dict[str, Any]:
    body = await _body(request)
    return await run_in_threadpool(services.schemas.descriptors.replace_descriptor, caller, descriptor_id, body)


@route(router, "DELETE", "/tenant/descriptors/{descriptor_id}", operation_id="deleteDescriptor", status_code=204)
def delete_descriptor(descriptor_id: str, caller: Caller, services: Services) -> Response:
    services.schemas.descriptors.delete_descriptor(caller.scope, descriptor_id)
    return Response(status_code=204)
