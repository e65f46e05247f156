"""audiencehub's export jobs checked against Adobe's Segmentation Service specification (``specs/segmentation.yaml``).

Each answer is validated twice:

- against the spec as published, with one departure (``_read``) where the spec contradicts AEP's export jobs guide:
  ``ExportJobResponse.destination.batches`` is declared an object, while the guide's answer for
  ``segmentPerBatch: true`` is an array of ``{segmentId, segmentNs, status, batchId}``: it is read as that array;
- against a strict overlay (``_close``) that states what audiencehub promises: the properties it always answers are
  required and nothing else may appear. Addition to the spec's property lists: ``metrics.totalExportedProfileCounter``
  (the guide's answers carry it).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from tests.api.support import headers_for
from tests.conftest import test_settings
from tests.contract.support import Contract, format_checker, json_body, our_operation_ids, shape
from tests.exports.support import SEED_EXPORT, Sandbox, build, create_dataset, wait_export

BASE = "/data/core/ups"
MS = {"type": "integer", "minimum": 10**12, "maximum": 10**13}  # epoch milliseconds (2001 to 2286)
OPERATIONS = [
    ("/export/jobs", "get", "listExportJobs"),
    ("/export/jobs", "post", "createExportJob"),
    ("/export/jobs/{EXPORT_JOB_ID}", "get", "retrieveExportJob"),
    ("/export/jobs/{EXPORT_JOB_ID}", "delete", "cancelExportJob"),
]


def _read(doc: dict[str, Any]) -> None:
    destination = doc["components"]["schemas"]["ExportJobResponse"]["properties"]["destination"]
    destination["properties"]["batches"] = {"type": "array", "items": destination["properties"]["batches"]}


def _closed(schema: dict[str, Any], *, optional: frozenset[str] | set[str] = frozenset()) -> None:
    schema["required"] = sorted(set(schema["properties"]) - optional)
    schema["additionalProperties"] = False


def _close(doc: dict[str, Any]) -> None:
    s = doc["components"]["schemas"]
    job = s["ExportJobResponse"]
    job["properties"]["id"] = {"type": "integer", "minimum": 1}
    job["properties"]["status"]["enum"] = ["NEW", "PROCESSING", "SUCCEEDED", "FAILED"]
    for key in ("creationTime", "updateTime"):
        job["properties"][key] = MS
    _closed(job, optional={"fields", "errors", "additionalFields"})
    destination = job["properties"]["destination"]
    _closed(destination, optional={"batchId", "batches"})
    destination["oneOf"] = [{"required": ["batchId"]}, {"required": ["batches"]}]
    _closed(destination["properties"]["batches"]["items"])
    _closed(job["properties"]["schema"])
    _closed(job["properties"]["computeGatewayJobId"], optional={"pushJob"})
    _closed(job["properties"]["errors"]["items"], optional={"callStack"})
    metrics = job["properties"]["metrics"]
    metrics["properties"]["totalExportedProfileCounter"] = {"type": "integer", "minimum": 0}
    _closed(metrics, optional={"profileExportTime", "aCPDatasetWriteTime", "totalExportedProfileCounter"})
    span = s["FeedbackMetrics"]
    for key in span["properties"]:
        span["properties"][key] = {"type": "integer", "minimum": 0}
    _closed(span, optional={"endTimeInMs", "totalTimeInMs"})
    _closed(s["Filter"], optional=set(s["Filter"]["properties"]))
    _closed(s["Filter"]["properties"]["segments"]["items"])
    _closed(s["Filter"]["properties"]["segmentQualificationTime"], optional={"startTime", "endTime"})
    _closed(s["MergePolicyObject"])
    page = s["GetExportJobsResponse"]
    _closed(page)
    _closed(page["properties"]["page"], optional={"pageOffset"})
    _closed(page["properties"]["link"])
    _closed(s["CancelExportJobResponse"])


SPEC = Contract("segmentation", read=_read, strict=_close, checker=format_checker("int64", "int32"))


@dataclass
class World:
    client: TestClient
    headers: dict[str, str]
    sandbox: Sandbox
    dataset: str
    done: dict[str, Any]  # the seed's export job, finished


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = test_settings(tmp_path_factory.mktemp("export-contract") / "home")
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        s = build(client, headers)
        dataset = create_dataset(client, headers)
        body = SEED_EXPORT % {"fields": s.fields, "a1": s.blue, "a2": s.gold, "a3": s.women, "dataset": dataset}
        created = json_body(client.post(BASE + "/export/jobs", content=body, headers=headers))
        done = wait_export(client, headers, created["id"])
        assert done["status"] == "SUCCEEDED", done
        yield World(client, headers, s, dataset, done)


def post(world: World, body: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = json_body(world.client.post(BASE + "/export/jobs", json=body, headers=world.headers))
    return found


@pytest.mark.parametrize(("path", "method", "operation_id"), OPERATIONS, ids=[o for _, _, o in OPERATIONS])
def test_the_spec_has_each_operation_we_serve(path: str, method: str, operation_id: str) -> None:
    assert SPEC.operation(path, method)["operationId"] == operation_id


def test_our_openapi_names_the_spec_operations_at_the_spec_paths(world: World) -> None:
    ours = our_operation_ids(world.client, BASE + "/export", strip=BASE)
    for path, method, operation_id in OPERATIONS:
        assert ours.get((shape(path), method)) == operation_id, (path, method, ours)


def test_each_operation_answers_with_a_status_the_spec_declares(world: World) -> None:
    body = {"destination": {"datasetId": world.dataset}, "schema": {"name": "_xdm.context.profile"}}
    resp = world.client.post(BASE + "/export/jobs", json=body, headers=world.headers)
    assert resp.status_code in SPEC.success_codes("/export/jobs", "post"), resp.text
    assert resp.headers["x-location"] == f"{BASE}/export/jobs/{resp.json()['id']}"
    job_id = str(resp.json()["id"])
    for path, method in [
        ("/export/jobs", "get"),
        ("/export/jobs/{EXPORT_JOB_ID}", "get"),
        ("/export/jobs/{EXPORT_JOB_ID}", "delete"),
    ]:
        url = BASE + path.replace("{EXPORT_JOB_ID}", job_id)
        resp = world.client.request(method.upper(), url, headers=world.headers)
        assert resp.status_code in SPEC.success_codes(path, method), (method, path, resp.status_code, resp.text)


def test_the_seed_body_as_a_json_parser_reads_it_is_a_create_request() -> None:
    parsed = json.loads(SEED_EXPORT % {"fields": "a.b", "a1": "1", "a2": "2", "a3": "3", "dataset": "d"})
    assert SPEC.errors("CreateExportJobRequest", parsed) == []
    assert parsed["filter"]["segments"] == [{"segmentId": "3", "segmentNs": "ups", "status": ["realized"]}]


def test_a_job_made_from_the_spec_example_conforms_when_new_and_done(world: World) -> None:
    example = SPEC.example_of(SPEC.schemas()["CreateExportJobRequest"])
    # YAML read the example's RFC 3339 times as datetimes: back to the text a client sends.
    body = json.loads(json.dumps(example, default=lambda d: d.isoformat().replace("+00:00", "Z")))
    assert SPEC.errors("CreateExportJobRequest", body) == []
    body["destination"]["datasetId"] = world.dataset
    body["fields"] = "person.name.firstName"
    body["filter"]["segments"] = [{"segmentId": world.sandbox.women, "segmentNs": "ups", "status": ["realized"]}]
    body.pop("mergePolicy")  # the example's policy id is Adobe's, not this sandbox's
    body.pop("additionalFields")  # ExperienceEvents are not exported (422)
    created = post(world, body)
    SPEC.assert_answer_conforms("/export/jobs", "post", 200, created)
    assert created["status"] == "NEW" and created["filter"]["segmentQualificationTime"] == {
        "startTime": "2018-01-01T00:00:00Z",
        "endTime": "2018-02-01T00:00:00Z",
    }
    done = wait_export(world.client, world.headers, created["id"])
    SPEC.assert_answer_conforms("/export/jobs/{EXPORT_JOB_ID}", "get", 200, done)
    # The window of the example is in 2018: nobody qualified then.
    assert done["status"] == "SUCCEEDED" and done["metrics"]["totalExportedProfileCounter"] == 0


def test_finished_failed_and_per_segment_jobs_conform(world: World) -> None:
    SPEC.assert_answer_conforms("/export/jobs/{EXPORT_JOB_ID}", "get", 200, world.done)
    SPEC.assert_conforms("ExportJobResponse", world.done)
    failed = post(
        world,
        {
            "fields": "person.nickname",
            "destination": {"datasetId": world.dataset},
            "schema": {"name": "_xdm.context.profile"},
        },
    )
    failed = wait_export(world.client, world.headers, failed["id"])
    assert failed["status"] == "FAILED"
    SPEC.assert_conforms("ExportJobResponse", failed)
    per = post(
        world,
        {
            "filter": {"segments": [{"segmentId": world.sandbox.blue}, {"segmentId": world.sandbox.women}]},
            "destination": {"datasetId": world.dataset, "segmentPerBatch": True},
            "schema": {"name": "_xdm.context.profile"},
        },
    )
    per = wait_export(world.client, world.headers, per["id"])
    SPEC.assert_conforms("ExportJobResponse", per)
    assert len(per["destination"]["batches"]) == 2
    # As published, batches is one object: the guide's array breaks it.
    published = SPEC.published()["components"]["schemas"]["ExportJobResponse"]["properties"]["destination"]
    assert published["properties"]["batches"]["type"] == "object"


def test_the_list_and_cancel_conform(world: World) -> None:
    answer = json_body(world.client.get(BASE + "/export/jobs", params={"limit": 1}, headers=world.headers))
    SPEC.assert_answer_conforms("/export/jobs", "get", 200, answer)
    assert answer["link"]["next"]
    job = post(world, {"destination": {"datasetId": world.dataset}, "schema": {"name": "_xdm.context.profile"}})
    gone = json_body(world.client.delete(f"{BASE}/export/jobs/{job['id']}", headers=world.headers))
    SPEC.assert_answer_conforms("/export/jobs/{EXPORT_JOB_ID}", "delete", 200, gone)


@pytest.mark.parametrize(
    ("change", "strict_only"),
    [
        (lambda j: j.update(id="100"), False),
        (lambda j: j.update(status="DONE"), False),
        (lambda j: j.update(jobType="NIGHTLY"), False),
        (lambda j: j["destination"].update(segmentPerBatch="no"), False),
        (lambda j: j["metrics"]["totalTime"].update(startTimeInMs="0"), False),
        (lambda j: j.pop("requestId"), True),
        (lambda j: j.update(secret="x"), True),
        (lambda j: j["destination"].pop("batchId"), True),
        (lambda j: j["metrics"].update(totalExportedProfileCounter=-1), True),
        (lambda j: j.update(creationTime=j["creationTime"] // 1000), True),
    ],
    ids=[
        "id-string",
        "status-outside-enum",
        "jobType",
        "segmentPerBatch-string",
        "time-string",
        "without-requestId",
        "unknown-property",
        "without-batch",
        "negative-count",
        "creationTime-in-seconds",
    ],
)
def test_the_validators_reject_a_job_that_breaks_the_contract(world: World, change: Any, strict_only: bool) -> None:
    job = copy.deepcopy(world.done)
    change(job)
    assert SPEC.errors("ExportJobResponse", job, strict=True)
    assert bool(SPEC.errors("ExportJobResponse", job)) is not strict_only
