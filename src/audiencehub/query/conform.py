"""A dataset's committed files as one SELECT that every engine reads alike, in the types of the dataset's schema.

A dataset's batches may have been written under older versions of its schema (a struct that had fewer fields), or by
a job that writes a narrower struct than the schema's (an export's ``segmentMembership``). DuckDB casts a struct to
another by field name, filling missing fields with NULL; Spark casts by position and refuses a different field count
(or, with the same count in another order, silently puts values in the wrong fields). So a view for another engine
builds each nested column field by field: files with the same Parquet schema are read together, each group's columns
rebuilt into the schema's types (``struct_pack`` by name, ``list_transform`` over lists, map entries rebuilt), and
the groups joined with ``UNION ALL``. DuckDB reads the result as it reads its own cast; sqlglot writes it for Spark.

Also here: the plain view DuckDB's own session uses (:func:`view_sql`, casts by name) and the files a statement
run elsewhere reads or writes (:func:`snapshot_file`, :func:`write_parquet`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from audiencehub.engines.ingest_sql import ident, lit
from audiencehub.query.tables import DatasetTable, ProfileTable


class NoDuckType(ValueError):
    """An Arrow type this module does not write as a DuckDB type (then a plain CAST is used)."""


def duck_type_of(t: pa.DataType) -> str:
    """The DuckDB type name of an Arrow type of the kinds batches hold."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "VARCHAR"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t) and pa.types.is_signed_integer(t):
        return {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}[t.bit_width]
    if pa.types.is_float32(t):
        return "FLOAT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    if pa.types.is_date32(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP WITH TIME ZONE" if t.tz else "TIMESTAMP"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BLOB"
    if pa.types.is_struct(t):
        fields = ", ".join(f"{ident(t.field(i).name)} {duck_type_of(t.field(i).type)}" for i in range(t.num_fields))
        return f"STRUCT({fields})"
    if pa.types.is_map(t):
        return f"MAP({duck_type_of(t.key_type)}, {duck_type_of(t.item_type)})"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{duck_type_of(t.value_type)}[]"
    raise NoDuckType(str(t))


def conformed(expr: str, have: pa.DataType, want: pa.DataType, depth: int = 0) -> str:
    """SQL for the value ``expr`` (of Arrow type ``have``) in type ``want``, nested types rebuilt by field name."""
    if have.equals(want):
        return expr
    if pa.types.is_struct(want) and pa.types.is_struct(have):
        present = {have.field(i).name: have.field(i).type for i in range(have.num_fields)}
        fields = []
        for i in range(want.num_fields):
            f = want.field(i)
            value = (
                conformed(f"({expr}).{ident(f.name)}", present[f.name], f.type, depth + 1)
                if f.name in present
                else f"CAST(NULL AS {duck_type_of(f.type)})"
            )
            fields.append(f"{ident(f.name)} := {value}")
        return f"CASE WHEN ({expr}) IS NULL THEN NULL ELSE struct_pack({', '.join(fields)}) END"
    if _is_list(want) and _is_list(have):
        item = f"__ah_e{depth}"
        return f"list_transform({expr}, lambda {item}: {conformed(item, have.value_type, want.value_type, depth + 1)})"
    if pa.types.is_map(want) and pa.types.is_map(have):
        entry = f"__ah_m{depth}"
        key = conformed(f"{entry}.key", have.key_type, want.key_type, depth + 1)
        value = conformed(f"{entry}.value", have.item_type, want.item_type, depth + 1)
        return (
            f"map_from_entries(list_transform(map_entries({expr}), lambda {entry}: struct_pack(key := {key}, "
            f"value := {value})))"
        )
    return f"CAST({expr} AS {duck_type_of(want)})"


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t))


def dataset_select(table: DatasetTable) -> str:
    """The dataset's rows in its schema's types: one SELECT per group of files with the same Parquet schema."""
    assert table.duck_types is not None
    groups: dict[str, tuple[pa.Schema, list[str]]] = {}
    for path in table.files:
        schema = pq.read_schema(path).remove_metadata()
        groups.setdefault(schema.to_string(), (schema, []))[1].append(path)
    targets = list(zip(table.schema.names, table.schema.types, table.duck_types, strict=True))
    if not groups:
        nulls = ", ".join(f"CAST(NULL AS {duck}) AS {ident(n)}" for n, _, duck in targets)
        return f"SELECT {nulls} LIMIT 0"
    parts = []
    for schema, files in groups.values():
        cols = []
        for name, want, duck in targets:
            if name not in schema.names:
                cols.append(f"CAST(NULL AS {duck}) AS {ident(name)}")
                continue
            try:
                value = conformed(ident(name), schema.field(name).type, want)
            except NoDuckType:
                value = f"CAST({ident(name)} AS {duck})"
            cols.append(f"{value} AS {ident(name)}")
        parts.append(f"SELECT {', '.join(cols)} FROM read_parquet([{', '.join(lit(f) for f in files)}])")
    return " UNION ALL ".join(parts)


def view_sql(table: DatasetTable) -> str:
    """The native view of a dataset: its files by name, each schema column cast to its type (NULL where no file has
    it); a dataset whose schema is its files' own reads them as they are."""
    if table.duck_types is None:
        if not table.files:
            raise OSError(f"table {table.name} has no files and no schema")
        return f"SELECT * FROM read_parquet([{', '.join(lit(f) for f in table.files)}], union_by_name = true)"
    present = table.file_columns() if table.files else set()
    cols = ", ".join(
        f"CAST({ident(n) if n in present else 'NULL'} AS {t}) AS {ident(n)}"
        for n, t in zip(table.schema.names, table.duck_types, strict=True)
    )
    if not table.files:
        return f"SELECT {cols} LIMIT 0"
    return f"SELECT {cols} FROM read_parquet([{', '.join(lit(f) for f in table.files)}], union_by_name = true)"


def snapshot_file(table: ProfileTable, scratch: Path) -> Path:
    """The profile table's rows now, streamed into a Parquet file under ``scratch`` (for an engine to read)."""
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / f"{table.name}.parquet"
    reader = table.snapshot()
    try:
        write_parquet(path, reader.schema, reader)
    finally:
        reader.close()
    return path


def write_parquet(dest: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    """Writes record batches, as they come, to the Parquet file ``dest``; answers how many rows it wrote."""
    count = 0
    with pq.ParquetWriter(dest, schema) as out:
        for batch in batches:
            out.write_batch(batch)
            count += batch.num_rows
    return count
