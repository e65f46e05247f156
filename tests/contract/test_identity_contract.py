"""audiencehub's identity namespace answers checked against Adobe's published Identity Service specification.

``specs/identity-service.yaml`` is OpenAPI 3.0 whose component schemas are JSON Schema with annotations
that Draft 7 ignores (``format: int64`` is checked by a format checker of our own). Two readings of it:

- as published, except ``idType`` in answers: the spec spells that enum three ways (``Cookie`` and
  ``Non_people`` in ``Namespace``, ``COOKIE`` and ``Non_people`` in ``listNamespaces``) and AEP's docs
  answer both ``COOKIE`` (list) and ``Cross_device`` (create). In answers every spelling is read as one
  value, its capitals, which is what audiencehub answers; requests are checked against the enums as
  published (audiencehub accepts an idType in any case).
- strict: every property the spec names is required, and nothing else may appear except
  ``namespaceType`` (``Standard``/``Custom``), which AEP's answers carry and the spec does not name.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.domain.namespaces import IdType
from tests.contract.support import Contract, format_checker, json_body, our_operation_ids

BASE = "/data/core/idnamespace"
NAMESPACE_SCHEMAS = ("Namespace", "updateNamespace")

# The namespace operations audiencehub serves: (spec path, method, operationId).
OPERATIONS = [
    ("/idnamespace/identities", "get", "getIdNamespaces"),
    ("/idnamespace/identities", "post", "createNamespace"),
    ("/idnamespace/identities/{ID}", "get", "retrieveIdentityNamespace"),
    ("/idnamespace/identities/{ID}", "put", "updateIdentityNamespace"),
]


# -- the specification ---------------------------------------------------------------------------


def _id_type_schemas(doc: dict[str, Any], *, answers_only: bool = False) -> Iterator[dict[str, Any]]:
    s = doc["components"]["schemas"]
    requests = () if answers_only else ("namespaceCreate", "namespaceUpdate")
    for name in (*NAMESPACE_SCHEMAS, *requests):
        yield s[name]["properties"]["idType"]
    yield s["listNamespaces"]["items"]["properties"]["idType"]


def _read(doc: dict[str, Any]) -> None:
    """The answers' ``idType`` enums read in capitals (see the module's docstring)."""
    for prop in _id_type_schemas(doc, answers_only=True):
        prop["enum"] = sorted({v.upper() for v in prop["enum"]})


def _close(doc: dict[str, Any]) -> None:
    s = doc["components"]["schemas"]
    namespace_type = {"type": "string", "enum": ["Standard", "Custom"]}
    for item in (*(s[n] for n in NAMESPACE_SCHEMAS), s["listNamespaces"]["items"]):
        item["properties"]["namespaceType"] = namespace_type
        item["required"] = sorted(item["properties"])
        item["additionalProperties"] = False


SPEC = Contract("identity-service", read=_read, strict=_close, checker=format_checker("int64"))


# -- the app -------------------------------------------------------------------------------------

LOYALTY = {
    "name": "Loyalty Member",
    "code": "Loyalty",
    "description": "Loyalty Program Member ID",
    "idType": "Cross_device",
}


def create(client: TestClient, headers: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
    created: dict[str, Any] = json_body(client.post(BASE + "/identities", json=body or LOYALTY, headers=headers))
    return created


# -- the operations ------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method", "operation_id"), OPERATIONS, ids=[o for _, _, o in OPERATIONS])
def test_the_spec_has_each_operation_we_serve(path: str, method: str, operation_id: str) -> None:
    operation = SPEC.operation(path, method)
    assert operation["operationId"] == operation_id
    assert "Identity Namespace" in operation["tags"]
    assert "200" in operation["responses"]


def test_our_openapi_names_the_spec_operations_at_the_spec_paths(client: TestClient) -> None:
    ours = our_operation_ids(client, BASE, strip="/data/core", key=lambda path: path.replace("{namespace_id}", "{ID}"))
    assert ours == {(path, method): operation_id for path, method, operation_id in OPERATIONS}


def test_the_spec_id_types_are_ours_in_capitals() -> None:
    for prop in _id_type_schemas(copy.deepcopy(SPEC.published())):
        assert {v.upper() for v in prop["enum"]} == {t.value for t in IdType}, prop["enum"]


# -- the answers ---------------------------------------------------------------------------------


def test_the_list_conforms_to_list_namespaces(client: TestClient, headers: dict[str, str]) -> None:
    create(client, headers)
    resp = client.get(BASE + "/identities", headers=headers)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    SPEC.assert_conforms("listNamespaces", answer)
    SPEC.assert_answer_conforms("/idnamespace/identities", "get", 200, answer)
    assert {ns["custom"] for ns in answer} == {False, True}


def test_the_create_answer_conforms_to_namespace(client: TestClient, headers: dict[str, str]) -> None:
    created = create(client, headers)
    SPEC.assert_conforms("Namespace", created)
    SPEC.assert_answer_conforms("/idnamespace/identities", "post", 200, created)
    # The shape of AEP's documented create answer (its values differ: ids, times).
    documented = {"updateTime", "code", "status", "description", "id", "createTime", "idType", "name", "custom"}
    assert set(created) == documented | {"namespaceType"}


def test_the_get_answer_conforms_to_namespace(client: TestClient, headers: dict[str, str]) -> None:
    created = create(client, headers)
    for ns_id in (created["id"], 4):
        resp = client.get(f"{BASE}/identities/{ns_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        SPEC.assert_conforms("Namespace", resp.json())
        SPEC.assert_answer_conforms("/idnamespace/identities/{ID}", "get", 200, resp.json())


def test_the_put_answer_conforms_to_an_array_of_update_namespace(client: TestClient, headers: dict[str, str]) -> None:
    created = create(client, headers)
    # namespaceUpdate spells this value CROSS_DEVICE where namespaceCreate spells it Cross_device.
    body = dict(LOYALTY, name="Loyalty Member (renamed)", idType="CROSS_DEVICE")
    assert SPEC.errors("namespaceUpdate", body) == []
    resp = client.put(f"{BASE}/identities/{created['id']}", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    SPEC.assert_answer_conforms("/idnamespace/identities/{ID}", "put", 200, resp.json())
    [item] = resp.json()
    SPEC.assert_conforms("updateNamespace", item)
    assert item["id"] == created["id"], "the spec: ID should match the ID sent in the request path"


def test_the_spec_example_request_is_accepted(client: TestClient, headers: dict[str, str]) -> None:
    request = SPEC.example_of(SPEC.schemas()["namespaceCreate"])
    assert SPEC.errors("namespaceCreate", request) == []
    assert request["code"] == "Loyalty" and request["idType"] == "Email"
    created = create(client, headers, request)
    assert (created["code"], created["idType"], created["name"]) == ("Loyalty", "EMAIL", request["name"])
    SPEC.assert_conforms("Namespace", created)


def test_the_bodies_we_send_conform_to_the_request_schemas() -> None:
    assert SPEC.errors("namespaceCreate", LOYALTY) == []
    assert SPEC.errors("namespaceUpdate", dict(LOYALTY, idType="CROSS_DEVICE")) == []


# -- the validators themselves fail when they should ---------------------------------------------


@pytest.fixture
def answer(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    return create(client, headers)


@pytest.mark.parametrize(
    ("change", "strict_only"),
    [
        (lambda n: n.update(id=str(n["id"])), False),
        (lambda n: n.update(createTime=n["createTime"] / 1000), False),
        (lambda n: n.update(updateTime=2**63), False),
        (lambda n: n.update(custom="true"), False),
        (lambda n: n.update(idType="FAX"), False),
        (lambda n: n.update(status=1), False),
        (lambda n: n.pop("createTime"), True),
        (lambda n: n.pop("description"), True),
        (lambda n: n.update(namespaceType="Other"), True),
        (lambda n: n.update(etag="x"), True),
    ],
    ids=[
        "id-string",
        "createTime-seconds",
        "updateTime-beyond-int64",
        "custom-string",
        "idType-unknown",
        "status-number",
        "without-createTime",
        "without-description",
        "namespaceType-unknown",
        "unknown-property",
    ],
)
def test_the_validators_reject_an_answer_that_breaks_the_contract(
    answer: dict[str, Any], change: Any, strict_only: bool
) -> None:
    SPEC.assert_conforms("Namespace", answer)
    broken = copy.deepcopy(answer)
    change(broken)
    for name in NAMESPACE_SCHEMAS:
        assert SPEC.errors(name, broken, strict=True), (name, broken)
        assert bool(SPEC.errors(name, broken)) is not strict_only, (name, broken)
    assert SPEC.errors("listNamespaces", [broken], strict=True), broken


def test_the_put_answer_must_be_an_array(answer: dict[str, Any]) -> None:
    schema = SPEC.response_schema("/idnamespace/identities/{ID}", "put")
    assert SPEC.errors_against(schema, [answer]) == []
    assert SPEC.errors_against(schema, answer)
