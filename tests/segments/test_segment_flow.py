"""Issue 5's done-when: external audiences from the seed flow used in a new segment definition with an attribute
condition, evaluated by a segment job, checked against an independent computation; delete rows and ttl expiry turn
members into ``exited``, and an audience run re-evaluates what reads it without a job being asked for."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from tests.api.support import csv_bytes
from tests.api.xdm_support import (
    IDENTITY_MAP_FG,
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
from tests.segments.support import JOBS, define, evaluate, segment_status

PEOPLE = [f"p{n}@example.com" for n in range(12)]
GOLD = set(PEOPLE[0:8])  # audience "Loyalty" (with a tier payload)
NEWSLETTER = set(PEOPLE[4:11])  # audience "Newsletter"
COUNTRY = {p: ("US" if n % 3 else "FR") for n, p in enumerate(PEOPLE)}
POINTS = {p: n * 10 for n, p in enumerate(PEOPLE)}


def external(client: TestClient, headers: dict[str, str], name: str, rows: list[list[Any]], ttl: int = 30) -> str:
    """An external audience (email, tier, delete) whose first run ingested ``rows`` of (email, tier)."""
    path = f"segments/{name}.csv"
    upload(client, headers, path, csv_bytes(["email", "tier", "delete"], [[*r, 0] for r in rows]))
    body = seed_audience(
        path,
        name=name,
        fields=[
            {"name": "email", "type": "string", "identityNs": "Email"},
            {"name": "tier", "type": "string"},
            {"name": "delete", "type": "number"},
        ],
        ttlInDays=ttl,
    )
    audience_id = create_audience(client, headers, body)
    assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"
    return audience_id


def profiles(client: TestClient, headers: dict[str, str]) -> str:
    """A profile dataset with a country and loyalty points per person; answers the tenant id."""
    t = tenant(client, headers)
    fg = field_group(client, headers, "Loyalty facts", {"country": {"type": "string"}, "points": {"type": "integer"}})
    schema_id = schema(client, headers, "People", PROFILE_CLASS, IDENTITY_MAP_FG, fg)
    enable_profile(client, headers, schema_id)
    ds = dataset(client, headers, "People", schema_id, profile=True)
    records = [
        {
            "identityMap": {"Email": [{"id": p, "primary": True}]},
            f"_{t}": {"country": COUNTRY[p], "points": POINTS[p]},
        }
        for p in PEOPLE
    ]
    assert ingest(client, headers, ds, json_lines(*records))["status"] == "success"
    return t


def test_segment_of_two_audiences_and_an_attribute_matches_an_independent_computation(
    client: TestClient, headers: dict[str, str]
) -> None:
    loyalty = external(client, headers, "Loyalty", [[p, "gold" if p in GOLD else "silver"] for p in sorted(GOLD)])
    newsletter = external(client, headers, "Newsletter", [[p, "n/a"] for p in sorted(NEWSLETTER)])
    t = profiles(client, headers)
    pql = f'_{t}.country = "US" and inSegment("{loyalty}") and inSegment("{newsletter}")'
    segment_id = define(client, headers, "US loyal readers", pql)

    job = evaluate(client, headers, segment_id)

    expected = {p for p in PEOPLE if COUNTRY[p] == "US" and p in GOLD and p in NEWSLETTER}
    assert job["status"] == "SUCCEEDED", job
    assert job["metrics"]["segmentedProfileCounter"] == {segment_id: len(expected)}
    assert job["metrics"]["segmentedProfileByStatusCounter"][segment_id] == {
        "realized": len(expected),
        "existing": 0,
        "exited": 0,
    }
    assert job["metrics"]["totalProfiles"] == len(PEOPLE)
    got = {p for p in PEOPLE if segment_status(client, headers, "Email", p, segment_id) == "realized"}
    assert got == expected

    # A second evaluation: the same members, now "existing".
    again = evaluate(client, headers, segment_id)
    assert again["metrics"]["segmentedProfileByStatusCounter"][segment_id] == {
        "realized": 0,
        "existing": len(expected),
        "exited": 0,
    }


def test_delete_rows_re_evaluate_dependents_at_once_and_members_exit(
    client: TestClient, headers: dict[str, str]
) -> None:
    loyalty = external(client, headers, "Loyalty", [[p, "gold"] for p in sorted(GOLD)])
    t = profiles(client, headers)
    segment_id = define(client, headers, "Rich loyal", f'inSegment("{loyalty}") and _{t}.points >= 30')
    evaluate(client, headers, segment_id)
    leaving = PEOPLE[5]
    assert segment_status(client, headers, "Email", leaving, segment_id) == "realized"

    # The next run of the audience says the person left (seed 004's delete column).
    upload(client, headers, "segments/Loyalty.csv", csv_bytes(["email", "tier", "delete"], [[leaving, "gold", 1]]))
    before = {j["id"] for j in client.get(JOBS, headers=headers).json()["children"]}
    assert run_and_wait(client, headers, loyalty)["status"] == "SUCCESS"

    # No job was asked for: the run's commit queued one for the segment that reads the audience.
    def triggered() -> dict[str, Any] | None:
        for j in client.get(JOBS, headers=headers).json()["children"]:
            if j["id"] not in before and j["status"] == "SUCCEEDED":
                return dict(j)
        return None

    job = wait_for(triggered, what="the re-evaluation a run triggers")
    assert job["source"] == "audience-update"
    assert job["properties"]["audienceId"] == loyalty
    assert job["metrics"]["segmentedProfileByStatusCounter"][segment_id]["exited"] == 1
    assert segment_status(client, headers, "Email", leaving, segment_id) == "exited"


def test_members_of_an_audience_past_its_ttl_exit_the_segments_that_read_it(
    client: TestClient, headers: dict[str, str]
) -> None:
    loyalty = external(client, headers, "Loyalty", [[p, "gold"] for p in sorted(GOLD)], ttl=30)
    segment_id = define(client, headers, "Loyal", f'inSegment("{loyalty}")')
    first = evaluate(client, headers, segment_id)
    assert first["metrics"]["segmentedProfileCounter"][segment_id] == len(GOLD)

    # The daily job 31 days later: the audience's memberships have passed their ttl.
    services = client.app.state.container  # type: ignore[attr-defined]
    services.segment_jobs.clock = lambda: time.time() + 31 * 86400
    later = evaluate(client, headers, segment_id)
    assert later["metrics"]["segmentedProfileByStatusCounter"][segment_id] == {
        "realized": 0,
        "existing": 0,
        "exited": len(GOLD),
    }
