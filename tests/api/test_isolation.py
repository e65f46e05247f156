"""Orgs and sandboxes see only their own audiences, operations, runs and landing-zone files."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from tests.api.support import assert_problem, seed_csv
from tests.conftest import EA, LZ, run_and_wait, seed_audience, upload, wait_for

FILE = "activation/sample-source/example.csv"


@dataclass
class Owned:
    audience_id: str
    operation_id: str
    run_id: str


@pytest.fixture
def owned(client: TestClient, headers: dict[str, str]) -> Owned:
    """An audience of org A / sandbox prod, with its operation, one run and its landing-zone file."""
    upload(client, headers, FILE, seed_csv(["a@example.com", "L1", 0, "y"]))
    op_id = client.post(EA + "/", json=seed_audience(), headers=headers).json()["operationId"]
    audience_id = wait_for(lambda: client.get(f"{EA}/operations/{op_id}", headers=headers).json().get("audienceId"))
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS", run
    return Owned(audience_id, op_id, run["runId"])


def _reads(owned: Owned) -> list[str]:
    a = owned.audience_id
    return [
        f"{EA}/{a}",
        f"{EA}/{a}/runs",
        f"{EA}/{a}/runs/{owned.run_id}",
        f"{EA}/{a}/runs/{owned.run_id}/errors",
        f"{EA}/{a}/members",
        f"{EA}/operations/{owned.operation_id}",
        f"/data/core/ais/external-audiences/operations/{owned.operation_id}",
    ]


@pytest.fixture(params=["other_org", "other_sandbox"])
def outsider(request: pytest.FixtureRequest) -> dict[str, str]:
    name = "other_org_headers" if request.param == "other_org" else "dev_headers"
    found: dict[str, str] = request.getfixturevalue(name)
    return found


def test_owner_sees_everything(client: TestClient, headers: dict[str, str], owned: Owned) -> None:
    """The control: every URL the outsider tests probe answers 200 to the owner."""
    for url in _reads(owned):
        assert client.get(url, headers=headers).status_code == 200, url
    assert client.get(f"{LZ}/{FILE}", headers=headers).status_code == 200


def test_outsider_reads_answer_404(client: TestClient, outsider: dict[str, str], owned: Owned) -> None:
    for url in _reads(owned):
        assert_problem(client.get(url, headers=outsider), 404, "100940-404")


def test_outsider_patch_is_404_and_changes_nothing(
    client: TestClient, headers: dict[str, str], outsider: dict[str, str], owned: Owned
) -> None:
    resp = client.patch(f"{EA}/{owned.audience_id}", json={"description": "hijacked"}, headers=outsider)
    assert_problem(resp, 404, "100940-404", owned.audience_id)
    assert client.get(f"{EA}/{owned.audience_id}", headers=headers).json()["description"] != "hijacked"


def test_outsider_delete_is_404_and_deletes_nothing(
    client: TestClient, headers: dict[str, str], outsider: dict[str, str], owned: Owned
) -> None:
    assert_problem(client.delete(f"{EA}/{owned.audience_id}", headers=outsider), 404, "100940-404")
    assert client.get(f"{EA}/{owned.audience_id}", headers=headers).status_code == 200


def test_outsider_cannot_start_a_run(client: TestClient, outsider: dict[str, str], owned: Owned) -> None:
    resp = client.post(f"{EA}/{owned.audience_id}/runs", json={"dataFilterStartTime": 0}, headers=outsider)
    assert_problem(resp, 404, "100940-404", owned.audience_id)


def test_outsider_list_is_empty(client: TestClient, outsider: dict[str, str], owned: Owned) -> None:
    body = client.get(EA + "/", headers=outsider).json()
    assert body["audiences"] == []
    assert body["_page"]["totalCount"] == 0


def test_outsider_landing_zone_file_is_404(
    client: TestClient, headers: dict[str, str], outsider: dict[str, str], owned: Owned
) -> None:
    assert_problem(client.get(f"{LZ}/{FILE}", headers=outsider), 404, "100940-404")
    assert_problem(client.delete(f"{LZ}/{FILE}", headers=outsider), 404, "100940-404")
    assert client.get(f"{LZ}/{FILE}", headers=headers).status_code == 200


def test_outsider_landing_zone_listing_is_empty(client: TestClient, outsider: dict[str, str], owned: Owned) -> None:
    assert client.get(LZ + "/", headers=outsider).json()["items"] == []


def test_outsider_may_reuse_the_name(client: TestClient, outsider: dict[str, str], owned: Owned) -> None:
    assert client.post(EA + "/", json=seed_audience(), headers=outsider).status_code == 202


def test_token_of_org_b_with_org_a_header_is_401(
    client: TestClient, creds: dict[str, str], other_org_headers: dict[str, str], owned: Owned
) -> None:
    crossed = dict(other_org_headers, **{"x-gw-ims-org-id": creds["org_id"]})
    assert_problem(client.get(f"{EA}/{owned.audience_id}", headers=crossed), 401, "100921-401", creds["org_id"])


def test_org_b_has_no_sandbox_dev(client: TestClient, other_org_headers: dict[str, str], dev_headers: dict) -> None:
    resp = client.get(EA + "/", headers=dict(other_org_headers, **{"x-sandbox-name": "dev"}))
    assert_problem(resp, 404, "100910-404", "dev")
