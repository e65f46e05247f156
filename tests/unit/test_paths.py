"""User-given paths: relative, no spaces or control characters, never leaving their root."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiencehub.domain.paths import DLZ_CONTAINER, MAX_PATH, landing_zone_key, validate_relative_path
from audiencehub.sources.local import LocalSource

BAD = [
    "",
    "/abs",
    "/",
    "//a",
    "a/../b",
    "..",
    "../a",
    "a/..",
    ".",
    "./a",
    "a/./b",
    "a b",
    " a",
    "a ",
    "a\\b",
    "a\tb",
    "a\nb",
    "a\rb",
    "a\x00b",
    "a\x01b",
    "a\x1fb",
    "a\x7fb",
    "a\u00a0b",
    "a\u3000b",
    "x" * (MAX_PATH + 1),
]


@pytest.mark.parametrize("path", BAD, ids=repr)
def test_validate_relative_path_rejects(path: str) -> None:
    with pytest.raises(ValueError):
        validate_relative_path(path)


@pytest.mark.parametrize("path", BAD, ids=repr)
def test_landing_zone_key_rejects(path: str) -> None:
    with pytest.raises(ValueError):
        landing_zone_key(path)


@pytest.mark.parametrize("path", [p for p in BAD if p and not p.startswith("/")], ids=repr)
def test_rejected_even_after_the_container_prefix(path: str) -> None:
    with pytest.raises(ValueError):
        landing_zone_key(f"{DLZ_CONTAINER}/{path}")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a", "a"),
        ("activation/sample-source/example.csv", "activation/sample-source/example.csv"),
        ("a//b/", "a/b"),
        ("a/b/", "a/b"),
        ("a..b/c.d", "a..b/c.d"),
        (".hidden/x", ".hidden/x"),
        ("x" * MAX_PATH, "x" * MAX_PATH),
        ("ünïcødé/файл.csv", "ünïcødé/файл.csv"),
    ],
)
def test_validate_relative_path_accepts(path: str, expected: str) -> None:
    assert validate_relative_path(path) == expected


def test_empty_path_only_when_allowed() -> None:
    assert validate_relative_path("", allow_empty=True) == ""
    assert landing_zone_key("", allow_empty=True) == ""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"{DLZ_CONTAINER}/activation/example.csv", "activation/example.csv"),
        (f"{DLZ_CONTAINER}//activation/example.csv", "activation/example.csv"),
        ("activation/example.csv", "activation/example.csv"),
        (f"{DLZ_CONTAINER}x/a.csv", f"{DLZ_CONTAINER}x/a.csv"),
        (f"a/{DLZ_CONTAINER}/b.csv", f"a/{DLZ_CONTAINER}/b.csv"),
    ],
)
def test_landing_zone_key_strips_the_container(path: str, expected: str) -> None:
    assert landing_zone_key(path) == expected


def test_the_container_alone_is_the_root_or_an_error() -> None:
    assert landing_zone_key(DLZ_CONTAINER, allow_empty=True) == ""
    assert landing_zone_key(DLZ_CONTAINER + "/", allow_empty=True) == ""
    with pytest.raises(ValueError):
        landing_zone_key(DLZ_CONTAINER)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[LocalSource, Path]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "in").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.csv").write_text("ppid\nx@example.com\n")
    (root / "in" / "ok.csv").write_text("ppid\n")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "escape.csv").symlink_to(outside / "secret.csv")
    (root / "in" / "up").symlink_to(Path("..") / "..", target_is_directory=True)
    (root / "alias").symlink_to(root / "in", target_is_directory=True)
    return LocalSource(root), outside


@pytest.mark.parametrize("path", ["escape", "escape/secret.csv", "escape.csv", "in/up", "in/up/outside/secret.csv"])
def test_resolve_refuses_symlinks_out_of_the_root(tree: tuple[LocalSource, Path], path: str) -> None:
    source, _ = tree
    with pytest.raises(ValueError, match="outside"):
        source.resolve(path)


def test_reading_through_an_escaping_symlink_is_refused(tree: tuple[LocalSource, Path]) -> None:
    source, _ = tree
    for read in (source.stat, source.open, source.local_path, source.list):
        with pytest.raises(ValueError):
            read("escape.csv" if read is not source.list else "escape")


def test_resolve_follows_symlinks_that_stay_inside(tree: tuple[LocalSource, Path]) -> None:
    source, _ = tree
    root = source.root.resolve()
    assert source.resolve("alias/ok.csv") == root / "in" / "ok.csv"
    assert source.resolve("in/ok.csv") == root / "in" / "ok.csv"
    assert source.resolve("") == root
    assert source.stat("alias/ok.csv").size == len("ppid\n")


def test_resolve_rejects_traversal_before_touching_the_disk(tree: tuple[LocalSource, Path]) -> None:
    source, _ = tree
    for path in ("../outside/secret.csv", "/etc/passwd", "in/../../outside"):
        with pytest.raises(ValueError):
            source.resolve(path)


def test_a_root_that_is_itself_a_symlink_works(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "a").mkdir(parents=True)
    (real / "a" / "f.csv").write_text("x\n")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    source = LocalSource(link)
    assert source.resolve("a/f.csv") == real.resolve() / "a" / "f.csv"
    assert [f.path for f in source.list("a")] == ["a/f.csv"]
