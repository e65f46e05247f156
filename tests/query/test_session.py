"""The DuckDB session behind the Query Service's front ends: columns, streaming, timeouts, cancel, catalog answers."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest

from audiencehub.query.duckdb import DuckDBSession, Limits
from audiencehub.query.errors import QueryError
from audiencehub.query.session import Column
from tests.query.conftest import FixedTables

SLOW = "SELECT sum(x.range * y.range) FROM range(200000) x, range(200000) y"


def test_describe_answers_columns_without_running(session: DuckDBSession) -> None:
    cols = session.describe("SELECT order_id, items, amount::text AS a FROM orders WHERE order_id = $1")
    assert cols == [
        Column("order_id", pa.int64()),
        Column("items", pa.list_(pa.string())),
        Column("a", pa.string()),
    ]
    assert session.describe("CREATE TABLE x AS SELECT 1 AS a") is None
    assert session.describe("INSERT INTO orders SELECT * FROM orders") is None
    assert session.describe("BEGIN") is None
    assert [c.name for c in session.describe("SHOW TABLES") or []] == ["name", "type"]


def test_nested_columns_keep_their_arrow_types(session: DuckDBSession) -> None:
    cols = session.describe("SELECT segmentMembership, identityMap FROM segment_export_job_dataset_for_cja")
    assert cols is not None
    assert pa.types.is_map(cols[0].type) and pa.types.is_map(cols[0].type.item_type)
    assert pa.types.is_list(cols[1].type.item_type)


def test_results_stream_in_batches(tables: FixedTables) -> None:
    s = DuckDBSession(tables, None, Limits(timeout_s=30, memory_limit="256MB", threads=2, batch_rows=10_000))
    try:
        result = s.execute("SELECT range AS n FROM range(100000)")
        sizes = [b.num_rows for b in result.batches]
        assert len(sizes) > 1 and sum(sizes) == 100_000
        assert max(sizes) <= 10_000
        # A statement left half-read is closed by the next one.
        first = s.execute("SELECT range AS n FROM range(100000)")
        next(iter(first.batches))
        assert [b.num_rows for b in s.execute("SELECT 1 AS one").batches] == [1]
    finally:
        s.close()


def test_a_long_statement_times_out(tables: FixedTables) -> None:
    s = DuckDBSession(tables, None, Limits(timeout_s=0.3, memory_limit="256MB", threads=2))
    try:
        with pytest.raises(QueryError) as err:
            list(s.execute(SLOW).batches)
        assert err.value.sqlstate == "57014"
        assert "timeout" in err.value.message
        assert [b.num_rows for b in s.execute("SELECT 1 AS one").batches] == [1]  # the session still works
    finally:
        s.close()


def test_cancel_from_another_thread_stops_the_statement(session: DuckDBSession) -> None:
    errors: list[QueryError] = []

    def consume() -> None:
        try:
            list(session.execute(SLOW).batches)
        except QueryError as exc:
            errors.append(exc)

    worker = threading.Thread(target=consume)
    worker.start()
    while worker.is_alive():
        session.cancel()
        worker.join(0.05)
    assert len(errors) == 1 and errors[0].sqlstate == "57014"
    assert "user request" in errors[0].message
    assert [b.num_rows for b in session.execute("SELECT 1 AS one").batches] == [1]


def test_show_tables_describe_and_the_catalog_calls(session: DuckDBSession) -> None:
    assert session.tables() == ["orders", "segment_export_job_dataset_for_cja"]
    shown = session.execute("SHOW TABLES")
    assert shown.tag == "SHOW"
    assert next(b.to_pylist() for b in shown.batches) == [
        {"name": "orders", "type": "table"},
        {"name": "segment_export_job_dataset_for_cja", "type": "table"},
    ]
    described = [r for b in session.execute("DESCRIBE orders").batches for r in b.to_pylist()]
    assert [r["col_name"] for r in described] == ["order_id", "items", "amount"]
    assert described[0]["data_type"] == "int64"
    assert [c.name for c in session.columns("ORDERS")] == ["order_id", "items", "amount"]
    with pytest.raises(QueryError) as err:
        session.columns("nope")
    assert err.value.sqlstate == "42P01" and "orders" in err.value.message


def test_explain_answers_a_plan(session: DuckDBSession) -> None:
    result = session.execute("EXPLAIN SELECT order_id FROM orders WHERE amount > 1")
    assert result.tag == "EXPLAIN"
    assert [c.name for c in result.columns or []] == ["QUERY PLAN"]
    lines = [r["QUERY PLAN"] for b in result.batches for r in b.to_pylist()]
    assert len(lines) > 1


@pytest.mark.parametrize(
    ("sql", "state", "needle"),
    [
        ("SELECT nope FROM orders", "42703", "nope"),
        ("SELECT order_id FROM orders WHERE", "42601", "syntax error"),
        ("SELECT CAST('x' AS INT) + 1 FROM orders", None, None),  # Spark's cast: NULL, not an error
        ("SELECT 1 / 0", None, None),
    ],
)
def test_errors_carry_postgres_sqlstates(
    session: DuckDBSession, sql: str, state: str | None, needle: str | None
) -> None:
    if state is None:
        list(session.execute(sql).batches)
        return
    with pytest.raises(QueryError) as err:
        list(session.execute(sql).batches)
    assert err.value.sqlstate == state, err.value.message
    assert needle in err.value.message


def test_messages_never_show_a_server_path(tables: FixedTables, tmp_path: Path) -> None:
    lost = Path(tables.tables["orders"].files[0])  # type: ignore[union-attr]
    lost.unlink()
    s = DuckDBSession(tables, None, Limits(timeout_s=30, memory_limit="256MB", threads=2))
    try:
        with pytest.raises(QueryError) as err:
            list(s.execute("SELECT * FROM orders").batches)
        assert err.value.sqlstate == "58030" and "orders" in err.value.message
        assert str(tmp_path) not in err.value.message and "o-1.parquet" not in err.value.message
    finally:
        s.close()


def test_writes_need_a_writer(session: DuckDBSession) -> None:
    with pytest.raises(QueryError) as err:
        session.execute("CREATE TABLE copy AS SELECT * FROM orders")
    assert err.value.sqlstate == "25006"
    with pytest.raises(QueryError) as err:
        session.execute("CREATE TABLE orders AS SELECT 1 AS a")
    assert err.value.sqlstate == "42P07"
    assert session.execute("CREATE TABLE IF NOT EXISTS orders AS SELECT 1 AS a").rowcount == 0
    with pytest.raises(QueryError) as err:
        session.execute("INSERT INTO nope SELECT * FROM orders")
    assert err.value.sqlstate == "42P01"
