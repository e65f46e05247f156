"""The external-audience API flow (seed 001/003/004) with AUDIENCEHUB_PROFILE_STORE=lake answers as with the embedded
store: runs' metrics, members and their counts, a differential run with deletes, a removed audience."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from audiencehub.app import create_app
from tests.api.support import headers_for, seed_csv
from tests.conftest import EA, create_audience, run_and_wait, seed_audience, test_settings, upload

FILE = "activation/sample-source/example.csv"


def _member(m: dict[str, Any]) -> dict[str, Any]:
    """A member without its profile id (random in each store) and qualification time (the flows run one after the
    other)."""
    assert isinstance(m["lastQualificationTime"], int) and len(m["profileId"]) == 36
    return {k: v for k, v in m.items() if k not in ("profileId", "lastQualificationTime")}


def _flow(home: Path, store: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with TestClient(create_app(test_settings(home, profile_store=store))) as client:
        headers = headers_for(client, home)
        upload(
            client,
            headers,
            FILE,
            seed_csv(["a@x.com", "L1", 0, "y"], ["b@x.com", "L2", 0, "n"], ["c@x.com", "L3", 0, "y"]),
        )
        audience_id = create_audience(client, headers, seed_audience())
        first = run_and_wait(client, headers, audience_id)
        upload(
            client,
            headers,
            FILE,
            seed_csv(["a@x.com", "L9", 0, "n"], ["b@x.com", "L2", 1, "n"], ["d@x.com", "L4", 0, "y"]),
        )
        second = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, "differentialIngestion": True})
        out["runs"] = [{k: r.get(k) for k in ("status", "metrics", "stages")} for r in (first, second)]
        body = client.get(f"{EA}/{audience_id}/members", params={"limit": 100}, headers=headers).json()
        out["members"] = sorted((_member(m) for m in body["members"]), key=repr)
        out["counts"] = body["counts"]
        assert client.delete(f"{EA}/{audience_id}", headers=headers).status_code == 204
        again = create_audience(client, headers, seed_audience())
        out["after_delete"] = client.get(f"{EA}/{again}/members", headers=headers).json()["counts"]
    return out


def test_the_external_audience_flow_on_the_lake_store_answers_as_on_the_embedded_one(tmp_path: Path) -> None:
    embedded = _flow(tmp_path / "embedded", "duckdb")
    lake = _flow(tmp_path / "lake", "lake")
    assert lake == embedded
    assert embedded["counts"] == {"realized": 3, "exited": 1}
    assert list((tmp_path / "lake" / "lake").glob("*/prod/_profile/v*/identities-*.parquet"))
    assert not list((tmp_path / "lake" / "lake").glob("*/prod/_profile/profile.duckdb"))
