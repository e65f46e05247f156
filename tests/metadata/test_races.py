"""Read-then-write use cases against a competing transaction, on SQLite and PostgreSQL.

Each test holds, in its own transaction, the row lock and the change that a competing use case's transaction
makes (a commit, a delete, a start), then runs the use case against it (tests/metadata/racing.py). On PostgreSQL's
READ COMMITTED a use case that did not lock the row it read would decide on the state before the competing change
and overwrite it; locked, it waits and decides on the committed state, as it always does on SQLite.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from audiencehub.config import Settings
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Scope, get_row, insert_row, list_rows
from audiencehub.wiring import Container
from tests.api.test_connections import C as CONNECTIONS
from tests.api.test_connections import s3_body
from tests.conftest import EA, create_audience, seed_audience
from tests.metadata.racing import race

pytestmark = pytest.mark.parametrize("metadata_backend", ["sqlite", "postgresql"], scope="module")


def container(client: TestClient) -> Container:
    found: Container = client.app.state.container  # type: ignore[attr-defined]
    return found


def scope_of(settings: Settings) -> Scope:
    creds = json.loads((settings.home / "credentials.json").read_text())
    return Scope(creds["org_id"], "prod")


def store_of(client: TestClient) -> MetadataStore:
    return container(client).store


def locked(conn: Connection, table: Any, key: Any, **values: Any) -> None:
    """What a competing transaction does: lock the row, then change it."""
    assert get_row(conn, table, None, for_update=True, id=key) is not None
    conn.execute(table.update().where(table.c.id == key).values(**values))


def test_a_run_started_while_the_audience_is_being_deleted_is_refused(
    client: TestClient, headers: dict[str, str], metadata_backend: str
) -> None:
    audience_id = create_audience(client, headers, seed_audience())
    outcome = race(
        store_of(client),
        lambda conn: locked(conn, t.audiences, audience_id, state="DELETING"),  # delete() found no run in progress
        lambda: client.post(f"{EA}/{audience_id}/runs", json={"dataFilterStartTime": 0}, headers=headers),
    )
    assert outcome.error is None
    assert outcome.value.status_code == 404, outcome.value.text
    with store_of(client).read() as conn:
        assert get_row(conn, t.runs, None, audience_id=audience_id) is None


def test_cancelling_an_export_job_that_commits_meanwhile_keeps_its_result(
    client: TestClient, headers: dict[str, str], settings: Settings, metadata_backend: str
) -> None:
    scope, stamp = scope_of(settings), int(time.time() * 1000)
    with store_of(client).tx() as conn:
        job_id = conn.execute(
            t.export_jobs.insert().values(
                org_id=scope.org_id,
                sandbox=scope.sandbox,
                status="PROCESSING",
                spec={"destination": {"datasetId": str(uuid.uuid4())}},
                batches=[],
                metrics={},
                errors=[],
                work_id=str(uuid.uuid4()),
                request_id="r",
                created_at=stamp,
                updated_at=stamp,
            )
        ).inserted_primary_key[0]
    outcome = race(
        store_of(client),
        lambda conn: locked(conn, t.export_jobs, job_id, status="SUCCEEDED"),  # _commit
        lambda: container(client).exports.cancel(scope, str(job_id)),
    )
    assert outcome.error is None
    with store_of(client).read() as conn:
        # A finished job's DELETE removes it from the API; it is never left CANCELLING, as if it had not committed.
        assert get_row(conn, t.export_jobs, None, id=job_id) is None


def test_cancelling_a_segment_job_that_finishes_meanwhile_leaves_it_finished(
    client: TestClient, settings: Settings, metadata_backend: str
) -> None:
    scope, job_id, stamp = scope_of(settings), str(uuid.uuid4()), int(time.time() * 1000)
    with store_of(client).tx() as conn:
        insert_row(
            conn,
            t.segment_jobs,
            {
                "id": job_id,
                "org_id": scope.org_id,
                "sandbox": scope.sandbox,
                "status": "PROCESSING",
                "source": "api",
                "segment_ids": [],
                "segments": [],
                "metrics": {},
                "errors": [],
                "properties": {},
                "created_at": stamp,
                "updated_at": stamp,
                "created_ns": time.time_ns(),
            },
        )
    outcome = race(
        store_of(client),
        lambda conn: locked(conn, t.segment_jobs, job_id, status="SUCCEEDED"),  # _finish
        lambda: container(client).segment_jobs.cancel_job(scope, job_id),
    )
    assert outcome.error is None
    with store_of(client).read() as conn:
        row = get_row(conn, t.segment_jobs, None, id=job_id)
    assert row is not None and row["status"] == "SUCCEEDED"


def test_cancelling_a_query_that_starts_meanwhile_asks_the_running_query_to_stop(
    client: TestClient, settings: Settings, metadata_backend: str
) -> None:
    scope, query_id, stamp = scope_of(settings), str(uuid.uuid4()), int(time.time() * 1000)
    with store_of(client).tx() as conn:
        insert_row(
            conn,
            t.queries,
            {
                "id": query_id,
                "org_id": scope.org_id,
                "sandbox": scope.sandbox,
                "state": "SUBMITTED",
                "request": {},
                "effective_sql": "SELECT 1",
                "kind": "query",
                "client_id": "c",
                "errors": [],
                "datasets": {},
                "deleted": False,
                "cancel": False,
                "created_ms": stamp,
                "updated_ms": stamp,
            },
        )
    outcome = race(
        store_of(client),
        lambda conn: locked(conn, t.queries, query_id, state="IN_PROGRESS"),  # execute() took it
        lambda: container(client).query_runs.patch(scope, query_id, {"op": "cancel"}),
    )
    assert outcome.error is None
    with store_of(client).read() as conn:
        row = get_row(conn, t.queries, None, id=query_id)
    # Not KILLED over a query that runs: it is flagged, and the running statement is cancelled.
    assert row is not None and (row["state"], row["cancel"]) == ("IN_PROGRESS", True)


def test_aborting_a_batch_that_is_completed_meanwhile_is_refused(
    client: TestClient, settings: Settings, metadata_backend: str
) -> None:
    scope, batch_id, dataset_id = scope_of(settings), str(uuid.uuid4()), str(uuid.uuid4())
    with store_of(client).tx() as conn:
        insert_row(
            conn,
            t.batches,
            {
                "id": batch_id,
                "org_id": scope.org_id,
                "sandbox": scope.sandbox,
                "dataset_id": dataset_id,
                "status": "loading",
                "record_count": 0,
                "size_bytes": 0,
                "created_at": int(time.time()),
            },
        )
    outcome = race(
        store_of(client),
        lambda conn: locked(conn, t.batches, batch_id, status="queued"),  # complete()
        lambda: container(client).batches.abort(scope, batch_id),
    )
    assert outcome.error is not None and "only a loading batch can be aborted" in str(outcome.error)
    with store_of(client).read() as conn:
        row = get_row(conn, t.batches, None, id=batch_id)
    assert row is not None and row["status"] == "queued"


def test_a_patch_with_an_etag_another_patch_just_replaced_is_refused(
    client: TestClient, headers: dict[str, str], metadata_backend: str
) -> None:
    created = client.post(CONNECTIONS, json=s3_body(), headers=headers)
    assert created.status_code == 201, created.text
    connection_id, etag = created.json()["id"], created.json()["etag"]
    rename = [{"op": "replace", "path": "/name", "value": "second"}]
    outcome = race(
        store_of(client),
        lambda conn: locked(conn, t.connections, connection_id, name="first", etag='"another"'),
        lambda: client.patch(f"{CONNECTIONS}/{connection_id}", json=rename, headers={**headers, "if-match": etag}),
    )
    assert outcome.error is None
    assert outcome.value.status_code == 412, outcome.value.text
    with store_of(client).read() as conn:
        row = get_row(conn, t.connections, None, id=connection_id)
    assert row is not None and row["name"] == "first"


def test_two_updates_of_a_merge_policy_each_bump_its_version(
    client: TestClient, headers: dict[str, str], settings: Settings, metadata_backend: str
) -> None:
    policy = {
        "name": "Loyalty members",
        "identityGraph": {"type": "none"},
        "attributeMerge": {"type": "timestampOrdered"},
        "schema": {"name": "_xdm.context.profile"},
    }
    created = client.post("/data/core/ups/config/mergePolicies", json=policy, headers=headers)
    assert created.status_code in (200, 201), created.text
    policy_id, version = created.json()["id"], created.json()["version"]
    patch = [{"op": "add", "path": "/name", "value": "Renamed"}]
    outcome = race(
        store_of(client),
        lambda conn: locked(conn, t.merge_policies, policy_id, version=version + 1),  # another update
        lambda: container(client).merge_policies.patch(scope_of(settings), policy_id, patch),
    )
    assert outcome.error is None, outcome.error
    with store_of(client).read() as conn:
        row = get_row(conn, t.merge_policies, None, id=policy_id)
    assert row is not None and (row["name"], row["version"]) == ("Renamed", version + 2)


def test_a_batch_that_commits_while_its_dataset_is_deleted_goes_with_it(
    client: TestClient, settings: Settings, metadata_backend: str
) -> None:
    scope, batch_id, dataset_id, stamp = scope_of(settings), str(uuid.uuid4()), str(uuid.uuid4()), int(time.time())
    with store_of(client).tx() as conn:
        insert_row(
            conn,
            t.datasets,
            {
                "id": dataset_id,
                "org_id": scope.org_id,
                "sandbox": scope.sandbox,
                "name": "Deleted meanwhile",
                "schema_id": "_xdm.context.profile",
                "kind": "xdm",
                "tags": {},
                "created_at": stamp,
                "updated_at": stamp,
            },
        )
        insert_row(
            conn,
            t.batches,
            {
                "id": batch_id,
                "org_id": scope.org_id,
                "sandbox": scope.sandbox,
                "dataset_id": dataset_id,
                "status": "processing",
                "record_count": 0,
                "size_bytes": 0,
                "created_at": stamp,
            },
        )

    def delete_dataset(conn: Connection) -> None:  # catalog.delete_dataset's transaction
        assert get_row(conn, t.datasets, None, for_update=True, id=dataset_id) is not None
        conn.execute(t.batches.delete().where(t.batches.c.dataset_id == dataset_id))
        conn.execute(t.datasets.delete().where(t.datasets.c.id == dataset_id))

    outcome = race(
        store_of(client),
        delete_dataset,
        lambda: container(client).batches._finish(scope, batch_id, "success", records=3, dataset_id=dataset_id),
    )
    assert outcome.error is None, outcome.error
    assert outcome.value is False  # the batch did not commit into a deleted dataset
    with store_of(client).read() as conn:
        assert get_row(conn, t.batches, None, id=batch_id) is None


def test_a_dataset_named_while_another_takes_the_name_is_refused(
    client: TestClient, headers: dict[str, str], settings: Settings, metadata_backend: str
) -> None:
    scope, stamp = scope_of(settings), int(time.time())

    def create_same_name(conn: Connection) -> None:  # another create_dataset, between its check and its commit
        assert get_row(conn, t.sandboxes, None, for_update=True, org_id=scope.org_id, name=scope.sandbox)
        insert_row(
            conn,
            t.datasets,
            {
                "id": str(uuid.uuid4()),
                "org_id": scope.org_id,
                "sandbox": scope.sandbox,
                "name": "Taken",
                "schema_id": "_xdm.context.profile__union",
                "kind": "xdm",
                "tags": {},
                "created_at": stamp,
                "updated_at": stamp,
            },
        )

    body = {"name": "Taken", "schemaRef": {"id": "_xdm.context.profile__union"}}
    outcome = race(
        store_of(client),
        create_same_name,
        lambda: client.post("/data/foundation/catalog/dataSets", json=body, headers=headers),
    )
    assert outcome.error is None
    assert outcome.value.status_code == 409, outcome.value.text
    with store_of(client).read() as conn:
        assert len(list_rows(conn, t.datasets, scope, name="Taken")[0]) == 1
