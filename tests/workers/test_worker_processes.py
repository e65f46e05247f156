"""Several ``audiencehub worker`` processes beside a server that runs no jobs (issue 7), on SQLite and PostgreSQL:
each job runs once; a worker killed mid-job is found by its heartbeat and its job retried or failed with the
reason, with nothing half-committed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from audiencehub.metadata import jobs
from tests.api.xdm_support import CATALOG, IDENTITY_MAP_FG, IMPORT, PERSON_FG, PROFILE_CLASS, dataset, json_lines
from tests.api.xdm_support import schema as make_schema
from tests.conftest import wait_for
from tests.workers.conftest import STALE_AFTER_S, Cluster  # noqa: F401

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

    found = cluster.jobs()
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
