"""psycopg 3 against the Query Service's PostgreSQL protocol: simple and extended query, bound parameters, typed
and nested results, server-side cursors, errors with their SQLSTATE, transactions, settings, cancel."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

from tests.query.pgwire_support import TABLE, PgApp, pg  # noqa: F401 (the module's app)


def test_a_client_logs_in_with_the_connection_credentials(pg: PgApp) -> None:  # noqa: F811
    with pg.connect(application_name="seed-002") as conn:
        info = conn.info
        assert info.server_version == 150000
        assert info.parameter_status("server_version") == "15.0 (audiencehub 0.1.0)"
        assert info.parameter_status("client_encoding") == "UTF8"
        assert info.parameter_status("DateStyle") == "ISO, MDY"
        assert info.parameter_status("TimeZone") == "UTC"
        assert info.parameter_status("integer_datetimes") == "on"
        assert info.parameter_status("standard_conforming_strings") == "on"
        assert info.parameter_status("application_name") == "seed-002"
        assert info.backend_pid > 0


def test_rows_come_typed_and_nested_columns_as_json(pg: PgApp) -> None:  # noqa: F811
    t = f"_{pg.tenant}"
    sql = (
        f"SELECT {t}.email, {t}.visits, {t}.score, {t}.vip, {t}.address, {t}.tags, {t} AS profile "
        f"FROM {TABLE} ORDER BY {t}.visits"
    )
    with pg.connect() as conn:
        rows = conn.execute(sql).fetchall()
    assert len(rows) == 5
    assert rows[3][:4] == ("p3@x.com", 3, 4.5, False)
    assert rows[3][4] == {"city": "Paris"}  # a struct: a json object
    assert rows[3][5] == ["a", "b"]  # a list: a json array
    assert rows[3][6]["address"] == {"city": "Paris"} and rows[3][6]["email"] == "p3@x.com"


def test_bound_parameters_of_several_types(pg: PgApp) -> None:  # noqa: F811
    t = f"_{pg.tenant}"
    with pg.connect() as conn:
        got = conn.execute(
            f"SELECT {t}.email FROM {TABLE} WHERE {t}.visits >= %s AND {t}.score <= %s AND {t}.email <> %s "
            f"AND {t}.vip = %s ORDER BY 1",
            (1, 6.0, "p2@x.com", True),
        ).fetchall()
        assert got == [("p4@x.com",)]
        values = (42, 2.5, "text", True, dt.date(2024, 1, 2), Decimal("1.25"), None)
        row = conn.execute("SELECT %s, %s, %s, %s, %s, %s, %s", values).fetchone()
    assert row == values


def test_binary_results(pg: PgApp) -> None:  # noqa: F811
    t = f"_{pg.tenant}"
    sql = (
        f"SELECT {t}.visits, CAST({t}.visits AS INT) AS i4, {t}.score, {t}.vip, {t}.email, "
        f"CAST('2024-01-02' AS DATE) AS d, CAST('2024-01-02 03:04:05.5' AS TIMESTAMP_NTZ) AS ts, "
        f"CAST('2024-01-02 03:04:05.5' AS TIMESTAMP) AS tstz, CAST({t}.score AS DECIMAL(10, 2)) AS n "
        f"FROM {TABLE} WHERE {t}.visits = 3"
    )
    with pg.connect() as conn, conn.cursor(binary=True) as cur:
        row = cur.execute(sql).fetchone()
    ts = dt.datetime(2024, 1, 2, 3, 4, 5, 500000)
    assert row == (3, 3, 4.5, False, "p3@x.com", dt.date(2024, 1, 2), ts, ts.replace(tzinfo=dt.UTC), Decimal("4.50"))


def test_a_server_side_cursor_streams_a_large_result(pg: PgApp) -> None:  # noqa: F811
    n = 300_000
    with pg.connect() as conn, conn.cursor(name="big") as cur:
        cur.itersize = 10_000
        cur.execute("SELECT id, CAST(id AS STRING) AS s FROM range(%s) AS r(id)", (n,))
        first = cur.fetchmany(3)
        count, total = 3, sum(r[0] for r in first)
        for row in cur:
            count += 1
            total += row[0]
    assert first == [(0, "0"), (1, "1"), (2, "2")]
    assert (count, total) == (n, n * (n - 1) // 2)


def test_errors_carry_their_sqlstate_and_the_connection_recovers(pg: PgApp) -> None:  # noqa: F811
    with pg.connect(autocommit=True) as conn:
        with pytest.raises(errors.UndefinedTable) as missing:
            conn.execute("SELECT * FROM no_such_table")
        assert "no_such_table" in str(missing.value)
        with pytest.raises(errors.SyntaxError):
            conn.execute("SELEC 1")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM read_csv('/etc/passwd')")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_failed_transaction_refuses_statements_until_rollback(pg: PgApp) -> None:  # noqa: F811
    with pg.connect() as conn:  # psycopg opens a transaction block (BEGIN) itself
        conn.execute("SELECT 1")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pytest.raises(errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_session_settings_are_answered_by_the_front_end(pg: PgApp) -> None:  # noqa: F811
    with pg.connect(autocommit=True) as conn:
        conn.execute("SET application_name = 'reporting'")
        assert conn.info.parameter_status("application_name") == "reporting"
        conn.execute("SET extra_float_digits = 3")
        conn.execute("SET search_path TO public")
        conn.execute("SET DateStyle = 'ISO, DMY'")
        assert conn.info.parameter_status("DateStyle") == "ISO, DMY"
        assert conn.execute("SHOW search_path").fetchone() == ("public",)
        assert conn.execute("SHOW TIME ZONE").fetchone() == ("UTC",)
        with pytest.raises(errors.FeatureNotSupported):
            conn.execute("SET TIME ZONE 'Europe/Paris'")
        with pytest.raises(errors.UndefinedObject):
            conn.execute("SHOW nothing_like_this")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SET threads = 64")  # an engine setting: the executor refuses it
        assert conn.execute("SELECT version(), current_database(), current_schema()").fetchone() == (
            "PostgreSQL 15.0 (audiencehub 0.1.0) on x86_64-pc-linux-gnu, 64-bit",
            "prod",
            "public",
        )


def test_cancel_interrupts_a_running_query(pg: PgApp) -> None:  # noqa: F811
    # cancel_safe(): conn.cancel() holds the GIL while it waits for the server, which here runs in this process
    # (test_cancel_from_another_process covers conn.cancel() itself).
    with pg.connect(autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT count(*) FROM range(100000000000)")
        assert time.monotonic() - started < 20
        assert conn.execute("SELECT 3").fetchone() == (3,)


CANCELLING_CLIENT = """
import sys, threading, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    threading.Timer(0.5, conn.cancel).start()
    try:
        conn.execute("SELECT count(*) FROM range(100000000000)")
    except psycopg.Error as exc:
        print(exc.sqlstate, conn.execute("SELECT 4").fetchone()[0])
"""


def test_cancel_from_another_process(pg: PgApp) -> None:  # noqa: F811
    done = subprocess.run(
        [sys.executable, "-c", CANCELLING_CLIENT, pg.dsn()], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["57014", "4"], done.stderr


def test_a_slow_query_does_not_hold_up_other_connections(pg: PgApp) -> None:  # noqa: F811
    with pg.connect(autocommit=True) as slow, pg.connect(autocommit=True) as quick:
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                slow.execute("SELECT count(*) FROM range(100000000000)")
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.3)
        started = time.monotonic()
        assert quick.execute("SELECT 7").fetchone() == (7,)
        assert time.monotonic() - started < 5
        assert worker.is_alive()  # the slow one still runs
        slow.cancel_safe()
        worker.join(timeout=20)
    assert outcome and isinstance(outcome[0], errors.QueryCanceled)


def test_wrong_password_and_unknown_sandbox_are_refused(pg: PgApp) -> None:  # noqa: F811
    with pytest.raises(psycopg.OperationalError) as bad:
        psycopg.connect(pg.dsn(password="not-a-token"))
    assert "password authentication failed" in str(bad.value)
    with pytest.raises(psycopg.OperationalError) as unknown:
        psycopg.connect(pg.dsn(database="nosuchsandbox"))
    assert "nosuchsandbox" in str(unknown.value)


def test_the_connection_parameters_of_the_http_api_log_in(pg: PgApp) -> None:  # noqa: F811
    url = "http://127.0.0.1/data/foundation/query/connection_parameters"  # the host a client reached the API by
    params = pg.client.get(url, headers=pg.headers).json()
    assert params["port"] == pg.port
    dsn = f"host={params['host']} port={params['port']} user={params['username']} dbname={params['dbName']}"
    with psycopg.connect(dsn, password=params["token"]) as conn:
        assert conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (5,)


def test_a_cursor_left_open_ends_when_another_statement_runs(pg: PgApp) -> None:  # noqa: F811
    with pg.connect() as conn:
        cur = conn.cursor(name="first")
        cur.execute("SELECT id FROM range(100000) AS r(id)")
        assert cur.fetchmany(3) == [(0,), (1,), (2,)]
        assert conn.execute("SELECT 5").fetchone() == (5,)  # the session reads one result at a time
        with pytest.raises(errors.ObjectNotInPrerequisiteState) as stale:
            cur.fetchmany(3)
        assert '"first" can no longer be read' in str(stale.value)
        conn.rollback()
        with conn.cursor(name="second", withhold=True) as held:  # WITH HOLD: it outlives the block
            held.execute("SELECT id FROM range(10) AS r(id)")
            conn.commit()
            assert [r[0] for r in held.fetchall()] == list(range(10))
