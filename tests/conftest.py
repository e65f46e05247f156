"""Shared fixtures: an app on a temporary home, its dev credentials, and authenticated headers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.config import Settings
from tests.pgserver import PostgresServer
from tests.servers.fixtures import *  # noqa: F403 (real servers: moto, the GCS emulator, SFTP, a fault proxy)

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Polls ``probe`` until it returns something truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        time.sleep(interval)


def test_settings(home: Path, **overrides: Any) -> Settings:
    """Settings for a test server: quick heartbeats, two engine threads, data under ``home``."""
    values: dict[str, Any] = {
        "home": home,
        "workers": 2,
        "job_heartbeat_seconds": 0.2,
        "job_stale_after_seconds": 2.0,
        "engine_threads": 2,
        "pg_port": 0,  # no PostgreSQL listener unless a test asks for one (apps run side by side)
    }
    return Settings(**{**values, **overrides})


test_settings.__test__ = False  # type: ignore[attr-defined]  # a builder, not a test


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (tests/pgserver.py); fails, never skips, without its binaries."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh empty database on :func:`postgres_server` as a plain ``postgresql://`` URL; dropped after the test."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


# Tests whose apps (``client``, ``shared_client``, ``held_client``) run twice: with the metadata store on SQLite and
# on PostgreSQL. A path names a module, ``path::name`` one test of it.
ON_POSTGRESQL_TOO = (
    "tests/api/test_seed_000_flow.py",
    "tests/api/test_isolation.py",
    "tests/api/test_runs.py",
    "tests/api/test_catalog_batches.py",
    "tests/api/test_commit_safety.py",
    "tests/segments/test_segment_jobs.py::test_the_daily_job_evaluates_every_batch_segment_of_each_sandbox",
    "tests/exports/test_export_jobs.py::test_segment_per_batch_writes_one_batch_per_segment",
    "tests/query/test_queries_api.py::test_list_pages_filters_and_soft_delete",
    "tests/segments/test_definitions_api.py::test_a_name_longer_than_the_store_keeps_is_refused_by_length",
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "metadata_backend" not in metafunc.fixturenames:
        return
    nodeid = metafunc.definition.nodeid.split("[")[0]
    if any(nodeid == target or nodeid.startswith(target + "::") for target in ON_POSTGRESQL_TOO):
        metafunc.parametrize("metadata_backend", ["sqlite", "postgresql"], scope="module")


@pytest.fixture(scope="session")
def metadata_backend() -> str:
    """Where the apps of a test keep their metadata: ``sqlite`` (the home's metadata.db), or ``postgresql`` for the
    tests in ON_POSTGRESQL_TOO, which run once with each."""
    return "sqlite"


def metadata_settings(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    """Settings that put an app's metadata store on ``backend``: on PostgreSQL a new database, dropped when the
    requesting fixture ends."""
    if backend == "sqlite":
        return {}
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    request.addfinalizer(lambda: server.drop_database(name))
    return {"database_url": server.url(name)}


@pytest.fixture
def settings(tmp_path: Path, metadata_backend: str, request: pytest.FixtureRequest) -> Settings:
    return test_settings(tmp_path / "home", **metadata_settings(request, metadata_backend))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def creds(client: TestClient, settings: Settings) -> dict[str, str]:
    data: dict[str, str] = json.loads((settings.home / "credentials.json").read_text())
    return data


def token_for(client: TestClient, client_id: str, secret: str) -> str:
    resp = client.post(
        "/ims/token/v3",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": "openid"},
    )
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["access_token"]
    return token


@pytest.fixture
def headers(client: TestClient, creds: dict[str, str]) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token_for(client, creds['client_id'], creds['client_secret'])}",
        "x-api-key": creds["client_id"],
        "x-gw-ims-org-id": creds["org_id"],
        "x-sandbox-name": "prod",
    }


EA = "/data/core/ais/external-audience"
LZ = "/data/foundation/connectors/landingzone"


def seed_audience(path: str = "activation/sample-source/example.csv", **overrides: Any) -> dict[str, Any]:
    """Seed 003's create body, pointed at the landing zone."""
    body: dict[str, Any] = {
        "name": "Sample external audience",
        "description": "A sample version of an external audience",
        "fields": [
            {"name": "ppid", "type": "string", "identityNs": "email"},
            {"name": "list_id", "type": "string", "labels": ["core/C2", "custom/deep"]},
            {"name": "delete", "type": "number"},
            {"name": "process_consent", "type": "string"},
        ],
        "sourceSpec": {"params": {"path": path, "type": "file", "sourceType": "Cloud Storage", "cloudType": "DLZ"}},
        "ttlInDays": "40",
        "labels": ["core/C1"],
        "audienceType": "people",
        "originName": "CUSTOM_UPLOAD",
    }
    body.update(overrides)
    return body


def create_audience(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    """Creates an audience and waits for its operation; returns the audience id."""
    resp = client.post(EA + "/", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    op_id = resp.json()["operationId"]

    def done() -> dict[str, Any] | None:
        op = client.get(f"{EA}/operations/{op_id}", headers=headers).json()
        return op if op["status"] != "PROCESSING" else None

    op = wait_for(done, what="audience creation")
    assert op["status"] == "SUCCESS", op
    audience_id: str = op["audienceId"]
    return audience_id


def run_and_wait(
    client: TestClient, headers: dict[str, str], audience_id: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    resp = client.post(f"{EA}/{audience_id}/runs", json=body or {"dataFilterStartTime": 0}, headers=headers)
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["runId"]

    def done() -> dict[str, Any] | None:
        run = client.get(f"{EA}/{audience_id}/runs/{run_id}", headers=headers).json()
        return run if run["status"] != "PROCESSING" else None

    result: dict[str, Any] = wait_for(done, what="ingestion run")
    return result


def upload(client: TestClient, headers: dict[str, str], path: str, content: bytes) -> None:
    resp = client.put(f"{LZ}/{path}", content=content, headers=headers)
    assert resp.status_code == 201, resp.text
