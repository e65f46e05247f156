"""Each named rewrite of engines/spark_sql.py, on its own: the Spark SQL it writes and, where it matters,
the value Spark computes next to DuckDB's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from audiencehub.engines import spark_sql as s
from audiencehub.engines.spark import spark_session


def _spark(sql: str) -> str:
    return s.to_spark(sql, lambda scan: pytest.fail(f"unexpected scan {scan}"))


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    yield spark_session("local[2]", {}, ui=False).newSession()


def _same(spark: Any, select: str) -> list[tuple[Any, ...]]:
    """The rows DuckDB gives ``select``, asserted equal to Spark's for its translation."""
    expected = duckdb.connect().execute(select).fetchall()
    got = [tuple(r) for r in spark.sql(_spark(select)).collect()]
    assert got == expected, f"{select}\nspark: {got}\nduckdb: {expected}"
    return expected


def test_table_functions_become_views_with_their_options() -> None:
    scans: list[s.Scan] = []

    def register(scan: s.Scan) -> str:
        scans.append(scan)
        return f"v{len(scans)}"

    sql = s.to_spark(
        "SELECT t.a, u.c0 FROM read_parquet(['/x/1.parquet', '/x/2.parquet'], file_row_number = true) t "
        "JOIN read_csv('/y/it''s.csv', auto_detect = false, header = true, columns = {'c0': 'VARCHAR'}, "
        "delim = ',', store_rejects = true, rejects_table = '_rejects_0') u ON true "
        "CROSS JOIN read_json_objects('/z.json', format = 'newline_delimited', compression = 'gzip')",
        register,
    )
    assert "FROM v1 AS t JOIN v2 AS u" in sql and "CROSS JOIN v3" in sql, sql
    assert scans[0] == s.Scan("parquet", ("/x/1.parquet", "/x/2.parquet"), {"file_row_number": True})
    assert scans[1].paths == ("/y/it's.csv",)
    assert scans[1].options["columns"] == {"c0": "VARCHAR"} and scans[1].options["rejects_table"] == "_rejects_0"
    assert scans[2] == s.Scan("json_objects", ("/z.json",), {"format": "newline_delimited", "compression": "gzip"})


def test_regexp_full_match_is_an_anchored_rlike(spark: Any) -> None:
    assert "x RLIKE '^(?:a|b)$'" in _spark("SELECT regexp_full_match(x, 'a|b') FROM t")
    _same(spark, "SELECT regexp_full_match(x, 'a|b') FROM (VALUES ('a'), ('ab'), ('b'), (NULL)) v(x) ORDER BY x")


def test_regexp_matches_is_an_unanchored_rlike(spark: Any) -> None:
    _same(spark, "SELECT regexp_matches(x, 'b') FROM (VALUES ('a'), ('ab'), (NULL)) v(x) ORDER BY x")


def test_first_regexp_replace_keeps_anchored_and_global_patterns_and_refuses_the_rest(spark: Any) -> None:
    _same(spark, "SELECT regexp_replace(' a a ', '^ +', ''), regexp_replace('a-b-c', '-', '', 'g')")
    with pytest.raises(s.UnsupportedSql, match="first match"):
        _spark("SELECT regexp_replace(x, '-', '') FROM t")


def test_isfinite_is_checked_without_the_function(spark: Any) -> None:
    _same(
        spark,
        "SELECT isfinite(x) FROM (VALUES (1.5::DOUBLE), ('NaN'::DOUBLE), ('inf'::DOUBLE), ('-inf'::DOUBLE), (NULL)) "
        "v(x)",
    )


@pytest.mark.parametrize(
    "target, texts",
    [
        ("DOUBLE", ["1.5", " 2 ", "1e3", ".5", "5.", "-0", "1d", "0x10", "1f", "NaN", "inf", "", "1,5"]),
        ("DATE", ["2025-05-23", "2025-5-3", "2025", "2025-05", "2025-02-30", " 2025-05-23 ", "23/05/2025"]),
        (
            "TIMESTAMPTZ",
            [
                "2025-05-23T20:19:00Z",
                "2025-05-23 20:19:00+02:00",
                "2025-05-23T20:19:00.123456+0530",
                "2025-05-23",
                "2025",
                "2025-05",
                "T20:19",
                "2025-13-01T00:00:00Z",
            ],
        ),
    ],
)
def test_try_cast_of_text_reads_what_duckdb_reads(spark: Any, target: str, texts: list[str]) -> None:
    values = ", ".join(f"({i}, '{t}')" for i, t in enumerate(texts))
    sql = f"SELECT i, TRY_CAST(x AS {target}) IS NULL FROM (VALUES {values}) v(i, x) ORDER BY i"
    _same(spark, sql)


def test_timestamptz_is_spark_timestamp() -> None:
    assert _spark("SELECT CAST(x AS TIMESTAMPTZ) FROM t") == "SELECT CAST(x AS TIMESTAMP) FROM t"


def test_to_json_of_a_whole_row_is_to_json_of_its_struct() -> None:
    assert "TO_JSON(STRUCT(t.*))" in _spark("SELECT to_json(t) FROM tbl t")
    assert "TO_JSON(STRUCT(t.*))" not in _spark("SELECT to_json(t.a) FROM tbl t")


def test_unparseable_sql_is_refused_with_a_reason() -> None:
    with pytest.raises(s.UnsupportedSql, match="cannot be parsed"):
        _spark("SELECT FROM WHERE (")
