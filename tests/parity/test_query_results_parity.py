"""Query Service results downloaded as CSV and as a JSON array (services/query_runs.convert_results, a user of
Engine.copy) are the same on DuckDB and Spark: every type, nulls, quoting, nested values, timestamps."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audiencehub.engines.duckdb import DuckDBEngine
from audiencehub.engines.spark import SparkEngine
from audiencehub.services.query_runs import convert_results

UTC = dt.UTC
RESULTS = pa.table(
    {
        "s": ["a", "b,c", 'q"x', None, "", "two\nlines"],
        "i": pa.array([1, -2, None, 2**40, 0, 7], pa.int64()),
        "i32": pa.array([1, 2, 3, 4, 5, None], pa.int32()),
        "f": [1.5, 100.0, None, 1e20, -0.25, 0.1],
        "b": [True, False, None, True, False, None],
        "d": pa.array([dt.date(2025, 5, 23), None, dt.date(1, 1, 1), dt.date(2000, 2, 29), dt.date(2025, 1, 1), None]),
        "ts": pa.array(
            [
                dt.datetime(2025, 5, 23, 20, 19, tzinfo=UTC),
                dt.datetime(2025, 5, 23, 20, 19, 0, 123000, tzinfo=UTC),
                None,
                dt.datetime(1970, 1, 1, tzinfo=UTC),
                dt.datetime(2025, 1, 1, 0, 0, 0, 5, tzinfo=UTC),
                dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
            ],
            pa.timestamp("us", tz="UTC"),
        ),
        "l": [["x", "y"], [], None, ["z"], ["a,b"], [None]],
        "st": [{"a": 1, "b": "x"}, None, {"a": None, "b": "y"}, {"a": 2, "b": None}, {"a": 3, "b": "z"}, None],
        "m": pa.array([[("k", 1)], [], None, [("a", 2), ("b", 3)], [("z", 0)], None], pa.map_(pa.string(), pa.int64())),
    }
)


def _cell(text: str) -> Any:
    """A CSV cell as a value: numbers compare as numbers (DuckDB writes 1e+20 where Java writes 1.0E20)."""
    try:
        return float(text) if any(ch.isdigit() for ch in text) and text.strip() == text else text
    except ValueError:
        return text


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    folder = tmp_path_factory.mktemp("results")
    source = folder / "results.parquet"
    pq.write_table(RESULTS, source)
    engines = [
        DuckDBEngine(threads=2, memory_limit="256MB", temp_dir=folder / "tmp"),
        SparkEngine(master="local[2]", ui=False),
    ]
    out: dict[tuple[str, str], str] = {}
    for engine in engines:
        for fmt in ("csv", "json"):
            target = folder / f"{engine.name}.{fmt}"
            convert_results(engine, source, target, fmt)
            out[engine.name, fmt] = target.read_text(encoding="utf-8")
    return out


def test_csv_downloads_are_the_same(written: dict[tuple[str, str], str]) -> None:
    duck, spark = (list(csv.reader(io.StringIO(written[e, "csv"]))) for e in ("duckdb", "spark"))
    assert duck[0] == spark[0] == RESULTS.column_names
    assert len(duck) == len(spark) == RESULTS.num_rows + 1
    for d_row, s_row in zip(duck[1:], spark[1:], strict=True):
        assert [_cell(c) for c in s_row] == [_cell(c) for c in d_row], f"\nduckdb: {d_row}\nspark:  {s_row}"
    # The timestamp column as text, exactly: DuckDB's shape, the fraction only when there is one.
    assert [r[6] for r in spark[1:]] == [r[6] for r in duck[1:]]
    assert duck[2][6] == "2025-05-23 20:19:00.123+00"


def test_json_array_downloads_are_the_same(written: dict[tuple[str, str], str]) -> None:
    duck, spark = (json.loads(written[e, "json"]) for e in ("duckdb", "spark"))
    assert spark == duck
    assert duck[2]["st"] == {"a": None, "b": "y"} and duck[1]["m"] == {}


def test_an_empty_result_downloads_as_a_header_and_as_an_empty_array(tmp_path: Path) -> None:
    source = tmp_path / "empty.parquet"
    pq.write_table(RESULTS.slice(0, 0), source)
    got = {}
    for engine in (DuckDBEngine(threads=2, memory_limit="256MB", temp_dir=tmp_path / "tmp"), SparkEngine()):
        for fmt in ("csv", "json"):
            target = tmp_path / f"{engine.name}.{fmt}"
            convert_results(engine, source, target, fmt)
            got[engine.name, fmt] = target.read_text()
    assert got["spark", "csv"].splitlines() == got["duckdb", "csv"].splitlines()
    assert json.loads(got["spark", "json"]) == json.loads(got["duckdb", "json"]) == []
