"""Where audience files come from: one interface, one module per backend (``local``; S3, GCS, SFTP later).

A source is rooted: every path it takes is relative to its root and can never leave it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

from audiencehub.errors import NotFound


@dataclass(frozen=True)
class FileInfo:
    path: str
    """Relative to the source's root, with forward slashes."""
    size: int
    modified: float
    """Last modification, epoch seconds."""


class SourceNotFound(NotFound):
    """The path does not exist in the source (terminal: a retry will not make it appear)."""

    code = "100960-422"
    status = 422
    title = "UNPROCESSABLE_ENTITY"


class Source(ABC):
    """A read-only tree of files."""

    supports_local_path: ClassVar[bool] = False
    """True when files can be handed to the engine as local paths (no copy, parallel reads)."""

    @abstractmethod
    def describe(self) -> str:
        """A human name for messages: which connection, which root (never a secret)."""

    @abstractmethod
    def stat(self, path: str) -> FileInfo:
        """The file at ``path``; :class:`SourceNotFound` when there is none."""

    @abstractmethod
    def list(self, path: str, *, recursive: bool = False) -> list[FileInfo]:
        """Files under the folder ``path`` (``""`` is the root), sorted by path."""

    @abstractmethod
    def open(self, path: str) -> BinaryIO:
        """A byte stream of the file; the caller closes it."""

    def local_path(self, path: str) -> Path:
        """The file as a local path; only for sources with ``supports_local_path``."""
        raise NotImplementedError(f"{type(self).__name__} cannot hand out local paths")
