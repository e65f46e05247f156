"""The home's lock (``$AUDIENCEHUB_HOME/.lock``): one server per home where one process must own its state.

The server owns what one process only may open: the embedded profile store's DuckDB files (and a SQLite
metadata store's writers are best kept in one process). The lock also tells a restarted server that the jobs
its predecessor on this home and host left RUNNING are orphans at once, without waiting for their heartbeats
to go stale (``jobs/runner.py``). It is ``flock``-based, so the kernel drops it when the holder dies (kill -9
included) and a restarted server takes it again at once. ``audiencehub worker`` processes do not take it,
nor do the CLI's org, sandbox and client commands: they only write the metadata store, which a server shares.

The lock is taken only where the home holds state one process must own (:func:`exclusive`): the embedded DuckDB
profile store, or a SQLite metadata store. With PostgreSQL and the lake profile store, several servers (API
replicas behind a load balancer) share the home: none takes the lock; each registers in the ``workers`` registry
and heartbeats, and cleans up only what a process known to be dead (unregistered, or its heartbeat stale) left.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

LOCK_NAME = ".lock"
OWNERS = uuid.UUID("5c2b0f55-8a7e-4d51-9a43-3f1f2f6b8e10")


def owner_token(owner_id: str) -> str:
    """What file names call the process whose ``workers`` registry id is ``owner_id``: 16 hex digits."""
    return uuid.uuid5(OWNERS, owner_id).hex[:16]


def owner_tokens(owner_ids: Iterable[str]) -> set[str]:
    return {owner_token(found) for found in owner_ids}


def exclusive(*, profile_store: str, metadata_url: str) -> bool:
    """Whether a server on this home must be alone: the embedded DuckDB profile store, or a SQLite metadata store."""
    return profile_store == "duckdb" or metadata_url.startswith("sqlite")


class HomeInUse(RuntimeError):
    """Another process holds the home's lock (not an HTTP error: it stops a start)."""


class HomeLock:
    """The held lock; ``release()`` gives it up (also done by the kernel when the process ends)."""

    def __init__(self, home: Path, fd: int) -> None:
        self.home = home
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def lock_home(home: Path) -> HomeLock:
    """Takes the home's lock without waiting; :class:`HomeInUse` when another process holds it."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise HomeInUse(f"another audiencehub process is using {home.absolute()}") from None
    except BaseException:
        os.close(fd)
        raise
    # Who holds it, for an operator looking at the file; the lock itself is what counts.
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return HomeLock(home, fd)
