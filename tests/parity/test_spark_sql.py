"""Each named rewrite of engines/spark_sql.py, on its own: the Spark SQL it writes and, where it matters,
the value Spark computes next to DuckDB's."""

from __future__ import annotations

import datetime as dt
import json
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


def _plain(value: Any) -> Any:
    """Spark's Rows as dicts, as DuckDB returns structs."""
    if hasattr(value, "asDict"):
        return {k: _plain(v) for k, v in value.asDict().items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime) and value.tzinfo is not None:  # Spark gives the session's (UTC) wall time
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _same(spark: Any, select: str) -> list[tuple[Any, ...]]:
    """The rows DuckDB gives ``select``, asserted equal to Spark's for its translation."""
    expected = [tuple(_plain(v) for v in r) for r in duckdb.connect().execute(select).fetchall()]
    got = [tuple(_plain(v) for v in r) for r in spark.sql(_spark(select)).collect()]
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


# -- JSON values (VARIANT in Spark) and lists -----------------------------------------------------------

# A JSON object made inside the statement, so that both engines build it from the same SQL.
OBJ = (
    "(SELECT to_json({'s': 'x', 'n': 3, 'f': 1.5, 'b': true, 'z': CAST(NULL AS VARCHAR), 'l': [1, 2], "
    "'o': {'k': 'v'}, 'big': 18446744073709551615}) AS j)"
)


def test_json_extract_reads_a_key_a_list_and_a_computed_key(spark: Any) -> None:
    _same(
        spark,
        "SELECT json_extract(j, '$.\"o\"') ->> '$.\"k\"', len(json_extract(j, '$.\"l\"[*]')), "
        "json_extract(j, '$.\"' || replace(replace('s', '\\', '\\\\'), '\"', '\\\"') || '\"') ->> '$', "
        "json_extract(j, '$.\"missing\"') IS NULL "
        f"FROM {OBJ}",
    )


def test_json_type_names_are_duckdbs(spark: Any) -> None:
    keys = ["s", "n", "f", "b", "z", "l", "o", "big"]
    _same(spark, f"SELECT {', '.join(f'json_type(json_extract(j, {chr(39)}$.{k}{chr(39)}))' for k in keys)} FROM {OBJ}")


def test_json_text_of_strings_numbers_and_null(spark: Any) -> None:
    _same(spark, f"SELECT j ->> '$.s', j ->> '$.n', j ->> '$.z' FROM {OBJ}")


def test_json_keys_are_listed(spark: Any) -> None:
    _same(spark, f"SELECT list_sort(json_keys(j)) FROM {OBJ}")


def test_to_json_inside_is_a_value_and_outside_is_text() -> None:
    sql = _spark("SELECT to_json(x) FROM (SELECT to_json({'a': 1}) AS x)")
    assert sql.startswith("SELECT TO_JSON(x)") and "TO_VARIANT_OBJECT(STRUCT(1 AS a))" in sql, sql


def test_json_object_and_merge_patch(spark: Any) -> None:
    select = "SELECT json_merge_patch(to_json({'a': 1, 'b': 2}), json_object('b', 3, 'c', 'x')) AS m"
    duck = duckdb.connect().execute(select).fetchall()[0][0]
    got = spark.sql(f"SELECT to_json(m) FROM ({_spark(select)})").collect()[0][0]
    assert json.loads(got) == json.loads(duck) == {"a": 1, "b": 3, "c": "x"}


def test_lambda_index_counts_from_one(spark: Any) -> None:
    _same(spark, "SELECT list_transform(['a', 'b'], lambda e, i: e || i)")


def test_list_index_counts_from_one_and_is_null_past_the_end(spark: Any) -> None:
    _same(spark, "SELECT ['a', 'b'][1], ['a', 'b'][n + 1], ['a', 'b'][5] FROM (VALUES (1)) v(n)")


def test_struct_insert_adds_fields_to_a_struct_the_sql_built(spark: Any) -> None:
    _same(
        spark,
        "SELECT list_transform(list_transform([1, 2], lambda x: {'a': x, 'b': 'y'}), "
        "lambda s: struct_insert(s, c := s.a * 10))",
    )
    with pytest.raises(s.UnsupportedSql, match="struct_insert"):
        _spark("SELECT struct_insert(col, c := 1) FROM t")


def test_ordered_first_and_ordered_list(spark: Any) -> None:
    _same(
        spark,
        "SELECT g, first(x ORDER BY k) FILTER (WHERE x <> 'no'), list(x ORDER BY k) "
        "FROM (VALUES (1, 'b', 2), (1, 'a', 3), (1, 'no', 1), (2, 'c', 1)) v(g, x, k) GROUP BY g ORDER BY g",
    )


def test_order_by_an_aggregate_beside_a_window(spark: Any) -> None:
    _same(
        spark,
        "SELECT g, row_number() OVER (ORDER BY min(k)) FROM (VALUES (1, 5), (2, 1), (2, 9)) v(g, k) "
        "GROUP BY g ORDER BY min(k)",
    )


def test_hugeint_and_epoch_seconds(spark: Any) -> None:
    # DECIMAL(38, 0) holds 38 digits, HUGEINT 39: range checks refuse such values on both (NULL counts as outside).
    _same(
        spark,
        "SELECT TRY_CAST('99999999999999999999999999999999999999' AS HUGEINT) > 0, TRY_CAST('12' AS HUGEINT) = 12",
    )
    _same(spark, "SELECT to_timestamp(1716000000123 / 1000.0)")


def test_row_number_over_nothing_follows_the_rows(spark: Any) -> None:
    assert "ORDER BY MONOTONICALLY_INCREASING_ID()" in _spark("SELECT row_number() OVER () FROM t")
    _same(spark, "SELECT x, row_number() OVER () FROM (VALUES ('a'), ('b'), ('c')) v(x)")


def test_len_is_the_size_of_a_list(spark: Any) -> None:
    _same(spark, "SELECT len([1, 2, 3]), length('abcd')")


def test_range_tables_count_in_spark(spark: Any) -> None:
    assert "RANGE(0, 200000, 1)" in _spark("SELECT sum(x.range) FROM range(200000) x")
    _same(spark, "SELECT sum(x.range * y.range), count(*) FROM range(300) x, range(5, 0, -2) y")
    _same(spark, "SELECT n FROM generate_series(1, 7, 3) t(n) ORDER BY n")
    _same(spark, "SELECT * FROM generate_series(3, 1, -1) ORDER BY 1")
    with pytest.raises(s.UnsupportedSql, match="dates or timestamps"):
        _spark("SELECT * FROM range(DATE '2025-01-01', DATE '2025-02-01', INTERVAL 1 DAY)")


MAPS = (
    "(SELECT 1 AS id, map(['a', 'b', 'c'], [1, 2, 3]) AS m, [10, 20] AS a UNION ALL "
    "SELECT 2, map(['x'], [9]), CAST([] AS INTEGER[]) UNION ALL SELECT 3, CAST(NULL AS MAP(VARCHAR, INTEGER)), NULL)"
)


def test_side_by_side_unnests_walk_the_lists_together(spark: Any) -> None:
    # A map exploded as the Query Service writes it: one row per entry, not keys x values.
    rows = _same(spark, f"SELECT id, unnest(map_keys(m)) AS k, unnest(map_values(m)) AS v FROM {MAPS} ORDER BY id, k")
    assert rows == [(1, "a", 1), (1, "b", 2), (1, "c", 3), (2, "x", 9)]
    # Lists of other lengths (and a NULL one) are padded with NULL.
    _same(spark, "SELECT unnest([1, 2, 3]) AS a, unnest(['x']) AS b, unnest(CAST(NULL AS INTEGER[])) AS c ORDER BY a")
    _same(spark, f"SELECT id, unnest(range(len(a))) AS pos, unnest(a) AS col FROM {MAPS} ORDER BY id, pos")
    with pytest.raises(s.UnsupportedSql, match="next to each other"):
        _spark("SELECT unnest(a) AS x, 1 AS one, unnest(b) AS y FROM t")


def test_lateral_generators_are_lateral_views(spark: Any) -> None:
    sql = _spark("SELECT x.c FROM t CROSS JOIN LATERAL (SELECT unnest(t.a) AS c) AS x")
    assert "LATERAL VIEW EXPLODE(t.a) x AS c" in sql, sql
    _same(
        spark,
        f"SELECT t.id, x.k, x.v FROM {MAPS} t CROSS JOIN LATERAL "
        "(SELECT unnest(map_keys(t.m)) AS k, unnest(map_values(t.m)) AS v) AS x ORDER BY 1, 2",
    )
    _same(
        spark,
        f"SELECT t.id, y.c FROM {MAPS} t LEFT JOIN LATERAL (SELECT unnest(t.a) AS c) AS y ON true ORDER BY 1, 2",
    )
