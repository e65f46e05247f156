"""audiencehub's Profile Access answers (``GET /data/core/ups/access/entities``) checked against Adobe's spec.

``specs/profile.yaml`` is OpenAPI 3.0. Its ``GetEntityResponse`` is an object of ``Entity`` by entity id, and
``Entity`` leaves everything optional and open, so each answer is validated twice: against the spec as
published, and against a strict overlay (``_close``) of what audiencehub promises: ``entityId``,
``mergePolicy`` (``{"id": ...}``, as the spec's B2B examples answer it), ``sources`` (dataset ids), ``entity``
and ``lastModifiedAt`` (RFC 3339) always; inside ``entity``, the ``identityMap`` of the identity graph
(namespace code → ``[{"id": ...}]``) and, when the profile belongs to audiences, ``segmentMembership``
(namespace → audience id → ``{status, lastQualificationTime, payload?}``), in XDM's Individual Profile shape.

One departure from the published spec: its ``schema.name`` enum lists ``_xdm.context.profile``,
``_xdm.context.account`` and ``_xdm.context.opportunity``; audiencehub also looks up the non-people entities
seed 000 imports (``_xdm.context.segmentdefinition``), and answers them in the same ``Entity`` shape.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.xdm_support import (
    IDENTITY_MAP_FG,
    PERSON_FG,
    PROFILE_CLASS,
    SEGMENT_CLASS,
    dataset,
    enable_profile,
    identity,
    ingest,
    json_lines,
    schema,
)
from tests.conftest import create_audience, run_and_wait, seed_audience, upload
from tests.contract.support import Contract, format_checker, json_body

BASE = "/data/core"
PATH = "/ups/access/entities"
ACCESS = BASE + PATH
UUID = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
SEGMENTATION_FG = "https://ns.adobe.com/xdm/context/profile-segmentation"
PROFILE = "_xdm.context.profile"
SEGMENT_DEFINITION = "_xdm.context.segmentdefinition"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


# -- the specification ---------------------------------------------------------------------------


def operation() -> dict[str, Any]:
    return SPEC.operation(PATH, "get")


def parameter(name: str) -> dict[str, Any]:
    [found] = [p for p in operation()["parameters"] if p.get("name") == name]
    return found


def _read(doc: dict[str, Any]) -> None:
    """``schema.name`` taking segment definitions too (see the module's docstring)."""
    [param] = [p for p in doc["paths"][PATH]["get"]["parameters"] if p.get("name") == "schema.name"]
    param["schema"]["enum"].append(SEGMENT_DEFINITION)


def _close(doc: dict[str, Any]) -> None:
    s = doc["components"]["schemas"]
    membership = {
        "type": "object",
        "required": ["lastQualificationTime", "status"],
        "additionalProperties": False,
        "properties": {
            "status": {"type": "string", "enum": ["realized", "exited"]},
            "lastQualificationTime": {"type": "string", "format": "rfc3339"},
            "payload": {"type": "object"},
        },
    }
    s["StrictEntityBody"] = {
        "type": "object",
        "required": ["identityMap"],
        "properties": {
            "identityMap": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["id"],
                        "additionalProperties": False,
                        "properties": {"id": {"type": "string", "minLength": 1}},
                    },
                },
            },
            "segmentMembership": {
                "type": "object",
                "additionalProperties": {"type": "object", "additionalProperties": membership},
            },
        },
    }
    entity = s["Entity"]
    entity["type"] = "object"
    entity["properties"]["entityId"]["minLength"] = 1
    entity["properties"]["mergePolicy"] = {
        "type": "object",
        "required": ["id"],
        "additionalProperties": False,
        "properties": {"id": {"type": "string", "pattern": UUID}},
    }
    entity["properties"]["sources"]["uniqueItems"] = True
    entity["properties"]["entity"] = {"$ref": "#/components/schemas/StrictEntityBody"}
    entity["properties"]["lastModifiedAt"]["format"] = "rfc3339"
    # requestedIdentity, tags, identityGraph and _page are the spec's too; audiencehub answers none of them.
    for unanswered in ("requestedIdentity", "tags", "identityGraph", "_page"):
        entity["properties"].pop(unanswered)
    entity["required"] = ["entity", "entityId", "lastModifiedAt", "mergePolicy", "sources"]
    entity["additionalProperties"] = False
    s["GetEntityResponse"]["minProperties"] = 1
    s["GetEntityResponse"]["maxProperties"] = 1


def _rfc3339(value: object) -> bool:
    if not isinstance(value, str) or not RFC3339.match(value):
        return False
    dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    return True


SPEC = Contract("profile", read=_read, strict=_close, checker=format_checker(rfc3339=_rfc3339))


def assert_conforms(answer: Any) -> dict[str, Any]:
    """The answer is a valid GetEntityResponse, as published and as closed; answers its one entity."""
    SPEC.assert_conforms("GetEntityResponse", answer)
    [(key, entity)] = answer.items()
    assert key == entity["entityId"]
    found: dict[str, Any] = entity
    return found


# -- the app -------------------------------------------------------------------------------------


def get(client: TestClient, headers: dict[str, str], **params: str) -> Any:
    return json_body(client.get(ACCESS, params=params, headers=headers))


def people(client: TestClient, headers: dict[str, str]) -> str:
    """A profile-enabled dataset whose records carry identityMap, person details and segment membership."""
    sid = schema(client, headers, "Access people", PROFILE_CLASS, IDENTITY_MAP_FG, PERSON_FG, SEGMENTATION_FG)
    enable_profile(client, headers, sid)
    return dataset(client, headers, "Access people", sid, profile=True)


PAT = {
    "_id": "r1",
    "identityMap": {"Email": [{"id": "Pat@Example.com", "primary": True}], "CRMID": [{"id": "crm-7"}]},
    "person": {"name": {"firstName": "Pat", "lastName": "Lee"}, "birthDate": "1990-05-17"},
    "segmentMembership": {"ups": {"seg-1": {"status": "realized", "lastQualificationTime": "2026-11-01T10:00:00Z"}}},
}


# -- the operation -------------------------------------------------------------------------------


def test_the_spec_has_the_operation_and_the_parameters_we_serve() -> None:
    assert operation()["operationId"] == "retrieveEntity"
    assert "Entities" in operation()["tags"]
    assert parameter("schema.name")["in"] == "query"
    for name in ("entityId", "entityIdNS", "fields", "mergePolicyId"):
        assert parameter(name)["in"] == "query", name


def test_our_openapi_names_the_spec_operation(client: TestClient) -> None:
    op = client.app.openapi()["paths"][ACCESS]["get"]  # type: ignore[attr-defined]
    assert op["operationId"] == operation()["operationId"]


def test_our_openapi_takes_the_spec_query_parameters(client: TestClient) -> None:
    op = client.app.openapi()["paths"][ACCESS]["get"]  # type: ignore[attr-defined]
    ours = {p["name"] for p in op["parameters"] if p["in"] == "query"}
    assert {"schema.name", "entityId", "entityIdNS", "fields", "mergePolicyId"} <= ours


# -- the answers ---------------------------------------------------------------------------------


def test_a_profile_merged_from_a_dataset_and_an_audience_conforms(client: TestClient, headers: dict[str, str]) -> None:
    upload(client, headers, "access/list.csv", b"ppid,list_id,delete,process_consent\npat@example.com,l1,0,y\n")
    audience_id = create_audience(client, headers, seed_audience("access/list.csv"))
    assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"
    ds = people(client, headers)
    assert ingest(client, headers, ds, json_lines(PAT))["status"] == "success"

    answer = get(client, headers, **{"schema.name": PROFILE, "entityId": "pat@example.com", "entityIdNS": "Email"})
    entity = assert_conforms(answer)
    assert re.fullmatch(UUID, entity["entityId"])
    assert entity["sources"] == [ds]
    body = entity["entity"]
    assert body["person"] == PAT["person"]
    assert body["identityMap"] == {"CRMID": [{"id": "crm-7"}], "Email": [{"id": "pat@example.com"}]}
    assert body["segmentMembership"]["ups"]["seg-1"] == PAT["segmentMembership"]["ups"]["seg-1"]
    member = body["segmentMembership"]["CustomerAudienceUpload"][audience_id]
    assert member["status"] == "realized" and member["payload"] == {"list_id": "l1", "process_consent": "y"}
    default = client.get(f"{BASE}/ups/config/mergePolicies", params={"default": "true"}, headers=headers).json()
    assert entity["mergePolicy"] == {"id": default["children"][0]["id"]}
    # The same profile under its other identity: the same answer.
    assert get(client, headers, entityId="crm-7", entityIdNS="CRMID") == answer


def test_an_audience_only_profile_conforms(client: TestClient, headers: dict[str, str]) -> None:
    """A person known only from an external audience: no dataset source, no attributes, one membership."""
    upload(client, headers, "access/only.csv", b"ppid,list_id,delete,process_consent\nsam@example.com,l2,0,n\n")
    audience_id = create_audience(client, headers, seed_audience("access/only.csv"))
    assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"
    entity = assert_conforms(get(client, headers, entityId="sam@example.com", entityIdNS="email"))
    assert entity["sources"] == []
    assert set(entity["entity"]) == {"identityMap", "segmentMembership"}


def test_fields_answers_conform(client: TestClient, headers: dict[str, str]) -> None:
    ds = people(client, headers)
    assert ingest(client, headers, ds, json_lines(PAT))["status"] == "success"
    entity = assert_conforms(get(client, headers, entityId="crm-7", entityIdNS="CRMID", fields="identityMap,person"))
    assert set(entity["entity"]) == {"identityMap", "person"}


def test_a_merge_policy_lookup_conforms(client: TestClient, headers: dict[str, str]) -> None:
    ds = people(client, headers)
    assert ingest(client, headers, ds, json_lines(PAT))["status"] == "success"
    policy = client.post(
        f"{BASE}/ups/config/mergePolicies",
        json={
            "name": "by dataset",
            "identityGraph": {"type": "pdg"},
            "attributeMerge": {"type": "dataSetPrecedence", "order": [ds]},
            "schema": {"name": PROFILE},
        },
        headers=headers,
    )
    assert policy.status_code == 200, policy.text
    entity = assert_conforms(
        get(client, headers, entityId="pat@example.com", entityIdNS="Email", mergePolicyId=policy.json()["id"])
    )
    assert entity["mergePolicy"] == {"id": policy.json()["id"]}


def test_a_segment_definition_entity_conforms(client: TestClient, headers: dict[str, str]) -> None:
    ns = client.post(
        f"{BASE}/idnamespace/identities",
        json={"name": "Partner segments", "code": "PartnerSeg", "idType": "NON_PEOPLE"},
        headers=headers,
    )
    assert ns.status_code in (200, 201), ns.text
    sid = schema(client, headers, "Access segments", SEGMENT_CLASS)
    identity(client, headers, sid, "/_id", "PartnerSeg", True)
    enable_profile(client, headers, sid)
    ds = dataset(client, headers, "Access segments", sid, profile=True)
    assert ingest(client, headers, ds, json_lines({"_id": "dmp-1", "segmentName": "High spenders"}))["status"] == (
        "success"
    )
    params = {"schema.name": SEGMENT_DEFINITION, "entityId": "dmp-1", "entityIdNS": "PartnerSeg"}
    entity = assert_conforms(get(client, headers, **params))
    assert entity["entity"]["segmentName"] == "High spenders" and entity["sources"] == [ds]
    assert entity["entity"]["identityMap"] == {"PartnerSeg": [{"id": "dmp-1"}]}
    assert SEGMENT_DEFINITION not in parameter("schema.name")["schema"]["enum"]  # the departure is still needed


def test_refusals_answer_the_status_the_spec_declares(client: TestClient, headers: dict[str, str]) -> None:
    declared = {int(code) for code in operation()["responses"]}
    cases = [
        ({"entityId": "nobody@example.com", "entityIdNS": "Email"}, 404),
        ({"entityId": "x", "entityIdNS": "NoSuchNamespace"}, 400),
        ({"entityIdNS": "Email"}, 400),
        ({"schema.name": "_xdm.context.experienceevent", "entityId": "a@b.co", "entityIdNS": "Email"}, 422),
    ]
    for params, status in cases:
        resp = client.get(ACCESS, params=params, headers=headers)
        assert resp.status_code == status and status in declared, (params, resp.status_code, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        ref = operation()["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert SPEC.errors(ref.rsplit("/", 1)[-1], resp.json()) == [], resp.json()


# -- the validators themselves fail when they should ---------------------------------------------


@pytest.fixture
def answer(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    ds = people(client, headers)
    assert ingest(client, headers, ds, json_lines(PAT))["status"] == "success"
    found: dict[str, Any] = get(client, headers, entityId="pat@example.com", entityIdNS="Email")
    return found


@pytest.mark.parametrize(
    ("change", "strict_only"),
    [
        (lambda e: e.update(entityId=7), False),
        (lambda e: e.update(sources="ds"), False),
        (lambda e: e.update(sources=[1]), False),
        (lambda e: e.update(entity=[]), False),
        (lambda e: e.update(lastModifiedAt=1767225600), False),
        (lambda e: e.update(mergePolicy="default"), False),
        (lambda e: e.pop("mergePolicy"), True),
        (lambda e: e.pop("lastModifiedAt"), True),
        (lambda e: e.update(lastModifiedAt="2026-11-01"), True),
        (lambda e: e.update(lastModifiedAt="yesterday"), True),
        (lambda e: e["mergePolicy"].update(id="x"), True),
        (lambda e: e["entity"].pop("identityMap"), True),
        (lambda e: e["entity"]["identityMap"].update(Email=[{"id": "a@b.co", "ns": "Email"}]), True),
        (lambda e: e["entity"]["identityMap"].update(Email=[]), True),
        (lambda e: e["entity"]["segmentMembership"]["ups"]["seg-1"].update(status="qualified"), True),
        (lambda e: e["entity"]["segmentMembership"]["ups"]["seg-1"].pop("lastQualificationTime"), True),
        (lambda e: e.update(requestedIdentity={}), True),
        (lambda e: e.update(secret="x"), True),
    ],
    ids=[
        "entityId-number",
        "sources-string",
        "source-number",
        "entity-array",
        "lastModified-epoch",
        "mergePolicy-string",
        "without-mergePolicy",
        "without-lastModified",
        "lastModified-date-only",
        "lastModified-not-a-time",
        "mergePolicy-id-not-uuid",
        "without-identityMap",
        "identity-with-extra-key",
        "identity-list-empty",
        "membership-status-unknown",
        "membership-without-time",
        "unanswered-spec-property",
        "unknown-property",
    ],
)
def test_the_validators_reject_an_answer_that_breaks_the_contract(
    answer: dict[str, Any], change: Any, strict_only: bool
) -> None:
    assert_conforms(answer)
    broken = copy.deepcopy(answer)
    change(next(iter(broken.values())))
    assert SPEC.errors("GetEntityResponse", broken, strict=True), broken
    assert bool(SPEC.errors("GetEntityResponse", broken)) is not strict_only, broken


def test_the_validators_reject_other_broken_answers(answer: dict[str, Any]) -> None:
    [(key, entity)] = answer.items()
    assert SPEC.errors("GetEntityResponse", {}, strict=True)
    assert SPEC.errors("GetEntityResponse", {key: entity, "other": entity}, strict=True)
    assert SPEC.errors("GetEntityResponse", [entity])
