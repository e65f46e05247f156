"""audiencehub's Real-Time Customer Profile API answers checked against Adobe's published specification.

``specs/profile.yaml`` is OpenAPI 3.0; its component schemas are JSON Schema with annotations
(``example``, ``description``) that Draft 7 ignores. The spec's schemas leave most properties
optional and allow any others, so each answer is validated twice: against the spec as published,
and against a strict overlay (``strict_document``) that closes the objects and requires what
audiencehub promises, taking the fields the spec names only in its examples (``sandbox``,
``updateEpoch``, ``_page.totalCount``) from the bulk-get response and from AEP's merge policy guide.

The merge policy part (``test_merge_policy_*``) covers ``/ups/config/mergePolicies*``; the Profile
Access API's part (``/ups/access/entities``) goes beside it with tests named ``test_entities_*``.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

from audiencehub.metadata import tables as t
from audiencehub.metadata.store import insert_row

SPEC_FILE = Path(__file__).parent / "specs" / "profile.yaml"
BASE = "/data/core"  # the spec's server URL ends in /data/core; its paths start with /ups
SPEC_URI = "urn:adobe:profile"
STRICT_URI = "urn:audiencehub:profile-strict"
UUID = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
UUID4 = "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


# -- the specification ---------------------------------------------------------------------------


@cache
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_FILE.read_text())
    assert str(loaded["openapi"]).startswith("3.0"), loaded["openapi"]
    return loaded


def schemas() -> dict[str, Any]:
    found: dict[str, Any] = spec()["components"]["schemas"]
    return found


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    found: dict[str, Any] = spec()["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    return found


@cache
def strict_document() -> dict[str, Any]:
    """The spec with the merge policy schemas closed: what audiencehub answers is required, and nothing more."""
    doc = copy.deepcopy(spec())
    s = doc["components"]["schemas"]
    # The bulk-get answer's example policy names the fields the components leave out (sandbox, updateEpoch).
    bulk = response_schema(BULK, "post", 207)["properties"]["results"]["properties"]
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
    return doc


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        [
            (SPEC_URI, DRAFT7.create_resource(spec())),
            (STRICT_URI, DRAFT7.create_resource(strict_document())),
        ]
    )


def _validator(schema: dict[str, Any]) -> Draft7Validator:
    return Draft7Validator(schema, registry=_registry(), format_checker=Draft7Validator.FORMAT_CHECKER)


def errors(name: str, instance: Any, *, strict: bool = False) -> list[str]:
    """Where ``instance`` breaks the component schema ``name`` (of the strict overlay with ``strict``)."""
    uri = STRICT_URI if strict else SPEC_URI
    assert name in (strict_document() if strict else spec())["components"]["schemas"], name
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in _validator({"$ref": f"{uri}#/components/schemas/{name}"}).iter_errors(instance)
    ]


def inline_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """Where ``instance`` breaks a schema written inline in the spec (one without $refs)."""
    return [e.message for e in _validator(schema).iter_errors(instance)]


def assert_conforms(name: str, instance: Any, strict_name: str | None = None) -> None:
    """``instance`` is valid against the spec's ``name`` schema, and against the strict overlay's."""
    assert errors(name, instance) == [], (name, instance)
    assert errors(strict_name or name, instance, strict=True) == [], (name, instance)


def example_of(schema: dict[str, Any]) -> Any:
    """A value built from the ``example`` annotations of ``schema``; optional properties without one are left out."""
    if "$ref" in schema:
        return example_of(schemas()[schema["$ref"].rsplit("/", 1)[-1]])
    if "example" in schema:
        return copy.deepcopy(schema["example"])
    if schema.get("type") == "object" or "properties" in schema:
        out = {}
        for key, sub in schema.get("properties", {}).items():
            try:
                out[key] = example_of(sub)
            except LookupError:
                if key in schema.get("required", []):
                    raise
        return out
    raise LookupError(f"no example for {schema}")


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path).rstrip("/")


def _success_codes(path: str, method: str) -> set[int]:
    return {int(code) for code in spec()["paths"][path][method]["responses"] if str(code).startswith("2")}


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
    resp = client.post(BASE + MP, json=data, headers=headers)
    assert resp.status_code == 200, resp.text
    created: dict[str, Any] = resp.json()
    return created


@pytest.fixture
def org_id(headers: dict[str, str]) -> str:
    return headers["x-gw-ims-org-id"]


@pytest.mark.parametrize(
    ("path", "method", "operation_id"), MERGE_POLICY_OPERATIONS, ids=[o for *_, o in MERGE_POLICY_OPERATIONS]
)
def test_merge_policy_spec_has_each_operation_we_serve(path: str, method: str, operation_id: str) -> None:
    operation = spec()["paths"][path][method]
    assert operation["operationId"] == operation_id
    assert "Merge policies" in operation["tags"]


def test_merge_policy_our_openapi_names_the_spec_operations_at_the_spec_paths(client: TestClient) -> None:
    ours = {
        (_shape(path.removeprefix(BASE)), method): op.get("operationId")
        for path, item in client.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        if path.startswith(BASE + MP)
        for method, op in item.items()
    }
    for path, method, operation_id in MERGE_POLICY_OPERATIONS:
        assert ours.get((_shape(path), method)) == operation_id, (path, method, ours)


def test_merge_policy_each_spec_operation_answers_with_a_status_the_spec_declares(
    client: TestClient, headers: dict[str, str]
) -> None:
    resp = client.post(BASE + MP, json=policy_body(), headers=headers)
    assert resp.status_code in _success_codes(MP, "post"), resp.text
    policy_id = resp.json()["id"]
    calls: list[tuple[str, str, dict[str, Any]]] = [
        (MP, "get", {}),
        (ONE, "get", {}),
        (ONE, "put", {"json": policy_body("put")}),
        (ONE, "patch", {"json": [example_of(schemas()["PatchOperation"])]}),
        (
            BULK,
            "post",
            {
                "json": example_of(
                    spec()["paths"][BULK]["post"]["requestBody"]["content"]["application/json"]["schema"]
                )
                | {"ids": [{"id": policy_id}]}
            },
        ),
        (ONE, "delete", {}),
    ]
    for path, method, kwargs in calls:
        url = BASE + path.replace("{mergePolicyId}", policy_id)
        resp = client.request(method.upper(), url, headers=headers, **kwargs)
        assert resp.status_code in _success_codes(path, method), (method, path, resp.status_code, resp.text)


def test_merge_policy_the_spec_example_request_is_accepted(client: TestClient, headers: dict[str, str]) -> None:
    request = example_of(schemas()["PostMergePolicy"])
    assert errors("PostMergePolicy", request) == []
    assert request["schema"] == {"name": PROFILE} and request["default"] is True
    created = create_policy(client, headers, request)
    assert_conforms("MergePolicy", created, "StrictMergePolicy")
    assert created["name"] == request["name"] and created["default"] is True
    assert created["identityGraph"] == request["identityGraph"]
    assert created["attributeMerge"] == request["attributeMerge"]
    assert created["isActiveOnEdge"] is request["isActiveOnEdge"]


def test_merge_policy_the_bodies_we_send_conform_to_post_merge_policy() -> None:
    for body in (policy_body(), policy_body(attributeMerge={"type": "dataSetPrecedence", "order": ["a", "b"]})):
        assert errors("PostMergePolicy", body) == [], body


def test_merge_policy_create_get_and_list_answers_conform(
    client: TestClient, headers: dict[str, str], org_id: str
) -> None:
    dataset = add_dataset(client, org_id)
    created = create_policy(
        client, headers, policy_body(attributeMerge={"type": "dataSetPrecedence", "order": [dataset]})
    )
    assert_conforms("MergePolicy", created, "StrictMergePolicy")
    got = client.get(f"{BASE}{MP}/{created['id']}", headers=headers)
    assert got.status_code == 200, got.text
    assert_conforms("MergePolicy", got.json(), "StrictMergePolicy")
    first = client.get(BASE + MP, params={"limit": 1}, headers=headers).json()
    assert_conforms("MergePoliciesResponse", first)
    assert first["_page"]["totalCount"] == 2 and first["_links"]["next"]["href"]
    rest = client.get(BASE + MP, params={"limit": 1, "start": first["_page"]["next"]}, headers=headers).json()
    assert_conforms("MergePoliciesResponse", rest)
    assert rest["_links"]["next"]["href"] == "" and "next" not in rest["_page"]
    assert {p["id"] for p in first["children"] + rest["children"]} >= {created["id"]}


def test_merge_policy_patch_and_put_answers_conform(client: TestClient, headers: dict[str, str]) -> None:
    created = create_policy(client, headers, policy_body())
    # The spec's own PatchOperation example (op add, path /identityGraph.type, value pdg).
    patch_op = example_of(schemas()["PatchOperation"])
    resp = client.patch(f"{BASE}{MP}/{created['id']}", json=[patch_op], headers=headers)
    assert resp.status_code == 200, resp.text
    assert_conforms("MergePolicy", resp.json(), "StrictMergePolicy")
    assert resp.json()["identityGraph"] == {"type": patch_op["value"]}
    # The PUT body is the spec's MergePolicy: an answer, echoed with a change.
    sent = dict(resp.json(), name="put back")
    assert errors("MergePolicy", sent) == []
    put = client.put(f"{BASE}{MP}/{created['id']}", json=sent, headers=headers)
    assert put.status_code == 200, put.text
    assert_conforms("MergePolicy", put.json(), "StrictMergePolicy")
    assert put.json()["name"] == "put back" and put.json()["version"] == 3


def test_merge_policy_bulk_get_answer_conforms(client: TestClient, headers: dict[str, str]) -> None:
    created = create_policy(client, headers, policy_body())
    request = {"ids": [{"id": created["id"]}, {"id": str(uuid.uuid4())}]}
    assert (
        inline_errors(spec()["paths"][BULK]["post"]["requestBody"]["content"]["application/json"]["schema"], request)
        == []
    )
    resp = client.post(BASE + BULK, json=request, headers=headers)
    assert resp.status_code == 207, resp.text
    answer = resp.json()
    assert inline_errors(response_schema(BULK, "post", 207), answer) == []
    assert errors("StrictBulkGetResponse", answer, strict=True) == []
    assert_conforms("MergePolicy", answer["results"][created["id"]], "StrictMergePolicy")


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
    assert_conforms("MergePolicy", answer, "StrictMergePolicy")
    broken = copy.deepcopy(answer)
    change(broken)
    assert errors("StrictMergePolicy", broken, strict=True), broken
    assert bool(errors("MergePolicy", broken)) is not strict_only, broken
    listing = {
        "_page": {"count": 1, "totalCount": 1, "pageSize": 1},
        "children": [broken],
        "_links": {"next": {"href": ""}},
    }
    assert errors("MergePoliciesResponse", listing, strict=True), broken


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
    assert errors(name, instance, strict=True), instance
