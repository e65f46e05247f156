"""Crash windows of the run commit protocol, against a real server killed with SIGKILL."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.integration.conftest import HOLD_ENV, ServerFactory, wait_run
from tests.integration.test_server import (
    assert_seed_batch,
    assert_seed_members,
    batch_files,
    dataset_id,
    held_run,
    sandbox_dir,
    staging_leftovers,
)

pytestmark = pytest.mark.integration


def test_run_killed_after_its_batch_moved_but_before_the_metadata_commit_is_rolled_forward(
    servers: ServerFactory,
) -> None:
    server = servers(env={HOLD_ENV: "after_profile_commit"})
    creds, headers, audience_id, run_id = held_run(server, "after_profile_commit")
    dataset = dataset_id(server, headers, audience_id)
    server.kill()
    # The state right after the batch folder was renamed into the dataset and before the metadata
    # store committed it: the staged batch is gone, the final folder exists, the run is PROCESSING.
    batch_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"audiencehub:batch:{run_id}"))
    staged = sandbox_dir(server, creds["org_id"]) / "_staging" / run_id / "batch"
    final = sandbox_dir(server, creds["org_id"]) / dataset / batch_id
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, final)

    server.start(env={})
    headers = server.headers(creds)
    run = wait_run(server.http, headers, audience_id, run_id, timeout=30)
    assert run["status"] == "SUCCESS", run
    assert_seed_batch(server, creds["org_id"], dataset, run)
    assert_seed_members(server, headers, audience_id)
    assert staging_leftovers(server, creds["org_id"]) == []
    assert len(batch_files(server, creds["org_id"], dataset)) == 1
