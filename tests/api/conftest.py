"""Fixtures of the HTTP-level tests: an app shared by a module, one whose runs pause, and other tenants.

``client``/``headers`` (tests/conftest.py) give each test its own app. Tests that only check that a
request is refused, and that nothing changed, use the ``shared_*`` app of their module instead:
starting an app and issuing a token costs about 0.15 s, and there are many such tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.config import Settings
from tests.api.support import headers_for
from tests.conftest import create_audience, metadata_settings, seed_audience, test_settings, token_for


@pytest.fixture(scope="module")
def shared_settings(
    tmp_path_factory: pytest.TempPathFactory, metadata_backend: str, request: pytest.FixtureRequest
) -> Settings:
    return test_settings(tmp_path_factory.mktemp("shared") / "home", **metadata_settings(request, metadata_backend))


@pytest.fixture(scope="module")
def shared_client(shared_settings: Settings) -> Iterator[TestClient]:
    """One app for the module; use it only for requests that change nothing."""
    with TestClient(create_app(shared_settings)) as c:
        yield c


@pytest.fixture(scope="module")
def shared_headers(shared_client: TestClient, shared_settings: Settings) -> dict[str, str]:
    return headers_for(shared_client, shared_settings.home)


@pytest.fixture(scope="module")
def shared_creds(shared_client: TestClient, shared_settings: Settings) -> dict[str, str]:
    creds: dict[str, str] = json.loads((shared_settings.home / "credentials.json").read_text())
    return creds


@pytest.fixture(scope="module")
def shared_audience(shared_client: TestClient, shared_headers: dict[str, str]) -> str:
    """The seed audience in the shared app (never ingested into)."""
    return create_audience(shared_client, shared_headers, seed_audience())


@pytest.fixture
def held_settings(tmp_path: Path, metadata_backend: str, request: pytest.FixtureRequest) -> Settings:
    """Settings whose runs stop before the profile store until ``holds/{runId}.before_profile`` is removed."""
    return test_settings(
        tmp_path / "held-home",
        job_stale_after_seconds=30.0,
        debug_hold_at="before_profile",
        **metadata_settings(request, metadata_backend),
    )


@pytest.fixture
def held_client(held_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(held_settings)) as c:
        yield c
        # Release any run still held so that the workers can stop.
        for marker in (held_settings.home / "holds").glob("*"):
            marker.unlink(missing_ok=True)


@pytest.fixture
def held_headers(held_client: TestClient, held_settings: Settings) -> dict[str, str]:
    return headers_for(held_client, held_settings.home)


@pytest.fixture
def other_org_headers(client: TestClient) -> dict[str, str]:
    """Headers of a client of a second org (sandbox ``prod``, which that org has too)."""
    tenancy = client.app.state.container.tenancy
    org_b = tenancy.create_org("ORGB0000000000000000@AdobeOrg", name="Org B")
    creds_b = tenancy.create_client(org_b, name="org B client")
    return {
        "Authorization": f"Bearer {token_for(client, creds_b.client_id, creds_b.client_secret)}",
        "x-api-key": creds_b.client_id,
        "x-gw-ims-org-id": org_b,
        "x-sandbox-name": "prod",
    }


@pytest.fixture
def dev_headers(client: TestClient, creds: dict[str, str], headers: dict[str, str]) -> dict[str, str]:
    """The first org's headers aimed at its second sandbox, ``dev``."""
    client.app.state.container.tenancy.create_sandbox(creds["org_id"], "dev", title="Development")
    return dict(headers, **{"x-sandbox-name": "dev"})
