"""One shape for every error: problem+json with the AEP error code."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from audiencehub.domain.paths import shown
from audiencehub.errors import AudiencehubError, BadRequest, InternalError, NotFound

log = logging.getLogger(__name__)

ERROR_TYPE_BASE = "https://ns.adobe.com/aep/errors/"
PROBLEM_JSON = "application/problem+json"


def problem(status: int, code: str, title: str, detail: str) -> JSONResponse:
    body = {
        "type": ERROR_TYPE_BASE + code,
        "title": title,
        "status": status,
        "errorCode": code,
        "detail": detail,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def error_response(exc: AudiencehubError) -> JSONResponse:
    return problem(exc.status, exc.code, exc.title, exc.detail)


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for n, part in enumerate(parts):
        # FastAPI puts where the value came from first; later parts are field names, "path" included.
        if n == 0 and part in ("body", "query", "path", "header"):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _show(value: Any) -> str:
    return shown(value) if isinstance(value, str) else repr(value)


def _names(msg: str, value: Any) -> bool:
    """True when ``msg`` already shows ``value``, so that "(got …)" would only repeat it."""
    if isinstance(value, str):
        if repr(value) in msg or shown(value) in msg:
            return True
        # Bare, as a word of its own; short values ("a", " ") would match any message.
        return len(value.strip()) >= 3 and re.search(rf"(?<!\w){re.escape(value)}(?!\w)", msg) is not None
    return re.search(rf"(?<![\w.]){re.escape(repr(value))}(?![\w.])", msg) is not None


def describe_validation(errors: list[Any]) -> str:
    """``field.path: what is wrong (got value)`` for each error, as users need to fix their request.

    The value is left out when it is an object (the body, or a nested one: pasting it would repeat
    the request) and when the message already shows it.
    """
    lines = []
    for err in errors:
        where = _loc(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "is not valid")).removeprefix("Value error, ")
        value = err.get("input")
        if err.get("type") == "missing":
            lines.append(f"{where}: is required")
        elif err.get("type") == "extra_forbidden":
            lines.append(f"{where}: is not a field that can be sent here")
        elif "input" in err and where != "body" and not isinstance(value, dict) and not _names(msg, value):
            lines.append(f"{where}: {msg} (got {_show(value)})")
        else:
            lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def install(app: FastAPI) -> None:
    @app.exception_handler(AudiencehubError)
    async def _domain(_: Request, exc: AudiencehubError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(BadRequest(describe_validation(list(exc.errors()))))

    @app.exception_handler(ValidationError)
    async def _model(_: Request, exc: ValidationError) -> JSONResponse:
        return error_response(BadRequest(describe_validation(list(exc.errors()))))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(NotFound(f"no such endpoint: {request.method} {request.url.path}"))
        if exc.status_code == 405:
            return problem(405, "100910-405", "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here")
        return problem(exc.status_code, f"100970-{exc.status_code}", "ERROR", str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(InternalError("the server could not process the request; see its log"))
