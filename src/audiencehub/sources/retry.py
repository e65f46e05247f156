"""Retries with backoff for any source: the one place where transient failures are absorbed.

:class:`RetryingSource` wraps a backend. Listing and stat are retried whole; a read that fails
midway is reopened at the byte it reached, pinned to the version it started with, so that a
connection reset on a file of several GB costs seconds, not the whole file.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from audiencehub.errors import AudiencehubError
from audiencehub.sources.base import FileInfo, Source, SourceUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    """Tries of one operation in a row that make no progress, the first included."""
    base_delay: float = 0.5
    max_delay: float = 10.0

    def delay(self, failures: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** (failures - 1)))


class RetryingSource(Source):
    def __init__(
        self,
        inner: Source,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self._sleep = sleep
        self._redact = redact
        self.supports_local_path = inner.supports_local_path  # type: ignore[misc]

    def describe(self) -> str:
        return self.inner.describe()

    def call(self, what: str, fn: Callable[[], T]) -> T:
        failures = 0
        while True:
            try:
                return fn()
            except SourceUnavailable as exc:
                failures += 1
                if failures >= self.policy.attempts:
                    raise self.clean(SourceUnavailable(exc.detail + _gave_up(failures))) from exc
                pause = self.policy.delay(failures)
                detail = self._redact(exc.detail)
                log.warning("%s: %s failed (%s); retry %d in %.1fs", self.describe(), what, detail, failures, pause)
                self._sleep(pause)
            except AudiencehubError as exc:
                raise self.clean(exc) from exc.__cause__

    def clean(self, exc: AudiencehubError) -> AudiencehubError:
        """``exc`` with any credential in its message masked (servers may echo what they were sent)."""
        exc.detail = self._redact(exc.detail)
        exc.args = (exc.detail,)
        return exc

    def stat(self, path: str) -> FileInfo:
        return self.call(f"stat {path!r}", lambda: self.inner.stat(path))

    def list(self, path: str, *, recursive: bool = False) -> list[FileInfo]:
        return self.call(f"list {path!r}", lambda: self.inner.list(path, recursive=recursive))

    def open(self, path: str, *, offset: int = 0, version: str | None = None) -> BinaryIO:
        if version is None and not self.inner.supports_local_path:
            version = self.stat(path).version  # a resumed read must continue the same file
        # Unbuffered on purpose: read(n) hands over the backend's own bytes. A BufferedReader would copy
        # every chunk into a new buffer of its own: one more copy, and a fresh 8 MiB allocation per
        # chunk that glibc maps and unmaps each time (a page fault per 4 KiB read).
        return _ResumableStream(self, path, offset, version)  # type: ignore[return-value]

    def check(self) -> int:
        return self.call("list the root", self.inner.check)

    def local_path(self, path: str) -> Path:
        return self.inner.local_path(path)

    def close(self) -> None:
        self.inner.close()


class _ResumableStream(io.RawIOBase):
    """A read-only stream that reopens the file at its position when a read fails transiently."""

    def __init__(self, source: RetryingSource, path: str, offset: int, version: str | None) -> None:
        self._source = source
        self._path = path
        self._pos = offset
        self._version = version
        self._raw: BinaryIO | None = None
        self._raw = source.call(f"open {path!r}", self._open)

    def _open(self) -> BinaryIO:
        return self._source.inner.open(self._path, offset=self._pos, version=self._version)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        return self._read(size)

    def readall(self) -> bytes:
        chunks = []
        while data := self._read(1 << 20):
            chunks.append(data)
        return b"".join(chunks)

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self._read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes (``b""`` only at the end), reopening at the position on a transient failure."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        failures = 0
        while True:
            try:
                if self._raw is None:
                    self._raw = self._open()
                data = self._raw.read(size)
            except SourceUnavailable as exc:
                self._drop()
                failures += 1
                policy = self._source.policy
                if failures >= policy.attempts:
                    raise self._source.clean(
                        SourceUnavailable(
                            f"{exc.detail} (reading {self._path!r} at byte {self._pos})" + _gave_up(failures)
                        )
                    ) from exc
                pause = policy.delay(failures)
                log.warning(
                    "%s: reading %r failed at byte %d (%s); resuming in %.1fs",
                    self._source.describe(),
                    self._path,
                    self._pos,
                    self._source.clean(exc).detail,
                    pause,
                )
                self._source._sleep(pause)
                continue
            except AudiencehubError as exc:
                self._drop()
                raise self._source.clean(exc) from exc.__cause__
            self._pos += len(data)
            return data

    def _drop(self) -> None:
        if self._raw is not None:
            try:
                self._raw.close()
            except Exception:
                log.debug("closing a broken stream failed", exc_info=True)
            self._raw = None

    def close(self) -> None:
        self._drop()
        super().close()


def _gave_up(failures: int) -> str:
    return f" (gave up after {failures} attempts)" if failures > 1 else ""
