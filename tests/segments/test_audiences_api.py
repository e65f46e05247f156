"""AEP's ``/audiences`` (the Audience Portal's list, seed 002's "Select audiences") through the API: segment
definitions and external audiences in one list, with sizes that match the members each one is known to have."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.config import Settings
from tests.api.support import assert_problem, csv_bytes, headers_for
from tests.conftest import EA, create_audience, run_and_wait, seed_audience, test_settings, token_for, upload, wait_for
from tests.segments.support import define, evaluate

AUDIENCES = "/data/core/ups/audiences"
PEOPLE = [f"p{n}@example.com" for n in range(11)]
LOYALTY = PEOPLE[0:8]
NEWSLETTER = PEOPLE[4:11]
CUSTOM_ID = "loyalty-crm-7"


def external(
    client: TestClient, headers: dict[str, str], name: str, people: list[str], **extra: Any
) -> tuple[str, dict[str, Any]]:
    """An external audience (email, delete) whose first run ingested ``people``; answers its id and the run."""
    path = f"portal/{name.replace(' ', '-')}.csv"
    upload(client, headers, path, csv_bytes(["email", "delete"], [[p, 0] for p in people]))
    fields = [{"name": "email", "type": "string", "identityNs": "Email"}, {"name": "delete", "type": "number"}]
    audience_id = create_audience(client, headers, seed_audience(path, name=name, fields=fields, **extra))
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS", run
    return audience_id, run


def listing(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    resp = client.get(AUDIENCES, params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def names(body: dict[str, Any]) -> list[str]:
    return [a["name"] for a in body["children"]]


@dataclass
class World:
    client: TestClient
    headers: dict[str, str]
    settings: Settings
    loyalty: str
    loyalty_run: str
    newsletter: str
    newsletter_run: str
    readers: str  # a segment definition: loyalty and newsletter, evaluated by a job
    readers_job: str
    draft: str  # a segment definition never evaluated
    before: int
    after: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = test_settings(tmp_path_factory.mktemp("portal") / "home")
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        before = int(time.time())
        loyalty, loyalty_run = external(
            client,
            headers,
            "Loyalty members",
            LOYALTY,
            customAudienceId=CUSTOM_ID,
            description="Gold and silver TIERS from the CRM",
        )
        newsletter, newsletter_run = external(client, headers, "Newsletter readers", NEWSLETTER, description=None)
        pql = f'inSegment("{CUSTOM_ID}") and inSegment("{newsletter}")'
        readers = define(client, headers, "Loyal readers", pql, description="Members who read the newsletter")
        job = evaluate(client, headers, readers)
        assert job["status"] == "SUCCEEDED", job
        draft = define(client, headers, "a draft", f'inSegment("{readers}")')
        after = int(time.time()) + 1
        yield World(
            client,
            headers,
            settings,
            loyalty,
            loyalty_run["runId"],
            newsletter,
            newsletter_run["runId"],
            readers,
            job["id"],
            draft,
            before,
            after,
        )


def by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in body["children"]}


# -- the list ------------------------------------------------------------------------------------


def test_lists_both_kinds_with_the_sizes_of_their_known_members(world: World) -> None:
    body = listing(world.client, world.headers, limit=100)
    found = by_id(body)
    assert set(found) == {world.loyalty, world.newsletter, world.readers, world.draft}
    assert body["_page"]["totalCount"] == 4 and body["_page"]["pageSize"] == 4

    loyalty = found[world.loyalty]
    assert loyalty["audienceId"] == CUSTOM_ID  # its customAudienceId
    assert loyalty["type"] == "ExternalSegment" and loyalty["originName"] == "CUSTOM_UPLOAD"
    assert loyalty["namespace"] == "CustomerAudienceUpload"
    assert loyalty["lifecycleState"] == "published"
    assert loyalty["description"] == "Gold and silver TIERS from the CRM"
    assert loyalty["labels"] == ["core/C1"]
    detail = world.client.get(f"{EA}/{world.loyalty}", headers=world.headers).json()
    assert loyalty["datasetId"] == detail["datasetId"] and loyalty["datasetId"]
    assert world.before <= loyalty["createEpoch"] <= world.after
    assert loyalty["creationTime"] == loyalty["createEpoch"] * 1000
    assert loyalty["updateTime"] == loyalty["updateEpoch"] * 1000
    assert loyalty["dependencies"] == [world.readers]  # read through its customAudienceId
    assert loyalty["metrics"]["data"] == {
        "totalProfiles": len(LOYALTY),
        "totalProfilesByStatus": {"realized": len(LOYALTY), "existing": 0, "exited": 0},
    }
    assert loyalty["metrics"]["jobId"] == world.loyalty_run
    assert world.before <= loyalty["metrics"]["updateEpoch"] <= world.after

    newsletter = found[world.newsletter]
    assert newsletter["audienceId"] == newsletter["id"] == world.newsletter  # no customAudienceId
    assert newsletter["description"] == ""
    assert newsletter["metrics"]["data"]["totalProfiles"] == len(NEWSLETTER)
    assert newsletter["metrics"]["jobId"] == world.newsletter_run

    readers = found[world.readers]
    expected = set(LOYALTY) & set(NEWSLETTER)
    assert readers["audienceId"] == readers["id"] == world.readers
    assert readers["type"] == "SegmentDefinition" and readers["originName"] == "REAL_TIME_CUSTOMER_PROFILE"
    assert readers["namespace"] == "AEPSegments" and readers["lifecycleState"] == "published"
    assert readers["expression"]["value"] == f'inSegment("{CUSTOM_ID}") and inSegment("{world.newsletter}")'
    assert readers["schema"] == {"name": "_xdm.context.profile"}
    assert readers["evaluationInfo"]["batch"] == {"enabled": True}
    assert readers["mergePolicyId"]
    assert sorted(readers["dependents"]) == sorted([world.loyalty, world.newsletter])
    assert readers["dependencies"] == [world.draft]
    assert readers["creationTime"] // 1000 == readers["createEpoch"]
    assert readers["metrics"]["data"] == {
        "totalProfiles": len(expected),
        "totalProfilesByStatus": {"realized": len(expected), "existing": 0, "exited": 0},
    }
    assert readers["metrics"]["jobId"] == world.readers_job and readers["metrics"]["type"] == "segmentJob"
    assert world.before <= readers["metrics"]["updateEpoch"] <= world.after

    draft = found[world.draft]
    assert draft["dependents"] == [world.readers] and draft["dependencies"] == []
    assert draft["metrics"] == {
        "id": world.draft,
        "data": {"totalProfiles": 0, "totalProfilesByStatus": {"realized": 0, "existing": 0, "exited": 0}},
    }


def test_one_caller_is_one_creator_across_both_kinds(world: World) -> None:
    found = by_id(listing(world.client, world.headers, limit=100))
    assert found[world.readers]["createdBy"] == found[world.loyalty]["createdBy"]


def test_get_answers_either_kind_by_its_id_as_the_list_does(world: World) -> None:
    listed = by_id(listing(world.client, world.headers, limit=100))
    for audience_id in (world.loyalty, world.newsletter, world.readers, world.draft):
        resp = world.client.get(f"{AUDIENCES}/{audience_id}", headers=world.headers)
        assert resp.status_code == 200, resp.text
        assert resp.json() == listed[audience_id]


def test_get_takes_the_id_not_an_external_audience_id(world: World) -> None:
    # AEP's guide: "this is the id field, and is not the audienceId field"; find those with property=audienceId==.
    resp = world.client.get(f"{AUDIENCES}/{CUSTOM_ID}", headers=world.headers)
    assert_problem(resp, 404, "100940-404", CUSTOM_ID)
    found = listing(world.client, world.headers, property=f"audienceId=={CUSTOM_ID}")
    assert [a["id"] for a in found["children"]] == [world.loyalty]


def test_unknown_id_is_not_found(world: World) -> None:
    resp = world.client.get(f"{AUDIENCES}/00000000-0000-4000-8000-000000000000", headers=world.headers)
    assert_problem(resp, 404, "100940-404", "00000000-0000-4000-8000-000000000000")


def test_another_sandbox_or_org_sees_none_of_them(world: World) -> None:
    creds_org = world.headers["x-gw-ims-org-id"]
    tenancy = world.client.app.state.container.tenancy  # type: ignore[attr-defined]
    tenancy.create_sandbox(creds_org, "dev", title="Development")
    dev = headers_for(world.client, world.settings.home, "dev")
    org_b = tenancy.create_org("ORGPORTAL00000000000@AdobeOrg", name="Org portal B")
    creds_b = tenancy.create_client(org_b, name="org B client")
    other = {
        "Authorization": f"Bearer {token_for(world.client, creds_b.client_id, creds_b.client_secret)}",
        "x-api-key": creds_b.client_id,
        "x-gw-ims-org-id": org_b,
        "x-sandbox-name": "prod",
    }
    for headers in (dev, other):
        body = listing(world.client, headers)
        assert body["children"] == [] and body["_page"]["totalCount"] == 0 and body["_links"] == {}
        for audience_id in (world.loyalty, world.readers):
            resp = world.client.get(f"{AUDIENCES}/{audience_id}", headers=headers)
            assert_problem(resp, 404, "100940-404", audience_id)


def test_needs_credentials(world: World) -> None:
    resp = world.client.get(AUDIENCES)
    assert resp.status_code == 401, resp.text


# -- filters -------------------------------------------------------------------------------------


def test_name_and_description_filter_by_case_insensitive_contains(world: World) -> None:
    got = listing(world.client, world.headers, name="LOYAL", sort="name:asc")
    assert names(got) == ["Loyal readers", "Loyalty members"]
    assert got["_page"]["totalCount"] == 2
    assert names(listing(world.client, world.headers, description="tiers")) == ["Loyalty members"]
    assert names(listing(world.client, world.headers, description="NEWSLETTER")) == ["Loyal readers"]
    assert names(listing(world.client, world.headers, name="loyal", description="crm")) == ["Loyalty members"]
    assert listing(world.client, world.headers, name="nobody")["children"] == []


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        (f"audienceId=={CUSTOM_ID}", ["Loyalty members"]),
        ("originName==CUSTOM_UPLOAD", ["Loyalty members", "Newsletter readers"]),
        ("originName==REAL_TIME_CUSTOMER_PROFILE", ["a draft", "Loyal readers"]),
        ("type==ExternalSegment", ["Loyalty members", "Newsletter readers"]),
        ("type==SegmentDefinition", ["a draft", "Loyal readers"]),
        ("name==Newsletter readers", ["Newsletter readers"]),
        ("name==newsletter readers", []),  # exact
        ("name==Newsletter", []),  # exact, not contains
        ("namespace==AEPSegments", ["a draft", "Loyal readers"]),
        ("namespace==CustomerAudienceUpload", ["Loyalty members", "Newsletter readers"]),
        ("lifecycleState==published", ["a draft", "Loyal readers", "Loyalty members", "Newsletter readers"]),
        ("datasetId==nope", []),
    ],
)
def test_property_filters_by_exact_match(world: World, prop: str, expected: list[str]) -> None:
    assert names(listing(world.client, world.headers, property=prop, sort="name:asc")) == expected


def test_property_filters_combine(world: World) -> None:
    params = [("property", "type==ExternalSegment"), ("property", f"id=={world.newsletter}")]
    resp = world.client.get(AUDIENCES, params=params, headers=world.headers)
    assert names(resp.json()) == ["Newsletter readers"]
    params = [("property", "type==SegmentDefinition"), ("property", f"id=={world.newsletter}")]
    assert world.client.get(AUDIENCES, params=params, headers=world.headers).json()["children"] == []


def test_property_by_id_finds_the_audience(world: World) -> None:
    got = listing(world.client, world.headers, property=f"audienceId=={world.readers}")
    assert [a["id"] for a in got["children"]] == [world.readers]


@pytest.mark.parametrize(
    ("prop", "needle"),
    [
        ("audienceId=x", "'audienceId=x'"),
        ("audienceId", "'audienceId'"),
        ("==x", "'==x'"),
        ("bogus==x", "'bogus'"),
        ("audienceId!=x", "'audienceId!=x'"),
    ],
)
def test_malformed_property_is_refused_by_name(world: World, prop: str, needle: str) -> None:
    resp = world.client.get(AUDIENCES, params={"property": prop}, headers=world.headers)
    assert_problem(resp, 400, "100910-400", "property", needle)


def test_entity_type_is_profile(world: World) -> None:
    assert listing(world.client, world.headers, entityType="_xdm.context.profile")["_page"]["totalCount"] == 4
    assert listing(world.client, world.headers, entityType="_xdm.context.account")["children"] == []


# -- sort and pages ------------------------------------------------------------------------------


def test_sort_by_name_either_way(world: World) -> None:
    up = names(listing(world.client, world.headers, sort="name:asc"))
    assert up == ["a draft", "Loyal readers", "Loyalty members", "Newsletter readers"]  # case-insensitive
    assert names(listing(world.client, world.headers, sort="name:desc")) == list(reversed(up))
    assert names(listing(world.client, world.headers, sort="name")) == up  # ascending by default
    page = listing(world.client, world.headers, sort="name:desc")["_page"]
    assert (page["sortField"], page["sort"]) == ("name", "desc")


def test_default_order_is_newest_first(world: World) -> None:
    body = listing(world.client, world.headers)
    assert [a["id"] for a in body["children"]] == [world.draft, world.readers, world.newsletter, world.loyalty]
    assert (body["_page"]["sortField"], body["_page"]["sort"]) == ("creationTime", "desc")
    oldest = listing(world.client, world.headers, sort="createEpoch:asc")
    assert [a["id"] for a in oldest["children"]] == [world.loyalty, world.newsletter, world.readers, world.draft]


def test_sort_by_update_time(world: World) -> None:
    children = listing(world.client, world.headers, sort="updateTime:desc")["children"]
    times = [a["updateTime"] for a in children]
    assert times == sorted(times, reverse=True)
    children = listing(world.client, world.headers, sort="updateEpoch:asc")["children"]
    assert [a["updateTime"] for a in children] == sorted(times)


@pytest.mark.parametrize("sort", ["bogus:asc", "name:up", "totalProfiles:desc", ":asc"])
def test_unknown_sort_is_refused_by_name(world: World, sort: str) -> None:
    resp = world.client.get(AUDIENCES, params={"sort": sort}, headers=world.headers)
    assert_problem(resp, 400, "100910-400", "sort", repr(sort))


def test_pages_follow_next_until_the_end(world: World) -> None:
    first = listing(world.client, world.headers, limit=3, sort="name:asc")
    assert first["_page"] == {
        "totalCount": 4,
        "totalPages": 2,
        "sortField": "name",
        "sort": "asc",
        "pageSize": 3,
        "limit": 3,
        "start": 0,
        "next": 3,
    }
    href = first["_links"]["next"]["href"]
    assert href.startswith("@/audiences?start=3&limit=3")
    # "@" stands for the service's base path, as in AEP's answers.
    last = world.client.get(href.replace("@", "/data/core/ups", 1), headers=world.headers)
    assert last.status_code == 200, last.text
    assert names(first) + names(last.json()) == ["a draft", "Loyal readers", "Loyalty members", "Newsletter readers"]
    assert last.json()["_page"]["start"] == 3 and "next" not in last.json()["_page"]
    assert last.json()["_links"] == {}


def test_next_keeps_the_filters(world: World) -> None:
    first = listing(world.client, world.headers, limit=1, name="loyal", sort="name:desc")
    assert names(first) == ["Loyalty members"]
    href = first["_links"]["next"]["href"]
    second = world.client.get(href.replace("@", "/data/core/ups", 1), headers=world.headers).json()
    assert names(second) == ["Loyal readers"] and second["_page"]["totalCount"] == 2
    assert second["_links"] == {}


def test_start_past_the_end_is_an_empty_page(world: World) -> None:
    body = listing(world.client, world.headers, start=10)
    assert body["children"] == [] and body["_page"]["totalCount"] == 4 and body["_page"]["pageSize"] == 0


def test_default_limit_is_twenty(world: World) -> None:
    assert listing(world.client, world.headers)["_page"]["limit"] == 20


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"limit": 0}, ("limit", "0")),
        ({"limit": 1001}, ("limit", "1001")),
        ({"limit": -3}, ("limit", "-3")),
        ({"start": -1}, ("start", "-1")),
        ({"limit": "ten"}, ("limit", "ten")),
        ({"start": "x"}, ("start", "x")),
    ],
)
def test_out_of_range_paging_is_refused_by_name(world: World, params: dict[str, Any], needles: tuple[str]) -> None:
    resp = world.client.get(AUDIENCES, params=params, headers=world.headers)
    assert_problem(resp, 400, "100910-400", *needles)


# -- sizes as members change ---------------------------------------------------------------------


def test_sizes_follow_a_member_who_exits(client: TestClient, headers: dict[str, str]) -> None:
    people = PEOPLE[:3]
    audience_id, _ = external(client, headers, "Few", people)
    segment_id = define(client, headers, "Few again", f'inSegment("{audience_id}")')
    first_job = evaluate(client, headers, segment_id)["id"]

    def size(audience: str) -> dict[str, Any]:
        metrics: dict[str, Any] = client.get(f"{AUDIENCES}/{audience}", headers=headers).json()["metrics"]
        return metrics

    assert size(audience_id)["data"]["totalProfiles"] == 3
    assert size(segment_id)["data"]["totalProfiles"] == 3

    # The next run says one person left (seed 004's delete column).
    upload(client, headers, "portal/Few.csv", csv_bytes(["email", "delete"], [[people[0], 1]]))
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS", run

    assert size(audience_id)["data"] == {
        "totalProfiles": 2,
        "totalProfilesByStatus": {"realized": 2, "existing": 0, "exited": 1},
    }
    assert size(audience_id)["jobId"] == run["runId"]
    # The run's commit re-evaluates the definition that reads the audience: its size follows.
    later = wait_for(lambda: (m := size(segment_id)).get("jobId") != first_job and m, what="the re-evaluation")
    assert later["data"] == {
        "totalProfiles": 2,
        "totalProfilesByStatus": {"realized": 0, "existing": 2, "exited": 1},
    }
    listed = by_id(listing(client, headers))
    assert listed[audience_id]["metrics"] == size(audience_id)
    assert listed[segment_id]["metrics"] == size(segment_id)
