"""The Query Service over a real sandbox: credentials, its datasets and profiles as tables, CTAS and INSERT as
batches, and nothing of another sandbox or org."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.query.duckdb import DuckDBSession
from audiencehub.query.errors import QueryError
from audiencehub.services.query import QueryService
from tests.api.support import headers_for
from tests.api.xdm_support import (
    CATALOG,
    IDENTITY_MAP_FG,
    PERSON_FG,
    PROFILE_CLASS,
    dataset,
    enable_profile,
    ingest,
    json_lines,
    schema,
)
from tests.conftest import test_settings

PEOPLE = [
    {
        "_id": "r1",
        "identityMap": {"Email": [{"id": "pat@example.com", "primary": True}]},
        "person": {"name": {"firstName": "Pat", "lastName": "Lee"}},
    },
    {
        "_id": "r2",
        "identityMap": {"Email": [{"id": "sam@example.com", "primary": True}]},
        "person": {"name": {"firstName": "Sam"}},
    },
]


def token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def service(client: TestClient) -> QueryService:
    found: QueryService = client.app.state.container.query  # type: ignore[attr-defined]
    return found


def open_session(client: TestClient, headers: dict[str, str], database: str | None = None) -> DuckDBSession:
    return service(client).open(
        user=headers["x-gw-ims-org-id"], password=token(headers), database=database or headers["x-sandbox-name"]
    )


def rows(session: DuckDBSession, sql: str) -> list[dict[str, Any]]:
    return [r for b in session.execute(sql).batches for r in b.to_pylist()]


@pytest.fixture
def people(client: TestClient, headers: dict[str, str]) -> str:
    """A profile-enabled dataset "CRM People (EU)" with two records; answers its id."""
    sid = schema(client, headers, "People", PROFILE_CLASS, IDENTITY_MAP_FG, PERSON_FG)
    enable_profile(client, headers, sid)
    ds = dataset(client, headers, "CRM People (EU)", sid, profile=True)
    assert ingest(client, headers, ds, json_lines(*PEOPLE))["status"] == "success"
    return ds


@pytest.fixture
def session(client: TestClient, headers: dict[str, str], people: str) -> Iterator[DuckDBSession]:
    s = open_session(client, headers)
    yield s
    s.close()


def test_a_dataset_is_its_table_name_in_lower_snake_case(session: DuckDBSession) -> None:
    assert "crm_people_eu" in session.tables()
    got = rows(session, "SELECT person.name.firstName AS first, identityMap['Email'][0].id AS email FROM crm_people_eu")
    assert sorted((r["first"], r["email"]) for r in got) == [("Pat", "pat@example.com"), ("Sam", "sam@example.com")]


def test_the_profile_store_is_a_read_only_table(
    client: TestClient, headers: dict[str, str], session: DuckDBSession
) -> None:
    (name,) = [t for t in session.tables() if t.startswith("profile_snapshot_export_")]
    policy = client.get("/data/core/ups/config/mergePolicies", headers=headers).json()["children"]
    default = next(p for p in policy if p["default"])
    assert name == "profile_snapshot_export_" + default["id"].replace("-", "_")
    got = rows(session, f"SELECT person.name.lastName AS last, identityMap['Email'][0].id AS email FROM {name}")
    assert sorted((r["email"], r["last"]) for r in got) == [("pat@example.com", "Lee"), ("sam@example.com", None)]
    with pytest.raises(QueryError) as err:
        session.execute(f"INSERT INTO {name} SELECT * FROM {name}")
    assert err.value.sqlstate == "42501"


def test_a_new_batch_shows_in_an_open_session(
    client: TestClient, headers: dict[str, str], people: str, session: DuckDBSession
) -> None:
    assert rows(session, "SELECT count(*) AS n FROM crm_people_eu") == [{"n": 2}]
    more = {**PEOPLE[0], "_id": "r3", "identityMap": {"Email": [{"id": "kim@example.com", "primary": True}]}}
    assert ingest(client, headers, people, json_lines(more))["status"] == "success"
    assert rows(session, "SELECT count(*) AS n FROM crm_people_eu") == [{"n": 3}]


def test_ctas_makes_a_dataset_with_an_adhoc_schema(
    client: TestClient, headers: dict[str, str], session: DuckDBSession
) -> None:
    result = session.execute(
        "CREATE TABLE first_names AS SELECT person.name.firstName AS first_name, "
        "named_struct('email', identityMap['Email'][0].id) AS contact FROM crm_people_eu"
    )
    assert (result.tag, result.columns, result.rowcount) == ("SELECT", None, 2)
    listed = client.get(f"{CATALOG}/dataSets", params={"name": "first_names"}, headers=headers).json()
    ((dataset_id, body),) = listed.items()
    assert body["lastBatchStatus"] == "success"
    got = rows(session, "SELECT first_name, contact.email FROM first_names ORDER BY first_name")
    assert got == [{"first_name": "Pat", "email": "pat@example.com"}, {"first_name": "Sam", "email": "sam@example.com"}]
    with pytest.raises(QueryError) as err:
        session.execute("CREATE TABLE first_names AS SELECT 1 AS first_name")
    assert err.value.sqlstate == "42P07"
    inserted = session.execute("INSERT INTO first_names SELECT 'Kim' AS first_name")
    assert (inserted.tag, inserted.rowcount) == ("INSERT", 1)
    assert rows(session, "SELECT count(*) AS n FROM first_names") == [{"n": 3}]
    batches = client.get(f"{CATALOG}/batches", params={"dataSet": dataset_id}, headers=headers).json()
    assert len(batches) >= 2


def test_insert_checks_the_datasets_fields(session: DuckDBSession) -> None:
    with pytest.raises(QueryError) as err:
        session.execute("INSERT INTO crm_people_eu SELECT 'x' AS nickname")
    assert err.value.sqlstate == "42703" and "nickname" in err.value.message
    with pytest.raises(QueryError) as err:
        session.execute("CREATE TABLE bad AS SELECT count(*) FROM crm_people_eu")
    assert err.value.sqlstate == "42601" and "AS some_name" in err.value.message


def test_another_sandbox_sees_none_of_it(
    client: TestClient, headers: dict[str, str], dev_headers: dict[str, str], session: DuckDBSession
) -> None:
    dev = open_session(client, dev_headers)
    try:
        assert "crm_people_eu" not in dev.tables()
        with pytest.raises(QueryError) as err:
            dev.execute("SELECT * FROM crm_people_eu")
        assert err.value.sqlstate == "42P01"
        (profile,) = [t for t in dev.tables() if t.startswith("profile_snapshot_export_")]
        assert rows(dev, f"SELECT count(*) AS n FROM {profile}") == [{"n": 0}]
    finally:
        dev.close()


def test_another_org_sees_none_of_it(
    client: TestClient, other_org_headers: dict[str, str], session: DuckDBSession
) -> None:
    other = open_session(client, other_org_headers)
    try:
        assert "crm_people_eu" not in other.tables()
    finally:
        other.close()


def test_credentials_are_checked(
    client: TestClient, headers: dict[str, str], other_org_headers: dict[str, str]
) -> None:
    org = headers["x-gw-ims-org-id"]
    svc = service(client)
    for user, password, database, state in (
        (org, "not-a-token", "prod", "28P01"),
        (org, token(other_org_headers), "prod", "28P01"),  # a token of another org
        (other_org_headers["x-gw-ims-org-id"], token(headers), "prod", "28P01"),
        (org, token(headers), "nosuchsandbox", "3D000"),
    ):
        with pytest.raises(QueryError) as err:
            svc.open(user=user, password=password, database=database)
        assert err.value.sqlstate == state, (user, database, err.value.message)
        assert password not in err.value.message
    s = svc.open(user=org, password=token(headers), database="prod:all")
    s.close()


def test_the_engine_can_read_the_files_itself(tmp_path: Path) -> None:
    """AUDIENCEHUB_QUERY_NATIVE_PARQUET: the same answers; a new batch (a new allowed file) shows at once."""
    settings = test_settings(tmp_path / "native-home", query_native_parquet=True)
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        sid = schema(client, headers, "People", PROFILE_CLASS, IDENTITY_MAP_FG, PERSON_FG)
        ds = dataset(client, headers, "Native People", sid)
        assert ingest(client, headers, ds, json_lines(PEOPLE[0]))["status"] == "success"
        s = open_session(client, headers)
        try:
            assert rows(s, "SELECT person.name.lastName AS last FROM native_people") == [{"last": "Lee"}]
            assert ingest(client, headers, ds, json_lines(PEOPLE[1]))["status"] == "success"
            got = rows(s, "SELECT person.name.firstName AS first FROM native_people ORDER BY 1")
            assert got == [{"first": "Pat"}, {"first": "Sam"}]
            with pytest.raises(QueryError) as err:
                s.execute("SELECT * FROM read_parquet('x.parquet')")
            assert err.value.sqlstate == "42501"
        finally:
            s.close()
