"""Spark SQL as the Query Service's clients write it, checked by the rows it gives on small data
(tests/query/conftest.py), never by the DuckDB text it becomes."""

from __future__ import annotations

from typing import Any

import pytest

from audiencehub.query import dialect
from audiencehub.query.duckdb import DuckDBSession
from audiencehub.query.errors import QueryError

T = "segment_export_job_dataset_for_cja"
SEED_QUERY = f"""SELECT ROW_NUMBER() OVER (ORDER BY key)::text as _id, personID, key as audienceMembershipId
FROM (
   SELECT _demoemea.identification.core.email AS personID, explode(segmentMembership.ups)
   FROM {T}
)
WHERE value.status = 'realized' AND (key = 's1' OR key = 's2' OR key = 's3')
"""


def rows(session: DuckDBSession, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    result = session.execute(sql, params)
    assert result.columns is not None
    out: list[tuple[Any, ...]] = []
    for batch in result.batches:
        out += list(zip(*(c.to_pylist() for c in batch.columns), strict=True))
    return out


def test_the_seed_query_runs_verbatim(session: DuckDBSession) -> None:
    result = session.execute(SEED_QUERY)
    assert [c.name for c in result.columns or []] == ["_id", "personID", "audienceMembershipId"]
    got = [b.to_pylist() for b in result.batches]
    flat = [r for b in got for r in b]
    assert sorted(r["_id"] for r in flat) == ["1", "2", "3", "4"]
    assert all(isinstance(r["_id"], str) for r in flat)
    # Ordered by key: s1 (twice), s2, s3; a profile's other memberships (s2 exited, s9 not asked) are left out.
    assert [r["audienceMembershipId"] for r in sorted(flat, key=lambda r: int(r["_id"]))] == ["s1", "s1", "s2", "s3"]
    assert sorted((r["personID"], r["audienceMembershipId"]) for r in flat) == [
        ("a@x.com", "s1"),
        ("b@x.com", "s1"),
        ("b@x.com", "s3"),
        ("c@x.com", "s2"),
    ]


CASES: list[tuple[str, list[tuple[Any, ...]]]] = [
    # explode of a map: key and value columns, value a struct whose fields read with a dot
    (
        f"SELECT key, value.status FROM (SELECT explode(segmentMembership.ups) FROM {T}) ORDER BY 1, 2",
        [
            ("s1", "realized"),
            ("s1", "realized"),
            ("s2", "exited"),
            ("s2", "realized"),
            ("s3", "realized"),
            ("s9", "realized"),
        ],
    ),
    # ... named with AS (k, v)
    (
        f"SELECT k FROM (SELECT explode(segmentMembership['ups']) AS (k, v) FROM {T}) WHERE v.status = 'exited'",
        [("s2",)],
    ),
    # explode of an array: one row per element, column "col"; empty and NULL arrays give no row
    (
        "SELECT order_id, col FROM (SELECT order_id, explode(items) FROM orders) ORDER BY 1, 2",
        [(1, "apple"), (1, "pear")],
    ),
    ("SELECT explode(items) AS item FROM orders ORDER BY item", [("apple",), ("pear",)]),
    # explode_outer keeps a row for an empty or NULL array
    (
        "SELECT order_id, item FROM (SELECT order_id, explode_outer(items) AS item FROM orders) ORDER BY 1, 2",
        [(1, "apple"), (1, "pear"), (2, None), (3, None)],
    ),
    # posexplode counts from 0, as Spark does
    ("SELECT pos, col FROM (SELECT posexplode(items) FROM orders) ORDER BY pos", [(0, "apple"), (1, "pear")]),
    # LATERAL VIEW of a map and of an array
    (
        f"SELECT _demoemea.identification.core.email, k FROM {T} LATERAL VIEW explode(segmentMembership.ups) m AS k, v "
        "WHERE v.status = 'realized' ORDER BY 1, 2",
        [("a@x.com", "s1"), ("b@x.com", "s1"), ("b@x.com", "s3"), ("c@x.com", "s2"), ("c@x.com", "s9")],
    ),
    (
        "SELECT order_id, i FROM orders LATERAL VIEW OUTER explode(items) t AS i ORDER BY 1, 2",
        [(1, "apple"), (1, "pear"), (2, None), (3, None)],
    ),
    # nested struct access through columns, not tables; a batch without the field reads NULL
    # (Spark sorts NULLs first when ascending)
    (f"SELECT person.name.firstName FROM {T} ORDER BY 1", [(None,), ("Ann",), ("Bob",)]),
    (f"SELECT t.person.name.lastName FROM {T} t WHERE t.person IS NOT NULL LIMIT 1", [("Doe",)]),
    # map lookups and 0-based array subscripts
    (f"SELECT identityMap['Email'][0].id FROM {T} ORDER BY 1", [("a@x.com",), ("b@x.com",), ("c@x.com",)]),
    ("SELECT items[0], items[1], element_at(items, 1) FROM orders WHERE order_id = 1", [("apple", "pear", "apple")]),
    (f"SELECT segmentMembership['ups']['s2'].status FROM {T} ORDER BY 1", [(None,), ("exited",), ("realized",)]),
    # casts: PostgreSQL's :: and Spark's CAST
    ("SELECT order_id::text, CAST(amount * 2 AS INT), '7'::int + 1 FROM orders WHERE order_id = 1", [("1", 7, 8)]),
    # window functions, subqueries without alias, WITH, VALUES, UNION
    (
        "SELECT order_id, ROW_NUMBER() OVER (ORDER BY amount DESC NULLS LAST) AS n FROM orders ORDER BY 1",
        [(1, 1), (2, 2), (3, 3)],
    ),
    ("SELECT count(*) FROM (SELECT * FROM (SELECT order_id FROM orders))", [(3,)]),
    ("WITH big AS (SELECT * FROM orders WHERE amount > 2) SELECT order_id FROM big", [(1,)]),
    ("VALUES (1, 'a'), (2, 'b')", [(1, "a"), (2, "b")]),
    ("SELECT 1 AS x UNION ALL SELECT 2 ORDER BY x", [(1,), (2,)]),
    # Spark functions that have other names in DuckDB
    (
        "SELECT size(items), array_contains(items, 'pear'), concat_ws('|', items) FROM orders WHERE order_id = 1",
        [(2, True, "apple|pear")],
    ),
    (f"SELECT size(map_keys(segmentMembership.ups)) FROM {T} ORDER BY 1", [(2,), (2,), (2,)]),
    ("SELECT collect_list(order_id) FROM orders", [([1, 2, 3],)]),
    (
        "SELECT nvl(amount, 0), if(amount > 2, 'big', 'small') FROM orders ORDER BY order_id",
        [(3.5, "big"), (1.0, "small"), (0.0, "small")],
    ),
    # case-insensitive names, as in Spark
    ("SELECT ORDER_ID FROM ORDERS WHERE Order_Id = 2", [(2,)]),
]


@pytest.mark.parametrize(("sql", "expected"), CASES, ids=[c[0][:60] for c in CASES])
def test_spark_sql_gives_the_rows_spark_would(
    session: DuckDBSession, sql: str, expected: list[tuple[Any, ...]]
) -> None:
    assert rows(session, sql) == expected


def test_postgres_style_parameters_are_bound(session: DuckDBSession) -> None:
    assert session.parameter_count("SELECT order_id FROM orders WHERE order_id = $2 OR amount = $1") == 2
    assert rows(session, "SELECT order_id FROM orders WHERE order_id = $1", (2,)) == [(2,)]
    assert rows(
        session,
        f"SELECT personID FROM (SELECT _demoemea.identification.core.email AS personID FROM {T}) WHERE personID = $1",
        ("b@x.com",),
    ) == [("b@x.com",)]


def test_explode_of_a_scalar_says_what_it_needs(session: DuckDBSession) -> None:
    with pytest.raises(QueryError) as err:
        session.execute("SELECT explode(amount) FROM orders")
    assert err.value.sqlstate == "42804"
    assert "array or a map" in err.value.message and "amount" in err.value.message


def test_explode_outside_a_select_list_is_refused(session: DuckDBSession) -> None:
    with pytest.raises(QueryError) as err:
        session.execute("SELECT order_id FROM orders WHERE explode(items) = 'x'")
    assert err.value.sqlstate == "0A000"


def test_a_syntax_error_names_where(session: DuckDBSession) -> None:
    with pytest.raises(QueryError) as err:
        session.execute("SELECT FROM WHERE (")
    assert err.value.sqlstate == "42601"
    assert "line 1" in err.value.message and "\x1b" not in err.value.message


def test_statements_splits_a_script() -> None:
    assert len(dialect.statements("SELECT 1; SELECT 2;")) == 2
    with pytest.raises(QueryError) as err:
        dialect.parse("SELECT 1; SELECT 2")
    assert err.value.sqlstate == "42601"


def test_results_have_sparks_integer_types(session: DuckDBSession) -> None:
    """Spark answers INT for size, year, length, row_number... and BIGINT for a sum of integers; DuckDB's
    functions answer BIGINT and HUGEINT: the columns show Spark's types, as a client of AEP expects."""
    sql = (
        f"SELECT size(map_keys(segmentMembership.ups)) AS n, length(_demoemea.identification.core.email) AS len, "
        f"year(DATE'2025-05-23') AS y, extract(MONTH FROM DATE'2025-05-23') AS m, "
        f"row_number() OVER (ORDER BY _demoemea.identification.core.email) AS rn, "
        f"sum(size(map_keys(segmentMembership.ups))) OVER () AS total, count(*) OVER () AS c FROM {T}"
    )
    result = session.execute(sql)
    types = {c.name: str(c.type) for c in result.columns or []}
    assert types == {
        "n": "int32",
        "len": "int32",
        "y": "int32",
        "m": "int32",
        "rn": "int32",
        "total": "int64",
        "c": "int64",
    }, types
    grouped = session.execute(
        f"SELECT sum(length(_demoemea.identification.core.email)) AS s, named_struct('s', sum(1)) AS st FROM {T}"
    )
    assert [(c.name, str(c.type)) for c in grouped.columns or []] == [("s", "int64"), ("st", "struct<s: int64>")]
    assert rows(session, f"SELECT sum(1) AS s FROM {T}") == [(3,)]  # three rows in the fixture table


def test_size_counts_a_maps_entries_and_an_arrays_items(session: DuckDBSession) -> None:
    got = rows(
        session,
        f"SELECT size(segmentMembership.ups) AS n, size(map_keys(segmentMembership.ups)) AS k, "
        f"size(array(1, 2, 3)) AS a FROM {T} ORDER BY n",
    )
    assert [r[2] for r in got] == [3, 3, 3]
    assert [r[0] for r in got] == [r[1] for r in got] and all(r[0] >= 1 for r in got), got


def test_a_cast_result_column_keeps_sparks_name(session: DuckDBSession) -> None:
    result = session.execute(f"SELECT year(DATE'2025-05-23'), size(identityMap) FROM {T} GROUP BY 1, 2 ORDER BY 2")
    assert [(c.name, str(c.type)) for c in result.columns or []] == [
        ("year(CAST('2025-05-23' AS DATE))", "int32"),
        ("size(identityMap)", "int32"),
    ]
