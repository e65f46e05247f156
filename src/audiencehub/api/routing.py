"""Routes that answer with and without a trailing slash (AEP's docs use both; redirects break curl)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

Endpoint = Callable[..., Any]


def route(router: APIRouter, method: str, path: str, **kwargs: Any) -> Callable[[Endpoint], Endpoint]:
    def register(endpoint: Endpoint) -> Endpoint:
        # Under a prefix, "" is the prefix itself (``/landingzone``), and "/" its slashed twin.
        path_main = path.rstrip("/") or ("" if router.prefix else "/")
        router.add_api_route(path_main, endpoint, methods=[method], **kwargs)
        if path_main != "/":
            other = dict(kwargs, include_in_schema=False)
            other.pop("operation_id", None)
            router.add_api_route(path_main + "/", endpoint, methods=[method], **other)
        return endpoint

    return register
