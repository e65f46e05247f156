"""Segment jobs beyond the happy path: the daily schedule, continuous re-evaluation after a batch, cancelling,
and what a crash leaves (nothing half-done: a committed evaluation rolls forward, an uncommitted one fails)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.jobs.schedule import next_run, parse_time
from audiencehub.metadata import tables
from audiencehub.metadata.store import Scope
from tests.api.xdm_support import (
    IDENTITY_MAP_FG,
    PROFILE_CLASS,
    dataset,
    enable_profile,
    field_group,
    ingest,
    json_lines,
    schema,
    tenant,
)
from tests.conftest import wait_for
from tests.segments.support import JOBS, define, evaluate, segment_status, wait_job


def services(client: TestClient) -> Any:
    return client.app.state.container  # type: ignore[attr-defined]


def held_job(client: TestClient, headers: dict[str, str]) -> tuple[Any, Scope, str]:
    """A segment job of every definition, queued but kept from the workers (as when every worker is busy)."""
    svc = services(client).segment_jobs
    scope = Scope(headers["x-gw-ims-org-id"], headers["x-sandbox-name"])
    with svc._store.tx() as conn:
        job_id = svc._enqueue(conn, scope, services(client).segmentation.definitions(conn, scope), "api", {})
        conn.execute(tables.jobs.update().where(tables.jobs.c.ref_id == job_id).values(status="SUCCEEDED"))
    return svc, scope, job_id


def test_schedule_times() -> None:
    at = parse_time("02:30")
    assert at == dt.time(2, 30, tzinfo=dt.UTC)
    assert parse_time("off") is None
    with pytest.raises(ValueError, match="25:99"):
        parse_time("25:99")
    before = dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.UTC)
    assert at is not None
    assert next_run(at, before) == dt.datetime(2026, 11, 25, 2, 30, tzinfo=dt.UTC)
    assert next_run(at, dt.datetime(2026, 11, 25, 2, 30, tzinfo=dt.UTC)) == dt.datetime(
        2026, 11, 26, 2, 30, tzinfo=dt.UTC
    )


def test_the_daily_job_evaluates_every_batch_segment_of_each_sandbox(
    client: TestClient, headers: dict[str, str], dev_headers: dict[str, str]
) -> None:
    batch = define(client, headers, "Batch", "true")
    define(client, headers, "Edge only", "true", evaluationInfo={"batch": {"enabled": False}})
    in_dev = define(client, dev_headers, "Dev batch", "true")
    job_ids = services(client).segment_jobs.schedule_due()
    assert len(job_ids) == 2
    prod = [j for j in client.get(JOBS, headers=headers).json()["children"] if j["source"] == "scheduler"]
    dev = [j for j in client.get(JOBS, headers=dev_headers).json()["children"] if j["source"] == "scheduler"]
    assert [s["segmentId"] for s in prod[0]["segments"]] == [batch]
    assert [s["segmentId"] for s in dev[0]["segments"]] == [in_dev]
    assert wait_job(client, headers, prod[0]["id"])["status"] == "SUCCEEDED"


def test_a_batch_into_a_profile_dataset_re_evaluates_continuous_segments(
    client: TestClient, headers: dict[str, str]
) -> None:
    t = tenant(client, headers)
    fg = field_group(client, headers, "Tiering", {"tier": {"type": "string"}})
    schema_id = schema(client, headers, "People", PROFILE_CLASS, IDENTITY_MAP_FG, fg)
    enable_profile(client, headers, schema_id)
    ds = dataset(client, headers, "People", schema_id, profile=True)
    streaming = define(
        client,
        headers,
        "Gold now",
        f'_{t}.tier = "gold"',
        evaluationInfo={"batch": {"enabled": False}, "continuous": {"enabled": True}},
    )
    record = {"identityMap": {"Email": [{"id": "a@example.com", "primary": True}]}, f"_{t}": {"tier": "gold"}}
    assert ingest(client, headers, ds, json_lines(record))["status"] == "success"

    def evaluated() -> str | None:
        return segment_status(client, headers, "Email", "a@example.com", streaming)

    assert wait_for(evaluated, what="continuous evaluation") == "realized"
    (job,) = client.get(JOBS, headers=headers).json()["children"]
    assert job["source"] == "streaming" and job["properties"]["dataSetId"] == ds


def test_cancelling_a_job_that_has_not_started(client: TestClient, headers: dict[str, str]) -> None:
    sid = define(client, headers, "Everyone", "true")
    svc, scope, job_id = held_job(client, headers)
    assert client.delete(f"{JOBS}/{job_id}", headers=headers).status_code == 204
    assert client.get(f"{JOBS}/{job_id}", headers=headers).json()["status"] == "CANCELLED"
    svc.execute(job_id, scope)  # a worker picking it up later changes nothing
    assert client.get(f"{JOBS}/{job_id}", headers=headers).json()["status"] == "CANCELLED"
    assert segment_status(client, headers, "Email", "a@example.com", sid) is None


def test_a_job_that_stopped_before_its_commit_fails_and_changes_nothing(
    client: TestClient, headers: dict[str, str]
) -> None:
    first = define(client, headers, "Everyone", "true")
    assert evaluate(client, headers, first)["status"] == "SUCCEEDED"
    svc, scope, job_id = held_job(client, headers)
    svc.recover(job_id, scope)
    job = client.get(f"{JOBS}/{job_id}", headers=headers).json()
    assert job["status"] == "FAILED"
    assert "no membership changed" in job["errors"][0]["msg"]


def test_a_job_whose_evaluation_committed_rolls_forward_after_a_stop(
    client: TestClient, headers: dict[str, str]
) -> None:
    sid = define(client, headers, "Everyone", "true")
    svc, scope, job_id = held_job(client, headers)
    plans, ttl, errors = svc._plans(scope, {"segment_ids": [[sid]]})
    assert not errors
    svc._profiles.evaluate(scope, job_id, plans, ttl)  # the store committed; then the process died
    svc.recover(job_id, scope)
    job = client.get(f"{JOBS}/{job_id}", headers=headers).json()
    assert job["status"] == "SUCCEEDED"
    assert job["metrics"]["segmentedProfileCounter"] == {sid: 0}
