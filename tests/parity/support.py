"""Reading back what a job wrote, in a shape two engines' results can be compared in."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TENANT_FIELDS = {
    "visits": {"type": "integer", "meta:xdmType": "int"},
    "score": {"type": "number"},
    "vip": {"type": "boolean"},
    "joined": {"type": "string", "format": "date"},
    "seen": {"type": "string", "format": "date-time"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "tier": {"type": "string", "enum": ["gold", "blue"]},
}
"""The typed tenant fields of the parity tests' people schemas: every XDM kind a job converts."""

SPARK_MARK = b"org.apache.spark.version"
"""The key Spark's Parquet writer puts in a file's metadata; DuckDB's files have none."""


def written_by(part: Path) -> str:
    """``spark`` or ``duckdb``: which engine wrote the Parquet file (proof that the job ran where meant)."""
    meta = pq.read_metadata(part).metadata or {}
    return "spark" if SPARK_MARK in meta else "duckdb"


def _key(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted((k, _key(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_key(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return (type(value).__name__, value) if value is not None else ("", "")


def table(parts: list[Path]) -> tuple[list[tuple[str, str]], list[Any]]:
    """The files' columns with their Arrow types, and their rows sorted (the engines may order differently)."""
    tables = [pq.read_table(p) for p in parts]
    schema = [(f.name, str(f.type)) for f in tables[0].schema] if tables else []
    rows = [r for t in tables for r in t.to_pylist()]
    return schema, sorted(rows, key=lambda r: repr(_key(r)))


def arrow_types(parts: list[Path]) -> list[pa.Schema]:
    return [pq.read_schema(p).remove_metadata() for p in parts]
