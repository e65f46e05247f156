"""The CLI against a real server (names that need URL-encoding, bad paths, no server) and one server per home."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import LZ
from tests.integration.conftest import Server, ServerFactory, cli, free_port

pytestmark = pytest.mark.integration

ODD_NAMES = ["zz?b.csv", "a#b.csv", "100%.csv", "q?x=1&y=2#frag.csv", "ünï/çødé.csv", "x.part", "semi;colon+plus.csv"]


def test_cli_upload_encodes_the_path(server: Server, headers: dict[str, str], tmp_path: Path) -> None:
    local = tmp_path / "audience.csv"
    for n, name in enumerate(ODD_NAMES):
        content = b"ppid\nuser%d@example.com\n" % n
        local.write_bytes(content)
        path = f"odd/{name}"
        done = cli("upload", str(local), path, "--url", server.url, home=server.home, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        assert answer == {"containerName": "dlz-user-container", "path": path, "size": len(content)}
        folder, _, leaf = path.rpartition("/")
        stored = server.home / "landing" / server.credentials()["org_id"] / "prod" / folder / leaf
        assert stored.read_bytes() == content, name
    listing = server.http.get(f"{LZ}/odd", params={"recursive": "true"}, headers=headers).json()
    files = sorted(i["path"] for i in listing["items"] if i["type"] == "file")
    assert files == sorted(f"odd/{name}" for name in ODD_NAMES)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("a b.csv", "spaces"),
        ("../up.csv", "'..'"),
        ("/abs.csv", "relative"),
        ("a\\b.csv", "backslashes"),
        (".hidden.csv", "starting with '.'"),
        ("a/.x.csv.0123.part", "starting with '.'"),
        ("dlz-user-container", "names the container"),
    ],
)
def test_cli_upload_refuses_a_bad_path_before_sending(tmp_path: Path, path: str, reason: str) -> None:
    local = tmp_path / "a.csv"
    local.write_bytes(b"ppid\n")
    # Credentials and a URL where nothing listens: the path is refused before either is used.
    done = cli(
        "upload", str(local), path, "--url", f"http://127.0.0.1:{free_port()}",
        "--client-id", "c", "--client-secret", "s", "--org-id", "O@AdobeOrg",
        home=tmp_path / "home", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: path "), done.stderr
    assert reason in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_upload_without_a_server_says_so(tmp_path: Path) -> None:
    local = tmp_path / "a.csv"
    local.write_bytes(b"ppid\n")
    url = f"http://127.0.0.1:{free_port()}"
    done = cli(
        "upload", str(local), "a.csv", "--url", url,
        "--client-id", "c", "--client-secret", "s", "--org-id", "O@AdobeOrg",
        home=tmp_path / "home", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: cannot reach {url}: " in done.stderr
    assert "is the server running? (--url)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("org_id", ["..", ".", "../escape", ".hidden", "-x"])
def test_cli_refuses_org_ids_that_would_leave_their_folder(tmp_path: Path, org_id: str) -> None:
    home = tmp_path / "home"
    made = cli("orgs", "create", f"--id={org_id}", home=home, cwd=tmp_path)
    assert made.returncode == 1, made.stdout + made.stderr
    assert "must start with a letter or digit" in made.stderr
    assert "Traceback" not in made.stderr
    assert json.loads(cli("orgs", "list", home=home, cwd=tmp_path).stdout) == []


def test_cli_refuses_a_dot_sandbox(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert cli("orgs", "create", "--id", "ORG@AdobeOrg", home=home, cwd=tmp_path).returncode == 0
    for name in ("..", "."):
        made = cli("sandboxes", "create", "ORG@AdobeOrg", name, home=home, cwd=tmp_path)
        assert made.returncode == 1, made.stdout + made.stderr
        assert "sandbox name" in made.stderr
    listed = json.loads(cli("orgs", "list", home=home, cwd=tmp_path).stdout)
    assert listed[0]["sandboxes"] == ["prod"]


def test_a_second_server_on_the_same_home_exits(servers: ServerFactory, tmp_path: Path) -> None:
    first = servers()
    headers = first.headers()
    second = cli("serve", "--host", "127.0.0.1", "--port", str(free_port()), home=first.home, cwd=tmp_path, timeout=60)
    assert second.returncode != 0, second.stdout + second.stderr
    assert f"another audiencehub process is using {first.home}" in second.stderr
    assert "Traceback" not in second.stderr

    # The first server is untouched, and the CLI's tenancy commands still work beside it.
    assert first.proc is not None and first.proc.poll() is None
    assert first.http.get(LZ, headers=headers).status_code == 200
    made = cli("orgs", "create", "--id", "BESIDE@AdobeOrg", home=first.home, cwd=tmp_path)
    assert made.returncode == 0, made.stderr

    # The lock dies with its process: after kill -9 the home can be served again at once.
    first.restart()
    assert first.http.get(LZ, headers=first.headers()).status_code == 200


def test_the_lock_file_does_not_stop_a_start_on_its_own(tmp_path: Path) -> None:
    """A .lock left by a dead process (a plain file, nobody holding it) is no obstacle."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".lock").write_text("12345\n")
    server = Server(home, tmp_path / "logs")
    try:
        server.start()
        assert server.http.get("/health").status_code == 200
    finally:
        server.stop()


def test_cli_sets_the_tenant_id_of_custom_fields(servers: ServerFactory, tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = cli("orgs", "create", "--id", "ACME1234@AdobeOrg", "--tenant-id", "demoemea", home=home, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    bad = cli("orgs", "tenant-id", "ACME1234@AdobeOrg", "Demo-EMEA", home=home, cwd=tmp_path)
    assert bad.returncode == 1 and "Demo-EMEA" in bad.stderr and "Traceback" not in bad.stderr
    client = json.loads(cli("clients", "create", "ACME1234@AdobeOrg", home=home, cwd=tmp_path).stdout)
    server = servers(home)
    token = server.token(client["client_id"], client["client_secret"])
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-key": client["client_id"],
        "x-gw-ims-org-id": "ACME1234@AdobeOrg",
        "x-sandbox-name": "prod",
    }
    stats = server.http.get("/data/foundation/schemaregistry/stats", headers=headers)
    assert stats.status_code == 200 and stats.json()["tenantId"] == "demoemea"
