"""Issue 4's profile: fragments from datasets and external audiences, stitched and merged into one profile."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.support import assert_problem, csv_bytes
from tests.api.xdm_support import (
    IDENTITY_MAP_FG,
    PERSON_FG,
    PROFILE_CLASS,
    dataset,
    enable_profile,
    ingest,
    json_lines,
    schema,
)
from tests.conftest import create_audience, run_and_wait, seed_audience, upload

ACCESS = "/data/core/ups/access/entities"


def audience(client: TestClient, headers: dict[str, str], name: str, column: str, ns: str, value: str) -> str:
    path = f"merge/{column}.csv"
    upload(client, headers, path, csv_bytes([column, "tier"], [[value, "gold"]]))
    body = seed_audience(
        path,
        name=name,
        fields=[{"name": column, "type": "string", "identityNs": ns}, {"name": "tier", "type": "string"}],
    )
    audience_id = create_audience(client, headers, body)
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS", run
    return audience_id


def lookup(client: TestClient, headers: dict[str, str], ns: str, value: str, **extra: str) -> dict[str, Any]:
    resp = client.get(
        ACCESS,
        params={"schema.name": "_xdm.context.profile", "entityId": value, "entityIdNS": ns, **extra},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    (entity,) = resp.json().values()
    return entity


def test_two_sources_under_two_linked_identities_read_back_as_one_profile(
    client: TestClient, headers: dict[str, str]
) -> None:
    by_email = audience(client, headers, "Email list", "email", "Email", "Pat@Example.com")
    by_crm = audience(client, headers, "CRM list", "crm", "CRMID", "crm-42")
    before_email, before_crm = (
        lookup(client, headers, "Email", "pat@example.com"),
        lookup(client, headers, "CRMID", "crm-42"),
    )
    assert before_email["entityId"] != before_crm["entityId"]  # nothing links them yet

    sid = schema(client, headers, "People", PROFILE_CLASS, IDENTITY_MAP_FG, PERSON_FG)
    enable_profile(client, headers, sid)  # identityMap carries the identities, as AEP allows
    ds = dataset(client, headers, "CRM people", sid, profile=True)
    record = {
        "_id": "r1",
        "identityMap": {"Email": [{"id": "pat@example.com", "primary": True}], "CRMID": [{"id": "crm-42"}]},
        "person": {"name": {"firstName": "Pat", "lastName": "Lee"}},
    }
    assert ingest(client, headers, ds, json_lines(record))["status"] == "success"

    merged = lookup(client, headers, "CRMID", "crm-42")
    assert merged == lookup(client, headers, "email", "PAT@example.com")  # same profile, either identity
    assert merged["entityId"] in (before_email["entityId"], before_crm["entityId"])
    entity = merged["entity"]
    assert entity["person"]["name"] == {"firstName": "Pat", "lastName": "Lee"}
    assert entity["identityMap"] == {"CRMID": [{"id": "crm-42"}], "Email": [{"id": "pat@example.com"}]}
    upload_ns = entity["segmentMembership"]["CustomerAudienceUpload"]
    assert set(upload_ns) == {by_email, by_crm}
    assert all(m["status"] == "realized" for m in upload_ns.values())
    assert upload_ns[by_crm]["payload"] == {"tier": "gold"}
    assert merged["sources"] == [ds]


def test_records_segment_membership_and_unknown_identities(client: TestClient, headers: dict[str, str]) -> None:
    sid = schema(
        client,
        headers,
        "Members",
        PROFILE_CLASS,
        IDENTITY_MAP_FG,
        "https://ns.adobe.com/xdm/context/profile-segmentation",
    )
    enable_profile(client, headers, sid)
    ds = dataset(client, headers, "Members", sid, profile=True)
    rec = {
        "_id": "m1",
        "identityMap": {"ECID": [{"id": "12345678901234567890123456789012345678", "primary": True}]},
        "segmentMembership": {
            "ups": {"seg-1": {"status": "realized", "lastQualificationTime": "2026-11-01T10:00:00Z"}}
        },
    }
    assert ingest(client, headers, ds, json_lines(rec))["status"] == "success"
    got = lookup(client, headers, "ECID", "12345678901234567890123456789012345678")
    assert got["entity"]["segmentMembership"]["ups"]["seg-1"] == {
        "status": "realized",
        "lastQualificationTime": "2026-11-01T10:00:00Z",
    }
    assert_problem(
        client.get(ACCESS, params={"entityId": "nobody@x.com", "entityIdNS": "Email"}, headers=headers),
        404,
        "100940-404",
    )
    assert_problem(
        client.get(ACCESS, params={"entityId": "x", "entityIdNS": "NoSuchNs"}, headers=headers),
        400,
        "100910-400",
        "entityIdNS",
        "NoSuchNs",
    )
    assert_problem(client.get(ACCESS, params={"entityIdNS": "Email"}, headers=headers), 400, "100910-400", "entityId")
