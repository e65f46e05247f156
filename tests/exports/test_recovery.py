"""An export job that stopped half way (the process died between publishing its batch folder and the metadata
commit) runs again to the same result, or fails cleanly when its worker is gone for good."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from audiencehub.metadata.store import Scope
from audiencehub.services.exports import ExportService
from tests.api.support import dataset_dir
from tests.api.xdm_support import CATALOG
from tests.exports.support import BLUE, EXPORTS, batch_rows, build, create_dataset, post_export


class Crash(BaseException):
    """What a killed process looks like to the code after the point where it died: nothing more runs."""


def stopped_job(client: TestClient, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict]:
    """A job whose first attempt died right before its commit: batch folder published, metadata not written."""
    s = build(client, headers)
    container = client.app.state.container  # type: ignore[attr-defined]
    container.runner.stop()  # the test plays the worker
    dataset_id = create_dataset(client, headers)
    job = post_export(client, headers, {
        "fields": "person.name.firstName",
        "filter": {"segments": [{"segmentId": s.blue}]},
        "destination": {"datasetId": dataset_id},
        "schema": {"name": "_xdm.context.profile"},
    })  # fmt: skip

    def die(*_: Any, **__: Any) -> None:
        raise Crash

    with monkeypatch.context() as m:
        m.setattr(ExportService, "_commit", die)
        with pytest.raises(Crash):
            container.exports.execute(str(job["id"]), Scope(headers["x-gw-ims-org-id"], "prod"))
    return container, job


def test_a_job_run_again_after_a_crash_commits_once(
    client: TestClient,
    headers: dict[str, str],
    settings: Settings,
    creds: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container, job = stopped_job(client, headers, monkeypatch)
    dataset_id, batch_id = job["destination"]["datasetId"], job["destination"]["batchId"]
    assert client.get(f"{EXPORTS}/{job['id']}", headers=headers).json()["status"] == "PROCESSING"
    assert client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]["status"] == "processing"
    published = list((dataset_dir(settings, creds, dataset_id) / batch_id).glob("*.parquet"))
    assert published  # the folder is there, but no reader sees an uncommitted batch

    container.exports.execute(str(job["id"]), Scope(creds["org_id"], "prod"))  # the runner's retry

    done = client.get(f"{EXPORTS}/{job['id']}", headers=headers).json()
    assert done["status"] == "SUCCEEDED", done
    rows = batch_rows(settings, creds, dataset_id, batch_id)
    assert len(rows) == len(BLUE) == done["metrics"]["totalExportedProfileCounter"]
    assert client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]["recordCount"] == len(BLUE)
    staging = settings.home / "lake" / creds["org_id"] / "prod" / "_staging"
    assert not staging.exists() or not any(staging.iterdir())
    # Running it once more changes nothing.
    container.exports.execute(str(job["id"]), Scope(creds["org_id"], "prod"))
    assert len(batch_rows(settings, creds, dataset_id, batch_id)) == len(BLUE)


def test_a_job_whose_worker_is_gone_fails_and_leaves_nothing_behind(
    client: TestClient,
    headers: dict[str, str],
    settings: Settings,
    creds: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container, job = stopped_job(client, headers, monkeypatch)
    dataset_id, batch_id = job["destination"]["datasetId"], job["destination"]["batchId"]

    container.exports.recover(str(job["id"]), Scope(creds["org_id"], "prod"))

    failed = client.get(f"{EXPORTS}/{job['id']}", headers=headers).json()
    assert failed["status"] == "FAILED" and "stopped" in failed["errors"][0]["msg"]
    batch = client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]
    assert batch["status"] == "failed" and "stopped" in batch["errors"][0]["description"]
    assert not (dataset_dir(settings, creds, dataset_id) / batch_id).exists()
