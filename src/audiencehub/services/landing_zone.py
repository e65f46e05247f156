"""The Data Landing Zone: a folder per org and sandbox that users upload audience files into.

Uploads stream to a hidden ``.part`` file beside the target and are renamed into place when the
last byte is on disk, so a reader never sees half a file and a dropped connection leaves nothing.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiencehub.domain.paths import DLZ_CONTAINER, landing_zone_key
from audiencehub.errors import BadRequest, NotFound, PayloadTooLarge
from audiencehub.metadata.store import Scope
from audiencehub.sources.base import SourceNotFound
from audiencehub.sources.local import PARTIAL_SUFFIX, LocalSource

CONTAINER_TTL_DAYS = "7"


def _key(path: str, *, allow_empty: bool = False) -> str:
    try:
        return landing_zone_key(path, allow_empty=allow_empty)
    except ValueError as exc:
        raise BadRequest(f"path: {exc}") from exc


class Upload:
    """One file being written; ``commit()`` makes it visible, ``abort()`` leaves no trace."""

    def __init__(self, target: Path, max_bytes: int) -> None:
        self.target = target
        self.max_bytes = max_bytes
        self.size = 0
        self.partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
        target.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.partial.open("wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.abort()
            raise PayloadTooLarge(f"the file is larger than the limit of {self.max_bytes} bytes")
        self._fh.write(chunk)

    def commit(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.partial, self.target)

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.partial.unlink(missing_ok=True)


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    type: str
    size: int | None
    modified: int

    def public(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "path": self.path, "type": self.type}
        if self.size is not None:
            body["size"] = self.size
        body["lastModified"] = self.modified
        return body


class LandingZoneService:
    def __init__(self, root: Path, max_upload_bytes: int) -> None:
        self._root = root
        self._max = max_upload_bytes

    def source(self, scope: Scope) -> LocalSource:
        folder = self._root / scope.org_id / scope.sandbox
        folder.mkdir(parents=True, exist_ok=True)
        return LocalSource(folder, name=f"landing zone of sandbox {scope.sandbox!r}")

    def _resolve(self, scope: Scope, key: str) -> Path:
        try:
            return self.source(scope).resolve(key)
        except ValueError as exc:
            raise BadRequest(f"path: {exc}") from exc

    def begin_upload(self, scope: Scope, path: str) -> tuple[str, Upload]:
        key = _key(path)
        target = self._resolve(scope, key)
        if target.is_dir():
            raise BadRequest(f"path: {path!r} is a folder")
        for parent in target.relative_to(self.source(scope).root.resolve()).parents:
            if (self.source(scope).root / parent).is_file():
                raise BadRequest(f"path: {parent.as_posix()!r} is a file, so it cannot hold {path!r}")
        return key, Upload(target, self._max)

    def container(self) -> dict[str, str]:
        """``GET /landingzone?type=user_drop_zone``, as AEP answers it."""
        return {"containerName": DLZ_CONTAINER, "containerTTL": CONTAINER_TTL_DAYS}

    def describe(self, scope: Scope, path: str, *, recursive: bool = False) -> Path | dict[str, Any]:
        """A file's local path (for download) or a folder's listing."""
        key = _key(path, allow_empty=True)
        target = self._resolve(scope, key)
        if target.is_file() and not target.name.endswith(PARTIAL_SUFFIX):
            return target
        if not target.is_dir():
            raise NotFound(f"the landing zone has no file or folder at {path!r}")
        return {
            "containerName": DLZ_CONTAINER,
            "path": key,
            "items": [e.public() for e in self._entries(scope, target, recursive)],
        }

    def _entries(self, scope: Scope, folder: Path, recursive: bool) -> list[Entry]:
        root = self.source(scope).root.resolve()
        entries = folder.rglob("*") if recursive else folder.iterdir()
        out = []
        for entry in entries:
            if entry.name.startswith(".") or entry.name.endswith(PARTIAL_SUFFIX):
                continue
            st = entry.stat()
            rel = entry.relative_to(root).as_posix()
            if entry.is_dir():
                out.append(Entry(entry.name, rel + "/", "folder", None, int(st.st_mtime)))
            else:
                out.append(Entry(entry.name, rel, "file", st.st_size, int(st.st_mtime)))
        return sorted(out, key=lambda e: e.path)

    def delete(self, scope: Scope, path: str) -> None:
        key = _key(path)
        target = self._resolve(scope, key)
        if target.is_dir():
            if any(target.iterdir()):
                raise BadRequest(f"path: the folder {path!r} is not empty")
            target.rmdir()
            return
        try:
            target.unlink()
        except FileNotFoundError as exc:
            raise NotFound(f"the landing zone has no file at {path!r}") from exc

    def stat(self, scope: Scope, path: str) -> int:
        try:
            return self.source(scope).stat(_key(path)).size
        except SourceNotFound as exc:
            raise NotFound(exc.detail) from exc
