"""Export jobs beyond the seed's happy path: a field the schema lacks, one batch per segment, the list and its pages,
DELETE, refusals that name the field, and isolation between orgs and sandboxes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import assert_problem, dataset_dir
from tests.api.xdm_support import CATALOG
from tests.exports.support import (
    BLUE,
    EXPORTS,
    FEMALE,
    Sandbox,
    batch_rows,
    build,
    create_dataset,
    memberships,
    post_export,
    wait_export,
)

SCHEMA = {"name": "_xdm.context.profile"}


def body(dataset_id: str, *segments: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"destination": {"datasetId": dataset_id}, "schema": SCHEMA, **extra}
    if segments:
        out["filter"] = {"segments": [{"segmentId": s, "segmentNs": "ups", "status": ["realized"]} for s in segments]}
    return out


@pytest.fixture(scope="module")
def shared_dataset(shared_client: TestClient, shared_headers: dict[str, str]) -> str:
    return create_dataset(shared_client, shared_headers)


@pytest.fixture
def sandbox(client: TestClient, headers: dict[str, str]) -> Sandbox:
    return build(client, headers)


def test_a_field_the_schema_lacks_fails_the_batch_with_that_reason(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str], sandbox: Sandbox
) -> None:
    dataset_id = create_dataset(client, headers)
    wrong = f"{sandbox.fields}, person.name.nickName"

    job = wait_export(client, headers, post_export(client, headers, body(dataset_id, sandbox.blue, fields=wrong))["id"])

    assert job["status"] == "FAILED"
    assert "person.name.nickName" in job["errors"][0]["msg"] and job["errors"][0]["code"] == "0100000003"
    batch_id = job["destination"]["batchId"]
    # The seed's Monitoring step: the dataset's failed batch says why.
    ds = client.get(f"{CATALOG}/dataSets/{dataset_id}", headers=headers).json()[dataset_id]
    assert ds["lastBatchStatus"] == "failed" and ds["lastFailedBatch"] == batch_id
    batch = client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]
    assert batch["status"] == "failed"
    assert "person.name.nickName" in batch["errors"][0]["description"]
    assert not list(dataset_dir(settings, creds, dataset_id).rglob("*.parquet"))


def test_segment_per_batch_writes_one_batch_per_segment(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str], sandbox: Sandbox
) -> None:
    dataset_id = create_dataset(client, headers)
    request = body(dataset_id, sandbox.blue, sandbox.women, fields="person.name.firstName")
    request["destination"]["segmentPerBatch"] = True

    created = post_export(client, headers, request)
    job = wait_export(client, headers, created["id"])

    assert job["status"] == "SUCCEEDED", job
    batches = job["destination"]["batches"]
    assert [(b["segmentId"], b["segmentNs"], b["status"]) for b in batches] == [
        (sandbox.blue, "ups", ["realized"]),
        (sandbox.women, "ups", ["realized"]),
    ]
    assert "batchId" not in job["destination"]
    got = {}
    for b in batches:
        rows = batch_rows(settings, creds, dataset_id, b["batchId"])
        got[b["segmentId"]] = rows
        assert client.get(f"{CATALOG}/batches/{b['batchId']}", headers=headers).json()[b["batchId"]]["status"] == (
            "success"
        )
    assert len(got[sandbox.blue]) == len(BLUE) and len(got[sandbox.women]) == len(FEMALE)
    assert job["metrics"]["totalExportedProfileCounter"] == len(BLUE) + len(FEMALE)
    # Each row still has every membership of its profile.
    for row in got[sandbox.women]:
        assert sandbox.women in memberships(row)["ups"]
    both = [r for r in got[sandbox.women] if sandbox.blue in memberships(r).get("CustomerAudienceUpload", {})]
    assert len(both) == len(FEMALE & set(BLUE))
    assert set(got[sandbox.blue][0]) == {"person", "segmentMembership"}


def test_list_pages_newest_first_and_filters_by_status(client: TestClient, headers: dict[str, str]) -> None:
    dataset_id = create_dataset(client, headers)
    ids = [post_export(client, headers, body(dataset_id))["id"] for _ in range(3)]
    for job_id in ids:
        wait_export(client, headers, job_id)

    first = client.get(EXPORTS, params={"limit": 2}, headers=headers).json()
    assert [r["id"] for r in first["records"]] == ids[::-1][:2]
    assert first["page"]["sortField"] == "createdTime" and first["page"]["sort"] == "desc"
    assert first["page"]["pageSize"] == 2
    assert first["link"]["next"] == f"/export/jobs/?limit=2&offset={first['page']['pageOffset']}"
    second = client.get(EXPORTS, params={"limit": 2, "offset": first["page"]["pageOffset"]}, headers=headers).json()
    assert [r["id"] for r in second["records"]] == [ids[0]] and second["link"]["next"] == ""
    skipped = client.get(EXPORTS, params={"limit": 2, "offset": "1"}, headers=headers).json()
    assert [r["id"] for r in skipped["records"]] == [ids[1], ids[0]]
    assert client.get(EXPORTS, params={"status": "FAILED"}, headers=headers).json()["records"] == []
    assert len(client.get(EXPORTS, params={"status": "SUCCEEDED"}, headers=headers).json()["records"]) == 3
    assert_problem(client.get(EXPORTS, params={"status": "DONE"}, headers=headers), 400, "100910-400", "status", "DONE")
    assert_problem(client.get(EXPORTS, params={"limit": 0}, headers=headers), 400, "100910-400", "limit")
    assert_problem(client.get(EXPORTS, params={"offset": "x_y"}, headers=headers), 400, "100910-400", "offset", "x_y")


def test_delete_removes_the_job_and_keeps_what_it_committed(client: TestClient, headers: dict[str, str]) -> None:
    dataset_id = create_dataset(client, headers)
    job = wait_export(client, headers, post_export(client, headers, body(dataset_id))["id"])
    batch_id = job["destination"]["batchId"]

    resp = client.delete(f"{EXPORTS}/{job['id']}", headers=headers)

    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": True, "message": "Export job has been marked for cancelling"}
    assert_problem(client.get(f"{EXPORTS}/{job['id']}", headers=headers), 404, "100940-404", str(job["id"]))
    assert_problem(client.delete(f"{EXPORTS}/{job['id']}", headers=headers), 404, "100940-404")
    assert client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]["status"] == "success"
    assert_problem(client.get(f"{EXPORTS}/abc", headers=headers), 404, "100940-404", "abc")


def test_deleting_a_new_job_aborts_its_batch(client: TestClient, headers: dict[str, str]) -> None:
    dataset_id = create_dataset(client, headers)
    container = client.app.state.container  # type: ignore[attr-defined]
    container.runner.stop()  # nothing runs the job: it stays NEW
    job = post_export(client, headers, body(dataset_id))
    batch_id = job["destination"]["batchId"]
    assert client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]["status"] == "queued"

    assert client.delete(f"{EXPORTS}/{job['id']}", headers=headers).status_code == 200

    assert client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]["status"] == "aborted"
    container.exports.execute(str(job["id"]), _scope(headers))  # a worker that claims it late does nothing
    assert client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]["status"] == "aborted"


def _scope(headers: dict[str, str]) -> Any:
    from audiencehub.metadata.store import Scope

    return Scope(headers["x-gw-ims-org-id"], headers["x-sandbox-name"])


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (lambda b: b.pop("destination"), ["destination"]),
        (lambda b: b["destination"].pop("datasetId"), ["destination.datasetId"]),
        (lambda b: b["destination"].update(datasetId="nope"), ["destination.datasetId", "nope"]),
        (lambda b: b["destination"].update(segmentPerBatch="yes"), ["destination.segmentPerBatch", "yes"]),
        (lambda b: b.pop("schema"), ["schema"]),
        (lambda b: b.update(schema={"name": "_xdm.context.experienceevent"}), ["schema.name", "experienceevent"]),
        (lambda b: b.update(fields=["a"]), ["fields"]),
        (lambda b: b.update(fields="person..name"), ["fields", "person..name"]),
        (lambda b: b.update(filter={"segments": [{"segmentNs": "ups"}]}), ["filter.segments[0].segmentId"]),
        (lambda b: b.update(filter={"segments": [{"segmentId": "nope"}]}), ["filter.segments[0].segmentId", "nope"]),
        (lambda b: b.update(filter={"segments": "x"}), ["filter.segments"]),
        (
            lambda b: b.update(filter={"segmentQualificationTime": {"startTime": "yesterday"}}),
            ["filter.segmentQualificationTime.startTime", "yesterday"],
        ),
        (lambda b: b.update(filter={"emptyProfiles": "no"}), ["filter.emptyProfiles"]),
        (lambda b: b.update(mergePolicy={"id": "nope"}), ["mergePolicy.id", "nope"]),
    ],
)
def test_refusals_name_the_field(
    shared_client: TestClient, shared_headers: dict[str, str], shared_dataset: str, change: Any, needles: list[str]
) -> None:
    request = body(shared_dataset)
    change(request)
    resp = shared_client.post(EXPORTS, json=request, headers=shared_headers)
    assert_problem(resp, 400, "100910-400", *needles)


def test_bad_status_and_unsupported_parts_are_refused(
    shared_client: TestClient, shared_headers: dict[str, str], shared_dataset: str
) -> None:
    dataset_id = shared_dataset
    request = body(dataset_id)
    request["filter"] = {"segments": [{"segmentId": "x", "status": ["gone"]}]}
    assert_problem(
        shared_client.post(EXPORTS, json=request, headers=shared_headers), 400, "100910-400", "status", "gone"
    )
    events = body(dataset_id, additionalFields={"eventList": {"fields": "_id"}})
    assert_problem(
        shared_client.post(EXPORTS, json=events, headers=shared_headers), 422, "100960-422", "additionalFields"
    )
    resp = shared_client.post(EXPORTS, content=b"{not json", headers=shared_headers)
    assert_problem(resp, 400, "100910-400", "JSON")


def test_other_orgs_and_sandboxes_see_nothing(
    client: TestClient,
    headers: dict[str, str],
    other_org_headers: dict[str, str],
    dev_headers: dict[str, str],
) -> None:
    dataset_id = create_dataset(client, headers)
    job = wait_export(client, headers, post_export(client, headers, body(dataset_id))["id"])
    for other in (other_org_headers, dev_headers):
        assert_problem(client.get(f"{EXPORTS}/{job['id']}", headers=other), 404, "100940-404")
        assert_problem(client.delete(f"{EXPORTS}/{job['id']}", headers=other), 404, "100940-404")
        assert client.get(EXPORTS, headers=other).json()["records"] == []
        # The dataset is not theirs either.
        resp = client.post(EXPORTS, json=body(dataset_id), headers=other)
        assert_problem(resp, 400, "100910-400", "destination.datasetId", dataset_id)
    assert client.get(f"{EXPORTS}/{job['id']}", headers=headers).json()["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("filters", "selected"),
    [
        ({"segmentQualificationTime": {"startTime": "2000-01-01T00:00:00Z"}}, True),
        ({"segmentQualificationTime": {"endTime": "2000-01-01T00:00:00Z"}}, False),
        ({"segmentQualificationTime": {"startTime": "2000-01-01T00:00:00Z", "endTime": "2999-01-01T00:00:00Z"}}, True),
        ({"fromIngestTimestamp": "2000-01-01T00:00:00Z"}, True),
        ({"fromIngestTimestamp": "2999-01-01T00:00:00Z"}, False),
        ({"emptyProfiles": True}, True),
    ],
)
def test_time_windows_and_profile_conditions_narrow_the_export(
    client: TestClient, headers: dict[str, str], sandbox: Sandbox, filters: dict[str, Any], selected: bool
) -> None:
    dataset_id = create_dataset(client, headers)
    request = body(dataset_id, sandbox.blue)
    request["filter"].update(filters)

    job = wait_export(client, headers, post_export(client, headers, request)["id"])

    assert job["status"] == "SUCCEEDED", job
    assert job["filter"] == {**request["filter"], "segments": request["filter"]["segments"]}
    assert job["metrics"]["totalExportedProfileCounter"] == (len(BLUE) if selected else 0)
