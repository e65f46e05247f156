"""audiencehub's Query Service answers checked against Adobe's published Query Service specification.

``specs/query-service.yaml`` (OpenAPI 3.0) names no required properties and allows any others, so each answer
is validated twice: as published, and against a strict overlay that states what audiencehub promises: every
property it always answers is required, and nothing else may appear but two additions of its own, ``_links.self``
and ``_links.results`` (where a successful query's rows download: AEP's API has no such link, its clients read
rows over the PostgreSQL protocol).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import wait_for
from tests.contract.support import Contract, json_body, our_operation_ids, shape

BASE = "/data/foundation/query"
OPERATIONS = [
    ("/connection_parameters", "get", "listConnectionParameters"),
    ("/queries", "get", "listQueries"),
    ("/queries", "post", "createQuery"),
    ("/queries/{queryid}", "get", "retrieveQuery"),
    ("/queries/{queryid}", "patch", "cancelQuery"),
]
QUERY_OPTIONAL = {"effectiveSQL", "templateName", "copyURI"}


def _close(doc: dict[str, Any]) -> None:
    s = doc["components"]["schemas"]
    query = s["query"]
    query["required"] = sorted(set(query["properties"]) - QUERY_OPTIONAL)
    query["additionalProperties"] = False
    links = s["query_links"]
    link = {"type": "object", "required": ["href"], "properties": {"href": {"type": "string"}}}
    links["properties"]["self"] = link
    links["properties"]["results"] = {**link, "properties": {**link["properties"], "method": {"type": "string"}}}
    links["required"] = ["self", "soft_delete", "cancel", "referenced_datasets"]
    links["additionalProperties"] = False
    for name in ("soft_delete", "cancel"):
        links["properties"][name]["required"] = ["href", "method", "body"]
        links["properties"][name]["additionalProperties"] = False
    s["error"]["required"] = ["code", "message", "errorType"]
    s["error"]["additionalProperties"] = False
    listing = s["query_list"]
    listing["properties"]["queries"]["type"] = "array"
    listing["required"] = ["queries", "_page", "_links", "version"]
    listing["additionalProperties"] = False
    s["_page"]["required"] = ["orderby", "count"]
    s["_page"]["additionalProperties"] = False
    s["query_list_links"]["additionalProperties"] = False
    s["next"]["required"] = ["href"]
    params = s["connection_parameters"]
    params["required"] = ["host", "port", "username", "token", "version", "dbName"]
    params["additionalProperties"] = False
    request = s["query_def"]
    request["required"] = ["sql", "dbName"]
    request["additionalProperties"] = False


SPEC = Contract("query-service", strict=_close)


def submit(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = json_body(client.post(BASE + "/queries", json=body, headers=headers), 202)
    return created


def finished(client: TestClient, headers: dict[str, str], query_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = json_body(client.get(f"{BASE}/queries/{query_id}", headers=headers))
        return body if body["state"] not in ("SUBMITTED", "IN_PROGRESS") else None

    return wait_for(done, what="the query")


@pytest.mark.parametrize(("path", "method", "operation_id"), OPERATIONS, ids=[o for _, _, o in OPERATIONS])
def test_the_spec_has_each_operation_we_serve(path: str, method: str, operation_id: str) -> None:
    assert SPEC.operation(path, method)["operationId"] == operation_id


def test_our_openapi_names_the_spec_operations_at_the_spec_paths(client: TestClient) -> None:
    ours = our_operation_ids(client, BASE, strip=BASE)
    for path, method, operation_id in OPERATIONS:
        assert ours.get((shape(path), method)) == operation_id, (path, method, ours)


def test_each_operation_answers_with_a_status_the_spec_declares(client: TestClient, headers: dict[str, str]) -> None:
    created = client.post(BASE + "/queries", json={"sql": "SELECT 1 AS one"}, headers=headers)
    assert created.status_code in SPEC.success_codes("/queries", "post"), created.text
    query_id = created.json()["id"]
    finished(client, headers, query_id)
    for path, method, kwargs in (
        ("/connection_parameters", "get", {}),
        ("/queries", "get", {}),
        ("/queries/{queryid}", "get", {}),
        ("/queries/{queryid}", "patch", {"json": {"op": "soft_delete"}}),
    ):
        resp = client.request(method.upper(), BASE + path.replace("{queryid}", query_id), headers=headers, **kwargs)
        assert resp.status_code in SPEC.success_codes(path, method), (path, method, resp.text)


def test_connection_parameters_conform(client: TestClient, headers: dict[str, str]) -> None:
    got = json_body(client.get(BASE + "/connection_parameters", headers=headers))
    SPEC.assert_answer_conforms("/connection_parameters", "get", 200, got)


def test_a_query_in_each_state_conforms(client: TestClient, headers: dict[str, str]) -> None:
    created = submit(client, headers, {"sql": "SELECT 1 AS one", "name": "one", "description": "just one"})
    SPEC.assert_answer_conforms("/queries", "post", 202, created)
    SPEC.assert_conforms("query_def", created["request"])
    done = finished(client, headers, created["id"])
    assert done["state"] == "SUCCESS"
    SPEC.assert_answer_conforms("/queries/{queryid}", "get", 200, done)
    failed = finished(client, headers, submit(client, headers, {"sql": "SELECT nope FROM nowhere"})["id"])
    assert failed["state"] == "FAILED" and failed["errors"]
    SPEC.assert_conforms("query", failed)
    ctas = submit(client, headers, {"sql": "SELECT 1 AS one", "ctasParameters": {"datasetName": "Contract CTAS"}})
    ctas_done = finished(client, headers, ctas["id"])
    assert ctas_done["state"] == "SUCCESS" and "created_dataset" in ctas_done["_links"]
    SPEC.assert_conforms("query", ctas_done)
    listed = json_body(client.get(BASE + "/queries", params={"limit": 1}, headers=headers))
    assert listed["_links"]["next"]["href"]
    SPEC.assert_answer_conforms("/queries", "get", 200, listed)


def test_the_spec_example_request_is_understood(client: TestClient, headers: dict[str, str]) -> None:
    """The spec's own example body: its parameters fill ``$key``s, so an SQL of ours that uses them runs."""
    example = SPEC.example_of(SPEC.schemas()["query_def"])
    # NOTE: the spec's example of insertIntoParameters is a string, its schema an object: the example is left out.
    example.pop("insertIntoParameters")
    assert SPEC.errors("query_def", example) == []
    body = {
        "dbName": "prod:all",
        "sql": "SELECT '$key' AS k, '$key1' AS k1",
        "queryParameters": example["queryParameters"],
        "name": example["name"],
        "description": example["description"],
    }
    done = finished(client, headers, submit(client, headers, body)["id"])
    assert done["state"] == "SUCCESS" and done["request"]["name"] == example["name"]
