"""The "Datasets, batches and profiles" flow (seeds 000 and 002) with AUDIENCEHUB_PROFILE_STORE=lake answers as with the
embedded store: batches of profile-enabled datasets stitched with external audiences, merged profiles by either
identity and by a dataset-precedence merge policy, records' own memberships, entities kept apart, the Query Service's
profile table, and a deleted dataset's fragments gone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from audiencehub.app import create_app
from tests.api.support import assert_problem, headers_for
from tests.api.test_profile_merge import ACCESS, audience
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
from tests.query.test_queries_api import QS, finished, submit

MP = "/data/core/ups/config/mergePolicies"
SEGMENTATION_FG = "https://ns.adobe.com/xdm/context/profile-segmentation"
ECID = "12345678901234567890123456789012345678"


def _entity(client: TestClient, headers: dict[str, str], ns: str, value: str, **extra: str) -> Any:
    """The Access API's answer without what differs from one run of the flow to the next (the random profile id, the
    time of the audiences' runs)."""
    resp = client.get(
        ACCESS,
        params={"schema.name": "_xdm.context.profile", "entityId": value, "entityIdNS": ns, **extra},
        headers=headers,
    )
    if resp.status_code != 200:
        return resp.status_code, resp.json().get("errorCode") if resp.content else None
    ((key, body),) = resp.json().items()
    assert key == body["entityId"] and body["lastModifiedAt"]
    entity = body["entity"]
    for m in entity.get("segmentMembership", {}).get("CustomerAudienceUpload", {}).values():
        m.pop("lastQualificationTime")  # when the audience's run ran
    return {k: v for k, v in body.items() if k not in ("entityId", "lastModifiedAt", "mergePolicy")}


def _flow(home: Path, store: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with TestClient(create_app(test_settings(home, profile_store=store))) as client:
        headers = headers_for(client, home)
        by_email = audience(client, headers, "Email list", "email", "Email", "Pat@Example.com")
        by_crm = audience(client, headers, "CRM list", "crm", "CRMID", "crm-42")
        out["apart"] = [
            _entity(client, headers, "Email", "pat@example.com"),
            _entity(client, headers, "CRMID", "crm-42"),
        ]
        people = schema(client, headers, "People", PROFILE_CLASS, IDENTITY_MAP_FG, PERSON_FG, SEGMENTATION_FG)
        enable_profile(client, headers, people)
        crm = dataset(client, headers, "CRM people", people, profile=True)
        web = dataset(client, headers, "Web people", people, profile=True)
        linking = {
            "_id": "r1",
            "identityMap": {"Email": [{"id": "pat@example.com", "primary": True}], "CRMID": [{"id": "crm-42"}]},
            "person": {"name": {"firstName": "Pat", "lastName": "Lee"}},
        }
        out["batches"] = [ingest(client, headers, crm, json_lines(linking))["status"]]
        newer = {
            "_id": "w1",
            "identityMap": {"CRMID": [{"id": "crm-42", "primary": True}], "ECID": [{"id": ECID}]},
            "person": {"name": {"firstName": "Patricia"}},
            "segmentMembership": {
                "ups": {"seg-1": {"status": "realized", "lastQualificationTime": "2026-11-01T10:00:00Z"}}
            },
        }
        other = {"_id": "w2", "identityMap": {"Email": [{"id": "sam@example.com", "primary": True}]}}
        out["batches"].append(ingest(client, headers, web, json_lines(newer, other))["status"])
        out["merged"] = _entity(client, headers, "ECID", ECID)
        assert out["merged"] == _entity(client, headers, "email", "PAT@example.com")
        policy = client.post(
            MP,
            json={
                "name": "CRM first",
                "identityGraph": {"type": "pdg"},
                "attributeMerge": {"type": "dataSetPrecedence", "order": [crm, web]},
                "schema": {"name": "_xdm.context.profile"},
            },
            headers=headers,
        )
        assert policy.status_code == 200, policy.text
        out["by_precedence"] = _entity(client, headers, "CRMID", "crm-42", mergePolicyId=policy.json()["id"])
        out["unknown"] = _entity(client, headers, "Email", "nobody@x.com")

        default = next(p for p in client.get(MP, headers=headers).json()["children"] if p["default"])
        table = "profile_snapshot_export_" + default["id"].replace("-", "_")
        query = submit(
            client,
            headers,
            dbName="prod:all",
            sql=f"SELECT person.name.firstName AS first, identityMap['Email'][0].id AS email, "
            f"cardinality(segmentMembership['CustomerAudienceUpload']) AS audiences FROM {table} ORDER BY 2",
        )
        done = finished(client, headers, query["id"])
        assert done["state"] == "SUCCESS", done
        out["profile_table"] = client.get(
            f"{QS}/queries/{query['id']}/results", params={"format": "json"}, headers=headers
        ).json()

        assert client.delete(f"{CATALOG}/dataSets/{web}", headers=headers).status_code == 200
        out["after_delete"] = _entity(client, headers, "CRMID", "crm-42")
        assert_problem(
            client.get(ACCESS, params={"entityId": "x", "entityIdNS": "NoSuchNs"}, headers=headers),
            400,
            "100910-400",
            "entityIdNS",
        )
    # Ids are random in each run of the flow: name them.
    text = json.dumps(out)
    for value, name in ((crm, "CRM"), (web, "WEB"), (by_email, "EMAIL_LIST"), (by_crm, "CRM_LIST")):
        text = text.replace(value, name)
    named: dict[str, Any] = json.loads(text)
    for key in ("merged", "by_precedence", "after_delete"):
        named[key]["sources"].sort()
    return named


def test_the_profile_flow_on_the_lake_store_answers_as_on_the_embedded_one(tmp_path: Path) -> None:
    embedded = _flow(tmp_path / "embedded", "duckdb")
    lake = _flow(tmp_path / "lake", "lake")
    assert lake == embedded
    # The flow reaches what it means to test.
    assert embedded["batches"] == ["success", "success"]
    assert embedded["apart"][0]["entity"]["identityMap"] == {"Email": [{"id": "pat@example.com"}]}
    merged = embedded["merged"]["entity"]
    assert merged["person"]["name"] == {"firstName": "Patricia", "lastName": "Lee"}
    assert set(merged["identityMap"]) == {"CRMID", "ECID", "Email"}
    assert len(merged["segmentMembership"]["CustomerAudienceUpload"]) == 2
    assert merged["segmentMembership"]["ups"]["seg-1"]["status"] == "realized"
    assert embedded["by_precedence"]["entity"]["person"]["name"]["firstName"] == "Pat"
    assert embedded["unknown"] == [404, "100940-404"]
    assert embedded["profile_table"] == [
        {"first": "Patricia", "email": "pat@example.com", "audiences": 2},
        {"first": None, "email": "sam@example.com", "audiences": None},
    ]
    after = embedded["after_delete"]["entity"]
    assert (
        after["person"]["name"] == {"firstName": "Pat", "lastName": "Lee"} and "ups" not in after["segmentMembership"]
    )
    assert set(after["segmentMembership"]["CustomerAudienceUpload"]) == {"EMAIL_LIST", "CRM_LIST"}
    assert embedded["merged"]["sources"] == ["CRM", "WEB"] and embedded["after_delete"]["sources"] == ["CRM"]
    assert list((tmp_path / "lake" / "lake").glob("*/prod/_profile/v*/f_*.parquet"))
    assert not list((tmp_path / "lake" / "lake").glob("*/prod/_profile/profile.duckdb"))
