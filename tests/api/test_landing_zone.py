"""The Data Landing Zone over HTTP: upload, list, download, delete, and paths that must stay inside."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import assert_problem, landing_root
from tests.conftest import LZ, upload


@pytest.fixture
def root(settings: Settings, creds: dict[str, str]) -> Path:
    return landing_root(settings, creds)


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _raw(client: TestClient, method: str, raw_path: bytes, headers: dict[str, str], content: bytes = b"") -> Answer:
    """Calls the app with ``raw_path`` exactly as a client like ``curl --path-as-is`` sends it.

    httpx folds '..' segments away before sending, so this talks ASGI to the app directly.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode()),
        "raw_path": raw_path,
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    incoming = [{"type": "http.request", "body": content, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    assert client.portal is not None
    client.portal.call(client.app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body)


# -- container ---------------------------------------------------------------------------------


def test_user_drop_zone_container(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.get(LZ, params={"type": "user_drop_zone"}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"containerName": "dlz-user-container", "containerTTL": "7"}


def test_user_drop_zone_container_with_trailing_slash(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.get(LZ + "/", params={"type": "user_drop_zone"}, headers=headers)
    assert resp.json()["containerName"] == "dlz-user-container"


def test_other_container_type_is_400(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.get(LZ, params={"type": "dlz_destination"}, headers=headers)
    assert_problem(resp, 400, "100910-400", "type", "dlz_destination")


# -- upload and listing ------------------------------------------------------------------------


def test_put_answers_201_with_path_and_size(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.put(f"{LZ}/activation/list.csv", content=b"abc", headers=headers)
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"containerName": "dlz-user-container", "path": "activation/list.csv", "size": 3}


def test_put_writes_the_file_under_the_sandbox_folder(client: TestClient, headers: dict[str, str], root: Path) -> None:
    upload(client, headers, "activation/list.csv", b"a,b\n1,2\n")
    assert (root / "activation" / "list.csv").read_bytes() == b"a,b\n1,2\n"


def test_folder_listing_shows_name_size_and_last_modified(
    client: TestClient, headers: dict[str, str], root: Path
) -> None:
    before = int(time.time())
    upload(client, headers, "activation/a.csv", b"12345")
    upload(client, headers, "activation/sub/b.csv", b"1")
    resp = client.get(f"{LZ}/activation", headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["containerName"] == "dlz-user-container"
    assert body["path"] == "activation"
    file_item, folder_item = body["items"]
    assert file_item["name"] == "a.csv"
    assert file_item["path"] == "activation/a.csv"
    assert file_item["type"] == "file"
    assert file_item["size"] == 5
    assert before - 1 <= file_item["lastModified"] <= int(time.time())
    assert folder_item["name"] == "sub"
    assert folder_item["type"] == "folder"
    assert "size" not in folder_item


def test_listing_reports_the_file_mtime(client: TestClient, headers: dict[str, str], root: Path) -> None:
    upload(client, headers, "old.csv", b"x")
    os.utime(root / "old.csv", (1_000_000_000, 1_000_000_000))
    (item,) = client.get(LZ + "/", headers=headers).json()["items"]
    assert item["lastModified"] == 1_000_000_000


def test_root_listing(client: TestClient, headers: dict[str, str]) -> None:
    upload(client, headers, "top.csv", b"x")
    for url in (LZ + "/", f"{LZ}/dlz-user-container", f"{LZ}/dlz-user-container/"):
        body = client.get(url, headers=headers).json()
        assert [i["name"] for i in body["items"]] == ["top.csv"], url


def test_recursive_listing(client: TestClient, headers: dict[str, str]) -> None:
    upload(client, headers, "a/b/c.csv", b"x")
    body = client.get(f"{LZ}/a", params={"recursive": "true"}, headers=headers).json()
    assert [i["path"] for i in body["items"]] == ["a/b/", "a/b/c.csv"]


def test_listing_hides_partial_and_hidden_files(client: TestClient, headers: dict[str, str], root: Path) -> None:
    upload(client, headers, "seen.csv", b"x")
    (root / ".hidden.csv").write_bytes(b"x")
    (root / ".upload.csv.0123.part").write_bytes(b"x")  # an upload in flight (a user's x.part is a file)
    assert [i["name"] for i in client.get(LZ + "/", headers=headers).json()["items"]] == ["seen.csv"]


def test_empty_landing_zone_lists_nothing(client: TestClient, headers: dict[str, str]) -> None:
    assert client.get(LZ + "/", headers=headers).json()["items"] == []


def test_put_replaces_an_existing_file(client: TestClient, headers: dict[str, str]) -> None:
    upload(client, headers, "x.csv", b"first version")
    upload(client, headers, "x.csv", b"second")
    assert client.get(f"{LZ}/x.csv", headers=headers).content == b"second"


def test_put_of_an_empty_file(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.put(f"{LZ}/empty.csv", content=b"", headers=headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["size"] == 0


def test_put_onto_a_folder_is_400(client: TestClient, headers: dict[str, str]) -> None:
    upload(client, headers, "folder/x.csv", b"x")
    assert_problem(client.put(f"{LZ}/folder", content=b"y", headers=headers), 400, "100910-400", "folder")


def test_put_below_a_file_is_400(client: TestClient, headers: dict[str, str], root: Path) -> None:
    upload(client, headers, "x.csv", b"x")
    resp = client.put(f"{LZ}/x.csv/y.csv", content=b"y", headers=headers)
    assert_problem(resp, 400, "100910-400", "x.csv")
    assert (root / "x.csv").read_bytes() == b"x"


# -- download ----------------------------------------------------------------------------------


def test_get_file_downloads_its_bytes(client: TestClient, headers: dict[str, str]) -> None:
    content = bytes(range(256)) * 10
    upload(client, headers, "bin/data.csv", content)
    resp = client.get(f"{LZ}/bin/data.csv", headers=headers)
    assert resp.status_code == 200
    assert resp.content == content
    assert resp.headers["content-type"] == "application/octet-stream"


def test_container_prefix_names_the_same_file(client: TestClient, headers: dict[str, str], root: Path) -> None:
    upload(client, headers, "dlz-user-container/x.csv", b"via prefix")
    assert (root / "x.csv").read_bytes() == b"via prefix"
    assert not (root / "dlz-user-container").exists()
    assert client.get(f"{LZ}/x.csv", headers=headers).content == b"via prefix"
    upload(client, headers, "x.csv", b"bare")
    assert client.get(f"{LZ}/dlz-user-container/x.csv", headers=headers).content == b"bare"


def test_put_to_the_container_itself_is_400(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.put(f"{LZ}/dlz-user-container", content=b"x", headers=headers)
    assert_problem(resp, 400, "100910-400", "dlz-user-container")


def test_get_unknown_path_is_404(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(client.get(f"{LZ}/nothing/here.csv", headers=headers), 404, "100940-404", "nothing/here.csv")


# -- delete ------------------------------------------------------------------------------------


def test_delete_is_204_then_get_is_404(client: TestClient, headers: dict[str, str], root: Path) -> None:
    upload(client, headers, "x.csv", b"x")
    resp = client.delete(f"{LZ}/x.csv", headers=headers)
    assert resp.status_code == 204
    assert resp.content == b""
    assert not (root / "x.csv").exists()
    assert_problem(client.get(f"{LZ}/x.csv", headers=headers), 404, "100940-404", "x.csv")


def test_delete_via_the_container_prefix(client: TestClient, headers: dict[str, str]) -> None:
    upload(client, headers, "x.csv", b"x")
    assert client.delete(f"{LZ}/dlz-user-container/x.csv", headers=headers).status_code == 204
    assert client.get(f"{LZ}/x.csv", headers=headers).status_code == 404


def test_delete_twice_is_404(client: TestClient, headers: dict[str, str]) -> None:
    upload(client, headers, "x.csv", b"x")
    client.delete(f"{LZ}/x.csv", headers=headers)
    assert_problem(client.delete(f"{LZ}/x.csv", headers=headers), 404, "100940-404", "x.csv")


def test_delete_non_empty_folder_is_400(client: TestClient, headers: dict[str, str], root: Path) -> None:
    upload(client, headers, "folder/x.csv", b"x")
    assert_problem(client.delete(f"{LZ}/folder", headers=headers), 400, "100910-400", "folder", "not empty")
    assert (root / "folder" / "x.csv").exists()


def test_delete_empty_folder(client: TestClient, headers: dict[str, str], root: Path) -> None:
    upload(client, headers, "folder/x.csv", b"x")
    client.delete(f"{LZ}/folder/x.csv", headers=headers)
    assert client.delete(f"{LZ}/folder", headers=headers).status_code == 204
    assert not (root / "folder").exists()


# -- paths that must never leave the sandbox's folder ------------------------------------------

ESCAPES = [
    b"/../escaped.csv",
    b"/../../escaped.csv",
    b"/a/../../../escaped.csv",
    b"/%2e%2e/escaped.csv",
    b"/%2e%2e/%2e%2e/%2e%2e/escaped.csv",
    b"/a/%2E%2E/%2E%2E/%2E%2E/%2E%2E/escaped.csv",
    b"/..%2f..%2f..%2fescaped.csv",
    b"/dlz-user-container/../../escaped.csv",
    b"/%2fetc/escaped.csv",
    b"//escaped.csv",
    b"/..%5c..%5cescaped.csv",
    b"/a%00/escaped.csv",
]


@pytest.mark.parametrize("raw", ESCAPES, ids=lambda r: r.decode())
def test_escaping_path_is_refused_and_touches_nothing(
    client: TestClient, headers: dict[str, str], settings: Settings, tmp_path: Path, raw: bytes
) -> None:
    # Files one to four levels above the sandbox's folder, where the '..' paths lead.
    home = settings.home
    planted = [
        folder / "escaped.csv"
        for folder in (home / "landing" / headers["x-gw-ims-org-id"], home / "landing", home, home.parent)
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"secret")
    url = LZ.encode() + raw

    got = _raw(client, "GET", url, headers)
    assert_problem(got, 400, "100910-400", "path")
    assert b"secret" not in got.content

    assert_problem(_raw(client, "PUT", url, headers, content=b"owned"), 400, "100910-400", "path")
    assert_problem(_raw(client, "DELETE", url, headers), 400, "100910-400", "path")

    assert [p.read_bytes() for p in planted] == [b"secret"] * len(planted)
    written = [p for p in [*tmp_path.rglob("*"), Path("/etc/escaped.csv")] if p.is_file() and p.name == "escaped.csv"]
    assert sorted(written) == sorted(planted)


def test_dot_dot_segment_is_400_naming_it(client: TestClient, headers: dict[str, str]) -> None:
    resp = _raw(client, "PUT", LZ.encode() + b"/%2e%2e/escaped.csv", headers, content=b"x")
    assert_problem(resp, 400, "100910-400", "path", "..")


def test_space_in_path_is_400(client: TestClient, headers: dict[str, str], root: Path) -> None:
    resp = client.put(f"{LZ}/my file.csv", content=b"x", headers=headers)
    assert_problem(resp, 400, "100910-400", "my file.csv", "spaces")
    assert not any(root.rglob("*file*"))


def test_leading_slash_is_400(client: TestClient, headers: dict[str, str]) -> None:
    resp = _raw(client, "PUT", LZ.encode() + b"//etc/escaped.csv", headers, content=b"x")
    assert_problem(resp, 400, "100910-400", "/etc/escaped.csv", "relative")


def test_symlink_out_of_the_landing_zone_is_refused(
    client: TestClient, headers: dict[str, str], root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_bytes(b"secret")
    root.mkdir(parents=True, exist_ok=True)
    (root / "link").symlink_to(outside, target_is_directory=True)
    assert_problem(client.get(f"{LZ}/link/secret.csv", headers=headers), 400, "100910-400", "outside")
    resp = client.put(f"{LZ}/link/new.csv", content=b"x", headers=headers)
    assert_problem(resp, 400, "100910-400", "outside")
    assert_problem(client.delete(f"{LZ}/link/secret.csv", headers=headers), 400, "100910-400", "outside")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.csv"]
