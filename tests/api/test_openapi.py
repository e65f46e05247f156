"""/openapi.json describes the external audiences API, and /health answers without credentials."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

EA = "/data/core/ais/external-audience"


@pytest.fixture
def schema(client: TestClient) -> dict[str, Any]:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    return body


def test_openapi_lists_the_external_audience_paths(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    assert set(paths[EA]) == {"get", "post"}
    assert set(paths[EA + "/{audience_id}"]) == {"get", "patch", "delete"}
    assert set(paths[EA + "/{audience_id}/runs"]) == {"get", "post"}
    assert "get" in paths[EA + "/{audience_id}/runs/{run_id}"]
    assert "get" in paths[EA + "/operations/{operation_id}"]


def test_openapi_lists_token_and_landing_zone(schema: dict[str, Any]) -> None:
    assert "post" in schema["paths"]["/ims/token/v3"]
    assert "get" in schema["paths"]["/data/foundation/connectors/landingzone"]
    assert "put" in schema["paths"]["/data/foundation/connectors/landingzone/{path}"]


def test_openapi_documents_the_request_bodies(schema: dict[str, Any]) -> None:
    body = schema["paths"][EA]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["title"] == "AudienceCreate"
    assert {"name", "fields", "sourceSpec", "originName"} <= set(body["required"])
    patch = schema["paths"][EA + "/{audience_id}"]["patch"]["requestBody"]["content"]["application/json"]["schema"]
    assert patch["title"] == "AudiencePatch"
    for name in ("AudienceCreate", "AudiencePatch", "RunCreate"):
        assert name in schema["components"]["schemas"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_every_schema_reference_resolves(schema: dict[str, Any]) -> None:
    refs = set(_refs(schema))
    assert refs
    prefix = "#/components/schemas/"
    for ref in refs:
        assert ref.startswith(prefix), ref
        assert ref.removeprefix(prefix) in schema["components"]["schemas"], ref


def test_openapi_operation_ids_are_unique(schema: dict[str, Any]) -> None:
    ids = [op["operationId"] for item in schema["paths"].values() for op in item.values() if "operationId" in op]
    assert len(ids) == len(set(ids))
    assert "createExternalAudience" in ids


def test_health_needs_no_credentials(client: TestClient) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
