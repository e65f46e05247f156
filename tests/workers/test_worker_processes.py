"""Several ``audiencehub worker`` processes beside a server that runs no jobs (issue 7), on SQLite and PostgreSQL:
each job runs once; a worker killed mid-job is found by its heartbeat and its job retried or failed with the
reason, with nothing half-committed."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest

from audiencehub.jobs.runner import STOPPED
from audiencehub.metadata import jobs
from tests.api.xdm_support import (
    CATALOG,
    IDENTITY_MAP_FG,
    IMPORT,
    PERSON_FG,
    PROFILE_CLASS,
    dataset,
    enable_profile,
    json_lines,
)
from tests.api.xdm_support import schema as make_schema
from tests.conftest import wait_for
from tests.workers.conftest import STALE_AFTER_S, Cluster

pytestmark = pytest.mark.integration

QS = "/data/foundation/query"
JOB_TIMEOUT_S = 90.0


def person(n: int) -> dict[str, Any]:
    return {
        "_id": f"r{n}",
        "identityMap": {"Email": [{"id": f"p{n}@example.com"}]},
        "person": {"name": {"firstName": f"P{n}"}},
    }


def people_dataset(http: httpx.Client, headers: dict[str, str]) -> str:
    """A dataset that is not enabled for Profile: its batches never touch the profile store."""
    sid = make_schema(http, headers, "People", PROFILE_CLASS, IDENTITY_MAP_FG, PERSON_FG)  # type: ignore[arg-type]
    return dataset(http, headers, "People List", sid)  # type: ignore[arg-type]


def start_batch(http: httpx.Client, headers: dict[str, str], dataset_id: str, content: bytes) -> str:
    """Creates a batch, uploads one file and completes it, without waiting for the job."""
    resp = http.post(
        f"{IMPORT}/batches", json={"datasetId": dataset_id, "inputFormat": {"format": "json"}}, headers=headers
    )
    assert resp.status_code == 201, resp.text
    batch_id: str = resp.json()["id"]
    resp = http.put(
        f"{IMPORT}/batches/{batch_id}/datasets/{dataset_id}/files/records.json",
        content=content,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert resp.status_code == 200, resp.text
    resp = http.post(f"{IMPORT}/batches/{batch_id}?action=COMPLETE", headers=headers)
    assert resp.status_code == 200, resp.text
    return batch_id


def batch_status(http: httpx.Client, headers: dict[str, str], batch_id: str) -> str:
    status: str = http.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]["status"]
    return status


def submit(http: httpx.Client, headers: dict[str, str], **body: Any) -> str:
    resp = http.post(f"{QS}/queries", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    query_id: str = resp.json()["id"]
    return query_id


def query(http: httpx.Client, headers: dict[str, str], query_id: str) -> dict[str, Any]:
    resp = http.get(f"{QS}/queries/{query_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def finished_query(http: httpx.Client, headers: dict[str, str], query_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = query(http, headers, query_id)
        return body if body["state"] not in ("SUBMITTED", "IN_PROGRESS") else None

    return wait_for(done, timeout=JOB_TIMEOUT_S, interval=0.1, what=f"query {query_id}")


def dataset_names(http: httpx.Client, headers: dict[str, str]) -> list[str]:
    resp = http.get(f"{CATALOG}/dataSets", params={"properties": "name", "limit": 100}, headers=headers)
    assert resp.status_code == 200, resp.text
    return sorted(d["name"] for d in resp.json().values())


def test_jobs_enqueued_by_the_server_run_once_each_across_two_workers(cluster: Cluster) -> None:
    server = cluster.server
    http, headers = server.http, server.headers()
    ds = people_dataset(http, headers)
    first = start_batch(http, headers, ds, json_lines(person(0)))
    assert batch_status(http, headers, first) == "queued"
    assert [j["status"] for j in cluster.jobs()] == [jobs.QUEUED]  # no job threads in the server: it waits

    a, b = cluster.worker(), cluster.worker()
    wait_for(lambda: batch_status(http, headers, first) == "success", timeout=JOB_TIMEOUT_S, what="the first batch")
    batches = [first] + [start_batch(http, headers, ds, json_lines(person(n), person(n + 100))) for n in range(1, 13)]
    queries = [
        submit(
            http,
            headers,
            sql="SELECT person.name.firstName AS first_name FROM people_list",
            ctasParameters={"datasetName": f"Names {n}"},
        )
        for n in range(6)
    ]
    for batch_id in batches:
        wait_for(lambda b=batch_id: batch_status(http, headers, b) in ("success", "failed"), timeout=JOB_TIMEOUT_S)
    assert {batch_id: batch_status(http, headers, batch_id) for batch_id in batches} == dict.fromkeys(
        batches, "success"
    )
    done = [finished_query(http, headers, q) for q in queries]
    assert [q["state"] for q in done] == ["SUCCESS"] * 6, done

    # A handler records the outcome on its resource, then the runner ends the job row in the next transaction.
    def ended() -> list[dict[str, Any]] | None:
        rows = cluster.jobs()
        return rows if all(r["status"] not in (jobs.QUEUED, jobs.RUNNING) for r in rows) else None

    found = wait_for(ended, timeout=JOB_TIMEOUT_S, what="every job row ended")
    assert len(found) == len(batches) + len(queries)
    assert {(j["status"], j["attempts"]) for j in found} == {(jobs.SUCCEEDED, 1)}
    assert {j["worker_id"] for j in found} == {a.worker_id, b.worker_id}  # both workers got work
    claims = Counter(a.claims() + b.claims())
    assert claims == Counter({j["id"]: 1 for j in found})  # each claimed once, by one worker
    # One outcome each: one committed batch per batch job, one dataset per CTAS.
    assert dataset_names(http, headers) == sorted(["People List", *(f"Names {n}" for n in range(6))])
    listed = http.get(f"{CATALOG}/batches", params={"dataSet": ds, "limit": 100}, headers=headers).json()
    assert sorted(listed) == sorted(batches)
    assert a.stop() == 0 and b.stop() == 0


def test_a_worker_killed_before_its_batch_ran_is_found_by_its_heartbeat_and_the_batch_retried(
    cluster: Cluster,
) -> None:
    http, headers = cluster.server.http, cluster.server.headers()
    ds = people_dataset(http, headers)
    doomed = cluster.worker(AUDIENCEHUB_DEBUG_HOLD_AT="job.batch-ingest.claimed")
    batch_id = start_batch(http, headers, ds, json_lines(person(1), person(2)))
    held = wait_for(lambda: list((cluster.home / "holds").glob("*.job.batch-ingest.claimed")), timeout=JOB_TIMEOUT_S)
    job_id = held[0].name.split(".")[0]
    assert cluster.job(job_id)["worker_id"] == doomed.worker_id
    peer = cluster.worker()
    doomed.kill()
    killed_at = time.monotonic()

    def retried() -> dict[str, Any] | None:
        job = cluster.job(job_id)
        return job if job["status"] == jobs.SUCCEEDED else None

    job = wait_for(retried, timeout=JOB_TIMEOUT_S, interval=0.1, what="the retried batch job")
    assert time.monotonic() - killed_at >= STALE_AFTER_S * 0.5  # found by its heartbeat going stale, not at once
    assert (job["attempts"], job["worker_id"]) == (2, peer.worker_id)
    assert batch_status(http, headers, batch_id) == "success"
    assert peer.claims() == [job_id]
    assert "re-queueing job " + job_id in peer.log()


def test_a_worker_killed_while_a_ctas_writes_is_found_by_its_heartbeat_and_the_query_failed(cluster: Cluster) -> None:
    http, headers = cluster.server.http, cluster.server.headers()
    doomed = cluster.worker()
    query_id = submit(
        http,
        headers,
        sql="SELECT a.range AS x, b.range AS y FROM range(100000) a, range(100000) b",
        ctasParameters={"datasetName": "Huge"},
    )
    wait_for(lambda: query(http, headers, query_id)["state"] == "IN_PROGRESS", timeout=JOB_TIMEOUT_S, interval=0.05)
    (job,) = cluster.jobs()
    assert job["worker_id"] == doomed.worker_id
    staging = cluster.home / "lake"
    wait_for(lambda: any(p.is_file() for p in staging.rglob("*")), timeout=JOB_TIMEOUT_S, what="staged files")
    peer = cluster.worker()
    doomed.kill()

    done = finished_query(http, headers, query_id)
    assert done["state"] == "FAILED"
    assert "stopped" in done["errors"][0]["message"], done["errors"]
    # recover() marks the query FAILED, then the job row ends in the next transaction.
    row = wait_for(lambda: (r := cluster.job(job["id"]))["status"] == jobs.FAILED and r, timeout=JOB_TIMEOUT_S)
    assert (row["error"], row["worker_id"]) == (STOPPED, peer.worker_id)
    assert row["attempts"] == 1  # a CTAS is never run twice
    assert dataset_names(http, headers) == []  # no half-written dataset
    # What it wrote stays in the sandbox's staging folder, which no reader sees.
    assert {p.relative_to(staging).parts[2] for p in staging.rglob("*") if p.is_file()} <= {"_staging"}
    assert peer.claims() == []


def test_a_job_that_needs_the_embedded_profile_store_fails_in_a_worker_with_the_reason(cluster: Cluster) -> None:
    """The DuckDB profile file belongs to the server: a worker never opens it, so it never locks the server out."""
    http, headers = cluster.server.http, cluster.server.headers()
    sid = make_schema(http, headers, "Profiles", PROFILE_CLASS, IDENTITY_MAP_FG, PERSON_FG)  # type: ignore[arg-type]
    enable_profile(http, headers, sid)  # type: ignore[arg-type]
    ds = dataset(http, headers, "Profile Records", sid, profile=True)  # type: ignore[arg-type]
    cluster.worker()
    batch_id = start_batch(http, headers, ds, json_lines(person(1)))
    wait_for(lambda: batch_status(http, headers, batch_id) == "failed", timeout=JOB_TIMEOUT_S, what="the batch")
    body = http.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]
    assert "embedded DuckDB file" in body["errors"][0]["description"], body["errors"]
    assert "AUDIENCEHUB_WORKERS" in body["errors"][0]["description"]
    # The server still opens its profile store: a lookup answers (nothing was ingested: 404, not a lock error).
    resp = http.get(
        "/data/core/ups/access/entities",
        params={"schema.name": "_xdm.context.profile", "entityId": "p1@example.com", "entityIdNS": "Email"},
        headers=headers,
    )
    assert resp.status_code in (200, 404), resp.text
    assert "lock" not in resp.text


def test_sigterm_stops_claiming_and_leaves_a_job_that_outlives_the_grace_period_to_a_peer(cluster: Cluster) -> None:
    http, headers = cluster.server.http, cluster.server.headers()
    ds = people_dataset(http, headers)
    stopping = cluster.worker(
        AUDIENCEHUB_DEBUG_HOLD_AT="job.batch-ingest.claimed", AUDIENCEHUB_WORKER_GRACE_SECONDS="0.5"
    )
    batch_id = start_batch(http, headers, ds, json_lines(person(1)))
    held = wait_for(lambda: list((cluster.home / "holds").glob("*.job.batch-ingest.claimed")), timeout=JOB_TIMEOUT_S)
    job_id = held[0].name.split(".")[0]
    assert stopping.stop() == 1  # the job was still running after the grace period: the exit status says so
    assert f"left to recovery: ['{job_id}']" in stopping.log()
    assert cluster.job(job_id)["status"] == jobs.RUNNING  # no outcome invented on the way out

    peer = cluster.worker()
    wait_for(lambda: cluster.job(job_id)["status"] == jobs.SUCCEEDED, timeout=JOB_TIMEOUT_S, what="the job")
    assert (cluster.job(job_id)["attempts"], cluster.job(job_id)["worker_id"]) == (2, peer.worker_id)
    assert batch_status(http, headers, batch_id) == "success"


def test_a_cancel_answered_by_the_api_process_stops_the_query_a_worker_runs(cluster: Cluster) -> None:
    http, headers = cluster.server.http, cluster.server.headers()
    worker = cluster.worker()
    query_id = submit(http, headers, sql="SELECT sum(a.range * b.range) AS s FROM range(300000) a, range(300000) b")
    wait_for(lambda: query(http, headers, query_id)["state"] == "IN_PROGRESS", timeout=JOB_TIMEOUT_S, interval=0.05)
    (job,) = cluster.jobs()
    assert job["worker_id"] == worker.worker_id  # the server runs no jobs: only the flag in the database reaches it
    # Running for sure (past the check for a cancel that the job makes before it starts): the worker burns CPU.
    idle = worker.cpu_seconds()
    wait_for(lambda: worker.cpu_seconds() > idle + 2, timeout=JOB_TIMEOUT_S, interval=0.1, what="the query to run")
    started = time.monotonic()
    resp = http.patch(f"/data/foundation/query/queries/{query_id}", json={"op": "cancel"}, headers=headers)
    assert resp.status_code == 202, resp.text
    done = finished_query(http, headers, query_id)
    assert done["state"] == "KILLED" and done["errors"][0]["code"] == "57014", done
    assert time.monotonic() - started < 20, "the worker ran the query to its end"
