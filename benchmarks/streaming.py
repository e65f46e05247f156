"""Streaming ingestion benchmark: records/s through a real server vs a bare fsync'd file append.

    .venv/bin/python benchmarks/streaming.py --records 2000 --clients 16 --batch 200

Starts ``audiencehub serve`` on a fresh home, sets up seed 000 over HTTP (a NON_PEOPLE namespace, a
segment definition schema with ``_id`` as its primary identity, a profile-enabled dataset, an HTTP API
streaming connection), then measures, each phase with ``--clients`` threads of keep-alive HTTP clients:
  single  ``--records`` messages, one per ``POST /collection/{inletId}``
  batch   ``--records`` messages, ``--batch`` per ``POST /collection/batch/{inletId}``
against the floor of what each answer promises (the record is on disk): the same JSON lines appended
to a file with ``write`` + ``fsync``, one fsync per record (single) or per batch of ``--batch`` (batch),
from one thread. Every record of both phases is then checked to be in the dataset once (outside the
timing). Prints records/s, the ratio ours/floor, and the answers' median and p99 latency.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).with_name("audiencehub")
SEGMENT_CLASS = "https://ns.adobe.com/xdm/context/segmentdefinition"
SR = "/data/foundation/schemaregistry/tenant"
XED = "application/vnd.adobe.xed-full+json;version=1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIENCEHUB_")}
        env.update(AUDIENCEHUB_HOME=str(home), PYTHONUNBUFFERED="1")
        command = [str(BIN)] if BIN.is_file() else [sys.executable, "-m", "audiencehub"]
        self.log = (home.parent / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {home.parent / 'server.log'}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


def ok(resp: httpx.Response, status: int = 200) -> Any:
    if resp.status_code != status:
        raise SystemExit(f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}")
    return resp.json()


def seed_000(http: httpx.Client, headers: dict[str, str]) -> tuple[str, str, str]:
    ns = {"name": "Bench segments", "code": "BenchSegments", "idType": "NON_PEOPLE"}
    ok(http.post("/data/core/idnamespace/identities", json=ns, headers=headers))
    body = {"title": "Bench segment definitions", "type": "object", "allOf": [{"$ref": SEGMENT_CLASS}]}
    schema_id = ok(http.post(f"{SR}/schemas", json=body, headers=headers), 201)["$id"]
    descriptor = {
        "@type": "xdm:descriptorIdentity",
        "xdm:sourceSchema": schema_id,
        "xdm:sourceVersion": 1,
        "xdm:sourceProperty": "/_id",
        "xdm:namespace": "BenchSegments",
        "xdm:property": "xdm:code",
        "xdm:isPrimary": True,
    }
    ok(http.post(f"{SR}/descriptors", json=descriptor, headers=headers), 201)
    patch = [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
    ok(http.patch(f"{SR}/schemas/{quote(schema_id, safe='')}", json=patch, headers=headers))
    dataset = {
        "name": "Bench segments",
        "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed+json;version=1"},
        "tags": {"unifiedProfile": ["enabled:true"], "unifiedIdentity": ["enabled:true"]},
    }
    [ref] = ok(http.post("/data/foundation/catalog/dataSets", json=dataset, headers=headers), 201)
    connection = {
        "name": "Bench inlet",
        "connectionSpec": {"id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0"},
        "auth": {"specName": "Streaming Connection", "params": {"dataType": "xdm"}},
    }
    cid = ok(http.post("/data/foundation/flowservice/connections", json=connection, headers=headers), 201)["id"]
    inlet = ok(http.get(f"/data/foundation/flowservice/connections/{cid}", headers=headers))["items"][0]
    return schema_id, ref.removeprefix("@/dataSets/"), inlet["auth"]["params"]["inletId"]


def entity(n: int) -> dict[str, Any]:
    return {"_id": f"seg-{n}", "segmentName": f"Segment {n}", "segmentStatus": "ACTIVE", "description": "x" * 64}


def message(schema_id: str, dataset_id: str, n: int) -> dict[str, Any]:
    ref = {"id": schema_id, "contentType": XED}
    return {
        "header": {"schemaRef": ref, "datasetId": dataset_id, "source": {"name": "bench"}},
        "body": {"xdmMeta": {"schemaRef": ref}, "xdmEntity": entity(n)},
    }


def drive(url: str, clients: int, requests: list[tuple[str, Any, int]]) -> tuple[float, list[float]]:
    """Sends ``requests`` (path, body, expected status) from ``clients`` threads; wall seconds and latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    queue = iter(requests)

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    item = next(queue, None)
                if item is None:
                    return
                path, body, status = item
                start = time.perf_counter()
                resp = http.post(path, json=body)
                took = time.perf_counter() - start
                if resp.status_code != status:
                    raise SystemExit(f"POST {path}: {resp.status_code} {resp.text[:500]}")
                with lock:
                    latencies.append(took)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies


def floor(folder: Path, records: int, per_sync: int) -> float:
    """Seconds to append ``records`` JSON lines to a file, fsync'd every ``per_sync`` records."""
    path = folder / f"floor-{per_sync}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    start = time.perf_counter()
    try:
        for first in range(0, records, per_sync):
            data = b"".join(json.dumps(entity(n)).encode() + b"\n" for n in range(first, first + per_sync))
            os.write(fd, data)
            os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def committed(home: Path, org_id: str, dataset_id: str) -> list[str]:
    import duckdb

    files = sorted((home / "lake" / org_id / "prod" / dataset_id).rglob("*.parquet"))
    if not files:
        return []
    paths = ", ".join(f"'{f}'" for f in files)
    return [r[0] for r in duckdb.connect().execute(f"SELECT _id FROM read_parquet([{paths}])").fetchall()]


def wait(probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit("the records did not all reach the dataset in time")
        time.sleep(0.2)


def report(name: str, records: int, seconds: float, floor_s: float, latencies: list[float]) -> None:
    ours, bare = records / seconds, records / floor_s
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    print(
        f"{name:<7} {ours:10.0f} records/s   floor {bare:10.0f} records/s   ours/floor {ours / bare:6.3f}   "
        f"latency median {statistics.median(latencies) * 1000:7.1f} ms  p99 {q[98] * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000, help="records per phase")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--batch", type=int, default=200, help="messages per batch POST")
    args = parser.parse_args()
    records = args.records - args.records % args.batch
    with tempfile.TemporaryDirectory(prefix="ah-streaming-bench-") as tmp:
        root = Path(tmp)
        server = Server(root / "home")
        try:
            creds = json.loads((root / "home" / "credentials.json").read_text())
            with httpx.Client(base_url=server.url, timeout=60) as http:
                token = ok(
                    http.post(
                        "/ims/token/v3",
                        data={
                            "grant_type": "client_credentials",
                            "client_id": creds["client_id"],
                            "client_secret": creds["client_secret"],
                        },
                    )
                )["access_token"]
                headers = {
                    "Authorization": f"Bearer {token}",
                    "x-api-key": creds["client_id"],
                    "x-gw-ims-org-id": creds["org_id"],
                    "x-sandbox-name": "prod",
                }
                schema_id, dataset_id, inlet_id = seed_000(http, headers)
                warm = message(schema_id, dataset_id, -1)
                ok(http.post(f"/collection/{inlet_id}", json=warm))

            singles = [(f"/collection/{inlet_id}", message(schema_id, dataset_id, n), 200) for n in range(records)]
            single_s, single_lat = drive(server.url, args.clients, singles)
            batches = [
                (
                    f"/collection/batch/{inlet_id}",
                    {"messages": [message(schema_id, dataset_id, n) for n in range(first, first + args.batch)]},
                    207,
                )
                for first in range(records, 2 * records, args.batch)
            ]
            batch_s, batch_lat = drive(server.url, args.clients, batches)

            expected = {f"seg-{n}" for n in range(-1, 2 * records)}

            def landed() -> bool:
                found = committed(server.home, creds["org_id"], dataset_id)
                if len(found) > len(expected) or (set(found) == expected and len(found) != len(expected)):
                    raise SystemExit(f"{len(found) - len(expected)} record(s) committed twice")
                return set(found) == expected

            wait(landed, timeout=120)
        finally:
            server.stop()
        floor_single = floor(root, records, 1)
        floor_batch = floor(root, records, args.batch)
    print(f"{records} records per phase, {args.clients} clients, {args.batch} messages per batch POST")
    report("single", records, single_s, floor_single, single_lat)
    report("batch", records, batch_s, floor_batch, batch_lat)
    print("every record reached the dataset once")


if __name__ == "__main__":
    main()
