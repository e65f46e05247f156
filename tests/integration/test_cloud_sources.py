"""A real server reads audiences from S3 and SFTP, keeps credentials sealed across a restart, and never shows them."""

from __future__ import annotations

import pytest

from tests.conftest import seed_audience
from tests.integration.conftest import (
    SEED_CSV,
    SEED_MEMBERS,
    Server,
    create_audience,
    member_ids,
    members,
    start_run,
    wait_run,
)
from tests.servers.s3 import MotoServer
from tests.servers.sftp import SftpServer
from tests.sources.backends import Backend, make_backend

pytestmark = pytest.mark.integration

CONNECTIONS = "/data/foundation/flowservice/connections"


def _ingest(server: Server, headers: dict[str, str], backend: Backend, name: str, *, bad: bool = False) -> dict:
    resp = server.http.post(CONNECTIONS, json=backend.body(bad=bad, name=name), headers=headers)
    assert resp.status_code == 201, resp.text
    body = seed_audience(name=name, path="activation/example.csv")
    body["sourceSpec"]["params"].update(cloudType=backend.cloud_type, baseConnectionId=resp.json()["id"])
    audience_id = create_audience(server.http, headers, body)
    run = wait_run(server.http, headers, audience_id, start_run(server.http, headers, audience_id))
    run["audienceId"] = audience_id
    return run


def test_s3_and_sftp_audiences_on_a_real_server_and_no_secret_anywhere(
    server: Server, headers: dict[str, str], moto_server: MotoServer, sftp_server: SftpServer
) -> None:
    backends = [
        make_backend("s3", moto=moto_server, bucket=moto_server.make_bucket()),
        make_backend("sftp_password", sftp=sftp_server, sftp_folder=sftp_server.make_folder()),
    ]
    answers: list[str] = []
    audiences: list[str] = []
    for backend in backends:
        backend.put("activation/example.csv", SEED_CSV)
        run = _ingest(server, headers, backend, f"{backend.kind} good")
        assert run["status"] == "SUCCESS", run
        assert member_ids(members(server.http, headers, run["audienceId"])) == SEED_MEMBERS
        audiences.append(run["audienceId"])
        failed = _ingest(server, headers, backend, f"{backend.kind} wrong secret", bad=True)
        assert failed["status"] == "FAILED", failed
        answers += [str(run), str(failed)]

    listed = server.http.get(CONNECTIONS, headers=headers)
    assert listed.status_code == 200
    answers.append(listed.text)
    for item in listed.json()["items"]:
        answers.append(server.http.post(f"{CONNECTIONS}/{item['id']}/test", headers=headers).text)

    # The key file is what opens the sealed credentials: after a restart they still work.
    server.restart()
    headers = server.headers()
    backends[0].put("activation/example.csv", SEED_CSV.replace(b"alice@", b"alicia@"))
    again = wait_run(server.http, headers, audiences[0], start_run(server.http, headers, audiences[0]))
    assert again["status"] == "SUCCESS", again
    assert "alicia@example.com" in member_ids(members(server.http, headers, audiences[0]))

    secrets = [s for b in backends for s in b.secret_values()]
    logs = "".join(server.stdout_path(n).read_text() + server.stderr_path(n).read_text() for n in (1, 2))
    stored = b"".join(p.read_bytes() for p in server.home.glob("metadata.db*"))
    for secret in secrets:
        assert all(secret not in answer for answer in answers), f"a response shows the secret {secret[:3]}…"
        assert secret not in logs, f"the server log shows the secret {secret[:3]}…"
        assert secret.encode() not in stored, f"the metadata store holds the secret {secret[:3]}… in clear"
