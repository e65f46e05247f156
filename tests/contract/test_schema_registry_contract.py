"""audiencehub's Schema Registry answers checked against Adobe's published Schema Registry specification.

``specs/schema-registry.yaml`` is Swagger 2.0: its ``definitions`` are JSON Schema (Draft 4 style, with
``example`` annotations that validation ignores), combined through ``allOf``. They declare no required
properties, so each answer is also checked to carry every property that its definition names (except the
ones the spec marks as for global resources only, or optional). Where the spec contradicts itself or the
documentation, an overlay states which reading audiencehub follows, and why.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.contract.support import Contract, json_body, our_operation_ids, shape

BASE = "/data/foundation/schemaregistry"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
PERSON = "https://ns.adobe.com/xdm/context/profile-person-details"
XED = "application/vnd.adobe.xed+json; version=1"
FULL = "application/vnd.adobe.xed-full+json; version=1"
IDS = "application/vnd.adobe.xed-id+json"

# The operations audiencehub serves: (spec path, method, operationId).
OPERATIONS = [
    ("/stats", "get", "retrieveStats"),
    ("/{CONTAINER_ID}/classes", "get", "listClasses"),
    ("/{CONTAINER_ID}/classes/{CLASS_ID}", "get", "retrieveClass"),
    ("/{CONTAINER_ID}/fieldgroups", "get", "listFieldGroups"),
    ("/{CONTAINER_ID}/fieldgroups/{FIELD_GROUP_ID}", "get", "retrieveFieldGroup"),
    ("/tenant/fieldgroups", "post", "createFieldGroup"),
    ("/tenant/fieldgroups/{FIELD_GROUP_ID}", "put", "updateFieldGroup"),
    ("/tenant/fieldgroups/{FIELD_GROUP_ID}", "patch", "patchFieldGroup"),
    ("/tenant/fieldgroups/{FIELD_GROUP_ID}", "delete", "removeFieldGroup"),
    ("/{CONTAINER_ID}/mixins", "get", "listMixins"),
    ("/{CONTAINER_ID}/mixins/{MIXIN_ID}", "get", "lookupMixin"),
    ("/tenant/mixins", "post", "createMixin"),
    ("/tenant/mixins/{MIXIN_ID}", "put", "replaceMixin"),
    ("/tenant/mixins/{MIXIN_ID}", "patch", "updateMixin"),
    ("/tenant/mixins/{MIXIN_ID}", "delete", "removeMixin"),
    ("/{CONTAINER_ID}/schemas", "get", "listSchemas"),
    ("/{CONTAINER_ID}/schemas/{SCHEMA_ID}", "get", "retrieveSchema"),
    ("/tenant/schemas", "post", "createSchema"),
    ("/tenant/schemas/{SCHEMA_ID}", "put", "updateSchema"),
    ("/tenant/schemas/{SCHEMA_ID}", "patch", "patchSchema"),
    ("/tenant/schemas/{SCHEMA_ID}", "delete", "deleteSchema"),
    ("/{CONTAINER_ID}/descriptors", "get", "listDescriptors"),
    ("/{CONTAINER_ID}/descriptors/{DESCRIPTOR_ID}", "get", "retrieveDescriptor"),
    ("/tenant/descriptors", "post", "createDescriptor"),
    ("/tenant/descriptors/{DESCRIPTOR_ID}", "put", "updateDescriptor"),
    ("/tenant/descriptors/{DESCRIPTOR_ID}", "delete", "deleteDescriptor"),
    ("/tenant/unions", "get", "listUnionSchemas"),
    ("/tenant/unions/{UNION_ID}", "get", "retrieveUnionSchema"),
]

# Properties a definition names that an answer may lack: global-only annotations, and optional ones.
OPTIONAL = {
    "meta:status",
    "$schema",
    "meta:tags",
    "meta:createdDate",
    "meta:usageCount",
    "meta:immutableTags",
    "next",
    "global_schemas",
    "xdm:title",
    "xdm:description",
}


# -- the specification ------------------------------------------------------------------------------


def _read(doc: dict[str, Any]) -> None:
    """The readings audiencehub follows where the spec contradicts itself or the docs."""
    d = doc["definitions"]
    # The spec says ``next`` "contains null if this is the last or only page" and shows it empty in every
    # example, but types it as a string: null is allowed.
    d["linksBasic"]["properties"]["next"]["type"] = ["string", "null"]
    d["listResponseBasic"]["properties"]["_page"]["properties"]["next"]["type"] = ["string", "null"]
    # ``xdm:sourceVersion`` is a string in createDescriptor but an integer in lookupDescriptorResponse and in
    # every example (request and response): audiencehub answers the integer and accepts both.
    d["createDescriptor"]["properties"]["xdm:sourceVersion"]["type"] = ["string", "integer"]
    # patchSchema types an operation's ``value`` as a string, yet patchFieldGroup (which is patchSchema) shows an
    # object as its example, and adding a field group to ``allOf`` needs one: any JSON value is allowed.
    d["patchSchema"]["items"]["properties"]["value"] = {"description": "any JSON value"}


SPEC = Contract("schema-registry", read=_read, swagger=True)


def definitions() -> dict[str, Any]:
    """The definitions as published (with their examples, which the readings may drop)."""
    found: dict[str, Any] = SPEC.published()["definitions"]
    return found


def named(schema: dict[str, Any]) -> set[str]:
    """Every top-level property name a definition names, through its ``allOf`` and ``$ref``s."""
    if "$ref" in schema:
        return named(definitions()[schema["$ref"].rsplit("/", 1)[-1]])
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        names |= named(part)
    return {n for n in names if n.strip() == n}  # the spec spells some keys "$ref " (a stray space)


def assert_conforms(name: str, instance: Any, *, optional: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """``instance`` is valid against the spec's ``name`` and carries every property the definition names."""
    SPEC.assert_conforms(name, instance)
    missing = named(definitions()[name]) - set(instance) - OPTIONAL - optional
    assert not missing, (name, sorted(missing))


# -- helpers ------------------------------------------------------------------------------------------


def accept(headers: dict[str, str], value: str) -> dict[str, str]:
    return {**headers, "Accept": value}


def enc(resource_id: str) -> str:
    return quote(resource_id, safe="")


def field_group(tenant: str) -> dict[str, Any]:
    return {
        "type": "object",
        "title": "Property Details",
        "description": "Detailed information related to the properties owned and operated by the company.",
        "meta:intendedToExtend": [PROFILE],
        "definitions": {
            "property": {
                "properties": {
                    f"_{tenant}": {
                        "type": "object",
                        "properties": {
                            "propertyName": {"type": "string", "title": "Property Name"},
                            "propertyType": {"type": "string", "enum": ["retail", "yoga", "fitness"]},
                        },
                    }
                }
            }
        },
        "allOf": [{"$ref": "#/definitions/property"}],
    }


def schema_body(group_id: str) -> dict[str, Any]:
    return {
        "type": "object",
        "title": "New Schema",
        "description": "Description of the new schema.",
        "allOf": [{"$ref": PROFILE}, {"$ref": group_id}, {"$ref": PERSON}],
    }


class Registered:
    """A field group, a schema and its primary identity descriptor in a fresh sandbox."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers
        self.tenant = client.get(BASE + "/stats", headers=headers).json()["tenantId"]
        self.group = self.post("/tenant/fieldgroups", field_group(self.tenant))
        self.schema = self.post("/tenant/schemas", schema_body(self.group["$id"]))
        self.descriptor = self.post("/tenant/descriptors", self.identity())

    def identity(self, pointer: str = "/personID", primary: bool = True) -> dict[str, Any]:
        return {
            "@type": "xdm:descriptorIdentity",
            "xdm:sourceSchema": self.schema["$id"],
            "xdm:sourceVersion": 1,
            "xdm:sourceProperty": pointer,
            "xdm:namespace": "Email",
            "xdm:property": "xdm:code",
            "xdm:isPrimary": primary,
        }

    def post(self, path: str, body: Any) -> dict[str, Any]:
        created: dict[str, Any] = json_body(self.client.post(BASE + path, json=body, headers=self.headers), 201)
        return created

    def get(self, path: str, accept_value: str) -> dict[str, Any]:
        body: dict[str, Any] = json_body(self.client.get(BASE + path, headers=accept(self.headers, accept_value)))
        return body


@pytest.fixture
def registered(client: TestClient, headers: dict[str, str]) -> Registered:
    return Registered(client, headers)


# -- the operations -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method", "operation_id"), OPERATIONS, ids=[o for _, _, o in OPERATIONS])
def test_the_spec_has_each_operation_we_serve(path: str, method: str, operation_id: str) -> None:
    assert SPEC.operation(path, method)["operationId"] == operation_id


def test_our_openapi_names_the_spec_operations_at_the_spec_paths(client: TestClient) -> None:
    ours = our_operation_ids(client, BASE, strip=BASE)
    for path, method, operation_id in OPERATIONS:
        assert ours.get((shape(path), method)) == operation_id, (path, method)


def test_each_write_answers_with_a_status_the_spec_declares(registered: Registered) -> None:
    c, h = registered.client, registered.headers
    schema, group = enc(registered.schema["$id"]), enc(registered.group["$id"])
    descriptor = registered.descriptor["@id"]
    ops = [{"op": "replace", "path": "/description", "value": "patched"}]
    calls = [
        ("/tenant/fieldgroups/{FIELD_GROUP_ID}", "patch", f"/tenant/fieldgroups/{group}", ops),
        ("/tenant/schemas/{SCHEMA_ID}", "patch", f"/tenant/schemas/{schema}", ops),
        ("/tenant/descriptors/{DESCRIPTOR_ID}", "put", f"/tenant/descriptors/{descriptor}", registered.identity()),
        ("/tenant/descriptors/{DESCRIPTOR_ID}", "delete", f"/tenant/descriptors/{descriptor}", None),
        ("/tenant/schemas/{SCHEMA_ID}", "delete", f"/tenant/schemas/{schema}", None),
        ("/tenant/fieldgroups/{FIELD_GROUP_ID}", "delete", f"/tenant/fieldgroups/{group}", None),
    ]
    for spec_path, method, path, body in calls:
        resp = c.request(method.upper(), BASE + path, json=body, headers=h)
        assert resp.status_code in SPEC.success_codes(spec_path, method), (method, path, resp.status_code, resp.text)
    codes = SPEC.success_codes
    assert 201 in codes("/tenant/schemas", "post") and 201 in codes("/tenant/descriptors", "post")


# -- the answers ----------------------------------------------------------------------------------------


def test_stats_conform(registered: Registered) -> None:
    stats = registered.get("/stats", "application/json")
    assert_conforms("statsResponse", stats)
    assert stats["counts"]["schemas"] == 1 and stats["counts"]["mixins"] == 1
    for item in stats["recentlyCreatedResources"]:
        assert_conforms("listResponseItemWithVersion", item)
    for usage in stats["classUsage"]:
        assert_conforms("classUsageItem", usage)


def test_field_group_answers_conform(registered: Registered) -> None:
    assert_conforms("createFieldGroupResponse", registered.group, optional={"meta:status"})
    ref = enc(registered.group["$id"])
    looked_up = registered.get(f"/tenant/fieldgroups/{ref}", XED)
    assert_conforms("lookupFieldGroupResponse", looked_up)
    assert looked_up == registered.group
    # The spec's example shape: the tenant's fields under definitions.<name>.properties._{TENANT_ID}.
    example = definitions()["createFieldGroupResponse"]["example"]
    assert set(example) - set(looked_up) == set(), sorted(set(example) - set(looked_up))
    ops = definitions()["patchFieldGroup"]["example"]
    ops = [dict(op, path=op["path"].replace("{TENANT_ID}", registered.tenant)) for op in ops]
    assert SPEC.errors("patchFieldGroup", ops) == []
    patched = registered.client.patch(f"{BASE}/tenant/fieldgroups/{ref}", json=ops, headers=registered.headers)
    assert patched.status_code == 200, patched.text
    assert_conforms("patchFieldGroupResponse", patched.json())
    assert patched.json()["version"] == "1.1"
    for listing in (registered.get("/tenant/fieldgroups", IDS), registered.get("/global/fieldgroups", IDS)):
        assert_conforms("listFieldGroupsResponse", listing, optional={"_links"})
    global_group = registered.get(f"/global/fieldgroups/{enc(PERSON)}", XED)
    assert_conforms("lookupFieldGroupResponse", global_group, optional={"imsOrg"})


def test_schema_answers_conform(registered: Registered) -> None:
    assert_conforms("createSchemaResponse", registered.schema)
    example = definitions()["createSchemaResponse"]["example"]
    assert set(example) <= set(registered.schema), sorted(set(example) - set(registered.schema))
    looked_up = registered.get(f"/tenant/schemas/{registered.schema['meta:altId']}", XED)
    assert_conforms("lookupSchemaResponse", looked_up)
    full = registered.get(f"/tenant/schemas/{enc(registered.schema['$id'])}", FULL)
    assert_conforms("lookupSchemaResponse", {k: v for k, v in full.items() if k != "properties"}, optional={"allOf"})
    # The spec's own patch example (its path spelled "/meta:immutableTags-") enables the schema for Profile.
    example = definitions()["patchSchema"]["items"]["properties"]
    ops = [{key: example[key]["example"] for key in ("op", "path", "value")}]
    assert ops == [{"op": "add", "path": "/meta:immutableTags-", "value": "union"}]
    assert SPEC.errors("patchSchema", ops) == []
    resp = registered.client.patch(
        f"{BASE}/tenant/schemas/{enc(registered.schema['$id'])}", json=ops, headers=registered.headers
    )
    assert resp.status_code == 200, resp.text
    assert_conforms("patchSchemaResponse", resp.json())
    assert resp.json()["meta:immutableTags"] == ["union"]
    listing = registered.get("/tenant/schemas", IDS)
    assert_conforms("listSchemasResponse", listing)
    assert listing["_links"]["global_schemas"]["href"].endswith("/global/schemas")
    documents = registered.get("/tenant/schemas", "application/vnd.adobe.xed+json")
    assert_conforms("listSchemasResponse", documents)
    for item in documents["results"]:
        assert_conforms("lookupSchemaResponse", item)


def test_the_bodies_we_send_conform_to_the_spec_requests(registered: Registered) -> None:
    assert SPEC.errors("createSchema", schema_body(registered.group["$id"])) == []
    assert SPEC.errors("createFieldGroup", field_group(registered.tenant)) == []
    assert SPEC.errors("createDescriptor", registered.identity()) == []
    put = registered.client.put(
        f"{BASE}/tenant/schemas/{enc(registered.schema['$id'])}",
        json=dict(schema_body(registered.group["$id"]), title="Replaced"),
        headers=registered.headers,
    )
    assert put.status_code == 200, put.text
    assert_conforms("updateSchemaResponse", put.json())
    assert SPEC.errors("replaceSchema", dict(schema_body(registered.group["$id"]), title="Replaced")) == []


def test_class_answers_conform(registered: Registered) -> None:
    listing = registered.get("/global/classes", "application/vnd.adobe.xed+json")
    assert_conforms("listClassesResponse", listing, optional={"_links"})
    for item in listing["results"]:
        assert_conforms("singleClassResponse", item)
    profile = registered.get(f"/global/classes/{enc(PROFILE)}", XED)
    assert_conforms(
        "lookupClassResponse",
        profile,
        optional={"imsOrg", "meta:sandboxId", "meta:sandboxType", "meta:tenantNamespace"},
    )


def test_descriptor_answers_conform(registered: Registered) -> None:
    created = registered.descriptor
    assert_conforms("createDescriptorResponse", created)
    assert_conforms("identityDescriptorResponse", created)
    assert_conforms(
        "lookupDescriptorResponse",
        created,
        optional={"createdUser", "createClient", "updatedUser", "created", "update"},
    )
    example = definitions()["identityDescriptorResponse"]["example"]
    assert set(example) <= set(created), sorted(set(example) - set(created))
    assert created["xdm:sourceVersion"] == example["xdm:sourceVersion"] == 1
    looked_up = registered.get(f"/tenant/descriptors/{created['@id']}", "application/vnd.adobe.xdm+json")
    assert looked_up == created
    listing = registered.get("/tenant/descriptors", "application/vnd.adobe.xdm+json")
    assert SPEC.errors("listDescriptorsResponse", listing) == []
    assert listing == {"xdm:descriptorIdentity": [created]}
    put = registered.client.put(
        f"{BASE}/tenant/descriptors/{created['@id']}", json=registered.identity(), headers=registered.headers
    )
    assert put.status_code == 200, put.text
    assert_conforms("createDescriptorResponse", put.json())


def test_union_answers_conform(registered: Registered) -> None:
    enable = [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
    resp = registered.client.patch(
        f"{BASE}/tenant/schemas/{enc(registered.schema['$id'])}", json=enable, headers=registered.headers
    )
    assert resp.status_code == 200, resp.text
    listing = registered.get("/tenant/unions", "application/vnd.adobe.xed+json")
    assert SPEC.errors("listUnionsResponse", listing) == []
    for item in listing["results"]:
        assert_conforms("unionBasic", item)
    union = registered.get(f"/tenant/unions/{enc(PROFILE + '__union')}", XED)
    assert_conforms("lookupUnionResponse", union)
    example = definitions()["lookupUnionResponse"]["example"]
    assert {k: union[k] for k in ("$id", "meta:altId", "meta:resourceType", "version", "meta:class")} == {
        k: example[k] for k in ("$id", "meta:altId", "meta:resourceType", "version", "meta:class")
    }
    assert registered.schema["$id"] in union["meta:extends"]
    assert registered.group["$id"] in [e["$ref"] for e in union["allOf"]]


# -- the validators themselves fail when they should ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "instance"),
    [
        ("statsResponse", {"imsOrg": 1}),
        ("statsResponse", {"counts": {"schemas": "1"}}),
        ("lookupSchemaResponse", {"$id": "x", "meta:extends": "not-a-list"}),
        ("lookupSchemaResponse", {"version": 1.0}),
        ("identityDescriptorResponse", {"xdm:isPrimary": "true"}),
        ("listSchemasResponse", {"results": {}}),
        ("listSchemasResponse", {"results": [], "_page": {"count": "2"}}),
        ("lookupUnionResponse", {"meta:extends": [1]}),
    ],
)
def test_the_validators_reject_broken_answers(name: str, instance: Any) -> None:
    assert SPEC.errors(name, instance), instance


def test_an_answer_missing_a_named_property_fails(registered: Registered) -> None:
    broken = {k: v for k, v in registered.schema.items() if k != "meta:class"}
    with pytest.raises(AssertionError, match="meta:class"):
        assert_conforms("lookupSchemaResponse", broken)
