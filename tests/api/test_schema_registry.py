"""The Schema Registry subset over HTTP: the seeds' schemas, resolution, unions, and the refusals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from audiencehub.domain.xdm import tenant_id_for
from audiencehub.errors import Duplicate, NotFound
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import Scope, get_row
from tests.api.support import assert_problem
from tests.conftest import create_audience, seed_audience

SR = "/data/foundation/schemaregistry"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
EVENT = "https://ns.adobe.com/xdm/context/experienceevent"
SEGMENT_DEFINITION = "https://ns.adobe.com/xdm/context/segmentdefinition"
PERSON_DETAILS = "https://ns.adobe.com/xdm/context/profile-person-details"
WEB_DETAILS = "https://ns.adobe.com/xdm/context/experienceevent-web"
XED = "application/vnd.adobe.xed+json; version=1"
FULL = "application/vnd.adobe.xed-full+json; version=1"
IDS = "application/vnd.adobe.xed-id+json"
BAD = "100910-400"
MISSING = "100940-404"
CONFLICT = "100950-409"


def accept(headers: dict[str, str], value: str) -> dict[str, str]:
    return {**headers, "Accept": value}


def enc(resource_id: str) -> str:
    return quote(resource_id, safe="")


def ok(resp: Any, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


def set_tenant(client: TestClient, org_id: str, tenant: str = "demoemea") -> None:
    client.app.state.container.schemas.set_tenant_id(org_id, tenant)  # type: ignore[attr-defined]


def membership_group(tenant: str = "demoemea", **overrides: Any) -> dict[str, Any]:
    """Seed 002's custom field group: audienceMembershipId and audienceMembershipName under the tenant."""
    body: dict[str, Any] = {
        "type": "object",
        "title": "Audience Membership",
        "description": "Audience membership exported from Experience Platform.",
        "meta:intendedToExtend": [PROFILE],
        "definitions": {
            "audienceMembership": {
                "properties": {
                    f"_{tenant}": {
                        "type": "object",
                        "properties": {
                            "audienceMembershipId": {"title": "Audience Membership Id", "type": "string"},
                            "audienceMembershipName": {"title": "Audience Membership Name", "type": "string"},
                            "identification": {
                                "type": "object",
                                "properties": {
                                    "core": {
                                        "type": "object",
                                        "properties": {"email": {"type": "string", "format": "email"}},
                                    }
                                },
                            },
                            "visits": {"type": "integer"},
                        },
                    }
                }
            }
        },
        "allOf": [{"$ref": "#/definitions/audienceMembership"}],
    }
    body.update(overrides)
    return body


def schema_body(title: str, *refs: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "object",
        "title": title,
        "description": f"{title} (test)",
        "allOf": [{"$ref": r} for r in refs],
    }
    body.update(overrides)
    return body


def identity(schema_id: str, pointer: str, namespace: str, primary: bool = True) -> dict[str, Any]:
    return {
        "@type": "xdm:descriptorIdentity",
        "xdm:sourceSchema": schema_id,
        "xdm:sourceVersion": 1,
        "xdm:sourceProperty": pointer,
        "xdm:namespace": namespace,
        "xdm:property": "xdm:code",
        "xdm:isPrimary": primary,
    }


def post(client: TestClient, headers: dict[str, str], path: str, body: Any) -> dict[str, Any]:
    return ok(client.post(SR + path, json=body, headers=headers), 201)


def enable_profile(client: TestClient, headers: dict[str, str], schema_id: str) -> Any:
    ops = [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
    return client.patch(f"{SR}/tenant/schemas/{enc(schema_id)}", json=ops, headers=headers)


def full(client: TestClient, headers: dict[str, str], path: str) -> dict[str, Any]:
    return ok(client.get(SR + path, headers=accept(headers, FULL)))


@dataclass
class Seed002:
    group_id: str
    schema_id: str
    alt_id: str
    descriptor_id: str


def seed_002(client: TestClient, headers: dict[str, str], *, enable: bool = True) -> Seed002:
    """Seed 002: an Individual Profile schema with the membership group, personID primary in Email."""
    group = post(client, headers, "/tenant/fieldgroups", membership_group())
    schema = post(
        client,
        headers,
        "/tenant/schemas",
        schema_body("Audience Export for CJA Schema", PROFILE, group["$id"], PERSON_DETAILS),
    )
    descriptor = post(client, headers, "/tenant/descriptors", identity(schema["$id"], "/personID", "Email"))
    if enable:
        ok(enable_profile(client, headers, schema["$id"]))
    return Seed002(group["$id"], schema["$id"], schema["meta:altId"], descriptor["@id"])


# -- tenant id -------------------------------------------------------------------------------------------


def test_stats_answers_the_tenant_id_derived_from_the_org_id(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    stats = ok(client.get(SR + "/stats", headers=headers))
    derived = tenant_id_for(creds["org_id"])
    assert stats["imsOrg"] == creds["org_id"]
    assert stats["tenantId"] == derived
    assert derived.isalnum() and derived == derived.lower() and not derived[0].isdigit()
    assert "adobeorg" not in derived
    assert stats["counts"] == {"schemas": 0, "mixins": 0, "datatypes": 0, "classes": 0, "unions": 2}


def test_a_tenant_id_set_for_the_org_names_custom_resources(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    set_tenant(client, creds["org_id"])
    assert ok(client.get(SR + "/stats", headers=headers))["tenantId"] == "demoemea"
    group = post(client, headers, "/tenant/fieldgroups", membership_group())
    assert group["$id"].startswith("https://ns.adobe.com/demoemea/mixins/")
    assert group["meta:tenantNamespace"] == "_demoemea"
    # Once custom resources carry it, the tenant id stays.
    with pytest.raises(Duplicate, match="already has schemas or field groups"):
        set_tenant(client, creds["org_id"], "other")


# -- global resources --------------------------------------------------------------------------------------


def test_global_classes_list_and_lookup_by_alt_id_or_encoded_id(
    shared_client: TestClient, shared_headers: dict[str, str]
) -> None:
    listing = ok(shared_client.get(SR + "/global/classes", headers=accept(shared_headers, IDS)))
    assert {r["$id"] for r in listing["results"]} == {PROFILE, EVENT, SEGMENT_DEFINITION}
    assert all(set(r) == {"$id", "meta:altId", "version", "title"} for r in listing["results"])
    by_alt = ok(shared_client.get(SR + "/global/classes/_xdm.context.profile", headers=accept(shared_headers, XED)))
    by_id = ok(shared_client.get(f"{SR}/global/classes/{enc(PROFILE)}", headers=accept(shared_headers, XED)))
    assert by_alt == by_id
    assert by_alt["title"] == "XDM Individual Profile" and by_alt["meta:resourceType"] == "classes"
    assert {"$ref": "https://ns.adobe.com/xdm/data/record"} in [{"$ref": e["$ref"]} for e in by_alt["allOf"]]
    event = ok(shared_client.get(f"{SR}/global/classes/{enc(EVENT)}", headers=accept(shared_headers, FULL)))
    assert event["required"] == ["_id", "timestamp"]
    assert event["properties"]["timestamp"]["format"] == "date-time"
    assert event["properties"]["eventType"]["type"] == "string"
    assert "allOf" not in event and "definitions" not in event


def test_global_field_groups_filtered_by_the_class_they_extend(
    shared_client: TestClient, shared_headers: dict[str, str]
) -> None:
    resp = shared_client.get(
        SR + "/global/fieldgroups",
        params={"property": f"meta:intendedToExtend=={EVENT}"},
        headers=accept(shared_headers, "application/vnd.adobe.xed+json"),
    )
    ids = {r["$id"] for r in ok(resp)["results"]}
    assert ids == {"https://ns.adobe.com/xdm/context/identitymap", WEB_DETAILS, f"{WEB_DETAILS[:-3]}commerce"}
    person = ok(
        shared_client.get(f"{SR}/global/fieldgroups/{enc(PERSON_DETAILS)}", headers=accept(shared_headers, FULL))
    )
    props = person["properties"]["person"]["properties"]
    assert props["gender"]["enum"] == ["female", "male", "not_specified", "non_specific"]
    assert props["birthDate"] == {**props["birthDate"], "type": "string", "format": "date"}
    assert props["birthYear"]["meta:xdmType"] == "short"
    # The deprecated /mixins endpoints answer the same resources.
    mixin = ok(shared_client.get(f"{SR}/global/mixins/{enc(PERSON_DETAILS)}", headers=accept(shared_headers, FULL)))
    assert mixin == person


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        ("/global/classes/_xdm.context.profile", None, "*/*"),
        ("/global/classes/_xdm.context.profile", "application/vnd.adobe.xed+json", "version should be specified"),
        ("/global/classes/_xdm.context.profile", "application/json", "application/json"),
        ("/global/classes/_xdm.context.profile", "application/vnd.adobe.xed+json; version=2", "version '2'"),
        ("/global/classes", None, "xed-id"),
        ("/global/classes", XED, "no version for lists"),
        ("/tenant/descriptors", IDS, "xdm-id"),
    ],
)
def test_gets_need_aeps_accept_header(
    shared_client: TestClient, shared_headers: dict[str, str], path: str, value: str | None, needle: str
) -> None:
    headers = accept(shared_headers, value) if value else shared_headers
    assert_problem(shared_client.get(SR + path, headers=headers), 400, BAD, "Accept", needle)


@pytest.mark.parametrize(
    "path",
    [
        "/global/classes/_xdm.context.nothing",
        "/tenant/classes/_xdm.context.profile",
        "/global/fieldgroups/_xdm.context.profile",
        "/other/classes/_xdm.context.profile",
        "/tenant/schemas/_demoemea.schemas.0123456789abcdef0123456789abcdef",
        "/tenant/unions/_xdm.context.segmentdefinition__union",
    ],
)
def test_unknown_resources_answer_404(shared_client: TestClient, shared_headers: dict[str, str], path: str) -> None:
    assert_problem(shared_client.get(SR + path, headers=accept(shared_headers, XED)), 404, MISSING)


# -- seed 000: a segment definition schema, _id primary in a custom namespace, enabled for Profile ---------


def test_seed_000_segment_definition_schema_enabled_for_profile(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    ns = client.post(
        "/data/core/idnamespace/identities",
        json={"name": "Partner segments", "code": "PartnerSegments", "idType": "NON_PEOPLE"},
        headers=headers,
    )
    assert ns.status_code in (200, 201), ns.text
    schema = post(client, headers, "/tenant/schemas", schema_body("External segments", SEGMENT_DEFINITION))
    assert schema["meta:class"] == SEGMENT_DEFINITION
    assert schema["$id"] == f"https://ns.adobe.com/{tenant_id_for(creds['org_id'])}/schemas/" + schema["$id"][-32:]
    assert schema["meta:altId"] == f"_{tenant_id_for(creds['org_id'])}.schemas.{schema['$id'][-32:]}"
    assert SEGMENT_DEFINITION in schema["meta:extends"] and schema["version"] == "1.0"
    post(client, headers, "/tenant/descriptors", identity(schema["$id"], "/_id", "PartnerSegments"))
    enabled = ok(enable_profile(client, headers, schema["$id"]))
    assert enabled["meta:immutableTags"] == ["union"] and enabled["version"] == "1.1"

    unions = ok(client.get(SR + "/tenant/unions", headers=accept(headers, IDS)))["results"]
    assert [u["$id"] for u in unions] == [f"{p}__union" for p in (PROFILE, EVENT, SEGMENT_DEFINITION)]
    resolved = client.app.state.container.schemas.resolve(  # type: ignore[attr-defined]
        Scope(creds["org_id"], "prod"), schema["meta:altId"]
    )
    assert resolved.profile_enabled and resolved.class_id == SEGMENT_DEFINITION
    assert [(i.path, i.namespace, i.primary) for i in resolved.identities] == [(("_id",), "PartnerSegments", True)]
    assert resolved.required == (("segmentName",),)
    assert resolved.properties["segmentIdentity"]["properties"]["_id"]["type"] == "string"


# -- seed 002: an Individual Profile schema with a custom field group, personID primary in Email -----------


def test_seed_002_schema_resolves_with_its_custom_fields(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    set_tenant(client, creds["org_id"])
    seed = seed_002(client, headers)
    stored = ok(client.get(f"{SR}/tenant/schemas/{enc(seed.schema_id)}", headers=accept(headers, XED)))
    assert [e["$ref"] for e in stored["allOf"]] == [PROFILE, seed.group_id, PERSON_DETAILS]
    assert "properties" not in stored and stored["meta:tenantNamespace"] == "_demoemea"
    resolved = full(client, headers, f"/tenant/schemas/{seed.alt_id}")
    props = resolved["properties"]
    assert {"_id", "personID", "person", "_demoemea"} <= set(props)
    tenant = props["_demoemea"]["properties"]
    assert tenant["audienceMembershipId"]["type"] == "string"
    assert tenant["audienceMembershipName"]["meta:xdmType"] == "string"
    assert tenant["identification"]["properties"]["core"]["properties"]["email"]["format"] == "email"
    assert tenant["visits"]["meta:xdmType"] == "int"
    assert props["person"]["properties"]["name"]["properties"]["firstName"]["type"] == "string"

    scope = Scope(creds["org_id"], "prod")
    service = client.app.state.container.schemas  # type: ignore[attr-defined]
    schema = service.resolve(scope, seed.schema_id)
    assert schema == service.resolve(scope, seed.alt_id)
    assert schema.properties == props and schema.tenant_id == "demoemea" and schema.version == "1.1"
    assert schema.field(("_demoemea", "identification", "core", "email"))["format"] == "email"
    assert schema.primary_identity is not None and schema.primary_identity.path == ("personID",)
    assert service.is_profile_enabled(scope, seed.schema_id)


def test_the_profile_union_grows_when_a_schema_is_enabled(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    set_tenant(client, creds["org_id"])
    scope = Scope(creds["org_id"], "prod")
    service = client.app.state.container.schemas  # type: ignore[attr-defined]
    before = full(client, headers, "/tenant/schemas/_xdm.context.profile__union")
    assert {"personID", "identityMap", "segmentMembership"} <= set(before["properties"])
    assert "_demoemea" not in before["properties"] and "person" not in before["properties"]
    assert service.resolve(scope, "_xdm.context.profile__union").identities == ()

    seed = seed_002(client, headers, enable=False)
    assert full(client, headers, "/tenant/schemas/_xdm.context.profile__union") == before
    ok(enable_profile(client, headers, seed.schema_id))

    after = full(client, headers, f"/tenant/unions/{enc(PROFILE + '__union')}")
    assert after["$id"] == PROFILE + "__union" and after["meta:class"] == PROFILE
    assert after["properties"]["_demoemea"]["properties"]["audienceMembershipId"]["type"] == "string"
    assert after["properties"]["person"]["properties"]["gender"]["meta:xdmType"] == "string"
    assert seed.schema_id in after["meta:extends"]
    membership = after["properties"]["segmentMembership"]["additionalProperties"]["additionalProperties"]
    assert membership["properties"]["status"]["enum"] == ["existing", "realized", "exited"]
    union = service.resolve(scope, PROFILE + "__union")
    assert union.alt_id == "_xdm.context.profile__union" and union.profile_enabled
    assert [(i.path, i.namespace, i.primary) for i in union.identities] == [(("personID",), "Email", True)]
    assert "_demoemea" in union.properties
    # Event schemas are another union.
    assert "_demoemea" not in full(client, headers, "/tenant/schemas/_xdm.context.experienceevent__union")["properties"]


def test_listings_answer_summaries_or_documents(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    set_tenant(client, creds["org_id"])
    seed = seed_002(client, headers)
    post(client, headers, "/tenant/schemas", schema_body("Web events", EVENT, WEB_DETAILS))
    ids = ok(client.get(SR + "/tenant/schemas", headers=accept(headers, IDS)))
    assert [r["title"] for r in ids["results"]] == ["Audience Export for CJA Schema", "Web events"]
    assert ids["results"][0] == {
        "$id": seed.schema_id,
        "meta:altId": seed.alt_id,
        "version": "1.1",
        "title": "Audience Export for CJA Schema",
    }
    assert ids["_page"] == {"orderby": "created", "next": None, "count": 2}
    docs = ok(
        client.get(
            SR + "/tenant/schemas",
            params={"orderby": "-title"},
            headers=accept(headers, "application/vnd.adobe.xed+json"),
        )
    )
    assert [d["title"] for d in docs["results"]] == ["Web events", "Audience Export for CJA Schema"]
    assert docs["results"][1]["allOf"][0]["$ref"] == PROFILE
    page = ok(client.get(SR + "/tenant/schemas", params={"orderby": "title", "limit": 1}, headers=accept(headers, IDS)))
    assert [r["title"] for r in page["results"]] == ["Audience Export for CJA Schema"]
    assert page["_page"]["next"] == "Audience Export for CJA Schema"
    rest = ok(
        client.get(
            SR + "/tenant/schemas",
            params={"orderby": "title", "start": page["_page"]["next"]},
            headers=accept(headers, IDS),
        )
    )
    assert [r["title"] for r in rest["results"]] == ["Web events"]
    only = ok(
        client.get(SR + "/tenant/schemas", params={"property": f"meta:class=={EVENT}"}, headers=accept(headers, IDS))
    )
    assert [r["title"] for r in only["results"]] == ["Web events"]
    groups = ok(client.get(SR + "/tenant/fieldgroups", headers=accept(headers, IDS)))["results"]
    assert [g["$id"] for g in groups] == [seed.group_id]
    stats = ok(client.get(SR + "/stats", headers=headers))
    assert stats["counts"]["schemas"] == 2 and stats["counts"]["mixins"] == 1
    assert {u["$id"]: u["numberOfSchemas"] for u in stats["classUsage"]} == {PROFILE: 1, EVENT: 1}


# -- changes -------------------------------------------------------------------------------------------------


def test_patch_adds_a_field_group_and_put_replaces_a_schema(client: TestClient, headers: dict[str, str]) -> None:
    schema = post(client, headers, "/tenant/schemas", schema_body("Customers", PROFILE))
    url = f"{SR}/tenant/schemas/{enc(schema['$id'])}"
    ops = [{"op": "add", "path": "/allOf/-", "value": {"$ref": PERSON_DETAILS}}]
    patched = ok(client.patch(url, json=ops, headers=headers))
    assert [e["$ref"] for e in patched["allOf"]] == [PROFILE, PERSON_DETAILS] and patched["version"] == "1.1"
    assert PERSON_DETAILS in patched["meta:extends"]
    assert "person" in full(client, headers, f"/tenant/schemas/{schema['meta:altId']}")["properties"]
    replaced = ok(client.put(url, json=dict(patched, title="Customers v2", description="renamed"), headers=headers))
    assert replaced["title"] == "Customers v2" and replaced["version"] == "1.2" and replaced["$id"] == schema["$id"]
    assert ok(client.get(url, headers=accept(headers, XED)))["title"] == "Customers v2"


def test_field_group_patch_adds_a_field_that_enabled_schemas_then_carry(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    set_tenant(client, creds["org_id"])
    seed = seed_002(client, headers)
    ops = [
        {
            "op": "add",
            "path": "/definitions/audienceMembership/properties/_demoemea/properties/audienceSource",
            "value": {"type": "string", "title": "Audience source"},
        }
    ]
    group = ok(client.patch(f"{SR}/tenant/fieldgroups/{enc(seed.group_id)}", json=ops, headers=headers))
    assert group["version"] == "1.1"
    added = group["definitions"]["audienceMembership"]["properties"]["_demoemea"]["properties"]["audienceSource"]
    assert added["meta:xdmType"] == "string"
    union = full(client, headers, "/tenant/schemas/_xdm.context.profile__union")
    assert "audienceSource" in union["properties"]["_demoemea"]["properties"]


def test_delete_schema_takes_its_descriptors_and_frees_the_field_group(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    set_tenant(client, creds["org_id"])
    seed = seed_002(client, headers, enable=False)
    assert_problem(
        client.delete(f"{SR}/tenant/fieldgroups/{enc(seed.group_id)}", headers=headers),
        409,
        CONFLICT,
        "Audience Export for CJA Schema",
    )
    resp = client.delete(f"{SR}/tenant/schemas/{enc(seed.schema_id)}", headers=headers)
    assert resp.status_code == 204, resp.text
    assert_problem(
        client.get(f"{SR}/tenant/schemas/{seed.alt_id}", headers=accept(headers, XED)), 404, MISSING, seed.alt_id
    )
    descriptor = client.get(
        f"{SR}/tenant/descriptors/{seed.descriptor_id}", headers=accept(headers, "application/vnd.adobe.xdm+json")
    )
    assert_problem(descriptor, 404, MISSING, seed.descriptor_id)
    assert client.delete(f"{SR}/tenant/fieldgroups/{enc(seed.group_id)}", headers=headers).status_code == 204


def test_descriptor_listing_forms_and_lookup(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    set_tenant(client, creds["org_id"])
    seed = seed_002(client, headers, enable=False)
    second = post(
        client,
        headers,
        "/tenant/descriptors",
        identity(seed.schema_id, "/_demoemea/identification/core/email", "Email", primary=False),
    )
    listed = ok(client.get(SR + "/tenant/descriptors", headers=accept(headers, "application/vnd.adobe.xdm-id+json")))
    assert listed == {"xdm:descriptorIdentity": [seed.descriptor_id, second["@id"]]}
    links = ok(client.get(SR + "/tenant/descriptors", headers=accept(headers, "application/vnd.adobe.xdm-link+json")))
    assert links["xdm:descriptorIdentity"][0] == f"/descriptors/{seed.descriptor_id}"
    objects = ok(client.get(SR + "/tenant/descriptors", headers=accept(headers, "application/vnd.adobe.xdm+json")))
    assert [d["xdm:sourceProperty"] for d in objects["xdm:descriptorIdentity"]] == [
        "/personID",
        "/_demoemea/identification/core/email",
    ]
    paged = ok(
        client.get(
            SR + "/tenant/descriptors",
            params={"property": "xdm:isPrimary==False"},
            headers=accept(headers, "application/vnd.adobe.xdm-v2-id+json"),
        )
    )
    assert paged["results"] == [second["@id"]]
    one = ok(
        client.get(
            f"{SR}/tenant/descriptors/{second['@id']}", headers=accept(headers, "application/vnd.adobe.xdm+json")
        )
    )
    assert one == objects["xdm:descriptorIdentity"][1]
    moved = ok(
        client.put(
            f"{SR}/tenant/descriptors/{second['@id']}",
            json=identity(seed.schema_id, "/_demoemea/audienceMembershipId", "CRMID", primary=False),
            headers=headers,
        )
    )
    assert moved["@id"] == second["@id"] and moved["xdm:namespace"] == "CRMID"
    assert client.delete(f"{SR}/tenant/descriptors/{second['@id']}", headers=headers).status_code == 204
    assert ok(client.get(SR + "/tenant/descriptors", headers=accept(headers, "application/vnd.adobe.xdm-id+json"))) == {
        "xdm:descriptorIdentity": [seed.descriptor_id]
    }


# -- refusals --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_seed(shared_client: TestClient, shared_headers: dict[str, str], shared_creds: dict[str, str]) -> Seed002:
    set_tenant(shared_client, shared_creds["org_id"])
    return seed_002(shared_client, shared_headers)


@pytest.mark.parametrize(
    ("refs", "needles"),
    [
        (["https://ns.adobe.com/demoemea/mixins/nothing"], ["allOf[1].$ref", "demoemea/mixins/nothing"]),
        ([], ["exactly one class", "none"]),
        ([EVENT], ["exactly one class", EVENT]),
        ([WEB_DETAILS], ["experienceevent-web", "not the schema's class"]),
        (["https://ns.adobe.com/xdm/common/auditable"], ["allOf[1].$ref", "auditable"]),
    ],
)
def test_schema_refused_for_its_references(
    shared_client: TestClient, shared_headers: dict[str, str], shared_seed: Seed002, refs: list[str], needles: list[str]
) -> None:
    body = schema_body("Refused", PROFILE, *refs) if refs != [] else schema_body("Refused", PERSON_DETAILS)
    assert_problem(shared_client.post(SR + "/tenant/schemas", json=body, headers=shared_headers), 400, BAD, *needles)


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (
            lambda b: b["definitions"]["audienceMembership"]["properties"].update(loose={"type": "string"}),
            ["definitions.audienceMembership.properties.loose", "_demoemea"],
        ),
        (
            lambda b: b["definitions"]["audienceMembership"]["properties"]["_demoemea"]["properties"].update(
                x={"type": "text"}
            ),
            ["_demoemea.properties.x.type", "'text'"],
        ),
        (
            lambda b: b["definitions"]["audienceMembership"]["properties"]["_demoemea"]["properties"].update(
                x={"$ref": "https://ns.adobe.com/xdm/context/person"}
            ),
            ["x.$ref", "data types"],
        ),
        (
            lambda b: b.update({"meta:intendedToExtend": ["https://ns.adobe.com/xdm/context/nothing"]}),
            ["meta:intendedToExtend[0]"],
        ),
        (lambda b: b.update(allOf=[{"$ref": "#/definitions/other"}]), ["allOf[0].$ref", "#/definitions/other"]),
        (lambda b: b.update(title=""), ["title"]),
        (lambda b: b.update(colour="blue"), ["colour"]),
    ],
)
def test_field_group_refused(
    shared_client: TestClient, shared_headers: dict[str, str], shared_seed: Seed002, change: Any, needles: list[str]
) -> None:
    body = membership_group(title="Refused group")
    change(body)
    assert_problem(
        shared_client.post(SR + "/tenant/fieldgroups", json=body, headers=shared_headers), 400, BAD, *needles
    )


def test_duplicate_titles_are_refused(
    shared_client: TestClient, shared_headers: dict[str, str], shared_seed: Seed002
) -> None:
    resp = shared_client.post(SR + "/tenant/fieldgroups", json=membership_group(), headers=shared_headers)
    assert_problem(resp, 409, CONFLICT, "Audience Membership")


@pytest.mark.parametrize(
    ("pointer", "namespace", "primary", "status", "needles"),
    [
        ("/_demoemea/missing", "Email", False, 400, ["xdm:sourceProperty", "/_demoemea/missing"]),
        ("/_demoemea/visits", "Email", False, 400, ["/_demoemea/visits", "int"]),
        ("/person", "Email", False, 400, ["/person", "object"]),
        ("/_demoemea/audienceMembershipId", "NoSuchNamespace", False, 400, ["xdm:namespace", "NoSuchNamespace"]),
        ("/_demoemea/audienceMembershipId", "Email", True, 400, ["xdm:isPrimary", "/personID"]),
        ("/personID", "Email", False, 409, ["/personID"]),
        ("personID", "Email", False, 400, ["xdm:sourceProperty", "'personID'"]),
    ],
)
def test_descriptor_refused(
    shared_client: TestClient,
    shared_headers: dict[str, str],
    shared_seed: Seed002,
    pointer: str,
    namespace: str,
    primary: bool,
    status: int,
    needles: list[str],
) -> None:
    body = identity(shared_seed.schema_id, pointer, namespace, primary)
    code = BAD if status == 400 else CONFLICT
    assert_problem(
        shared_client.post(SR + "/tenant/descriptors", json=body, headers=shared_headers), status, code, *needles
    )


def test_descriptor_refused_for_a_missing_schema_or_type(
    shared_client: TestClient, shared_headers: dict[str, str], shared_seed: Seed002
) -> None:
    body = identity("https://ns.adobe.com/demoemea/schemas/nothing", "/personID", "Email")
    assert_problem(
        shared_client.post(SR + "/tenant/descriptors", json=body, headers=shared_headers),
        400,
        BAD,
        "xdm:sourceSchema",
        "schemas/nothing",
    )
    body = dict(identity(shared_seed.schema_id, "/personID", "Email"), **{"@type": "xdm:descriptorOneToOne"})
    assert_problem(
        shared_client.post(SR + "/tenant/descriptors", json=body, headers=shared_headers),
        400,
        BAD,
        "@type",
        "xdm:descriptorOneToOne",
    )


def test_profile_toggle_needs_a_primary_identity(
    shared_client: TestClient, shared_headers: dict[str, str], shared_seed: Seed002
) -> None:
    schema = post(shared_client, shared_headers, "/tenant/schemas", schema_body("No identity yet", PROFILE))
    try:
        assert_problem(
            enable_profile(shared_client, shared_headers, schema["$id"]), 400, BAD, "no primary identity", schema["$id"]
        )
        ops = [{"op": "add", "path": "/meta:immutableTags/-", "value": "union"}]
        resp = shared_client.patch(f"{SR}/tenant/schemas/{schema['meta:altId']}", json=ops, headers=shared_headers)
        assert_problem(resp, 400, BAD, "no primary identity")
    finally:
        assert (
            shared_client.delete(f"{SR}/tenant/schemas/{enc(schema['$id'])}", headers=shared_headers).status_code == 204
        )


def test_identity_map_stands_in_for_a_primary_identity_descriptor(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    """As AEP allows: identityMap's entries carry their own primary flag."""
    identity_map = "https://ns.adobe.com/xdm/context/identitymap"
    schema = post(client, headers, "/tenant/schemas", schema_body("Identity map profiles", PROFILE, identity_map))
    # The spec's own example path, "/meta:immutableTags-", is read as ".../-".
    ops = [{"op": "add", "path": "/meta:immutableTags-", "value": "union"}]
    enabled = ok(client.patch(f"{SR}/tenant/schemas/{enc(schema['$id'])}", json=ops, headers=headers))
    assert enabled["meta:immutableTags"] == ["union"]
    scope = Scope(creds["org_id"], "prod")
    resolved = client.app.state.container.schemas.resolve(scope, schema["$id"])  # type: ignore[attr-defined]
    assert resolved.profile_enabled and resolved.identities == ()


@pytest.mark.parametrize(
    ("ops", "needles"),
    [
        ([{"op": "remove", "path": "/meta:immutableTags"}], ["stays enabled"]),
        ([{"op": "remove", "path": "/allOf/1"}], ["_demoemea", "enabled for Profile"]),
        ([{"op": "replace", "path": "/$id", "value": "x"}], ["/$id", "read-only"]),
        (
            [
                {
                    "op": "add",
                    "path": "/allOf/-",
                    "value": {"$ref": "https://ns.adobe.com/xdm/context/profile-personal-details"},
                },
                {"op": "move", "path": "/title"},
            ],
            ["[1].op", "move"],
        ),
        ([{"op": "replace", "path": "/allOf/0", "value": {"$ref": EVENT}}], ["not the schema's class"]),
    ],
)
def test_changes_refused_on_an_enabled_schema(
    shared_client: TestClient, shared_headers: dict[str, str], shared_seed: Seed002, ops: list[Any], needles: list[str]
) -> None:
    resp = shared_client.patch(f"{SR}/tenant/schemas/{enc(shared_seed.schema_id)}", json=ops, headers=shared_headers)
    assert_problem(resp, 400, BAD, *needles)


def test_field_group_changes_that_would_break_an_enabled_schema_are_refused(
    shared_client: TestClient, shared_headers: dict[str, str], shared_seed: Seed002
) -> None:
    url = f"{SR}/tenant/fieldgroups/{enc(shared_seed.group_id)}"
    path = "/definitions/audienceMembership/properties/_demoemea/properties/audienceMembershipName"
    resp = shared_client.patch(url, json=[{"op": "remove", "path": path}], headers=shared_headers)
    assert_problem(resp, 400, BAD, "_demoemea.audienceMembershipName", "enabled for Profile")
    resp = shared_client.patch(
        url, json=[{"op": "replace", "path": path + "/type", "value": "number"}], headers=shared_headers
    )
    assert_problem(resp, 400, BAD, "audienceMembershipName")


def test_a_field_group_cannot_stop_extending_the_class_of_a_schema_that_uses_it(
    shared_client: TestClient, shared_headers: dict[str, str], shared_seed: Seed002
) -> None:
    body = membership_group(**{"meta:intendedToExtend": [EVENT]})
    resp = shared_client.put(f"{SR}/tenant/fieldgroups/{enc(shared_seed.group_id)}", json=body, headers=shared_headers)
    assert_problem(resp, 400, BAD, shared_seed.schema_id, "not the schema's class")


def test_primary_identity_of_an_enabled_schema_stays(
    shared_client: TestClient, shared_headers: dict[str, str], shared_seed: Seed002
) -> None:
    resp = shared_client.delete(f"{SR}/tenant/descriptors/{shared_seed.descriptor_id}", headers=shared_headers)
    assert_problem(resp, 400, BAD, "enabled for Profile", "primary identity")


def test_a_field_group_conflicting_with_the_union_cannot_join_it(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    set_tenant(client, creds["org_id"])
    seed_002(client, headers)
    group = membership_group(title="Conflicting")
    group["definitions"]["audienceMembership"]["properties"]["_demoemea"]["properties"]["audienceMembershipId"] = {
        "type": "integer"
    }
    conflicting = post(client, headers, "/tenant/fieldgroups", group)
    other = post(client, headers, "/tenant/schemas", schema_body("Other profiles", PROFILE, conflicting["$id"]))
    post(client, headers, "/tenant/descriptors", identity(other["$id"], "/personID", "Email"))
    assert_problem(
        enable_profile(client, headers, other["$id"]), 400, BAD, "_demoemea.audienceMembershipId", "different types"
    )


# -- sandboxes and orgs ----------------------------------------------------------------------------------------


def test_resources_of_another_sandbox_or_org_answer_404(
    client: TestClient,
    headers: dict[str, str],
    creds: dict[str, str],
    dev_headers: dict[str, str],
    other_org_headers: dict[str, str],
) -> None:
    set_tenant(client, creds["org_id"])
    seed = seed_002(client, headers)
    for other in (dev_headers, other_org_headers):
        for path in (f"/tenant/schemas/{enc(seed.schema_id)}", f"/tenant/fieldgroups/{enc(seed.group_id)}"):
            assert_problem(client.get(SR + path, headers=accept(other, XED)), 404, MISSING)
        descriptor = client.get(
            f"{SR}/tenant/descriptors/{seed.descriptor_id}", headers=accept(other, "application/vnd.adobe.xdm+json")
        )
        assert_problem(descriptor, 404, MISSING)
        assert_problem(client.delete(f"{SR}/tenant/schemas/{enc(seed.schema_id)}", headers=other), 404, MISSING)
        assert ok(client.get(SR + "/tenant/schemas", headers=accept(other, IDS)))["results"] == []
        union = full(client, other, "/tenant/schemas/_xdm.context.profile__union")
        assert "_demoemea" not in union["properties"]
        body = identity(seed.schema_id, "/_demoemea/audienceMembershipId", "Email", primary=False)
        assert_problem(client.post(SR + "/tenant/descriptors", json=body, headers=other), 400, BAD, "xdm:sourceSchema")
    # Still there for its own sandbox.
    assert ok(client.get(f"{SR}/tenant/schemas/{seed.alt_id}", headers=accept(headers, XED)))["$id"] == seed.schema_id


def test_external_audience_schemas_resolve_too(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    """The dataset schemas that external audience creation writes resolve through SchemaService.resolve."""
    audience_id = create_audience(client, headers, seed_audience())
    container = client.app.state.container  # type: ignore[attr-defined]
    scope = Scope(creds["org_id"], "prod")
    with container.store.read() as conn:
        schema_id = get_row(conn, t.audiences, scope, id=audience_id)["schema_id"]
    schema = container.schemas.resolve(scope, schema_id)
    assert schema.class_id == "https://ns.adobe.com/xdm/context/external-audience"
    assert schema.properties["ppid"]["type"] == "string" and schema.properties["delete"]["type"] == "number"
    assert [(i.path, i.namespace, i.primary) for i in schema.identities] == [(("ppid",), "Email", True)]
    assert_problem(
        client.get(f"{SR}/tenant/schemas/{enc(schema_id)}", headers=accept(dict(headers), XED)), 404, MISSING
    )
    with pytest.raises(NotFound, match="nothing"):
        container.schemas.resolve(Scope(creds["org_id"], "dev"), "nothing")
