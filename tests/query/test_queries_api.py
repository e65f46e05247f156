"""The Query Service's HTTP API: connection parameters, queries run as jobs, cancel, soft delete, results."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from audiencehub.metadata import tables as t
from audiencehub.metadata.store import Scope
from tests.api.support import assert_problem
from tests.api.xdm_support import (
    CATALOG,
    IDENTITY_MAP_FG,
    PERSON_FG,
    PROFILE_CLASS,
    dataset,
    ingest,
    json_lines,
    schema,
)
from tests.conftest import wait_for

QS = "/data/foundation/query"
PEOPLE = [
    {"_id": "r1", "identityMap": {"Email": [{"id": "pat@example.com"}]}, "person": {"name": {"firstName": "Pat"}}},
    {"_id": "r2", "identityMap": {"Email": [{"id": "sam@example.com"}]}, "person": {"name": {"firstName": "Sam"}}},
]


@pytest.fixture
def people(client: TestClient, headers: dict[str, str]) -> str:
    sid = schema(client, headers, "People", PROFILE_CLASS, IDENTITY_MAP_FG, PERSON_FG)
    ds = dataset(client, headers, "People List", sid)
    assert ingest(client, headers, ds, json_lines(*PEOPLE))["status"] == "success"
    return ds


def submit(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = client.post(f"{QS}/queries", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def finished(client: TestClient, headers: dict[str, str], query_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"{QS}/queries/{query_id}", headers=headers).json()
        return body if body["state"] not in ("SUBMITTED", "IN_PROGRESS") else None

    return wait_for(done, what=f"query {query_id}")


def test_connection_parameters_are_what_psql_needs(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.get(f"{QS}/connection_parameters", headers=headers)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert got["username"] == headers["x-gw-ims-org-id"]
    assert got["token"] == headers["Authorization"].removeprefix("Bearer ")
    assert got["dbName"] == "prod:all"
    assert isinstance(got["port"], int) and got["host"]
    # ... and they open a session on the sandbox
    session = client.app.state.container.query.open(  # type: ignore[attr-defined]
        user=got["username"], password=got["token"], database=got["dbName"]
    )
    session.close()


def test_a_query_runs_and_its_rows_download(client: TestClient, headers: dict[str, str], people: str) -> None:
    created = submit(
        client,
        headers,
        dbName="prod:all",
        sql="SELECT person.name.firstName AS first, identityMap['Email'][0].id AS email FROM people_list ORDER BY 1",
        name="first names",
    )
    assert created["state"] in ("SUBMITTED", "IN_PROGRESS", "SUCCESS")
    assert created["request"]["name"] == "first names"
    done = finished(client, headers, created["id"])
    assert done["state"] == "SUCCESS", done
    assert done["rowCount"] == 2 and done["errors"] == []
    assert done["_links"]["referenced_datasets"][0]["id"] == people
    assert done["elapsedTime"] >= 0 and not done["isCTAS"] and not done["isInsertInto"]
    url = f"{QS}/queries/{created['id']}/results"
    as_csv = client.get(url, headers=headers)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(as_csv.text))) == [
        ["first", "email"],
        ["Pat", "pat@example.com"],
        ["Sam", "sam@example.com"],
    ]
    as_json = client.get(url, params={"format": "json"}, headers=headers)
    assert as_json.json() == [
        {"first": "Pat", "email": "pat@example.com"},
        {"first": "Sam", "email": "sam@example.com"},
    ]
    as_parquet = client.get(url, params={"format": "parquet"}, headers=headers)
    assert pq.read_table(pa.BufferReader(as_parquet.content)).num_rows == 2
    assert_problem(client.get(url, params={"format": "xml"}, headers=headers), 400, "100910-400", "format", "xml")


def test_nested_values_download_as_json(client: TestClient, headers: dict[str, str], people: str) -> None:
    q = submit(client, headers, sql="SELECT identityMap FROM people_list ORDER BY _id")
    assert finished(client, headers, q["id"])["state"] == "SUCCESS"
    rows = list(csv.DictReader(io.StringIO(client.get(f"{QS}/queries/{q['id']}/results", headers=headers).text)))
    assert json.loads(rows[0]["identityMap"])["Email"][0]["id"] == "pat@example.com"
    as_json = client.get(f"{QS}/queries/{q['id']}/results", params={"format": "json"}, headers=headers).json()
    assert as_json[0]["identityMap"]["Email"][0]["id"] == "pat@example.com"


def test_a_failing_query_says_why(client: TestClient, headers: dict[str, str], people: str) -> None:
    q = submit(client, headers, sql="SELECT nope FROM people_list")
    done = finished(client, headers, q["id"])
    assert done["state"] == "FAILED"
    (error,) = done["errors"]
    assert error["code"] == "42703" and "nope" in error["message"] and error["errorType"] == "USER_ERROR"
    assert_problem(client.get(f"{QS}/queries/{q['id']}/results", headers=headers), 404, "100940-404", "FAILED")


def test_ctas_parameters_make_a_dataset(client: TestClient, headers: dict[str, str], people: str) -> None:
    q = submit(
        client,
        headers,
        sql="SELECT person.name.firstName AS first_name FROM people_list",
        ctasParameters={"datasetName": "First Names Copy", "description": "a copy"},
    )
    assert q["isCTAS"] and q["effectiveSQL"].startswith("CREATE TABLE")
    done = finished(client, headers, q["id"])
    assert done["state"] == "SUCCESS", done
    assert done["rowCount"] == 2
    created = done["_links"]["created_dataset"]["id"]
    got = client.get(f"{CATALOG}/dataSets/{created}", headers=headers).json()[created]
    assert got["name"] == "First Names Copy"
    # ... and INSERT INTO it by its dataset name
    q2 = submit(
        client, headers, sql="SELECT 'Kim' AS first_name", insertIntoParameters={"datasetName": "First Names Copy"}
    )
    assert q2["isInsertInto"] and q2["effectiveSQL"].startswith("INSERT INTO first_names_copy")
    assert finished(client, headers, q2["id"])["rowCount"] == 1
    q3 = submit(client, headers, sql="SELECT count(*) AS n FROM first_names_copy")
    assert finished(client, headers, q3["id"])["state"] == "SUCCESS"
    assert client.get(f"{QS}/queries/{q3['id']}/results", params={"format": "json"}, headers=headers).json() == [
        {"n": 3}
    ]


def test_results_of_ctas_and_insert_name_the_dataset_they_went_into(
    client: TestClient, headers: dict[str, str], people: str
) -> None:
    ctas = submit(client, headers, sql="SELECT _id FROM people_list", ctasParameters={"datasetName": "Ids Copy"})
    done = finished(client, headers, ctas["id"])
    assert done["state"] == "SUCCESS", done
    created = done["_links"]["created_dataset"]["id"]
    assert "results" not in done["_links"]
    assert_problem(
        client.get(f"{QS}/queries/{ctas['id']}/results", headers=headers),
        404,
        "100940-404",
        "CTAS",
        f"2 rows went into dataset '{created}'",
        "_links.created_dataset",
        "ids_copy",
    )
    insert = submit(client, headers, sql="SELECT 'r3' AS _id", insertIntoParameters={"datasetName": "Ids Copy"})
    assert finished(client, headers, insert["id"])["state"] == "SUCCESS"
    assert_problem(
        client.get(f"{QS}/queries/{insert['id']}/results", params={"format": "json"}, headers=headers),
        404,
        "100940-404",
        "INSERT INTO",
        f"1 rows went into dataset '{created}'",
        "ids_copy",
    )


def test_a_query_is_answered_submitted_even_when_a_job_took_it_at_once(
    client: TestClient, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = client.app.state.container.query_runs  # type: ignore[attr-defined]
    store = client.app.state.container.store  # type: ignore[attr-defined]

    def wake_and_run() -> None:
        """A worker as quick as can be: each submitted query runs to its end before the POST answers."""
        q = t.queries.c
        with store.read() as conn:
            waiting = conn.execute(select(q.id, q.org_id, q.sandbox).where(q.state == "SUBMITTED")).all()
        for row in waiting:
            runs.execute(row.id, Scope(row.org_id, row.sandbox))

    monkeypatch.setattr(runs, "_wake", wake_and_run)
    resp = client.post(f"{QS}/queries", json={"sql": "SELECT 1 AS one"}, headers=headers)
    assert resp.status_code == 202, resp.text
    answer = resp.json()
    assert answer["state"] == "SUBMITTED" and answer["rowCount"] == 0 and answer["elapsedTime"] == 0
    assert answer["errors"] == [] and "results" not in answer["_links"]
    assert answer["request"] == {"sql": "SELECT 1 AS one", "dbName": "prod:all"}
    now = client.get(f"{QS}/queries/{answer['id']}", headers=headers).json()
    assert now["state"] == "SUCCESS" and now["rowCount"] == 1 and now["created"] == answer["created"]


def test_query_parameters_fill_the_sql(client: TestClient, headers: dict[str, str], people: str) -> None:
    q = submit(
        client,
        headers,
        sql="SELECT person.name.firstName AS first FROM $table WHERE person.name.firstName = '$literal' OR 1 = $one",
        queryParameters={"table": "people_list", "one": 2, "literal": "unused"},
    )
    assert q["effectiveSQL"].startswith("SELECT person.name.firstName AS first FROM people_list WHERE")
    assert "'$literal'" in q["effectiveSQL"]  # inside a string it is text, not a parameter
    assert finished(client, headers, q["id"])["rowCount"] == 0
    assert_problem(
        client.post(f"{QS}/queries", json={"sql": "SELECT $missing"}, headers=headers),
        400,
        "100910-400",
        "$missing",
    )


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ({"sql": "SELEC 1"}, ["sql", "syntax error"]),
        ({"sql": "DROP TABLE people_list"}, ["sql", "DROP TABLE", "42501"]),
        ({"sql": "SELECT * FROM read_csv('/etc/passwd')"}, ["read_csv"]),
        ({}, ["sql"]),
        ({"sql": "SELECT 1", "templateId": "0094d000-9062-4e6a-8fdb-05606805f08f"}, ["templateId"]),
        ({"sql": "SELECT 1", "dbName": "dev:all"}, ["dbName", "dev:all"]),
        ({"sql": "SELECT 1", "colour": "red"}, ["colour"]),
        ({"sql": "INSERT INTO x SELECT 1", "ctasParameters": {"datasetName": "y"}}, ["ctasParameters", "INSERT"]),
    ],
)
def test_bad_requests_are_refused_before_they_run(
    client: TestClient, headers: dict[str, str], body: dict[str, Any], needles: list[str]
) -> None:
    assert_problem(client.post(f"{QS}/queries", json=body, headers=headers), 400, "100910-400", *needles)
    assert client.get(f"{QS}/queries", headers=headers).json()["queries"] == []


def test_list_pages_filters_and_soft_delete(client: TestClient, headers: dict[str, str]) -> None:
    ids = [submit(client, headers, sql=f"SELECT {n} AS n")["id"] for n in range(3)]
    for query_id in ids:
        finished(client, headers, query_id)
    listed = client.get(f"{QS}/queries", params={"limit": 2}, headers=headers).json()
    assert [q["id"] for q in listed["queries"]] == ids[::-1][:2]  # newest first
    assert listed["_page"]["count"] == 2 and "next" in listed["_links"]
    rest = client.get(listed["_links"]["next"]["href"], headers=headers).json()
    assert [q["id"] for q in rest["queries"]] == [ids[0]]
    oldest_first = client.get(f"{QS}/queries", params={"orderby": "+created"}, headers=headers).json()
    assert [q["id"] for q in oldest_first["queries"]] == ids
    by_id = client.get(f"{QS}/queries", params={"property": f"id=={ids[1]}"}, headers=headers).json()
    assert [q["id"] for q in by_id["queries"]] == [ids[1]]
    by_sql = client.get(f"{QS}/queries", params={"property": "sql~SELECT 2,state==SUCCESS"}, headers=headers)
    assert [q["id"] for q in by_sql.json()["queries"]] == [ids[2]]
    any_case = client.get(f"{QS}/queries", params={"property": "sql~select 2"}, headers=headers)
    assert [q["id"] for q in any_case.json()["queries"]] == [ids[2]]  # on SQLite and PostgreSQL alike
    resp = client.patch(f"{QS}/queries/{ids[0]}", json={"op": "soft_delete"}, headers=headers)
    assert resp.status_code == 202, resp.text
    kept = client.get(f"{QS}/queries", headers=headers).json()["queries"]
    assert ids[0] not in [q["id"] for q in kept]
    every = client.get(f"{QS}/queries", params={"excludeSoftDeleted": "false"}, headers=headers).json()["queries"]
    assert ids[0] in [q["id"] for q in every]
    assert client.get(f"{QS}/queries/{ids[0]}", headers=headers).status_code == 200
    assert_problem(client.get(f"{QS}/queries", params={"property": "colour==red"}, headers=headers), 400, "100910-400")
    assert_problem(client.get(f"{QS}/queries", params={"orderby": "name"}, headers=headers), 400, "100910-400")


def test_cancel_kills_a_running_query(client: TestClient, headers: dict[str, str]) -> None:
    q = submit(client, headers, sql="SELECT sum(x.range * y.range) AS s FROM range(300000) x, range(300000) y")
    wait_for(
        lambda: client.get(f"{QS}/queries/{q['id']}", headers=headers).json()["state"] != "SUBMITTED",
        what="the query to start",
    )
    resp = client.patch(f"{QS}/queries/{q['id']}", json={"op": "cancel"}, headers=headers)
    assert resp.status_code == 202, resp.text
    done = finished(client, headers, q["id"])
    assert done["state"] == "KILLED", done
    assert done["errors"][0]["code"] == "57014"
    assert_problem(
        client.patch(f"{QS}/queries/{q['id']}", json={"op": "cancel"}, headers=headers), 409, "100950-409", "KILLED"
    )
    assert_problem(
        client.patch(f"{QS}/queries/{q['id']}", json={"op": "stop"}, headers=headers), 400, "100910-400", "op"
    )


def test_another_sandbox_cannot_see_or_touch_a_query(
    client: TestClient, headers: dict[str, str], dev_headers: dict[str, str], other_org_headers: dict[str, str]
) -> None:
    q = submit(client, headers, sql="SELECT 1 AS one")
    finished(client, headers, q["id"])
    for outsider in (dev_headers, other_org_headers):
        assert_problem(client.get(f"{QS}/queries/{q['id']}", headers=outsider), 404, "100940-404", q["id"])
        assert_problem(client.get(f"{QS}/queries/{q['id']}/results", headers=outsider), 404, "100940-404")
        assert_problem(
            client.patch(f"{QS}/queries/{q['id']}", json={"op": "soft_delete"}, headers=outsider), 404, "100940-404"
        )
        assert client.get(f"{QS}/queries", headers=outsider).json()["queries"] == []


def test_every_query_endpoint_needs_the_aep_headers(client: TestClient) -> None:
    for method, path in (
        ("GET", "/connection_parameters"),
        ("GET", "/queries"),
        ("POST", "/queries"),
        ("GET", "/queries/x"),
        ("PATCH", "/queries/x"),
        ("GET", "/queries/x/results"),
    ):
        assert_problem(client.request(method, QS + path), 401, "100920-401")
