"""External audiences whose files sit in S3, GCS or on SFTP: created and ingested like the landing-zone case."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import dataset_dir, members, seed_csv
from tests.conftest import EA, create_audience, run_and_wait, seed_audience, upload, wait_for
from tests.servers.faults import FaultProxy
from tests.servers.s3 import MotoServer
from tests.sources.backends import Backend, make_backend

CONNECTIONS = "/data/foundation/flowservice/connections"
TOLERANT = {"dataFilterStartTime": 0, "errorThresholdPercent": 50}
ROWS = (["a@example.com", "L1", 0, "yes"], ["B@Example.com ", "L2", 0, "no"], ["not-an-email", "L3", 0, "no"])


def connect(client: TestClient, headers: dict[str, str], backend: Backend, *, bad: bool = False) -> str:
    resp = client.post(CONNECTIONS, json=backend.body(bad=bad), headers=headers)
    assert resp.status_code == 201, resp.text
    connection_id: str = resp.json()["id"]
    return connection_id


def cloud_audience(backend: Backend, connection_id: str, path: str, **overrides: Any) -> dict[str, Any]:
    body = seed_audience(path=path, **overrides)
    body["sourceSpec"]["params"].update(cloudType=backend.cloud_type, baseConnectionId=connection_id)
    return body


def comparable(found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Members without what differs between two audiences (profile ids, times, the audience itself)."""
    keep = ("identities", "status", "payload", "attributes")
    return {k: {f: v.get(f) for f in keep} for k, v in found.items()}


def test_a_cloud_audience_ingests_exactly_like_the_landing_zone(
    backend: Backend, client: TestClient, headers: dict[str, str]
) -> None:
    content = seed_csv(*ROWS)
    backend.put("activation/example.csv", content)
    connection_id = connect(client, headers, backend)
    cloud_id = create_audience(client, headers, cloud_audience(backend, connection_id, "activation/example.csv"))
    run = run_and_wait(client, headers, cloud_id, TOLERANT)
    assert run["status"] == "SUCCESS", run.get("error")
    assert run["metrics"]["filesProcessed"] == 1
    assert run["metrics"]["recordsRead"] == 3
    assert run["metrics"]["recordsIngested"] == 2
    assert run["metrics"]["recordsFailed"] == 1

    upload(client, headers, "activation/example.csv", content)
    dlz_id = create_audience(
        client, headers, seed_audience("activation/example.csv", name="the same in the landing zone")
    )
    dlz_run = run_and_wait(client, headers, dlz_id, TOLERANT)
    assert dlz_run["status"] == "SUCCESS", dlz_run
    cloud_members = members(client, headers, cloud_id)
    assert set(cloud_members) == {"a@example.com", "b@example.com"}
    assert comparable(cloud_members) == comparable(members(client, headers, dlz_id))
    records = ("filesProcessed", "recordsRead", "recordsIngested", "recordsFailed")
    assert {k: dlz_run["metrics"][k] for k in records} == {k: run["metrics"][k] for k in records}


def test_a_folder_of_csv_and_csv_gz_files_is_read_whole(
    backend: Backend, client: TestClient, headers: dict[str, str]
) -> None:
    backend.put("weekly/part-1.csv", seed_csv(["one@example.com", "L1", 0, "y"]))
    backend.put("weekly/part-2.csv.gz", gzip.compress(seed_csv(["two@example.com", "L2", 0, "y"])))
    backend.put("weekly/readme.txt", b"not a csv: left out")
    backend.put("weekly/older/part-0.csv", seed_csv(["nested@example.com", "L0", 0, "y"]))
    connection_id = connect(client, headers, backend)
    body = cloud_audience(backend, connection_id, "weekly")
    body["sourceSpec"]["params"]["type"] = "folder"
    audience_id = create_audience(client, headers, body)
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["filesProcessed"] == 2
    assert set(members(client, headers, audience_id)) == {"one@example.com", "two@example.com"}


def test_the_filter_window_picks_files_by_their_modified_time(
    backend: Backend, client: TestClient, headers: dict[str, str]
) -> None:
    backend.put("window/list.csv", seed_csv(["w@example.com", "L1", 0, "y"]))
    connection_id = connect(client, headers, backend)
    body = cloud_audience(backend, connection_id, "window")
    body["sourceSpec"]["params"]["type"] = "folder"
    audience_id = create_audience(client, headers, body)
    before = int(time.time()) - 3600
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, "dataFilterEndTime": before})
    assert run["status"] == "FAILED", run
    assert "no file under 'window'" in run["error"]["message"]
    assert "1 file(s) found outside that window" in run["error"]["message"]
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": before})
    assert run["status"] == "SUCCESS", run


def test_a_wrong_secret_fails_the_run_with_a_clear_reason_and_no_partial_data(
    backend: Backend, client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    if not backend.checks_credentials:
        pytest.skip("the GCS emulator accepts any credentials; HMAC keys are tested through moto")
    backend.put("activation/example.csv", seed_csv(*ROWS))
    connection_id = connect(client, headers, backend, bad=True)
    audience_id = create_audience(client, headers, cloud_audience(backend, connection_id, "activation/example.csv"))
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "FAILED", run
    message = run["error"]["message"]
    assert connection_id in message, message
    assert any(word in message for word in ("refused", "SignatureDoesNotMatch", "login")), message
    assert run["metrics"]["recordsIngested"] == 0
    dumped = json.dumps(run) + json.dumps(client.get(f"{EA}/{audience_id}/runs", headers=headers).json())
    for secret in (*backend.secrets, *backend.secret_values()):
        assert secret not in dumped
    assert members(client, headers, audience_id) == {}
    dataset_id = client.get(f"{EA}/{audience_id}", headers=headers).json()["datasetId"]
    assert not list(dataset_dir(settings, creds, dataset_id).glob("*/*.parquet")), "a failed run must publish nothing"


def test_a_missing_file_fails_the_run_naming_connection_and_path(
    backend: Backend, client: TestClient, headers: dict[str, str]
) -> None:
    connection_id = connect(client, headers, backend)
    audience_id = create_audience(client, headers, cloud_audience(backend, connection_id, "nowhere/list.csv"))
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "FAILED", run
    message = run["error"]["message"]
    assert connection_id in message and "nowhere/list.csv" in message, message


def test_a_deleted_connection_cannot_be_the_source_of_a_run(
    backend: Backend, client: TestClient, headers: dict[str, str]
) -> None:
    connection_id = connect(client, headers, backend)
    audience_id = create_audience(client, headers, cloud_audience(backend, connection_id, "x.csv"))
    resp = client.delete(f"{CONNECTIONS}/{connection_id}", headers=headers)
    assert resp.status_code == 409, resp.text
    assert audience_id in resp.json()["detail"]
    assert client.delete(f"{EA}/{audience_id}", headers=headers).status_code == 204
    assert client.delete(f"{CONNECTIONS}/{connection_id}", headers=headers).status_code == 204


def test_a_run_rides_out_slow_down_and_a_reset_connection(
    client: TestClient, headers: dict[str, str], moto_server: MotoServer, fault_proxy: Callable[..., FaultProxy]
) -> None:
    proxy = fault_proxy("127.0.0.1", moto_server.port)
    backend = make_backend("s3", moto=moto_server, bucket=moto_server.make_bucket(), endpoint=proxy.endpoint)
    rows = [[f"user{i}@example.com", f"L{i % 7}", 0, "yes"] for i in range(40_000)]
    backend.put("big/list.csv", seed_csv(*rows))
    connection_id = connect(client, headers, backend)
    audience_id = create_audience(client, headers, cloud_audience(backend, connection_id, "big/list.csv"))
    proxy.http_error(status=503, times=2)  # S3 SlowDown on the first two requests
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS", run.get("error")
    wait_for(lambda: proxy.faults_fired == 2, timeout=5, what="the proxy to count its 503s")
    # The next two connections break after 400 kB: the stat's is shorter, the download's breaks midway.
    proxy.reset_after(400_000, times=2)
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS", run.get("error")
    assert run["metrics"]["recordsIngested"] == 40_000
    wait_for(lambda: proxy.faults_fired >= 3, timeout=5, what="the proxy to count its reset")
