"""The Data Landing Zone: a folder per org and sandbox that users upload audience files into.

Uploads stream to a hidden ``.{name}.{owner}_{uuid}.part`` file beside the target and are renamed into place
when the last byte is on disk, so a reader never sees half a file and a dropped connection leaves
nothing. Hidden names are the landing zone's own: listings skip them and user paths cannot name them.
``owner`` names the process writing it (16 hex digits derived from its ``workers`` registry id): a server alone on
its home sweeps every partial file at its start; API replicas sweep only those whose owner is dead (not
registered, or its heartbeat stale), at start and periodically (:meth:`LandingZoneService.start_sweeper`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiencehub.domain.paths import DLZ_CONTAINER, landing_zone_key
from audiencehub.errors import BadRequest, NotFound, PayloadTooLarge
from audiencehub.metadata.store import Scope
from audiencehub.services.home import owner_token, owner_tokens
from audiencehub.services.tenancy import check_org_id, check_sandbox_name
from audiencehub.sources.local import LocalSource, is_hidden, visible_entries

log = logging.getLogger(__name__)
CONTAINER_TTL_DAYS = "7"
PARTIAL_SUFFIX = ".part"
# Exactly the names Upload gives its files in flight: nothing else is ever swept.
# The owner is absent from the names of earlier versions: such a file is nobody's (always swept).
PARTIAL_NAME = re.compile(r"\..+\.(?:(?P<owner>[0-9a-f]{16})_)?[0-9a-f]{32}\.part")


def _key(path: str, *, allow_empty: bool = False) -> str:
    try:
        return landing_zone_key(path, allow_empty=allow_empty)
    except ValueError as exc:
        raise BadRequest(f"path: {exc}") from exc


class Upload:
    """One file being written; ``commit()`` makes it visible, ``abort()`` leaves no trace."""

    def __init__(self, target: Path, max_bytes: int, owner: str | None = None) -> None:
        """``owner``: the token of the process writing it (:func:`~audiencehub.services.home.owner_token`)."""
        owner = owner or owner_token(str(uuid.uuid4()))
        self.target = target
        self.max_bytes = max_bytes
        self.size = 0
        self.partial = target.with_name(f".{target.name}.{owner}_{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
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
    def __init__(self, root: Path, max_upload_bytes: int, *, owner_id: str | None = None) -> None:
        """``owner_id``: this process's ``workers`` registry id, which names its uploads in flight."""
        self._root = root
        self._max = max_upload_bytes
        self._owner = owner_token(owner_id or str(uuid.uuid4()))
        self._sweeper_stop = threading.Event()

    def source(self, scope: Scope) -> LocalSource:
        # Names that pass these checks stay one folder each below the root.
        folder = self._root / check_org_id(scope.org_id) / check_sandbox_name(scope.sandbox)
        folder.mkdir(parents=True, exist_ok=True)
        return LocalSource(folder, name=f"landing zone of sandbox {scope.sandbox!r}")

    def _resolve(self, scope: Scope, key: str) -> Path:
        source = self.source(scope)
        try:
            target = source.resolve(key)
        except ValueError as exc:
            raise BadRequest(f"path: {exc}") from exc
        # ``key`` has no hidden segment (see _key), but a symlink in it might lead to one.
        if is_hidden(target.relative_to(source.root.resolve()).as_posix()):
            raise BadRequest(f"path: {key!r} leads to a hidden name, which only the landing zone may use")
        return target

    def begin_upload(self, scope: Scope, path: str) -> tuple[str, Upload]:
        key = _key(path)
        target = self._resolve(scope, key)
        if target.is_dir():
            raise BadRequest(f"path: {path!r} is a folder")
        for parent in target.relative_to(self.source(scope).root.resolve()).parents:
            if (self.source(scope).root / parent).is_file():
                raise BadRequest(f"path: {parent.as_posix()!r} is a file, so it cannot hold {path!r}")
        return key, Upload(target, self._max, self._owner)

    def container(self) -> dict[str, str]:
        """``GET /landingzone?type=user_drop_zone``, as AEP answers it."""
        return {"containerName": DLZ_CONTAINER, "containerTTL": CONTAINER_TTL_DAYS}

    def describe(self, scope: Scope, path: str, *, recursive: bool = False) -> Path | dict[str, Any]:
        """A file's local path (for download) or a folder's listing."""
        key = _key(path, allow_empty=True)
        target = self._resolve(scope, key)
        if target.is_file():
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
        out = []
        for entry in visible_entries(root, folder, recursive=recursive):
            try:
                st = entry.stat()
            except FileNotFoundError:  # deleted meanwhile, or a broken symlink
                continue
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

    def sweep_partials(self, live_owners: Iterable[str] | None = None) -> int:
        """Removes the uploads left in flight by dead processes: with ``live_owners`` (the registry ids of the
        processes alive now), those whose owner is not among them nor this process; without, every one (call it so
        only when no upload can be running: a server alone on its home, before it listens).

        Returns how many files it removed.
        """
        live = None if live_owners is None else owner_tokens(live_owners) | {self._owner}
        removed = 0
        if not self._root.is_dir():
            return removed
        for dirpath, _, filenames in os.walk(self._root):
            for name in filenames:
                found = PARTIAL_NAME.fullmatch(name)
                if found and (live is None or found.group("owner") not in live):
                    try:
                        (Path(dirpath) / name).unlink()
                    except FileNotFoundError:
                        continue
                    removed += 1
        if removed:
            log.info("removed %d partial upload(s) left by an earlier process under %s", removed, self._root)
        return removed

    def start_sweeper(self, live_owners: Callable[[], Iterable[str]], every_s: float) -> None:
        """Sweeps the partial uploads of dead peers every ``every_s`` seconds until :meth:`stop_sweeper`."""

        def sweep() -> None:
            while not self._sweeper_stop.wait(every_s):
                try:
                    self.sweep_partials(live_owners())
                except Exception:  # the next round tries again
                    log.exception("sweeping the partial uploads of stopped processes failed")

        self._sweeper_stop.clear()
        threading.Thread(target=sweep, name="landing-sweeper", daemon=True).start()

    def stop_sweeper(self) -> None:
        self._sweeper_stop.set()
