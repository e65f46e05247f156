"""Seed 002's sandbox for the export tests: a profile dataset, external audiences, a segment definition."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import csv_bytes, dataset_dir
from tests.api.xdm_support import (
    CATALOG,
    IDENTITY_MAP_FG,
    PERSON_FG,
    PROFILE_CLASS,
    dataset,
    enable_profile,
    field_group,
    ingest,
    json_lines,
    schema,
    tenant,
)
from tests.conftest import create_audience, run_and_wait, seed_audience, upload, wait_for
from tests.segments.support import define, evaluate

EXPORTS = "/data/core/ups/export/jobs"
AUDIENCE_NS = "CustomerAudienceUpload"
PEOPLE = [f"p{n}@example.com" for n in range(12)]
WITH_RECORDS = PEOPLE[:10]  # p10 and p11 are known only through audiences
BLUE = [*PEOPLE[0:6], PEOPLE[10]]  # "Luma - Blue+ Members"
GOLD = PEOPLE[4:9]  # "Luma - Gold"; p8 leaves it in a second run
OTHER = [PEOPLE[1], PEOPLE[9], PEOPLE[11]]  # an audience the export does not name
FEMALE = {p for n, p in enumerate(WITH_RECORDS) if n % 2 == 0}  # the segment definition "Women"
SEED_DATASET = {
    "name": "Segment Export Job Dataset for CJA",
    "schemaRef": {"id": "_xdm.context.profile__union", "contentType": "application/vnd.adobe.xed+json;version=1"},
    "fileDescription": {"persistet": True, "containerFormat": "parquet", "format": "parquet"},
}
SEED_EXPORT = """{
    "fields": "%(fields)s",
    "filter": {
        "segments": [
            {
                "segmentId": "%(a1)s",
                "segmentNs": "ups",
                "status": [
                    "realized"
                ],
                "segmentId": "%(a2)s",
                "segmentNs": "ups",
                "status": [
                    "realized"
                ],
                "segmentId": "%(a3)s",
                "segmentNs": "ups",
                "status": [
                    "realized"
                ]
             }
        ]
    },
    "destination":{
        "datasetId": "%(dataset)s",
        "segmentPerBatch": false
    },
    "schema":{
        "name": "_xdm.context.profile"
    }
}"""
"""Seed 002's export job body, verbatim (one ``filter.segments`` object that repeats its keys)."""


def person(email: str) -> dict[str, Any]:
    n = PEOPLE.index(email)
    return {
        "gender": "female" if email in FEMALE else "male",
        "name": {"firstName": f"First{n}", "lastName": f"Last{n}"},
    }


def core(email: str) -> dict[str, Any]:
    n = PEOPLE.index(email)
    return {"ecid": f"ecid-{n}", "email": email, "phoneNumber": f"+1555000{n:04d}"}


@dataclass
class Sandbox:
    tenant: str
    blue: str
    gold: str
    other: str
    women: str

    @property
    def fields(self) -> str:
        """The seed's example field list, for this tenant."""
        t = f"_{self.tenant}.identification.core"
        return f"{t}.ecid, {t}.email, {t}.phoneNumber, person.gender, person.name.firstName, person.name.lastName"


def external(client: TestClient, headers: dict[str, str], name: str, emails: list[str]) -> str:
    path = f"exports/{name.replace(' ', '_')}.csv"
    upload(client, headers, path, csv_bytes(["email", "delete"], [[e, 0] for e in emails]))
    fields = [{"name": "email", "type": "string", "identityNs": "Email"}, {"name": "delete", "type": "number"}]
    audience_id = create_audience(client, headers, seed_audience(path, name=name, fields=fields))
    assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"
    return audience_id


def build(client: TestClient, headers: dict[str, str]) -> Sandbox:
    """Profiles with the seed's fields, three external audiences and one evaluated segment definition."""
    t = tenant(client, headers)
    text = {"type": "string"}
    ident = field_group(
        client,
        headers,
        "Identification",
        {"identification": {"type": "object", "properties": {"core": {"type": "object", "properties": {
            "ecid": text, "email": text, "phoneNumber": text}}}}},
    )  # fmt: skip
    schema_id = schema(client, headers, "Luma profiles", PROFILE_CLASS, IDENTITY_MAP_FG, PERSON_FG, ident)
    enable_profile(client, headers, schema_id)
    ds = dataset(client, headers, "Luma profiles", schema_id, profile=True)
    records = [
        {
            "identityMap": {"Email": [{"id": p, "primary": True}]},
            "person": person(p),
            f"_{t}": {"identification": {"core": core(p)}},
        }
        for p in WITH_RECORDS
    ]
    assert ingest(client, headers, ds, json_lines(*records))["status"] == "success"
    blue = external(client, headers, "Luma - Blue+ Members", BLUE)
    gold = external(client, headers, "Luma - Gold", GOLD)
    other = external(client, headers, "Luma - Other", OTHER)
    # The next run of "Luma - Gold" says p8 left: its membership reads exited.
    upload(client, headers, "exports/Luma_-_Gold.csv", csv_bytes(["email", "delete"], [[GOLD[-1], 1]]))
    assert run_and_wait(client, headers, gold)["status"] == "SUCCESS"
    women = define(client, headers, "Women", 'person.gender = "female"')
    assert evaluate(client, headers, women)["status"] == "SUCCEEDED"
    return Sandbox(t, blue, gold, other, women)


def create_dataset(client: TestClient, headers: dict[str, str], body: dict[str, Any] | None = None) -> str:
    resp = client.post(f"{CATALOG}/dataSets?requestDataSource=true", json=body or SEED_DATASET, headers=headers)
    assert resp.status_code == 201, resp.text
    (ref,) = resp.json()
    return str(ref).removeprefix("@/dataSets/")


def post_export(client: TestClient, headers: dict[str, str], body: dict[str, Any] | str) -> dict[str, Any]:
    content = body if isinstance(body, str) else json.dumps(body)
    resp = client.post(EXPORTS, content=content, headers={**headers, "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    created: dict[str, Any] = resp.json()
    return created


def wait_export(client: TestClient, headers: dict[str, str], job_id: int, timeout: float = 60.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = client.get(f"{EXPORTS}/{job_id}", headers=headers).json()
        return job if job["status"] in ("SUCCEEDED", "FAILED") else None

    found: dict[str, Any] = wait_for(done, timeout=timeout, what="export job")
    return found


def batch_rows(settings: Settings, creds: dict[str, str], dataset_id: str, batch_id: str) -> list[dict[str, Any]]:
    """The rows of one committed batch, read back from its Parquet files."""
    folder: Path = dataset_dir(settings, creds, dataset_id) / batch_id
    files = sorted(folder.glob("*.parquet"))
    assert files, f"no Parquet files in {folder}"
    result = duckdb.sql(f"SELECT * FROM read_parquet({[str(f) for f in files]})")
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def memberships(row: dict[str, Any]) -> dict[str, dict[str, str]]:
    """A row's ``segmentMembership`` as namespace → audience id → status."""
    found = row["segmentMembership"] or {}
    return {ns: {aid: m["status"] for aid, m in inner.items()} for ns, inner in found.items()}
