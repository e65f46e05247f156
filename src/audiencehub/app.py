"""``create_app(settings)``: the FastAPI application over one container of services."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from audiencehub import __version__
from audiencehub.api import (
    audiences,
    batch_ingestion,
    catalog,
    cja,
    connections,
    errors,
    exports,
    external_audiences,
    identity,
    ims,
    landing_zone,
    merge_policies,
    profile_access,
    query,
    schemas,
    segments,
    streaming,
)
from audiencehub.config import Settings
from audiencehub.domain.audiences import AudienceCreate, AudiencePatch, RunCreate
from audiencehub.wiring import build

log = logging.getLogger("audiencehub")
BODY_MODELS = (AudienceCreate, AudiencePatch, RunCreate)


def announce_credentials(settings: Settings, creds: Any) -> None:
    path = settings.home / "credentials.json"
    print(
        "\n  audiencehub generated development credentials (shown once; kept in "
        f"{path}, mode 0600):\n"
        f"    org id (x-gw-ims-org-id): {creds.org_id}\n"
        f"    sandbox (x-sandbox-name): {creds.sandbox}\n"
        f"    client id (x-api-key):    {creds.client_id}\n"
        f"    client secret:            {creds.client_secret}\n",
        flush=True,
    )


def create_app(settings: Settings) -> FastAPI:
    container = build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        creds = container.bootstrap()
        if creds is not None:
            announce_credentials(settings, creds)
        container.audiences.resume_deletions()
        container.runner.start()
        if container.home_lock is not None:
            # No upload is in flight before the server listens: any partial file is a dead process's.
            container.landing.sweep_partials()
        else:
            # An API replica: only the uploads of peers known to be dead, at start and periodically.
            container.landing.sweep_partials(container.runner.live())
            container.landing.start_sweeper(container.runner.live, settings.job_stale_after_seconds / 2)
        # Adopts the streaming logs a dead process left (open ones sealed); its flusher thread commits them.
        container.streaming.start()
        if container.schedule is not None:
            container.schedule.start()
        log.info("audiencehub %s serving data from %s", __version__, settings.home.resolve())
        try:
            if container.pgwire is not None:
                await container.pgwire.start()  # the Query Service's PostgreSQL protocol, on this event loop
            yield
        finally:
            if container.pgwire is not None:
                await container.pgwire.stop()
            container.close()

    app = FastAPI(
        title="audiencehub",
        version=__version__,
        description="Self-hostable audience platform with AEP-compatible APIs.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.container = container
    errors.install(app)
    app.include_router(ims.router)
    app.include_router(landing_zone.router)
    app.include_router(external_audiences.router)
    app.include_router(connections.router)
    app.include_router(catalog.router)
    app.include_router(batch_ingestion.router)
    app.include_router(batch_ingestion.diagnostics)
    app.include_router(profile_access.router)
    app.include_router(merge_policies.router)
    app.include_router(identity.router)
    app.include_router(schemas.router)
    app.include_router(streaming.router)
    app.include_router(segments.router)
    app.include_router(segments.jobs)
    app.include_router(audiences.router)
    app.include_router(exports.router)
    app.include_router(cja.router)
    app.include_router(query.router)

    @app.get("/health", tags=["Health"], operation_id="health")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in BODY_MODELS:
                full = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(full.pop("$defs", {}))
                components[model.__name__] = full
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
