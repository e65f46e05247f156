"""Seed 002 end to end: audiences, a dataset on the profile union schema, the seed's export job body verbatim, and
the exported rows checked against an independent computation of who is in which audience."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.xdm_support import CATALOG
from tests.exports.support import (
    AUDIENCE_NS,
    BLUE,
    FEMALE,
    GOLD,
    OTHER,
    PEOPLE,
    SEED_EXPORT,
    WITH_RECORDS,
    Sandbox,
    batch_rows,
    build,
    core,
    create_dataset,
    memberships,
    person,
    post_export,
    wait_export,
)


def expected_memberships(s: Sandbox, email: str) -> dict[str, dict[str, str]]:
    """Every membership the person has, from the audiences' own inputs (not from the store)."""
    external: dict[str, str] = {}
    if email in BLUE:
        external[s.blue] = "realized"
    if email in GOLD:
        external[s.gold] = "exited" if email == GOLD[-1] else "realized"
    if email in OTHER:
        external[s.other] = "realized"
    out: dict[str, dict[str, str]] = {}
    if external:
        out[AUDIENCE_NS] = external
    if email in FEMALE:
        out["ups"] = {s.women: "realized"}
    return out


def test_seed_002_export_writes_the_selected_profiles_with_all_their_memberships(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    s = build(client, headers)
    dataset_id = create_dataset(client, headers)
    body = SEED_EXPORT % {"fields": s.fields, "a1": s.blue, "a2": s.gold, "a3": s.women, "dataset": dataset_id}

    created = post_export(client, headers, body)

    assert isinstance(created["id"], int) and created["status"] == "NEW"
    # The seed repeats segmentId/segmentNs/status in one object: each segmentId is one filter.
    assert created["filter"]["segments"] == [
        {"segmentId": a, "segmentNs": "ups", "status": ["realized"]} for a in (s.blue, s.gold, s.women)
    ]
    assert created["destination"]["datasetId"] == dataset_id and created["destination"]["segmentPerBatch"] is False
    batch_id = created["destination"]["batchId"]
    job = wait_export(client, headers, created["id"])
    assert job["status"] == "SUCCEEDED", job

    chosen = [p for p in PEOPLE if p in BLUE or p in GOLD[:-1] or p in FEMALE]
    found = batch_rows(settings, creds, dataset_id, batch_id)
    rows = {r[f"_{s.tenant}"]["identification"]["core"]["email"] or "?": r for r in found}
    assert len(rows) == len(chosen) == job["metrics"]["totalExportedProfileCounter"]
    # p10 has no records: its fields are empty, so it is told by its memberships.
    (unknown,) = [r for key, r in rows.items() if key == "?"]
    rows[PEOPLE[10]] = unknown
    del rows["?"]
    assert set(rows) == set(chosen)
    for email, row in rows.items():
        assert memberships(row) == expected_memberships(s, email), email
        for inner in row["segmentMembership"].values():
            assert all(isinstance(m["lastQualificationTime"], dt.datetime) for m in inner.values())
        if email in WITH_RECORDS:
            assert row["person"] == person(email)
            assert row[f"_{s.tenant}"] == {"identification": {"core": core(email)}}
        else:
            assert row["person"] == {"gender": None, "name": {"firstName": None, "lastName": None}}
    assert set(next(iter(rows.values()))) == {"person", f"_{s.tenant}", "segmentMembership"}

    batch = client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]
    assert batch["status"] == "success" and batch["recordCount"] == len(chosen)
    assert batch["relatedObjects"] == [{"type": "dataSet", "id": dataset_id}]
    ds = client.get(f"{CATALOG}/dataSets/{dataset_id}", headers=headers).json()[dataset_id]
    assert ds["lastBatchId"] == batch_id and ds["lastBatchStatus"] == "success"
    metrics = job["metrics"]
    for key in ("totalTime", "profileExportTime", "aCPDatasetWriteTime"):
        span = metrics[key]
        assert span["endTimeInMs"] - span["startTimeInMs"] == span["totalTimeInMs"] >= 0
    assert job["creationTime"] <= metrics["totalTime"]["startTimeInMs"] <= metrics["totalTime"]["endTimeInMs"]


def test_an_export_without_a_filter_writes_every_profile_with_its_identity_map(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    s = build(client, headers)
    dataset_id = create_dataset(client, headers)
    body: dict[str, Any] = {"destination": {"datasetId": dataset_id}, "schema": {"name": "_xdm.context.profile"}}

    job = wait_export(client, headers, post_export(client, headers, body)["id"])

    assert job["status"] == "SUCCEEDED", job
    rows = batch_rows(settings, creds, dataset_id, job["destination"]["batchId"])
    by_email = {r["identityMap"]["Email"][0]["id"]: r for r in rows}
    assert set(by_email) == set(PEOPLE)
    for email, row in by_email.items():
        assert row["identityMap"] == {"Email": [{"id": email, "authenticatedState": None, "primary": None}]}
        assert memberships(row) == expected_memberships(s, email)
    assert by_email[PEOPLE[3]]["person"]["name"]["firstName"] == "First3"
    assert by_email[PEOPLE[3]][f"_{s.tenant}"]["identification"]["core"]["ecid"] == "ecid-3"
