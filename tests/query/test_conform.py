"""query/conform.py: a narrower or reordered nested column rebuilt into the schema's type by field name (DuckDB's
answer here; tests/parity/test_query_parity.py checks Spark's against it)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from audiencehub.query.conform import conformed, dataset_select, duck_type_of
from audiencehub.query.tables import DatasetTable

MEMBERSHIP = pa.struct([("status", pa.string())])
HAVE = pa.struct(
    [("b", pa.int32()), ("a", pa.string()), ("m", pa.map_(pa.string(), MEMBERSHIP)), ("l", pa.list_(MEMBERSHIP))]
)
WIDE = pa.struct([("status", pa.string()), ("payload", pa.struct([("tier", pa.string())]))])
WANT = pa.struct(
    [
        ("a", pa.string()),
        ("b", pa.int64()),
        ("c", pa.date32()),
        ("m", pa.map_(pa.string(), WIDE)),
        ("l", pa.list_(WIDE)),
    ]
)
VALUE = {"b": 1, "a": "x", "m": [("s1", {"status": "realized"})], "l": [{"status": "exited"}, None]}


def test_fields_are_matched_by_name_and_missing_ones_are_null(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"s": pa.array([VALUE, None], HAVE)}), path)
    rel = duckdb.connect().sql(f"SELECT {conformed('s', HAVE, WANT)} AS s FROM read_parquet(['{path}'])")
    assert str(rel.types[0]) == duck_type_of(WANT).replace('"', "")
    got = [r[0] for r in rel.fetchall()]
    assert got == [
        {
            "a": "x",
            "b": 1,
            "c": None,
            "m": {"s1": {"status": "realized", "payload": None}},
            "l": [{"status": "exited", "payload": None}, None],
        },
        None,  # a NULL struct stays NULL, not a struct of NULLs
    ]


def test_files_of_two_schemas_read_as_one_table(tmp_path: Path) -> None:
    old, new = tmp_path / "old.parquet", tmp_path / "new.parquet"
    pq.write_table(pa.table({"id": ["1"], "s": pa.array([VALUE], HAVE)}), old)
    pq.write_table(pa.table({"s": pa.array([{"a": "y", "b": 2}], WANT), "id": ["2"]}), new)
    schema = pa.schema([("id", pa.string()), ("s", WANT), ("extra", pa.int64())])
    table = DatasetTable("t", "ds", (str(old), str(new)), schema, duck_types=("VARCHAR", duck_type_of(WANT), "BIGINT"))
    rows = duckdb.connect().sql(f"SELECT id, s.a, s.b, extra FROM ({dataset_select(table)}) ORDER BY id").fetchall()
    assert rows == [("1", "x", 1, None), ("2", "y", 2, None)]
