"""The PostgreSQL clients seed 002 and the issue name, run as programs: psql (queries, \\dt, \\d) and pgbench."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.query.pgwire_support import TABLE, PgApp, pg  # noqa: F401 (the module's app)


def test_psql_runs_a_query_and_shows_nested_columns_as_json(pg: PgApp) -> None:  # noqa: F811
    t = f"_{pg.tenant}"
    done = pg.psql("-A", "-F", "|", "-c", f"SELECT {t}.email, {t}.visits, {t}.address FROM {TABLE} ORDER BY 2 LIMIT 2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "email|visits|address",
        'p0@x.com|0|{"city":"Paris"}',
        'p1@x.com|1|{"city":"Paris"}',
        "(2 rows)",
    ]


def test_psql_lists_tables(pg: PgApp) -> None:  # noqa: F811
    done = pg.psql("-c", r"\dt")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].strip() == "List of relations"
    assert [c.strip() for c in lines[1].split("|")] == ["Schema", "Name", "Type", "Owner"]
    row = next(line for line in lines if TABLE in line)
    assert [c.strip() for c in row.split("|")] == ["public", TABLE, "table", pg.user]


def test_psql_describes_a_table(pg: PgApp) -> None:  # noqa: F811
    done = pg.psql("-c", rf"\d {TABLE}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].strip() == f'Table "public.{TABLE}"'
    columns = {row.split("|")[0].strip(): row.split("|")[1].strip() for row in lines[3:] if "|" in row}
    assert columns[f"_{pg.tenant}"] == "json"  # the tenant's object: nested, so json
    assert columns["_id"] == "text"


def test_psql_says_when_a_table_does_not_exist(pg: PgApp) -> None:  # noqa: F811
    done = pg.psql("-c", r"\d no_such_table")
    assert 'Did not find any relation named "no_such_table".' in done.stderr


def test_psql_reports_errors_with_their_sqlstate(pg: PgApp) -> None:  # noqa: F811
    done = pg.psql("-v", "VERBOSITY=verbose", "-c", "SELECT * FROM no_such_table")
    assert done.returncode == 1
    assert "ERROR:  42P01:" in done.stderr and "no_such_table" in done.stderr


def test_psql_refuses_a_wrong_password(pg: PgApp) -> None:  # noqa: F811
    done = pg.psql("-c", "SELECT 1", password="not-a-token")
    assert done.returncode == 2
    assert "password authentication failed" in done.stderr


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_runs_a_script(pg: PgApp, tmp_path: Path, mode: str) -> None:  # noqa: F811
    script = tmp_path / "script.sql"
    t = f"_{pg.tenant}"
    script.write_text(f"\\set v random(0, 4)\nSELECT {t}.email FROM {TABLE} WHERE {t}.visits = :v;\n")
    command = ["pgbench", "-n", "-M", mode, "-f", str(script), "-t", "20", "-c", "2"]
    command += ["-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, "prod"]
    done = subprocess.run(command, env=pg.client_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "number of transactions actually processed: 40/40" in done.stdout
    assert "number of failed transactions: 0" in done.stdout
