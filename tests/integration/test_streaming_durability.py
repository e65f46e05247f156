"""Streaming ingestion survives kill -9: every record answered 200 is in the dataset after the restart."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import httpx
import pytest

from tests.conftest import wait_for
from tests.integration.conftest import Server, ServerFactory

pytestmark = pytest.mark.integration

HTTP_API = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
SEGMENT_CLASS = "https://ns.adobe.com/xdm/context/segmentdefinition"
SR = "/data/foundation/schemaregistry/tenant"
# Nothing is committed by time: when the server dies, every record waits in its write-ahead log.
NEVER = {"AUDIENCEHUB_STREAMING_FLUSH_SECONDS": "3600"}


def _ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


def seed_000(server: Server, headers: dict[str, str]) -> tuple[str, str, str]:
    """Seed 000 over HTTP as a user runs it; answers (schema id, dataset id, inlet id)."""
    http = server.http
    _ok(
        http.post(
            "/data/core/idnamespace/identities",
            json={"name": "Acme segments", "code": "AcmeSegments", "idType": "NON_PEOPLE"},
            headers=headers,
        )
    )
    body = {"title": "Acme segment definitions", "type": "object", "allOf": [{"$ref": SEGMENT_CLASS}]}
    schema_id = _ok(http.post(f"{SR}/schemas", json=body, headers=headers), 201)["$id"]
    descriptor = {
        "@type": "xdm:descriptorIdentity",
        "xdm:sourceSchema": schema_id,
        "xdm:sourceVersion": 1,
        "xdm:sourceProperty": "/_id",
        "xdm:namespace": "AcmeSegments",
        "xdm:property": "xdm:code",
        "xdm:isPrimary": True,
    }
    _ok(http.post(f"{SR}/descriptors", json=descriptor, headers=headers), 201)
    patch = [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
    _ok(http.patch(f"{SR}/schemas/{quote(schema_id, safe='')}", json=patch, headers=headers))
    dataset = {
        "name": "Acme segments",
        "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed+json;version=1"},
        "tags": {"unifiedProfile": ["enabled:true"], "unifiedIdentity": ["enabled:true"]},
    }
    [ref] = _ok(http.post("/data/foundation/catalog/dataSets", json=dataset, headers=headers), 201)
    connection = {
        "name": "ACME Streaming Connection",
        "connectionSpec": {"id": HTTP_API, "version": "1.0"},
        "auth": {"specName": "Streaming Connection", "params": {"dataType": "xdm"}},
    }
    connection_id = _ok(http.post("/data/foundation/flowservice/connections", json=connection, headers=headers), 201)[
        "id"
    ]
    item = _ok(http.get(f"/data/foundation/flowservice/connections/{connection_id}", headers=headers))["items"][0]
    assert item["auth"]["params"]["inletUrl"] == f"{server.url}/collection/{item['auth']['params']['inletId']}"
    return schema_id, ref.removeprefix("@/dataSets/"), item["auth"]["params"]["inletId"]


def message(schema_id: str, dataset_id: str, n: int) -> dict[str, Any]:
    ref = {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
    return {
        "header": {"schemaRef": ref, "datasetId": dataset_id, "source": {"name": "durability"}},
        "body": {"xdmMeta": {"schemaRef": ref}, "xdmEntity": {"_id": f"seg-{n}", "segmentName": f"Segment {n}"}},
    }


def committed_ids(server: Server, org_id: str, dataset_id: str) -> list[str]:
    files = sorted((server.home / "lake" / org_id / "prod" / dataset_id).rglob("*.parquet"))
    if not files:
        return []
    paths = ", ".join(f"'{f}'" for f in files)
    return [r[0] for r in duckdb.connect().execute(f"SELECT _id FROM read_parquet([{paths}])").fetchall()]


def batches(server: Server, headers: dict[str, str], dataset_id: str) -> dict[str, Any]:
    found: dict[str, Any] = _ok(
        server.http.get("/data/foundation/catalog/batches", params={"dataSet": dataset_id}, headers=headers)
    )
    return found


def settled(server: Server, headers: dict[str, str], dataset_id: str) -> dict[str, Any] | None:
    """The dataset's batches once there are some and every one has finished."""
    found = batches(server, headers, dataset_id)
    return found if found and all(b["status"] in ("success", "failed") for b in found.values()) else None


def wal_files(server: Server, org_id: str, dataset_id: str) -> list[Path]:
    folder = server.home / "lake" / org_id / "prod" / "_streaming" / dataset_id
    return sorted(folder.iterdir()) if folder.exists() else []


def test_records_answered_200_survive_kill_9(servers: ServerFactory) -> None:
    server = servers(env=NEVER)
    creds = server.credentials()
    schema_id, dataset_id, inlet_id = seed_000(server, server.headers(creds))
    for n in range(5):
        _ok(server.http.post(f"/collection/{inlet_id}", json=message(schema_id, dataset_id, n)))
    messages = [message(schema_id, dataset_id, n) for n in range(5, 25)]
    answer = _ok(server.http.post(f"/collection/batch/{inlet_id}", json={"messages": messages}), 207)
    assert all("xactionId" in r for r in answer["responses"])
    server.kill()
    assert [p.name.endswith(".log.open") for p in wal_files(server, creds["org_id"], dataset_id)] == [True]
    assert committed_ids(server, creds["org_id"], dataset_id) == []

    server.start()
    headers = server.headers(creds)
    done = wait_for(lambda: settled(server, headers, dataset_id), timeout=60, what="the recovered batch")
    [batch] = done.values()
    assert batch["status"] == "success" and batch["recordCount"] == 25, batch
    assert sorted(committed_ids(server, creds["org_id"], dataset_id)) == sorted(f"seg-{n}" for n in range(25))
    assert wal_files(server, creds["org_id"], dataset_id) == []
    # A third start finds nothing left to do, and writes nothing twice.
    server.restart()
    headers = server.headers(creds)
    assert len(batches(server, headers, dataset_id)) == 1
    assert len(committed_ids(server, creds["org_id"], dataset_id)) == 25


def test_kill_9_amid_concurrent_senders_loses_no_acknowledged_record(servers: ServerFactory) -> None:
    server = servers(env=NEVER)
    creds = server.credentials()
    schema_id, dataset_id, inlet_id = seed_000(server, server.headers(creds))
    acknowledged: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def sender(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10.0) as http:
            for i in range(10_000):
                n = worker * 100_000 + i
                try:
                    resp = http.post(f"/collection/{inlet_id}", json=message(schema_id, dataset_id, n))
                except httpx.TransportError:
                    return  # the server died under this request: its record may or may not be kept
                assert resp.status_code == 200, resp.text
                with lock:
                    acknowledged.append(f"seg-{n}")
                    if len(acknowledged) >= 200:
                        enough.set()

    threads = [threading.Thread(target=sender, args=(w,), daemon=True) for w in range(8)]
    for th in threads:
        th.start()
    assert enough.wait(60), "the senders did not get 200 answers"
    server.kill()  # while the senders are still sending
    for th in threads:
        th.join(30)
    with lock:
        answered = set(acknowledged)

    server.start()
    headers = server.headers(creds)

    def all_committed() -> list[str] | None:
        if wal_files(server, creds["org_id"], dataset_id):
            return None
        return committed_ids(server, creds["org_id"], dataset_id)

    found = wait_for(all_committed, timeout=60, what="the recovered batches")
    assert answered <= set(found), sorted(answered - set(found))[:10]
    assert len(found) == len(set(found)), "a record was committed twice"
    assert all(b["status"] == "success" for b in batches(server, headers, dataset_id).values())
