"""Seed 000: import external audiences the older way, through the platform's own services, end to end.

A custom NON_PEOPLE namespace, a Segment definition schema with ``_id`` as its primary identity in that
namespace, a profile-enabled dataset, the segment records ingested, and people whose records say they belong
to the imported segment. (Streaming the same records: tests/api/test_streaming.py.)
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.support import assert_problem
from tests.api.xdm_support import (
    IDENTITY_MAP_FG,
    PROFILE_CLASS,
    SEGMENT_CLASS,
    dataset,
    enable_profile,
    identity,
    ingest,
    json_lines,
    schema,
)

ACCESS = "/data/core/ups/access/entities"


def test_imported_segments_stay_apart_from_people_and_people_carry_their_membership(
    client: TestClient, headers: dict[str, str]
) -> None:
    ns = client.post(
        "/data/core/idnamespace/identities",
        json={
            "name": "Partner segments",
            "code": "PartnerSeg",
            "idType": "NON_PEOPLE",
            "description": "Segments imported from our DMP",
        },
        headers=headers,
    )
    assert ns.status_code in (200, 201), ns.text

    seg_schema = schema(client, headers, "Imported segments", SEGMENT_CLASS)
    identity(client, headers, seg_schema, "/_id", "PartnerSeg", True)
    enable_profile(client, headers, seg_schema)
    seg_ds = dataset(client, headers, "Imported segments", seg_schema, profile=True)
    segments = json_lines(
        {"_id": "dmp-123", "segmentName": "High spenders (DMP)", "description": "from the DMP", "version": "1"},
        {"_id": "dmp-456", "segmentName": "Lapsed buyers (DMP)"},
    )
    assert ingest(client, headers, seg_ds, segments)["status"] == "success"

    got = client.get(
        ACCESS,
        params={"schema.name": "_xdm.context.segmentdefinition", "entityId": "dmp-123", "entityIdNS": "PartnerSeg"},
        headers=headers,
    )
    assert got.status_code == 200, got.text
    (entity,) = got.json().values()
    assert entity["entity"]["segmentName"] == "High spenders (DMP)"
    assert entity["sources"] == [seg_ds]
    # Not a person: the people side of the store has never heard of it.
    assert_problem(
        client.get(ACCESS, params={"entityId": "dmp-123", "entityIdNS": "PartnerSeg"}, headers=headers),
        404,
        "100940-404",
    )

    people = schema(
        client,
        headers,
        "DMP people",
        PROFILE_CLASS,
        IDENTITY_MAP_FG,
        "https://ns.adobe.com/xdm/context/profile-segmentation",
    )
    enable_profile(client, headers, people)
    people_ds = dataset(client, headers, "DMP people", people, profile=True)
    person = {
        "_id": "p1",
        "identityMap": {"Email": [{"id": "kim@example.com", "primary": True}]},
        "segmentMembership": {"PartnerSeg": {"dmp-123": {"status": "realized"}}},
    }
    assert ingest(client, headers, people_ds, json_lines(person))["status"] == "success"
    kim = client.get(ACCESS, params={"entityId": "kim@example.com", "entityIdNS": "Email"}, headers=headers)
    assert kim.status_code == 200, kim.text
    (profile,) = kim.json().values()
    assert profile["entity"]["segmentMembership"]["PartnerSeg"]["dmp-123"]["status"] == "realized"
