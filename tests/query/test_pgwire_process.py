"""A real ``audiencehub serve`` process serves the PostgreSQL protocol beside the API (what ``make run`` starts):
psql and psycopg log in with the connection parameters, conn.cancel() interrupts a query from outside the
server's process, and the server stops with clients still connected."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from tests.integration.conftest import Server, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "home", tmp_path / "logs", {"AUDIENCEHUB_PG_PORT": str(free_port())})
    s.start()
    yield s
    s.stop()


def test_a_served_home_answers_psql_psycopg_and_cancel(server: Server) -> None:
    headers = server.headers()
    params = server.http.get("/data/foundation/query/connection_parameters", headers=headers).json()
    assert (params["host"], params["port"]) == ("127.0.0.1", int(server.env["AUDIENCEHUB_PG_PORT"]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    command = ["psql", "-X", "-At", "-h", params["host"], "-p", str(params["port"]), "-U", params["username"]]
    done = subprocess.run(
        [*command, "-d", params["dbName"], "-c", "SELECT 40 + 2"],
        env={**env, "PGPASSWORD": params["token"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "42"), done.stderr
    dsn = f"host={params['host']} port={params['port']} user={params['username']} dbname={params['dbName']}"
    with psycopg.connect(dsn, password=params["token"], autocommit=True) as conn:
        threading.Timer(0.5, conn.cancel).start()  # the blocking cancel: the server is another process
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT count(*) FROM range(100000000000)")
        assert time.monotonic() - started < 20
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_server_stops_with_clients_connected(server: Server) -> None:
    headers = server.headers()
    params = server.http.get("/data/foundation/query/connection_parameters", headers=headers).json()
    dsn = f"host={params['host']} port={params['port']} user={params['username']} dbname={params['dbName']}"
    conn = psycopg.connect(dsn, password=params["token"])
    conn.execute("SELECT 1")  # in a transaction block, left open
    assert server.proc is not None
    server.proc.terminate()
    server.proc.wait(timeout=15)  # uvicorn re-raises SIGTERM once shut down: the code is -15 either way
    assert "Application shutdown complete" in server.log_tail(), server.log_tail()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 2")
    conn.close()
