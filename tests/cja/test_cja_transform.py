"""Seed 002's "Transform JSON" step: the export's memberships as the JSON the seed documents, per membership or per
person, and ingested into a dataset of the schema the seed's UI steps make."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import assert_problem
from tests.api.xdm_support import CATALOG, SR
from tests.exports.support import (
    BLUE,
    FEMALE,
    GOLD,
    PEOPLE,
    SEED_EXPORT,
    WITH_RECORDS,
    Sandbox,
    batch_rows,
    build,
    create_dataset,
    post_export,
    wait_export,
)

TRANSFORM = "/data/core/ups/cja/transform"
NAMES = {"blue": "Luma - Blue+ Members", "gold": "Luma - Gold", "women": "Women"}


@dataclass
class Exported:
    sandbox: Sandbox
    dataset: str

    @property
    def person_field(self) -> str:
        return f"_{self.sandbox.tenant}.identification.core.email"

    def ids(self) -> dict[str, str]:
        return {"blue": self.sandbox.blue, "gold": self.sandbox.gold, "women": self.sandbox.women}


@pytest.fixture
def exported(client: TestClient, headers: dict[str, str]) -> Exported:
    """Seed 002 up to its export: three audiences exported with the seed's body."""
    s = build(client, headers)
    dataset = create_dataset(client, headers)
    body = SEED_EXPORT % {"fields": s.fields, "a1": s.blue, "a2": s.gold, "a3": s.women, "dataset": dataset}
    assert wait_export(client, headers, post_export(client, headers, body)["id"])["status"] == "SUCCEEDED"
    return Exported(s, dataset)


def expected_pairs(e: Exported) -> list[tuple[str, str]]:
    """(audience id, person) for every realized membership of the chosen audiences among exported people with an
    email, ordered as the seed's query numbers them (by audience id, then person)."""
    realized = {"blue": set(BLUE), "gold": set(GOLD[:-1]), "women": FEMALE}
    pairs = [(e.ids()[k], p) for k, people in realized.items() for p in people if p in WITH_RECORDS]
    return sorted(pairs)


def transform(client: TestClient, headers: dict[str, str], e: Exported, **extra: Any) -> Any:
    body = {"datasetId": e.dataset, "personIdField": e.person_field, "audienceIds": list(e.ids().values()), **extra}
    resp = client.post(TRANSFORM, json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp


def test_the_transform_answers_the_seeds_documented_json(
    client: TestClient, headers: dict[str, str], exported: Exported
) -> None:
    resp = transform(client, headers, exported, tenant="_demoemea")

    assert resp.headers["content-type"].startswith("application/json")
    got = resp.json()
    names = {exported.ids()[k]: v for k, v in NAMES.items()}
    want = [
        {
            "_id": str(n),
            "personID": person,
            "_demoemea": {"audienceMembershipId": audience, "audienceMembershipName": names[audience]},
        }
        for n, (audience, person) in enumerate(expected_pairs(exported), start=1)
    ]
    assert got == want
    assert int(resp.headers["x-record-count"]) == len(want)
    # The objects keep the seed's key order.
    assert list(got[0]) == ["_id", "personID", "_demoemea"]
    assert list(got[0]["_demoemea"]) == ["audienceMembershipId", "audienceMembershipName"]


def test_the_tenant_defaults_to_the_orgs_and_per_person_holds_a_list(
    client: TestClient, headers: dict[str, str], exported: Exported
) -> None:
    tenant = f"_{exported.sandbox.tenant}"
    got = transform(client, headers, exported, perPerson=True).json()

    names = {exported.ids()[k]: v for k, v in NAMES.items()}
    by_person: dict[str, list[dict[str, str]]] = {}
    for audience, person in expected_pairs(exported):
        by_person.setdefault(person, []).append(
            {"audienceMembershipId": audience, "audienceMembershipName": names[audience]}
        )
    assert [g["_id"] for g in got] == [str(n) for n in range(1, len(by_person) + 1)]
    assert {g["personID"]: g[tenant]["audienceMemberships"] for g in got} == by_person
    assert set(by_person) < set(PEOPLE)


def test_the_transform_ingests_into_a_dataset_of_the_seeds_schema(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str], exported: Exported
) -> None:
    answer = transform(client, headers, exported, ingest={}).json()

    assert answer["batchStatus"] == "success", answer
    assert answer["records"] == len(expected_pairs(exported))
    ds = client.get(f"{CATALOG}/dataSets/{answer['datasetId']}", headers=headers).json()[answer["datasetId"]]
    assert ds["name"] == "Audience Export for CJA" and ds["schemaRef"]["id"] == answer["schemaId"]
    xdm = {**headers, "Accept": "application/vnd.adobe.xdm+json"}
    descriptors = client.get(f"{SR}/tenant/descriptors", headers=xdm).json()["xdm:descriptorIdentity"]
    identity = [d for d in descriptors if d["xdm:sourceSchema"] == answer["schemaId"]]
    assert [(d["xdm:sourceProperty"], d["xdm:namespace"], d["xdm:isPrimary"]) for d in identity] == [
        ("/personID", "Email", True)
    ]
    rows = batch_rows(settings, creds, answer["datasetId"], answer["batchId"])
    tenant = f"_{exported.sandbox.tenant}"
    got = sorted((r[tenant]["audienceMembershipId"], r["personID"]) for r in rows)
    assert got == expected_pairs(exported)
    # A second transform lands in the same dataset.
    again = transform(client, headers, exported, ingest={}).json()
    assert again["datasetId"] == answer["datasetId"] and again["batchStatus"] == "success"


def test_refusals_name_the_field(client: TestClient, headers: dict[str, str], exported: Exported) -> None:
    base = {
        "datasetId": exported.dataset,
        "personIdField": exported.person_field,
        "audienceIds": [exported.sandbox.blue],
    }
    cases: list[tuple[dict[str, Any], int, list[str]]] = [
        ({"audienceIds": ["nope"]}, 400, ["audienceIds[0]", "nope"]),
        ({"audienceIds": []}, 400, ["audienceIds"]),
        ({"personIdField": "email; DROP TABLE x"}, 400, ["personIdField"]),
        ({"datasetId": "nope"}, 404, ["nope"]),
        ({"statuses": ["gone"]}, 400, ["statuses", "gone"]),
        ({"tenant": "a b"}, 400, ["tenant"]),
        ({"perPerson": "yes"}, 400, ["perPerson"]),
        ({"personIdField": "person.nickName"}, 400, ["query", "nickName"]),
    ]
    for change, status, needles in cases:
        resp = client.post(TRANSFORM, json={**base, **change}, headers=headers)
        assert_problem(resp, status, "100910-400" if status == 400 else "100940-404", *needles)


def test_another_sandbox_cannot_read_the_export(
    client: TestClient, headers: dict[str, str], dev_headers: dict[str, str], exported: Exported
) -> None:
    body = {"datasetId": exported.dataset, "personIdField": exported.person_field, "audienceIds": ["x"]}
    assert_problem(client.post(TRANSFORM, json=body, headers=dev_headers), 404, "100940-404", exported.dataset)


def test_json_lines_become_one_array(tmp_path: Any) -> None:
    from audiencehub.services.cja import json_array

    src, out = tmp_path / "in.jsonl", tmp_path / "out.json"
    records = [{"_id": str(n), "text": "a\nb" * (n % 3)} for n in range(50_000)]
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    json_array(src, out)
    assert json.loads(out.read_text()) == records
    src.write_text("")
    json_array(src, out)
    assert json.loads(out.read_text()) == []
