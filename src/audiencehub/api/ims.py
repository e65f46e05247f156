"""``POST /ims/token/v3``: access tokens for server-to-server clients, in Adobe IMS's shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import JSONResponse

from audiencehub.api.deps import Services
from audiencehub.services.auth import InvalidClient

router = APIRouter(tags=["IMS"])


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


@router.post("/ims/token/v3", operation_id="issueToken")
def issue_token(
    services: Services,
    grant_type: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    scope: Annotated[str, Form()] = "",
) -> JSONResponse:
    if not grant_type:
        return _oauth_error("invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        return _oauth_error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    if not client_id or not client_secret:
        return _oauth_error("invalid_request", "client_id and client_secret are required")
    try:
        token = services.auth.issue_token(client_id, client_secret, scope)
    except InvalidClient:
        return _oauth_error("invalid_client", "invalid client_id or client_secret", 401)
    return JSONResponse(
        {"access_token": token.access_token, "token_type": "bearer", "expires_in": token.expires_in},
        headers={"Cache-Control": "no-store"},
    )
