"""The Spark engine reads a large CSV file in several tasks and writes one file from several tasks, with DuckDB's
records, order, rejects and line numbers (engines/spark_csv.py, ``SparkJobSession.copy``)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from audiencehub.domain.audiences import FieldType
from audiencehub.domain.namespaces import Rule
from audiencehub.engines import ingest_sql as q
from audiencehub.engines.base import EngineSession
from audiencehub.engines.duckdb import DuckDBEngine
from audiencehub.engines.spark import SparkEngine, SparkJobSession

HEADER = ["email", "note", "score"]
COLUMNS = [
    q.Column("email", FieldType.STRING, Rule.EMAIL, 0),
    q.Column("note", FieldType.STRING, None, 1),
    q.Column("score", FieldType.NUMBER, None, 2),
]
ROWS = 200_000
"""About 7 MB: above 2 x 4 MB (``spark.sql.files.openCostInBytes``), so Spark splits it on 2 cores."""


def _lines(rows: int = ROWS) -> list[str]:
    return [f"user{i}@example.com,note {i},{(i % 97) * 1.5}\n" for i in range(rows)]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text(",".join(HEADER) + "\n" + "".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def spark() -> SparkEngine:
    return SparkEngine(master="local[2]", ui=False)


@pytest.fixture
def duckdb(tmp_path: Path) -> DuckDBEngine:
    return DuckDBEngine(threads=2, memory_limit="1GB", temp_dir=tmp_path / "duckdb-tmp")


def _tasks(session: SparkJobSession) -> list[list[int]]:
    """Per job the session ran, in order: the task count of each of its stages."""
    tracker = session._spark.sparkContext.statusTracker()
    jobs = []
    for job in sorted(tracker.getJobIdsForGroup(session._group)):
        info = tracker.getJobInfo(job)
        stages = [tracker.getStageInfo(s) for s in (info.stageIds if info else [])]
        jobs.append([s.numTasks for s in stages if s is not None])
    return jobs


def _ingest(session: EngineSession, csv_path: Path, out: Path) -> dict[str, Any]:
    """What the DATASET_INGEST stage computes from one file: validated rows (in order), rejects, errors CSV, and on
    Spark the task counts of the jobs that wrote the validated file."""
    validated = out / "validated.parquet"
    session.copy(q.validated_select(csv_path, len(HEADER), COLUMNS, 0), validated)
    tasks = _tasks(session) if isinstance(session, SparkJobSession) else []
    rejects = session.query(
        f"SELECT line, error_type, csv_line FROM {q.rejects_table(0)} ORDER BY line, coalesce(column_idx, 0)"
    )
    errors = out / "errors.csv"
    session.copy(q.errors_select([("f.csv", validated)], q.checks_for(COLUMNS), [HEADER]), errors, "csv")
    return {
        "rows": pq.read_table(validated).to_pylist(),
        "rejects": [tuple(r) for r in rejects],
        "errors": list(csv.DictReader(io.StringIO(errors.read_text(encoding="utf-8")))),
        "tasks": tasks,
    }


def _both(
    spark: SparkEngine, duckdb: DuckDBEngine, csv_path: Path, tmp_path: Path
) -> tuple[dict[str, Any], list[list[int]]]:
    outs = []
    for name in ("duckdb", "spark"):
        (tmp_path / name).mkdir()
    with duckdb.session() as session:
        outs.append(_ingest(session, csv_path, tmp_path / "duckdb"))
    with spark.session() as session:
        assert isinstance(session, SparkJobSession)
        outs.append(_ingest(session, csv_path, tmp_path / "spark"))
    duck, spk = outs
    assert len(spk["rows"]) == len(duck["rows"])
    assert spk["rows"] == duck["rows"]  # the same records, in file order (file_row_number is the record number)
    assert spk["rejects"] == duck["rejects"]
    assert spk["errors"] == duck["errors"]
    return duck, spk["tasks"]


def test_a_large_clean_file_is_read_and_written_by_several_tasks(
    spark: SparkEngine, duckdb: DuckDBEngine, tmp_path: Path
) -> None:
    path = _write(tmp_path / "clean.csv", _lines())
    got, tasks = _both(spark, duckdb, path, tmp_path)
    assert len(got["rows"]) == ROWS and got["rejects"] == [] and got["errors"] == []
    # The job that parsed, validated and wrote the file ran in several tasks (before: [[1]], coalesce(1)).
    assert min(tasks[-1]) >= 2, tasks


def test_a_quoted_value_across_lines_keeps_duckdbs_rows_and_line_numbers(
    spark: SparkEngine, duckdb: DuckDBEngine, tmp_path: Path
) -> None:
    lines = _lines()
    # Past the middle (in the second split): a quoted value over two lines, then a malformed and a rejected record.
    lines[150_000] = 'user150000@example.com,"two\nlines",1\n'
    lines[150_010] = "user150010@example.com,too,many,columns\n"
    lines[150_020] = "not-an-email,bad email,1\n"
    path = _write(tmp_path / "multiline.csv", lines)
    got, tasks = _both(spark, duckdb, path, tmp_path)
    assert tasks[-1] == [1], tasks  # read whole, in one task, as the quoted line break needs
    assert got["rows"][150_000][q.field_column("note")] == "two\nlines"
    # DuckDB's numbers (a quoted line break of an accepted record is not counted: ingest_sql.errors_select).
    assert [e["line"] for e in got["errors"]] == ["150012", "150022"]


def test_a_gzipped_file_is_read_whole(spark: SparkEngine, duckdb: DuckDBEngine, tmp_path: Path) -> None:
    lines = _lines()
    lines[-1] = "user-last@example.com,only,one,too many\n"
    path = tmp_path / "list.csv.gz"
    path.write_bytes(gzip.compress((",".join(HEADER) + "\n" + "".join(lines)).encode()))
    got, _ = _both(spark, duckdb, path, tmp_path)
    assert [e["line"] for e in got["errors"]] == [str(ROWS + 1)]


@pytest.fixture
def spark_session(spark: SparkEngine) -> Iterator[SparkJobSession]:
    with spark.session() as session:
        assert isinstance(session, SparkJobSession)
        yield session


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json", "json_array"])
def test_copy_joins_the_parts_of_a_parallel_stage_in_order(
    spark_session: SparkJobSession, tmp_path: Path, fmt: Any
) -> None:
    n = 50_000
    select = (
        "SELECT CAST(i AS BIGINT) AS i, 'v, \"' || CAST(i AS VARCHAR) AS s FROM range(0, 50000) t(i)"
        if fmt != "json"
        else "SELECT CAST(i AS VARCHAR) AS s FROM range(0, 50000) t(i)"
    )
    dest = tmp_path / f"out.{fmt}"
    assert spark_session.copy(select, dest, fmt) == n
    assert min(_tasks(spark_session)[0]) >= 2  # several part files to join
    if fmt == "parquet":
        rows = pq.read_table(dest).to_pylist()
        assert [r["i"] for r in rows] == list(range(n)) and rows[7]["s"] == 'v, "7'
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(dest.read_text(encoding="utf-8"))))
        assert rows[0] == ["i", "s"] and rows[1:] == [[str(i), f'v, "{i}'] for i in range(n)]
    elif fmt == "json":
        assert dest.read_text(encoding="utf-8").splitlines() == [str(i) for i in range(n)]
    else:
        rows = json.loads(dest.read_text(encoding="utf-8"))
        assert rows == [{"i": i, "s": f'v, "{i}'} for i in range(n)]
    assert [p.name for p in tmp_path.iterdir()] == [dest.name]  # no part folder left behind


def test_an_empty_result_still_makes_a_file(spark_session: SparkJobSession, tmp_path: Path) -> None:
    dest = tmp_path / "empty.csv"
    assert spark_session.copy("SELECT CAST(i AS BIGINT) AS i FROM range(0, 10) t(i) WHERE i < 0", dest, "csv") == 0
    assert dest.read_text(encoding="utf-8") == "i\n"
