"""Hidden names are the landing zone's own: a user's ``x.part`` is an ordinary file, ``.x`` is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.config import Settings
from tests.api.support import all_files, assert_problem, landing_root
from tests.conftest import LZ, upload


@pytest.fixture
def root(settings: Settings, creds: dict[str, str]) -> Path:
    return landing_root(settings, creds)


@pytest.mark.parametrize("path", ["x.part", "a/b/report.csv.part", "part", "a.b.part"])
def test_a_file_named_part_can_be_read_listed_and_deleted(
    client: TestClient, headers: dict[str, str], path: str
) -> None:
    content = b"ppid\nx@example.com\n"
    upload(client, headers, path, content)
    got = client.get(f"{LZ}/{path}", headers=headers)
    assert got.status_code == 200, got.text
    assert got.content == content
    folder, _, name = path.rpartition("/")
    listing = client.get(f"{LZ}/{folder}", headers=headers).json()
    assert [(i["name"], i["type"], i["size"]) for i in listing["items"]] == [(name, "file", len(content))]
    assert client.delete(f"{LZ}/{path}", headers=headers).status_code == 204
    assert client.get(f"{LZ}/{path}", headers=headers).status_code == 404


@pytest.mark.parametrize(
    "path", [".x.csv", "a/.x.csv", ".a/x.csv", "a/.b/c/x.csv", "dlz-user-container/.x.csv", ".x.csv.0123.part"]
)
def test_a_hidden_name_is_refused_naming_the_path(
    client: TestClient, headers: dict[str, str], root: Path, path: str
) -> None:
    before = all_files(root) if root.exists() else set()
    resp = client.put(f"{LZ}/{path}", content=b"x", headers=headers)
    assert_problem(resp, 400, "100910-400", path, "'.'")
    assert_problem(client.get(f"{LZ}/{path}", headers=headers), 400, "100910-400", path)
    assert_problem(client.delete(f"{LZ}/{path}", headers=headers), 400, "100910-400", path)
    assert (all_files(root) if root.exists() else set()) == before


def test_hidden_files_on_disk_are_neither_listed_nor_served(
    client: TestClient, headers: dict[str, str], root: Path
) -> None:
    upload(client, headers, "a/seen.csv", b"x")
    (root / "a" / ".seen.csv.0123.part").write_bytes(b"half")
    (root / "a" / ".config").mkdir()
    (root / "a" / ".config" / "inner.csv").write_bytes(b"x")
    (root / "a" / "alias.csv").symlink_to(root / "a" / ".config" / "inner.csv")
    for params in ({}, {"recursive": "true"}):
        items = client.get(f"{LZ}/a", params=params, headers=headers).json()["items"]
        assert [i["path"] for i in items] == ["a/seen.csv"], params
    assert client.get(f"{LZ}/a/alias.csv", headers=headers).status_code == 400


def test_the_server_sweeps_partial_uploads_at_start(settings: Settings, tmp_path: Path) -> None:
    with TestClient(create_app(settings)) as client:
        org_id = client.app.state.container.tenancy.list_orgs()[0]["id"]  # type: ignore[attr-defined]
    folder = settings.home / "landing" / org_id / "prod" / "a"
    folder.mkdir(parents=True)
    # Names as Upload makes them: .{name}.{uuid4 hex}.part; any other name is never swept.
    partials = [folder / f".x.csv.{'0' * 31}1.part", folder.parent / f".y.csv.{'ab' * 16}.part"]
    kept = [folder / "x.part", folder / ".notes", folder / "x.csv", folder / ".x.csv.0123.part"]
    for path in (*partials, *kept):
        path.write_bytes(b"left over")

    with TestClient(create_app(settings)):
        assert not any(p.exists() for p in partials)
        assert all(p.read_bytes() == b"left over" for p in kept)
