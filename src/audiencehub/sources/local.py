"""A folder on this machine as a source: the Data Landing Zone (cloudType DLZ)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, ClassVar

from audiencehub.domain.paths import validate_relative_path
from audiencehub.sources.base import FileInfo, Source, SourceNotFound

PARTIAL_SUFFIX = ".part"


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

    def _info(self, target: Path, st: os.stat_result) -> FileInfo:
        rel = target.relative_to(self.root.resolve()).as_posix()
        return FileInfo(path=rel, size=st.st_size, modified=st.st_mtime)

    def stat(self, path: str) -> FileInfo:
        target = self.resolve(path)
        if not target.is_file() or target.name.endswith(PARTIAL_SUFFIX):
            raise SourceNotFound(f"{self.name}: no file at {path!r}")
        return self._info(target, target.stat())

    def is_folder(self, path: str) -> bool:
        return self.resolve(path).is_dir()

    def list(self, path: str, *, recursive: bool = False) -> list[FileInfo]:
        folder = self.resolve(path)
        if not folder.is_dir():
            raise SourceNotFound(f"{self.name}: no folder at {path!r}")
        entries = folder.rglob("*") if recursive else folder.iterdir()
        out = []
        for entry in entries:
            # Uploads in flight (.part) and hidden files are not files of the folder yet.
            if entry.name.startswith(".") or entry.name.endswith(PARTIAL_SUFFIX):
                continue
            st = entry.stat()
            if entry.is_file():
                out.append(self._info(entry, st))
        return sorted(out, key=lambda f: f.path)

    def open(self, path: str) -> BinaryIO:
        return self.resolve_file(path).open("rb")

    def resolve_file(self, path: str) -> Path:
        target = self.resolve(path)
        if not target.is_file():
            raise SourceNotFound(f"{self.name}: no file at {path!r}")
        return target

    def local_path(self, path: str) -> Path:
        return self.resolve_file(path)
