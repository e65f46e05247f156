"""A run that the embedded profile store has too little memory for: it fails and says which setting to raise, and
the next run of the sandbox succeeds without a restart (DuckDB invalidated the database; the store reopened it).
And a run whose store failed after its commit reached the log: the run completes, nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.metadata.store import Scope
from audiencehub.profile.base import AudienceRows, ProfileStoreFailed
from tests.api.support import headers_for, member_counts, seed_csv
from tests.conftest import create_audience, run_and_wait, seed_audience, test_settings, upload

FILE = "activation/sample-source/example.csv"
ROWS = 400_000
LIMIT = "40MB"


def test_a_run_the_profile_store_has_no_memory_for_fails_with_the_setting_and_the_next_run_succeeds(
    tmp_path: Path,
) -> None:
    settings = test_settings(tmp_path / "home", profile_memory_limit=LIMIT)
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
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


def test_a_run_the_store_applied_before_it_failed_completes_with_its_members_and_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB invalidates a database whose COMMIT fails after the commit reached its write-ahead log (out of memory
    while checkpointing, say): the store reports a failure, yet the run is in the store once it opens the file
    again. The run must then complete (members, dataset batch, SUCCESS), not fail with its members kept."""
    settings = test_settings(tmp_path / "home")
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        store = client.app.state.container.profiles
        apply = store.apply_audience

        def applied_then_failed(scope: Scope, rows: AudienceRows) -> object:
            apply(scope, rows)
            raise ProfileStoreFailed("the profile store failed and was closed, to be opened again; DuckDB: FATAL")

        monkeypatch.setattr(store, "apply_audience", applied_then_failed)
        upload(client, headers, FILE, seed_csv(["a@example.com", "L1", 0, "yes"], ["b@example.com", "L2", 0, "no"]))
        audience_id = create_audience(client, headers, seed_audience())

        run = run_and_wait(client, headers, audience_id)

        assert run["status"] == "SUCCESS", run
        assert member_counts(client, headers, audience_id)["realized"] == 2
        assert {d["stage"]: d["status"] for d in run["details"]} == {
            "DATASET_INGEST": "SUCCESS",
            "PROFILE_STORE_INGEST": "SUCCESS",
        }
