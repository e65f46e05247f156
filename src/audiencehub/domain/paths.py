"""Rules for user-given paths: relative, no spaces, never leaving their root.

Landing-zone keys also have no hidden segment: names starting with "." belong to the landing zone.
"""

from __future__ import annotations

import re

# AEP's Data Landing Zone addresses files with the container name first; both forms are one file.
DLZ_CONTAINER = "dlz-user-container"
_FORBIDDEN = re.compile(r"[\s\\\x00-\x1f\x7f]")
MAX_PATH = 1024


def shown(value: str) -> str:
    """``value`` quoted for a message: control characters escaped, a backslash shown once (not doubled)."""
    return repr(value).replace("\\\\", "\\")


def validate_relative_path(path: str, *, allow_empty: bool = False) -> str:
    """``path`` as relative POSIX segments, or ValueError naming what is wrong with it."""
    if not path:
        if allow_empty:
            return ""
        raise ValueError("path must not be empty")
    if len(path) > MAX_PATH:
        raise ValueError(f"path is longer than {MAX_PATH} characters")
    if path.startswith("/"):
        raise ValueError(f"path {shown(path)} must be relative (no leading /)")
    bad = _FORBIDDEN.search(path)
    if bad:
        what = "spaces" if bad.group().isspace() else "backslashes or control characters"
        raise ValueError(f"path {shown(path)} must not contain {what}")
    segments = [s for s in path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise ValueError(f"path {shown(path)} must not contain '.' or '..' segments")
    return "/".join(segments)


def landing_zone_key(path: str, *, allow_empty: bool = False) -> str:
    """The canonical landing-zone key: validated, with the DLZ container prefix removed."""
    key = validate_relative_path(path, allow_empty=allow_empty)
    if key == DLZ_CONTAINER:
        if allow_empty:
            return ""
        raise ValueError(f"path {shown(path)} names the container, not a file in it")
    if key.startswith(DLZ_CONTAINER + "/"):
        key = key[len(DLZ_CONTAINER) + 1 :]
    # Hidden names are the landing zone's own (uploads in flight are ``.{name}.{uuid}.part``).
    if any(s.startswith(".") for s in key.split("/")):
        raise ValueError(f"path {shown(path)} must not have a file or folder name starting with '.'")
    return key
