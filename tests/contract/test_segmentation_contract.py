"""audiencehub's Segmentation Service answers checked against Adobe's published specification.

``specs/segmentation.yaml`` (segment definitions, segment jobs, audiences) is OpenAPI 3.0; its component schemas are
JSON Schema with annotations that Draft 7 ignores, and ``format: int64``/``int32`` are checked by a format checker of
our own. Each answer is validated twice:

- against the spec as published, with departures where the spec contradicts itself or AEP's guides (``_read``),
  each one read the way AEP answers:

  * ``listSegmentDefinitions`` declares one ``SegmentDefinition`` as its answer, while AEP's segment definitions
    guide answers ``{"segments": [...], "page": {...}, "link": {...}}``: the envelope is the guide's and each item
    is validated as a ``SegmentDefinition``;
  * ``PlatformGeneratedAudience`` and ``ExternallyGeneratedAudience`` share the enum ``type: [SegmentDefinition,
    ExternalAudience]``, yet the audiences guide and the spec's own examples answer ``ExternalSegment`` for an
    external audience; each schema is given its own kind (``SegmentDefinition``; ``ExternalSegment``, and
    ``ExternalAudience`` as the enum has it). With the shared enum a segment definition would match both
    branches of ``AudiencesList``'s ``oneOf`` and no list could ever be valid;
  * ``ExternallyGeneratedAudience.namespace`` is the enum ``[AAM, AAMSegments, AAMTraits, AEPSegments]``, yet the
    guide's and the spec's examples answer ``aam``, and external audiences created through the external audiences
    API have their own namespace (``CustomerAudienceUpload`` by default): it is read as an open string;
  * ``getAudience`` answers ``oneOf: [PlatformGeneratedAudience]`` only, while the guide's "Look up a specified
    audience" shows both kinds: ``ExternallyGeneratedAudience`` is added.

- against a strict overlay (``_close``) that states what audiencehub promises: the properties it always answers
  are required and nothing else may appear. Additions to the spec's property lists: on definitions ``sandbox``
  (the guide's answers carry it), ``dependents``, ``ttlInDays`` and ``labels``; on audiences ``ttlInDays`` (the
  guide's answers carry it), ``metrics`` (the shape of the spec's ``AudiencesListWithMetrics`` example: size and
  last evaluation), and on external ones ``schema``, ``dependents`` and ``dependencies``.

Where our answer or our routes break the spec and the spec is right, the test is ``xfail(strict=True)`` with the
reason.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from tests.api.support import csv_bytes, headers_for
from tests.conftest import create_audience, run_and_wait, seed_audience, test_settings, upload
from tests.contract.support import Contract, format_checker, json_body, our_operation_ids, shape
from tests.segments.support import define, evaluate

BASE = "/data/core/ups"
MS = {"type": "integer", "minimum": 10**12, "maximum": 10**13}  # epoch milliseconds (2001 to 2286)
SECONDS = {"type": "integer", "minimum": 10**9, "maximum": 10**10}
COUNT = {"type": "integer", "minimum": 0}
CUSTOM_ID = "contract-crm-1"

# The operations audiencehub serves under their spec names: (spec path, method, operationId).
OPERATIONS = [
    ("/segment/definitions", "get", "listSegmentDefinitions"),
    ("/segment/definitions", "post", "createSegmentDefinition"),
    ("/segment/definitions/{SEGMENT_ID}", "get", "retrieveSegmentDefinitionById"),
    ("/segment/definitions/bulk-get", "post", "bulkGetSegmentDefinitions"),
    ("/segment/jobs", "get", "listSegmentJobs"),
    ("/segment/jobs", "post", "createSegmentJob"),
    ("/segment/jobs/{SEGMENT_JOB_ID}", "get", "retrieveSegmentJob"),
    ("/segment/jobs/{SEGMENT_JOB_ID}", "delete", "deleteSegmentJob"),
    ("/audiences", "get", "listAudiences"),
    ("/audiences/{AUDIENCE_ID}", "get", "getAudience"),
    ("/segment/definitions/{SEGMENT_ID}", "patch", "patchSegmentDefinition"),
    ("/segment/definitions/{SEGMENT_ID}", "delete", "deleteSegmentDefinition"),
]


# -- the specification ---------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _read(doc: dict[str, Any]) -> None:
    """The departures of the module docstring."""
    s = doc["components"]["schemas"]
    paths = doc["paths"]
    listing = paths["/segment/definitions"]["get"]["responses"][200]["content"]["application/json"]
    listing["schema"] = {
        "type": "object",
        "properties": {
            "segments": {"type": "array", "items": _ref("SegmentDefinition")},
            "page": {
                "type": "object",
                "properties": {
                    "totalCount": {"type": "integer"},
                    "totalPages": {"type": "integer"},
                    "sortField": {"type": "string"},
                    "sort": {"type": "string"},
                    "pageSize": {"type": "integer"},
                    "limit": {"type": "integer"},
                },
            },
            "link": {"type": "object", "properties": {"next": {"type": "string"}}},
        },
    }
    s["PlatformGeneratedAudience"]["properties"]["type"]["enum"] = ["SegmentDefinition"]
    s["ExternallyGeneratedAudience"]["properties"]["type"]["enum"] = ["ExternalSegment", "ExternalAudience"]
    del s["ExternallyGeneratedAudience"]["properties"]["namespace"]["enum"]
    one = paths["/audiences/{AUDIENCE_ID}"]["get"]["responses"][200]["content"]["application/json"]["schema"]
    one["oneOf"].append(_ref("ExternallyGeneratedAudience"))


def _closed(
    schema: dict[str, Any], *, optional: frozenset[str] | set[str] = frozenset(), add: dict[str, Any] | None = None
) -> None:
    """``schema`` with ``add`` among its properties, all of them required but ``optional``, and nothing else."""
    schema["properties"].update(add or {})
    schema["required"] = sorted(set(schema["properties"]) - optional)
    schema["additionalProperties"] = False


METRICS = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "enum": ["segmentJob", "audienceRun"]},
        "jobId": {"type": "string"},
        "updateEpoch": SECONDS,
        "data": {
            "type": "object",
            "properties": {
                "totalProfiles": COUNT,
                "totalProfilesByStatus": {
                    "type": "object",
                    "properties": {"realized": COUNT, "existing": COUNT, "exited": COUNT},
                    "required": ["realized", "existing", "exited"],
                    "additionalProperties": False,
                },
            },
            "required": ["totalProfiles", "totalProfilesByStatus"],
            "additionalProperties": False,
        },
    },
    # An audience never evaluated has its size (0) but no evaluation.
    "required": ["id", "data"],
    "dependencies": {"jobId": ["type", "updateEpoch"], "type": ["jobId"], "updateEpoch": ["jobId"]},
    "additionalProperties": False,
}


def _close(doc: dict[str, Any]) -> None:
    s = doc["components"]["schemas"]
    sandbox = copy.deepcopy(s["PlatformGeneratedAudience"]["properties"]["sandbox"])
    _closed(sandbox)
    strings = {"type": "array", "items": {"type": "string"}}
    ttl = {"type": "integer", "minimum": 1}
    for name in ("Expression", "SchemaClass"):
        _closed(s[name])

    definition = s["SegmentDefinition"]
    _closed(
        definition,
        optional={"payloadSchema", "ttlInDays", "labels"},
        add={"sandbox": sandbox, "dependents": strings, "ttlInDays": ttl, "labels": strings},
    )
    for key in ("creationTime", "updateTime"):
        definition["properties"][key] = MS
    definition["properties"]["updateEpoch"] = SECONDS
    _closed(definition["properties"]["evaluationInfo"])
    for kind in definition["properties"]["evaluationInfo"]["properties"].values():
        _closed(kind)
    _closed(definition["properties"]["dataGovernancePolicy"])

    job = s["SegmentJob"]
    _closed(job, optional={"batchId", "computeJobId", "computeGatewayJobId", "requestId", "modelName"})
    job["properties"]["sandbox"] = sandbox
    job["properties"]["source"]["enum"] = ["api", "scheduler", "audience-update", "streaming"]
    _closed(s["SegmentInfo"])
    _closed(s["SegmentInfo"]["properties"]["segment"], optional={"version"})
    _closed(s["SegmentInfo"]["properties"]["segment"]["properties"]["mergePolicy"])
    _closed(s["SegmentJobErrorResponse"], optional={"callStack"}, add={"segmentId": {"type": "string"}})
    _closed(s["ListSegmentJobs"])
    _closed(s["ListSegmentJobs"]["properties"]["_page"])

    platform = s["PlatformGeneratedAudience"]
    _closed(
        platform,
        optional={"_etag", "overridePerformanceWarnings", "ttlInDays"},
        add={"metrics": METRICS, "ttlInDays": ttl},
    )
    platform["properties"]["sandbox"] = sandbox
    platform["properties"]["expression"] = _ref("Expression")  # the definitions' own: PQL in pql/text or pql/json
    platform["properties"]["namespace"]["enum"] = ["AEPSegments"]
    platform["properties"]["originName"]["enum"] = ["REAL_TIME_CUSTOMER_PROFILE"]
    platform["properties"]["lifecycleState"]["enum"] = ["published"]
    external = s["ExternallyGeneratedAudience"]
    _closed(
        external,
        optional={"linkedAudienceRef"},
        add={
            "metrics": METRICS,
            "ttlInDays": ttl,
            "schema": _ref("SchemaClass"),
            "dependents": {"type": "array", "maxItems": 0},
            "dependencies": strings,
        },
    )
    external["properties"]["sandbox"] = sandbox
    external["properties"]["type"]["enum"] = ["ExternalSegment"]
    external["properties"]["originName"]["enum"] = ["CUSTOM_UPLOAD"]
    external["properties"]["lifecycleState"]["enum"] = ["published"]
    for audience in (platform, external):
        for key in ("creationTime", "updateTime"):
            audience["properties"][key] = MS
        for key in ("createEpoch", "updateEpoch"):
            audience["properties"][key] = SECONDS

    page = s["AudiencesList"]
    _closed(page)
    _closed(page["properties"]["_page"], optional={"next"})
    _closed(page["properties"]["_links"], optional={"next"})
    _closed(page["properties"]["_links"]["properties"]["next"])


SPEC = Contract("segmentation", read=_read, strict=_close, checker=format_checker("int64", "int32"))


# -- the app -------------------------------------------------------------------------------------


@dataclass
class World:
    client: TestClient
    headers: dict[str, str]
    external: str
    plain: str  # an external audience without a customAudienceId
    segment: str
    reader: str  # reads ``segment``, never evaluated
    job: dict[str, Any]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = test_settings(tmp_path_factory.mktemp("segmentation-contract") / "home")
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        fields = [{"name": "email", "type": "string", "identityNs": "Email"}, {"name": "delete", "type": "number"}]
        ids = []
        for name, people, extra in (
            ("contract-a", ["a@example.com", "b@example.com", "c@example.com"], {"customAudienceId": CUSTOM_ID}),
            ("contract-b", ["b@example.com", "c@example.com", "d@example.com"], {}),
        ):
            upload(client, headers, f"contract/{name}.csv", csv_bytes(["email", "delete"], [[p, 0] for p in people]))
            body = seed_audience(f"contract/{name}.csv", name=name, fields=fields, **extra)
            audience_id = create_audience(client, headers, body)
            assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"
            ids.append(audience_id)
        pql = f'inSegment("{CUSTOM_ID}") and inSegment("{ids[1]}")'
        segment = define(client, headers, "Contract both", pql, description="in both", ttlInDays=30, labels=["C1"])
        job = evaluate(client, headers, segment)
        assert job["status"] == "SUCCEEDED", job
        reader = define(client, headers, "Contract reader", f'inSegment("{segment}")')
        yield World(client, headers, ids[0], ids[1], segment, reader, job)


def get(world: World, path: str, **params: Any) -> Any:
    return json_body(world.client.get(BASE + path, params=params, headers=world.headers))


# -- the operations ------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method", "operation_id"), OPERATIONS, ids=[o for _, _, o in OPERATIONS])
def test_the_spec_has_each_operation_we_serve(path: str, method: str, operation_id: str) -> None:
    assert SPEC.operation(path, method)["operationId"] == operation_id


def test_our_openapi_names_the_spec_operations_at_the_spec_paths(world: World) -> None:
    ours = our_operation_ids(world.client, BASE, strip=BASE)
    for path, method, operation_id in OPERATIONS:
        assert ours.get((shape(path), method)) == operation_id, (path, method, ours)


def test_each_spec_operation_answers_with_a_status_the_spec_declares(world: World) -> None:
    body = {
        "name": "Contract statuses",
        "expression": {"type": "PQL", "format": "pql/text", "value": f'inSegment("{world.plain}")'},
        "schema": {"name": "_xdm.context.profile"},
    }
    resp = world.client.post(BASE + "/segment/definitions", json=body, headers=world.headers)
    assert resp.status_code in SPEC.success_codes("/segment/definitions", "post"), resp.text
    segment_id = resp.json()["id"]
    resp = world.client.post(BASE + "/segment/jobs", json=[{"segmentId": segment_id}], headers=world.headers)
    assert resp.status_code in SPEC.success_codes("/segment/jobs", "post"), resp.text
    job_id = resp.json()["id"]
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("/segment/definitions", "get", {}),
        ("/segment/definitions/{SEGMENT_ID}", "get", {}),
        ("/segment/jobs", "get", {}),
        ("/segment/jobs/{SEGMENT_JOB_ID}", "get", {}),
        ("/segment/jobs/{SEGMENT_JOB_ID}", "delete", {}),
        ("/audiences", "get", {}),
        ("/audiences/{AUDIENCE_ID}", "get", {}),
    ]
    for path, method, kwargs in calls:
        url = BASE + path.replace("{SEGMENT_ID}", segment_id).replace("{SEGMENT_JOB_ID}", job_id)
        url = url.replace("{AUDIENCE_ID}", world.external)
        resp = world.client.request(method.upper(), url, headers=world.headers, **kwargs)
        assert resp.status_code in SPEC.success_codes(path, method), (method, path, resp.status_code, resp.text)


def test_bulk_get_answers_207_with_results_keyed_by_id(world: World) -> None:
    ids = [world.segment, world.reader]
    resp = world.client.post(
        BASE + "/segment/definitions/bulk-get", json={"ids": [{"id": i} for i in ids]}, headers=world.headers
    )
    assert resp.status_code in SPEC.success_codes("/segment/definitions/bulk-get", "post"), resp.text
    results = resp.json()["results"]
    assert set(results) == set(ids)
    for definition in results.values():
        SPEC.assert_conforms("SegmentDefinition", definition)


# -- segment definitions -------------------------------------------------------------------------


def test_created_definition_conforms(world: World) -> None:
    body = SPEC.example_of(SPEC.schemas()["CreateSegmentDefinition"])
    assert SPEC.errors("CreateSegmentDefinition", body) == []
    body["expression"]["value"] = f'inSegment("{world.plain}")'
    body["name"] = "Contract created from the spec's example"
    created = json_body(world.client.post(BASE + "/segment/definitions", json=body, headers=world.headers))
    SPEC.assert_conforms("SegmentDefinition", created)
    SPEC.assert_answer_conforms("/segment/definitions", "post", 200, created)
    assert created["name"] == body["name"] and created["description"] == body["description"]


def test_definition_get_and_patch_conform(world: World) -> None:
    got = get(world, f"/segment/definitions/{world.segment}")
    SPEC.assert_answer_conforms("/segment/definitions/{SEGMENT_ID}", "get", 200, got)
    assert got["ttlInDays"] == 30 and got["labels"] == ["C1"]
    patched = json_body(
        world.client.patch(
            f"{BASE}/segment/definitions/{world.reader}", json={"description": "patched"}, headers=world.headers
        )
    )
    SPEC.assert_answer_conforms("/segment/definitions/{SEGMENT_ID}", "patch", 200, patched)
    assert patched["description"] == "patched"


def test_definition_list_conforms_to_the_guide_envelope_with_spec_items(world: World) -> None:
    answer = get(world, "/segment/definitions", limit=1)
    SPEC.assert_answer_conforms("/segment/definitions", "get", 200, answer)
    assert answer["segments"] and answer["page"]["limit"] == 1 and answer["link"]["next"]
    for item in answer["segments"]:
        SPEC.assert_conforms("SegmentDefinition", item)
    # As published, the spec reads the list as one definition, which it can never be (no name, no expression).
    published = SPEC.published()["paths"]["/segment/definitions"]["get"]["responses"][200]
    assert published["content"]["application/json"]["schema"] == _ref("SegmentDefinition")
    assert SPEC.errors("SegmentDefinition", answer)


# -- segment jobs --------------------------------------------------------------------------------


def test_finished_job_conforms(world: World) -> None:
    SPEC.assert_conforms("SegmentJob", world.job)
    got = get(world, f"/segment/jobs/{world.job['id']}")
    SPEC.assert_answer_conforms("/segment/jobs/{SEGMENT_JOB_ID}", "get", 200, got)
    assert got["metrics"]["segmentedProfileCounter"] == {world.segment: 2}


def test_new_job_and_job_list_conform(world: World) -> None:
    created = json_body(
        world.client.post(BASE + "/segment/jobs", json=[{"segmentId": world.reader}], headers=world.headers)
    )
    SPEC.assert_answer_conforms("/segment/jobs", "post", 200, created)
    answer = get(world, "/segment/jobs")
    SPEC.assert_answer_conforms("/segment/jobs", "get", 200, answer)
    assert answer["_page"]["totalCount"] >= 2
    for job in answer["children"]:
        SPEC.assert_conforms("SegmentJob", job)


# -- audiences -----------------------------------------------------------------------------------


def test_audience_list_conforms_with_both_kinds(world: World) -> None:
    answer = get(world, "/audiences", limit=100)
    SPEC.assert_answer_conforms("/audiences", "get", 200, answer)
    kinds = {a["id"]: a["type"] for a in answer["children"]}
    assert kinds[world.external] == kinds[world.plain] == "ExternalSegment"
    assert kinds[world.segment] == kinds[world.reader] == "SegmentDefinition"
    for item in answer["children"]:
        name = "PlatformGeneratedAudience" if item["type"] == "SegmentDefinition" else "ExternallyGeneratedAudience"
        SPEC.assert_conforms(name, item)


def test_audience_list_with_a_next_page_conforms(world: World) -> None:
    answer = get(world, "/audiences", limit=1)
    SPEC.assert_answer_conforms("/audiences", "get", 200, answer)
    assert answer["_page"]["next"] == 1
    example = SPEC.schemas()["AudiencesList"]["properties"]["_links"]["properties"]["next"]["properties"]["href"]
    assert answer["_links"]["next"]["href"].split("?")[0] == example["example"].split("?")[0] == "@/audiences"


def test_each_audience_conforms_when_got_by_id(world: World) -> None:
    for audience_id in (world.external, world.plain, world.segment, world.reader):
        got = get(world, f"/audiences/{audience_id}")
        SPEC.assert_answer_conforms("/audiences/{AUDIENCE_ID}", "get", 200, got)
    assert get(world, f"/audiences/{world.external}")["audienceId"] == CUSTOM_ID


def test_the_read_departures_are_needed() -> None:
    """Each departure of ``_read`` answers something the published spec would refuse or mis-read."""
    published = SPEC.published()["components"]["schemas"]
    assert "ExternalSegment" not in published["ExternallyGeneratedAudience"]["properties"]["type"]["enum"]
    example = SPEC.published()["components"]["examples"]["ExternalAudience"]["value"]
    assert example["type"] == "ExternalSegment"
    assert example["namespace"] not in published["ExternallyGeneratedAudience"]["properties"]["namespace"]["enum"]
    get_one = SPEC.operation("/audiences/{AUDIENCE_ID}", "get")["responses"][200]["content"]["application/json"]
    assert get_one["schema"] == {"oneOf": [_ref("PlatformGeneratedAudience")]}


# -- the validators themselves fail when they should ---------------------------------------------


@pytest.fixture(scope="module")
def listed(world: World) -> dict[str, Any]:
    """The audience list, and in ``byKind`` an evaluated audience of each kind."""
    answer: dict[str, Any] = get(world, "/audiences", limit=100)
    found = {a["id"]: a for a in answer["children"]}
    return {**answer, "byKind": {"SegmentDefinition": found[world.segment], "ExternalSegment": found[world.external]}}


@pytest.mark.parametrize(
    ("kind", "change", "strict_only"),
    [
        ("ExternalSegment", lambda a: a.update(type="Bogus"), False),
        ("SegmentDefinition", lambda a: a.update(type="ExternalSegment"), True),
        ("SegmentDefinition", lambda a: a.update(namespace="ups"), False),
        ("ExternalSegment", lambda a: a.update(namespace=5), False),
        ("ExternalSegment", lambda a: a.update(creationTime="0"), False),
        ("SegmentDefinition", lambda a: a.update(lifecycleState="active"), False),
        ("SegmentDefinition", lambda a: a["expression"].update(format="sql"), True),
        ("ExternalSegment", lambda a: a.update(labels="core/C1"), False),
        ("ExternalSegment", lambda a: a.pop("metrics"), True),
        ("ExternalSegment", lambda a: a["metrics"]["data"].update(totalProfiles="3"), True),
        ("SegmentDefinition", lambda a: a["metrics"].pop("type"), True),
        ("SegmentDefinition", lambda a: a.update(createEpoch=a["creationTime"]), True),
        ("SegmentDefinition", lambda a: a.update(secret="x"), True),
        ("ExternalSegment", lambda a: a.pop("datasetId"), True),
    ],
    ids=[
        "type-unknown",
        "definition-as-external",
        "definition-namespace",
        "namespace-number",
        "creationTime-string",
        "lifecycle-outside-enum",
        "expression-format",
        "labels-string",
        "without-metrics",
        "size-string",
        "evaluation-without-type",
        "createEpoch-in-ms",
        "unknown-property",
        "without-datasetId",
    ],
)
def test_the_validators_reject_an_audience_that_breaks_the_contract(
    listed: dict[str, Any], kind: str, change: Any, strict_only: bool
) -> None:
    item = listed["byKind"][kind]
    answer = {"children": [item], "_page": listed["_page"], "_links": listed["_links"]}
    SPEC.assert_answer_conforms("/audiences", "get", 200, answer)
    broken = copy.deepcopy(item)
    change(broken)
    answer["children"] = [broken]
    assert SPEC.errors_against(SPEC.response_schema("/audiences", "get", 200, strict=True), answer), broken
    loose = SPEC.errors_against(SPEC.response_schema("/audiences", "get", 200), answer)
    assert bool(loose) is not strict_only, (broken, loose)


@pytest.mark.parametrize(
    ("name", "instance"),
    [
        ("SegmentJob", {"id": "x", "segments": [], "metrics": {"totalTime": {}}}),
        ("SegmentJob", {"segments": [], "metrics": {"totalTime": {}, "profileSegmentationTime": {}}, "status": "X"}),
        ("SegmentDefinition", {"name": "x", "schema": {"name": "_xdm.context.profile"}}),
        ("SegmentDefinition", {"name": "x", "schema": {}, "expression": {"type": "PQL"}}),
        ("ListSegmentJobs", {"_page": {"totalCount": "1"}, "children": []}),
        ("AudiencesList", {"children": [], "_page": {"next": "1"}}),
    ],
)
def test_the_validators_reject_other_broken_answers(name: str, instance: Any) -> None:
    assert SPEC.errors(name, instance), instance
