"""A folder on this machine as a source: the Data Landing Zone (cloudType DLZ).

Hidden names (starting with ".") are not part of the tree: the landing zone keeps its uploads in
flight there (``.{name}.{uuid}.part``), and users cannot upload such names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, ClassVar

from audiencehub.domain.paths import validate_relative_path
from audiencehub.sources.base import FileInfo, Source, SourceNotFound


def is_hidden(rel: str) -> bool:
    """True when a name in the relative path ``rel`` starts with "." ("." alone is the root itself)."""
    return any(s.startswith(".") for s in rel.split("/") if s not in ("", "."))


def _inside(root: Path, entry: Path) -> bool:
    """True when ``entry`` (a symlink too) leads to a name under ``root`` (resolved) that is not hidden."""
    try:
        target = entry.resolve()
    except OSError:  # a symlink loop
        return False
    return (target == root or root in target.parents) and not is_hidden(target.relative_to(root).as_posix())


def visible_entries(root: Path, folder: Path, *, recursive: bool = False) -> Iterator[Path]:
    """The files and folders in ``folder`` (below it with ``recursive``) that a reader may see.

    Hidden names and what is below them are left out, and so are symlinks that lead out of the
    resolved ``root`` or to a hidden name. Symlinked folders are listed but not walked into.
    """
    if recursive:
        names: Iterator[Path] = _walk(folder)
    else:
        names = (entry for entry in folder.iterdir() if not entry.name.startswith("."))
    for entry in names:
        if not entry.is_symlink() or _inside(root, entry):
            yield entry


def _walk(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        here = Path(dirpath)
        for name in (*dirnames, *filenames):
            if not name.startswith("."):
                yield here / name


class LocalSource(Source):
    supports_local_path: ClassVar[bool] = True

    def __init__(self, root: Path, name: str = "landing zone") -> None:
        self.root = root
        self.name = name

    def describe(self) -> str:
        return self.name

    def resolve(self, path: str) -> Path:
        """The absolute path of ``path``, refused when it (or a symlink in it) leads outside the root."""
        key = validate_relative_path(path, allow_empty=True)
        root = self.root.resolve()
        target = (root / key).resolve() if key else root
        if target != root and root not in target.parents:
            raise ValueError(f"path {path!r} leads outside the {self.name}")
        return target

    def _visible(self, path: str) -> Path | None:
        """The resolved path of ``path`` unless it, or where a symlink leads it, is hidden."""
        target = self.resolve(path)
        if is_hidden(path) or is_hidden(target.relative_to(self.root.resolve()).as_posix()):
            return None
        return target

    def _info(self, target: Path, st: os.stat_result) -> FileInfo:
        rel = target.relative_to(self.root.resolve()).as_posix()
        return FileInfo(path=rel, size=st.st_size, modified=st.st_mtime)

    def stat(self, path: str) -> FileInfo:
        target = self.resolve_file(path)
        return self._info(target, target.stat())

    def list(self, path: str, *, recursive: bool = False) -> list[FileInfo]:
        folder = self._visible(path)
        if folder is None or not folder.is_dir():
            raise SourceNotFound(f"{self.name}: no folder at {path!r}")
        out = []
        for entry in visible_entries(self.root.resolve(), folder, recursive=recursive):
            if entry.is_file():
                out.append(self._info(entry, entry.stat()))
        return sorted(out, key=lambda f: f.path)

    def open(self, path: str, *, offset: int = 0, version: str | None = None) -> BinaryIO:
        stream = self.resolve_file(path).open("rb")
        stream.seek(offset)
        return stream

    def resolve_file(self, path: str) -> Path:
        target = self._visible(path)
        if target is None or not target.is_file():
            raise SourceNotFound(f"{self.name}: no file at {path!r}")
        return target

    def local_path(self, path: str) -> Path:
        return self.resolve_file(path)
