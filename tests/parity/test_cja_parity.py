"""The CJA transform's engine pass (services/cja.shape_sql, written with Engine.copy as JSON lines) gives the same
bytes on DuckDB and Spark, per membership and per person."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audiencehub.engines.base import Engine
from audiencehub.engines.duckdb import DuckDBEngine
from audiencehub.engines.spark import SparkEngine
from audiencehub.services.cja import Audience, shape_sql

AUDIENCES = [Audience("s1", "ups", "Luma - Blue+ Members"), Audience("s2", "ups", 'Gold "VIP"')]


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed query's rows: a membership per row, ids as text, one audience that has no name here."""
    path = tmp_path_factory.mktemp("cja") / "rows.parquet"
    table = pa.table(
        {
            "_id": ["1", "2", "3", "10", "11"],
            "personID": ["a@x.com", "b@x.com", "a@x.com", "c@x.com", None],
            "audienceMembershipId": ["s1", "s2", "s2", "s9", "s1"],
        }
    )
    pq.write_table(table, path)
    return path


def _shaped(engine: Engine, rows: Path, per_person: bool, out: Path) -> tuple[int, str]:
    with engine.session() as session:
        count = session.copy(shape_sql(rows, AUDIENCES, "_demoemea", per_person), out, "json")
    return count, out.read_text(encoding="utf-8")


@pytest.mark.parametrize("per_person", [False, True], ids=["per-membership", "per-person"])
def test_cja_shapes_are_the_same_bytes(rows: Path, tmp_path: Path, per_person: bool) -> None:
    duck = _shaped(
        DuckDBEngine(threads=2, memory_limit="256MB", temp_dir=tmp_path / "tmp"), rows, per_person, tmp_path / "d"
    )
    spark = _shaped(SparkEngine(master="local[2]", ui=False), rows, per_person, tmp_path / "s")
    assert spark == duck
    assert duck[0] == (4 if per_person else 5)
