"""audiencehub's Catalog and batch ingestion answers checked against Adobe's published specifications.

``specs/catalog.yaml`` (Catalog Service: datasets and batches) and ``specs/batch-ingestion.yaml`` (Batch
Ingestion: create, upload, signal) are OpenAPI 3.0; their component schemas are JSON Schema with annotations
(``example``, ``description``) that Draft 7 ignores, and ``format: int64`` is checked by a format checker of
our own. Each answer is validated twice:

- against the spec as published, with three departures where the spec contradicts itself or AEP's guides
  (``_read``, ``_read_ingest``), each one read the way AEP answers:

  * batch ingestion's ``Batch.status`` enum lacks ``loading`` and ``aborted``, yet AEP's batch ingestion
    guide answers a newly created batch with ``"status": "loading"``, ABORT leaves a batch ``aborted``, and
    the Catalog spec's own ``batchResponse.status`` lists both: the Catalog's enum is used;
  * batch ingestion's ``Batch.inputFormat.format`` enum is ``parquet``/``json`` only, while the same spec's
    ``IngestBatch`` request takes ``CSV`` (and AEP's guide ingests CSV files): ``csv`` is added;
  * ``relatedObjects.type`` is an enum in both specs, yet the Catalog's own ``listBatches`` example answers
    types outside it (``expressionBlock``, ``service``, ``serviceDefinition``): it is read as an open string
    (audiencehub relates an external audience's batch to its run with ``externalAudienceRun``).

- against a strict overlay (``_close_catalog``, ``_close_ingest``) that states what audiencehub promises: the
  properties it always answers are required, nothing else may appear, timestamps are epoch milliseconds. Two
  additions to the spec's property lists: ``sandboxName`` (AEP's answers name the sandbox; the spec does not) and, on
  datasets, ``enableErrorDiagnostics`` (the spec's own ``retrieveDataset`` example answers it).
  ``fileDescription`` stays open: AEP keeps what a client sends there (seed 002 sends ``persistet``).

Where our answer or our routes break the spec and the spec is right, the test is ``xfail(strict=True)``
with the reason.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.xdm_support import (
    IDENTITY_MAP_FG,
    PERSON_FG,
    PROFILE_CLASS,
    dataset,
    enable_profile,
    field_group,
    json_lines,
    schema,
    tenant,
)
from tests.conftest import create_audience, run_and_wait, seed_audience, upload, wait_for
from tests.contract.support import Contract, format_checker, json_body, our_operation_ids, shape

CATALOG = "/data/foundation/catalog"
IMPORT = "/data/foundation/import"
EXPORT = "/data/foundation/export"
MS = {"type": "integer", "minimum": 10**12, "maximum": 10**13}  # epoch milliseconds (2001 to 2286)
UUID4 = "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
# A run's batch id is a UUID5 of the run id (services/ingestion.py: the same id when a run is retried).
UUID = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
XED = "application/vnd.adobe.xed+json;version=1"

# What every dataset answer holds (lastBatch* appear once the dataset has a batch).
DATASET_KEYS = (
    "name",
    "description",
    "imsOrg",
    "sandboxName",
    "version",
    "created",
    "updated",
    "createdClient",
    "createdUser",
    "updatedUser",
    "tags",
    "schemaRef",
    "fileDescription",
    "enableErrorDiagnostics",
    "files",
)
# What every batch answer holds (started, completed and failedBatchLocation appear as the batch advances).
BATCH_KEYS = (
    "id",
    "imsOrg",
    "sandboxName",
    "status",
    "created",
    "updated",
    "createdClient",
    "createdUser",
    "updatedUser",
    "version",
    "relatedObjects",
    "recordCount",
    "failedRecordCount",
    "size",
    "tags",
    "inputFormat",
    "errors",
    "metrics",
)

# -- the specifications --------------------------------------------------------------------------


def _read(doc: dict[str, Any]) -> None:
    """The departures both specs share (see the module's docstring)."""
    doc["components"]["schemas"]["relatedObjects"]["properties"]["type"].pop("enum")


def _read_ingest(doc: dict[str, Any]) -> None:
    """Batch ingestion's departures: the shared one, and its Batch read as the Catalog's."""
    _read(doc)
    batch = doc["components"]["schemas"]["Batch"]["properties"]
    batch["status"]["enum"] = list(CATALOG_SPEC.published()["components"]["schemas"]["batchStatus"]["enum"])
    batch["inputFormat"]["properties"]["format"]["enum"].append("csv")


def _close(node: dict[str, Any], required: tuple[str, ...] | list[str], **extra: Any) -> None:
    node.setdefault("properties", {}).update(extra)
    assert set(required) <= set(node["properties"]), sorted(set(required) - set(node["properties"]))
    node["required"] = sorted(required)
    node["additionalProperties"] = False


def _close_batch(batch: dict[str, Any], s: dict[str, Any]) -> None:
    """A batch as audiencehub answers it, in either spec's Batch schema."""
    _close(
        batch,
        BATCH_KEYS,
        id={"type": "string", "pattern": UUID},
        sandboxName={"type": "string", "minLength": 1},
        failedBatchLocation={"type": "string", "pattern": "^/data/foundation/export/batches/[^/]+/failed$"},
    )
    p = batch["properties"]
    for key in ("created", "updated", "started", "completed"):
        p[key] = {**p[key], **MS}
    for key in ("recordCount", "failedRecordCount", "size"):
        p[key] = {**p[key], "minimum": 0}
    p["version"] = {**p["version"], "pattern": r"^\d+\.\d+\.\d+$"}
    p["relatedObjects"] = {**p["relatedObjects"], "minItems": 1}
    p["tags"] = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
    p["metrics"] = {
        "type": "object",
        "properties": {
            k: {"type": "integer", "minimum": 0} for k in ("recordsRead", "recordsWritten", "failedRecordCount")
        },
        "required": ["failedRecordCount", "recordsRead", "recordsWritten"],
        "additionalProperties": False,
    }
    fmt = p["inputFormat"]
    if "$ref" in fmt:
        fmt = p["inputFormat"] = copy.deepcopy(s[fmt["$ref"].rsplit("/", 1)[-1]])
    fmt["properties"]["format"] = {"type": "string", "enum": ["csv", "json", "parquet"]}
    fmt["properties"].setdefault("isMultiLineJson", {"type": "boolean"})
    fmt["required"] = ["format"]
    fmt["additionalProperties"] = False
    _close(s["relatedObjects"], ["id", "type"])
    s["relatedObjects"]["properties"]["type"] = {"type": "string", "enum": ["dataSet", "externalAudienceRun"]}
    # AEP's failed batches count their records in each error (audiencehub: the records that failed).
    _close(s["errors"], ["code", "description"], recordCount={"type": "integer", "minimum": 1})


def _close_catalog(doc: dict[str, Any]) -> None:
    """The dataset and batch schemas closed: what audiencehub answers is required, nothing more."""
    s = doc["components"]["schemas"]
    ds = s["dataSetResponse"]
    _close(
        ds,
        DATASET_KEYS,
        sandboxName={"type": "string", "minLength": 1},
        enableErrorDiagnostics={"type": "boolean"},
    )
    p = ds["properties"]
    for key in ("created", "updated"):
        p[key] = {**p[key], **MS}
    p["files"] = {"type": "string", "pattern": "^@/dataSetFiles\\?dataSetId=[^&]+$"}
    p["fileDescription"] = {**p["fileDescription"], "required": ["format"]}
    _close(s["schemaRef"], ["contentType", "id"])
    _close_batch(s["batchResponse"], s)


def _close_ingest(doc: dict[str, Any]) -> None:
    s = doc["components"]["schemas"]
    _close_batch(s["Batch"], s)


CATALOG_SPEC = Contract("catalog", read=_read, strict=_close_catalog, checker=format_checker("int64"))
INGEST_SPEC = Contract("batch-ingestion", read=_read_ingest, strict=_close_ingest, checker=format_checker("int64"))


# The operations audiencehub serves: (spec, spec path, method, operationId).
OPERATIONS = [
    (CATALOG_SPEC, "/dataSets", "post", "createDataset"),
    (CATALOG_SPEC, "/dataSets", "get", "listDatasets"),
    (CATALOG_SPEC, "/dataSets/{DATASET_ID}", "get", "retrieveDataset"),
    (CATALOG_SPEC, "/dataSets/{DATASET_ID}", "patch", "patchDataset"),
    (CATALOG_SPEC, "/dataSets/{DATASET_ID}", "delete", "deleteDataset"),
    (CATALOG_SPEC, "/batches", "get", "listBatches"),
    (CATALOG_SPEC, "/batches/{BATCH_ID}", "get", "retrieveBatch"),
    (INGEST_SPEC, "/batches", "post", "createBatch"),
    (INGEST_SPEC, "/batches/{batchId}/datasets/{datasetId}/files/{filePath}", "put", "uploadSmallFile"),
    (INGEST_SPEC, "/batches/{batchId}", "post", "completeBatch"),
]
PREFIX = {CATALOG_SPEC: CATALOG, INGEST_SPEC: IMPORT}


# -- the app -------------------------------------------------------------------------------------


def people_schema(client: TestClient, headers: dict[str, str], *, profile: bool = False) -> tuple[str, str]:
    """A Profile schema with an identityMap and a tenant field ``tier``; answers (schema id, tenant field)."""
    fg = field_group(client, headers, "Contract fields", {"tier": {"type": "string"}})
    sid = schema(client, headers, "Contract people", PROFILE_CLASS, fg, PERSON_FG, IDENTITY_MAP_FG)
    if profile:
        enable_profile(client, headers, sid)
    return sid, f"_{tenant(client, headers)}"


def create_batch(client: TestClient, headers: dict[str, str], dataset_id: str, fmt: str = "json") -> dict[str, Any]:
    body = {"datasetId": dataset_id, "inputFormat": {"format": fmt}}
    created: dict[str, Any] = json_body(client.post(f"{IMPORT}/batches", json=body, headers=headers), 201)
    return created


def put_file(client: TestClient, headers: dict[str, str], batch: dict[str, Any], name: str, content: bytes) -> None:
    dataset_id = batch["relatedObjects"][0]["id"]
    resp = client.put(
        f"{IMPORT}/batches/{batch['id']}/datasets/{dataset_id}/files/{name}",
        content=content,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert resp.status_code == 200, resp.text


def complete(client: TestClient, headers: dict[str, str], batch_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Signals COMPLETE; answers (the signal's answer, the Catalog's batch once it finished)."""
    resp = client.post(f"{IMPORT}/batches/{batch_id}", params={"action": "COMPLETE"}, headers=headers)
    assert resp.status_code == 200, resp.text

    def finished() -> dict[str, Any] | None:
        got = client.get(f"{CATALOG}/batches/{batch_id}", headers=headers)
        assert got.status_code == 200, got.text
        body: dict[str, Any] = got.json()
        return body if body[batch_id]["status"] in ("success", "failed") else None

    return resp.json(), wait_for(finished, what="batch ingestion")


def record(t: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "_id": str(n),
        "identityMap": {"Email": [{"id": f"p{n}@example.com", "primary": True}]},
        t: {"tier": "gold"},
        **extra,
    }


# -- the operations ------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "path", "method", "operation_id"), OPERATIONS, ids=[o for *_, o in OPERATIONS])
def test_the_spec_has_each_operation_we_serve(spec: Contract, path: str, method: str, operation_id: str) -> None:
    operation = spec.operation(path, method)
    assert operation["operationId"] == operation_id
    assert spec.success_codes(path, method), operation


MISNAMED: dict[str, str] = {}


@pytest.mark.parametrize(
    ("spec", "path", "method", "operation_id"),
    [
        pytest.param(*op, marks=pytest.mark.xfail(strict=True, reason=MISNAMED[op[3]])) if op[3] in MISNAMED else op
        for op in OPERATIONS
    ],
    ids=[o for *_, o in OPERATIONS],
)
def test_our_openapi_names_the_spec_operation_at_the_spec_path(
    client: TestClient, spec: Contract, path: str, method: str, operation_id: str
) -> None:
    ours = our_operation_ids(client)
    assert ours.get((shape(PREFIX[spec] + path), method)) == operation_id, sorted(
        (p, m, o) for (p, m), o in ours.items() if p.startswith(PREFIX[spec])
    )


def test_each_spec_operation_answers_with_a_status_the_spec_declares(
    client: TestClient, headers: dict[str, str]
) -> None:
    sid, t = people_schema(client, headers)
    resp = client.post(f"{CATALOG}/dataSets", json={"name": "contract", "schemaRef": {"id": sid}}, headers=headers)
    assert resp.status_code in CATALOG_SPEC.success_codes("/dataSets", "post"), resp.text
    dataset_id = resp.json()[0].removeprefix("@/dataSets/")
    resp = client.post(
        f"{IMPORT}/batches", json={"datasetId": dataset_id, "inputFormat": {"format": "JSON"}}, headers=headers
    )
    assert resp.status_code in INGEST_SPEC.success_codes("/batches", "post"), resp.text
    batch_id = resp.json()["id"]
    calls: list[tuple[Contract, str, str, str, dict[str, Any]]] = [
        (CATALOG_SPEC, "/dataSets", "get", "/dataSets", {}),
        (CATALOG_SPEC, "/dataSets/{DATASET_ID}", "get", f"/dataSets/{dataset_id}", {}),
        (CATALOG_SPEC, "/dataSets/{DATASET_ID}", "patch", f"/dataSets/{dataset_id}", {"json": {"description": "d"}}),
        (
            INGEST_SPEC,
            "/batches/{batchId}/datasets/{datasetId}/files/{filePath}",
            "put",
            f"/batches/{batch_id}/datasets/{dataset_id}/files/part-1.json",
            {"content": json_lines(record(t, 1))},
        ),
        (INGEST_SPEC, "/batches/{batchId}", "post", f"/batches/{batch_id}?action=COMPLETE", {}),
        (CATALOG_SPEC, "/batches", "get", "/batches", {}),
        (CATALOG_SPEC, "/batches/{BATCH_ID}", "get", f"/batches/{batch_id}", {}),
        (CATALOG_SPEC, "/dataSets/{DATASET_ID}", "delete", f"/dataSets/{dataset_id}", {}),
    ]
    for spec, path, method, url, kwargs in calls:
        resp = client.request(method.upper(), PREFIX[spec] + url, headers=headers, **kwargs)
        assert resp.status_code in spec.success_codes(path, method), (method, url, resp.status_code, resp.text)


# -- datasets ------------------------------------------------------------------------------------


def test_the_create_answer_conforms_and_names_the_dataset(client: TestClient, headers: dict[str, str]) -> None:
    sid, _ = people_schema(client, headers)
    body = {"name": "contract", "schemaRef": {"id": sid, "contentType": XED}}
    assert CATALOG_SPEC.errors("dataSetRequest", body) == []
    resp = client.post(f"{CATALOG}/dataSets", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    CATALOG_SPEC.assert_answer_conforms("/dataSets", "post", 201, answer)
    assert CATALOG_SPEC.errors("datasetUpdateResponse", answer) == []
    # The shape of the spec's datasetUpdateResponse example: one "@/dataSets/{id}".
    example = CATALOG_SPEC.schemas()["datasetUpdateResponse"]["items"]["example"]
    assert re.fullmatch(r"@/dataSets/\w+", example)
    [ref] = answer
    assert re.fullmatch(r"@/dataSets/" + UUID4.strip("^$"), ref), ref
    assert resp.headers["Location"] == f"{CATALOG}/dataSets/{ref.removeprefix('@/dataSets/')}"


def test_the_spec_example_create_request_is_accepted(client: TestClient, headers: dict[str, str]) -> None:
    """The spec's "Enable for Profile" create body, pointed at a schema of ours (the example's is Adobe's)."""
    sid, _ = people_schema(client, headers, profile=True)
    examples = CATALOG_SPEC.operation("/dataSets", "post")["requestBody"]["content"]["application/json"]
    body = copy.deepcopy(examples["examples"]["Enable for Profile"]["value"])
    body["schemaRef"]["id"] = sid
    assert CATALOG_SPEC.errors("dataSetRequest", body) == []
    resp = client.post(f"{CATALOG}/dataSets", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    dataset_id = resp.json()[0].removeprefix("@/dataSets/")
    got = client.get(f"{CATALOG}/dataSets/{dataset_id}", headers=headers).json()
    CATALOG_SPEC.assert_answer_conforms("/dataSets/{DATASET_ID}", "get", 200, got)
    ds = got[dataset_id]
    assert ds["tags"] == body["tags"] and ds["schemaRef"] == body["schemaRef"]
    assert ds["name"] == body["name"] and ds["description"] == body["description"]


def test_the_spec_example_json_patch_enables_profile(client: TestClient, headers: dict[str, str]) -> None:
    sid, _ = people_schema(client, headers, profile=True)
    dataset_id = dataset(client, headers, "later", sid)
    content = CATALOG_SPEC.operation("/dataSets/{DATASET_ID}", "patch")["requestBody"]["content"]
    ops = content["application/json-patch+json"]["examples"]["Update a dataset to be Profile-enabled"]["value"]
    resp = client.patch(
        f"{CATALOG}/dataSets/{dataset_id}",
        json=ops,
        headers={**headers, "Content-Type": "application/json-patch+json"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == [f"@/dataSets/{dataset_id}"]
    tags = client.get(f"{CATALOG}/dataSets/{dataset_id}", headers=headers).json()[dataset_id]["tags"]
    assert tags["unifiedProfile"] == ["enabled:true", "isUpsert:true"] and tags["unifiedIdentity"] == ["enabled:true"]


def test_get_and_list_answers_conform(client: TestClient, headers: dict[str, str]) -> None:
    sid, _ = people_schema(client, headers, profile=True)
    before = int(time.time() * 1000) // 1000 * 1000
    plain = dataset(client, headers, "plain", sid)
    profiled = dataset(client, headers, "profiled", sid, profile=True)
    after = int(time.time() * 1000)
    for dataset_id in (plain, profiled):
        got = client.get(f"{CATALOG}/dataSets/{dataset_id}", headers=headers)
        assert got.status_code == 200, got.text
        answer = got.json()
        CATALOG_SPEC.assert_answer_conforms("/dataSets/{DATASET_ID}", "get", 200, answer)
        assert list(answer) == [dataset_id]
        ds = answer[dataset_id]
        CATALOG_SPEC.assert_conforms("dataSetResponse", ds)
        assert set(ds) == set(DATASET_KEYS)  # no batch yet: no lastBatch*
        assert before <= ds["created"] <= ds["updated"] <= after
        assert ds["files"] == f"@/dataSetFiles?dataSetId={dataset_id}"
        assert ds["imsOrg"] == headers["x-gw-ims-org-id"] and ds["sandboxName"] == "prod"
    listing = client.get(f"{CATALOG}/dataSets", headers=headers).json()
    CATALOG_SPEC.assert_answer_conforms("/dataSets", "get", 200, listing)
    assert set(listing) == {plain, profiled}
    page = client.get(f"{CATALOG}/dataSets", params={"limit": 1, "start": 1}, headers=headers).json()
    CATALOG_SPEC.assert_answer_conforms("/dataSets", "get", 200, page)
    assert len(page) == 1


def test_properties_answers_conform_to_the_published_schema(client: TestClient, headers: dict[str, str]) -> None:
    """``properties`` cuts the answer to the named fields: valid as published (the strict overlay requires all)."""
    sid, _ = people_schema(client, headers)
    dataset_id = dataset(client, headers, "cut", sid)
    for url in (f"{CATALOG}/dataSets", f"{CATALOG}/dataSets/{dataset_id}"):
        answer = client.get(url, params={"properties": "name,schemaRef,created"}, headers=headers).json()
        assert CATALOG_SPEC.errors_against(CATALOG_SPEC.response_schema("/dataSets", "get", 200), answer) == []
        assert set(answer[dataset_id]) == {"name", "schemaRef", "created"}


def test_a_dataset_with_batches_conforms(client: TestClient, headers: dict[str, str]) -> None:
    sid, t = people_schema(client, headers)
    dataset_id = dataset(client, headers, "with batches", sid)
    good = create_batch(client, headers, dataset_id)
    put_file(client, headers, good, "good.json", json_lines(record(t, 1)))
    complete(client, headers, good["id"])
    bad = create_batch(client, headers, dataset_id)
    put_file(client, headers, bad, "bad.json", json_lines(record(t, 2, nope=1)))
    complete(client, headers, bad["id"])
    ds = client.get(f"{CATALOG}/dataSets/{dataset_id}", headers=headers).json()[dataset_id]
    CATALOG_SPEC.assert_conforms("dataSetResponse", ds)
    assert ds["lastSuccessfulBatch"] == good["id"] and ds["lastFailedBatch"] == bad["id"]
    assert ds["lastBatchId"] in (good["id"], bad["id"])  # both created in the same second
    assert CATALOG_SPEC.errors("batchStatus", ds["lastBatchStatus"]) == []


def test_a_dataset_answer_never_breaks_the_schema_whatever_was_sent(
    client: TestClient, headers: dict[str, str]
) -> None:
    sid, _ = people_schema(client, headers)
    resp = client.post(
        f"{CATALOG}/dataSets",
        json={"name": "odd", "schemaRef": {"id": sid}, "fileDescription": "parquet"},
        headers=headers,
    )
    if resp.status_code == 201:
        dataset_id = resp.json()[0].removeprefix("@/dataSets/")
        CATALOG_SPEC.assert_conforms(
            "dataSetResponse",
            client.get(f"{CATALOG}/dataSets/{dataset_id}", headers=headers).json()[dataset_id],
        )
    assert resp.status_code == 400 and "fileDescription" in resp.json()["detail"], resp.text


# -- batches -------------------------------------------------------------------------------------


def test_a_batch_conforms_in_every_state(client: TestClient, headers: dict[str, str]) -> None:
    sid, t = people_schema(client, headers)
    dataset_id = dataset(client, headers, "states", sid)
    before = int(time.time() * 1000) // 1000 * 1000

    created = create_batch(client, headers, dataset_id)  # loading
    INGEST_SPEC.assert_answer_conforms("/batches", "post", 201, created)
    INGEST_SPEC.assert_conforms("Batch", created)
    assert created["status"] == "loading" and created["relatedObjects"] == [{"type": "dataSet", "id": dataset_id}]
    assert set(created) == set(BATCH_KEYS) and re.fullmatch(UUID4, created["id"])

    put_file(client, headers, created, "ok.json", json_lines(record(t, 1), record(t, 2)))
    signal, done = complete(client, headers, created["id"])  # queued, then success
    INGEST_SPEC.assert_answer_conforms("/batches/{batchId}", "post", 200, signal)
    assert signal["status"] in ("queued", "processing", "success")  # read after the worker was woken
    CATALOG_SPEC.assert_answer_conforms("/batches/{BATCH_ID}", "get", 200, done)
    ok = done[created["id"]]
    CATALOG_SPEC.assert_conforms("batchResponse", ok)
    INGEST_SPEC.assert_conforms("Batch", ok)  # the Catalog's batch is also batch ingestion's
    assert ok["status"] == "success" and ok["recordCount"] == 2 and ok["failedRecordCount"] == 0
    assert before <= ok["created"] <= ok["started"] <= ok["completed"] <= ok["updated"]
    assert ok["metrics"] == {"recordsRead": 2, "recordsWritten": 2, "failedRecordCount": 0}

    failing = create_batch(client, headers, dataset_id)
    put_file(client, headers, failing, "bad.json", json_lines(record(t, 3), record(t, 4, unknown=True)))
    _, done = complete(client, headers, failing["id"])  # failed
    bad = done[failing["id"]]
    CATALOG_SPEC.assert_conforms("batchResponse", bad)
    INGEST_SPEC.assert_conforms("Batch", bad)
    assert bad["status"] == "failed" and bad["failedRecordCount"] == 1 and bad["recordCount"] == 2
    assert bad["failedBatchLocation"] == f"{EXPORT}/batches/{failing['id']}/failed"
    [error] = bad["errors"]
    assert error["recordCount"] == 1 and "unknown" in error["description"]

    aborted = create_batch(client, headers, dataset_id)
    resp = client.post(f"{IMPORT}/batches/{aborted['id']}", params={"action": "ABORT"}, headers=headers)
    assert resp.status_code == 200, resp.text
    INGEST_SPEC.assert_answer_conforms("/batches/{batchId}", "post", 200, resp.json())
    assert resp.json()["status"] == "aborted"

    listing = client.get(f"{CATALOG}/batches", params={"dataSet": dataset_id}, headers=headers).json()
    CATALOG_SPEC.assert_answer_conforms("/batches", "get", 200, listing)
    assert {b["status"] for b in listing.values()} == {"success", "failed", "aborted"}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_batch_of_another_format_conforms(client: TestClient, headers: dict[str, str], fmt: str) -> None:
    sid, _ = people_schema(client, headers)
    dataset_id = dataset(client, headers, f"{fmt} batches", sid)
    batch = create_batch(client, headers, dataset_id, fmt=fmt.upper())  # the IngestBatch enum's spelling
    INGEST_SPEC.assert_conforms("Batch", batch)
    assert batch["inputFormat"] == {"format": fmt}
    listing = client.get(f"{CATALOG}/batches", params={"dataSet": dataset_id}, headers=headers).json()
    CATALOG_SPEC.assert_conforms("batchResponse", listing[batch["id"]])


def test_the_batch_of_an_external_audience_run_conforms(client: TestClient, headers: dict[str, str]) -> None:
    upload(client, headers, "contract/members.csv", b"ppid,list_id,delete,process_consent\nann@example.com,l1,0,y\n")
    audience_id = create_audience(client, headers, seed_audience("contract/members.csv"))
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS", run
    listing = client.get(f"{CATALOG}/batches", headers=headers).json()
    [batch] = listing.values()
    CATALOG_SPEC.assert_answer_conforms("/batches", "get", 200, listing)
    INGEST_SPEC.assert_conforms("Batch", batch)
    assert [o["type"] for o in batch["relatedObjects"]] == ["dataSet", "externalAudienceRun"]
    assert batch["status"] == "success" and batch["recordCount"] == 1


# -- the validators themselves fail when they should ---------------------------------------------


@pytest.fixture
def answers(client: TestClient, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A dataset and its successful batch, as the Catalog answers them."""
    sid, t = people_schema(client, headers)
    dataset_id = dataset(client, headers, "validators", sid)
    batch = create_batch(client, headers, dataset_id)
    put_file(client, headers, batch, "one.json", json_lines(record(t, 1)))
    _, done = complete(client, headers, batch["id"])
    ds = client.get(f"{CATALOG}/dataSets/{dataset_id}", headers=headers).json()[dataset_id]
    return ds, done[batch["id"]]


@pytest.mark.parametrize(
    ("change", "strict_only"),
    [
        (lambda d: d.update(created=str(d["created"])), False),
        (lambda d: d.update(updated=d["updated"] + 0.5), False),
        (lambda d: d.update(created=2**63), False),
        (lambda d: d.update(tags={"unifiedProfile": "enabled:true"}), False),
        (lambda d: d["schemaRef"].update(id=7), False),
        (lambda d: d.update(lastBatchStatus="done"), False),
        (lambda d: d.update(fileDescription={"format": "xml"}), False),
        (lambda d: d.update(created=d["created"] // 1000), True),
        (lambda d: d.pop("files"), True),
        (lambda d: d.pop("schemaRef"), True),
        (lambda d: d["schemaRef"].pop("contentType"), True),
        (lambda d: d.update(id="x"), True),
        (lambda d: d.update(files="dataSets/x/views/y/files"), True),
    ],
    ids=[
        "created-string",
        "updated-fraction",
        "created-beyond-int64",
        "tag-not-a-list",
        "schema-id-number",
        "last-status-unknown",
        "format-unknown",
        "created-in-seconds",
        "without-files",
        "without-schemaRef",
        "schemaRef-without-contentType",
        "unknown-property",
        "files-not-a-catalog-link",
    ],
)
def test_the_validators_reject_a_dataset_that_breaks_the_contract(
    answers: tuple[dict[str, Any], dict[str, Any]], change: Any, strict_only: bool
) -> None:
    ds, _ = answers
    CATALOG_SPEC.assert_conforms("dataSetResponse", ds)
    broken = copy.deepcopy(ds)
    change(broken)
    assert CATALOG_SPEC.errors("dataSetResponse", broken, strict=True), broken
    assert bool(CATALOG_SPEC.errors("dataSetResponse", broken)) is not strict_only, broken


@pytest.mark.parametrize(
    ("change", "strict_only"),
    [
        (lambda b: b.update(status="done"), False),
        (lambda b: b.update(recordCount="2"), False),
        (lambda b: b.update(errors={}), False),
        (lambda b: b.update(relatedObjects=[{"type": "dataSet", "id": 7}]), False),
        (lambda b: b.update(tags={"a": "b"}), False),
        (lambda b: b.update(completed=None), False),
        (lambda b: b.pop("id"), True),
        (lambda b: b.pop("metrics"), True),
        (lambda b: b.update(relatedObjects=[]), True),
        (lambda b: b.update(relatedObjects=[{"type": "flowRun", "id": "x"}]), True),
        (lambda b: b.update(errors=[{"code": "x"}]), True),
        (lambda b: b.update(started=b["started"] // 1000), True),
        (lambda b: b["metrics"].update(outputByteSize=1), True),
        (lambda b: b.update(inputFormat={"format": "avro"}), True),
        (lambda b: b.update(size=-1), True),
        (lambda b: b.update(secret="x"), True),
    ],
    ids=[
        "status-unknown",
        "recordCount-string",
        "errors-object",
        "related-id-number",
        "tag-not-a-list",
        "completed-null",
        "without-id",
        "without-metrics",
        "no-related-objects",
        "related-type-not-ours",
        "error-without-description",
        "started-in-seconds",
        "unknown-metric",
        "format-not-ours",
        "negative-size",
        "unknown-property",
    ],
)
def test_the_validators_reject_a_batch_that_breaks_the_contract(
    answers: tuple[dict[str, Any], dict[str, Any]], change: Any, strict_only: bool
) -> None:
    _, batch = answers
    for spec, name in ((CATALOG_SPEC, "batchResponse"), (INGEST_SPEC, "Batch")):
        spec.assert_conforms(name, batch)
        broken = copy.deepcopy(batch)
        change(broken)
        assert spec.errors(name, broken, strict=True), (name, broken)
        if name == "batchResponse":  # batch ingestion's published Batch has no int64 or enum on some of these
            assert bool(spec.errors(name, broken)) is not strict_only, broken


def test_the_departures_from_the_published_specs_are_needed() -> None:
    """Each departure listed in the module's docstring exists in the published text (drop it once fixed there)."""
    batch = INGEST_SPEC.published()["components"]["schemas"]["Batch"]["properties"]
    assert not {"loading", "aborted"} & set(batch["status"]["enum"])
    assert {"loading", "aborted"} <= set(CATALOG_SPEC.published()["components"]["schemas"]["batchStatus"]["enum"])
    assert "csv" not in batch["inputFormat"]["properties"]["format"]["enum"]
    assert (
        "CSV"
        in INGEST_SPEC.published()["components"]["schemas"]["IngestBatch"]["properties"]["inputFormat"]["properties"][
            "format"
        ]["enum"]
    )
    listing = CATALOG_SPEC.operation("/batches", "get")["responses"][200]["content"]["application/json"]
    [example] = listing["example"].values()
    enum = set(CATALOG_SPEC.published()["components"]["schemas"]["relatedObjects"]["properties"]["type"]["enum"])
    assert {o["type"] for o in example["relatedObjects"]} - enum == {"expressionBlock", "service", "serviceDefinition"}
