"""Batch ingestion (XDM records in JSON, CSV and Parquet files) gives the same results on DuckDB and Spark.

Both apps get the same schema (typed tenant fields, person details, an identityMap, personID as the
primary Email identity) on a profile-enabled dataset, and the same files. Compared: the batch's status,
counts and error description, the failed-records file, and the dataset batch's rows and Arrow types.
Each org has its own tenant id, and the ids of batches differ: they are replaced by placeholders first.
Maps are compared as sets of entries: a Spark VARIANT object keeps its keys sorted, so Spark builds an
identityMap in key order where DuckDB keeps the order of the record.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from tests.api.xdm_support import (
    CATALOG,
    IDENTITY_MAP_FG,
    IMPORT,
    PERSON_FG,
    PROFILE_CLASS,
    dataset,
    enable_profile,
    field_group,
    identity,
    schema,
    tenant,
)
from tests.conftest import wait_for
from tests.parity.conftest import App
from tests.parity.support import TENANT_FIELDS, written_by

TENANT = "_TENANT"
FIELDS = TENANT_FIELDS
ECID = ["12345678901234567890123456789012345678", "22345678901234567890123456789012345678", "3" * 38]
Records = Callable[[str], Any]
"""Builds a file's records for a tenant field name (``_<tenant id>``)."""


@pytest.fixture(scope="module")
def datasets(apps: tuple[App, App]) -> dict[str, tuple[str, str]]:
    """Per engine: the dataset id and the tenant field name."""
    out = {}
    for app in apps:
        fg = field_group(app.client, app.headers, "Parity fields", FIELDS)
        sid = schema(app.client, app.headers, "Parity people", PROFILE_CLASS, fg, PERSON_FG, IDENTITY_MAP_FG)
        identity(app.client, app.headers, sid, "/personID", "Email", True)
        enable_profile(app.client, app.headers, sid)
        out[app.engine] = (
            dataset(app.client, app.headers, "Parity people", sid, profile=True),
            "_" + tenant(app.client, app.headers),
        )
    return out


def _ingest(app: App, dataset_id: str, content: bytes, fmt: str, name: str) -> dict[str, Any]:
    client, headers = app.client, app.headers
    resp = client.post(
        f"{IMPORT}/batches", json={"datasetId": dataset_id, "inputFormat": {"format": fmt}}, headers=headers
    )
    assert resp.status_code == 201, resp.text
    batch_id = resp.json()["id"]
    resp = client.put(
        f"{IMPORT}/batches/{batch_id}/datasets/{dataset_id}/files/{name}",
        content=content,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert resp.status_code == 200, resp.text
    assert client.post(f"{IMPORT}/batches/{batch_id}?action=COMPLETE", headers=headers).status_code == 200

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]
        return body if body["status"] in ("success", "failed") else None

    return wait_for(finished, timeout=180, interval=0.2, what="batch ingestion")


def _failed(client: TestClient, headers: dict[str, str], batch_id: str) -> list[Any]:
    listing = client.get(f"/data/foundation/export/batches/{batch_id}/failed", headers=headers)
    if listing.status_code != 200:
        return []
    out = []
    for entry in listing.json()["data"]:
        text = client.get(
            f"/data/foundation/export/batches/{batch_id}/failed", params={"path": entry["name"]}, headers=headers
        ).text
        out += [json.loads(line) for line in text.splitlines()]
    return out


def _normal(value: Any) -> Any:
    """Maps (pyarrow's lists of (key, value) pairs) in key order, recursively."""
    if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return sorted((k, _normal(v)) for k, v in value)
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def _outcome(app: App, dataset_id: str, field: str, content: bytes, fmt: str, name: str) -> dict[str, Any]:
    batch = _ingest(app, dataset_id, content, fmt, name)
    parts = sorted((app.settings.home / "lake" / app.org / "prod" / dataset_id / batch["id"]).glob("*.parquet"))
    tables = [pq.read_table(p) for p in parts]
    text = json.dumps(
        {
            "status": batch["status"],
            "records": batch.get("recordCount"),
            "failed": batch.get("failedRecordCount"),
            "errors": [{k: v for k, v in e.items()} for e in batch.get("errors", [])],
            "failed_records": sorted(_failed(app.client, app.headers, batch["id"]), key=lambda r: r["_record"]),
            "types": [[f.name, str(f.type)] for f in tables[0].schema] if tables else [],
            "rows": sorted(
                (_normal(r) for t in tables for r in t.to_pylist()), key=lambda r: json.dumps(r, default=str)
            ),
        },
        default=str,
        sort_keys=True,
    )
    out: dict[str, Any] = json.loads(text.replace(field, TENANT).replace(batch["id"], "BATCH"))
    out["writers"] = sorted({written_by(p) for p in parts})
    return out


def _both(
    apps: tuple[App, App], datasets: dict[str, tuple[str, str]], make: Callable[[str], bytes], fmt: str, name: str
) -> dict[str, Any]:
    got = {}
    for app in apps:
        dataset_id, field = datasets[app.engine]
        got[app.engine] = _outcome(app, dataset_id, field, make(field), fmt, name)
    duck, spark = got["duckdb"], got["spark"]
    assert duck["writers"] == (["duckdb"] if duck["rows"] else []) and spark["writers"] == (
        ["spark"] if spark["rows"] else []
    )
    for key in ("status", "records", "failed", "errors", "failed_records", "types", "rows"):
        assert spark[key] == duck[key], f"{key} differs:\nduckdb: {duck[key]}\nspark:  {spark[key]}\n{spark['errors']}"
    return duck


def _people(field: str) -> list[dict[str, Any]]:
    return [
        {
            "_id": "1",
            "personID": "Ann@Example.com",
            "person": {"name": {"firstName": "Ann", "lastName": "Lee"}, "birthDate": "1990-01-31"},
            "identityMap": {"Email": [{"id": "ann@example.com", "primary": True}], "ECID": [{"id": ECID[0]}]},
            field: {
                "visits": 3,
                "score": 1.5,
                "vip": True,
                "joined": "2020-02-29",
                "seen": "2025-05-23T20:19:00Z",
                "tags": ["a", "b"],
                "tier": "gold",
            },
        },
        {
            "_id": "2",
            "personID": "bob@example.com",
            # As AEP converts them: numbers and booleans as text, a date-time as epoch milliseconds.
            field: {"visits": "12", "score": "2e3", "vip": "false", "seen": 1716000000000, "tags": []},
        },
        {"_id": "3", "personID": "cy@example.com", "identityMap": {"ECID": [{"id": ECID[1]}, {"id": ECID[2]}]}},
    ]


def test_json_lines_of_valid_records(apps: tuple[App, App], datasets: dict[str, tuple[str, str]]) -> None:
    got = _both(apps, datasets, lambda f: "".join(json.dumps(r) + "\n" for r in _people(f)).encode(), "json", "p.json")
    assert got["status"] == "success" and got["records"] == 3 and len(got["rows"]) == 3, got["errors"]


def test_a_json_array_of_valid_records(apps: tuple[App, App], datasets: dict[str, tuple[str, str]]) -> None:
    got = _both(apps, datasets, lambda f: json.dumps(_people(f), indent=2).encode(), "json", "p.json")
    assert got["status"] == "success" and len(got["rows"]) == 3


def test_rejected_records_and_their_reasons(apps: tuple[App, App], datasets: dict[str, tuple[str, str]]) -> None:
    def make(field: str) -> bytes:
        records: list[Any] = [
            *_people(field),
            {"_id": "4", "personID": "not-an-email"},
            {"_id": "5", "personID": "d@example.com", field: {"visits": 1.5}},
            {"_id": "6", "personID": "e@example.com", field: {"visits": 3000000000, "tier": "red"}},
            {"_id": "7", "personID": "f@example.com", field: {"joined": "2020-02-30", "seen": "2025"}},
            {"_id": "8", "personID": "g@example.com", field: {"unknown": 1}, "identityMap": {"Nope": [{"id": "x"}]}},
            {"_id": "9", "personID": "h@example.com", "person": {"name": {"firstName": 42}}, field: {"tags": [1]}},
            {"personID": "i@example.com", field: {"score": "NaN", "vip": "maybe"}},
            "not an object",
        ]
        return ("".join(json.dumps(r) + "\n" for r in records) + "{broken\n").encode()

    got = _both(apps, datasets, make, "json", "bad.json")
    assert got["status"] == "failed" and got["records"] == 12 and got["failed"] >= 8, got
    assert len(got["failed_records"]) == got["failed"]


def test_a_csv_file_with_dotted_headers(apps: tuple[App, App], datasets: dict[str, tuple[str, str]]) -> None:
    def make(field: str) -> bytes:
        return (
            f"_id,personID,person.name.firstName,{field}.visits,{field}.score,{field}.vip,{field}.seen\n"
            "1,a@example.com,Ann,3,1.5,true,2025-05-23T20:19:00Z\n"
            '2,b@example.com,"Lee, Bo",,,,\n'
            "3,c@example.com,,7,-0.25,false,2025-01-01T00:00:00+02:00\n"
        ).encode()

    got = _both(apps, datasets, make, "csv", "p.csv")
    assert got["status"] == "success" and len(got["rows"]) == 3


def test_a_csv_file_with_rejected_records(apps: tuple[App, App], datasets: dict[str, tuple[str, str]]) -> None:
    def make(field: str) -> bytes:
        return (
            f"_id,personID,{field}.visits,{field}.vip\n1,a@example.com,3,true\n2,nope,x,maybe\n,c@example.com,,\n"
        ).encode()

    got = _both(apps, datasets, make, "csv", "bad.csv")
    assert got["status"] == "failed" and got["failed"] == 1 and got["records"] == 3


def test_a_parquet_file(apps: tuple[App, App], datasets: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    def make(field: str) -> bytes:
        table = pa.table(
            {
                "_id": ["1", "2"],
                "personID": ["a@example.com", "b@example.com"],
                "person": [{"name": {"firstName": "Ann"}}, None],
                field: pa.array(
                    [
                        {
                            "visits": 3,
                            "score": 1.5,
                            "vip": True,
                            "tags": ["x"],
                            "joined": dt.date(2020, 2, 29),
                            "seen": dt.datetime(2025, 5, 23, 20, 19, 0, 500000, tzinfo=dt.UTC),
                        },
                        {
                            "visits": None,
                            "score": 2.0,
                            "vip": False,
                            "tags": [],
                            "joined": None,
                            "seen": dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
                        },
                    ],
                    # Dates and date-times as Parquet's own types (a CTAS on either engine writes them so).
                    pa.struct(
                        [
                            ("visits", pa.int64()),
                            ("score", pa.float64()),
                            ("vip", pa.bool_()),
                            ("tags", pa.list_(pa.string())),
                            ("joined", pa.date32()),
                            ("seen", pa.timestamp("us", tz="UTC")),
                        ]
                    ),
                ),
            }
        )
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()

    got = _both(apps, datasets, make, "parquet", "p.parquet")
    assert got["status"] == "success" and len(got["rows"]) == 2
    seen = sorted(str(r[TENANT]["seen"]) for r in got["rows"])
    assert seen == ["1969-12-31 23:59:59+00:00", "2025-05-23 20:19:00.500000+00:00"], seen
