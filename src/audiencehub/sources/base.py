"""Where audience files come from: one interface, one module per backend (local, S3, GCS, SFTP).

A source is rooted: every path it takes is relative to its root and can never leave it. Backends
turn their failures into the errors below: :class:`SourceNotFound` and :class:`SourceError` are
permanent, :class:`SourceUnavailable` may pass (``retry.RetryingSource`` retries it). Every message
says which source, which path, and what the server said; never a credential.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

from audiencehub.errors import NotFound, TransientError, Unprocessable


@dataclass(frozen=True)
class FileInfo:
    path: str
    """Relative to the source's root, with forward slashes."""
    size: int
    modified: float
    """Last modification, epoch seconds."""
    version: str | None = None
    """What changes when the content does (an ETag, a generation); reads of one version never mix two."""


class SourceNotFound(NotFound):
    """The path does not exist in the source (terminal: a retry will not make it appear)."""

    code = "100960-422"
    status = 422
    title = "UNPROCESSABLE_ENTITY"


class SourceError(Unprocessable):
    """A permanent failure: wrong credentials, a missing bucket, a refused host key, a file that changed."""


class SourceUnavailable(TransientError):
    """A failure that may pass: a connection reset or refused, a timeout, S3's SlowDown, an HTTP 5xx."""


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
    def open(self, path: str, *, offset: int = 0, version: str | None = None) -> BinaryIO:
        """A byte stream of the file from ``offset``; the caller closes it.

        With ``version`` (from :class:`FileInfo`), a file whose content changed since is a
        :class:`SourceError`, so that a read resumed after a failure never mixes two versions.
        """

    def local_path(self, path: str) -> Path:
        """The file as a local path; only for sources with ``supports_local_path``."""
        raise NotImplementedError(f"{type(self).__name__} cannot hand out local paths")

    def check(self) -> int:
        """Reaches the root and lists it: the number of files there, or the error that says why not."""
        return len(self.list(""))

    def close(self) -> None:  # noqa: B027 (most sources hold nothing to release)
        """Releases connections; the source is not used afterwards."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PieceStream:
    """A byte stream over a backend's ``read_piece(n)``, read a piece at a time.

    ``read(n)`` asks for one piece, so a transient failure costs at most a piece and a resumed read
    restarts at the last byte delivered, however often the connection breaks (botocore's and
    asyncssh's own ``read(n)`` drop what they had received on failure). Pieces are handed over
    without copying them into a buffer of our own.
    """

    def __init__(self, read_piece: Callable[[int], bytes], close: Callable[[], None], piece: int) -> None:
        self._read_piece = read_piece
        self._close = close
        self._piece = piece
        self._broken: SourceUnavailable | None = None

    @classmethod
    def empty(cls) -> PieceStream:
        """A stream at its end: what a read opened at or past a file's last byte gives."""
        return cls(lambda n: b"", lambda: None, 1)

    def read(self, n: int = -1) -> bytes:
        """At most one piece (a short read, as from a socket); ``b""`` only at the end. All with ``n < 0``."""
        if self._broken is not None:
            raise self._broken
        if n >= 0:
            return self._read_piece(min(self._piece, n)) if n else b""
        parts: list[bytes] = []
        while True:
            try:
                data = self._read_piece(self._piece)
            except SourceUnavailable as exc:
                if not parts:
                    raise
                self._broken = exc
                break
            if not data:
                break
            parts.append(data)
        return b"".join(parts)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._close()

    def __enter__(self) -> PieceStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
