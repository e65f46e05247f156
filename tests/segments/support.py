"""Segmentation steps as AEP users call them, shared by the segmentation tests."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import wait_for

DEFINITIONS = "/data/core/ups/segment/definitions"
JOBS = "/data/core/ups/segment/jobs"
ACCESS = "/data/core/ups/access/entities"


def define(client: TestClient, headers: dict[str, str], name: str, pql: str, **extra: Any) -> str:
    body = {
        "name": name,
        "expression": {"type": "PQL", "format": "pql/text", "value": pql},
        "schema": {"name": "_xdm.context.profile"},
        **extra,
    }
    resp = client.post(DEFINITIONS, json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    segment_id: str = resp.json()["id"]
    return segment_id


def wait_job(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = client.get(f"{JOBS}/{job_id}", headers=headers).json()
        return job if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED") else None

    result: dict[str, Any] = wait_for(done, what="segment job")
    return result


def evaluate(client: TestClient, headers: dict[str, str], *segment_ids: str) -> dict[str, Any]:
    resp = client.post(JOBS, json=[{"segmentId": s} for s in segment_ids], headers=headers)
    assert resp.status_code == 200, resp.text
    return wait_job(client, headers, resp.json()["id"])


def memberships(client: TestClient, headers: dict[str, str], ns: str, value: str) -> dict[str, Any]:
    """The profile's ``segmentMembership`` map (namespace → id → membership); empty for an unknown identity."""
    resp = client.get(
        ACCESS, params={"schema.name": "_xdm.context.profile", "entityId": value, "entityIdNS": ns}, headers=headers
    )
    if resp.status_code == 404:
        return {}
    assert resp.status_code == 200, resp.text
    (entity,) = resp.json().values()
    found: dict[str, Any] = entity["entity"].get("segmentMembership", {})
    return found


def segment_status(client: TestClient, headers: dict[str, str], ns: str, value: str, segment_id: str) -> str | None:
    membership = memberships(client, headers, ns, value).get("ups", {}).get(segment_id)
    return None if membership is None else str(membership["status"])
