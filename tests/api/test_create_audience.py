"""POST /external-audience/ accepted: what the answer and the operation echo, and duplicate names and ids."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.support import assert_problem
from tests.conftest import EA, create_audience, seed_audience, wait_for

CONNECTION_ID = "1d1d4bc5-b527-46a3-9863-530246a61b2b"


def _post(client: TestClient, headers: dict[str, str], body: Any) -> Any:
    return client.post(EA + "/", json=body, headers=headers)


def _operation(client: TestClient, headers: dict[str, str], op_id: str, url: str | None = None) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        resp = client.get(url or f"{EA}/operations/{op_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        op: dict[str, Any] = resp.json()
        return op if op["status"] != "PROCESSING" else None

    return wait_for(done, what="operation")


# -- the seed request --------------------------------------------------------------------------


def test_create_answers_202_with_operation_id(client: TestClient, headers: dict[str, str]) -> None:
    resp = _post(client, headers, seed_audience())
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert set(body) == {"operationId", "operationDetails"}
    assert len(body["operationId"]) == 36


def test_create_echoes_canonical_identity_namespace(client: TestClient, headers: dict[str, str]) -> None:
    details = _post(client, headers, seed_audience()).json()["operationDetails"]
    assert details["fields"][0] == {"name": "ppid", "type": "string", "identityNs": "Email"}


def test_create_echoes_ttl_string_as_integer(client: TestClient, headers: dict[str, str]) -> None:
    details = _post(client, headers, seed_audience()).json()["operationDetails"]
    assert details["ttlInDays"] == 40
    assert isinstance(details["ttlInDays"], int)


def test_create_echoes_the_seed_details(client: TestClient, headers: dict[str, str]) -> None:
    details = _post(client, headers, seed_audience()).json()["operationDetails"]
    assert details["name"] == "Sample external audience"
    assert details["description"] == "A sample version of an external audience"
    assert details["fields"][1] == {"name": "list_id", "type": "string", "labels": ["core/C2", "custom/deep"]}
    assert details["fields"][2:] == [
        {"name": "delete", "type": "number"},
        {"name": "process_consent", "type": "string"},
    ]
    assert details["labels"] == ["core/C1"]
    assert details["audienceType"] == "people"
    assert details["originName"] == "CUSTOM_UPLOAD"


def test_create_echoes_wrapped_source_spec_wrapped(client: TestClient, headers: dict[str, str]) -> None:
    details = _post(client, headers, seed_audience()).json()["operationDetails"]
    assert details["sourceSpec"] == {
        "params": {
            "path": "activation/sample-source/example.csv",
            "type": "file",
            "sourceType": "Cloud Storage",
            "cloudType": "DLZ",
        }
    }


def test_create_echoes_bare_source_spec_bare(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["sourceSpec"] = body["sourceSpec"]["params"]
    details = _post(client, headers, body).json()["operationDetails"]
    assert details["sourceSpec"] == {
        "path": "activation/sample-source/example.csv",
        "type": "file",
        "sourceType": "Cloud Storage",
        "cloudType": "DLZ",
    }


def test_source_spec_without_cloud_type_or_connection_is_the_landing_zone(
    client: TestClient, headers: dict[str, str]
) -> None:
    body = seed_audience()
    del body["sourceSpec"]["params"]["cloudType"]
    audience_id = create_audience(client, headers, body)
    assert client.get(f"{EA}/{audience_id}", headers=headers).json()["sourceSpec"]["path"] == (
        "activation/sample-source/example.csv"
    )


# -- the operation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        EA + "/operations/{}",
        EA + "/operations/{}/",
        "/data/core/ais/external-audiences/operations/{}",
        "/data/core/ais/external-audiences/operations/{}/",
    ],
)
def test_operation_answers_on_both_spellings(client: TestClient, headers: dict[str, str], template: str) -> None:
    op_id = _post(client, headers, seed_audience()).json()["operationId"]
    op = _operation(client, headers, op_id, template.format(op_id))
    assert op["operationId"] == op_id
    assert op["status"] == "SUCCESS"


def test_operation_reports_audience_and_details(client: TestClient, headers: dict[str, str]) -> None:
    created = _post(client, headers, seed_audience()).json()
    op = _operation(client, headers, created["operationId"])
    assert op["audienceName"] == "Sample external audience"
    assert op["operationDetails"] == created["operationDetails"]
    assert client.get(f"{EA}/{op['audienceId']}", headers=headers).status_code == 200
    for key in ("createdAt", "updatedAt"):
        assert isinstance(op[key], int)
    assert op["createdBy"] == op["updatedBy"]
    assert op["createdBy"].endswith("@techacct.adobe.com")


def test_create_without_trailing_slash_is_accepted(client: TestClient, headers: dict[str, str]) -> None:
    assert client.post(EA, json=seed_audience(), headers=headers).status_code == 202


def test_create_without_content_type_reads_json(client: TestClient, headers: dict[str, str]) -> None:
    """Seed 003's curl calls send no Content-Type."""
    resp = client.post(EA + "/", content=json.dumps(seed_audience()).encode(), headers=headers)
    assert resp.status_code == 202, resp.text


# -- ttlInDays ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [1, 90, "90", " 7 "])
def test_ttl_bounds_are_accepted(client: TestClient, headers: dict[str, str], ttl: Any) -> None:
    resp = _post(client, headers, seed_audience(ttlInDays=ttl))
    assert resp.status_code == 202, resp.text
    assert resp.json()["operationDetails"]["ttlInDays"] == int(str(ttl).strip())


def test_default_ttl_is_30_on_get(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    del body["ttlInDays"]
    audience_id = create_audience(client, headers, body)
    assert client.get(f"{EA}/{audience_id}", headers=headers).json()["ttlInDays"] == 30


# -- fields ------------------------------------------------------------------------------------


@pytest.mark.parametrize("given,echoed", [("ECID", "ECID"), ("crmid", "CRMID"), ("email_lc_sha256", "Email_LC_SHA256")])
def test_identity_namespace_is_echoed_canonically(
    client: TestClient, headers: dict[str, str], given: str, echoed: str
) -> None:
    body = seed_audience()
    body["fields"][0]["identityNs"] = given
    assert _post(client, headers, body).json()["operationDetails"]["fields"][0]["identityNs"] == echoed


# -- other properties ------------------------------------------------------------------------


def test_unknown_top_level_keys_are_ignored(client: TestClient, headers: dict[str, str]) -> None:
    resp = _post(client, headers, seed_audience(somethingElse=1))
    assert resp.status_code == 202, resp.text
    assert "somethingElse" not in resp.json()["operationDetails"]


# -- a refused create ------------------------------------------------------------------------


def test_refused_create_leaves_no_audience(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["sourceSpec"]["params"].update(cloudType="GCS", baseConnectionId=CONNECTION_ID)
    assert _post(client, headers, body).status_code == 422
    assert client.get(EA + "/", headers=headers).json()["_page"]["totalCount"] == 0
    create_audience(client, headers, seed_audience())


# -- duplicates --------------------------------------------------------------------------------


def test_same_name_twice_is_409(client: TestClient, headers: dict[str, str]) -> None:
    create_audience(client, headers, seed_audience())
    body = seed_audience(customAudienceId="other")
    assert_problem(_post(client, headers, body), 409, "100950-409", "name", "Sample external audience")


def test_same_name_twice_while_the_first_is_creating_is_409(client: TestClient, headers: dict[str, str]) -> None:
    assert _post(client, headers, seed_audience()).status_code == 202
    assert_problem(_post(client, headers, seed_audience()), 409, "100950-409", "Sample external audience")


def test_same_custom_audience_id_is_409(client: TestClient, headers: dict[str, str]) -> None:
    create_audience(client, headers, seed_audience(customAudienceId="crm-42"))
    resp = _post(client, headers, seed_audience(name="another", customAudienceId="crm-42"))
    assert_problem(resp, 409, "100950-409", "customAudienceId", "crm-42")


def test_different_names_without_custom_id_are_both_created(client: TestClient, headers: dict[str, str]) -> None:
    create_audience(client, headers, seed_audience(name="one"))
    create_audience(client, headers, seed_audience(name="two"))
    assert client.get(EA + "/", headers=headers).json()["_page"]["totalCount"] == 2
