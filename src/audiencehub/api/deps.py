"""Request dependencies: the caller (from the four AEP headers) and JSON bodies."""

from __future__ import annotations

import json
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from audiencehub.api.errors import describe_validation
from audiencehub.errors import BadRequest, MissingHeader
from audiencehub.services.auth import Principal
from audiencehub.wiring import Container

REQUIRED_HEADERS = ("authorization", "x-api-key", "x-gw-ims-org-id", "x-sandbox-name")
M = TypeVar("M", bound=BaseModel)
FLUSH_BYTES = 1 << 20


def container(request: Request) -> Container:
    found: Container = request.app.state.container
    return found


def principal(request: Request) -> Principal:
    headers = request.headers
    missing = [h for h in REQUIRED_HEADERS if not headers.get(h, "").strip()]
    if missing:
        raise MissingHeader(f"missing header(s): {', '.join(missing)}")
    scheme, _, token = headers["authorization"].strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingHeader("the Authorization header must be 'Bearer {ACCESS_TOKEN}'")
    return container(request).auth.authenticate(
        token=token.strip(),
        api_key=headers["x-api-key"].strip(),
        org_id=headers["x-gw-ims-org-id"].strip(),
        sandbox=headers["x-sandbox-name"].strip(),
    )


Caller = Annotated[Principal, Depends(principal)]
Services = Annotated[Container, Depends(container)]


async def read_json(request: Request, expected: str = "a JSON object") -> Any:
    """The JSON body, whatever the Content-Type: seed 003's curl calls send none.

    Messages never quote the body (it may carry credentials): the parser's reason and position only.
    """
    raw = await request.body()
    if not raw.strip():
        raise BadRequest(f"body: {expected} is required")
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body: not valid JSON (not UTF-8 at byte {exc.start})") from exc
    except ValueError as exc:
        raise BadRequest(f"body: not valid JSON ({exc})") from exc


async def parse_body(request: Request, model: type[M]) -> M:
    """The JSON object body as ``model``."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise BadRequest(f"body: must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(describe_validation(list(exc.errors()))) from exc


def json_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for endpoints that read their body with :func:`parse_body`."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}
            },
        }
    }


class Sink(Protocol):
    def write(self, chunk: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


async def stream_upload(request: Request, sink: Sink) -> None:
    """Streams the request body into ``sink`` a MiB at a time (in a worker thread), then commits it; on any
    failure, or a client that went away before the last byte, the sink is aborted and nothing is kept."""
    buffer = bytearray()
    try:
        async for chunk in request.stream():
            buffer += chunk
            if len(buffer) >= FLUSH_BYTES:
                await run_in_threadpool(sink.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await run_in_threadpool(sink.write, bytes(buffer))
        await run_in_threadpool(sink.commit)
    except ClientDisconnect:
        sink.abort()
        raise BadRequest("the upload was interrupted before the last byte; nothing was stored") from None
    except BaseException:
        sink.abort()
        raise
