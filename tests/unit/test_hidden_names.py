"""Hidden names (starting with ".") belong to the landing zone: users cannot name them, readers never see them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from audiencehub.domain.paths import DLZ_CONTAINER, landing_zone_key, shown, validate_relative_path
from audiencehub.errors import BadRequest, NotFound
from audiencehub.metadata.store import Scope
from audiencehub.services.landing_zone import LandingZoneService
from audiencehub.sources.base import SourceNotFound
from audiencehub.sources.local import LocalSource

HIDDEN = [".x.csv", ".hidden/x.csv", "a/.b/c.csv", "a/.x.csv.0123.part", f"{DLZ_CONTAINER}/.x.csv", "a/.b/"]
SCOPE = Scope("ORG@AdobeOrg", "prod")


@pytest.mark.parametrize("path", HIDDEN)
def test_landing_zone_keys_have_no_hidden_segment(path: str) -> None:
    with pytest.raises(ValueError, match=r"starting with '\.'") as caught:
        landing_zone_key(path)
    assert shown(path) in str(caught.value)


@pytest.mark.parametrize("path", ["x.part", "a/x.part", "a..b/c.d", "a/b.", "x.", "a/x.csv.part"])
def test_dots_elsewhere_in_a_name_are_fine(path: str) -> None:
    assert landing_zone_key(path) == path


def test_other_callers_keep_the_general_rules() -> None:
    assert validate_relative_path(".hidden/x") == ".hidden/x"


def test_a_backslash_is_shown_once() -> None:
    with pytest.raises(ValueError) as caught:
        validate_relative_path("a\\b")
    assert "'a\\b'" in str(caught.value)
    assert "\\\\" not in str(caught.value)


@pytest.fixture
def tree(tmp_path: Path) -> LocalSource:
    root = tmp_path / "root"
    (root / "a" / ".hidden").mkdir(parents=True)
    (root / ".top").mkdir()
    for rel in ["x.part", "a/b.csv", "a/.b.csv", "a/.b.csv.0123.part", "a/.hidden/c.csv", ".top/d.csv", "a/y.part"]:
        (root / rel).write_text("ppid\n")
    (root / "a" / "alias.csv").symlink_to(root / "a" / ".b.csv")
    return LocalSource(root)


def test_listings_skip_hidden_names_and_what_is_below_them(tree: LocalSource) -> None:
    assert [f.path for f in tree.list("")] == ["x.part"]
    assert [f.path for f in tree.list("a")] == ["a/b.csv", "a/y.part"]
    assert [f.path for f in tree.list("", recursive=True)] == ["a/b.csv", "a/y.part", "x.part"]


@pytest.mark.parametrize("path", ["a/.b.csv", "a/.b.csv.0123.part", "a/.hidden/c.csv", ".top/d.csv", "a/alias.csv"])
def test_hidden_files_are_not_found(tree: LocalSource, path: str) -> None:
    for read in (tree.stat, tree.open, tree.local_path):
        with pytest.raises(SourceNotFound):
            read(path)
    with pytest.raises(SourceNotFound):
        tree.list(".top")


def test_a_user_file_named_part_is_a_file(tree: LocalSource) -> None:
    assert tree.stat("x.part").size == len("ppid\n")
    assert tree.local_path("a/y.part").name == "y.part"


def test_an_upload_in_flight_is_invisible_until_committed(tmp_path: Path) -> None:
    service = LandingZoneService(tmp_path / "landing", 1 << 20)
    key, upload = service.begin_upload(SCOPE, "a/x.part")
    upload.write(b"ppid\n")
    folder = service.source(SCOPE).root / "a"
    assert [p.name for p in folder.iterdir()] == [upload.partial.name]
    with pytest.raises(NotFound):
        service.describe(SCOPE, "a/x.part")
    assert service.describe(SCOPE, "a") == {"containerName": DLZ_CONTAINER, "path": "a", "items": []}
    upload.commit()
    assert service.describe(SCOPE, key) == folder / "x.part"


def test_user_paths_with_hidden_names_are_400(tmp_path: Path) -> None:
    service = LandingZoneService(tmp_path / "landing", 1 << 20)
    for call in (service.begin_upload, service.describe, service.delete):
        with pytest.raises(BadRequest, match=r"\.x\.csv"):
            call(SCOPE, "a/.x.csv")


def test_sweep_removes_only_partial_uploads(tmp_path: Path) -> None:
    service = LandingZoneService(tmp_path / "landing", 1 << 20)
    other = Scope("OTHER@AdobeOrg", "dev")
    _, dropped = service.begin_upload(SCOPE, "a/x.csv")  # a server killed mid-upload leaves this
    dropped.write(b"half")
    _, dropped_too = service.begin_upload(other, "y.csv")
    kept = {
        service.source(SCOPE).root / "x.part": b"user file",
        service.source(SCOPE).root / "a" / ".notes": b"not an upload",
        service.source(other).root / "part": b"user file",
    }
    for path, content in kept.items():
        path.write_bytes(content)
    old = time.time() - 3600
    os.utime(dropped.partial, (old, old))

    assert service.sweep_partials() == 2
    assert not dropped.partial.exists() and not dropped_too.partial.exists()
    assert {p: p.read_bytes() for p in kept} == kept
    assert service.sweep_partials() == 0


def test_sweep_of_a_home_without_a_landing_zone(tmp_path: Path) -> None:
    assert LandingZoneService(tmp_path / "nothing", 1).sweep_partials() == 0
