"""The store on SQLite and PostgreSQL: transactions, snapshots, the row helpers, and the column types."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from audiencehub.metadata import tables as t
from audiencehub.metadata.store import (
    MetadataStore,
    Scope,
    created_ns,
    delete_rows,
    get_row,
    insert_row,
    list_rows,
    update_row,
)

SCOPE = Scope("ORG@AdobeOrg", "prod")
OTHER = Scope("ORG@AdobeOrg", "dev")


def org(store: MetadataStore, org_id: str = SCOPE.org_id) -> None:
    with store.tx() as conn:
        insert_row(conn, t.orgs, {"id": org_id, "name": "Org", "created_at": 1})


def dataset(store: MetadataStore, scope: Scope = SCOPE, name: str | None = None, **extra: Any) -> str:
    dataset_id = str(uuid.uuid4())
    with store.tx() as conn:
        insert_row(
            conn,
            t.datasets,
            {
                "id": dataset_id,
                "org_id": scope.org_id,
                "sandbox": scope.sandbox,
                "name": name or f"ds {dataset_id}",
                "schema_id": "_xdm.context.profile",
                "kind": "xdm",
                "tags": {},
                "created_at": 1,
                "updated_at": 1,
                **extra,
            },
        )
    return dataset_id


def count(store: MetadataStore) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(t.datasets)).scalar_one())


def test_a_transaction_commits_as_a_whole_or_not_at_all(store: MetadataStore) -> None:
    dataset(store)
    with pytest.raises(RuntimeError), store.tx() as conn:
        insert_row(conn, t.orgs, {"id": "kept-out", "name": "x", "created_at": 1})
        conn.execute(t.datasets.delete())
        raise RuntimeError("the use case failed half way")
    assert count(store) == 1
    with store.read() as conn:
        assert get_row(conn, t.orgs, None, id="kept-out") is None


def test_a_failed_statement_rolls_the_whole_transaction_back(store: MetadataStore) -> None:
    org(store)
    with pytest.raises(IntegrityError), store.tx() as conn:
        dataset_row = {"id": "d1", "org_id": "o", "sandbox": "s", "name": "n", "schema_id": "x", "kind": "xdm"}
        insert_row(conn, t.datasets, {**dataset_row, "tags": {}, "created_at": 1, "updated_at": 1})
        insert_row(conn, t.orgs, {"id": SCOPE.org_id, "name": "again", "created_at": 2})
    assert count(store) == 0


def test_a_read_sees_one_snapshot_while_writers_commit(store: MetadataStore) -> None:
    dataset(store)
    with store.read() as conn:
        first = conn.execute(select(func.count()).select_from(t.datasets)).scalar_one()
        writer = threading.Thread(target=dataset, args=(store,))  # commits while the read is open
        writer.start()
        writer.join(timeout=30)
        assert not writer.is_alive(), "a writer waited for a reader"
        again = conn.execute(select(func.count()).select_from(t.datasets)).scalar_one()
    assert (first, again) == (1, 1)
    assert count(store) == 2


def test_a_read_cannot_write_on_postgresql(store: MetadataStore, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite's read() is a plain BEGIN; only PostgreSQL enforces READ ONLY")
    with pytest.raises(DBAPIError, match="read-only"), store.read() as conn:
        insert_row(conn, t.orgs, {"id": "x", "name": "x", "created_at": 1})


def test_rows_are_scoped_to_their_org_and_sandbox(store: MetadataStore) -> None:
    mine = dataset(store, SCOPE, name="mine")
    dataset(store, OTHER, name="theirs")
    with store.read() as conn:
        assert get_row(conn, t.datasets, SCOPE, id=mine) is not None
        assert get_row(conn, t.datasets, OTHER, id=mine) is None
        rows, total = list_rows(conn, t.datasets, SCOPE)
    assert ([r["name"] for r in rows], total) == (["mine"], 1)


def test_list_rows_pages_and_counts_all(store: MetadataStore) -> None:
    for n in range(5):
        dataset(store, name=f"d{n}")
    with store.read() as conn:
        page, total = list_rows(conn, t.datasets, SCOPE, order_by=t.datasets.c.name.desc(), limit=2, offset=1)
    assert ([r["name"] for r in page], total) == (["d3", "d2"], 5)


def test_update_row_and_delete_rows_answer_how_many_rows_they_changed(store: MetadataStore) -> None:
    dataset_id = dataset(store, name="before")
    with store.tx() as conn:
        assert update_row(conn, t.datasets, dataset_id, {"name": "after"}, kind="xdm") == 1
        assert update_row(conn, t.datasets, dataset_id, {"name": "never"}, kind="other") == 0
        assert update_row(conn, t.datasets, "missing", {"name": "never"}) == 0
    with store.tx() as conn:
        row = get_row(conn, t.datasets, SCOPE, for_update=True, id=dataset_id)
        assert row is not None and row["name"] == "after"
        assert delete_rows(conn, t.datasets, id=dataset_id) == 1
        assert delete_rows(conn, t.datasets, id=dataset_id) == 0


def test_column_types_round_trip(store: MetadataStore) -> None:
    spec = {"name": "Ünïcödé ✓", "nested": {"list": [1, 2.5, None, True, "x"]}, "empty": {}, "null": None}
    ns = created_ns()  # epoch nanoseconds: past 2**53, needs a 64-bit integer
    stamp = time.time()  # a float timestamp with microseconds
    with store.tx() as conn:
        insert_row(
            conn,
            t.merge_policies,
            {
                "id": "p1",
                **{"org_id": SCOPE.org_id, "sandbox": SCOPE.sandbox},
                "name": "n",
                "schema_name": "_xdm.context.profile",
                "identity_graph": "none",
                "attribute_merge": "timestampOrdered",
                "dataset_order": ["a", "b"],
                "is_default": True,
                "active_on_edge": False,
                "version": 1,
                "update_epoch": 1,
                "created_ns": ns,
            },
        )
        insert_row(
            conn,
            t.jobs,
            {
                "id": "j1",
                **{"org_id": SCOPE.org_id, "sandbox": SCOPE.sandbox},
                "kind": "k",
                "ref_id": "r",
                "payload": spec,
                "status": "QUEUED",
                "attempts": 0,
                "created_at": stamp,
                "heartbeat_at": stamp,
            },
        )
    with store.read() as conn:
        policy = get_row(conn, t.merge_policies, SCOPE, id="p1")
        job = get_row(conn, t.jobs, SCOPE, id="j1")
        by_flag = get_row(conn, t.merge_policies, SCOPE, is_default=True, active_on_edge=False)
    assert policy is not None and job is not None and by_flag is not None
    assert policy["created_ns"] == ns and policy["dataset_order"] == ["a", "b"]
    assert policy["is_default"] is True and policy["active_on_edge"] is False
    assert job["payload"] == spec
    assert job["created_at"] == stamp and job["heartbeat_at"] == stamp


def test_export_job_ids_count_up_and_are_never_reused(store: MetadataStore) -> None:
    def insert() -> int:
        with store.tx() as conn:
            key = conn.execute(
                t.export_jobs.insert().values(
                    org_id=SCOPE.org_id,
                    sandbox=SCOPE.sandbox,
                    status="NEW",
                    spec={},
                    batches=[],
                    metrics={},
                    errors=[],
                    work_id="w",
                    request_id="r",
                    created_at=1,
                    updated_at=1,
                )
            ).inserted_primary_key
        assert key is not None
        return int(key[0])

    first, second = insert(), insert()
    with store.tx() as conn:
        conn.execute(t.export_jobs.delete().where(t.export_jobs.c.id == second))
    assert (first, second, insert()) == (1, 2, 3)


def _run(store: MetadataStore, audience_id: str, status: str) -> None:
    with store.tx() as conn:
        insert_row(
            conn,
            t.runs,
            {
                "id": str(uuid.uuid4()),
                **{"org_id": SCOPE.org_id, "sandbox": SCOPE.sandbox},
                "audience_id": audience_id,
                "status": status,
                "differential": False,
                "replace_members": False,
                "filter_start": 0,
                "filter_end": 1,
                "options": {},
                "stages": [],
                "metrics": {},
                "created_by": "u",
                "created_at": 1,
                "created_ns": created_ns(),
                "updated_at": 1,
            },
        )


def test_one_active_run_per_audience_is_enforced_by_the_database(store: MetadataStore) -> None:
    _run(store, "a1", "SUCCESS")
    _run(store, "a1", "QUEUED")
    _run(store, "a2", "PROCESSING")  # another audience
    with pytest.raises(IntegrityError):
        _run(store, "a1", "PROCESSING")
    _run(store, "a1", "FAILED")


def test_racing_runs_for_one_audience_start_once(store: MetadataStore) -> None:
    results: list[str] = []
    start = threading.Barrier(4)

    def attempt() -> None:
        start.wait()
        try:
            _run(store, "a1", "QUEUED")
            results.append("started")
        except IntegrityError:
            results.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["refused", "refused", "refused", "started"]


def test_varchar_lengths_hold_on_both(store: MetadataStore, backend: str) -> None:
    # PostgreSQL enforces VARCHAR(n), SQLite does not: services check lengths before they write.
    if backend == "postgresql":
        with pytest.raises(DBAPIError, match="too long"):
            dataset(store, name="x" * 257)
    else:
        dataset(store, name="x" * 257)
