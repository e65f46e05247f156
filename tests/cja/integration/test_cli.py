"""``audiencehub cja-transform`` against a real server: the seed's JSON written to a file, and ingested."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cja.test_cja_transform import NAMES, Exported, expected_pairs
from tests.exports.support import SEED_EXPORT, build, create_dataset, post_export, wait_export
from tests.integration.conftest import Server, cli

pytestmark = pytest.mark.integration


def test_the_command_writes_the_seeds_json_and_ingests_it(
    server: Server, headers: dict[str, str], tmp_path: Path
) -> None:
    http = server.http
    s = build(http, headers)  # type: ignore[arg-type]  # an httpx client, as the TestClient is
    dataset = create_dataset(http, headers)  # type: ignore[arg-type]
    body = SEED_EXPORT % {"fields": s.fields, "a1": s.blue, "a2": s.gold, "a3": s.women, "dataset": dataset}
    job = wait_export(http, headers, post_export(http, headers, body)["id"])  # type: ignore[arg-type]
    assert job["status"] == "SUCCEEDED", job
    e = Exported(s, dataset)
    out = tmp_path / "cja.json"
    args = ["--dataset", dataset, "--person-field", e.person_field, "--url", server.url]
    for audience in e.ids().values():
        args += ["--audience", audience]

    done = cli("cja-transform", *args, "--tenant", "_demoemea", "--output", str(out), home=server.home, cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    names = {e.ids()[k]: v for k, v in NAMES.items()}
    want = [
        {"_id": str(n), "personID": p, "_demoemea": {"audienceMembershipId": a, "audienceMembershipName": names[a]}}
        for n, (a, p) in enumerate(expected_pairs(e), start=1)
    ]
    assert json.loads(out.read_text()) == want
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"records": len(want), "file": str(out)}

    done = cli("cja-transform", *args, "--ingest", home=server.home, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["batchStatus"] == "success" and answer["records"] == len(want)

    bad = cli("cja-transform", *args[:-2], "--audience", "nope", home=server.home, cwd=tmp_path)
    assert bad.returncode == 1 and "nope" in bad.stderr
