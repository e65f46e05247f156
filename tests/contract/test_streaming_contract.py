"""audiencehub's streaming answers checked against Adobe's published Streaming Ingestion specification.

``specs/streaming-ingestion.yaml`` is OpenAPI 3.0. As in the Flow Service contract, each answer is
validated against the spec as published and against a strict overlay that states what audiencehub
promises (every property required, nothing else). The overlay also fixes two slips of the published
schema, following Adobe's own examples and tutorials: the single-message answer's ``inletID`` is
``inletId``, and ``receivedTimeMs`` is epoch milliseconds, which ``format: int32`` cannot hold.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.xdm_support import PERSON_FG, PROFILE_CLASS, SEGMENT_CLASS, dataset, schema
from tests.contract.support import Contract, format_checker, json_body, our_operation_ids
from tests.contract.test_flow_service_contract import SPEC as FLOW_SERVICE

FS = "/data/foundation/flowservice/connections"
HTTP_API = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
SINGLE = "/collection/{CONNECTION_ID}"
BATCH = "/collection/batch/{CONNECTION_ID}"
OPERATIONS = [(SINGLE, "post", "sendMessage"), (BATCH, "post", "postBatchOfStreamingMessages")]


def _close(doc: dict[str, Any]) -> None:
    s = doc["components"]["schemas"]
    single = s["StreamingIngestionResponse"]
    single["properties"]["inletId"] = single["properties"].pop("inletID")
    single["properties"]["receivedTimeMs"].pop("format")
    # The streaming validation guide's answers: {"skipped": true} by default, {"status": "pass"} when asked.
    single["properties"]["syncValidation"] = {
        "oneOf": [
            {"type": "object", "required": ["skipped"], "properties": {"skipped": {"const": True}}},
            {"type": "object", "required": ["status"], "properties": {"status": {"const": "pass"}}},
        ],
    }
    single["required"] = sorted(single["properties"])
    single["additionalProperties"] = False
    many = s["BatchResponseDTO"]
    many["required"] = sorted(many["properties"])
    many["additionalProperties"] = False
    # The multiple-messages tutorial: a refused message answers its statusCode and message instead.
    s["BatchResponseMessage"] = {
        "oneOf": [
            {
                "type": "object",
                "required": ["xactionId"],
                "properties": {"xactionId": {"type": "string"}},
                "additionalProperties": False,
            },
            {
                "type": "object",
                "required": ["statusCode", "message"],
                "properties": {"statusCode": {"const": 400}, "message": {"type": "string"}},
                "additionalProperties": False,
            },
        ]
    }


SPEC = Contract("streaming-ingestion", strict=_close, checker=format_checker("int32"))


# -- the app -------------------------------------------------------------------------------------


class Inlet:
    def __init__(self, client: TestClient, headers: dict[str, str], class_id: str, *field_groups: str) -> None:
        self.org_id = headers["x-gw-ims-org-id"]
        self.schema_id = schema(client, headers, f"Streaming contract {class_id}", class_id, *field_groups)
        self.dataset_id = dataset(client, headers, f"Streaming contract {class_id}", self.schema_id)
        body = {
            "name": "contract inlet",
            "connectionSpec": {"id": HTTP_API, "version": "1.0"},
            "auth": {"specName": "Streaming Connection", "params": {"dataType": "xdm"}},
        }
        created = json_body(client.post(FS, json=body, headers=headers), 201)
        self.connection = client.get(f"{FS}/{created['id']}", headers=headers).json()
        self.inlet_id = self.connection["items"][0]["auth"]["params"]["inletId"]

    def message(self, entity: dict[str, Any]) -> dict[str, Any]:
        ref = {"id": self.schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
        return {
            "header": {
                "schemaRef": ref,
                "imsOrgId": self.org_id,
                "datasetId": self.dataset_id,
                "flowId": "69f188b6-af07-4587-8061-e94d34637b41",
                "source": {"name": "contract"},
            },
            "body": {"xdmMeta": {"schemaRef": dict(ref)}, "xdmEntity": entity},
        }

    def path(self, spec_path: str) -> str:
        return spec_path.replace("{CONNECTION_ID}", self.inlet_id)


@pytest.fixture
def segments(client: TestClient, headers: dict[str, str]) -> Inlet:
    return Inlet(client, headers, SEGMENT_CLASS)


# -- the operations ------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method", "operation_id"), OPERATIONS, ids=[o for _, _, o in OPERATIONS])
def test_the_spec_has_each_operation_we_serve(path: str, method: str, operation_id: str) -> None:
    assert SPEC.operation(path, method)["operationId"] == operation_id


def test_our_openapi_names_the_spec_operations_at_the_spec_paths(client: TestClient) -> None:
    ours = our_operation_ids(client, key=lambda path: path.replace("{inlet_id}", "{CONNECTION_ID}"))
    for path, method, operation_id in OPERATIONS:
        assert ours.get((path, method)) == operation_id, (path, method)


def _codes(path: str) -> set[int]:
    return {int(code) for code in SPEC.operation(path, "post")["responses"]}


def test_answers_use_the_status_codes_the_spec_declares(client: TestClient, segments: Inlet) -> None:
    good = segments.message({"_id": "s1", "segmentName": "One"})
    assert client.post(segments.path(SINGLE), json=good).status_code == 200 and 200 in _codes(SINGLE)
    assert client.post(segments.path(BATCH), json={"messages": [good]}).status_code == 207 and 207 in _codes(BATCH)
    bad = segments.message({"_id": 1})
    resp = client.post(segments.path(SINGLE), params={"syncValidation": "true"}, json=bad)
    assert resp.status_code == 400 and 400 in _codes(SINGLE)
    huge = b'{"pad": "' + b"x" * 1_000_001 + b'"}'
    for path in (SINGLE, BATCH):
        assert client.post(segments.path(path), content=huge).status_code == 413 and 413 in _codes(path)


# -- the answers ---------------------------------------------------------------------------------


def test_single_message_answers_conform(client: TestClient, segments: Inlet) -> None:
    good = segments.message({"_id": "s1", "segmentName": "One"})
    for params in ({}, {"syncValidation": "true"}):
        resp = client.post(segments.path(SINGLE), params=params, json=good)
        assert resp.status_code == 200, resp.text
        # The published schema spells the id ``inletID`` (its own example: ``inletId``) and makes
        # receivedTimeMs an int32: its shape is checked loosely, ours strictly.
        SPEC.assert_conforms("StreamingIngestionResponse", resp.json(), as_published=False)
        loose = {k: v for k, v in resp.json().items() if k != "receivedTimeMs"}
        assert SPEC.errors("StreamingIngestionResponse", loose) == []


def test_batch_answers_conform_with_refused_messages_too(client: TestClient, segments: Inlet) -> None:
    good = segments.message({"_id": "s1", "segmentName": "One"})
    resp = client.post(segments.path(BATCH), json={"messages": [good, {"header": {}}, good]})
    assert resp.status_code == 207, resp.text
    SPEC.assert_conforms("BatchResponseDTO", resp.json())
    assert [sorted(r) for r in resp.json()["responses"]] == [["xactionId"], ["message", "statusCode"], ["xactionId"]]


def test_the_messages_we_send_conform_to_the_request_schemas(segments: Inlet) -> None:
    message = segments.message({"_id": "s1", "segmentName": "One"})
    assert SPEC.errors("streamingMessage", message) == []
    assert SPEC.errors("BatchMessage", {"messages": [message, message]}) == []


def test_the_spec_example_message_is_taken_and_sync_validation_names_what_the_schema_lacks(
    client: TestClient, headers: dict[str, str]
) -> None:
    """The spec's example (a person with a workEmail) sent to a profile schema with Demographic Details only.

    As in AEP's streaming validation guide, ``workEmail`` is not a field of that schema: asynchronous
    mode takes the message, synchronous validation refuses it and says why.
    """
    inlet = Inlet(client, headers, PROFILE_CLASS, PERSON_FG)
    # YAML reads the example's birthDate as a date; as JSON it is the text it was written as.
    example = json.loads(json.dumps(SPEC.schemas()["streamingMessage"]["example"], default=str))
    assert SPEC.errors("streamingMessage", example) == []
    for where in (example["header"], example["body"]["xdmMeta"]):
        where["schemaRef"]["id"] = inlet.schema_id
    example["header"].update(imsOrgId=inlet.org_id, datasetId=inlet.dataset_id)
    taken = client.post(inlet.path(SINGLE), json=example)
    assert taken.status_code == 200, taken.text
    refused = client.post(inlet.path(SINGLE), params={"syncValidation": "true"}, json=example)
    assert refused.status_code == 400, refused.text
    [validation] = refused.json()["report"]["cause"]["_streamingValidation"]
    pointers = {c["pointerToViolation"]: c["keyword"] for c in validation["causingExceptions"]}
    assert pointers == {"#/workEmail": "additionalProperties"}, validation


def test_the_http_api_connection_conforms_to_the_flow_service_spec(segments: Inlet) -> None:
    FLOW_SERVICE.assert_conforms("ConnectionListResponse", segments.connection)
    FLOW_SERVICE.assert_conforms("ConnectionItemDTO", segments.connection["items"][0])


# -- the validators themselves fail when they should ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "instance"),
    [
        ("StreamingIngestionResponse", {"inletId": "i", "xactionId": "x", "receivedTimeMs": "1"}),
        ("StreamingIngestionResponse", {"inletID": "i", "xactionId": "x", "receivedTimeMs": 1, "syncValidation": {}}),
        ("StreamingIngestionResponse", {"inletId": "i", "xactionId": "x", "receivedTimeMs": 1}),
        ("BatchResponseDTO", {"inletId": "i", "batchId": "b", "receivedTimeMs": 1, "responses": [{"xactionId": 1}]}),
        ("BatchResponseDTO", {"inletId": "i", "batchId": "b", "receivedTimeMs": 1, "responses": [{"statusCode": 400}]}),
        ("BatchResponseDTO", {"inletId": "i", "batchId": "b", "responses": []}),
    ],
    ids=["time-as-text", "spec-spelling", "no-sync-validation", "xaction-number", "no-message", "no-received-time"],
)
def test_the_strict_validators_reject_broken_answers(name: str, instance: Any) -> None:
    assert SPEC.errors(name, instance, strict=True), instance
