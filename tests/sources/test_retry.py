"""RetryingSource over real servers behind a fault proxy (S3's SlowDown, connection resets mid-download), and over
scripted sources for what a proxy cannot stage (a file that changes between two attempts, secrets in messages).

Sleeps are recorded, never slept: the policies' delays are checked as numbers.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pytest

from audiencehub.domain.connections import MASK, S3_SPEC_ID, find_spec
from audiencehub.services.connections import StoredConnection
from audiencehub.sources.base import FileInfo, Source, SourceError, SourceNotFound, SourceUnavailable
from audiencehub.sources.retry import RetryingSource, RetryPolicy
from audiencehub.sources.sftp import SftpSource
from tests.servers.faults import FaultProxy
from tests.servers.s3 import MotoServer
from tests.servers.sftp import SftpServer
from tests.sources.backends import Backend, make_backend

MiB = 1 << 20
MakeProxy = Callable[[str, int], FaultProxy]
ACCESS_DENIED = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>no</Message></Error>"
INTERNAL = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code><Message>oops</Message></Error>"


class Recording(Source):
    """A source that passes every call to ``inner`` and records the opens (where a read started or resumed)."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.opens: list[tuple[str, int, str | None]] = []

    def describe(self) -> str:
        return self.inner.describe()

    def stat(self, path: str) -> FileInfo:
        return self.inner.stat(path)

    def list(self, path: str, *, recursive: bool = False) -> list[FileInfo]:
        return self.inner.list(path, recursive=recursive)

    def open(self, path: str, *, offset: int = 0, version: str | None = None) -> BinaryIO:
        self.opens.append((path, offset, version))
        return self.inner.open(path, offset=offset, version=version)

    def check(self) -> int:
        return self.inner.check()

    def close(self) -> None:
        self.inner.close()


@dataclass
class Proxied:
    backend: Backend
    proxy: FaultProxy
    sleeps: list[float] = field(default_factory=list)

    def retrying(self, *, attempts: int = 5, base_delay: float = 0.0, bad: bool = False) -> RetryingSource:
        inner = Recording(self.backend.source(bad=bad))
        return RetryingSource(inner, RetryPolicy(attempts=attempts, base_delay=base_delay), sleep=self.sleeps.append)


@pytest.fixture
def s3(moto_server: MotoServer, fault_proxy: MakeProxy) -> Proxied:
    proxy = fault_proxy("127.0.0.1", moto_server.port)
    return Proxied(
        make_backend("s3", moto=moto_server, bucket=moto_server.make_bucket(), endpoint=proxy.endpoint), proxy
    )


@pytest.fixture
def sftp(sftp_server: SftpServer, fault_proxy: MakeProxy) -> Proxied:
    proxy = fault_proxy(sftp_server.host, sftp_server.port)
    folder = sftp_server.make_folder()
    return Proxied(make_backend("sftp_password", sftp=sftp_server, sftp_folder=folder, endpoint=proxy.endpoint), proxy)


def fired(proxy: FaultProxy, expected: int, timeout: float = 5.0) -> bool:
    """True once the proxy has counted ``expected`` faults and no more (it counts just after answering)."""
    deadline = time.monotonic() + timeout
    while proxy.faults_fired < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proxy.faults_fired == expected, f"{proxy.faults_fired} faults fired, expected {expected}"
    return True


def read_in_chunks(stream: BinaryIO, size: int = MiB) -> bytes:
    out = io.BytesIO()
    while chunk := stream.read(size):
        out.write(chunk)
    return out.getvalue()


def opens_of(source: Source) -> list[tuple[str, int, str | None]]:
    assert isinstance(source, RetryingSource) and isinstance(source.inner, Recording)
    return source.inner.opens


# -- the policy ------------------------------------------------------------------------------------


def test_delay_doubles_from_the_base_and_is_capped() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=10.0)
    assert [policy.delay(n) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert [RetryPolicy(base_delay=0.3, max_delay=1.0).delay(n) for n in (1, 2, 3, 4)] == [0.3, 0.6, 1.0, 1.0]
    assert [RetryPolicy(base_delay=0.0).delay(n) for n in (1, 2, 20)] == [0.0, 0.0, 0.0]
    assert all(isinstance(policy.delay(n), float) for n in (1, 6))


def test_default_policy() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.base_delay, policy.max_delay) == (5, 0.5, 10.0)
    assert [policy.delay(n) for n in range(1, 5)] == [0.5, 1.0, 2.0, 4.0]


# -- S3 behind the fault proxy ---------------------------------------------------------------------


def test_slow_down_is_retried_for_list_and_stat(s3: Proxied) -> None:
    s3.backend.put("a.csv", b"id\n1\n")
    with s3.retrying() as src:
        s3.proxy.http_error(503, times=2)
        assert [f.path for f in src.list("")] == ["a.csv"]
        assert fired(s3.proxy, 2)
        assert s3.sleeps == [0.0, 0.0]
        s3.proxy.http_error(503, times=2)
        assert src.stat("a.csv").size == 5
        assert fired(s3.proxy, 4)
        assert len(s3.sleeps) == 4


def test_retries_wait_longer_each_time(s3: Proxied) -> None:
    s3.backend.put("a.csv", b"id\n1\n")
    with s3.retrying(attempts=5, base_delay=0.25) as src:
        s3.proxy.http_error(503, times=3)
        assert src.check() == 1
    assert s3.sleeps == [0.25, 0.5, 1.0]


def test_a_server_error_is_retried(s3: Proxied) -> None:
    s3.backend.put("a.csv", b"id\n1\n")
    with s3.retrying() as src:
        s3.proxy.http_error(500, times=1, body=INTERNAL)
        assert src.stat("a.csv").size == 5
    assert s3.sleeps == [0.0]


def test_slow_down_when_opening_a_file_is_retried(s3: Proxied) -> None:
    data = os.urandom(100_000)
    s3.backend.put("a.bin", data)
    with s3.retrying() as src:
        info = src.stat("a.bin")
        s3.proxy.http_error(503, times=2)
        with src.open("a.bin", version=info.version) as stream:
            assert read_in_chunks(stream) == data
    assert s3.sleeps == [0.0, 0.0]
    assert opens_of(src) == [("a.bin", 0, info.version)] * 3


def test_too_many_failures_give_up_saying_how_many(s3: Proxied) -> None:
    s3.backend.put("a.csv", b"id\n1\n")
    with s3.retrying(attempts=3) as src:
        s3.proxy.http_error(503, times=3)
        with pytest.raises(SourceUnavailable, match=r"gave up after 3 attempts") as caught:
            src.list("")
        assert "SlowDown" in str(caught.value)
        assert src.describe() in str(caught.value)
        assert s3.sleeps == [0.0, 0.0]
        assert fired(s3.proxy, 3)
        assert [f.path for f in src.list("")] == ["a.csv"]  # the failures were used up: it works again


def test_a_single_attempt_policy_never_retries(s3: Proxied) -> None:
    """What the server uses to test a connection (RetryPolicy(attempts=1))."""
    s3.backend.put("a.csv", b"id\n1\n")
    with s3.retrying(attempts=1) as src:
        s3.proxy.http_error(503, times=1)
        with pytest.raises(SourceUnavailable, match="SlowDown") as caught:
            src.check()
        assert "gave up" not in str(caught.value)  # one attempt is not "giving up"
        assert src.check() == 1
    assert s3.sleeps == []


def test_access_denied_is_not_retried(s3: Proxied) -> None:
    """A retry would succeed here (the proxy answers 403 once), so success would prove a retry happened."""
    s3.backend.put("a.csv", b"id\n1\n")
    with s3.retrying(attempts=5) as src:
        s3.proxy.http_error(403, times=1, body=ACCESS_DENIED)
        with pytest.raises(SourceError, match="AccessDenied") as caught:
            src.list("")
        assert not isinstance(caught.value, SourceUnavailable)
    assert s3.sleeps == []


def test_a_wrong_secret_is_not_retried(s3: Proxied) -> None:
    s3.backend.put("a.csv", b"id\n1\n")
    with s3.retrying(attempts=5, bad=True) as src:
        for call in (src.check, lambda: src.stat("a.csv"), lambda: src.open("a.csv")):
            with pytest.raises(SourceError) as caught:
                call()
            assert not isinstance(caught.value, SourceUnavailable)
    assert s3.sleeps == []


SIX_MIB = 6 * MiB


def test_a_reset_download_resumes_where_it_stopped(s3: Proxied) -> None:
    data = os.urandom(SIX_MIB)
    s3.backend.put("big.bin", data)
    with s3.retrying() as src:
        info = src.stat("big.bin")
        s3.proxy.reset_after(2_000_000)  # moto closes every connection after one response: the download's is next
        with src.open("big.bin", version=info.version) as stream:
            got = read_in_chunks(stream)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert fired(s3.proxy, 1)
    assert s3.proxy.connections >= 2
    assert s3.sleeps == [0.0]
    opens = opens_of(src)
    assert len(opens) == 2
    assert opens[0] == ("big.bin", 0, info.version)
    path, resumed_at, version = opens[1]
    # Resumed, not restarted: a ranged read from the byte reached (less than what the proxy let through), pinned.
    assert (path, version) == ("big.bin", info.version)
    assert 0 < resumed_at <= 2_000_000


def test_repeated_resets_that_make_progress_never_give_up(s3: Proxied) -> None:
    """Attempts count failures in a row without progress: four resets, each after 1.5 MB, with attempts=2."""
    data = os.urandom(SIX_MIB)
    s3.backend.put("big.bin", data)
    with s3.retrying(attempts=2) as src:
        info = src.stat("big.bin")
        s3.proxy.reset_after(1_500_000, times=4)  # the download's connection and the next three
        with src.open("big.bin", version=info.version) as stream:
            got = read_in_chunks(stream)
    assert got == data
    assert fired(s3.proxy, 4)
    assert len(s3.sleeps) == 4
    offsets = [offset for _, offset, _ in opens_of(src)]
    assert len(offsets) == 5 and offsets[0] == 0
    assert offsets == sorted(set(offsets)), offsets  # each resume starts further on


def test_resets_more_often_than_the_read_size_still_make_progress(s3: Proxied) -> None:
    data = os.urandom(3 * MiB)
    s3.backend.put("big.bin", data)
    with s3.retrying(attempts=3) as src:
        info = src.stat("big.bin")
        s3.proxy.reset_after(600_000, times=10)
        with src.open("big.bin", version=info.version) as stream:
            got = read_in_chunks(stream)
    assert got == data


def test_a_download_that_keeps_failing_gives_up_saying_where(s3: Proxied) -> None:
    data = os.urandom(3 * MiB)
    s3.backend.put("big.bin", data)
    with s3.retrying(attempts=3) as src:
        info = src.stat("big.bin")
        s3.proxy.reset_after(1_500_000)  # the download's connection breaks midway ...
        s3.proxy.reset_after(0, times=10)  # ... and every reconnection breaks before a byte
        with (
            src.open("big.bin", version=info.version) as stream,
            pytest.raises(SourceUnavailable, match=r"gave up after 3 attempts") as caught,
        ):
            read_in_chunks(stream)
    assert "reading 'big.bin' at byte" in str(caught.value)
    assert len(s3.sleeps) == 2
    offsets = [offset for _, offset, _ in opens_of(src)]
    assert offsets[0] == 0 and len(offsets) == 3 and offsets[1] == offsets[2] and 0 < offsets[1] <= 1_500_000
    assert re.search(rf"at byte {offsets[1]}\b", str(caught.value)), str(caught.value)


def test_a_file_changed_before_the_resume_is_a_permanent_error(s3: Proxied) -> None:
    s3.backend.put("big.bin", os.urandom(3 * MiB))
    with s3.retrying(attempts=5) as src:
        info = src.stat("big.bin")
        s3.proxy.reset_after(1_500_000)
        with src.open("big.bin", version=info.version) as stream:
            # Overwritten once the download is under way: the response in flight still carries the old content.
            s3.backend.put("big.bin", os.urandom(3 * MiB))
            with pytest.raises(SourceError, match="changed") as caught:
                read_in_chunks(stream)
    assert not isinstance(caught.value, SourceUnavailable)
    assert s3.sleeps == [0.0]  # the reset was retried once; the precondition failure was not
    assert [(offset > 0, version) for _, offset, version in opens_of(src)] == [
        (False, info.version),
        (True, info.version),
    ]


# -- SFTP behind the fault proxy -------------------------------------------------------------------


def test_sftp_reset_mid_download_resumes(sftp: Proxied) -> None:
    data = os.urandom(SIX_MIB)
    sftp.backend.put("big.bin", data)
    sftp.proxy.reset_after(2_000_000)  # the source's first SSH connection (handshake bytes included)
    with sftp.retrying() as src:
        info = src.stat("big.bin")
        with src.open("big.bin", version=info.version) as stream:
            got = read_in_chunks(stream)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert fired(sftp.proxy, 1)
    assert sftp.proxy.connections == 2
    assert sftp.sleeps == [0.0]
    opens = opens_of(src)
    assert len(opens) == 2 and opens[0] == ("big.bin", 0, info.version)
    assert opens[1][2] == info.version and 0 < opens[1][1] < 2_000_000


def test_sftp_connections_reset_at_login_are_retried(sftp: Proxied) -> None:
    sftp.backend.put("a.csv", b"id\n1\n")
    sftp.proxy.reset_after(0, times=2)  # the first two connections break before the server's first byte
    with sftp.retrying() as src:
        assert [f.path for f in src.list("")] == ["a.csv"]
    assert sftp.sleeps == [0.0, 0.0]
    assert fired(sftp.proxy, 2)
    assert sftp.proxy.connections == 3


def test_sftp_server_unreachable_is_transient_and_gives_up(sftp: Proxied) -> None:
    sftp.proxy.stop()  # nothing listens there any more: connections are refused
    with sftp.retrying(attempts=4, base_delay=0.1) as src:
        with pytest.raises(SourceUnavailable, match=r"gave up after 4 attempts") as caught:
            src.list("")
        assert src.describe() in str(caught.value)
    assert sftp.sleeps == [0.1, 0.2, 0.4]


def test_sftp_reconnects_after_the_server_closed_an_idle_connection(tmp_path: Path, fault_proxy: MakeProxy) -> None:
    (tmp_path / "a.csv").write_bytes(b"id\n1\n")
    first = SftpServer(tmp_path)
    proxy = fault_proxy(first.host, first.port)
    source = SftpSource(
        "SFTP connection 'idle' (c-idle)",
        host=proxy.host,
        port=proxy.port,
        user=first.user,
        password=first.password,
        folder="/",
    )
    sleeps: list[float] = []
    src = RetryingSource(source, RetryPolicy(attempts=5, base_delay=0.0), sleep=sleeps.append)
    second: SftpServer | None = None
    try:
        assert src.check() == 1
        first.stop()  # closes the idle connection from the server's side
        conn, loop = source._conn, source._loop
        assert conn is not None and loop is not None
        asyncio.run_coroutine_threadsafe(conn.wait_closed(), loop).result(10)  # the client has seen it close
        second = SftpServer(tmp_path)  # back again, behind the same address
        proxy.target = (second.host, second.port)
        assert src.check() == 1
    finally:
        src.close()
        if second is not None:
            second.stop()


def test_sftp_wrong_password_is_not_retried(sftp: Proxied) -> None:
    with sftp.retrying(bad=True) as src, pytest.raises(SourceError, match="refused the login"):
        src.check()
    assert sftp.sleeps == []
    assert sftp.proxy.connections == 1


# -- scripted sources: versions, redaction ---------------------------------------------------------


class _Breaking(io.RawIOBase):
    """A stream of ``data`` from ``offset`` that fails with ``error`` after ``limit`` bytes."""

    def __init__(self, data: bytes, offset: int, limit: int | None, error: Exception) -> None:
        self._data, self._pos, self._left, self._error = data, offset, limit, error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._left == 0:
            raise self._error
        n = min(len(buffer), len(self._data) - self._pos, self._left if self._left is not None else len(buffer))
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        if self._left is not None:
            self._left -= n
        return n


class Scripted(Source):
    """A file whose content can change, whose reads break after ``limits`` bytes (one limit per open)."""

    def __init__(self, data: bytes, *, limits: list[int | None], error: Exception | None = None) -> None:
        self.data = data
        self.generation = 1
        self.limits = limits
        self.error = error or SourceUnavailable("scripted: the connection was reset")
        self.opens: list[tuple[int, str | None]] = []

    def describe(self) -> str:
        return "scripted source"

    def stat(self, path: str) -> FileInfo:
        return FileInfo(path, len(self.data), 0.0, str(self.generation))

    def list(self, path: str, *, recursive: bool = False) -> list[FileInfo]:
        return [self.stat("f.csv")]

    def open(self, path: str, *, offset: int = 0, version: str | None = None) -> BinaryIO:
        self.opens.append((offset, version))
        if version is not None and version != str(self.generation):
            raise SourceError("scripted: the file changed while it was being read")
        limit = self.limits.pop(0) if self.limits else None
        # Raw, not buffered: a BufferedReader would drop the bytes it had read when the failure comes.
        return _Breaking(self.data, offset, limit, self.error)  # type: ignore[return-value]

    def replace(self, data: bytes) -> None:
        self.data = data
        self.generation += 1


def test_a_resumed_read_is_pinned_to_the_version_given() -> None:
    inner = Scripted(b"A" * 1000, limits=[400])
    sleeps: list[float] = []
    src = RetryingSource(inner, RetryPolicy(attempts=3, base_delay=0.0), sleep=sleeps.append)
    with src.open("f.csv", version="1") as stream:
        assert stream.read(300) == b"A" * 300
        inner.replace(b"B" * 1000)
        with pytest.raises(SourceError, match="changed"):
            stream.read()
    assert inner.opens == [(0, "1"), (400, "1")]
    assert sleeps == [0.0]


def test_a_resumed_read_without_a_version_never_mixes_two_files() -> None:
    inner = Scripted(b"A" * 1000, limits=[400])
    src = RetryingSource(inner, RetryPolicy(attempts=3, base_delay=0.0), sleep=lambda _: None)
    with src.open("f.csv") as stream:
        head = stream.read(300)
        inner.replace(b"B" * 1000)
        try:
            rest = stream.read()
        except SourceError:
            return  # refused: fine
    assert head + rest in (b"A" * 1000, b"B" * 1000), f"mixed: {(head + rest).count(b'A')} A then B"


def test_a_failure_at_the_very_end_resumes_with_nothing_left() -> None:
    inner = Scripted(b"0123456789", limits=[10])
    src = RetryingSource(inner, RetryPolicy(attempts=3, base_delay=0.0), sleep=lambda _: None)
    with src.open("f.csv", version="1") as stream:
        assert stream.read() == b"0123456789"
    assert inner.opens == [(0, "1"), (10, "1")]


def test_permanent_errors_while_reading_are_not_retried() -> None:
    inner = Scripted(b"x" * 100, limits=[50], error=SourceError("scripted: access revoked"))
    sleeps: list[float] = []
    src = RetryingSource(inner, RetryPolicy(attempts=5, base_delay=0.0), sleep=sleeps.append)
    with src.open("f.csv") as stream, pytest.raises(SourceError, match="access revoked"):
        stream.read()
    assert sleeps == [] and len(inner.opens) == 1


def stored_s3(secret: str) -> StoredConnection:
    spec = find_spec(S3_SPEC_ID)
    assert spec is not None
    auth = spec.auth_spec("Access Key")
    assert auth is not None
    params = {"s3AccessKey": "AKIA-ACCESS-KEY-ID", "s3SecretKey": secret, "bucketName": "b"}
    return StoredConnection("c-1", "redaction", spec, auth, params)


class Echoing(Source):
    """A server that echoes the credential it was sent in every error (some do)."""

    def __init__(self, secret: str, errors: list[Exception]) -> None:
        self.secret = secret
        self.errors = errors

    def describe(self) -> str:
        return "echoing source"

    def _fail(self) -> FileInfo:
        if self.errors:
            raise self.errors.pop(0)
        return FileInfo("f.csv", 1, 0.0, "1")

    def stat(self, path: str) -> FileInfo:
        return self._fail()

    def list(self, path: str, *, recursive: bool = False) -> list[FileInfo]:
        return [self._fail()]

    def open(self, path: str, *, offset: int = 0, version: str | None = None) -> BinaryIO:
        self._fail()
        return io.BytesIO(b"x")


def test_secrets_are_redacted_from_retried_errors_and_their_logs(caplog: pytest.LogCaptureFixture) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    stored = stored_s3(secret)
    errors: list[Exception] = [SourceUnavailable(f"SlowDown for key {secret}") for _ in range(3)]
    src = RetryingSource(
        Echoing(secret, errors), RetryPolicy(attempts=3, base_delay=0.0), sleep=lambda _: None, redact=stored.redact
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceUnavailable) as caught:
        src.stat("f.csv")
    assert secret not in str(caught.value) and secret not in caught.value.detail
    assert MASK in caught.value.detail and "gave up after 3 attempts" in caught.value.detail
    assert caplog.records, "retries are logged"
    assert all(secret not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "error", [SourceError, SourceNotFound, SourceUnavailable], ids=["permanent", "not-found", "transient"]
)
def test_secrets_are_redacted_from_every_kind_of_error(error: type[SourceError]) -> None:
    secret = "another-Secret/Value+1234567890"
    stored = stored_s3(secret)
    src = RetryingSource(
        Echoing(secret, [error(f"denied: {secret}")]),
        RetryPolicy(attempts=1, base_delay=0.0),
        sleep=lambda _: None,
        redact=stored.redact,
    )
    for call in (lambda: src.stat("f.csv"), lambda: src.list(""), lambda: src.open("f.csv")):
        src.inner.errors = [error(f"denied: {secret}")]  # type: ignore[attr-defined]
        with pytest.raises(error) as caught:
            call()
        assert secret not in str(caught.value) and secret not in caught.value.detail
        assert "denied: " + MASK in caught.value.detail


def test_redaction_while_reading_midway(caplog: pytest.LogCaptureFixture) -> None:
    secret = "mid-read-Secret-0987654321"
    stored = stored_s3(secret)
    inner = Scripted(b"z" * 100, limits=[10, 0, 0], error=SourceUnavailable(f"reset, token {secret}"))
    src = RetryingSource(inner, RetryPolicy(attempts=2, base_delay=0.0), sleep=lambda _: None, redact=stored.redact)
    with (
        caplog.at_level(logging.DEBUG),
        src.open("f.csv") as stream,
        pytest.raises(SourceUnavailable, match="gave up after 2 attempts") as caught,
    ):
        stream.read()
    assert secret not in str(caught.value)
    assert all(secret not in r.getMessage() for r in caplog.records)
