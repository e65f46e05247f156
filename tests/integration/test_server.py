"""The real server process: the seed flow, kill -9 in the middle of a run, bootstrap, the CLI, big uploads."""

from __future__ import annotations

import hashlib
import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import EA, LZ, seed_audience, wait_for
from tests.integration.conftest import (
    HOLD_ENV,
    SEED_CSV,
    SEED_MEMBERS,
    SEED_PATH,
    SEED_RUN_BODY,
    Server,
    ServerFactory,
    cli,
    create_audience,
    get_run,
    member_ids,
    members,
    start_run,
    upload,
    wait_run,
)

pytestmark = pytest.mark.integration

SEED_BATCH_ROWS = [
    ("alice@example.com", "L1", 0.0, "yes"),
    ("bob@example.com", "L2", 0.0, "no"),
    ("dave@example.com", "L3", 0.0, "yes"),
    ("carol@example.com", "L4", 1.0, "yes"),
]


def sandbox_dir(server: Server, org_id: str, sandbox: str = "prod") -> Path:
    return server.home / "lake" / org_id / sandbox


def dataset_id(server: Server, headers: dict[str, str], audience_id: str) -> str:
    resp = server.http.get(f"{EA}/{audience_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    found: str = resp.json()["datasetId"]
    return found


def batch_files(server: Server, org_id: str, dataset: str) -> list[Path]:
    return sorted((sandbox_dir(server, org_id) / dataset).glob("**/*.parquet"))


def staging_leftovers(server: Server, org_id: str) -> list[Path]:
    staging = sandbox_dir(server, org_id) / "_staging"
    return sorted(staging.iterdir()) if staging.exists() else []


def read_parquet(path: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        return con.execute("SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
    finally:
        con.close()


def seed_audience_on(server: Server, headers: dict[str, str]) -> str:
    """Uploads the seed CSV and creates seed 003's audience over it (cloudType DLZ, no baseConnectionId)."""
    upload(server.http, headers, SEED_PATH, SEED_CSV)
    body = seed_audience(SEED_PATH)
    assert body["sourceSpec"]["params"]["cloudType"] == "DLZ"
    assert "baseConnectionId" not in body["sourceSpec"]["params"]
    return create_audience(server.http, headers, body)


def assert_seed_batch(server: Server, org_id: str, dataset: str, run: dict[str, Any]) -> None:
    files = batch_files(server, org_id, dataset)
    assert len(files) == 1, files
    part = files[0]
    assert part.name == "part-00000.parquet"
    assert part.parent.parent == sandbox_dir(server, org_id) / dataset
    assert read_parquet(part) == SEED_BATCH_ROWS
    assert run["metrics"]["recordsRead"] == 4
    assert run["metrics"]["recordsIngested"] == 4
    assert run["metrics"]["recordsFailed"] == 0


def assert_seed_members(server: Server, headers: dict[str, str], audience_id: str) -> None:
    body = members(server.http, headers, audience_id)
    assert member_ids(body) == SEED_MEMBERS
    assert body["counts"]["realized"] == 3
    payloads = {m["identities"][0]["id"]: m["payload"] for m in body["members"]}
    assert payloads["alice@example.com"] == {"list_id": "L1", "process_consent": "yes"}
    assert payloads["bob@example.com"] == {"list_id": "L2", "process_consent": "no"}


# -- the seed flow ---------------------------------------------------------------------------------


def test_seed_flow_against_the_real_process(server: Server, creds: dict[str, str], headers: dict[str, str]) -> None:
    """README's first steps, sent as its curl commands send them."""
    http = server.http
    # 2. curl -X PUT --data-binary @example.csv (curl labels the body as a form)
    resp = http.put(
        f"{LZ}/dlz-user-container/{SEED_PATH}",
        content=SEED_CSV,
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"containerName": "dlz-user-container", "path": SEED_PATH, "size": len(SEED_CSV)}

    # 3. create the audience; 4. poll its operation for the audience id
    resp = http.post(EA + "/", json=seed_audience(SEED_PATH), headers=headers)
    assert resp.status_code == 202, resp.text
    op_id = resp.json()["operationId"]

    def operation_done() -> dict[str, Any] | None:
        op: dict[str, Any] = http.get(f"{EA}/operations/{op_id}", headers=headers).json()
        return op if op["status"] != "PROCESSING" else None

    op = wait_for(operation_done, timeout=60, interval=0.1, what="audience creation")
    assert op["status"] == "SUCCESS", op
    audience_id = op["audienceId"]

    # 5. start a run with the seed's body and no Content-Type, then poll it
    run_id = start_run(http, headers, audience_id)
    run = wait_run(http, headers, audience_id, run_id)
    assert run["status"] == "SUCCESS", run
    assert run["dataFilterStartTime"] == 764245635
    assert [(d["stage"], d["status"]) for d in run["details"]] == [
        ("DATASET_INGEST", "SUCCESS"),
        ("PROFILE_STORE_INGEST", "SUCCESS"),
    ]
    assert run["metrics"]["membersRealized"] == 3

    # the dataset batch on disk, and 6. the members
    assert_seed_batch(server, creds["org_id"], dataset_id(server, headers, audience_id), run)
    assert_seed_members(server, headers, audience_id)
    errors = http.get(f"{EA}/{audience_id}/runs/{run_id}/errors", headers=headers)
    assert errors.status_code == 200
    assert errors.text.splitlines() == ["file,record,line,column,value,reason"]
    assert staging_leftovers(server, creds["org_id"]) == []

    # curl -d labels the run body as a form; that reads the same.
    form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    resp = http.post(f"{EA}/{audience_id}/runs", content=SEED_RUN_BODY, headers=form)
    assert resp.status_code == 200, resp.text
    again = wait_run(http, headers, audience_id, resp.json()["runId"])
    assert again["status"] == "SUCCESS", again
    assert again["differentialIngestion"] is True
    assert member_ids(members(http, headers, audience_id)) == SEED_MEMBERS


# -- kill -9 during a run --------------------------------------------------------------------------


def held_run(server: Server, checkpoint: str) -> tuple[dict[str, str], dict[str, str], str, str]:
    """A run paused at ``checkpoint``: (creds, headers, audience id, run id)."""
    creds = server.credentials()
    headers = server.headers(creds)
    audience_id = seed_audience_on(server, headers)
    run_id = start_run(server.http, headers, audience_id)
    hold = server.home / "holds" / f"{run_id}.{checkpoint}"
    wait_for(hold.exists, timeout=60, interval=0.05, what=f"hold file {hold.name}")
    assert get_run(server.http, headers, audience_id, run_id)["status"] == "PROCESSING"
    staged = sandbox_dir(server, creds["org_id"]) / "_staging" / run_id / "batch" / "part-00000.parquet"
    assert staged.is_file(), "the run should have staged its batch before the hold"
    return creds, headers, audience_id, run_id


def test_run_killed_before_the_profile_commit_fails_and_leaves_nothing(servers: ServerFactory) -> None:
    server = servers(env={HOLD_ENV: "before_profile"})
    creds, headers, audience_id, run_id = held_run(server, "before_profile")
    dataset = dataset_id(server, headers, audience_id)

    server.kill()
    server.start(env={})
    headers = server.headers(creds)

    run = wait_run(server.http, headers, audience_id, run_id, timeout=30)
    assert run["status"] == "FAILED", run
    assert "server stopped" in run["error"]["message"], run
    assert batch_files(server, creds["org_id"], dataset) == []
    body = members(server.http, headers, audience_id)
    assert body["members"] == [] and body["_page"]["totalCount"] == 0, body
    assert body["counts"]["realized"] == 0
    assert staging_leftovers(server, creds["org_id"]) == []

    again = wait_run(server.http, headers, audience_id, start_run(server.http, headers, audience_id))
    assert again["status"] == "SUCCESS", again
    assert_seed_batch(server, creds["org_id"], dataset, again)
    assert_seed_members(server, headers, audience_id)
    assert staging_leftovers(server, creds["org_id"]) == []


def test_run_killed_after_the_profile_commit_is_rolled_forward(servers: ServerFactory) -> None:
    server = servers(env={HOLD_ENV: "after_profile_commit"})
    creds, headers, audience_id, run_id = held_run(server, "after_profile_commit")
    dataset = dataset_id(server, headers, audience_id)
    assert batch_files(server, creds["org_id"], dataset) == []

    server.kill()
    server.start(env={})
    headers = server.headers(creds)

    run = wait_run(server.http, headers, audience_id, run_id, timeout=30)
    assert run["status"] == "SUCCESS", run
    assert "error" not in run
    assert [d["status"] for d in run["details"]] == ["SUCCESS", "SUCCESS"]
    assert run["metrics"]["membersRealized"] == 3
    assert_seed_batch(server, creds["org_id"], dataset, run)
    assert_seed_members(server, headers, audience_id)
    assert staging_leftovers(server, creds["org_id"]) == []


# -- bootstrap -------------------------------------------------------------------------------------


def test_bootstrap_from_env_creates_that_org_and_client(servers: ServerFactory) -> None:
    named = {"org_id": "ACME0000000000000000001@AdobeOrg", "client_id": "acme-client", "client_secret": "p8e-acme"}
    server = servers(
        env={
            "AUDIENCEHUB_BOOTSTRAP_ORG_ID": named["org_id"],
            "AUDIENCEHUB_BOOTSTRAP_CLIENT_ID": named["client_id"],
            "AUDIENCEHUB_BOOTSTRAP_CLIENT_SECRET": named["client_secret"],
        }
    )
    assert not (server.home / "credentials.json").exists()
    assert named["client_secret"] not in server.stdout()
    headers = server.headers(named, sandbox="prod")
    resp = server.http.get(EA, headers=headers)
    assert resp.status_code == 200, resp.text
    resp = server.http.get(LZ, headers=headers)
    assert resp.status_code == 200, resp.text

    wrong = server.http.post(
        "/ims/token/v3",
        data={"grant_type": "client_credentials", "client_id": named["client_id"], "client_secret": "nope"},
    )
    assert wrong.status_code == 401, wrong.text

    # Restarting with the same env is a no-op, and the client still works.
    server.restart()
    assert not (server.home / "credentials.json").exists()
    assert server.http.get(EA, headers=server.headers(named)).status_code == 200


def test_first_start_writes_dev_credentials_and_prints_the_secret_once(servers: ServerFactory) -> None:
    server = servers()
    path = server.home / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    creds = server.credentials()
    assert set(creds) >= {"org_id", "sandbox", "client_id", "client_secret"}
    assert creds["sandbox"] == "prod"
    first = server.stdout()
    assert creds["client_secret"] in first
    assert creds["client_id"] in first
    assert server.http.get(EA, headers=server.headers(creds)).status_code == 200

    server.stop()
    server.start()
    assert creds["client_secret"] not in server.stdout()
    assert "generated development credentials" not in server.stdout()
    assert server.credentials() == creds
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert server.http.get(EA, headers=server.headers(creds)).status_code == 200


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_upload_with_credentials_from_home(server: Server, headers: dict[str, str], tmp_path: Path) -> None:
    local = tmp_path / "audience.csv"
    content = b"ppid,list_id\n" + b"".join(b"user%d@example.com,L%d\n" % (i, i) for i in range(20000))
    local.write_bytes(content)

    done = cli("upload", str(local), "activation/cli/audience.csv", "--url", server.url, home=server.home, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {
        "containerName": "dlz-user-container",
        "path": "activation/cli/audience.csv",
        "size": len(content),
    }

    listing = server.http.get(f"{LZ}/dlz-user-container/activation/cli", headers=headers)
    assert listing.status_code == 200, listing.text
    items = {i["name"]: i for i in listing.json()["items"]}
    assert items["audience.csv"]["size"] == len(content)
    assert items["audience.csv"]["type"] == "file"
    download = server.http.get(f"{LZ}/activation/cli/audience.csv", headers=headers)
    assert download.status_code == 200
    assert download.content == content


def test_cli_upload_without_credentials_says_so(tmp_path: Path) -> None:
    local = tmp_path / "a.csv"
    local.write_bytes(b"ppid\n")
    done = cli("upload", str(local), "a.csv", "--url", "http://127.0.0.1:9", home=tmp_path / "empty", cwd=tmp_path)
    assert done.returncode == 2
    assert "no credentials" in done.stderr


def test_cli_creates_orgs_sandboxes_and_clients_that_the_server_accepts(servers: ServerFactory, tmp_path: Path) -> None:
    home = tmp_path / "cli-home"
    org_id = "CLI0000000000000000000001@AdobeOrg"

    made = cli("orgs", "create", "--id", org_id, "--name", "CLI org", home=home, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == org_id
    box = cli("sandboxes", "create", org_id, "dev", "--title", "Development", home=home, cwd=tmp_path)
    assert box.returncode == 0, box.stderr
    assert box.stdout.strip() == "dev"
    client = cli("clients", "create", org_id, "--name", "cli client", home=home, cwd=tmp_path)
    assert client.returncode == 0, client.stderr
    first = json.loads(client.stdout)
    assert first["org_id"] == org_id and first["client_id"] and first["client_secret"]

    again = cli("orgs", "create", "--id", org_id, home=home, cwd=tmp_path)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    missing = cli("sandboxes", "create", "NOPE@AdobeOrg", "dev", home=home, cwd=tmp_path)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr

    listed = json.loads(cli("orgs", "list", home=home, cwd=tmp_path).stdout)
    assert listed == [{"id": org_id, "name": "CLI org", "sandboxes": ["dev", "prod"], "clients": [first["client_id"]]}]

    # The server starts on that home: the store is not empty, so it generates no dev credentials.
    server = servers(home=home)
    assert not (home / "credentials.json").exists()
    assert "client secret" not in server.stdout()
    for sandbox in ("prod", "dev"):
        resp = server.http.get(LZ, headers=server.headers(first, sandbox=sandbox))
        assert resp.status_code == 200, resp.text
    unknown = server.http.get(LZ, headers=server.headers(first, sandbox="nope"))
    assert unknown.status_code == 404, unknown.text

    # A client created while the server runs (SQLite allows a second writer) works at once.
    live = cli(
        "clients", "create", org_id, "--client-id", "live-client", "--secret", "p8e-live", home=home, cwd=tmp_path
    )
    assert live.returncode == 0, live.stderr
    second = json.loads(live.stdout)
    assert second == {"org_id": org_id, "sandbox": "prod", "client_id": "live-client", "client_secret": "p8e-live"}
    resp = server.http.get(EA, headers=server.headers(second, sandbox="dev"))
    assert resp.status_code == 200, resp.text


# -- large uploads ---------------------------------------------------------------------------------

LARGE_CHUNK = 1 << 20
LARGE_CHUNKS = 300
RSS_LIMIT_KB = 400 * 1024
RSS_GROWTH_LIMIT_KB = 128 * 1024  # far below the 300 MB sent: the body is streamed, never held


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.slow
def test_large_upload_streams_in_bounded_memory(server: Server, headers: dict[str, str]) -> None:
    """~300 MB generated on the fly and sent chunked; the server's peak RSS stays far below it."""
    digest = hashlib.sha256()
    sent = [0]

    def chunks() -> Iterator[bytes]:
        for n in range(LARGE_CHUNKS):
            block = (b"%08d," % n) * (LARGE_CHUNK // 9) + b"\n" * (LARGE_CHUNK % 9)
            digest.update(block)
            sent[0] += len(block)
            yield block

    folder = server.home / "landing" / server.credentials()["org_id"] / "prod" / "big"
    baseline = status_kb(server.pid, "VmHWM")
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            peak[0] = max(peak[0], status_kb(server.pid, "VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        resp = server.http.put(f"{LZ}/dlz-user-container/big/large.csv", content=chunks(), headers=headers)
        stop.set()
        sampler.join()
        assert resp.status_code == 201, resp.text
        total = LARGE_CHUNK * LARGE_CHUNKS
        assert sent[0] == total
        assert resp.json()["size"] == total

        hwm = status_kb(server.pid, "VmHWM")
        memory = f"server peak RSS {hwm} kB (before the upload {baseline} kB, sampled peak {peak[0]} kB)"
        assert hwm < RSS_LIMIT_KB, memory
        assert hwm - baseline < RSS_GROWTH_LIMIT_KB, memory

        listing = server.http.get(f"{LZ}/big", headers=headers).json()
        assert [(i["name"], i["size"]) for i in listing["items"]] == [("large.csv", total)]
        stored = folder / "large.csv"
        assert stored.stat().st_size == total
        with stored.open("rb") as fh:
            assert hashlib.file_digest(fh, "sha256").hexdigest() == digest.hexdigest()
        assert [p.name for p in folder.iterdir()] == ["large.csv"], "no partial file may be left behind"

        gone = server.http.delete(f"{LZ}/big/large.csv", headers=headers)
        assert gone.status_code == 204, gone.text
        assert not stored.exists()
    finally:
        stop.set()
        sampler.join()
        # 300 MB must not outlive the test in pytest's kept temporary folders.
        for leftover in folder.glob("*") if folder.exists() else []:
            leftover.unlink()
