"""Who owns a streaming file, and the adoption of a dead owner's files (``services/streaming.py`` writes them).

A file's name carries its owner: ``{openedNs}.{owner}_{logId}.log[.open]`` and its parts
``{openedNs}.{owner}_{logId}.{lane}.jsonl``, where ``owner`` is the token (``services/home.owner_token``) of the
process that wrote it; a process seals, splits and commits only its own. The files of an owner that is not alive
are adopted: renamed to the adopter's token, under an ``flock`` on the sandbox's ``_streaming/.adopt.lock`` so that
two adopters never share a file, an open log sealed on the way (its torn last line, never acknowledged, cut off).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from audiencehub.services.home import owner_tokens

log = logging.getLogger(__name__)

LOG, OPEN, PART, TMP, ORPHANED, FAILED = ".log", ".open", ".jsonl", ".tmp", ".orphaned", ".failed"
ADOPT_LOCK = ".adopt.lock"


def owner_of(name: str) -> str | None:
    """The owner token in a streaming file's name; None for a name from before owners (nobody's: adoptable)."""
    fields = name.split(".")
    if len(fields) < 2 or "_" not in fields[1]:
        return None
    return fields[1].split("_", 1)[0]


def with_owner(name: str, token: str) -> str:
    fields = name.split(".")
    fields[1] = f"{token}_{fields[1].split('_', 1)[-1]}"
    return ".".join(fields)


def without_owner(name: str) -> str:
    fields = name.split(".")
    if len(fields) >= 2:
        fields[1] = fields[1].split("_", 1)[-1]
    return ".".join(fields)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal_orphan(path: Path) -> None:
    """A log a dead process left open, sealed: a torn last line (never acknowledged) cut off; empty, removed."""
    with path.open("rb+") as f:
        data = f.read()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    if keep == 0:
        path.unlink()
    else:
        os.replace(path, path.with_name(path.name.removesuffix(OPEN)))
    fsync_dir(path.parent)


def adopt_dead(root: Path, owner: str, live_owners: Callable[[], Iterable[str]] | None) -> tuple[int, list[Path]]:
    """Adopts, for ``owner``, the files under ``root``'s dataset folders whose owners are dead: every other owner
    when ``live_owners`` is None (this process holds the home's lock), else those ``live_owners()`` does not name.
    Answers how many files were adopted, and every dataset folder found."""
    # Listed before the registry is read: a file listed was made by a process registered by then, so a live
    # peer that started a moment ago is never taken for dead.
    found: dict[Path, list[str]] = {}
    for folder in sorted(root.glob("*/*/_streaming/*")):
        if folder.is_dir():
            found[folder] = sorted(p.name for p in folder.iterdir() if owner_of(p.name) != owner)
    live = {owner}
    if live_owners is not None and any(found.values()):
        live |= owner_tokens(live_owners())
    adopted = 0
    for folder, names in found.items():
        dead = [n for n in names if owner_of(n) not in live and not n.endswith((ORPHANED, FAILED))]
        if dead:
            adopted += adopt(folder, dead, owner)
    return adopted, list(found)


def adopt(folder: Path, names: list[str], owner: str) -> int:
    """Renames the dead owners' files ``names`` to ``owner``'s, one adopter per folder at a time."""
    adopted = 0
    # Beside the dataset folders (one per sandbox), so that a dataset's folder holds only its records.
    fd = os.open(folder.parent / ADOPT_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for name in names:
            path = folder / name
            if name.endswith(TMP):
                path.unlink(missing_ok=True)  # a part being written when its process died: split again
                continue
            if not name.endswith((LOG, LOG + OPEN, PART)):
                continue
            mine = path.with_name(with_owner(name, owner))
            try:
                os.replace(path, mine)
            except FileNotFoundError:
                continue  # another adopter was first
            if name.endswith(OPEN):
                seal_orphan(mine)
            adopted += 1
            log.info("streaming: adopted %s of a stopped process as %s", name, mine.name)
        if adopted:
            fsync_dir(folder)
    finally:
        os.close(fd)  # closing drops the flock
    return adopted
