"""Streaming ingestion: AEP's data collection endpoints (``dcs.adobedc.net``), ``/collection/...``.

An inlet id routes a message to its connection's org and sandbox; the four AEP headers are needed
only when the connection was created with ``authenticationRequired: true`` (AEP's default is false).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from audiencehub.api.deps import Services, principal
from audiencehub.api.errors import ERROR_TYPE_BASE, PROBLEM_JSON
from audiencehub.api.routing import route
from audiencehub.errors import BadRequest, PayloadTooLarge
from audiencehub.services.connections import Inlet
from audiencehub.services.streaming import InvalidRecord

router = APIRouter(tags=["Streaming ingestion"])
MAX_PAYLOAD = 1_000_000
"""AEP refuses a request over 1 MB with 413, on both endpoints."""

_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["header", "body"],
    "properties": {
        "header": {
            "type": "object",
            "required": ["schemaRef", "datasetId"],
            "properties": {
                "schemaRef": {"type": "object", "properties": {"id": {"type": "string"}, "contentType": {}}},
                "imsOrgId": {"type": "string"},
                "datasetId": {"type": "string"},
                "flowId": {"type": "string"},
                "source": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        },
        "body": {
            "type": "object",
            "required": ["xdmMeta", "xdmEntity"],
            "properties": {"xdmMeta": {"type": "object"}, "xdmEntity": {"type": "object"}},
        },
    },
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _read(request: Request) -> Any:
    """The JSON body, refused over 1 MB before it is all read (413), or in Smile (400)."""
    if request.headers.get("content-type", "").lower().startswith("application/x-jackson-smile"):
        raise BadRequest("Content-Type: Smile (application/x-jackson-smile) is not supported; send application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PAYLOAD:
        raise PayloadTooLarge(f"body: {declared} bytes; a request may carry at most {MAX_PAYLOAD} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_PAYLOAD:
            raise PayloadTooLarge(f"body: over {MAX_PAYLOAD} bytes; a request may carry at most {MAX_PAYLOAD} bytes")
    if not raw.strip():
        raise BadRequest("body: a message is required")
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body: not valid JSON (not UTF-8 at byte {exc.start})") from exc
    except ValueError as exc:
        raise BadRequest(f"body: not valid JSON ({exc})") from exc


def _inlet(request: Request, services: Services, inlet_id: str) -> Inlet:
    inlet = services.streaming.inlet(inlet_id)
    caller = principal(request) if inlet.authentication_required else None
    services.streaming.authorize(inlet, caller)
    return inlet


def _invalid(exc: InvalidRecord) -> JSONResponse:
    """audiencehub's problem+json, with AEP's ``report`` of the schema violations beside it."""
    causes = [_violation(reason) for reason in exc.reasons]
    body = {
        "type": ERROR_TYPE_BASE + exc.code,
        "title": exc.title,
        "status": exc.status,
        "errorCode": exc.code,
        "detail": exc.detail,
        "report": {
            "message": f"inletId: [{exc.inlet_id}] imsOrgId: [{exc.org_id}] Message is invalid",
            "cause": {
                "_streamingValidation": [
                    {
                        "schemaLocation": "#",
                        "pointerToViolation": "#",
                        "causingExceptions": causes,
                        "message": f"{len(causes)} schema violation{'s' if len(causes) != 1 else ''} found",
                    }
                ]
            },
        },
    }
    return JSONResponse(body, status_code=exc.status, media_type=PROBLEM_JSON)


_KEYWORDS = (
    ("is not a field of the schema", "additionalProperties"),
    ("is required", "required"),
    ("expected", "type"),
    ("is not one of", "enum"),
    ("does not match", "pattern"),
    ("is out of range", "range"),
    ("is not a date", "format"),
)


def _violation(reason: str) -> dict[str, Any]:
    """One ``path: reason`` of the batch service's validation in AEP's shape (a JSON pointer into the record)."""
    path, _, message = reason.partition(": ")
    if not message:
        path, message = "", reason
    steps = [s for s in path.replace("[", ".").replace("]", "").split(".") if s]
    keyword = next((k for needle, k in _KEYWORDS if needle in message), "xdm")
    return {
        "schemaLocation": "#" + "".join(f"/properties/{s}" for s in steps if not s.isdigit()),
        "pointerToViolation": "#" + "".join(f"/{s}" for s in steps),
        "causingExceptions": [],
        "keyword": keyword,
        "message": message,
    }


@route(router, "POST", "/collection/{inlet_id}", operation_id="sendMessage", openapi_extra=_body(_ENVELOPE))
async def send_message(
    inlet_id: str, request: Request, services: Services, syncValidation: bool = False
) -> JSONResponse:
    data = await _read(request)
    inlet = await run_in_threadpool(_inlet, request, services, inlet_id)
    try:
        answer = await run_in_threadpool(services.streaming.collect, inlet, data, sync=syncValidation)
    except InvalidRecord as exc:
        return _invalid(exc)
    return JSONResponse(answer)


@route(
    router,
    "POST",
    "/collection/batch/{inlet_id}",
    operation_id="postBatchOfStreamingMessages",
    status_code=207,
    openapi_extra=_body({"type": "object", "properties": {"messages": {"type": "array", "items": _ENVELOPE}}}),
)
async def send_messages(inlet_id: str, request: Request, services: Services) -> JSONResponse:
    data = await _read(request)
    inlet = await run_in_threadpool(_inlet, request, services, inlet_id)
    answer = await run_in_threadpool(services.streaming.collect_batch, inlet, data)
    return JSONResponse(answer, status_code=207)
