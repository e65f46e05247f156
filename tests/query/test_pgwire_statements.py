"""What the PostgreSQL front end answers itself: statements split and classified, settings, and the catalog
queries of psql (several versions' variants) and drivers, answered from a session's tables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from audiencehub.query.errors import QueryError
from audiencehub.query.pgcatalog import Catalog, table_oid
from audiencehub.query.pgstatements import ServerSettings, classify, split
from audiencehub.query.session import Column

MEMBER = pa.struct([("status", pa.string())])
TABLES = {
    "orders": [Column("order_id", pa.int64()), Column("amount", pa.float64()), Column("items", pa.list_(pa.string()))],
    "segment_export_job_dataset_for_cja": [
        Column("personID", pa.string()),
        Column("segmentMembership", pa.map_(pa.string(), pa.map_(pa.string(), MEMBER))),
    ],
}


class Tables:
    """The part of a QuerySession the catalog reads; it counts which tables' columns were read."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def tables(self) -> list[str]:
        return sorted(TABLES)

    def columns(self, table: str) -> list[Column]:
        self.read.append(table)
        if table not in TABLES:
            raise QueryError(f"table {table} does not exist", "42P01")
        return TABLES[table]


@pytest.fixture
def tables() -> Tables:
    return Tables()


@pytest.fixture
def catalog(tables: Tables) -> Iterator[Catalog]:
    c = Catalog(tables, user="ORG@AdobeOrg", database="prod", pid=1234, settings=ServerSettings("ORG@AdobeOrg"))  # type: ignore[arg-type]
    yield c
    c.close()


def answer(catalog: Catalog, sql: str, params: tuple[Any, ...] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
    query = catalog.recognize(sql)
    assert query is not None, f"not recognised as a catalog query: {sql}"
    result = catalog.run(query, params)
    assert result.columns is not None
    table = pa.Table.from_batches(list(result.batches), schema=pa.schema([(c.name, c.type) for c in result.columns]))
    return [c.name for c in result.columns], [tuple(r.values()) for r in table.to_pylist()]


def test_split_keeps_semicolons_inside_quotes_and_comments() -> None:
    sql = "SELECT 'a;b', \"c;d\" -- e;f\n; /* g; /* nested; */ h; */ SELECT $$i;j$$; SELECT E'k\\';l';;  -- end"
    assert split(sql) == [
        "SELECT 'a;b', \"c;d\" -- e;f\n",
        " /* g; /* nested; */ h; */ SELECT $$i;j$$",
        " SELECT E'k\\';l'",
    ]
    assert split(" ; -- only a comment\n;") == []


@pytest.mark.parametrize(
    ("sql", "kind", "name", "value"),
    [
        ("BEGIN", "begin", None, None),
        ("start transaction read only", "begin", None, None),
        ("END", "commit", None, None),
        ("abort", "rollback", None, None),
        ("SET application_name = 'psql'", "set", "application_name", "psql"),
        ("SET SESSION DateStyle TO ISO, DMY", "set", "datestyle", "iso, dmy"),  # normalised when applied
        ("set time zone 'UTC'", "set", "timezone", "UTC"),
        ("SET search_path TO DEFAULT", "set", "search_path", None),
        ("SET NAMES 'UTF8'", "set", "client_encoding", "UTF8"),
        ("SET threads = 64", "query", None, None),  # not a session setting: the executor refuses it
        ("SHOW TRANSACTION ISOLATION LEVEL", "show", "transaction_isolation", None),
        ("SHOW TABLES", "query", None, None),  # Spark's SHOW: the executor's
        ("RESET ALL", "reset", None, None),
        ('DECLARE "c" BINARY CURSOR WITH HOLD FOR SELECT 1', "declare", "c", None),
        ('FETCH FORWARD 100 FROM "c"', "fetch", "c", None),
        ("CLOSE c", "close", "c", None),
        ("SELECT 1", "query", None, None),
        ("-- nothing", "empty", None, None),
    ],
)
def test_statements_are_classified(sql: str, kind: str, name: str | None, value: str | None) -> None:
    st = classify(sql)
    assert (st.kind, st.name, st.value) == (kind, name, value)


def test_declare_and_fetch_are_read_whole() -> None:
    st = classify('DECLARE "big" BINARY CURSOR WITH HOLD FOR SELECT id FROM t WHERE x = $1')
    assert (st.query, st.binary, st.hold) == ("SELECT id FROM t WHERE x = $1", True, True)
    assert classify("FETCH ALL IN big").count is None
    assert classify("FETCH 7 FROM big").count == 7
    assert classify("MOVE NEXT FROM big").count == 1
    with pytest.raises(QueryError) as backward:
        classify("FETCH BACKWARD 1 FROM big")
    assert backward.value.sqlstate == "55000"
    with pytest.raises(QueryError):
        classify("DECLARE c SCROLL CURSOR FOR SELECT 1")


def test_settings_report_changes_and_refuse_what_is_not_supported() -> None:
    settings = ServerSettings("ORG@AdobeOrg")
    assert ("session_authorization", "ORG@AdobeOrg") in settings.reported()
    assert settings.set("datestyle", "iso, dmy") == ("DateStyle", "ISO, DMY")
    assert settings.set("timezone", "Etc/UTC") == ("TimeZone", "UTC")
    assert settings.set("search_path", "public") is None  # not reported, but shown
    for name, value in (("timezone", "Europe/Paris"), ("datestyle", "SQL"), ("client_encoding", "LATIN1")):
        with pytest.raises(QueryError) as refused:
            settings.set(name, value)
        assert refused.value.sqlstate == "0A000" and value in refused.value.message
    table = pa.Table.from_batches(list(settings.show("search_path").batches))
    assert table.to_pylist() == [{"search_path": "public"}]
    settings.apply_startup({"TimeZone": "America/New_York", "application_name": "x"})
    assert settings.values["timezone"] == "UTC" and settings.values["application_name"] == "x"


def test_psql_lists_relations(catalog: Catalog, tables: Tables) -> None:
    sql = """SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index'
   WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table'
   WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;"""
    names, rows = answer(catalog, sql)
    assert names == ["Schema", "Name", "Type", "Owner"]
    assert rows == [("public", t, "table", "ORG@AdobeOrg") for t in sorted(TABLES)]
    assert tables.read == []  # listing tables reads no table's columns


def test_psql_describes_a_table_column_by_column(catalog: Catalog, tables: Tables) -> None:
    lookup = """SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(orders)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 2, 3;"""
    names, rows = answer(catalog, lookup)
    oid = table_oid("orders")
    assert (names, rows) == (["oid", "nspname", "relname"], [(oid, "public", "orders")])
    attributes = f"""SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '{oid}' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;"""
    names, rows = answer(catalog, attributes)
    assert names[:2] == ["attname", "format_type"]
    assert [r[:2] for r in rows] == [("order_id", "bigint"), ("amount", "double precision"), ("items", "json")]
    assert tables.read == ["orders"]  # only the described table's columns were read


@pytest.mark.parametrize(
    "sql",
    [
        # psql 15's table details
        "SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, "
        "c.relforcerowsecurity, false AS relhasoids, c.relispartition, '', c.reltablespace, "
        "CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, "
        "c.relpersistence, c.relreplident, am.amname "
        "FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid) "
        "LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid) WHERE c.oid = '{oid}';",
        # psql 15's \d+ variant, reading reloptions through unnest
        "SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, "
        "c.relforcerowsecurity, false AS relhasoids, c.relispartition, pg_catalog.array_to_string(c.reloptions || "
        "array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', '), c.reltablespace, "
        "CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, "
        "c.relpersistence, c.relreplident, am.amname FROM pg_catalog.pg_class c "
        "LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid) "
        "LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid) WHERE c.oid = '{oid}';",
    ],
)
def test_psql_reads_a_tables_details_plain_and_verbose(catalog: Catalog, sql: str) -> None:
    names, rows = answer(catalog, sql.format(oid=table_oid("orders")))
    assert names[:2] == ["relchecks", "relkind"]
    assert len(rows) == 1 and rows[0][:3] == (0, "r", False)
    assert rows[0][-1] == "heap"


def test_psql_describes_a_table_verbosely(catalog: Catalog) -> None:
    sql = f"""SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated,
  a.attstorage,
  a.attcompression AS attcompression,
  CASE WHEN a.attstattarget=-1 THEN NULL ELSE a.attstattarget END AS attstattarget,
  pg_catalog.col_description(a.attrelid, a.attnum)
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '{table_oid("orders")}' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;"""  # psql 15's \d+ (server 15)
    names, rows = answer(catalog, sql)
    assert names[-4:] == ["attstorage", "attcompression", "attstattarget", "col_description"]
    assert [(r[0], r[1], r[7], r[9]) for r in rows] == [
        ("order_id", "bigint", "p", None),
        ("amount", "double precision", "p", None),
        ("items", "json", "x", None),
    ]


def test_relations_not_modelled_answer_their_columns_and_no_rows(catalog: Catalog) -> None:
    sql = f"""SELECT pol.polname, pol.polpermissive,
  CASE WHEN pol.polroles = '{{0}}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from
  pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,
  pg_catalog.pg_get_expr(pol.polqual, pol.polrelid)
FROM pg_catalog.pg_policy pol
WHERE pol.polrelid = '{table_oid("orders")}' ORDER BY 1;"""
    names, rows = answer(catalog, sql)
    assert names[:2] == ["polname", "polpermissive"] and rows == []


def test_system_functions_and_driver_lookups(catalog: Catalog) -> None:
    names, rows = answer(
        catalog, "SELECT version(), current_database(), current_schema, current_user, pg_backend_pid()"
    )
    assert names == ["version", "current_database", "current_schema", "current_user", "pg_backend_pid"]
    assert rows[0][0].startswith("PostgreSQL 15.0 (audiencehub")
    assert rows[0][1:] == ("prod", "public", "ORG@AdobeOrg", 1234)
    sql = (
        "SELECT typname AS name, oid, typarray AS array_oid, oid::regtype::text AS regtype, typdelim AS delimiter "
        "FROM pg_type t WHERE t.oid = to_regtype($1) ORDER BY t.oid"
    )  # psycopg's TypeInfo.fetch()
    names, rows = answer(catalog, sql, ("json",))
    assert rows == [("json", 114, 0, "json", ",")]
    sql = (
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'orders' ORDER BY ordinal_position"
    )
    names, rows = answer(catalog, sql)
    assert rows == [
        ("orders", "order_id", "bigint"),
        ("orders", "amount", "double precision"),
        ("orders", "items", "json"),
    ]


def test_user_queries_are_not_catalog_queries(catalog: Catalog) -> None:
    assert catalog.recognize("SELECT * FROM orders") is None
    assert catalog.recognize("SELECT o.*, c.relname FROM orders o, pg_catalog.pg_class c") is None
    assert catalog.recognize("SELECT explode(segmentMembership.ups) FROM segment_export_job_dataset_for_cja") is None


def test_a_catalog_query_cannot_reach_files(catalog: Catalog) -> None:
    query = catalog.recognize("SELECT c.relname, x.* FROM pg_catalog.pg_class c, read_csv('/etc/passwd') x")
    if query is not None:  # if taken as a catalog query, the catalog database has no file access
        result = catalog.run(query)
        assert sum(b.num_rows for b in result.batches) == 0
    assert catalog.recognize("SELECT pg_catalog.pg_read_file('/etc/passwd')") is None  # the executor's to refuse
