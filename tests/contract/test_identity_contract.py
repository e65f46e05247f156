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
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT7

from audiencehub.domain.namespaces import IdType

SPEC_FILE = Path(__file__).parent / "specs" / "identity-service.yaml"
BASE = "/data/core/idnamespace"
SPEC_URI = "urn:adobe:identity-service"
STRICT_URI = "urn:audiencehub:identity-service-strict"
INT64 = (-(2**63), 2**63 - 1)
NAMESPACE_SCHEMAS = ("Namespace", "updateNamespace")

# The namespace operations audiencehub serves: (spec path, method, operationId).
OPERATIONS = [
    ("/idnamespace/identities", "get", "getIdNamespaces"),
    ("/idnamespace/identities", "post", "createNamespace"),
    ("/idnamespace/identities/{ID}", "get", "retrieveIdentityNamespace"),
    ("/idnamespace/identities/{ID}", "put", "updateIdentityNamespace"),
]


# -- the specification ---------------------------------------------------------------------------


@cache
def published() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_FILE.read_text())
    assert str(loaded["openapi"]).startswith("3.0"), loaded["openapi"]
    return loaded


def _id_type_schemas(doc: dict[str, Any], *, answers_only: bool = False) -> Iterator[dict[str, Any]]:
    s = doc["components"]["schemas"]
    requests = () if answers_only else ("namespaceCreate", "namespaceUpdate")
    for name in (*NAMESPACE_SCHEMAS, *requests):
        yield s[name]["properties"]["idType"]
    yield s["listNamespaces"]["items"]["properties"]["idType"]


@cache
def spec() -> dict[str, Any]:
    """The spec as published, with the answers' ``idType`` enums read in capitals (see the module's docstring)."""
    doc = copy.deepcopy(published())
    for prop in _id_type_schemas(doc, answers_only=True):
        prop["enum"] = sorted({v.upper() for v in prop["enum"]})
    return doc


def schemas() -> dict[str, Any]:
    found: dict[str, Any] = spec()["components"]["schemas"]
    return found


@cache
def strict_document() -> dict[str, Any]:
    doc = copy.deepcopy(spec())
    s = doc["components"]["schemas"]
    namespace_type = {"type": "string", "enum": ["Standard", "Custom"]}
    for item in (*(s[n] for n in NAMESPACE_SCHEMAS), s["listNamespaces"]["items"]):
        item["properties"]["namespaceType"] = namespace_type
        item["required"] = sorted(item["properties"])
        item["additionalProperties"] = False
    return doc


def _format_checker() -> FormatChecker:
    checker = FormatChecker()

    @checker.checks("int64")
    def _int64(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or INT64[0] <= value <= INT64[1]

    return checker


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        [(SPEC_URI, DRAFT7.create_resource(spec())), (STRICT_URI, DRAFT7.create_resource(strict_document()))]
    )


def errors_against(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = Draft7Validator(schema, registry=_registry(), format_checker=_format_checker())
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(instance)]


def errors(name: str, instance: Any, *, strict: bool = False) -> list[str]:
    assert name in schemas(), f"{name} is not a schema of the spec"
    return errors_against({"$ref": f"{STRICT_URI if strict else SPEC_URI}#/components/schemas/{name}"}, instance)


def assert_conforms(name: str, instance: Any) -> None:
    assert errors(name, instance) == [], (name, instance)
    assert errors(name, instance, strict=True) == [], (name, instance)


def response_schema(path: str, method: str, *, strict: bool = False) -> dict[str, Any]:
    """The 200 answer's schema of an operation, its ``$ref``s pointed into one of the two documents."""
    found = spec()["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    uri = STRICT_URI if strict else SPEC_URI
    text = yaml.safe_dump(found).replace("'#/components/", f"'{uri}#/components/")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def assert_answer_conforms(path: str, method: str, instance: Any) -> None:
    for strict in (False, True):
        assert errors_against(response_schema(path, method, strict=strict), instance) == [], (path, method, strict)


def example_of(schema: dict[str, Any]) -> Any:
    if "$ref" in schema:
        return example_of(schemas()[schema["$ref"].rsplit("/", 1)[-1]])
    if "example" in schema:
        return copy.deepcopy(schema["example"])
    return {k: example_of(v) for k, v in schema.get("properties", {}).items()}


# -- the app -------------------------------------------------------------------------------------

LOYALTY = {
    "name": "Loyalty Member",
    "code": "Loyalty",
    "description": "Loyalty Program Member ID",
    "idType": "Cross_device",
}


def create(client: TestClient, headers: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = client.post(BASE + "/identities", json=body or LOYALTY, headers=headers)
    assert resp.status_code == 200, resp.text
    created: dict[str, Any] = resp.json()
    return created


# -- the operations ------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method", "operation_id"), OPERATIONS, ids=[o for _, _, o in OPERATIONS])
def test_the_spec_has_each_operation_we_serve(path: str, method: str, operation_id: str) -> None:
    operation = published()["paths"][path][method]
    assert operation["operationId"] == operation_id
    assert "Identity Namespace" in operation["tags"]
    assert "200" in operation["responses"]


def test_our_openapi_names_the_spec_operations_at_the_spec_paths(client: TestClient) -> None:
    ours = {
        (path.removeprefix("/data/core").replace("{namespace_id}", "{ID}"), method): op.get("operationId")
        for path, item in client.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        if path.startswith(BASE)
        for method, op in item.items()
    }
    assert ours == {(path, method): operation_id for path, method, operation_id in OPERATIONS}


def test_the_spec_id_types_are_ours_in_capitals() -> None:
    for prop in _id_type_schemas(copy.deepcopy(published())):
        assert {v.upper() for v in prop["enum"]} == {t.value for t in IdType}, prop["enum"]


# -- the answers ---------------------------------------------------------------------------------


def test_the_list_conforms_to_list_namespaces(client: TestClient, headers: dict[str, str]) -> None:
    create(client, headers)
    resp = client.get(BASE + "/identities", headers=headers)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert_conforms("listNamespaces", answer)
    assert_answer_conforms("/idnamespace/identities", "get", answer)
    assert {ns["custom"] for ns in answer} == {False, True}


def test_the_create_answer_conforms_to_namespace(client: TestClient, headers: dict[str, str]) -> None:
    created = create(client, headers)
    assert_conforms("Namespace", created)
    assert_answer_conforms("/idnamespace/identities", "post", created)
    # The shape of AEP's documented create answer (its values differ: ids, times).
    documented = {"updateTime", "code", "status", "description", "id", "createTime", "idType", "name", "custom"}
    assert set(created) == documented | {"namespaceType"}


def test_the_get_answer_conforms_to_namespace(client: TestClient, headers: dict[str, str]) -> None:
    created = create(client, headers)
    for ns_id in (created["id"], 4):
        resp = client.get(f"{BASE}/identities/{ns_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        assert_conforms("Namespace", resp.json())
        assert_answer_conforms("/idnamespace/identities/{ID}", "get", resp.json())


def test_the_put_answer_conforms_to_an_array_of_update_namespace(client: TestClient, headers: dict[str, str]) -> None:
    created = create(client, headers)
    # namespaceUpdate spells this value CROSS_DEVICE where namespaceCreate spells it Cross_device.
    body = dict(LOYALTY, name="Loyalty Member (renamed)", idType="CROSS_DEVICE")
    assert errors("namespaceUpdate", body) == []
    resp = client.put(f"{BASE}/identities/{created['id']}", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert_answer_conforms("/idnamespace/identities/{ID}", "put", resp.json())
    [item] = resp.json()
    assert_conforms("updateNamespace", item)
    assert item["id"] == created["id"], "the spec: ID should match the ID sent in the request path"


def test_the_spec_example_request_is_accepted(client: TestClient, headers: dict[str, str]) -> None:
    request = example_of(schemas()["namespaceCreate"])
    assert errors("namespaceCreate", request) == []
    assert request["code"] == "Loyalty" and request["idType"] == "Email"
    created = create(client, headers, request)
    assert (created["code"], created["idType"], created["name"]) == ("Loyalty", "EMAIL", request["name"])
    assert_conforms("Namespace", created)


def test_the_bodies_we_send_conform_to_the_request_schemas() -> None:
    assert errors("namespaceCreate", LOYALTY) == []
    assert errors("namespaceUpdate", dict(LOYALTY, idType="CROSS_DEVICE")) == []


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
    assert_conforms("Namespace", answer)
    broken = copy.deepcopy(answer)
    change(broken)
    for name in NAMESPACE_SCHEMAS:
        assert errors(name, broken, strict=True), (name, broken)
        assert bool(errors(name, broken)) is not strict_only, (name, broken)
    assert errors("listNamespaces", [broken], strict=True), broken


def test_the_put_answer_must_be_an_array(answer: dict[str, Any]) -> None:
    schema = response_schema("/idnamespace/identities/{ID}", "put")
    assert errors_against(schema, [answer]) == []
    assert errors_against(schema, answer)
