"""audiencehub's Real-Time Customer Profile API answers checked against Adobe's published specification.

``specs/profile.yaml`` is OpenAPI 3.0; its component schemas are JSON Schema with annotations
(``example``, ``description``) that Draft 7 ignores. The spec's schemas leave most properties
optional and allow any others, so each answer is validated twice: against the spec as published,
and against a strict overlay (``_close``) that closes the objects and requires what
audiencehub promises, taking the fields the spec names only in its examples (``sandbox``,
``updateEpoch``, ``_page.totalCount``) from the bulk-get response and from AEP's merge policy guide.

The merge policy part (``test_merge_policy_*``) covers ``/ups/config/mergePolicies*``; the Profile
Access API's part (``/ups/access/entities``) goes beside it with tests named ``test_entities_*``.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft7Validator

from audiencehub.metadata import tables as t
from audiencehub.metadata.store import insert_row
from tests.contract.support import Contract, json_body, our_operation_ids, shape

BASE = "/data/core"  # the spec's server URL ends in /data/core; its paths start with /ups
UUID = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
UUID4 = "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


# -- the specification ---------------------------------------------------------------------------


def _close(doc: dict[str, Any]) -> None:
    """The merge policy schemas closed: what audiencehub answers is required, and nothing more."""
    s = doc["components"]["schemas"]
    # The bulk-get answer's example policy names the fields the components leave out (sandbox, updateEpoch).
    bulk = SPEC.response_schema(BULK, "post", 207)["properties"]["results"]["properties"]
    example = copy.deepcopy(next(iter(bulk.values())))
    sandbox = example["properties"]["sandbox"]
    sandbox["required"] = sorted(sandbox["properties"])
    sandbox["additionalProperties"] = False
    sandbox["properties"]["sandboxId"]["pattern"] = UUID
    properties: dict[str, Any] = {
        "id": {"type": "string", "pattern": UUID4},
        **{
            k: {"$ref": f"#/components/schemas/PostMergePolicy/properties/{k}"}
            for k in s["PostMergePolicy"]["properties"]
        },
        "imsOrgId": {"type": "string", "minLength": 1},
        "sandbox": sandbox,
        "version": {"type": "integer", "minimum": 1},
        "updateEpoch": {"type": "integer", "minimum": 1_500_000_000, "maximum": 10_000_000_000},  # seconds
    }
    s["StrictMergePolicy"] = {
        "allOf": [{"$ref": "#/components/schemas/MergePolicy"}],
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }
    for name in ("IdentityGraph", "SchemaClass"):
        s[name]["additionalProperties"] = False
    s["AttributeMerge"]["additionalProperties"] = False
    # ``order`` is there exactly when the type is dataSetPrecedence.
    s["AttributeMerge"]["oneOf"] = [
        {"properties": {"type": {"const": "timestampOrdered"}}, "not": {"required": ["order"]}},
        {
            "properties": {"type": {"const": "dataSetPrecedence"}, "order": {"minItems": 1}},
            "required": ["order"],
        },
    ]
    # AEP's guide pages with totalCount and pageSize beside the spec's count and next.
    page = s["Page"]
    page["properties"]["totalCount"] = {"type": "integer", "minimum": 0}
    page["properties"]["pageSize"] = {"type": "integer", "minimum": 0}
    page["required"] = ["count", "pageSize", "totalCount"]
    page["additionalProperties"] = False
    listing = s["MergePoliciesResponse"]
    listing["properties"]["children"]["items"] = {"$ref": "#/components/schemas/StrictMergePolicy"}
    listing["properties"]["_links"] = {
        "type": "object",
        "required": ["next"],
        "additionalProperties": False,
        "properties": {
            "next": {
                "type": "object",
                "required": ["href"],
                "additionalProperties": False,
                "properties": {"href": {"type": "string"}},
            }
        },
    }
    listing["required"] = ["_links", "_page", "children"]
    listing["additionalProperties"] = False
    s["StrictBulkGetResponse"] = {
        "type": "object",
        "required": ["results"],
        "additionalProperties": False,
        "properties": {
            "results": {
                "type": "object",
                "additionalProperties": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/StrictMergePolicy"},
                        {
                            "type": "object",
                            "required": ["id", "status", "errorCode", "title", "detail"],
                            "additionalProperties": False,
                            "properties": {
                                "id": {"type": "string"},
                                "status": {"const": 404},
                                "errorCode": {"type": "string"},
                                "title": {"type": "string"},
                                "detail": {"type": "string"},
                            },
                        },
                    ]
                },
            }
        },
    }


SPEC = Contract("profile", strict=_close, checker=Draft7Validator.FORMAT_CHECKER)


# -- merge policies ------------------------------------------------------------------------------

MP = "/ups/config/mergePolicies"
ONE = MP + "/{mergePolicyId}"
BULK = MP + "/bulk-get"
PROFILE = "_xdm.context.profile"

# The merge policy operations audiencehub serves: (spec path, method, operationId).
MERGE_POLICY_OPERATIONS = [
    (MP, "get", "getMany"),
    (MP, "post", "createMergePolicy"),
    (ONE, "get", "retrieveMergePolicy"),
    (ONE, "put", "updateMergePolicy"),
    (ONE, "patch", "patchMergePolicy"),
    (ONE, "delete", "deleteMergePolicy"),
    (BULK, "post", "bulkGetMergePolicies"),
]


def policy_body(name: str = "contract policy", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "identityGraph": {"type": "none"},
        "attributeMerge": {"type": "timestampOrdered"},
        "schema": {"name": PROFILE},
        "isActiveOnEdge": False,
        "default": False,
    }
    data.update(overrides)
    return data


def add_dataset(client: TestClient, org_id: str) -> str:
    dataset_id = uuid.uuid4().hex[:24]
    now = int(time.time() * 1000)
    with client.app.state.container.store.tx() as conn:  # type: ignore[attr-defined]
        values = {"id": dataset_id, "org_id": org_id, "sandbox": "prod", "name": f"contract {dataset_id}"}
        values |= {"schema_id": "https://ns.adobe.com/x/schemas/p", "kind": "profile", "tags": {}}
        insert_row(conn, t.datasets, values | {"created_at": now, "updated_at": now})
    return dataset_id


def create_policy(client: TestClient, headers: dict[str, str], data: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = json_body(client.post(BASE + MP, json=data, headers=headers))
    return created


@pytest.fixture
def org_id(headers: dict[str, str]) -> str:
    return headers["x-gw-ims-org-id"]


@pytest.mark.parametrize(
    ("path", "method", "operation_id"), MERGE_POLICY_OPERATIONS, ids=[o for *_, o in MERGE_POLICY_OPERATIONS]
)
def test_merge_policy_spec_has_each_operation_we_serve(path: str, method: str, operation_id: str) -> None:
    operation = SPEC.operation(path, method)
    assert operation["operationId"] == operation_id
    assert "Merge policies" in operation["tags"]


def test_merge_policy_our_openapi_names_the_spec_operations_at_the_spec_paths(client: TestClient) -> None:
    ours = our_operation_ids(client, BASE + MP, strip=BASE)
    for path, method, operation_id in MERGE_POLICY_OPERATIONS:
        assert ours.get((shape(path), method)) == operation_id, (path, method, ours)


def test_merge_policy_each_spec_operation_answers_with_a_status_the_spec_declares(
    client: TestClient, headers: dict[str, str]
) -> None:
    resp = client.post(BASE + MP, json=policy_body(), headers=headers)
    assert resp.status_code in SPEC.success_codes(MP, "post"), resp.text
    policy_id = resp.json()["id"]
    calls: list[tuple[str, str, dict[str, Any]]] = [
        (MP, "get", {}),
        (ONE, "get", {}),
        (ONE, "put", {"json": policy_body("put")}),
        (ONE, "patch", {"json": [SPEC.example_of(SPEC.schemas()["PatchOperation"])]}),
        (
            BULK,
            "post",
            {
                "json": SPEC.example_of(
                    SPEC.operation(BULK, "post")["requestBody"]["content"]["application/json"]["schema"]
                )
                | {"ids": [{"id": policy_id}]}
            },
        ),
        (ONE, "delete", {}),
    ]
    for path, method, kwargs in calls:
        url = BASE + path.replace("{mergePolicyId}", policy_id)
        resp = client.request(method.upper(), url, headers=headers, **kwargs)
        assert resp.status_code in SPEC.success_codes(path, method), (method, path, resp.status_code, resp.text)


def test_merge_policy_the_spec_example_request_is_accepted(client: TestClient, headers: dict[str, str]) -> None:
    request = SPEC.example_of(SPEC.schemas()["PostMergePolicy"])
    assert SPEC.errors("PostMergePolicy", request) == []
    assert request["schema"] == {"name": PROFILE} and request["default"] is True
    created = create_policy(client, headers, request)
    SPEC.assert_conforms("MergePolicy", created, strict_name="StrictMergePolicy")
    assert created["name"] == request["name"] and created["default"] is True
    assert created["identityGraph"] == request["identityGraph"]
    assert created["attributeMerge"] == request["attributeMerge"]
    assert created["isActiveOnEdge"] is request["isActiveOnEdge"]


def test_merge_policy_the_bodies_we_send_conform_to_post_merge_policy() -> None:
    for body in (policy_body(), policy_body(attributeMerge={"type": "dataSetPrecedence", "order": ["a", "b"]})):
        assert SPEC.errors("PostMergePolicy", body) == [], body


def test_merge_policy_create_get_and_list_answers_conform(
    client: TestClient, headers: dict[str, str], org_id: str
) -> None:
    dataset = add_dataset(client, org_id)
    created = create_policy(
        client, headers, policy_body(attributeMerge={"type": "dataSetPrecedence", "order": [dataset]})
    )
    SPEC.assert_conforms("MergePolicy", created, strict_name="StrictMergePolicy")
    got = client.get(f"{BASE}{MP}/{created['id']}", headers=headers)
    assert got.status_code == 200, got.text
    SPEC.assert_conforms("MergePolicy", got.json(), strict_name="StrictMergePolicy")
    first = client.get(BASE + MP, params={"limit": 1}, headers=headers).json()
    SPEC.assert_conforms("MergePoliciesResponse", first)
    assert first["_page"]["totalCount"] == 2 and first["_links"]["next"]["href"]
    rest = client.get(BASE + MP, params={"limit": 1, "start": first["_page"]["next"]}, headers=headers).json()
    SPEC.assert_conforms("MergePoliciesResponse", rest)
    assert rest["_links"]["next"]["href"] == "" and "next" not in rest["_page"]
    assert {p["id"] for p in first["children"] + rest["children"]} >= {created["id"]}


def test_merge_policy_patch_and_put_answers_conform(client: TestClient, headers: dict[str, str]) -> None:
    created = create_policy(client, headers, policy_body())
    # The spec's own PatchOperation example (op add, path /identityGraph.type, value pdg).
    patch_op = SPEC.example_of(SPEC.schemas()["PatchOperation"])
    resp = client.patch(f"{BASE}{MP}/{created['id']}", json=[patch_op], headers=headers)
    assert resp.status_code == 200, resp.text
    SPEC.assert_conforms("MergePolicy", resp.json(), strict_name="StrictMergePolicy")
    assert resp.json()["identityGraph"] == {"type": patch_op["value"]}
    # The PUT body is the spec's MergePolicy: an answer, echoed with a change.
    sent = dict(resp.json(), name="put back")
    assert SPEC.errors("MergePolicy", sent) == []
    put = client.put(f"{BASE}{MP}/{created['id']}", json=sent, headers=headers)
    assert put.status_code == 200, put.text
    SPEC.assert_conforms("MergePolicy", put.json(), strict_name="StrictMergePolicy")
    assert put.json()["name"] == "put back" and put.json()["version"] == 3


def test_merge_policy_bulk_get_answer_conforms(client: TestClient, headers: dict[str, str]) -> None:
    created = create_policy(client, headers, policy_body())
    request = {"ids": [{"id": created["id"]}, {"id": str(uuid.uuid4())}]}
    request_schema = SPEC.operation(BULK, "post")["requestBody"]["content"]["application/json"]["schema"]
    assert SPEC.errors_against(request_schema, request) == []
    resp = client.post(BASE + BULK, json=request, headers=headers)
    assert resp.status_code == 207, resp.text
    answer = resp.json()
    assert SPEC.errors_against(SPEC.response_schema(BULK, "post", 207), answer) == []
    assert SPEC.errors("StrictBulkGetResponse", answer, strict=True) == []
    SPEC.assert_conforms("MergePolicy", answer["results"][created["id"]], strict_name="StrictMergePolicy")


# -- the validators themselves fail when they should ---------------------------------------------


@pytest.fixture
def answer(client: TestClient, headers: dict[str, str], org_id: str) -> dict[str, Any]:
    dataset = add_dataset(client, org_id)
    return create_policy(client, headers, policy_body(attributeMerge={"type": "dataSetPrecedence", "order": [dataset]}))


@pytest.mark.parametrize(
    ("change", "strict_only"),
    [
        (lambda p: p.update(version="1"), False),
        (lambda p: p.update(default="true"), False),
        (lambda p: p.update(isActiveOnEdge=None), False),
        (lambda p: p["identityGraph"].update(type="cdg"), False),
        (lambda p: p["attributeMerge"].update(type="newest"), False),
        (lambda p: p["attributeMerge"].update(order="a,b"), False),
        (lambda p: p.pop("schema"), False),
        (lambda p: p["schema"].pop("name"), False),
        (lambda p: p.pop("updateEpoch"), True),
        (lambda p: p.update(updateEpoch=p["updateEpoch"] * 1000), True),
        (lambda p: p.pop("sandbox"), True),
        (lambda p: p["sandbox"].pop("type"), True),
        (lambda p: p.update(id="not-a-uuid"), True),
        (lambda p: p["attributeMerge"].pop("order"), True),
        (lambda p: p.update(owner="x"), True),
    ],
    ids=[
        "version-string",
        "default-string",
        "edge-null",
        "graph-unknown",
        "merge-unknown",
        "order-string",
        "no-schema",
        "schema-without-name",
        "no-updateEpoch",
        "updateEpoch-millis",
        "no-sandbox",
        "sandbox-without-type",
        "id-not-uuid",
        "precedence-without-order",
        "unknown-property",
    ],
)
def test_merge_policy_validators_reject_an_answer_that_breaks_the_contract(
    answer: dict[str, Any], change: Any, strict_only: bool
) -> None:
    SPEC.assert_conforms("MergePolicy", answer, strict_name="StrictMergePolicy")
    broken = copy.deepcopy(answer)
    change(broken)
    assert SPEC.errors("StrictMergePolicy", broken, strict=True), broken
    assert bool(SPEC.errors("MergePolicy", broken)) is not strict_only, broken
    listing = {
        "_page": {"count": 1, "totalCount": 1, "pageSize": 1},
        "children": [broken],
        "_links": {"next": {"href": ""}},
    }
    assert SPEC.errors("MergePoliciesResponse", listing, strict=True), broken


@pytest.mark.parametrize(
    ("name", "instance"),
    [
        ("MergePoliciesResponse", {"children": []}),
        ("MergePoliciesResponse", {"_page": {"count": "1"}, "children": []}),
        ("MergePoliciesResponse", {"_page": {"count": 0}, "children": {}}),
        ("MergePoliciesResponse", {"_page": {"count": 0, "totalCount": 0, "pageSize": 0}, "children": []}),
        ("StrictBulkGetResponse", {"results": {"x": {"id": "x", "status": 500}}}),
        ("StrictBulkGetResponse", {"results": []}),
    ],
    ids=["no-page", "count-string", "children-object", "no-links", "bulk-bad-entry", "bulk-results-array"],
)
def test_merge_policy_validators_reject_other_broken_answers(name: str, instance: Any) -> None:
    assert SPEC.errors(name, instance, strict=True), instance
