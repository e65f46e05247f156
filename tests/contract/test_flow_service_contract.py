"""audiencehub's base-connection answers checked against Adobe's published Flow Service specification.

``specs/flow-service.yaml`` is OpenAPI 3.0; its component schemas are JSON Schema with annotations
(``example``, ``description``) that Draft 7 ignores, and ``format: int64`` checked here by a format
checker of our own. The spec's schemas declare no ``required`` properties and allow any other ones,
so each answer is validated twice: against the spec as published, and against a strict overlay of
it (every property the spec names is required, unless optional by its description, and nothing
else may appear) that states what audiencehub promises.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.contract.support import Contract, format_checker, json_body, our_operation_ids, shape

BASE = "/data/foundation/flowservice"
S3_ID = "ecadc60c-7455-4d87-84dc-2a0e293d997b"
GCS_ID = "32e8f412-cdf7-464c-9885-78184cb113fd"
SFTP_ID = "b7bf2577-4520-42c9-bae9-cad01560f7bc"

# The connection operations audiencehub serves: (spec path, method, operationId).
OPERATIONS = [
    ("/connections", "post", "createConnection"),
    ("/connections", "get", "listConnections"),
    ("/connections/{BASE_CONNECTION_ID}", "get", "retrieveConnection"),
    ("/connections/{BASE_CONNECTION_ID}/test", "get", "testConnection"),
    ("/connections/{BASE_CONNECTION_ID}/", "patch", "patchConnection"),
    ("/connections/{BASE_CONNECTION_ID}/", "delete", "deleteConnection"),
]


# -- the specification ---------------------------------------------------------------------------


def _close(doc: dict[str, Any]) -> None:
    """The connection schemas closed: what the spec names is required, and nothing more may appear."""
    s = doc["components"]["schemas"]
    optional = {"ConnectionItemDTO": {"description"}}
    for name in ("ConnectionItemDTO", "SpecInfoDTO", "AuthInfoDTO", "CreateConnectionResponse"):
        s[name]["required"] = sorted(set(s[name]["properties"]) - optional.get(name, set()))
        s[name]["additionalProperties"] = False
    # The spec's other list responses (flows, source connections) page with ``_links`` and ``count``.
    sibling = s["SourceConnectionsListResponse"]["properties"]
    listing = s["ConnectionListResponse"]
    listing["properties"]["_links"] = copy.deepcopy(sibling["_links"])
    listing["properties"]["count"] = copy.deepcopy(sibling["count"])
    listing["required"] = ["items"]
    listing["additionalProperties"] = False
    s["PageLinksResponse"]["required"] = ["next"]
    s["PageLinksResponse"]["additionalProperties"] = False
    s["PageLink"]["required"] = ["href"]
    s["PageLink"]["additionalProperties"] = False
    # A secret param is answered as a masked string, never as the object or number it was sent as.
    s["AuthCreateBaseDTO"]["additionalProperties"] = {"type": ["string", "integer", "boolean"]}
    s["TestConnectionResponse"]["required"] = ["result"]


SPEC = Contract("flow-service", strict=_close, checker=format_checker("int64", "int32"))


# -- the app -------------------------------------------------------------------------------------


def s3_body(name: str = "contract s3", url: str = "http://127.0.0.1:1") -> dict[str, Any]:
    return {
        "name": name,
        "description": "for the contract tests",
        "auth": {
            "specName": "Access Key",
            "params": {
                "s3AccessKey": "AKIACONTRACT0000",
                "s3SecretKey": "contract-secret-0000",
                "serviceUrl": url,
                "bucketName": "contract-bucket",
            },
        },
        "connectionSpec": {"id": S3_ID, "version": "1.0"},
    }


def sftp_body() -> dict[str, Any]:
    import asyncssh

    return {
        "name": "contract sftp",
        "auth": {
            "specName": "Basic Authentication for sftp",
            "params": {
                "host": "127.0.0.1",
                "port": 2222,
                "userName": "contract",
                "password": "contract-password-0000",
                "knownHostKey": asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode(),
            },
        },
        "connectionSpec": {"id": SFTP_ID, "version": "1.0"},
    }


def create(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = json_body(client.post(BASE + "/connections", json=body, headers=headers), 201)
    return created


# -- the operations ------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method", "operation_id"), OPERATIONS, ids=[o for _, _, o in OPERATIONS])
def test_the_spec_has_each_operation_we_serve(path: str, method: str, operation_id: str) -> None:
    operation = SPEC.operation(path, method)
    assert operation["operationId"] == operation_id
    assert "Connections" in operation["tags"]


def test_our_openapi_names_the_spec_operations_at_the_spec_paths(client: TestClient) -> None:
    ours = our_operation_ids(client, BASE + "/connections", strip=BASE)
    for path, method, operation_id in OPERATIONS:
        assert ours.get((shape(path), method)) == operation_id, (path, method, ours)


def test_each_spec_operation_answers_at_the_spec_path_with_a_status_the_spec_declares(
    client: TestClient, headers: dict[str, str]
) -> None:
    """Paths taken verbatim from the spec (PATCH and DELETE with their trailing slash)."""
    resp = client.post(BASE + "/connections", json=s3_body(), headers=headers)
    assert resp.status_code in SPEC.success_codes("/connections", "post"), resp.text
    assert "Location" in SPEC.operation("/connections", "post")["responses"]["201"]["headers"]
    assert resp.headers["Location"].endswith("/connections/" + resp.json()["id"])
    connection_id, etag = resp.json()["id"], resp.json()["etag"]

    def url(path: str) -> str:
        return BASE + path.replace("{BASE_CONNECTION_ID}", connection_id)

    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("/connections", "get", {}),
        ("/connections/{BASE_CONNECTION_ID}", "get", {}),
        ("/connections/{BASE_CONNECTION_ID}/test", "get", {}),
        (
            "/connections/{BASE_CONNECTION_ID}/",
            "patch",
            {
                "json": [{"op": "replace", "path": "/name", "value": "renamed"}],
                "headers": {**headers, "if-match": etag},
            },
        ),
        ("/connections/{BASE_CONNECTION_ID}/", "delete", {}),
    ]
    for path, method, kwargs in calls:
        kwargs.setdefault("headers", headers)
        resp = client.request(method.upper(), url(path), **kwargs)
        assert resp.status_code in SPEC.success_codes(path, method), (method, path, resp.status_code, resp.text)


# -- the answers ---------------------------------------------------------------------------------


def test_create_answer_conforms_to_create_connection_response(client: TestClient, headers: dict[str, str]) -> None:
    created = create(client, headers, s3_body())
    SPEC.assert_conforms("CreateConnectionResponse", created)
    example = SPEC.operation("/connections", "post")["responses"]["201"]["content"]["application/json"]["example"]
    assert set(created) == set(example)
    # Same shape as the spec's example etag: a quoted string.
    assert re.fullmatch(r'"[^"]+"', created["etag"]) and re.fullmatch(r'"[^"]+"', example["etag"])


def test_the_spec_example_request_is_accepted(client: TestClient, headers: dict[str, str]) -> None:
    """A create body made of the spec's own examples (a Google Cloud Storage HMAC connection)."""
    request = SPEC.example_of(SPEC.schemas()["CreateConnectionRequest"])
    assert SPEC.errors("CreateConnectionRequest", request) == []
    assert request["connectionSpec"]["id"] == GCS_ID
    created = create(client, headers, request)
    got = client.get(f"{BASE}/connections/{created['id']}", headers=headers)
    assert got.status_code == 200, got.text
    SPEC.assert_conforms("ConnectionListResponse", got.json())
    item = got.json()["items"][0]
    assert item["auth"]["specName"] == request["auth"]["specName"]
    assert item["auth"]["params"] == {"accessKeyId": "********", "secretAccessKey": "********"}


def test_the_bodies_we_send_conform_to_create_connection_request() -> None:
    for body in (s3_body(), sftp_body()):
        assert SPEC.errors("CreateConnectionRequest", body) == [], body


def test_get_answer_conforms_to_connection_list_response(client: TestClient, headers: dict[str, str]) -> None:
    before = int(time.time() * 1000)
    created = create(client, headers, s3_body())
    after = int(time.time() * 1000)
    resp = client.get(f"{BASE}/connections/{created['id']}", headers=headers)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    SPEC.assert_conforms("ConnectionListResponse", answer)
    [item] = answer["items"]
    SPEC.assert_conforms("ConnectionItemDTO", item)
    # int64 epoch milliseconds, as the spec describes createdAt and updatedAt.
    assert before <= item["createdAt"] <= after and before <= item["updatedAt"] <= after
    assert item["etag"] == item["version"] == created["etag"]


def test_list_answer_with_a_next_page_conforms(client: TestClient, headers: dict[str, str]) -> None:
    for body in (s3_body("one"), s3_body("two"), sftp_body()):
        create(client, headers, body)
    resp = client.get(BASE + "/connections", params={"limit": 2}, headers=headers)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    SPEC.assert_conforms("ConnectionListResponse", answer)
    assert len(answer["items"]) == 2 and answer["count"] == 3
    href = answer["_links"]["next"]["href"]
    example = SPEC.schemas()["PageLink"]["properties"]["href"]["example"]
    assert href.split("?")[0] == example.split("?")[0] == "/connections"
    assert "continuationToken=" in href
    last = client.get(BASE + href, headers=headers).json()
    SPEC.assert_conforms("ConnectionListResponse", last)
    assert len(last["items"]) == 1 and "_links" not in last


def test_empty_list_conforms(client: TestClient, headers: dict[str, str]) -> None:
    answer = client.get(BASE + "/connections", headers=headers).json()
    SPEC.assert_conforms("ConnectionListResponse", answer)
    assert answer == {"items": [], "count": 0}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_test_answer_conforms_to_test_connection_response(
    client: TestClient, headers: dict[str, str], closed_port: int, method: str
) -> None:
    created = create(client, headers, s3_body(url=f"http://127.0.0.1:{closed_port}"))
    resp = client.request(method, f"{BASE}/connections/{created['id']}/test", headers=headers)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    SPEC.assert_conforms("TestConnectionResponse", answer)
    assert answer["result"] is False
    # audiencehub's additions beside the spec's ``result``.
    assert set(answer) == {"result", "reason", "elapsedMs"}
    assert isinstance(answer["reason"], str) and answer["reason"]
    assert isinstance(answer["elapsedMs"], int) and not isinstance(answer["elapsedMs"], bool)


def test_patch_answer_has_the_shape_of_the_spec_example(client: TestClient, headers: dict[str, str]) -> None:
    created = create(client, headers, s3_body())
    # The spec's PatchInstruction spells its ops in capitals.
    ops = SPEC.schemas()["PatchInstruction"]["properties"]["op"]["enum"]
    assert "REPLACE" in ops
    resp = client.patch(
        f"{BASE}/connections/{created['id']}/",
        json=[{"op": "REPLACE", "path": "/name", "value": "renamed"}],
        headers={**headers, "if-match": created["etag"]},
    )
    assert resp.status_code == 200, resp.text
    example = SPEC.operation("/connections/{BASE_CONNECTION_ID}/", "patch")["responses"]["200"]["content"][
        "application/json"
    ]["example"]
    assert set(resp.json()) == set(example)
    SPEC.assert_conforms("CreateConnectionResponse", resp.json())
    assert resp.json()["id"] == created["id"] and resp.json()["etag"] != created["etag"]


# -- the validators themselves fail when they should ---------------------------------------------


@pytest.fixture
def item(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    created = create(client, headers, s3_body())
    got: dict[str, Any] = client.get(f"{BASE}/connections/{created['id']}", headers=headers).json()["items"][0]
    return got


@pytest.mark.parametrize(
    ("change", "strict_only"),
    [
        (lambda i: i.update(createdAt=str(i["createdAt"])), False),
        (lambda i: i.update(createdAt=i["createdAt"] / 1000), False),
        (lambda i: i.update(updatedAt=True), False),
        (lambda i: i.update(createdAt=2**63), False),
        (lambda i: i.update(state=1), False),
        (lambda i: i.update(etag=None), False),
        (lambda i: i["connectionSpec"].pop("version"), False),
        (lambda i: i["connectionSpec"].update(version=1.0), False),
        (lambda i: i["auth"].pop("specName"), False),
        (lambda i: i["auth"]["params"].update(accessKeyId=7), False),
        (lambda i: i.pop("createdAt"), True),
        (lambda i: i.pop("etag"), True),
        (lambda i: i.update(secret="x"), True),
        (lambda i: i["auth"].update(secrets={}), True),
        (lambda i: i["auth"]["params"].update(serviceAccountKey={"private_key": "x"}), True),
    ],
    ids=[
        "createdAt-string",
        "createdAt-float-seconds",
        "updatedAt-boolean",
        "createdAt-beyond-int64",
        "state-number",
        "etag-null",
        "spec-without-version",
        "spec-version-number",
        "auth-without-specName",
        "accessKeyId-number",
        "without-createdAt",
        "without-etag",
        "unknown-property",
        "unknown-auth-property",
        "secret-shown-as-object",
    ],
)
def test_the_validators_reject_an_answer_that_breaks_the_contract(
    item: dict[str, Any], change: Any, strict_only: bool
) -> None:
    SPEC.assert_conforms("ConnectionItemDTO", item)
    broken = copy.deepcopy(item)
    change(broken)
    assert SPEC.errors("ConnectionListResponse", {"items": [broken]}, strict=True), broken
    assert bool(SPEC.errors("ConnectionListResponse", {"items": [broken]})) is not strict_only, broken


@pytest.mark.parametrize(
    ("name", "instance"),
    [
        ("CreateConnectionResponse", {"id": 1, "etag": '"e"'}),
        ("CreateConnectionResponse", {"id": "x"}),
        ("TestConnectionResponse", {"result": "false"}),
        ("TestConnectionResponse", {}),
        ("ConnectionListResponse", {"items": {}}),
        ("ConnectionListResponse", {"items": [], "count": "3"}),
        ("ConnectionListResponse", {"items": [], "_links": {"next": {"href": 5}}}),
        ("ConnectionListResponse", {"items": [], "_links": {"next": {}}}),
    ],
)
def test_the_validators_reject_other_broken_answers(name: str, instance: Any) -> None:
    assert SPEC.errors(name, instance, strict=True), instance
