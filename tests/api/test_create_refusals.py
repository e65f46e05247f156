"""POST /external-audience/ refusals: each names the field and the value, and nothing is created.

Every request here is refused, so the module shares one app (see tests/api/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.support import assert_problem
from tests.conftest import EA, seed_audience

CONNECTION_ID = "1d1d4bc5-b527-46a3-9863-530246a61b2b"


@pytest.fixture
def client(shared_client: TestClient, shared_headers: dict[str, str]) -> Iterator[TestClient]:
    yield shared_client
    listed = shared_client.get(EA + "/", headers=shared_headers).json()
    assert listed["_page"]["totalCount"] == 0, "a refused request created an audience"


@pytest.fixture
def headers(shared_headers: dict[str, str]) -> dict[str, str]:
    return shared_headers


def _post(client: TestClient, headers: dict[str, str], body: Any) -> Any:
    return client.post(EA + "/", json=body, headers=headers)


def test_source_spec_with_extra_key_beside_params_is_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["sourceSpec"]["extra"] = 1
    assert_problem(_post(client, headers, body), 400, "100910-400", "sourceSpec", "extra")


def test_unknown_operation_is_404(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(client.get(f"{EA}/operations/no-such-op", headers=headers), 404, "100940-404", "no-such-op")


@pytest.mark.parametrize("ttl", [0, 91, "abc", True, -1, "0", 40.5])
def test_bad_ttl_is_400_naming_it(client: TestClient, headers: dict[str, str], ttl: Any) -> None:
    body = assert_problem(_post(client, headers, seed_audience(ttlInDays=ttl)), 400, "100910-400", "ttlInDays")
    assert repr(ttl) in body["detail"] or str(ttl) in body["detail"]


def test_unknown_identity_namespace_is_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["fields"][0]["identityNs"] = "Fax"
    assert_problem(_post(client, headers, body), 400, "100910-400", "fields[0].identityNs", "Fax")


def test_no_identity_field_is_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    del body["fields"][0]["identityNs"]
    assert_problem(_post(client, headers, body), 400, "100910-400", "fields", "identityNs")


def test_duplicate_field_names_differing_in_case_are_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["fields"].append({"name": "List_ID", "type": "string"})
    assert_problem(_post(client, headers, body), 400, "100910-400", "fields", "List_ID")


def test_bad_field_type_is_400_naming_field_and_value(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["fields"][0]["type"] = "text"
    assert_problem(_post(client, headers, body), 400, "100910-400", "fields[0].type", "'text'")


def test_field_name_with_a_space_is_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["fields"][1]["name"] = "list id"
    assert_problem(_post(client, headers, body), 400, "100910-400", "fields[1].name", "list id")


def test_unknown_key_in_a_field_is_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["fields"][1]["colour"] = "red"
    assert_problem(_post(client, headers, body), 400, "100910-400", "fields[1].colour")


def test_empty_fields_is_400(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(_post(client, headers, seed_audience(fields=[])), 400, "100910-400", "fields", "[]")


def test_malformed_label_is_400(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(_post(client, headers, seed_audience(labels=["C1"])), 400, "100910-400", "labels", "C1")


def test_audience_type_other_than_people_is_400(client: TestClient, headers: dict[str, str]) -> None:
    resp = _post(client, headers, seed_audience(audienceType="accounts"))
    assert_problem(resp, 400, "100910-400", "audienceType", "accounts")


def test_origin_name_missing_is_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    del body["originName"]
    assert_problem(_post(client, headers, body), 400, "100910-400", "originName", "required")


def test_origin_name_wrong_is_400(client: TestClient, headers: dict[str, str]) -> None:
    resp = _post(client, headers, seed_audience(originName="UPLOAD"))
    assert_problem(resp, 400, "100910-400", "originName", "UPLOAD")


def test_name_missing_is_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    del body["name"]
    assert_problem(_post(client, headers, body), 400, "100910-400", "name", "required")


def test_blank_name_is_400(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(_post(client, headers, seed_audience(name="   ")), 400, "100910-400", "name", "'   '")


@pytest.mark.parametrize(
    "path,needle",
    [
        ("activation/my file.csv", "spaces"),
        ("activation/../secret.csv", ".."),
        ("../secret.csv", ".."),
        ("/etc/passwd", "relative"),
        ("", "empty"),
    ],
)
def test_bad_source_path_is_400(client: TestClient, headers: dict[str, str], path: str, needle: str) -> None:
    resp = _post(client, headers, seed_audience(path=path))
    assert_problem(resp, 400, "100910-400", "sourceSpec.params.path", needle)


def test_source_type_other_than_file_or_folder_is_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["sourceSpec"]["params"]["type"] = "bucket"
    assert_problem(_post(client, headers, body), 400, "100910-400", "sourceSpec.params.type", "bucket")


def test_s3_without_base_connection_is_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["sourceSpec"]["params"]["cloudType"] = "S3"
    assert_problem(_post(client, headers, body), 400, "100910-400", "baseConnectionId", "S3")


def test_unknown_base_connection_is_422(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["sourceSpec"]["params"].update(cloudType="S3", baseConnectionId=CONNECTION_ID)
    assert_problem(_post(client, headers, body), 422, "100960-422", "baseConnectionId", CONNECTION_ID)


def test_base_connection_without_cloud_type_is_422(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    del body["sourceSpec"]["params"]["cloudType"]
    body["sourceSpec"]["params"]["baseConnectionId"] = CONNECTION_ID
    assert_problem(_post(client, headers, body), 422, "100960-422", "baseConnectionId")


def test_body_not_json_is_400(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.post(EA + "/", content=b"{name: nope", headers=headers)
    assert_problem(resp, 400, "100910-400", "body", "JSON")


def test_body_a_json_array_is_400(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(_post(client, headers, [seed_audience()]), 400, "100910-400", "body", "list")


def test_empty_body_is_400(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(client.post(EA + "/", content=b"", headers=headers), 400, "100910-400", "body")
