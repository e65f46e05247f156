"""Segment definitions and segment jobs through the API: AEP's bodies, the refusals a user meets, events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient

from tests.api.support import assert_problem, csv_bytes
from tests.api.xdm_support import IDENTITY_MAP_FG, PROFILE_CLASS, dataset, enable_profile, ingest, json_lines, schema
from tests.conftest import create_audience, run_and_wait, seed_audience, upload
from tests.segments.support import DEFINITIONS, JOBS, define, evaluate, segment_status, wait_job

EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"
COMMERCE_FG = "https://ns.adobe.com/xdm/context/experienceevent-commerce"


def body(name: str, pql: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": "test",
        "expression": {"type": "PQL", "format": "pql/text", "value": pql},
        "evaluationInfo": {
            "batch": {"enabled": True},
            "continuous": {"enabled": False},
            "synchronous": {"enabled": False},
        },
        "schema": {"name": "_xdm.context.profile"},
        **extra,
    }


def audience(client: TestClient, headers: dict[str, str], name: str, emails: list[str]) -> str:
    path = f"defs/{name}.csv"
    upload(client, headers, path, csv_bytes(["email"], [[e] for e in emails]))
    fields = [{"name": "email", "type": "string", "identityNs": "Email"}]
    audience_id = create_audience(client, headers, seed_audience(path, name=name, fields=fields))
    assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"
    return audience_id


def test_create_answers_aeps_shape_and_get_list_patch_delete(client: TestClient, headers: dict[str, str]) -> None:
    a = audience(client, headers, "A", ["a@example.com"])
    resp = client.post(DEFINITIONS, json=body("Readers", f'inSegment("{a}")', ttlInDays=30), headers=headers)
    assert resp.status_code == 200, resp.text
    created = resp.json()
    assert created["name"] == "Readers"
    assert created["expression"] == {"type": "PQL", "format": "pql/text", "value": f'inSegment("{a}")'}
    assert created["schema"] == {"name": "_xdm.context.profile"}
    assert created["evaluationInfo"]["batch"] == {"enabled": True}
    assert created["ttlInDays"] == 30
    assert created["mergePolicyId"]  # the sandbox's default policy
    assert created["creationTime"] == created["updateTime"] and created["updateEpoch"] == created["updateTime"] // 1000
    sid = created["id"]
    assert client.get(f"{DEFINITIONS}/{sid}", headers=headers).json() == created

    listed = client.get(DEFINITIONS, headers=headers).json()
    assert [s["id"] for s in listed["segments"]] == [sid]
    assert listed["page"]["totalCount"] == 1

    resp = client.patch(f"{DEFINITIONS}/{sid}", json={"description": "changed", "name": "Readers 2"}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["description"] == "changed" and resp.json()["name"] == "Readers 2"
    assert resp.json()["expression"] == created["expression"]

    assert client.delete(f"{DEFINITIONS}/{sid}", headers=headers).status_code == 200
    assert_problem(client.get(f"{DEFINITIONS}/{sid}", headers=headers), 404, "100940-404", sid)


def test_list_pages_and_sorts(client: TestClient, headers: dict[str, str]) -> None:
    a = audience(client, headers, "A", ["a@example.com"])
    ids = [define(client, headers, f"S{n}", f'inSegment("{a}")') for n in range(5)]
    first = client.get(DEFINITIONS, params={"limit": 2, "sort": "name:asc"}, headers=headers).json()
    assert [s["name"] for s in first["segments"]] == ["S0", "S1"]
    assert first["page"]["totalPages"] == 3 and first["link"]["next"]
    third = client.get(DEFINITIONS, params={"limit": 2, "page": 2, "sort": "name:asc"}, headers=headers).json()
    assert [s["name"] for s in third["segments"]] == ["S4"] and third["link"]["next"] == ""
    newest = client.get(DEFINITIONS, params={"sort": "creationTime:desc"}, headers=headers).json()
    assert newest["segments"][0]["id"] == ids[-1]
    assert_problem(client.get(DEFINITIONS, params={"sort": "color:asc"}, headers=headers), 400, "100910-400", "sort")


def test_a_syntax_error_points_at_its_position(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.post(DEFINITIONS, json=body("Bad", 'inSegment("x") and and'), headers=headers)
    problem = assert_problem(resp, 400, "100910-400", "expression.value", "position 19")
    assert "column 20" in problem["detail"]


def test_constructs_outside_the_subset_are_named(client: TestClient, headers: dict[str, str]) -> None:
    pql = 'CHAIN(xEvent, timestamp, [C0: WHAT(eventType.equals("x", false))])'
    assert_problem(client.post(DEFINITIONS, json=body("Chain", pql), headers=headers), 400, "100910-400", "CHAIN")
    json_form = body("Json", "x")
    json_form["expression"]["format"] = "pql/json"
    assert_problem(client.post(DEFINITIONS, json=json_form, headers=headers), 400, "100910-400", "pql/json")


def test_unknown_fields_and_audiences_are_refused_by_name(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.post(DEFINITIONS, json=body("AEP example", 'workAddress.country = "US"'), headers=headers)
    assert_problem(resp, 400, "100910-400", "workAddress.country", "union")
    resp = client.post(DEFINITIONS, json=body("Nobody", 'inSegment("no-such-audience")'), headers=headers)
    assert_problem(resp, 400, "100910-400", "no-such-audience")
    resp = client.post(DEFINITIONS, json=body("No name", "true") | {"name": ""}, headers=headers)
    assert_problem(resp, 400, "100910-400", "name")
    resp = client.post(
        DEFINITIONS, json=body("Other class", "true") | {"schema": {"name": "_xdm.context.account"}}, headers=headers
    )
    assert_problem(resp, 400, "100910-400", "schema.name", "_xdm.context.account")
    resp = client.post(DEFINITIONS, json=body("Bad ttl", "true", ttlInDays=0), headers=headers)
    assert_problem(resp, 400, "100910-400", "ttlInDays", "0")


def test_names_are_unique_per_sandbox(client: TestClient, headers: dict[str, str]) -> None:
    define(client, headers, "Everyone", "true")
    resp = client.post(DEFINITIONS, json=body("Everyone", "true"), headers=headers)
    assert_problem(resp, 422, "100960-422", "Everyone")


def test_a_name_longer_than_the_store_keeps_is_refused_by_length(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.post(DEFINITIONS, json=body("n" * 257, "true"), headers=headers)
    assert_problem(resp, 400, "100910-400", "name: at most 256 characters, got 257")
    assert client.post(DEFINITIONS, json=body("n" * 256, "true"), headers=headers).status_code == 200


def test_a_cycle_between_definitions_is_refused(client: TestClient, headers: dict[str, str]) -> None:
    a = define(client, headers, "A", "true")
    b = define(client, headers, "B", f'inSegment("{a}")')
    c = define(client, headers, "C", f'inSegment("{b}")')
    resp = client.patch(f"{DEFINITIONS}/{a}", json={"expression": {"value": f'inSegment("{c}")'}}, headers=headers)
    problem = assert_problem(resp, 400, "100910-400", "depend on themselves")
    assert a in problem["detail"] and c in problem["detail"]
    resp = client.patch(f"{DEFINITIONS}/{a}", json={"expression": {"value": f'inSegment("{a}")'}}, headers=headers)
    assert_problem(resp, 400, "100910-400", "itself")


def test_what_other_definitions_read_cannot_be_deleted(client: TestClient, headers: dict[str, str]) -> None:
    a = audience(client, headers, "A", ["a@example.com"])
    base = define(client, headers, "Base", f'inSegment("{a}")')
    define(client, headers, "On top", f'inSegment("{base}")')
    assert_problem(client.delete(f"{DEFINITIONS}/{base}", headers=headers), 422, "100960-422", "On top")
    resp = client.delete(f"/data/core/ais/external-audience/{a}", headers=headers)
    assert_problem(resp, 422, "100960-422", "Base")


def test_segments_are_evaluated_after_the_segments_they_read(client: TestClient, headers: dict[str, str]) -> None:
    a = audience(client, headers, "A", ["a@example.com", "b@example.com"])
    b = audience(client, headers, "B", ["b@example.com", "c@example.com"])
    inner = define(client, headers, "Inner", f'inSegment("{a}")')
    outer = define(
        client,
        headers,
        "Outer",
        f'segmentMembership.get("ups").get("{inner}").status in ["realized", "existing"] and not inSegment("{b}")',
    )
    job = evaluate(client, headers, outer, inner)  # asked in the wrong order: the job orders them
    assert job["status"] == "SUCCEEDED", job
    assert [s["segmentId"] for s in job["segments"]] == [inner, outer]
    assert job["metrics"]["segmentedProfileCounter"] == {inner: 2, outer: 1}
    assert segment_status(client, headers, "Email", "a@example.com", outer) == "realized"
    assert segment_status(client, headers, "Email", "b@example.com", outer) is None


def test_jobs_for_all_batch_segments_list_and_refusals(client: TestClient, headers: dict[str, str]) -> None:
    a = audience(client, headers, "A", ["a@example.com"])
    s1 = define(client, headers, "S1", f'inSegment("{a}")')
    define(
        client,
        headers,
        "Streaming only",
        "true",
        evaluationInfo={"batch": {"enabled": False}, "continuous": {"enabled": True}},
    )
    resp = client.post(JOBS, json=[{"segmentId": "*"}], headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "NEW"
    job = wait_job(client, headers, resp.json()["id"])
    assert [s["segmentId"] for s in job["segments"]] == [s1]
    listed = client.get(JOBS, params={"status": "SUCCEEDED"}, headers=headers).json()
    assert [j["id"] for j in listed["children"]] == [job["id"]]
    assert_problem(client.post(JOBS, json=[{"segmentId": "nope"}], headers=headers), 400, "100910-400", "nope")
    assert_problem(client.post(JOBS, json={"segmentId": s1}, headers=headers), 400, "100910-400", "array")
    assert_problem(client.get(f"{JOBS}/nope", headers=headers), 404, "100940-404")


def test_another_org_or_sandbox_sees_nothing(
    client: TestClient, headers: dict[str, str], other_org_headers: dict[str, str], dev_headers: dict[str, str]
) -> None:
    sid = define(client, headers, "Mine", "true")
    job = evaluate(client, headers, sid)
    for other in (other_org_headers, dev_headers):
        assert client.get(f"{DEFINITIONS}/{sid}", headers=other).status_code == 404
        assert client.get(f"{JOBS}/{job['id']}", headers=other).status_code == 404
        assert client.get(JOBS, headers=other).json()["children"] == []
    assert client.get(f"{DEFINITIONS}/{sid}", headers=other_org_headers).status_code == 404
    assert client.get(f"{JOBS}/{job['id']}", headers=other_org_headers).status_code == 404
    assert client.patch(f"{DEFINITIONS}/{sid}", json={"name": "x"}, headers=other_org_headers).status_code == 404
    assert client.delete(f"{DEFINITIONS}/{sid}", headers=other_org_headers).status_code == 404
    assert client.get(DEFINITIONS, headers=other_org_headers).json()["segments"] == []
    resp = client.post(JOBS, json=[{"segmentId": sid}], headers=other_org_headers)
    assert_problem(resp, 400, "100910-400", sid)


def test_experience_event_conditions(client: TestClient, headers: dict[str, str]) -> None:
    schema_id = schema(client, headers, "Purchases", EVENT_CLASS, IDENTITY_MAP_FG, COMMERCE_FG)
    enable_profile(client, headers, schema_id)
    ds = dataset(client, headers, "Purchases", schema_id, profile=True)
    now = dt.datetime.now(dt.UTC)

    def event(n: int, who: str, kind: str, days_ago: int, total: float) -> dict[str, Any]:
        return {
            "_id": f"e{n}",
            "timestamp": (now - dt.timedelta(days=days_ago)).isoformat(),
            "eventType": kind,
            "identityMap": {"Email": [{"id": who, "primary": True}]},
            "commerce": {"order": {"priceTotal": total}},
        }

    events = [
        event(1, "a@example.com", "commerce.purchases", 1, 150.0),
        event(2, "a@example.com", "commerce.purchases", 3, 120.0),
        event(3, "b@example.com", "commerce.purchases", 20, 500.0),
        event(4, "b@example.com", "web.webpagedetails.pageViews", 2, 0.0),
        event(5, "c@example.com", "web.webpagedetails.pageViews", 1, 0.0),
    ]
    assert ingest(client, headers, ds, json_lines(*events))["status"] == "success"
    recent = define(
        client,
        headers,
        "Recent buyers",
        'xEvent.any(eventType = "commerce.purchases" and timestamp occurs <= 7 days before now)',
    )
    repeat = define(client, headers, "Repeat buyers", 'xEvent.count(eventType = "commerce.purchases") >= 2')
    big = define(client, headers, "Only big orders", "xEvent.all(commerce.order.priceTotal > 100)")
    job = evaluate(client, headers, recent, repeat, big)
    assert job["status"] == "SUCCEEDED", job
    assert job["metrics"]["segmentedProfileCounter"] == {recent: 1, repeat: 1, big: 1}
    assert segment_status(client, headers, "Email", "a@example.com", recent) == "realized"
    assert segment_status(client, headers, "Email", "a@example.com", repeat) == "realized"
    assert segment_status(client, headers, "Email", "a@example.com", big) == "realized"
    assert segment_status(client, headers, "Email", "b@example.com", recent) is None
    assert segment_status(client, headers, "Email", "c@example.com", big) is None


def test_payload_conditions_on_an_external_audience(client: TestClient, headers: dict[str, str]) -> None:
    path = "defs/tiers.csv"
    upload(
        client, headers, path, csv_bytes(["email", "tier"], [["a@example.com", "gold"], ["b@example.com", "silver"]])
    )
    fields = [{"name": "email", "type": "string", "identityNs": "Email"}, {"name": "tier", "type": "string"}]
    aid = create_audience(client, headers, seed_audience(path, name="Tiers", fields=fields))
    assert run_and_wait(client, headers, aid)["status"] == "SUCCESS"
    gold = define(
        client, headers, "Gold", f'segmentMembership.get("CustomerAudienceUpload").get("{aid}").payload.tier = "gold"'
    )
    job = evaluate(client, headers, gold)
    assert job["metrics"]["segmentedProfileCounter"] == {gold: 1}
    assert segment_status(client, headers, "Email", "a@example.com", gold) == "realized"
    resp = client.post(
        DEFINITIONS,
        json=body("Bad payload", f'segmentMembership.get("CustomerAudienceUpload").get("{aid}").payload.color = "red"'),
        headers=headers,
    )
    assert_problem(resp, 400, "100910-400", "color", "tier")


def test_audiences_imported_on_records_are_components_too(client: TestClient, headers: dict[str, str]) -> None:
    """Seed 000: people records carry segmentMembership.PartnerSeg.dmp-123; new segments can use that audience."""
    people = schema(
        client,
        headers,
        "DMP people",
        PROFILE_CLASS,
        IDENTITY_MAP_FG,
        "https://ns.adobe.com/xdm/context/profile-segmentation",
    )
    enable_profile(client, headers, people)
    ds = dataset(client, headers, "DMP people", people, profile=True)

    def person(n: int, email: str, status: str) -> dict[str, Any]:
        return {
            "_id": f"p{n}",
            "identityMap": {"Email": [{"id": email, "primary": True}]},
            "segmentMembership": {"PartnerSeg": {"dmp-123": {"status": status}}},
        }

    records = json_lines(person(1, "kim@example.com", "realized"), person(2, "lee@example.com", "exited"))
    assert ingest(client, headers, ds, records)["status"] == "success"
    by_id = define(client, headers, "DMP via inSegment", 'inSegment("dmp-123")')
    by_ns = define(client, headers, "DMP exits", 'segmentMembership.get("PartnerSeg").get("dmp-123").status = "exited"')
    job = evaluate(client, headers, by_id, by_ns)
    assert job["metrics"]["segmentedProfileCounter"] == {by_id: 1, by_ns: 1}
    assert segment_status(client, headers, "Email", "kim@example.com", by_id) == "realized"
    assert segment_status(client, headers, "Email", "lee@example.com", by_ns) == "realized"
