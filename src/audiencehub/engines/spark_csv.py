"""DuckDB's ``read_csv`` on Spark: records in file order, numbered, malformed ones described as DuckDB does.

A file is read split (Spark's default partitioning, a task per split) when every line of it is one
well-quoted record; otherwise, or when the split read finds a malformed record, it is read as today's
single task (``multiLine``: a quoted value may span lines), so that rejects and line numbers stay exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column as SparkColumn
    from pyspark.sql import DataFrame, SparkSession

CORRUPT = "__ah_corrupt"
ROW = "__ah_row"
PROBLEM = "__ah_problem"
_CSV_FIELD = r'(?:"(?:[^"]|"")*"|[^",\r\n][^,\r\n]*|)'
CSV_RECORD = f"^{_CSV_FIELD}(?:,{_CSV_FIELD})*$"
"""A well-quoted CSV record: a field is quoted (quotes inside doubled) or does not start with a quote."""
ENCODING_MESSAGE = "Invalid unicode (byte sequence mismatch) detected. This file is not utf-8 encoded."
UNQUOTED_MESSAGE = "Value with unterminated quote found."
_LINE_RECORD = CSV_RECORD[:-1] + "\r?$"
_BLANK = r"^[\x00-\x20]*$"
"""A line Spark's line-by-line CSV reader skips (Java's ``trim`` empties it); the whole-file reader may not."""


def read_csv_file(
    spark: SparkSession, path: str, schema: Any, options: dict[str, Any], width: int, header: bool
) -> tuple[DataFrame, bool]:
    """One CSV file's records (``columns``, :data:`CORRUPT`, :data:`ROW`, :data:`PROBLEM`), in file order, and
    whether it is known to hold no malformed record (then its rejects need not be read)."""
    split = _split_read(spark, path, schema, options, width, header)
    if split is not None:
        return split, True
    f = _functions()
    frame = spark.read.schema(schema).options(**options, multiLine=True).csv(path)
    # One partition per file keeps the records in file order and numbered; quoted values may span lines.
    row = f.monotonically_increasing_id() - f.shiftleft(f.spark_partition_id().cast("long"), 33)
    frame = frame.withColumn(ROW, row)
    return frame.withColumn(PROBLEM, csv_problem(f, _fields(frame), width)), False


def _functions() -> Any:
    import pyspark.sql.functions

    return pyspark.sql.functions


def _fields(frame: DataFrame) -> list[SparkColumn]:
    f = _functions()
    return [f.col(c) for c in frame.columns if not c.startswith("__ah_")]


def _split_read(
    spark: SparkSession, path: str, schema: Any, options: dict[str, Any], width: int, header: bool
) -> DataFrame | None:
    """The file read in Spark's default splits (a task each), or None where that could differ from the one-task read
    or where the file holds a malformed record (its rejects and line numbers are the one-task read's).

    A parallel job reads the lines: every one must be a whole, well-quoted record (:data:`CSV_RECORD`), not blank,
    without a lone carriage return, and the splits must come in file order. A line without a quote, with ``width``
    fields, valid UTF-8 and no U+FFFD cannot be malformed; when every line is such, that job decides. Otherwise a
    second parallel job parses the file and counts the malformed records and each split's records (which must be
    its lines): none, and the file is read split. A record's number (:data:`ROW`) is the lines of the splits before
    it plus its place in its split.
    """
    f = _functions()
    if options.get("sep") != "," or options.get("quote") != '"' or options.get("escape") != '"':
        return None  # CSV_RECORD knows this dialect only
    # Lines end at \n only here, so that a lone \r (a line end to Hadoop, maybe not to the one-task read) shows.
    lines = spark.read.option("lineSep", "\n").text(path)
    if lines.rdd.getNumPartitions() < 2:
        return None  # one task either way (a small or a gzipped file): read as before
    value = f.col("value")
    quoted = value.contains('"')
    lone_cr = (f.locate("\r", value) > 0) & (f.locate("\r", value) < f.length(value))
    blank = (f.length(value) == 0) | ((f.ascii(value) <= 32) & value.rlike(_BLANK))
    bad = blank | lone_cr | (quoted & ~value.rlike(_LINE_RECORD))
    commas = f.length(value) - f.length(f.replace(value, f.lit(","), f.lit("")))
    plain = ~quoted & (commas == width - 1) & f.is_valid_utf8(value) & ~value.contains("\ufffd")
    stats = (
        lines.select(
            f.spark_partition_id().alias("p"),
            f.input_file_block_start().alias("start"),
            bad.cast("int").alias("bad"),
            (~plain).cast("int").alias("unsure"),
        )
        .groupBy("p")
        .agg(f.count(f.lit(1)).alias("n"), f.sum("bad"), f.sum("unsure"), f.min("start").alias("start"))
        .collect()
    )
    parts = sorted((int(r[0]), int(r[1]), int(r[2] or 0), int(r[3] or 0), int(r[4])) for r in stats)
    starts = [start for *_, start in parts]
    if any(bad for _, _, bad, _, _ in parts) or starts != sorted(starts):
        return None
    # The records of each split: its lines, less the header in the first.
    records = {p: n - (1 if header and start == 0 else 0) for p, n, _, _, start in parts}
    frame = spark.read.schema(schema).options(**options, multiLine=False).csv(path)
    part = f.spark_partition_id()
    offsets = [sum(records[q] for q in records if q < p) for p in sorted(records)]
    offset = f.element_at(f.array(*[f.lit(o).cast("long") for o in offsets]), part + 1)
    row = offset + f.monotonically_increasing_id() - f.shiftleft(part.cast("long"), 33)
    frame = frame.withColumn(ROW, row)
    frame = frame.withColumn(PROBLEM, csv_problem(f, _fields(frame), width))
    if any(unsure for _, _, _, unsure, _ in parts):
        found = frame.groupBy(part.alias("p")).agg(f.count(f.lit(1)), f.count(PROBLEM)).collect()
        counts = {int(r[0]): (int(r[1]), int(r[2])) for r in found}
        if any(bad for _, bad in counts.values()) or {p: n for p, (n, _) in counts.items()} != {
            p: n for p, n in records.items() if n
        }:
            return None
    return frame


def csv_problem(f: Any, fields: list[SparkColumn], width: int) -> SparkColumn:
    """Why a CSV record is malformed, NULL when it is not: a struct of ``error_type``, ``csv_line``, the
    first and last ``column_idx`` DuckDB reports (one row per missing or extra column) and, when single,
    ``column_name`` and ``error_message``."""
    corrupt = f.col(CORRUPT)
    # Fields counted outside quotes; a record that breaks the quoting grammar left a quote open.
    found = f.size(f.split(f.regexp_replace(corrupt, '"(?:[^"]|"")*"', ""), ",", -1))
    broken = ~corrupt.rlike(CSV_RECORD)
    before_broken = f.size(f.split(f.regexp_extract(corrupt, f"^((?:{_CSV_FIELD}),)*", 0), ",", -1)) - f.lit(1)
    opened = f.coalesce(*[f.when(c.startswith('"'), f.lit(i)) for i, c in enumerate(fields)])
    invalid = f.coalesce(*[f.when(f.instr(c, "\ufffd") > 0, f.lit(i)) for i, c in enumerate(fields)])
    quoted = [
        f.when(
            c.rlike("[,\r\n]") & ~c.startswith('"'),
            f.concat(f.lit('"'), f.replace(c, f.lit('"'), f.lit('""')), f.lit('"')),
        ).otherwise(f.coalesce(c, f.lit("")))
        for c in fields
    ]
    rebuilt = f.concat_ws(",", *quoted)
    null = f.lit(None).cast("string")

    def problem(kind: str, first: SparkColumn, last: SparkColumn, line: SparkColumn, message: SparkColumn) -> Any:
        return f.struct(
            f.lit(kind).alias("error_type"),
            first.alias("first_idx"),
            last.alias("last_idx"),
            line.alias("csv_line"),
            message.alias("error_message"),
        )

    return (
        f.when(
            corrupt.isNotNull() & broken,
            problem("UNQUOTED VALUE", before_broken + 1, before_broken + 1, corrupt, f.lit(UNQUOTED_MESSAGE)),
        )
        .when(
            corrupt.isNotNull() & (found > width), problem("TOO MANY COLUMNS", f.lit(width + 1), found, corrupt, null)
        )
        .when(corrupt.isNotNull(), problem("MISSING COLUMNS", found, f.lit(width - 1), corrupt, null))
        .when(opened.isNotNull(), problem("UNQUOTED VALUE", opened + 1, opened + 1, rebuilt, f.lit(UNQUOTED_MESSAGE)))
        .when(
            invalid.isNotNull(),
            problem(
                "INVALID ENCODING",
                invalid + 1,
                invalid + 1,
                f.replace(rebuilt, f.lit("\ufffd"), f.lit("?")),
                f.lit(ENCODING_MESSAGE),
            ),
        )
    )


def rejects(f: Any, frame: DataFrame, width: int, header: bool) -> DataFrame:
    """DuckDB's rejects table of the malformed records of ``frame``: one row per missing or extra column."""
    p = f.col(PROBLEM)
    k = f.explode(f.sequence(p.first_idx, p.last_idx)).alias("k")
    rows = frame.where(p.isNotNull()).select(f.col(ROW), p.alias("p"), k)
    kind = f.col("p.error_type")
    counted = kind.isin("MISSING COLUMNS", "TOO MANY COLUMNS")
    return rows.select(
        (f.col(ROW) + (2 if header else 1)).alias("line"),
        f.col("k").cast("long").alias("column_idx"),
        f.when(kind == "TOO MANY COLUMNS", f.lit(None).cast("string"))
        .when(counted, f.concat(f.lit("c"), f.col("k").cast("string")))
        .otherwise(f.concat(f.lit("c"), (f.col("k") - 1).cast("string")))
        .alias("column_name"),
        kind.alias("error_type"),
        f.col("p.csv_line").alias("csv_line"),
        f.when(counted, f.concat(f.lit(f"Expected Number of Columns: {width} Found: "), f.col("k").cast("string")))
        .otherwise(f.col("p.error_message"))
        .alias("error_message"),
    )
