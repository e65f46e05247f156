"""The XDM rules without a server: standard resources, resolution, custom fields, ids, JSON Patch."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from audiencehub.domain import xdm
from audiencehub.domain.xdm import XdmInvalid


def resolve(ref: str) -> tuple[dict[str, Any], tuple[tuple[str, ...], ...]]:
    doc = xdm.find_global(ref)
    assert doc is not None, ref
    return xdm.resolve_document(doc, xdm.find_global)


@pytest.mark.parametrize(
    ("org_id", "tenant"),
    [
        ("DemoEMEA@AdobeOrg", "demoemea"),
        ("0A1B2C3D4E5F60718293A4B5@AdobeOrg", "t0a1b2c3d4e5f60718293a4b5"),
        ("ACME-Corp.EU@adobeorg", "acmecorpeu"),
        ("@AdobeOrg", "t"),
        ("ORGB0000000000000000@AdobeOrg", "orgb0000000000000000"),
    ],
)
def test_tenant_id_derived_from_the_org_id(org_id: str, tenant: str) -> None:
    assert xdm.tenant_id_for(org_id) == tenant
    assert xdm.check_tenant_id(tenant) == tenant


@pytest.mark.parametrize("bad", ["", "Demo", "1abc", "_demo", "demo-emea", "a" * 65])
def test_tenant_ids_that_cannot_name_fields_are_refused(bad: str) -> None:
    with pytest.raises(XdmInvalid, match="tenant id"):
        xdm.check_tenant_id(bad)


def test_ids_and_alt_ids() -> None:
    assert xdm.alt_id_of(xdm.PROFILE_CLASS) == "_xdm.context.profile"
    assert xdm.alt_id_of("https://ns.adobe.com/demoemea/schemas/0123") == "_demoemea.schemas.0123"
    assert xdm.union_class("_xdm.context.profile__union") == xdm.PROFILE_CLASS
    assert xdm.union_class(xdm.union_id(xdm.EVENT_CLASS)) == xdm.EVENT_CLASS
    assert xdm.union_class("_xdm.context.profile") is None
    assert xdm.find_global("_xdm.context.profile") == xdm.find_global(xdm.PROFILE_CLASS)
    assert xdm.global_kind(xdm.PROFILE_CLASS) == "classes"
    assert xdm.global_kind(xdm.IDENTITY_MAP) == "mixins"
    assert xdm.global_kind(xdm.RECORD) is None and xdm.global_kind(xdm.AUDITABLE) is None


def test_find_global_hands_out_copies() -> None:
    doc = xdm.find_global(xdm.PROFILE_CLASS)
    assert doc is not None
    doc["title"] = "changed"
    assert xdm.find_global(xdm.PROFILE_CLASS)["title"] == "XDM Individual Profile"  # type: ignore[index]


def test_the_classes_resolve_through_their_behaviors() -> None:
    profile, required = resolve(xdm.PROFILE_CLASS)
    assert {"_id", "personID", "_repo", "createdByBatchID"} <= set(profile) and required == ()
    events, required = resolve(xdm.EVENT_CLASS)
    assert required == (("_id",), ("timestamp",))
    assert events["timestamp"]["format"] == "date-time" and "identityMap" in events
    segments, required = resolve(xdm.SEGMENT_DEFINITION_CLASS)
    assert required == (("segmentName",),)
    assert segments["segmentStatus"]["enum"] == ["ACTIVE", "INACTIVE", "DELETED", "DRAFT", "REVOKED"]
    assert segments["labels"] == {**segments["labels"], "type": "array", "meta:xdmType": "array"}


def test_standard_field_groups_have_the_xdm_shapes() -> None:
    ids = {doc["$id"] for doc in xdm.FIELD_GROUPS}
    assert {f"{xdm.NS}/xdm/context/{name}" for name in ("profile-person-details", "profile-segmentation")} <= ids
    for doc in xdm.FIELD_GROUPS:
        assert doc["meta:intendedToExtend"], doc["$id"]
        assert doc["meta:altId"] == xdm.alt_id_of(doc["$id"])
        resolve(doc["$id"])
    identity_map, _ = resolve(xdm.IDENTITY_MAP)
    field = identity_map["identityMap"]
    # A map: additionalProperties and no properties.
    assert field["type"] == "object" and field["meta:xdmType"] == "map" and "properties" not in field
    item = field["additionalProperties"]["items"]["properties"]
    assert set(item) == {"id", "authenticatedState", "primary"}
    segmentation, _ = resolve(f"{xdm.NS}/xdm/context/profile-segmentation")
    membership = segmentation["segmentMembership"]["additionalProperties"]["additionalProperties"]["properties"]
    assert membership["status"]["enum"] == ["existing", "realized", "exited"]
    assert membership["lastQualificationTime"]["format"] == "date-time"
    commerce, _ = resolve(f"{xdm.NS}/xdm/context/experienceevent-commerce")
    product = commerce["productListItems"]["items"]["properties"]
    assert product["quantity"]["meta:xdmType"] == "int" and product["priceTotal"]["type"] == "number"
    assert set(product) >= {"SKU", "name", "quantity", "priceTotal"}


def test_every_standard_field_carries_its_xdm_type() -> None:
    def walk(fields: dict[str, Any], where: str) -> None:
        for name, field in fields.items():
            assert "meta:xdmType" in field, f"{where}.{name}"
            if field.get("type") == "integer":
                assert field["meta:xdmType"] in xdm.INTEGER_TYPES
            for key in ("properties",):
                if key in field:
                    walk(field[key], f"{where}.{name}")
            for key in ("items", "additionalProperties"):
                if key in field:
                    walk({key: field[key]}, f"{where}.{name}")

    for doc in (*xdm.CLASSES, *xdm.FIELD_GROUPS):
        walk(xdm.resolve_document(doc, xdm.find_global)[0], doc["$id"])


def test_merge_refuses_two_types_for_one_field_and_names_its_path() -> None:
    into = {"a": {"type": "object", "properties": {"b": {"type": "string", "meta:xdmType": "string"}}}}
    same = copy.deepcopy(into)
    xdm.merge_properties(into, same)
    xdm.merge_properties(into, {"a": {"type": "object", "properties": {"c": {"type": "number"}}}})
    assert set(into["a"]["properties"]) == {"b", "c"}
    with pytest.raises(XdmInvalid, match=r"a\.b: defined twice with different types \(string/string and integer/int\)"):
        xdm.merge_properties(
            into, {"a": {"type": "object", "properties": {"b": {"type": "integer", "meta:xdmType": "int"}}}}
        )
    with pytest.raises(XdmInvalid, match="a: defined twice"):
        xdm.merge_properties(into, {"a": {"type": "object", "additionalProperties": {"type": "string"}}})


def test_resolution_refuses_unknown_references() -> None:
    doc = {"$id": "x", "allOf": [{"$ref": "https://ns.adobe.com/nothing"}]}
    with pytest.raises(XdmInvalid, match="nothing"):
        xdm.resolve_document(doc, xdm.find_global)
    with pytest.raises(XdmInvalid, match="#/definitions/missing"):
        xdm.resolve_document({"$id": "x", "allOf": [{"$ref": "#/definitions/missing"}]}, xdm.find_global)


def tenant_group(**fields: Any) -> dict[str, Any]:
    return {"group": {"properties": {"_demoemea": {"type": "object", "properties": fields}}}}


def test_custom_fields_get_their_xdm_types() -> None:
    checked = xdm.check_field_group_definitions(
        tenant_group(
            name={"type": "string"},
            born={"type": "string", "format": "date"},
            seen={"type": "string", "format": "date-time"},
            count={"type": "integer"},
            small={"type": "integer", "minimum": 0, "maximum": 100},
            big={"type": "integer", "meta:xdmType": "long"},
            score={"type": "number"},
            flag={"type": "boolean"},
            tags={"type": "array", "items": {"type": "string"}},
            attrs={"type": "object", "additionalProperties": {"type": "string"}},
        ),
        "demoemea",
    )
    fields = checked["group"]["properties"]["_demoemea"]
    assert fields["meta:xdmType"] == "object"
    types = {name: f["meta:xdmType"] for name, f in fields["properties"].items()}
    assert types == {
        "name": "string",
        "born": "date",
        "seen": "date-time",
        "count": "int",
        "small": "byte",
        "big": "long",
        "score": "number",
        "flag": "boolean",
        "tags": "array",
        "attrs": "map",
    }
    assert fields["properties"]["tags"]["items"]["meta:xdmType"] == "string"


@pytest.mark.parametrize(
    ("definitions", "needle"),
    [
        ({"group": {"properties": {"loose": {"type": "string"}}}}, "definitions.group.properties.loose: custom fields"),
        ({"group": {"properties": {"_other": {"type": "object", "properties": {}}}}}, "_other"),
        ({"group": {"properties": {"_demoemea": {"type": "string"}}}}, "must be an object"),
        (tenant_group(x={"type": "text"}), "_demoemea.properties.x.type: 'text'"),
        (tenant_group(x={"$ref": "https://ns.adobe.com/xdm/context/person"}), "x.$ref: data types"),
        (tenant_group(x={"type": "string", "format": "ipv4"}), "x.format: 'ipv4'"),
        (tenant_group(x={"type": "string", "enum": []}), "x.enum"),
        (tenant_group(x={"type": "string", "pattern": "("}), "x.pattern"),
        (tenant_group(x={"type": "string", "maxLength": -1}), "x.maxLength"),
        (tenant_group(x={"type": "integer", "meta:xdmType": "huge"}), "x.meta:xdmType: 'huge'"),
        (tenant_group(x={"type": "array"}), "x.items"),
        (tenant_group(x={"type": "object"}), "either properties"),
        (tenant_group(x={"type": "object", "properties": {}, "required": ["y"]}), "x.required: 'y'"),
        (tenant_group(**{"9lives": {"type": "string"}}), "'9lives'"),
        (tenant_group(__ah_x={"type": "string"}), "'__ah_x'"),
        ({}, "at least one definition"),
        ({"group": {"properties": {}, "meta:extra": 1}}, "definitions.group.meta:extra"),
    ],
)
def test_custom_fields_refused_with_their_path(definitions: dict[str, Any], needle: str) -> None:
    with pytest.raises(XdmInvalid) as caught:
        xdm.check_field_group_definitions(definitions, "demoemea")
    assert needle in str(caught.value)


def test_nested_required_fields_become_required_paths() -> None:
    doc = {
        "$id": "x",
        "definitions": {
            "d": {"properties": {"_t": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}}
        },
        "allOf": [{"$ref": "#/definitions/d"}],
        "required": ["_t"],
    }
    _, required = xdm.resolve_document(doc, xdm.find_global)
    assert required == (("_t",), ("_t", "a"))


def test_field_at_walks_objects_only() -> None:
    props, _ = resolve(f"{xdm.NS}/xdm/context/profile-person-details")
    assert xdm.field_at(props, ("person", "name", "firstName"))["type"] == "string"  # type: ignore[index]
    assert xdm.field_at(props, ("person", "nothing")) is None
    identity_map, _ = resolve(xdm.IDENTITY_MAP)
    assert xdm.field_at(identity_map, ("identityMap", "Email")) is None


@pytest.mark.parametrize(
    ("pointer", "path"),
    [("/_demoemea/personID", ("_demoemea", "personID")), ("/_id", ("_id",)), ("/a~1b/c~0d", ("a/b", "c~d"))],
)
def test_pointer_paths(pointer: str, path: tuple[str, ...]) -> None:
    assert xdm.pointer_path(pointer, "where") == path


@pytest.mark.parametrize("bad", ["personID", "/", "", None])
def test_bad_pointers_are_refused(bad: Any) -> None:
    with pytest.raises(XdmInvalid, match="where"):
        xdm.pointer_path(bad, "where")


def test_apply_patch_adds_replaces_and_removes() -> None:
    doc = {"allOf": [{"$ref": "a"}], "title": "t", "meta:immutableTags": []}
    out = xdm.apply_patch(
        doc,
        [
            {"op": "add", "path": "/allOf/-", "value": {"$ref": "b"}},
            {"op": "add", "path": "/allOf/0", "value": {"$ref": "first"}},
            {"op": "REPLACE", "path": "/title", "value": "new"},
            {"op": "add", "path": "/meta:immutableTags/-", "value": "union"},
            {"op": "remove", "path": "/allOf/1"},
            {"op": "add", "path": "/description", "value": "d"},
        ],
    )
    assert out == {
        "allOf": [{"$ref": "first"}, {"$ref": "b"}],
        "title": "new",
        "meta:immutableTags": ["union"],
        "description": "d",
    }
    assert doc == {"allOf": [{"$ref": "a"}], "title": "t", "meta:immutableTags": []}


@pytest.mark.parametrize(
    ("ops", "needle"),
    [
        ([], "JSON array"),
        ({"op": "add"}, "JSON array"),
        ([{"op": "move", "path": "/a", "from": "/b"}], "[0].op: 'move'"),
        ([{"op": "add", "path": "/a"}], "[0].value"),
        ([{"op": "remove", "path": "/nothing"}], "'nothing' does not exist"),
        ([{"op": "replace", "path": "/list/5", "value": 1}], "'5' is not an index"),
        ([{"op": "add", "path": "title", "value": 1}], "must start with /"),
        ([{"op": "add", "path": "/title/x", "value": 1}], "cannot add inside a str"),
        ([{"op": "add", "path": "/deep/er/x", "value": 1}], "'deep' does not exist"),
    ],
)
def test_apply_patch_refusals(ops: Any, needle: str) -> None:
    with pytest.raises(XdmInvalid) as caught:
        xdm.apply_patch({"title": "t", "list": [1]}, ops)
    assert needle in str(caught.value)


def test_text_forms_strip_titles_and_descriptions() -> None:
    props, _ = resolve(xdm.PROFILE_CLASS)
    bare = xdm.strip_text(props)
    assert "title" not in bare["personID"] and "description" not in bare["personID"]
    described = xdm.strip_titles(props)
    assert "title" not in described["personID"] and described["personID"]["description"]
