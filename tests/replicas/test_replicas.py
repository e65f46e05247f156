"""Two ``audiencehub serve`` replicas on one home with PostgreSQL and the lake profile store, and one worker: both
see the same resources, a replica's start leaves the other's streaming log alone, and the log of a replica killed
with kill -9 is adopted by its peer once its heartbeat is stale, every acknowledged record committed once."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from audiencehub.metadata import tables as t
from audiencehub.services.home import owner_token
from audiencehub.services.streaming_owners import owner_of
from tests.conftest import LZ, seed_audience, wait_for
from tests.integration.conftest import (
    SEED_CSV,
    SEED_MEMBERS,
    SEED_PATH,
    START_TIMEOUT_S,
    cli,
    create_audience,
    free_port,
    member_ids,
    members,
    start_run,
    upload,
    wait_run,
)
from tests.integration.test_streaming_durability import committed_ids, message, seed_000, wal_files
from tests.replicas.conftest import NEVER, QUICK, Replicas
from tests.workers.conftest import STALE_AFTER_S, ApiServer

pytestmark = pytest.mark.integration

CATALOG = "/data/foundation/catalog"
COMMIT_TIMEOUT_S = 90.0


def registered(replicas: Replicas) -> dict[str, int]:
    """The ``workers`` registry: id -> job threads."""
    with replicas.db.read() as conn:
        return {r.id: r.threads for r in conn.execute(select(t.workers.c.id, t.workers.c.threads))}


def replica_id(replica: ApiServer) -> str:
    """The registry id a replica's log announces."""
    text = replica.stderr_path().read_text(errors="replace") + replica.stdout()
    found = [line for line in text.splitlines() if "registered (no job threads)" in line]
    assert found, replica.log_tail()
    return found[-1].split("process ", 1)[1].split(" ", 1)[0]


def send(replica: ApiServer, inlet_id: str, schema_id: str, dataset_id: str, numbers: range) -> None:
    messages = [message(schema_id, dataset_id, n) for n in numbers]
    resp = replica.http.post(f"/collection/batch/{inlet_id}", json={"messages": messages})
    assert resp.status_code == 207, resp.text
    assert all("xactionId" in r for r in resp.json()["responses"]), resp.text


def committed_records(replica: ApiServer, headers: dict[str, str], dataset_id: str) -> int:
    resp = replica.http.get(f"{CATALOG}/batches", params={"dataSet": dataset_id}, headers=headers)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    assert all(b["status"] != "failed" for b in found.values()), found
    return sum(b.get("recordCount") or 0 for b in found.values() if b["status"] == "success")


def test_replicas_serve_the_same_resources_and_runs(replicas: Replicas) -> None:
    a = replicas.replica()
    b = replicas.replica()
    worker = replicas.worker()
    ids = registered(replicas)
    # Both replicas are in the registry without job threads, beside the worker; no home lock was needed.
    assert ids[replica_id(a)] == 0 and ids[replica_id(b)] == 0 and ids[worker.worker_id] == 2
    creds = a.credentials()
    on_a = a.headers(creds)
    on_b = b.headers(creds)
    upload(a.http, on_a, SEED_PATH, SEED_CSV)
    # A token that replica A issued is good on replica B (a load balancer sends the next request anywhere), and B
    # lists the file uploaded through A.
    listed = b.http.get(LZ, headers=on_a, params={"recursive": "true"})
    assert listed.status_code == 200 and "example.csv" in listed.text, listed.text
    audience_id = create_audience(a.http, on_a, seed_audience())
    got = b.http.get(f"/data/core/ais/external-audience/{audience_id}", headers=on_b)
    assert got.status_code == 200 and got.json()["audienceId"] == audience_id, got.text

    run_id = start_run(a.http, on_a, audience_id)
    run = wait_run(b.http, on_b, audience_id, run_id)  # the worker ran it; replica B reads its outcome
    assert run["status"] == "SUCCESS", run
    assert member_ids(members(b.http, on_b, audience_id)) == SEED_MEMBERS
    assert member_ids(members(a.http, on_a, audience_id)) == SEED_MEMBERS
    assert run_id in worker.log()


def test_a_replica_starting_leaves_its_peers_open_log_alone(replicas: Replicas) -> None:
    a = replicas.replica(**NEVER)
    creds = a.credentials()
    schema_id, dataset_id, inlet_id = seed_000(a, a.headers(creds))
    send(a, inlet_id, schema_id, dataset_id, range(0, 10))
    [open_log] = wal_files(a, creds["org_id"], dataset_id)
    assert open_log.name.endswith(".log.open") and owner_of(open_log.name) == owner_token(replica_id(a))

    b = replicas.replica(**QUICK)
    # B's start adopted nothing of A's: A's log is still open, under A's name, with its ten records.
    assert open_log.exists() and len(open_log.read_bytes().splitlines()) == 10
    send(b, inlet_id, schema_id, dataset_id, range(10, 20))
    send(a, inlet_id, schema_id, dataset_id, range(20, 30))
    on_b = b.headers(creds)
    wait_for(lambda: committed_records(b, on_b, dataset_id) == 10, timeout=COMMIT_TIMEOUT_S, what="B's batch")
    assert open_log.exists()  # B commits its own records only, never A's log

    a.stop()  # a graceful stop seals and commits A's log
    wait_for(lambda: committed_records(b, on_b, dataset_id) == 30, timeout=COMMIT_TIMEOUT_S, what="A's batch")
    ids = committed_ids(a, creds["org_id"], dataset_id)
    assert sorted(ids) == sorted(f"seg-{n}" for n in range(30)), Counter(ids).most_common(3)
    assert wal_files(a, creds["org_id"], dataset_id) == []


def test_the_open_log_of_a_killed_replica_is_adopted_once_its_heartbeat_is_stale(replicas: Replicas) -> None:
    a = replicas.replica(**NEVER)
    b = replicas.replica(**QUICK)
    creds = a.credentials()
    schema_id, dataset_id, inlet_id = seed_000(a, a.headers(creds))
    send(a, inlet_id, schema_id, dataset_id, range(0, 15))
    send(b, inlet_id, schema_id, dataset_id, range(15, 20))
    a_id = replica_id(a)
    a.kill()
    [left] = [p for p in wal_files(a, creds["org_id"], dataset_id) if owner_of(p.name) == owner_token(a_id)]
    assert left.name.endswith(".log.open") and len(left.read_bytes().splitlines()) == 15
    on_b = b.headers(creds)
    wait_for(
        lambda: committed_records(b, on_b, dataset_id) == 20,
        timeout=STALE_AFTER_S + COMMIT_TIMEOUT_S,
        interval=0.2,
        what="the killed replica's records, committed by its peer",
    )
    ids = committed_ids(b, creds["org_id"], dataset_id)
    assert sorted(ids) == sorted(f"seg-{n}" for n in range(20)), Counter(ids).most_common(3)  # none lost, none twice
    wait_for(lambda: wal_files(b, creds["org_id"], dataset_id) == [], what="the adopted log's removal")
    assert "adopted" in b.stderr_path().read_text(errors="replace") + b.stdout()
    # Nothing more comes later: the adopted log is committed once.
    assert committed_records(b, on_b, dataset_id) == 20


def test_an_embedded_profile_store_still_allows_one_server(replicas: Replicas) -> None:
    replicas.env = {**replicas.env, "AUDIENCEHUB_PROFILE_STORE": "duckdb"}
    first = replicas.replica()
    env = {k: v for k, v in first.env.items() if k != "AUDIENCEHUB_WORKERS"}
    port = str(free_port())
    second = cli(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        home=first.home,
        cwd=first.home.parent,
        timeout=START_TIMEOUT_S,
        **env,
    )
    assert second.returncode != 0, second.stdout + second.stderr
    assert f"another audiencehub process is using {first.home}" in second.stderr
    assert first.http.get("/health").status_code == 200
