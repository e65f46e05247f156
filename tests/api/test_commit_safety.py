"""What users see when a run's commit or an audience's deletion cannot finish in one go."""

from __future__ import annotations

from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.config import Settings
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import get_row, update_row
from tests.api.support import assert_problem, member_counts, seed_csv
from tests.conftest import EA, create_audience, run_and_wait, seed_audience, upload

FILE = "activation/sample-source/example.csv"


def test_a_run_whose_batch_cannot_be_published_says_the_profile_store_has_it(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    upload(client, headers, FILE, seed_csv(["a@example.com", "L1", 0, "yes"], ["b@example.com", "L2", 0, "no"]))
    audience_id = create_audience(client, headers, seed_audience())
    dataset = client.get(f"{EA}/{audience_id}", headers=headers).json()["datasetId"]
    # A file where the dataset's folder belongs: the batch can never be moved into place.
    blocker = settings.home / "lake" / creds["org_id"] / "prod" / dataset
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")

    run = run_and_wait(client, headers, audience_id)

    assert run["status"] == "FAILED", run
    assert "the profile store applied this run" in run["error"]["message"]
    assert "nothing was committed" not in run["error"]["message"]
    stages = {d["stage"]: d["status"] for d in run["details"]}
    assert stages == {"DATASET_INGEST": "SUCCESS", "PROFILE_STORE_INGEST": "FAILED"}, "the run and its stages agree"
    assert member_counts(client, headers, audience_id)["realized"] == 2
    # The staged batch is kept for an operator, not deleted with the evidence.
    staged = settings.home / "lake" / creds["org_id"] / "prod" / "_staging" / run["runId"] / "batch"
    assert list(staged.glob("*.parquet"))


def test_a_deletion_interrupted_after_its_first_step_completes_on_the_next_start(
    settings: Settings, creds: dict[str, str], client: TestClient, headers: dict[str, str]
) -> None:
    upload(client, headers, FILE, seed_csv(["a@example.com", "L1", 0, "yes"]))
    audience_id = create_audience(client, headers, seed_audience())
    assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"
    dataset = client.get(f"{EA}/{audience_id}", headers=headers).json()["datasetId"]
    store = client.app.state.container.store  # type: ignore[attr-defined]
    # The state a stop leaves after DELETE's first transaction: the audience is marked, nothing removed.
    with store.tx() as conn:
        update_row(conn, t.audiences, audience_id, {"state": "DELETING"})

    assert_problem(client.get(f"{EA}/{audience_id}", headers=headers), 404, "100940-404", audience_id)
    resp = client.post(f"{EA}/{audience_id}/runs", json={"dataFilterStartTime": 0}, headers=headers)
    assert_problem(resp, 404, "100940-404", audience_id)

    client.__exit__(None, None, None)
    with TestClient(create_app(settings)) as again:
        assert not (settings.home / "lake" / creds["org_id"] / "prod" / dataset).exists()
        resp = again.post(f"{EA}/", json=seed_audience(), headers=headers)
        assert resp.status_code == 202, "the name is free again once the deletion completed"


def test_a_landing_zone_path_with_a_hidden_segment_is_refused_at_creation(
    client: TestClient, headers: dict[str, str]
) -> None:
    resp = client.post(f"{EA}/", json=seed_audience(path="activation/.hidden/example.csv"), headers=headers)
    assert_problem(resp, 400, "100910-400", "sourceSpec.path", ".hidden")


def test_a_deletion_that_cannot_complete_does_not_keep_the_server_down(
    settings: Settings, creds: dict[str, str], client: TestClient, headers: dict[str, str]
) -> None:
    audience_id = create_audience(client, headers, seed_audience())
    store = client.app.state.container.store  # type: ignore[attr-defined]
    with store.tx() as conn:
        update_row(conn, t.audiences, audience_id, {"state": "DELETING"})
    client.__exit__(None, None, None)
    # The sandbox's profile store cannot be opened: its deletion cannot complete at start.
    profile = settings.home / "lake" / creds["org_id"] / "prod" / "_profile"
    for f in profile.glob("profile.duckdb*"):
        f.unlink()
    (profile / "profile.duckdb").mkdir()

    with TestClient(create_app(settings)) as again:
        assert again.get("/health").status_code == 200
        with again.app.state.container.store.read() as conn:  # type: ignore[attr-defined]
            assert get_row(conn, t.audiences, None, id=audience_id)["state"] == "DELETING"  # type: ignore[index]
