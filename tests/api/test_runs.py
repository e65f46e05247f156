"""POST/GET /external-audience/{id}/runs: validation, one run at a time, status, stages, metrics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import assert_problem, seed_csv
from tests.conftest import EA, create_audience, run_and_wait, seed_audience, upload, wait_for

FILE = "activation/sample-source/example.csv"
ROWS = seed_csv(["a@example.com", "L1", 0, "y"], ["b@example.com", "L2", 0, "n"])


@pytest.fixture
def audience_id(client: TestClient, headers: dict[str, str]) -> str:
    upload(client, headers, FILE, ROWS)
    return create_audience(client, headers, seed_audience())


def _start(client: TestClient, headers: dict[str, str], audience_id: str, body: Any) -> Any:
    return client.post(f"{EA}/{audience_id}/runs", json=body, headers=headers)


# -- starting a run ----------------------------------------------------------------------------


def test_start_answers_200_with_the_seed_shape(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    before = int(time.time())
    resp = _start(client, headers, audience_id, {"dataFilterStartTime": 764245635})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["audienceId"] == audience_id
    assert body["audienceName"] == "Sample external audience"
    assert len(body["runId"]) == 36
    assert body["dataFilterStartTime"] == 764245635
    assert before <= body["dataFilterEndTime"] <= int(time.time()), "dataFilterEndTime defaults to now"
    assert isinstance(body["createdAt"], int)
    assert body["createdBy"].endswith("@techacct.adobe.com")
    assert body["differentialIngestion"] is False


def test_start_keeps_an_explicit_end_time(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    end = int(time.time()) + 3600
    body = _start(client, headers, audience_id, {"dataFilterStartTime": 0, "dataFilterEndTime": end}).json()
    assert body["dataFilterEndTime"] == end


def test_run_of_another_audience_is_404(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    run_id = run_and_wait(client, headers, audience_id)["runId"]
    other = create_audience(client, headers, seed_audience(name="other"))
    assert_problem(client.get(f"{EA}/{other}/runs/{run_id}", headers=headers), 404, "100940-404", run_id)


# -- one run at a time -------------------------------------------------------------------------


def _hold_file(settings: Settings, run_id: str) -> Path:
    return settings.home / "holds" / f"{run_id}.before_profile"


def _held_run(client: TestClient, headers: dict[str, str], settings: Settings) -> tuple[str, str]:
    """A new audience and its first run, paused before the profile store: (audience id, run id)."""
    upload(client, headers, FILE, ROWS)
    audience_id = create_audience(client, headers, seed_audience())
    run_id = _start(client, headers, audience_id, {"dataFilterStartTime": 0}).json()["runId"]
    wait_for(lambda: _hold_file(settings, run_id).exists() or None, what="the run to reach its hold")
    return audience_id, run_id


def test_second_run_while_one_is_processing_is_422(
    held_client: TestClient, held_headers: dict[str, str], held_settings: Settings
) -> None:
    client, headers = held_client, held_headers
    audience_id, first = _held_run(client, headers, held_settings)
    assert client.get(f"{EA}/{audience_id}/runs/{first}", headers=headers).json()["status"] == "PROCESSING"

    resp = _start(client, headers, audience_id, {"dataFilterStartTime": 0})
    assert_problem(resp, 422, "100960-422", audience_id, "in progress")

    _hold_file(held_settings, first).unlink()
    run = wait_for(
        lambda: (
            (r := client.get(f"{EA}/{audience_id}/runs/{first}", headers=headers).json())["status"] != "PROCESSING"
            and r
        ),
        what="the held run to finish",
    )
    assert run["status"] == "SUCCESS", run
    assert client.get(f"{EA}/{audience_id}/runs", headers=headers).json()["_page"]["totalCount"] == 1


def test_delete_while_a_run_is_processing_is_422(
    held_client: TestClient, held_headers: dict[str, str], held_settings: Settings
) -> None:
    client, headers = held_client, held_headers
    audience_id, run_id = _held_run(client, headers, held_settings)
    assert_problem(client.delete(f"{EA}/{audience_id}", headers=headers), 422, "100960-422", "in progress")
    _hold_file(held_settings, run_id).unlink()
    wait_for(
        lambda: client.get(f"{EA}/{audience_id}/runs/{run_id}", headers=headers).json()["status"] == "SUCCESS",
        what="the held run to finish",
    )
    assert client.delete(f"{EA}/{audience_id}", headers=headers).status_code == 204


def test_held_run_shows_dataset_stage_done_and_profile_stage_processing(
    held_client: TestClient, held_headers: dict[str, str], held_settings: Settings
) -> None:
    client, headers = held_client, held_headers
    audience_id, run_id = _held_run(client, headers, held_settings)
    run = client.get(f"{EA}/{audience_id}/runs/{run_id}", headers=headers).json()
    stages = {d["stage"]: d["status"] for d in run["details"]}
    assert stages == {"DATASET_INGEST": "SUCCESS", "PROFILE_STORE_INGEST": "PROCESSING"}
    assert client.get(f"{EA}/{audience_id}/members", headers=headers).json()["members"] == []
    _hold_file(held_settings, run_id).unlink()


def test_a_new_run_is_accepted_after_the_previous_one_finished(
    client: TestClient, headers: dict[str, str], audience_id: str
) -> None:
    assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"
    assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"


def test_a_new_run_is_accepted_after_a_failed_one(client: TestClient, headers: dict[str, str]) -> None:
    audience_id = create_audience(client, headers, seed_audience(path="missing.csv"))
    assert run_and_wait(client, headers, audience_id)["status"] == "FAILED"
    assert run_and_wait(client, headers, audience_id)["status"] == "FAILED"


# -- differentialIngestion ---------------------------------------------------------------------


def test_first_successful_run_is_not_differential_and_the_next_is(
    client: TestClient, headers: dict[str, str], audience_id: str
) -> None:
    first = run_and_wait(client, headers, audience_id)
    assert first["status"] == "SUCCESS"
    assert first["differentialIngestion"] is False
    second = run_and_wait(client, headers, audience_id)
    assert second["differentialIngestion"] is True


def test_run_after_only_failed_runs_is_not_differential(client: TestClient, headers: dict[str, str]) -> None:
    audience_id = create_audience(client, headers, seed_audience())
    assert run_and_wait(client, headers, audience_id)["status"] == "FAILED"
    upload(client, headers, FILE, ROWS)
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS"
    assert run["differentialIngestion"] is False


def test_differential_false_is_honoured_after_a_success(
    client: TestClient, headers: dict[str, str], audience_id: str
) -> None:
    run_and_wait(client, headers, audience_id)
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, "differentialIngestion": False})
    assert run["differentialIngestion"] is False


# -- listing -----------------------------------------------------------------------------------


def test_runs_are_listed_newest_first(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    ids = [run_and_wait(client, headers, audience_id)["runId"] for _ in range(4)]
    listed = client.get(f"{EA}/{audience_id}/runs", headers=headers).json()
    assert [r["runId"] for r in listed["runs"]] == ids[::-1]
    assert listed["_page"]["totalCount"] == 4


def test_runs_list_pages_with_limit_and_start(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    ids = [run_and_wait(client, headers, audience_id)["runId"] for _ in range(3)]
    first = client.get(f"{EA}/{audience_id}/runs", params={"limit": 2}, headers=headers).json()
    rest = client.get(f"{EA}/{audience_id}/runs", params={"limit": 2, "start": 2}, headers=headers).json()
    assert [r["runId"] for r in first["runs"] + rest["runs"]] == ids[::-1]
    assert first["_page"] == {"totalCount": 3, "pageSize": 2, "start": 0, "next": 2}
    assert rest["_page"]["next"] is None


def test_runs_list_items_have_the_seed_keys(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    run_and_wait(client, headers, audience_id)
    (item,) = client.get(f"{EA}/{audience_id}/runs", headers=headers).json()["runs"]
    seed_keys = {
        "audienceName",
        "audienceId",
        "runId",
        "status",
        "differentialIngestion",
        "dataFilterStartTime",
        "dataFilterEndTime",
        "createdAt",
        "createdBy",
    }
    assert seed_keys <= set(item)


def test_runs_list_of_an_audience_without_runs_is_empty(
    client: TestClient, headers: dict[str, str], audience_id: str
) -> None:
    body = client.get(f"{EA}/{audience_id}/runs", headers=headers).json()
    assert body["runs"] == []
    assert body["_page"]["totalCount"] == 0


# -- status, stages and metrics ----------------------------------------------------------------


def test_successful_run_reports_both_stages_with_flow_run_ids(
    client: TestClient, headers: dict[str, str], audience_id: str
) -> None:
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS"
    assert [d["stage"] for d in run["details"]] == ["DATASET_INGEST", "PROFILE_STORE_INGEST"]
    assert all(d["status"] == "SUCCESS" for d in run["details"])
    flow_ids = [d["flowRunId"] for d in run["details"]]
    assert all(isinstance(f, str) and len(f) == 36 for f in flow_ids)
    assert len(set(flow_ids)) == 2
    assert "error" not in run
    assert "progress" not in run
    assert run["finishedAt"] >= run["createdAt"]


def test_run_get_matches_the_start_answer(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    started = _start(client, headers, audience_id, {"dataFilterStartTime": 5}).json()
    done = wait_for(
        lambda: (
            (r := client.get(f"{EA}/{audience_id}/runs/{started['runId']}", headers=headers).json())["status"]
            != "PROCESSING"
            and r
        )
    )
    assert started["status"] == "PROCESSING"
    for key, value in started.items():
        if key != "status":
            assert done[key] == value, key


def test_successful_run_metrics(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    metrics = run_and_wait(client, headers, audience_id)["metrics"]
    assert metrics == {
        "filesProcessed": 1,
        "recordsRead": 2,
        "recordsIngested": 2,
        "recordsFailed": 0,
        "profilesCreated": 2,
        "profilesUpdated": 0,
        "membersRealized": 2,
        "membersExited": 0,
    }


def test_second_run_updates_the_same_profiles(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    run_and_wait(client, headers, audience_id)
    metrics = run_and_wait(client, headers, audience_id)["metrics"]
    assert metrics["profilesCreated"] == 0
    assert metrics["profilesUpdated"] == 2
    assert metrics["membersRealized"] == 2


def test_failed_run_reports_the_failed_and_skipped_stages(client: TestClient, headers: dict[str, str]) -> None:
    audience_id = create_audience(client, headers, seed_audience(path="activation/missing.csv"))
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "FAILED"
    assert "activation/missing.csv" in run["error"]["message"]
    dataset, profile = run["details"]
    assert dataset["status"] == "FAILED"
    assert dataset["error"] == run["error"]["message"]
    assert profile["status"] == "SKIPPED"


def test_run_errors_of_a_clean_run_is_an_empty_csv(
    client: TestClient, headers: dict[str, str], audience_id: str
) -> None:
    run_id = run_and_wait(client, headers, audience_id)["runId"]
    resp = client.get(f"{EA}/{audience_id}/runs/{run_id}/errors", headers=headers)
    assert resp.status_code == 200
    assert resp.text == "file,record,line,column,value,reason\n"
