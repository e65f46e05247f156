"""Streaming ingestion as seed 000 uses it: an HTTP API connection streams segment definitions into a dataset.

The apps here flush only when a test says so (``StreamingService.flush``), except where a test is about
the flusher itself; nothing waits a fixed time.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.config import Settings
from audiencehub.metadata.store import Scope
from audiencehub.services.streaming import batch_id_of
from tests.api.support import assert_problem, dataset_dir, headers_for
from tests.api.xdm_support import CATALOG, SEGMENT_CLASS, dataset, enable_profile, identity, schema
from tests.conftest import EA, seed_audience, test_settings, wait_for

FS = "/data/foundation/flowservice/connections"
HTTP_API = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
XED = "application/vnd.adobe.xed-full+json;version=1"
NAMESPACE = {"name": "Acme segments", "code": "AcmeSegments", "idType": "NON_PEOPLE", "description": "seed 000"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """This module's apps flush when a test asks (an hour is longer than any test)."""
    return test_settings(tmp_path / "home", streaming_flush_seconds=3600)


@dataclass(frozen=True)
class Inlet:
    schema_id: str
    dataset_id: str
    connection_id: str
    inlet_id: str
    org_id: str

    @property
    def scope(self) -> Scope:
        return Scope(self.org_id, "prod")

    @property
    def url(self) -> str:
        return f"/collection/{self.inlet_id}"

    @property
    def batch_url(self) -> str:
        return f"/collection/batch/{self.inlet_id}"


def connection_body(name: str = "ACME Streaming Connection", **params: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": "segment definitions",
        "connectionSpec": {"id": HTTP_API, "version": "1.0"},
        "auth": {"specName": "Streaming Connection", "params": {"dataType": "xdm", **params}},
    }


def create_connection(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> tuple[str, str]:
    """The new connection's id and inlet id."""
    resp = client.post(FS, json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    connection_id = resp.json()["id"]
    got = client.get(f"{FS}/{connection_id}", headers=headers)
    assert got.status_code == 200, got.text
    return connection_id, got.json()["items"][0]["auth"]["params"]["inletId"]


def seed_000(client: TestClient, headers: dict[str, str], **params: Any) -> Inlet:
    """Seed 000's steps: a NON_PEOPLE namespace, a segment definition schema with ``_id`` its primary identity,
    enabled for Profile, a profile-enabled dataset of it, and a streaming connection."""
    resp = client.post("/data/core/idnamespace/identities", json=NAMESPACE, headers=headers)
    assert resp.status_code == 200, resp.text
    schema_id = schema(client, headers, "Acme segment definitions", SEGMENT_CLASS)
    identity(client, headers, schema_id, "/_id", NAMESPACE["code"], True)
    enable_profile(client, headers, schema_id)
    dataset_id = dataset(client, headers, "Acme segments", schema_id, profile=True)
    connection_id, inlet_id = create_connection(client, headers, connection_body(**params))
    return Inlet(schema_id, dataset_id, connection_id, inlet_id, headers["x-gw-ims-org-id"])


@pytest.fixture
def inlet(client: TestClient, headers: dict[str, str]) -> Inlet:
    return seed_000(client, headers)


@pytest.fixture(scope="module")
def shared_inlet(shared_client: TestClient, shared_headers: dict[str, str]) -> Inlet:
    """An inlet of the module's shared app: for requests that are refused and write nothing."""
    return seed_000(shared_client, shared_headers)


def segment(n: int, **extra: Any) -> dict[str, Any]:
    return {"_id": f"seg-{n}", "segmentName": f"Segment {n}", "segmentStatus": "ACTIVE", **extra}


def envelope(inlet: Inlet, entity: Any, **header: Any) -> dict[str, Any]:
    """AEP's message as the streaming record data tutorial sends it."""
    ref = {"id": inlet.schema_id, "contentType": XED}
    return {
        "header": {
            "schemaRef": ref,
            "imsOrgId": inlet.org_id,
            "datasetId": inlet.dataset_id,
            "source": {"name": "ACME segments"},
            **header,
        },
        "body": {"xdmMeta": {"schemaRef": dict(ref)}, "xdmEntity": entity},
    }


def flush(client: TestClient, inlet: Inlet) -> dict[str, str]:
    result: dict[str, str] = client.app.state.container.streaming.flush(inlet.scope, inlet.dataset_id)  # type: ignore[attr-defined]
    return result


def ids_in_dataset(settings: Settings, inlet: Inlet) -> list[str]:
    """The ``_id`` of every record in the dataset's committed batches, sorted."""
    folder = dataset_dir(settings, {"org_id": inlet.org_id}, inlet.dataset_id)
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        return []
    paths = ", ".join(f"'{f}'" for f in files)
    rows = duckdb.connect().execute(f"SELECT _id FROM read_parquet([{paths}]) ORDER BY _id").fetchall()
    return [r[0] for r in rows]


def wal_dir(settings: Settings, inlet: Inlet) -> Path:
    return settings.home / "lake" / inlet.org_id / "prod" / "_streaming" / inlet.dataset_id


def wal_lines(settings: Settings, inlet: Inlet) -> list[dict[str, Any]]:
    """The records waiting in the dataset's logs and parts (not those kept aside)."""
    folder = wal_dir(settings, inlet)
    files = sorted(f for f in folder.iterdir() if not f.name.endswith(".orphaned")) if folder.exists() else []
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def batch(client: TestClient, headers: dict[str, str], batch_id: str) -> dict[str, Any]:
    resp = client.get(f"{CATALOG}/batches/{batch_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()[batch_id]
    return found


def failed_records(client: TestClient, headers: dict[str, str], batch_id: str) -> list[dict[str, Any]]:
    url = f"/data/foundation/export/batches/{batch_id}/failed"
    listing = client.get(url, headers=headers)
    assert listing.status_code == 200, listing.text
    out = []
    for entry in listing.json()["data"]:
        text = client.get(url, params={"path": entry["name"]}, headers=headers).text
        out += [json.loads(line) for line in text.splitlines()]
    return out


# -- the streaming connection ---------------------------------------------------------------------


def test_a_connection_answers_its_inlet_id_and_url(client: TestClient, headers: dict[str, str]) -> None:
    """The docs' non-authenticated request sends only dataType; name and sourceId default to the connection's."""
    connection_id, inlet_id = create_connection(client, headers, connection_body())
    item = client.get(f"{FS}/{connection_id}", headers=headers).json()["items"][0]
    assert item["connectionSpec"] == {"id": HTTP_API, "version": "1.0"}
    assert item["auth"]["specName"] == "Streaming Connection"
    assert item["auth"]["params"] == {
        "dataType": "xdm",
        "authenticationRequired": False,
        "name": "ACME Streaming Connection",
        "sourceId": "ACME Streaming Connection",
        "inletId": inlet_id,
        "inletUrl": f"http://testserver/collection/{inlet_id}",
    }
    assert re.fullmatch(r"[0-9a-f]{64}", inlet_id)
    listed = client.get(FS, headers=headers).json()["items"]
    assert [i["auth"]["params"]["inletUrl"] for i in listed] == [item["auth"]["params"]["inletUrl"]]
    tested = client.get(f"{FS}/{connection_id}/test", headers=headers)
    assert tested.status_code == 200 and tested.json()["result"] is True, tested.text


def test_the_docs_authenticated_connection_keeps_its_params(client: TestClient, headers: dict[str, str]) -> None:
    params = {"sourceId": "Authenticated XDM streaming connection", "name": "Authenticated XDM streaming connection"}
    connection_id, inlet_id = create_connection(client, headers, connection_body(**params, authenticationRequired=True))
    got = client.get(f"{FS}/{connection_id}", headers=headers).json()["items"][0]["auth"]["params"]
    assert got == {**params, "dataType": "xdm", "authenticationRequired": True, "inletId": inlet_id} | {
        "inletUrl": f"http://testserver/collection/{inlet_id}"
    }


def test_two_connections_have_different_inlets(client: TestClient, headers: dict[str, str]) -> None:
    _, one = create_connection(client, headers, connection_body("one"))
    _, two = create_connection(client, headers, connection_body("two"))
    assert one != two


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"dataType": "raw"}, ["auth.params.dataType", "raw", "Data Prep"]),
        ({"dataType": "csv"}, ["auth.params.dataType", "'csv'"]),
        ({"inletId": "0" * 64}, ["auth.params.inletId", "set by the server"]),
        ({"inletUrl": "http://x/collection/1"}, ["auth.params.inletUrl", "not a param"]),
        ({"authenticationRequired": "maybe"}, ["auth.params.authenticationRequired", "true or false", "'maybe'"]),
    ],
    ids=["raw", "unknown-data-type", "inlet-id", "inlet-url", "auth-flag"],
)
def test_connection_refusals_name_the_param(
    shared_client: TestClient, shared_headers: dict[str, str], params: dict[str, Any], needles: list[str]
) -> None:
    resp = shared_client.post(FS, json=connection_body(**params), headers=shared_headers)
    assert_problem(resp, 400, "100910-400", *needles)


def test_patch_changes_the_auth_flag_but_never_the_inlet(client: TestClient, headers: dict[str, str]) -> None:
    connection_id, inlet_id = create_connection(client, headers, connection_body())
    etag = client.get(f"{FS}/{connection_id}", headers=headers).json()["items"][0]["etag"]
    ops: list[dict[str, Any]] = [{"op": "replace", "path": "/auth/params/inletId", "value": "f" * 64}]
    resp = client.patch(f"{FS}/{connection_id}", json=ops, headers={**headers, "if-match": etag})
    assert_problem(resp, 400, "100910-400", "auth.params.inletId", "set by the server")
    ops = [{"op": "replace", "path": "/auth/params", "value": {"dataType": "xdm", "authenticationRequired": True}}]
    resp = client.patch(f"{FS}/{connection_id}", json=ops, headers={**headers, "if-match": etag})
    assert resp.status_code == 200, resp.text
    params = client.get(f"{FS}/{connection_id}", headers=headers).json()["items"][0]["auth"]["params"]
    assert params["authenticationRequired"] is True and params["inletId"] == inlet_id


def test_an_audience_cannot_read_from_a_streaming_connection(client: TestClient, headers: dict[str, str]) -> None:
    connection_id, _ = create_connection(client, headers, connection_body())
    body = seed_audience()
    body["sourceSpec"] = {
        "params": {"path": "a.csv", "type": "file", "sourceType": "Cloud Storage", "baseConnectionId": connection_id}
    }
    resp = client.post(EA + "/", json=body, headers=headers)
    assert_problem(resp, 422, "100960-422", "sourceSpec.baseConnectionId", connection_id, "HTTP API")


# -- one message ----------------------------------------------------------------------------------


def test_seed_000_record_is_on_disk_when_answered_and_lands_in_the_dataset(
    client: TestClient, headers: dict[str, str], settings: Settings, inlet: Inlet
) -> None:
    resp = client.post(inlet.url, json=envelope(inlet, segment(1)), headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"inletId", "xactionId", "receivedTimeMs", "syncValidation"}
    assert body["inletId"] == inlet.inlet_id and body["syncValidation"] == {"skipped": True}
    assert re.fullmatch(r"\d{13}:\d+:\d+", body["xactionId"])
    assert isinstance(body["receivedTimeMs"], int)
    # Durable before the answer: the record is in the dataset's write-ahead log, not yet in a batch.
    assert wal_lines(settings, inlet) == [segment(1)]
    assert ids_in_dataset(settings, inlet) == []
    (batch_id, status), *_ = flush(client, inlet).items()
    assert status == "success"
    committed = batch(client, headers, batch_id)
    assert committed["status"] == "success" and committed["recordCount"] == 1
    assert committed["relatedObjects"] == [{"type": "dataSet", "id": inlet.dataset_id}]
    assert ids_in_dataset(settings, inlet) == ["seg-1"]
    assert wal_lines(settings, inlet) == []  # handed over: the log is gone


def test_sync_validation_passes_a_good_record(client: TestClient, settings: Settings, inlet: Inlet) -> None:
    resp = client.post(inlet.url, params={"syncValidation": "true"}, json=envelope(inlet, segment(2)))
    assert resp.status_code == 200, resp.text
    assert resp.json()["syncValidation"] == {"status": "pass"}
    assert wal_lines(settings, inlet) == [segment(2)]


def test_sync_validation_refuses_a_bad_record_with_aep_report(
    client: TestClient, settings: Settings, inlet: Inlet
) -> None:
    bad = {"_id": "seg-x", "segmentStatus": "SOMETIMES"}
    resp = client.post(inlet.url, params={"syncValidation": "true"}, json=envelope(inlet, bad))
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["errorCode"] == "100910-400" and body["status"] == 400
    assert "segmentName" in body["detail"] and "segmentStatus" in body["detail"]
    report = body["report"]
    assert report["message"] == f"inletId: [{inlet.inlet_id}] imsOrgId: [{inlet.org_id}] Message is invalid"
    [validation] = report["cause"]["_streamingValidation"]
    causes = {c["pointerToViolation"]: c for c in validation["causingExceptions"]}
    assert validation["message"] == f"{len(causes)} schema violations found"
    assert causes["#/segmentStatus"]["keyword"] == "enum"
    assert causes["#/segmentName"]["keyword"] == "required"
    # AEP drops a record that fails synchronous validation.
    assert wal_lines(settings, inlet) == []
    assert flush(client, inlet) == {}


def test_async_mode_accepts_a_bad_record_into_a_failed_batch_apart_from_good_ones(
    client: TestClient, headers: dict[str, str], settings: Settings, inlet: Inlet
) -> None:
    bad = segment(3, segmentStatus="SOMETIMES")
    for entity in (segment(1), bad, segment(2)):
        resp = client.post(inlet.url, json=envelope(inlet, entity))
        assert resp.status_code == 200, resp.text
        assert resp.json()["syncValidation"] == {"skipped": True}
    results = flush(client, inlet)
    assert sorted(results.values()) == ["failed", "success"]
    by_status = {status: batch_id for batch_id, status in results.items()}
    assert ids_in_dataset(settings, inlet) == ["seg-1", "seg-2"]  # the bad record failed no good one
    failed = batch(client, headers, by_status["failed"])
    assert failed["recordCount"] == 1 and failed["failedRecordCount"] == 1
    [record] = failed_records(client, headers, by_status["failed"])
    assert record["_id"] == "seg-3"
    assert any("segmentStatus" in e["message"] for e in record["_errors"]), record


def test_an_org_left_out_of_the_header_is_the_inlets(client: TestClient, settings: Settings, inlet: Inlet) -> None:
    message = envelope(inlet, segment(4))
    del message["header"]["imsOrgId"]
    resp = client.post(inlet.url, json=message)
    assert resp.status_code == 200, resp.text
    assert wal_lines(settings, inlet) == [segment(4)]


def test_an_unknown_inlet_is_404(shared_client: TestClient) -> None:
    resp = shared_client.post(f"/collection/{'a' * 64}", json={"header": {}, "body": {}})
    assert_problem(resp, 404, "100940-404", "a" * 64)
    resp = shared_client.post("/collection/batch/not-an-inlet", json={"messages": []})
    assert_problem(resp, 404, "100940-404", "not-an-inlet")


def test_a_deleted_connections_inlet_is_404(client: TestClient, headers: dict[str, str], inlet: Inlet) -> None:
    assert client.delete(f"{FS}/{inlet.connection_id}", headers=headers).status_code == 204
    assert_problem(client.post(inlet.url, json=envelope(inlet, segment(1))), 404, "100940-404", inlet.inlet_id)


def _without(path: str) -> Any:
    def change(message: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = message
        for p in parents:
            node = node[p]
        del node[last]

    return change


def _set(path: str, value: Any) -> Any:
    def change(message: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = message
        for p in parents:
            node = node[p]
        node[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (_without("header"), ["header: required"]),
        (_without("body"), ["body: required"]),
        (_set("header.imsOrgId", "OTHER@AdobeOrg"), ["header.imsOrgId", "'OTHER@AdobeOrg'", "not the org"]),
        (_without("header.datasetId"), ["header.datasetId: required"]),
        (_set("header.datasetId", "../../etc"), ["header.datasetId", "'../../etc'", "not a dataset id"]),
        (_set("header.datasetId", "5da9452f7de80400007jc52a"), ["header.datasetId", "5da9452f7de80400007jc52a"]),
        (_without("header.schemaRef"), ["header.schemaRef.id: required"]),
        (_set("header.schemaRef", {"id": "https://ns.adobe.com/x/schemas/y"}), ["header.schemaRef.id", "x/schemas/y"]),
        (_without("body.xdmMeta"), ["body.xdmMeta: required"]),
        (_set("body.xdmMeta.schemaRef", {"id": "https://ns.adobe.com/x/schemas/z"}), ["body.xdmMeta.schemaRef.id"]),
        (_without("body.xdmEntity"), ["body.xdmEntity: required"]),
        (_set("body.xdmEntity", [1, 2]), ["body.xdmEntity", "list"]),
    ],
    ids=[
        "no-header",
        "no-body",
        "other-org",
        "no-dataset",
        "path-dataset",
        "unknown-dataset",
        "no-schema-ref",
        "other-schema",
        "no-xdm-meta",
        "meta-differs",
        "no-entity",
        "entity-array",
    ],
)
def test_envelope_refusals_name_the_field_and_write_nothing(
    shared_client: TestClient,
    shared_settings: Settings,
    shared_inlet: Inlet,
    change: Any,
    needles: list[str],
) -> None:
    message = envelope(shared_inlet, segment(9))
    change(message)
    for params in ({}, {"syncValidation": "true"}):
        resp = shared_client.post(shared_inlet.url, params=params, json=message)
        assert_problem(resp, 400, "100910-400", *needles)
    assert wal_lines(shared_settings, shared_inlet) == []


@pytest.mark.parametrize(
    ("content", "headers", "status", "needles"),
    [
        (b"{not json", {}, 400, ["body: not valid JSON"]),
        (b"", {}, 400, ["body: a message is required"]),
        (b"[1, 2]", {}, 400, ["body: a message must be an object"]),
        (b"{}", {"Content-Type": "application/x-jackson-smile"}, 400, ["Content-Type", "Smile"]),
        (b'{"pad": "' + b"x" * 1_000_001 + b'"}', {}, 413, ["body", "1000000 bytes"]),
    ],
    ids=["not-json", "empty", "array", "smile", "over-1mb"],
)
def test_body_refusals(
    shared_client: TestClient,
    shared_inlet: Inlet,
    content: bytes,
    headers: dict[str, str],
    status: int,
    needles: list[str],
) -> None:
    code = "100910-413" if status == 413 else "100910-400"
    assert_problem(shared_client.post(shared_inlet.url, content=content, headers=headers), status, code, *needles)


def test_a_non_boolean_sync_validation_is_400(shared_client: TestClient, shared_inlet: Inlet) -> None:
    resp = shared_client.post(shared_inlet.url, params={"syncValidation": "often"}, json={})
    assert_problem(resp, 400, "100910-400", "syncValidation")


# -- an authenticated inlet -----------------------------------------------------------------------


def test_an_authenticated_inlet_takes_only_its_own_sandboxs_callers(
    client: TestClient,
    headers: dict[str, str],
    dev_headers: dict[str, str],
    other_org_headers: dict[str, str],
    settings: Settings,
) -> None:
    inlet = seed_000(client, headers, authenticationRequired=True)
    message = envelope(inlet, segment(5))
    assert_problem(client.post(inlet.url, json=message), 401, "100920-401", "authorization")
    assert_problem(client.post(inlet.batch_url, json={"messages": [message]}), 401, "100920-401")
    bad_token = {**headers, "Authorization": "Bearer not-a-token"}
    assert client.post(inlet.url, json=message, headers=bad_token).status_code in (400, 401)
    for outsider in (dev_headers, other_org_headers):
        assert_problem(client.post(inlet.url, json=message, headers=outsider), 404, "100940-404", inlet.inlet_id)
    assert wal_lines(settings, inlet) == []
    resp = client.post(inlet.url, json=message, headers=headers)
    assert resp.status_code == 200, resp.text
    assert wal_lines(settings, inlet) == [segment(5)]


def test_an_unauthenticated_inlet_ignores_the_headers(
    client: TestClient, dev_headers: dict[str, str], settings: Settings, inlet: Inlet
) -> None:
    """AEP's default: the inlet id alone routes to its org and sandbox, whatever headers come along."""
    resp = client.post(inlet.url, json=envelope(inlet, segment(6)), headers=dev_headers)
    assert resp.status_code == 200, resp.text
    assert wal_lines(settings, inlet) == [segment(6)]


# -- several messages -----------------------------------------------------------------------------


def test_batch_endpoint_answers_each_message_in_order(
    client: TestClient, headers: dict[str, str], settings: Settings, inlet: Inlet
) -> None:
    no_body = envelope(inlet, segment(0))
    del no_body["body"]
    messages = [
        envelope(inlet, segment(1)),
        no_body,
        envelope(inlet, segment(2), imsOrgId="invalidIMSOrg@AdobeOrg"),
        envelope(inlet, segment(3), datasetId="5da9452f7de80400007jc52a"),
        envelope(inlet, segment(4, segmentStatus="SOMETIMES")),  # accepted: validated asynchronously
        envelope(inlet, segment(5)),
    ]
    resp = client.post(inlet.batch_url, json={"messages": messages})
    assert resp.status_code == 207, resp.text
    body = resp.json()
    assert set(body) == {"inletId", "batchId", "receivedTimeMs", "responses"}
    assert body["inletId"] == inlet.inlet_id
    responses = body["responses"]
    assert [r.get("xactionId") for r in responses] == [
        f"{body['batchId']}:0",
        None,
        None,
        None,
        f"{body['batchId']}:4",
        f"{body['batchId']}:5",
    ]
    prefix = f"inletId: [{inlet.inlet_id}] imsOrgId: [{inlet.org_id}] "
    for i, needle in ((1, "messages[1].body: required"), (2, "messages[2].header.imsOrgId"), (3, "datasetId")):
        assert responses[i]["statusCode"] == 400 and responses[i]["message"].startswith(prefix), responses[i]
        assert needle in responses[i]["message"], responses[i]
    results = flush(client, inlet)
    assert sorted(results.values()) == ["failed", "success"]
    assert ids_in_dataset(settings, inlet) == ["seg-1", "seg-5"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [({}, "messages"), ({"messages": {}}, "messages"), ({"messages": []}, "at least one"), ([], "messages")],
    ids=["no-messages", "messages-object", "empty", "array"],
)
def test_batch_endpoint_refusals(shared_client: TestClient, shared_inlet: Inlet, body: Any, needle: str) -> None:
    assert_problem(shared_client.post(shared_inlet.batch_url, json=body), 400, "100910-400", needle)


# -- durability and the flusher ---------------------------------------------------------------------


def test_concurrent_senders_share_fsyncs_and_every_record_lands_once(
    client: TestClient, settings: Settings, inlet: Inlet
) -> None:
    def send(n: int) -> int:
        return client.post(inlet.url, json=envelope(inlet, segment(n))).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(send, range(64))) == {200}
    assert len(wal_lines(settings, inlet)) == 64
    assert list(flush(client, inlet).values()) == ["success"]
    assert ids_in_dataset(settings, inlet) == sorted(f"seg-{n}" for n in range(64))


@pytest.fixture
def quick_client(tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    """An app whose flusher seals a log 0.2 s after its first record, or at 3 records."""
    settings = test_settings(tmp_path / "quick", streaming_flush_seconds=0.2, streaming_flush_records=3)
    with TestClient(create_app(settings)) as c:
        yield c, settings


def _committed(client: TestClient, headers: dict[str, str], inlet: Inlet) -> dict[str, Any]:
    resp = client.get(f"{CATALOG}/batches", params={"dataSet": inlet.dataset_id}, headers=headers)
    assert resp.status_code == 200, resp.text
    return {k: v for k, v in resp.json().items() if v["status"] in ("success", "failed")}


def test_the_flusher_commits_a_batch_after_the_flush_interval(quick_client: tuple[TestClient, Settings]) -> None:
    client, settings = quick_client
    headers = headers_for(client, settings.home)
    inlet = seed_000(client, headers)
    assert client.post(inlet.url, json=envelope(inlet, segment(1))).status_code == 200
    batches = wait_for(lambda: _committed(client, headers, inlet), what="the flusher's batch")
    assert [b["recordCount"] for b in batches.values()] == [1]
    assert ids_in_dataset(settings, inlet) == ["seg-1"]


def test_the_flusher_seals_a_log_at_the_record_limit(tmp_path: Path) -> None:
    settings = test_settings(tmp_path / "limit", streaming_flush_seconds=3600, streaming_flush_records=3)
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        inlet = seed_000(client, headers)
        messages = [envelope(inlet, segment(n)) for n in range(3)]
        assert client.post(inlet.batch_url, json={"messages": messages}).status_code == 207
        batches = wait_for(lambda: _committed(client, headers, inlet), what="a batch at 3 records")
        assert [b["recordCount"] for b in batches.values()] == [3]


def test_a_graceful_stop_commits_what_waits(tmp_path: Path) -> None:
    settings = test_settings(tmp_path / "stop", streaming_flush_seconds=3600)
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        inlet = seed_000(client, headers)
        assert client.post(inlet.url, json=envelope(inlet, segment(7))).status_code == 200
        assert ids_in_dataset(settings, inlet) == []
    assert ids_in_dataset(settings, inlet) == ["seg-7"]
    assert wal_lines(settings, inlet) == []


def test_a_log_left_open_by_a_dead_server_is_committed_at_start_without_its_torn_tail(tmp_path: Path) -> None:
    settings = test_settings(tmp_path / "crash", streaming_flush_seconds=3600)
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        inlet = seed_000(client, headers)
    # What a server killed mid-append leaves: a log still open, its last line cut (never acknowledged).
    folder = wal_dir(settings, inlet)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{1:020d}.3f9c8a52-6f0e-4a8e-9a37-2f5b1d0c7e11"
    log = folder / f"{stem}.log.open"
    log.write_bytes(b"".join(json.dumps(segment(n)).encode() + b"\n" for n in (1, 2)) + b'{"_id": "seg-3", "seg')
    batch_id = batch_id_of(folder / f"{stem}.records.jsonl")
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        got = wait_for(lambda: _committed(client, headers, inlet), what="the recovered batch")
        assert list(got) == [batch_id] and got[batch_id]["status"] == "success"
        assert got[batch_id]["recordCount"] == 2
    assert ids_in_dataset(settings, inlet) == ["seg-1", "seg-2"]
    assert not any(folder.iterdir())


def test_a_part_committed_before_a_crash_is_not_written_twice(
    client: TestClient,
    headers: dict[str, str],
    settings: Settings,
    inlet: Inlet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The crash fell between a batch's commit and its part's removal: the part comes back as the same batch."""
    batches = client.app.state.container.batches  # type: ignore[attr-defined]
    real = batches.ingest_file
    handed: list[Path] = []

    def ingest_file(scope: Scope, dataset_id: str, path: Path, **kwargs: Any) -> str:
        handed.append(Path(shutil.copy(path, tmp_path / path.name)))  # the part as it was handed over
        status: str = real(scope, dataset_id, path, **kwargs)
        return status

    monkeypatch.setattr(batches, "ingest_file", ingest_file)
    for n in (8, 9):
        assert client.post(inlet.url, json=envelope(inlet, segment(n))).status_code == 200
    first = flush(client, inlet)
    [part] = handed
    shutil.copy(part, wal_dir(settings, inlet) / part.name)
    assert flush(client, inlet) == first
    assert ids_in_dataset(settings, inlet) == ["seg-8", "seg-9"]
    assert len(_committed(client, headers, inlet)) == 1


def test_a_split_interrupted_by_a_crash_is_done_again_at_start(tmp_path: Path) -> None:
    """A sealed log and a half-written part beside it: the part is thrown away and the log split again."""
    settings = test_settings(tmp_path / "split", streaming_flush_seconds=3600)
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        inlet = seed_000(client, headers)
    folder = wal_dir(settings, inlet)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{2:020d}.7d1e2b1c-4c55-4f0a-8a7e-0b6e1f5a9c33"
    lines = [json.dumps(segment(n)).encode() for n in (1, 2)] + [json.dumps(segment(3, segmentStatus="NO")).encode()]
    (folder / f"{stem}.log").write_bytes(b"\n".join(lines) + b"\n")
    (folder / f"{stem}.records.jsonl.tmp").write_bytes(lines[0])
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)

        def both() -> dict[str, Any] | None:
            found = _committed(client, headers, inlet)
            return found if len(found) == 2 else None

        got = wait_for(both, what="the batches of the log split again")
        statuses = {b["status"]: b["recordCount"] for b in got.values()}
        assert statuses == {"success": 2, "failed": 1}
    assert ids_in_dataset(settings, inlet) == ["seg-1", "seg-2"]
    assert not any(folder.iterdir())


def test_valid_records_whose_batch_failed_are_kept_aside(
    client: TestClient, settings: Settings, inlet: Inlet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part of valid records comes back failed (an internal error of the batch): its records stay on disk."""
    batches = client.app.state.container.batches  # type: ignore[attr-defined]
    monkeypatch.setattr(batches, "ingest_file", lambda *args, **kwargs: "failed")
    assert client.post(inlet.url, json=envelope(inlet, segment(10))).status_code == 200
    assert list(flush(client, inlet).values()) == ["failed"]
    [kept] = wal_dir(settings, inlet).iterdir()
    assert kept.name.endswith(".records.jsonl.failed")
    assert [json.loads(line) for line in kept.read_text().splitlines()] == [segment(10)]


def test_records_of_a_dataset_deleted_before_the_flush_are_kept_aside(
    client: TestClient, headers: dict[str, str], settings: Settings, inlet: Inlet
) -> None:
    assert client.post(inlet.url, json=envelope(inlet, segment(9))).status_code == 200
    assert client.delete(f"{CATALOG}/dataSets/{inlet.dataset_id}", headers=headers).status_code == 200
    assert flush(client, inlet) == {}
    [kept] = wal_dir(settings, inlet).iterdir()
    assert kept.name.endswith(".log.orphaned")
    assert [json.loads(line) for line in kept.read_text().splitlines()] == [segment(9)]
