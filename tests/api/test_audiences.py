"""GET, list, PATCH and DELETE of /external-audience/{id}."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import assert_problem, dataset_dir, get_audience, patch_audience, seed_csv
from tests.conftest import EA, create_audience, run_and_wait, seed_audience, upload, wait_for


@pytest.fixture
def audience_id(client: TestClient, headers: dict[str, str]) -> str:
    return create_audience(client, headers, seed_audience())


# -- GET ---------------------------------------------------------------------------------------


def test_get_answers_the_seed_patch_response_shape(
    client: TestClient, headers: dict[str, str], audience_id: str
) -> None:
    body = get_audience(client, headers, audience_id)
    assert body["audienceId"] == audience_id
    assert body["audienceName"] == "Sample external audience"
    assert body["description"] == "A sample version of an external audience"
    assert body["fields"][0] == {"name": "ppid", "type": "string", "identityNs": "Email"}
    assert body["ttlInDays"] == 40
    assert body["labels"] == ["core/C1"]
    assert body["audienceType"] == "people"
    assert body["originName"] == "CUSTOM_UPLOAD"
    assert body["createdBy"].endswith("@techacct.adobe.com")


def test_get_shows_source_spec_bare(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    assert get_audience(client, headers, audience_id)["sourceSpec"] == {
        "path": "activation/sample-source/example.csv",
        "type": "file",
        "sourceType": "Cloud Storage",
        "cloudType": "DLZ",
    }


def test_get_defaults_namespace_to_customer_audience_upload(
    client: TestClient, headers: dict[str, str], audience_id: str
) -> None:
    assert get_audience(client, headers, audience_id)["namespace"] == "CustomerAudienceUpload"


def test_get_keeps_a_given_namespace(client: TestClient, headers: dict[str, str]) -> None:
    audience_id = create_audience(client, headers, seed_audience(namespace="PartnerUpload"))
    assert get_audience(client, headers, audience_id)["namespace"] == "PartnerUpload"


def test_get_created_at_is_epoch_seconds(client: TestClient, headers: dict[str, str]) -> None:
    before = int(time.time())
    audience_id = create_audience(client, headers, seed_audience())
    body = get_audience(client, headers, audience_id)
    assert isinstance(body["createdAt"], int)
    assert before <= body["createdAt"] <= int(time.time())
    assert body["updatedAt"] >= body["createdAt"]


def test_get_with_trailing_slash(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    assert client.get(f"{EA}/{audience_id}/", headers=headers).json()["audienceId"] == audience_id


def test_get_shows_custom_audience_id_and_tags(client: TestClient, headers: dict[str, str]) -> None:
    audience_id = create_audience(client, headers, seed_audience(customAudienceId="crm-1", tags=["spring"]))
    body = get_audience(client, headers, audience_id)
    assert body["customAudienceId"] == "crm-1"
    assert body["tags"] == ["spring"]


# -- list --------------------------------------------------------------------------------------


def _create_many(client: TestClient, headers: dict[str, str], n: int) -> list[str]:
    return [create_audience(client, headers, seed_audience(name=f"audience {i}")) for i in range(n)]


def test_list_pages_with_limit_and_start(client: TestClient, headers: dict[str, str]) -> None:
    ids = set(_create_many(client, headers, 5))
    seen: list[str] = []
    for start in (0, 2, 4):
        page = client.get(EA + "/", params={"limit": 2, "start": start}, headers=headers).json()
        assert page["_page"]["totalCount"] == 5
        assert page["_page"]["start"] == start
        seen += [a["audienceId"] for a in page["audiences"]]
    assert len(seen) == 5
    assert set(seen) == ids


def test_list_page_sizes_and_next(client: TestClient, headers: dict[str, str]) -> None:
    _create_many(client, headers, 3)
    first = client.get(EA + "/", params={"limit": 2}, headers=headers).json()
    assert len(first["audiences"]) == 2
    assert first["_page"]["next"] == 2
    last = client.get(EA + "/", params={"limit": 2, "start": 2}, headers=headers).json()
    assert len(last["audiences"]) == 1
    assert last["_page"]["next"] is None


def test_list_items_have_the_get_shape(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    listed = client.get(EA, headers=headers).json()["audiences"]
    assert listed == [get_audience(client, headers, audience_id)]


# -- PATCH -------------------------------------------------------------------------------------


def test_patch_description_only(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    before = get_audience(client, headers, audience_id)
    resp = patch_audience(client, headers, audience_id, {"description": "New sample description"})
    assert resp.status_code == 200, resp.text
    after = resp.json()
    assert after["description"] == "New sample description"
    for key in ("fields", "labels", "ttlInDays", "sourceSpec", "audienceName"):
        assert after[key] == before[key]
    assert get_audience(client, headers, audience_id) == after


def test_patch_labels_replaces_them(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    resp = patch_audience(client, headers, audience_id, {"labels": ["core/C2", "custom/x"]})
    assert resp.json()["labels"] == ["core/C2", "custom/x"]
    assert get_audience(client, headers, audience_id)["labels"] == ["core/C2", "custom/x"]


def test_patch_field_labels_keeps_unnamed_fields(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    resp = patch_audience(
        client, headers, audience_id, {"fields": [{"name": "process_consent", "labels": ["core/C5"]}]}
    )
    assert resp.status_code == 200, resp.text
    fields = {f["name"]: f for f in get_audience(client, headers, audience_id)["fields"]}
    assert fields["process_consent"]["labels"] == ["core/C5"]
    assert fields["list_id"]["labels"] == ["core/C2", "custom/deep"]
    assert fields["ppid"] == {"name": "ppid", "type": "string", "identityNs": "Email"}
    assert [f["name"] for f in resp.json()["fields"]] == ["ppid", "list_id", "delete", "process_consent"]


def test_patch_ttl_string_becomes_integer(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    resp = patch_audience(client, headers, audience_id, {"ttlInDays": "20"})
    assert resp.json()["ttlInDays"] == 20
    assert get_audience(client, headers, audience_id)["ttlInDays"] == 20


def test_patch_records_updated_at(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    before = get_audience(client, headers, audience_id)
    after = patch_audience(client, headers, audience_id, {"description": "x"}).json()
    assert after["updatedAt"] >= before["updatedAt"]
    assert after["createdAt"] == before["createdAt"]


# -- DELETE ------------------------------------------------------------------------------------


@pytest.fixture
def ingested(client: TestClient, headers: dict[str, str], audience_id: str) -> dict[str, Any]:
    upload(client, headers, "activation/sample-source/example.csv", seed_csv(["a@example.com", "L1", 0, "y"]))
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS", run
    return run


def test_delete_is_204_with_empty_body(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    resp = client.delete(f"{EA}/{audience_id}", headers=headers)
    assert resp.status_code == 204
    assert resp.content == b""


def test_delete_with_trailing_slash(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    assert client.delete(f"{EA}/{audience_id}/", headers=headers).status_code == 204


def test_after_delete_everything_of_the_audience_is_404(client: TestClient, headers: dict[str, str]) -> None:
    op_id = client.post(EA + "/", json=seed_audience(), headers=headers).json()["operationId"]
    audience_id = wait_for(lambda: client.get(f"{EA}/operations/{op_id}", headers=headers).json().get("audienceId"))
    upload(client, headers, "activation/sample-source/example.csv", seed_csv(["a@example.com", "L1", 0, "y"]))
    run_id = run_and_wait(client, headers, audience_id)["runId"]
    assert client.delete(f"{EA}/{audience_id}", headers=headers).status_code == 204
    for url in (
        f"{EA}/{audience_id}",
        f"{EA}/{audience_id}/runs",
        f"{EA}/{audience_id}/runs/{run_id}",
        f"{EA}/{audience_id}/runs/{run_id}/errors",
        f"{EA}/{audience_id}/members",
    ):
        assert_problem(client.get(url, headers=headers), 404, "100940-404", audience_id)
    assert_problem(client.get(f"{EA}/operations/{op_id}", headers=headers), 404, "100940-404", op_id)
    assert_problem(client.delete(f"{EA}/{audience_id}", headers=headers), 404, "100940-404", audience_id)
    assert_problem(patch_audience(client, headers, audience_id, {"description": "x"}), 404, "100940-404", audience_id)
    resp = client.post(f"{EA}/{audience_id}/runs", json={"dataFilterStartTime": 0}, headers=headers)
    assert_problem(resp, 404, "100940-404", audience_id)


def test_delete_removes_the_dataset_folder(
    client: TestClient,
    headers: dict[str, str],
    settings: Settings,
    creds: dict[str, str],
    audience_id: str,
    ingested: dict[str, Any],
) -> None:
    folder = dataset_dir(settings, creds, get_audience(client, headers, audience_id)["datasetId"])
    assert list(folder.glob("*/part-*.parquet")), "the run should have committed a batch"
    assert client.delete(f"{EA}/{audience_id}", headers=headers).status_code == 204
    assert not folder.exists()


def test_delete_frees_the_name(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    assert client.delete(f"{EA}/{audience_id}", headers=headers).status_code == 204
    assert client.get(EA + "/", headers=headers).json()["_page"]["totalCount"] == 0
    assert create_audience(client, headers, seed_audience()) != audience_id


def test_delete_then_recreate_starts_without_members(
    client: TestClient, headers: dict[str, str], audience_id: str, ingested: dict[str, Any]
) -> None:
    assert client.delete(f"{EA}/{audience_id}", headers=headers).status_code == 204
    new_id = create_audience(client, headers, seed_audience())
    body = client.get(f"{EA}/{new_id}/members", headers=headers).json()
    assert body["members"] == []
    assert body["counts"] == {"realized": 0, "exited": 0}
