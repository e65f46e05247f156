"""Refused reads and PATCHes of /external-audience: the status, the code, the field and the value.

Every request here is refused or only reads, so the module shares one app and one audience
(see tests/api/conftest.py); the audience is checked to be unchanged after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.support import assert_problem, get_audience, patch_audience
from tests.conftest import EA


@pytest.fixture
def client(shared_client: TestClient) -> TestClient:
    return shared_client


@pytest.fixture
def headers(shared_headers: dict[str, str]) -> dict[str, str]:
    return shared_headers


@pytest.fixture
def audience_id(shared_client: TestClient, shared_headers: dict[str, str], shared_audience: str) -> Iterator[str]:
    before = shared_client.get(f"{EA}/{shared_audience}", headers=shared_headers).json()
    yield shared_audience
    assert shared_client.get(f"{EA}/{shared_audience}", headers=shared_headers).json() == before


def test_get_unknown_audience_is_404(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(client.get(f"{EA}/unknown-id", headers=headers), 404, "100940-404", "unknown-id")


@pytest.mark.parametrize("limit", [0, 101, -1])
def test_list_limit_out_of_range_is_400(client: TestClient, headers: dict[str, str], limit: int) -> None:
    resp = client.get(EA + "/", params={"limit": limit}, headers=headers)
    assert_problem(resp, 400, "100910-400", "limit", str(limit))


def test_list_negative_start_is_400(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(client.get(EA + "/", params={"start": -3}, headers=headers), 400, "100910-400", "start", "-3")


def test_list_limit_100_is_accepted(client: TestClient, headers: dict[str, str]) -> None:
    assert client.get(EA + "/", params={"limit": 100}, headers=headers).status_code == 200


def test_patch_field_labels_cannot_change_type(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    resp = patch_audience(
        client, headers, audience_id, {"fields": [{"name": "list_id", "labels": [], "type": "number"}]}
    )
    assert_problem(resp, 400, "100910-400", "fields[0].type")


def test_patch_ttl_91_is_400(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    assert_problem(
        patch_audience(client, headers, audience_id, {"ttlInDays": 91}), 400, "100910-400", "ttlInDays", "91"
    )
    assert get_audience(client, headers, audience_id)["ttlInDays"] == 40


def test_patch_ttl_null_is_400(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    assert_problem(
        patch_audience(client, headers, audience_id, {"ttlInDays": None}), 400, "100910-400", "ttlInDays", "null"
    )


@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": "renamed"}, "name"),
        ({"sourceSpec": {"path": "x.csv", "type": "file"}}, "sourceSpec"),
        ({"colour": "red"}, "colour"),
        ({"audienceType": "people"}, "audienceType"),
    ],
)
def test_patch_of_what_cannot_change_is_400(
    client: TestClient, headers: dict[str, str], audience_id: str, body: dict[str, Any], field: str
) -> None:
    assert_problem(patch_audience(client, headers, audience_id, body), 400, "100910-400", field)
    assert get_audience(client, headers, audience_id)["audienceName"] == "Sample external audience"


def test_patch_unknown_field_name_is_400(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    resp = patch_audience(client, headers, audience_id, {"fields": [{"name": "nope", "labels": ["core/C1"]}]})
    assert_problem(resp, 400, "100910-400", "fields", "nope")


def test_patch_refused_changes_nothing(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    body = {"description": "changed", "fields": [{"name": "nope", "labels": ["core/C1"]}]}
    assert patch_audience(client, headers, audience_id, body).status_code == 400
    assert get_audience(client, headers, audience_id)["description"] == "A sample version of an external audience"


def test_patch_empty_body_is_400(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    assert_problem(patch_audience(client, headers, audience_id, {}), 400, "100910-400", "body", "nothing to update")


def test_patch_unknown_audience_is_404(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(patch_audience(client, headers, "nope", {"description": "x"}), 404, "100940-404", "nope")
