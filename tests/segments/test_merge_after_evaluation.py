"""Profiles that merge after a segment job: the batch that links them succeeds, and the merged profile keeps the
segment's membership (the result table's rows of both profiles fold into one, the newest status per segment)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from tests.api.support import headers_for
from tests.api.xdm_support import IDENTITY_MAP_FG, PROFILE_CLASS, dataset, enable_profile, ingest, json_lines, schema
from tests.conftest import test_settings
from tests.segments.support import define, evaluate, memberships, segment_status


@pytest.mark.parametrize("store", ["duckdb", "lake"])
def test_a_batch_that_merges_two_evaluated_profiles_keeps_their_segment(tmp_path: Path, store: str) -> None:
    home = tmp_path / "home"
    with TestClient(create_app(test_settings(home, profile_store=store))) as client:
        _merge_after_evaluation(client, headers_for(client, home))


def _merge_after_evaluation(client: TestClient, headers: dict[str, str]) -> None:
    schema_id = schema(client, headers, "People", PROFILE_CLASS, IDENTITY_MAP_FG)
    enable_profile(client, headers, schema_id)
    ds = dataset(client, headers, "People", schema_id, profile=True)
    first = ingest(
        client,
        headers,
        ds,
        json_lines(
            {"_id": "1", "identityMap": {"Email": [{"id": "a@example.com", "primary": True}]}},
            {"_id": "2", "identityMap": {"CRMID": [{"id": "c-1", "primary": True}]}},
        ),
    )
    assert first["status"] == "success", first
    everyone = define(client, headers, "Everyone", "true")
    job = evaluate(client, headers, everyone)
    assert job["status"] == "SUCCEEDED" and job["metrics"]["segmentedProfileCounter"] == {everyone: 2}, job

    linking = ingest(
        client,
        headers,
        ds,
        json_lines(
            {
                "_id": "3",
                "identityMap": {"Email": [{"id": "a@example.com", "primary": True}], "CRMID": [{"id": "c-1"}]},
            }
        ),
    )
    assert linking["status"] == "success", linking
    assert segment_status(client, headers, "Email", "a@example.com", everyone) == "realized"
    assert segment_status(client, headers, "CRMID", "c-1", everyone) == "realized"
    ups = memberships(client, headers, "CRMID", "c-1")["ups"]
    assert list(ups) == [everyone]  # one membership, not one per former profile

    again = evaluate(client, headers, everyone)
    assert again["metrics"]["segmentedProfileCounter"] == {everyone: 1}, again
    # The merged-away profile left no row behind that this evaluation would see exit.
    by_status = again["metrics"]["segmentedProfileByStatusCounter"][everyone]
    assert by_status == {"realized": 0, "existing": 1, "exited": 0}, by_status
    assert segment_status(client, headers, "Email", "a@example.com", everyone) in ("realized", "existing")
