"""Query Service batch queries (``/data/foundation/query/queries``) give the same results on DuckDB and Spark.

Each app gets the same profile-enabled dataset, filled by two batches, and runs the same statements as queries of
the HTTP API: selects over nested fields, aggregates, joins, the profile store's snapshot table, a CTAS and an
INSERT INTO. Compared: each query's state, row count and result rows with their Arrow types; for the CTAS and the
INSERT, the new batch's rows and types and which engine wrote its file (DuckDB's walled session on one app, Spark
on the other: proof that the statement ran where it was meant to). Then a query the engine is running is
cancelled on Spark, and a statement DuckDB refuses never reaches Spark.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest

from audiencehub.engines.spark import spark_session
from tests.api.xdm_support import (
    CATALOG,
    IDENTITY_MAP_FG,
    PERSON_FG,
    PROFILE_CLASS,
    dataset,
    enable_profile,
    field_group,
    identity,
    ingest,
    json_lines,
    schema,
    tenant,
)
from tests.conftest import wait_for
from tests.parity.conftest import App
from tests.parity.support import TENANT_FIELDS, table, written_by

QS = "/data/foundation/query"
SR = "/data/foundation/schemaregistry"
T = "_TENANT"
"""Stands for the app's tenant field (``_<tenant id>``) in the statements and the compared rows."""
FIELDS = TENANT_FIELDS


def _person(n: int, email: str, **fields: Any) -> dict[str, Any]:
    return {
        "_id": f"r{n}",
        "personID": email,
        "person": {"name": {"firstName": email.split("@")[0].title()}},
        "identityMap": {"Email": [{"id": email, "primary": True}]},
        T: fields,
    }


FIRST = [
    _person(1, "ann@example.com", visits=3, score=1.5, vip=True, joined="2020-02-29", seen="2025-05-23T20:19:00Z"),
    _person(2, "bob@example.com", visits=12, score=2000.0, vip=False, tags=["a", "b"]),
    _person(3, "cy@example.com", score=-0.25, joined="1999-12-31", tags=[]),
]
SECOND = [
    _person(4, "dee@example.com", visits=7, vip=True, seen="1969-12-31T23:59:59.5Z", tags=["b"], country="FR"),
    # Ann again, in a later batch: the profile snapshot merges her two fragments.
    _person(5, "ann@example.com", visits=4, score=None, country="US"),
]

QUERIES = {
    "nested fields, filter, order": f"""
        SELECT personID, person.name.firstName AS first_name, {T}.visits AS visits, {T}.score AS score,
               {T}.joined AS joined, {T}.seen AS seen, {T}.tags AS tags
        FROM query_people WHERE {T}.vip OR {T}.score < 0 ORDER BY personID, visits""",
    "aggregates": f"""
        SELECT personID, count(*) AS n, sum({T}.visits) AS visits, max({T}.score) AS best,
               min({T}.joined) AS first_joined, collect_set(_id) IS NOT NULL AS has_ids
        FROM query_people GROUP BY personID ORDER BY personID""",
    "expressions": f"""
        SELECT upper(personID) AS who, coalesce({T}.visits, 0) * 2 AS doubled,
               CASE WHEN {T}.vip THEN 'vip' ELSE 'regular' END AS kind, size({T}.tags) AS tag_count,
               date_format({T}.seen, 'yyyy-MM-dd') AS seen_day, year({T}.joined) AS joined_year
        FROM query_people ORDER BY who, doubled""",
    "a join and a subquery": f"""
        SELECT a.personID, a.{T}.visits AS visits, b.best
        FROM query_people a
        JOIN (SELECT personID, max({T}.score) AS best FROM query_people GROUP BY personID) b
          ON a.personID = b.personID
        WHERE a.{T}.visits > (SELECT min({T}.visits) FROM query_people)
        ORDER BY a.personID, visits""",
    "own common table expressions": f"""
        WITH vips AS (SELECT personID FROM query_people WHERE {T}.vip),
             counted AS (SELECT count(*) AS n FROM vips)
        SELECT n FROM counted""",
    "a struct the schema widened after the first batch": f"""
        SELECT personID, {T} AS tenant, {T}.country AS country, {T}.region AS region
        FROM query_people ORDER BY personID, country""",
    "lateral view explode of a map": """
        SELECT personID, ns, size(ids) AS n, ids[0].id AS first_id
        FROM query_people LATERAL VIEW explode(identityMap) m AS ns, ids ORDER BY personID, ns""",
    "the profile snapshot": """
        SELECT identityMap['Email'][0].id AS email, {T_SNAPSHOT}.visits AS visits, person.name.firstName AS name
        FROM {PROFILE} ORDER BY email""",
}


@pytest.fixture(scope="module")
def sandboxes(apps: tuple[App, App]) -> dict[str, dict[str, str]]:
    """Per engine: its tenant field, its dataset id and its profile snapshot table."""
    out = {}
    for app in apps:
        field = "_" + tenant(app.client, app.headers)
        fg = field_group(app.client, app.headers, "Query parity fields", FIELDS)
        sid = schema(app.client, app.headers, "Query parity people", PROFILE_CLASS, fg, PERSON_FG, IDENTITY_MAP_FG)
        identity(app.client, app.headers, sid, "/personID", "Email", True)
        enable_profile(app.client, app.headers, sid)
        ds = dataset(app.client, app.headers, "Query people", sid, profile=True)
        for records in (FIRST, SECOND):
            text = json_lines(*records).decode().replace(T, field)
            assert ingest(app.client, app.headers, ds, text.encode(), timeout=180)["status"] == "success"
            # The schema gains a nested field after each batch: the first batch's files hold a narrower struct than
            # the second's, and no file holds the last field (Spark casts structs by position: query/conform.py).
            added = "country" if records is FIRST else "region"
            ops = [
                {
                    "op": "add",
                    "path": f"/definitions/custom/properties/{field}/properties/{added}",
                    "value": {"type": "string"},
                }
            ]
            resp = app.client.patch(f"{SR}/tenant/fieldgroups/{quote(fg, safe='')}", json=ops, headers=app.headers)
            assert resp.status_code == 200, resp.text
        shown = _run(app, "SHOW TABLES")
        profile = next(r["name"] for r in _rows(app, shown) if r["name"].startswith("profile_snapshot_export_"))
        out[app.engine] = {"field": field, "dataset": ds, "profile": profile}
    return out


def _sql(app: App, sandbox: dict[str, str], sql: str) -> str:
    return (
        sql.replace("{PROFILE}", sandbox["profile"])
        .replace("{T_SNAPSHOT}", sandbox["field"])
        .replace(T, sandbox["field"])
    )


def _run(app: App, sql: str, **body: Any) -> dict[str, Any]:
    resp = app.client.post(f"{QS}/queries", json={"sql": sql, **body}, headers=app.headers)
    assert resp.status_code == 202, resp.text
    return _wait(app, resp.json()["id"])


def _wait(app: App, query_id: str, timeout: float = 240) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        got: dict[str, Any] = app.client.get(f"{QS}/queries/{query_id}", headers=app.headers).json()
        return got if got["state"] not in ("SUBMITTED", "IN_PROGRESS") else None

    return wait_for(done, timeout=timeout, interval=0.1, what=f"query {query_id} on {app.engine}")


def _result_file(app: App, query: dict[str, Any]) -> Path:
    return app.settings.home / "lake" / app.org / "prod" / "_runs" / query["id"] / "results.parquet"


def _rows(app: App, query: dict[str, Any]) -> list[dict[str, Any]]:
    assert query["state"] == "SUCCESS", query
    return pq.read_table(_result_file(app, query)).to_pylist()


def _outcome(app: App, sandbox: dict[str, str], sql: str) -> dict[str, Any]:
    query = _run(app, _sql(app, sandbox, sql))
    assert query["state"] == "SUCCESS", (app.engine, query["errors"])
    path = _result_file(app, query)
    types, rows = table([path])
    text = json.dumps({"types": types, "rows": rows, "count": query["rowCount"]}, default=str, sort_keys=True)
    return {"shape": json.loads(text.replace(sandbox["field"], T)), "writer": written_by(path)}


@pytest.mark.parametrize("name", list(QUERIES))
def test_queries_give_the_same_rows_and_types(
    apps: tuple[App, App], sandboxes: dict[str, dict[str, str]], name: str
) -> None:
    duck, spark = (_outcome(app, sandboxes[app.engine], QUERIES[name]) for app in apps)
    assert duck["writer"] == "duckdb" and spark["writer"] == "spark"
    assert spark["shape"] == duck["shape"], f"\nduckdb: {duck['shape']}\nspark:  {spark['shape']}"
    assert duck["shape"]["rows"], "the query selected nothing: the comparison would prove nothing"


def _batch_of(app: App, dataset_id: str) -> tuple[list[Any], list[Any], set[str]]:
    """A dataset's committed rows and types, and the engines that wrote its files."""
    batches = app.client.get(f"{CATALOG}/batches", params={"dataSet": dataset_id}, headers=app.headers).json()
    parts = [
        p
        for batch_id, batch in batches.items()
        if batch["status"] == "success"
        for p in sorted((app.settings.home / "lake" / app.org / "prod" / dataset_id / batch_id).glob("*.parquet"))
    ]
    types, rows = table(parts)
    return types, rows, {written_by(p) for p in parts}


def test_ctas_and_insert_write_the_same_batches(apps: tuple[App, App], sandboxes: dict[str, dict[str, str]]) -> None:
    got = {}
    for app in apps:
        sandbox = sandboxes[app.engine]
        select = _sql(
            app,
            sandbox,
            f"""SELECT personID AS email, sum({T}.visits) AS visits, max({T}.seen) AS last_seen,
                      sort_array(collect_list(_id)) AS ids,
                      named_struct('vip', bool_or({T}.vip), 'score', max({T}.score)) AS facts
               FROM query_people GROUP BY personID""",
        )
        created = _run(app, select, ctasParameters={"datasetName": "query_summary"})
        assert created["state"] == "SUCCESS", (app.engine, created["errors"])
        assert created["rowCount"] == 4
        new_id = created["_links"]["created_dataset"]["id"]
        assert new_id
        inserted = _run(
            app, _sql(app, sandbox, "INSERT INTO query_summary SELECT * FROM query_summary WHERE visits > 5")
        )
        assert inserted["state"] == "SUCCESS", (app.engine, inserted["errors"])
        assert inserted["rowCount"] == 3
        types, rows, writers = _batch_of(app, new_id)
        got[app.engine] = (json.loads(json.dumps([types, rows], default=str)), writers)
    (duck, duck_writers), (spark, spark_writers) = got["duckdb"], got["spark"]
    assert duck_writers == {"duckdb"} and spark_writers == {"spark"}
    assert spark == duck, f"\nduckdb: {duck}\nspark:  {spark}"


def test_a_failing_statement_fails_on_both(apps: tuple[App, App], sandboxes: dict[str, dict[str, str]]) -> None:
    for app in apps:
        # Overflows BIGINT at run time on both (Spark's ANSI mode; DuckDB's checked arithmetic).
        query = _run(
            app, _sql(app, sandboxes[app.engine], f"SELECT {T}.visits * 4611686018427387904 AS n FROM query_people")
        )
        assert query["state"] == "FAILED", (app.engine, query)
        assert query["errors"][0]["code"] in ("22000", "XX000"), query["errors"]
        assert "/" not in query["errors"][0]["message"].replace("N/A", ""), "a server path leaked"


def test_what_duckdb_refuses_never_reaches_spark(apps: tuple[App, App], sandboxes: dict[str, dict[str, str]]) -> None:
    """Spark's own ways to reach files or the JVM are no DuckDB statements: refused on submission or failed by the
    walled session's checks, before any Spark job (the statements have nothing else that could run)."""
    _, spark_app = apps
    tracker = spark_session("local[2]", {}, ui=False).sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup(None) or [])
    for sql in (
        "SELECT * FROM parquet.`/etc/passwd`",
        "SELECT reflect('java.lang.System', 'getProperty', 'user.home') AS home",
        "SELECT java_method('java.lang.Runtime', 'getRuntime') AS rt FROM query_people",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_files('/etc')",
    ):
        resp = spark_app.client.post(f"{QS}/queries", json={"sql": sql}, headers=spark_app.headers)
        if resp.status_code == 400:
            continue
        assert resp.status_code == 202, resp.text
        query = _wait(spark_app, resp.json()["id"])
        assert query["state"] == "FAILED", (sql, query)
    assert set(tracker.getJobIdsForGroup(None) or []) == before, "a refused statement ran a Spark job"


def test_cancel_stops_a_statement_spark_is_running(apps: tuple[App, App], sandboxes: dict[str, dict[str, str]]) -> None:
    _, app = apps
    context = spark_session("local[2]", {}, ui=False).sparkContext
    try:
        _cancel_on_spark(app, context.statusTracker())
    finally:
        context.cancelAllJobs()  # whatever happened, no runaway join keeps the machine's cores


def _cancel_on_spark(app: App, tracker: Any) -> None:
    resp = app.client.post(
        f"{QS}/queries",
        json={"sql": "SELECT sum(x.range * y.range) AS s FROM range(200000) x, range(200000) y"},
        headers=app.headers,
    )
    assert resp.status_code == 202, resp.text
    query_id = resp.json()["id"]

    def running() -> bool | None:
        state = app.client.get(f"{QS}/queries/{query_id}", headers=app.headers).json()
        assert state["state"] in ("SUBMITTED", "IN_PROGRESS"), state["errors"]
        return bool(tracker.getActiveJobsIds()) or None

    wait_for(running, timeout=120, interval=0.05, what="Spark to run the query")
    started = time.monotonic()
    resp = app.client.patch(f"{QS}/queries/{query_id}", json={"op": "cancel"}, headers=app.headers)
    assert resp.status_code == 202, resp.text
    query = _wait(app, query_id, timeout=60)
    assert query["state"] == "KILLED", query
    assert query["errors"][0]["code"] == "57014"
    assert time.monotonic() - started < 30, "the cancel did not reach Spark: the query ran to its end"
    wait_for(lambda: not tracker.getActiveJobsIds() or None, timeout=30, what="Spark's jobs to stop")
