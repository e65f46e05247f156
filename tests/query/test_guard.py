"""What a Query Service statement may not do: refused by name, and impossible even past the guard."""

from __future__ import annotations

import duckdb
import pytest

from audiencehub.query import guard
from audiencehub.query.duckdb import DuckDBSession, Limits, open_database
from audiencehub.query.errors import QueryError
from tests.query.conftest import FixedTables

REFUSED = [
    ("COPY orders TO '/tmp/out.csv'", "COPY"),
    ("ATTACH '/tmp/x.duckdb' AS x", "ATTACH"),
    ("DETACH x", "DETACH"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD httpfs", "LOAD"),
    ("SET enable_external_access = true", "SET"),
    ("RESET memory_limit", "RESET"),
    ("PRAGMA database_list", "PRAGMA"),
    ("CALL pragma_version()", "CALL"),
    ("EXPORT DATABASE '/tmp/dump'", "EXPORT DATABASE"),
    ("IMPORT DATABASE '/tmp/dump'", "IMPORT DATABASE"),
    ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
    ("CREATE MACRO m(x) AS x", "CREATE MACRO"),
    ("CREATE TABLE t (a INT)", "CREATE TABLE without AS SELECT"),
    ("DROP TABLE orders", "DROP TABLE"),
    ("DELETE FROM orders", "DELETE"),
    ("UPDATE orders SET amount = 0", "UPDATE"),
    ("ALTER TABLE orders ADD COLUMN x INT", "ALTER TABLE"),
    ("USE other", "USE"),
    ("SHOW search_path", "SHOW SEARCH_PATH"),
    ("CACHE TABLE orders", "CACHE"),
    ("SELECT * INTO copy FROM orders", "SELECT ... INTO"),
]


@pytest.mark.parametrize(("sql", "construct"), REFUSED, ids=[r[1] for r in REFUSED])
def test_statements_outside_the_allowed_set_are_refused_by_name(
    session: DuckDBSession, sql: str, construct: str
) -> None:
    with pytest.raises(QueryError) as err:
        session.execute(sql)
    assert err.value.sqlstate == "42501", err.value.message
    assert err.value.message.startswith(construct), err.value.message


FUNCTIONS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_parquet('/etc/x.parquet')",
    "SELECT * FROM read_json('/etc/x.json')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM parquet_metadata('/etc/x.parquet')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM query_table('orders')",
    "SELECT current_setting('temp_directory')",
    "SELECT getenv('HOME')",
    "SELECT json_execute_serialized_sql('{}')",
    "SELECT (SELECT count(*) FROM read_text('/etc/passwd')) FROM orders",
    "SELECT order_id FROM orders WHERE order_id IN (SELECT 1 FROM glob('/*'))",
    "WITH x AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM x",
]


@pytest.mark.parametrize("sql", FUNCTIONS)
def test_functions_that_reach_files_settings_or_the_engine_are_refused(session: DuckDBSession, sql: str) -> None:
    with pytest.raises(QueryError) as err:
        session.execute(sql)
    assert err.value.sqlstate == "42501", err.value.message
    assert "()" in err.value.message and "not allowed" in err.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM nope",
        "SELECT * FROM main.orders",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM pg_catalog.pg_class",
        "SELECT * FROM duckdb_tables",
    ],
)
def test_a_table_the_sandbox_does_not_have_is_unknown(session: DuckDBSession, sql: str) -> None:
    with pytest.raises(QueryError) as err:
        session.execute(sql)
    assert err.value.sqlstate == "42P01", err.value.message
    assert "orders" in err.value.message  # the tables it does have


def test_the_engine_refuses_files_even_without_the_guard(tmp_path: object) -> None:
    con = open_database(Limits(memory_limit="128MB", threads=1))
    try:
        for sql in (
            "SELECT * FROM read_csv('/etc/passwd')",
            "SELECT * FROM read_text('/etc/passwd')",
            "SELECT * FROM '/etc/passwd'",
            "COPY (SELECT 1) TO '/tmp/audiencehub-should-not-exist.csv'",
            "ATTACH '/tmp/audiencehub-should-not-exist.duckdb' AS x",
            "INSTALL httpfs",
            "SELECT * FROM glob('/etc/*')",
        ):
            with pytest.raises(duckdb.Error) as err:
                con.execute(sql).fetchall()
            assert isinstance(err.value, duckdb.PermissionException | duckdb.CatalogException), (sql, err.value)
        for sql in ("SET enable_external_access = true", "SET memory_limit = '100GB'", "RESET lock_configuration"):
            with pytest.raises(duckdb.Error, match="locked"):
                con.execute(sql)
    finally:
        con.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT current_setting('threads')",
        "SELECT * FROM duckdb_settings()",
        'SELECT * FROM "/etc/passwd"',
        "SELECT * FROM memory.main.orders",
        "SELECT * FROM (WITH duckdb_settings AS (SELECT 1) SELECT 1), duckdb_settings",
        "SELECT json_execute_serialized_sql('x')",
        "COPY (SELECT 1) TO 'x.csv'",
        "SELECT 1; SELECT 2",
    ],
)
def test_the_engine_side_check_reads_duckdbs_own_parse(sql: str) -> None:
    con = open_database(Limits(memory_limit="128MB", threads=1))
    try:
        with pytest.raises(QueryError) as err:
            guard.check_engine_sql(con, sql, {"orders"})
        assert err.value.sqlstate in ("42501", "42P01", "42601"), err.value.message
    finally:
        con.close()


def test_transaction_statements_are_no_ops(session: DuckDBSession) -> None:
    for sql, tag in (
        ("BEGIN", "BEGIN"),
        ("START TRANSACTION", "BEGIN"),
        ("COMMIT", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"),
    ):
        result = session.execute(sql)
        assert (result.tag, result.columns) == (tag, None)


def test_a_native_database_reads_exactly_the_allowed_files(tables: FixedTables) -> None:
    orders = tables.tables["orders"]
    allowed = orders.files[0]  # type: ignore[union-attr]
    sibling = tables.tables["segment_export_job_dataset_for_cja"].files[0]  # type: ignore[union-attr]
    con = open_database(Limits(memory_limit="128MB", threads=1), [allowed])
    try:
        assert con.execute(f"SELECT count(*) FROM read_parquet('{allowed}')").fetchall() == [(3,)]
        for sql in (
            f"SELECT * FROM read_parquet('{sibling}')",
            "SELECT * FROM read_csv('/etc/passwd')",
            f"SELECT * FROM read_parquet('{allowed}/../p-1.parquet')",
        ):
            with pytest.raises(duckdb.PermissionException):
                con.execute(sql).fetchall()
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET allowed_paths = ['/etc/passwd']")
    finally:
        con.close()
