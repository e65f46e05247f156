"""A PATCH of ttlInDays while a run is processing stays in force after the run applies."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from audiencehub.config import Settings
from audiencehub.metadata.store import Scope
from tests.api.support import seed_csv
from tests.conftest import EA, create_audience, seed_audience, upload, wait_for

FILE = "activation/sample-source/example.csv"


def _stored_ttl(client: TestClient, settings: Settings, audience_id: str) -> int:
    """The ttl the profile store reads memberships with (its ``audiences`` table)."""
    org_id = json.loads((settings.home / "credentials.json").read_text())["org_id"]
    store = client.app.state.container.profiles
    with store._cursor(Scope(org_id, "prod")) as cur:
        row = cur.execute("SELECT ttl_days FROM audiences WHERE audience_id = ?", [audience_id]).fetchone()
    assert row is not None
    return int(row[0])


def test_ttl_patched_during_a_held_run_is_what_the_profile_store_keeps(
    held_client: TestClient, held_headers: dict[str, str], held_settings: Settings
) -> None:
    client, headers = held_client, held_headers
    upload(client, headers, FILE, seed_csv(["a@example.com", "L1", 0, "y"]))
    audience_id = create_audience(client, headers, seed_audience())  # ttlInDays 40
    run_id = client.post(f"{EA}/{audience_id}/runs", json={"dataFilterStartTime": 0}, headers=headers).json()["runId"]
    hold = held_settings.home / "holds" / f"{run_id}.before_profile"
    wait_for(lambda: hold.exists() or None, what="the run to reach its hold")

    resp = client.patch(f"{EA}/{audience_id}", json={"ttlInDays": 5}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert _stored_ttl(client, held_settings, audience_id) == 5

    hold.unlink()
    run = wait_for(
        lambda: (
            (r := client.get(f"{EA}/{audience_id}/runs/{run_id}", headers=headers).json())["status"] != "PROCESSING"
            and r
        ),
        what="the held run to finish",
    )
    assert run["status"] == "SUCCESS", run
    assert _stored_ttl(client, held_settings, audience_id) == 5
    assert client.get(f"{EA}/{audience_id}", headers=headers).json()["ttlInDays"] == 5
