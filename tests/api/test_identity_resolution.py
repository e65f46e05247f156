"""A row resolves to the profile of the first of its identities the store already knows."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.support import csv_bytes
from tests.conftest import EA, create_audience, run_and_wait, seed_audience, upload

FIELDS = [
    {"name": "email", "type": "string", "identityNs": "Email"},
    {"name": "crm", "type": "string", "identityNs": "CRMID"},
    {"name": "tier", "type": "string"},
]


def _ingest(client: TestClient, headers: dict[str, str], name: str, rows: list[list[Any]]) -> dict[str, Any]:
    path = f"resolution/{name}.csv"
    upload(client, headers, path, csv_bytes(["email", "crm", "tier"], rows))
    body = seed_audience(path=path, name=name, fields=FIELDS)
    audience_id = create_audience(client, headers, body)
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS", run
    listed = client.get(f"{EA}/{audience_id}/members", headers=headers).json()["members"]
    # Every identity of a member names it: a profile may hold several emails.
    by_identity = {i["id"]: m for m in listed for i in m["identities"]}
    return {"id": audience_id, "run": run, "members": by_identity}


def test_a_new_first_identity_joins_the_profile_its_known_second_identity_names(
    client: TestClient, headers: dict[str, str]
) -> None:
    first = _ingest(client, headers, "first", [["a@example.com", "C-1", "gold"]])
    profile = first["members"]["a@example.com"]["profileId"]

    second = _ingest(client, headers, "second", [["b@example.com", "C-1", "silver"]])

    member = second["members"]["b@example.com"]
    assert member["profileId"] == profile
    assert sorted((i["namespace"], i["id"]) for i in member["identities"]) == [
        ("CRMID", "C-1"),
        ("Email", "a@example.com"),
        ("Email", "b@example.com"),
    ]
    assert second["run"]["metrics"]["profilesCreated"] == 0
    assert second["run"]["metrics"]["profilesUpdated"] == 1


def test_rows_whose_identities_are_all_new_create_one_profile_each(client: TestClient, headers: dict[str, str]) -> None:
    result = _ingest(client, headers, "fresh", [["x@example.com", "C-9", "a"], ["y@example.com", "", "b"]])
    assert result["run"]["metrics"]["profilesCreated"] == 2
    assert result["members"]["x@example.com"]["profileId"] != result["members"]["y@example.com"]["profileId"]
