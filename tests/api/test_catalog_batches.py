"""Seed 002's Catalog steps and batch ingestion: datasets, batches, validation, failed-batch diagnostics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import assert_problem, dataset_dir
from tests.api.xdm_support import (
    CATALOG,
    IMPORT,
    PERSON_FG,
    PROFILE_CLASS,
    dataset,
    enable_profile,
    field_group,
    identity,
    ingest,
    json_lines,
    schema,
    tenant,
)

SEED_002_DATASET = {
    "name": "Segment Export Job Dataset for CJA",
    "schemaRef": {"id": "_xdm.context.profile__union", "contentType": "application/vnd.adobe.xed+json;version=1"},
    "fileDescription": {"persistet": True, "containerFormat": "parquet", "format": "parquet"},
}


def cja_schema(client: TestClient, headers: dict[str, str]) -> tuple[str, str]:
    """Seed 002's "Audience Export for CJA Schema": Individual Profile (whose class has ``personID``) + a field
    group with the audience membership fields, personID as primary identity in Email. Returns (schema id,
    tenant)."""
    fg = field_group(
        client,
        headers,
        "Audience Membership",
        {
            "audienceMembershipId": {"type": "string", "title": "audienceMembershipId"},
            "audienceMembershipName": {"type": "string", "title": "audienceMembershipName"},
        },
    )
    sid = schema(client, headers, "Audience Export for CJA Schema", PROFILE_CLASS, fg, PERSON_FG)
    t = tenant(client, headers)
    identity(client, headers, sid, "/personID", "Email", True)
    return sid, t


def test_seed_002_creates_a_dataset_on_the_profile_union(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.post(f"{CATALOG}/dataSets?requestDataSource=true", json=SEED_002_DATASET, headers=headers)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert isinstance(body, list) and len(body) == 1 and body[0].startswith("@/dataSets/")
    dataset_id = body[0].removeprefix("@/dataSets/")
    assert resp.headers["location"].endswith(f"/dataSets/{dataset_id}")
    got = client.get(f"{CATALOG}/dataSets/{dataset_id}", headers=headers).json()
    assert list(got) == [dataset_id]
    ds = got[dataset_id]
    assert ds["name"] == "Segment Export Job Dataset for CJA"
    assert ds["schemaRef"]["id"] == "_xdm.context.profile__union"
    assert ds["created"] > 10**12  # epoch milliseconds, as the Catalog answers
    only = client.get(f"{CATALOG}/dataSets", params={"properties": "name,schemaRef"}, headers=headers).json()
    assert only[dataset_id] == {"name": ds["name"], "schemaRef": ds["schemaRef"]}
    again = client.post(f"{CATALOG}/dataSets", json=SEED_002_DATASET, headers=headers)
    assert_problem(again, 409, "100950-409", "Segment Export Job Dataset for CJA")


def test_dataset_refusals_name_the_field(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(
        client.post(f"{CATALOG}/dataSets", json={"name": "x"}, headers=headers), 400, "100910-400", "schemaRef.id"
    )
    missing = client.post(
        f"{CATALOG}/dataSets", json={"name": "x", "schemaRef": {"id": "_nope.schemas.abc"}}, headers=headers
    )
    assert missing.status_code in (400, 404)
    assert "_nope.schemas.abc" in missing.text
    sid, _ = cja_schema(client, headers)
    not_profile = client.post(
        f"{CATALOG}/dataSets",
        json={"name": "p", "schemaRef": {"id": sid}, "tags": {"unifiedProfile": ["enabled:true"]}},
        headers=headers,
    )
    assert_problem(not_profile, 400, "100910-400", "unifiedProfile", "not enabled for Profile")
    assert_problem(client.get(f"{CATALOG}/dataSets", params={"limit": 0}, headers=headers), 400, "100910-400", "limit")


def test_a_json_batch_lands_in_the_dataset_and_the_profile(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    sid, t = cja_schema(client, headers)
    enable_profile(client, headers, sid)
    ds = dataset(client, headers, "Audience Export for CJA", sid, profile=True)
    # Seed 002's transformed JSON, as the seed shows it (with the tenant of this org).
    records = [
        {
            "_id": "1",
            "personID": "John.Doe@Gmail.com",
            f"_{t}": {"audienceMembershipId": "a1", "audienceMembershipName": "Luma - Blue+ Members"},
        },
        {
            "_id": "2",
            "personID": "jane@example.com",
            f"_{t}": {"audienceMembershipId": "a2", "audienceMembershipName": "Luma - Gold"},
        },
    ]
    batch = ingest(client, headers, ds, json.dumps(records, indent=2).encode())  # a JSON array, as the seed's file
    assert batch["status"] == "success", batch
    assert batch["recordCount"] == 2 and batch["failedRecordCount"] == 0
    assert batch["relatedObjects"][0] == {"type": "dataSet", "id": ds}
    files = list(dataset_dir(settings, creds, ds).rglob("*.parquet"))
    assert len(files) == 1 and files[0].parent.name == batch["id"]
    rows = duckdb.sql(f"SELECT _id, personID FROM read_parquet('{files[0]}') ORDER BY _id").fetchall()
    assert rows == [("1", "John.Doe@Gmail.com"), ("2", "jane@example.com")]
    # The profile store knows the person by the normalized email.
    resp = client.get(
        "/data/core/ups/access/entities",
        params={"schema.name": "_xdm.context.profile", "entityId": "john.doe@gmail.com", "entityIdNS": "email"},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    (entity,) = resp.json().values()
    assert entity["sources"] == [ds]
    assert entity["entity"][f"_{t}"]["audienceMembershipName"] == "Luma - Blue+ Members"
    assert entity["entity"]["identityMap"] == {"Email": [{"id": "john.doe@gmail.com"}]}
    ds_body = client.get(f"{CATALOG}/dataSets/{ds}", headers=headers).json()[ds]
    assert ds_body["lastBatchId"] == batch["id"] and ds_body["lastBatchStatus"] == "success"


def test_json_lines_csv_and_parquet_batches(client: TestClient, headers: dict[str, str], tmp_path: Path) -> None:
    sid, _ = cja_schema(client, headers)
    ds = dataset(client, headers, "Formats", sid)
    lines = json_lines({"_id": "1", "person": {"name": {"firstName": "Ann"}}})
    assert ingest(client, headers, ds, lines)["status"] == "success"
    csv_text = b"_id,person.name.firstName,personID\n2,Bob,bob@x.com\n3,,\n"
    got = ingest(client, headers, ds, csv_text, fmt="csv", name="people.csv")
    assert got["status"] == "success" and got["recordCount"] == 2, got
    pq = tmp_path / "p.parquet"
    duckdb.sql(f"COPY (SELECT '4' AS _id, {{'name': {{'firstName': 'Cy'}}}} AS person) TO '{pq}' (FORMAT parquet)")
    got = ingest(client, headers, ds, pq.read_bytes(), fmt="parquet", name="p.parquet")
    assert got["status"] == "success" and got["recordCount"] == 1, got
    listed = client.get(f"{CATALOG}/batches", params={"dataSet": ds}, headers=headers).json()
    assert len(listed) == 3 and all(b["status"] == "success" for b in listed.values())


def test_a_bad_record_fails_the_whole_batch_with_readable_reasons(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    sid, t = cja_schema(client, headers)
    enable_profile(client, headers, sid)
    ds = dataset(client, headers, "Strict", sid, profile=True)
    content = (
        json_lines(
            {"_id": "1", "personID": "ok@x.com"},
            {"_id": "2", "personID": "ok2@x.com", f"_{t}": {"favouriteColour": "red"}},  # not in the schema
            {"_id": "3", "personID": "not-an-email"},
            {"_id": "4", "person": {"name": {"firstName": 42}}, "personID": "p@x.com"},
        )
        + b"{broken\n"
    )
    batch = ingest(client, headers, ds, content)
    assert batch["status"] == "failed"
    assert batch["failedRecordCount"] == 4 and batch["recordCount"] == 5
    assert "favouriteColour" in batch["errors"][0]["description"]
    assert not list(dataset_dir(settings, creds, ds).rglob("*.parquet"))  # nothing visible
    listing = client.get(f"/data/foundation/export/batches/{batch['id']}/failed", headers=headers)
    assert listing.status_code == 200, listing.text
    (entry,) = listing.json()["data"]
    text = client.get(
        f"/data/foundation/export/batches/{batch['id']}/failed", params={"path": entry["name"]}, headers=headers
    ).text
    failed = [json.loads(line) for line in text.splitlines()]
    reasons = {f["_record"]: [e["message"] for e in f["_errors"]] for f in failed}
    assert reasons[2] == [f"_{t}.favouriteColour: is not a field of the schema"]
    assert "not-an-email" in reasons[3][0] and "Email" in reasons[3][0]
    assert reasons[4] == ["person.name.firstName: expected a string"]
    assert reasons[5] == ["the record is not valid JSON"]
    assert failed[0]["_id"] == "2"  # the record as sent, with its reasons
    none = client.get(
        "/data/core/ups/access/entities", params={"entityId": "ok@x.com", "entityIdNS": "Email"}, headers=headers
    )
    assert_problem(none, 404, "100940-404")


def test_batch_steps_refuse_what_does_not_fit(client: TestClient, headers: dict[str, str]) -> None:
    sid, _ = cja_schema(client, headers)
    ds = dataset(client, headers, "Steps", sid)
    assert_problem(client.post(f"{IMPORT}/batches", json={"datasetId": "nope"}, headers=headers), 404, "100940-404")
    assert_problem(
        client.post(f"{IMPORT}/batches", json={"datasetId": ds, "inputFormat": {"format": "xml"}}, headers=headers),
        400,
        "100910-400",
        "inputFormat.format",
        "xml",
    )
    batch = client.post(f"{IMPORT}/batches", json={"datasetId": ds}, headers=headers).json()
    assert batch["status"] == "loading"
    assert_problem(
        client.post(f"{IMPORT}/batches/{batch['id']}?action=COMPLETE", headers=headers), 400, "100910-400", "no files"
    )
    put = client.put(
        f"{IMPORT}/batches/{batch['id']}/datasets/{ds}/files/..%2Fescape.json", content=b"{}", headers=headers
    )
    assert put.status_code in (400, 404)
    aborted = client.post(f"{IMPORT}/batches/{batch['id']}?action=ABORT", headers=headers)
    assert aborted.status_code == 200 and aborted.json()["status"] == "aborted"
    late = client.put(f"{IMPORT}/batches/{batch['id']}/datasets/{ds}/files/a.json", content=b"{}", headers=headers)
    assert_problem(late, 400, "100910-400", "aborted")


@pytest.mark.parametrize("outsider", ["dev_headers", "other_org_headers"])
def test_datasets_and_batches_of_another_sandbox_answer_404(
    client: TestClient, headers: dict[str, str], outsider: str, request: pytest.FixtureRequest
) -> None:
    sid, _ = cja_schema(client, headers)
    ds = dataset(client, headers, "Mine", sid)
    batch = ingest(client, headers, ds, json_lines({"_id": "1"}))
    other = request.getfixturevalue(outsider)
    assert_problem(client.get(f"{CATALOG}/dataSets/{ds}", headers=other), 404, "100940-404")
    assert ds not in client.get(f"{CATALOG}/dataSets", headers=other).json()
    assert_problem(client.get(f"{CATALOG}/batches/{batch['id']}", headers=other), 404, "100940-404")
    assert_problem(client.post(f"{IMPORT}/batches", json={"datasetId": ds}, headers=other), 404, "100940-404")
    assert_problem(client.delete(f"{CATALOG}/dataSets/{ds}", headers=other), 404, "100940-404")


def test_patch_enables_profile_and_delete_removes_everything(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    sid, _ = cja_schema(client, headers)
    ds = dataset(client, headers, "Later", sid)
    tags: dict[str, Any] = {"tags": {"unifiedProfile": ["enabled: true"]}}
    assert_problem(
        client.patch(f"{CATALOG}/dataSets/{ds}", json=tags, headers=headers),
        400,
        "100910-400",
        "not enabled for Profile",
    )
    enable_profile(client, headers, sid)
    resp = client.patch(f"{CATALOG}/dataSets/{ds}", json=tags, headers=headers)
    assert resp.status_code == 200 and resp.json() == [f"@/dataSets/{ds}"]
    assert ingest(client, headers, ds, json_lines({"_id": "1", "personID": "z@x.com"}))["status"] == "success"
    q = {"entityId": "z@x.com", "entityIdNS": "Email"}
    assert client.get("/data/core/ups/access/entities", params=q, headers=headers).status_code == 200
    assert client.delete(f"{CATALOG}/dataSets/{ds}", headers=headers).json() == [f"@/dataSets/{ds}"]
    assert_problem(client.get(f"{CATALOG}/dataSets/{ds}", headers=headers), 404, "100940-404")
    assert not dataset_dir(settings, creds, ds).exists()
    assert_problem(client.get("/data/core/ups/access/entities", params=q, headers=headers), 404, "100940-404")
