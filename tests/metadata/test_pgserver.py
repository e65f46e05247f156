"""The PostgreSQL fixture itself: a fresh database per test, reachable through a plain postgresql:// URL."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests import pgserver
from tests.pgserver import PostgresServer


def test_each_test_gets_a_fresh_empty_database(postgres_url: str, postgres_server: PostgresServer) -> None:
    assert postgres_url.startswith("postgresql://")
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE marker (id int)")
    other = postgres_server.create_database()
    try:
        with psycopg.connect(postgres_server.url(other)) as conn:
            assert conn.execute("SELECT to_regclass('marker')").fetchone() == (None,)
    finally:
        postgres_server.drop_database(other)


def test_missing_binaries_fail_naming_make_pgclients(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PG_BIN", str(tmp_path))
    monkeypatch.setattr(pgserver.glob, "glob", lambda _pattern: [])
    with pytest.raises(RuntimeError, match="make pgclients"):
        pgserver.server_bin_dir()
