"""A run that the embedded profile store has too little memory for: it fails and says which setting to raise, and
the next run of the sandbox succeeds without a restart (DuckDB invalidated the database; the store reopened it)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from audiencehub.app import create_app
from tests.api.support import member_counts, seed_csv
from tests.conftest import create_audience, run_and_wait, seed_audience, test_settings, token_for, upload

FILE = "activation/sample-source/example.csv"
ROWS = 400_000
LIMIT = "40MB"


def test_a_run_the_profile_store_has_no_memory_for_fails_with_the_setting_and_the_next_run_succeeds(
    tmp_path: Path,
) -> None:
    settings = test_settings(tmp_path / "home", profile_memory_limit=LIMIT)
    with TestClient(create_app(settings)) as client:
        creds = json.loads((settings.home / "credentials.json").read_text())
        headers = {
            "Authorization": f"Bearer {token_for(client, creds['client_id'], creds['client_secret'])}",
            "x-api-key": creds["client_id"],
            "x-gw-ims-org-id": creds["org_id"],
            "x-sandbox-name": "prod",
        }
        upload(client, headers, FILE, seed_csv(*([f"u{n}@example.com", "L1", 0, "yes"] for n in range(ROWS))))
        audience_id = create_audience(client, headers, seed_audience())

        run = run_and_wait(client, headers, audience_id)

        assert run["status"] == "FAILED", run
        message = run["error"]["message"]
        assert message.startswith(
            f"the profile store ran out of memory (AUDIENCEHUB_PROFILE_MEMORY_LIMIT={LIMIT}); raise the limit"
        ), message
        assert "MiB used)" in message, message  # and DuckDB's own words
        stages = {d["stage"]: d["status"] for d in run["details"]}
        assert stages == {"DATASET_INGEST": "SUCCESS", "PROFILE_STORE_INGEST": "FAILED"}

        upload(client, headers, FILE, seed_csv(["a@example.com", "L1", 0, "yes"], ["b@example.com", "L2", 0, "no"]))
        assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"
        assert member_counts(client, headers, audience_id)["realized"] == 2  # and none of the failed run's
