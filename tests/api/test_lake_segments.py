"""A segment job through the API with AUDIENCEHUB_PROFILE_STORE=lake answers as with the embedded store: the same
counts in the job's metrics and the same memberships (namespace ``ups``) in the Profile Access API, for a segment of
two external audiences and a profile attribute, a segment that reads it, and a second job (members existing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from audiencehub.app import create_app
from tests.api.support import headers_for
from tests.conftest import test_settings
from tests.segments.support import define, evaluate, memberships
from tests.segments.test_segment_flow import COUNTRY, GOLD, NEWSLETTER, PEOPLE, external, profiles


def _metrics(job: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """The job's status and counters, with segment ids replaced by their names (ids are random in each home)."""
    names = {v: k for k, v in ids.items()}
    m = job["metrics"]
    return {
        "status": job["status"],
        "total": m["totalProfiles"],
        "members": {names[k]: v for k, v in m["segmentedProfileCounter"].items()},
        "by_status": {names[k]: v for k, v in m["segmentedProfileByStatusCounter"].items()},
    }


def _flow(home: Path, store: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with TestClient(create_app(test_settings(home, profile_store=store))) as client:
        headers = headers_for(client, home)
        loyalty = external(client, headers, "Loyalty", [[p, "gold" if p in GOLD else "silver"] for p in sorted(GOLD)])
        newsletter = external(client, headers, "Newsletter", [[p, "n/a"] for p in sorted(NEWSLETTER)])
        t = profiles(client, headers)
        ids = {
            "us": define(
                client,
                headers,
                "US loyal",
                f'_{t}.country = "US" and inSegment("{loyalty}") and inSegment("{newsletter}")',
            ),
            "rich": define(client, headers, "Rich", f"_{t}.points >= 50"),
        }
        ids["rich_not_us"] = define(
            client, headers, "Rich, not US loyal", f'inSegment("{ids["rich"]}") and not inSegment("{ids["us"]}")'
        )
        out["first"] = _metrics(evaluate(client, headers, *ids.values()), ids)
        out["second"] = _metrics(evaluate(client, headers, *ids.values()), ids)
        names = {v: k for k, v in ids.items()}
        out["memberships"] = {
            p: {names[s]: m["status"] for s, m in memberships(client, headers, "Email", p).get("ups", {}).items()}
            for p in PEOPLE
        }
    return out


def test_a_segment_job_on_the_lake_store_answers_as_on_the_embedded_one(tmp_path: Path) -> None:
    embedded = _flow(tmp_path / "embedded", "duckdb")
    lake = _flow(tmp_path / "lake", "lake")
    assert lake == embedded
    us = {p for p in PEOPLE if COUNTRY[p] == "US" and p in GOLD and p in NEWSLETTER}
    assert embedded["first"]["members"]["us"] == len(us) > 0
    assert embedded["second"]["by_status"]["us"] == {"realized": 0, "existing": len(us), "exited": 0}
    assert {p for p, m in lake["memberships"].items() if m.get("us") == "existing"} == us
    assert list((tmp_path / "lake" / "lake").glob("*/prod/_profile/v*/applied_jobs-*.parquet"))
