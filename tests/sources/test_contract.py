"""The contract every source keeps, run over every backend on its real server, and over the landing zone's folder.

Subjects: the five kinds of base connection (``tests/sources/backends.py``: S3, GCS through its XML API with HMAC
keys (moto stands in), GCS's JSON API (the emulator), SFTP with a password and with a key), each built the way the
server builds it, plus ``local``, the Data Landing Zone's :class:`LocalSource` over a temporary folder.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from audiencehub.domain.connections import find_spec
from audiencehub.sources.base import FileInfo, Source, SourceError, SourceNotFound, SourceUnavailable
from audiencehub.sources.gcs import GcsSource
from audiencehub.sources.local import LocalSource
from audiencehub.sources.retry import RetryingSource, RetryPolicy
from tests.servers.gcs import GcsEmulator
from tests.servers.s3 import MotoServer
from tests.servers.sftp import SftpServer
from tests.sources.backends import KINDS, Backend, make_backend
from tests.sources.conftest import backend_of

MiB = 1 << 20
OUTSIDE = b"OUTSIDE-THE-ROOT,do-not-read\n"
CLOCK_SLACK_S = 2.0
"""S3 keeps LastModified in whole seconds and SFTP (v3) mtimes are whole seconds too."""
PERMANENT = (ValueError, SourceError, SourceNotFound)
OBJECT_STORES = ("s3", "gcs_hmac", "gcs_json")


@dataclass
class Subject:
    """One source under test: how to write under its root and outside it, and how to build it."""

    kind: str
    put: Callable[[str, bytes], None]
    make: Callable[[bool], Source]
    put_outside: Callable[[bytes], None]
    """Writes :data:`OUTSIDE` next to the root: in sibling prefixes or folders the escapes below aim at."""
    escapes: tuple[str, ...]
    """Paths that try to reach what ``put_outside`` wrote."""
    backend: Backend | None = None
    folder: Path | None = None
    """The root as a local folder (SFTP, local): for symlinks and modification times."""
    versions: bool = True

    def source(self, *, bad: bool = False) -> Source:
        return self.make(bad)

    def retrying(self, sleeps: list[float], *, attempts: int = 3) -> RetryingSource:
        return RetryingSource(self.make(False), RetryPolicy(attempts=attempts, base_delay=0.0), sleep=sleeps.append)

    def set_mtime(self, rel: str, stamp: float) -> None:
        if self.backend is not None and self.backend.set_mtime is not None:
            self.backend.set_mtime(rel, stamp)
        elif self.folder is not None:
            os.utime(self.folder / rel, (stamp, stamp))
        else:
            pytest.skip(f"{self.kind}: modification times cannot be set on this server")


ESCAPES_COMMON = ("..", "../secret.csv", "a/../../secret.csv", "./../secret.csv", "sub/../../secret.csv")


def _object_store(request: pytest.FixtureRequest, kind: str) -> Subject:
    backend = backend_of(request, kind)
    bucket = backend.params["bucketName"]
    assert backend.params["folderPath"] == "drop/zone"
    server: MotoServer | GcsEmulator = request.getfixturevalue("gcs_emulator" if kind == "gcs_json" else "moto_server")

    def put_outside(data: bytes) -> None:
        for key in ("drop/other/secret.csv", "drop/secret.csv", "drop/zone-sibling/secret.csv", "secret.csv"):
            server.put(bucket, key, data)

    escapes = (
        *ESCAPES_COMMON,
        "../other/secret.csv",
        "/../other/secret.csv",
        "../zone-sibling/secret.csv",
        "../../secret.csv",
        "..\\other\\secret.csv",
        "%2e%2e/other/secret.csv",
        "..%2Fother%2Fsecret.csv",
        "/etc/passwd",
    )
    return Subject(kind, backend.put, lambda bad: backend.source(bad=bad), put_outside, escapes, backend)


def _sftp(request: pytest.FixtureRequest, kind: str) -> Subject:
    server: SftpServer = request.getfixturevalue("sftp_server")
    name, folder = server.make_folder()
    backend = make_backend(kind, sftp=server, sftp_folder=(name, folder))

    def put_outside(data: bytes) -> None:
        (server.root / f"{name}-secret.csv").write_bytes(data)
        sibling = server.root / f"{name}-sibling"
        sibling.mkdir(exist_ok=True)
        (sibling / "secret.csv").write_bytes(data)

    escapes = (
        *ESCAPES_COMMON,
        f"../{name}-secret.csv",
        f"../{name}-sibling/secret.csv",
        f"/{name}-sibling/secret.csv",
        "/etc/passwd",
        f"..\\{name}-secret.csv",
    )
    return Subject(kind, backend.put, lambda bad: backend.source(bad=bad), put_outside, escapes, backend, folder)


def _local(tmp_path: Path) -> Subject:
    root = tmp_path / "root"
    root.mkdir()

    def put(rel: str, data: bytes) -> None:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def put_outside(data: bytes) -> None:
        (tmp_path / "root-secret.csv").write_bytes(data)
        (tmp_path / "root-sibling").mkdir(exist_ok=True)
        (tmp_path / "root-sibling" / "secret.csv").write_bytes(data)

    def make(bad: bool) -> Source:
        return LocalSource(root, name="landing zone (test)")

    escapes = (
        *ESCAPES_COMMON,
        "../root-secret.csv",
        "../root-sibling/secret.csv",
        str(tmp_path / "root-secret.csv"),
        "/etc/passwd",
        "..\\root-secret.csv",
    )
    return Subject("local", put, make, put_outside, escapes, folder=root, versions=False)


@pytest.fixture(params=[*KINDS, "local"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    kind: str = request.param
    if kind == "local":
        return _local(tmp_path)
    if kind in OBJECT_STORES:
        return _object_store(request, kind)
    return _sftp(request, kind)


def paths(files: list[FileInfo]) -> list[str]:
    return [f.path for f in files]


def read_all(source: Source, path: str, **kwargs: Any) -> bytes:
    with source.open(path, **kwargs) as stream:
        return stream.read()


# -- list -----------------------------------------------------------------------------------------

TREE = {
    "b.csv": b"id\n2\n",
    "a.csv": b"id\n1\n11\n",
    "A-upper.csv": b"ID\n",
    "a.csv.gz": gzip.compress(b"id\n1\n", mtime=0),
    "odd+name=%20&~x.csv": b"odd\n",
    "sub/c.csv": b"c\n" * 10,
    "sub/deep/d.csv": b"d\n",
    "zz/e.csv": b"e\n",
}
ROOT_FILES = sorted(k for k in TREE if "/" not in k)


def test_list_is_non_recursive_sorted_with_size_and_modified_and_leaves_folders_out(subject: Subject) -> None:
    before = time.time()
    for rel, data in TREE.items():
        subject.put(rel, data)
    after = time.time()
    with subject.source() as src:
        files = src.list("")
    assert paths(files) == ROOT_FILES  # "sub" and "zz" are folders: not listed, and nothing below them
    for info in files:
        assert info.size == len(TREE[info.path])
        assert before - CLOCK_SLACK_S <= info.modified <= after + CLOCK_SLACK_S, (info, before, after)


def test_list_a_folder_gives_paths_relative_to_the_root(subject: Subject) -> None:
    for rel, data in TREE.items():
        subject.put(rel, data)
    with subject.source() as src:
        assert paths(src.list("sub")) == ["sub/c.csv"]
        assert paths(src.list("sub/")) == ["sub/c.csv"]
        assert paths(src.list("sub/deep")) == ["sub/deep/d.csv"]
        assert [f.size for f in src.list("sub")] == [len(TREE["sub/c.csv"])]


def test_list_recursive(subject: Subject) -> None:
    for rel, data in TREE.items():
        subject.put(rel, data)
    with subject.source() as src:
        assert paths(src.list("", recursive=True)) == sorted(TREE)
        assert paths(src.list("sub", recursive=True)) == ["sub/c.csv", "sub/deep/d.csv"]
        assert {f.path: f.size for f in src.list("", recursive=True)} == {k: len(v) for k, v in TREE.items()}


def test_list_agrees_with_stat(subject: Subject) -> None:
    for rel, data in TREE.items():
        subject.put(rel, data)
    with subject.source() as src:
        for listed in src.list("", recursive=True):
            info = src.stat(listed.path)
            assert (info.path, info.size, info.version) == (listed.path, listed.size, listed.version)
            assert abs(info.modified - listed.modified) < 1.0


@pytest.mark.parametrize("subject", ["s3", "gcs_hmac"], indirect=True)
def test_folder_markers_are_not_files(subject: Subject) -> None:
    """Zero-byte 'folder/' marker objects (gcs_json has them too, but the emulator cannot store an empty object)."""
    subject.put("a.csv", b"x\n")
    subject.put("marker/", b"")
    subject.put("sub/", b"")
    subject.put("sub/c.csv", b"c\n")
    with subject.source() as src:
        assert paths(src.list("")) == ["a.csv"]
        assert paths(src.list("", recursive=True)) == ["a.csv", "sub/c.csv"]
        assert src.list("marker") == []  # an empty folder, not a missing one
        assert paths(src.list("sub")) == ["sub/c.csv"]


def test_an_empty_file_is_listed_and_reads_empty(subject: Subject) -> None:
    if subject.kind == "gcs_json":
        pytest.skip("the GCS emulator cannot store an empty object (its media upload fails on an empty body)")
    subject.put("empty.csv", b"")
    with subject.source() as src:
        assert [(f.path, f.size) for f in src.list("")] == [("empty.csv", 0)]
        assert src.stat("empty.csv").size == 0
        assert read_all(src, "empty.csv") == b""


def test_check_counts_the_files_at_the_root(subject: Subject) -> None:
    subject.put("one.csv", b"1\n")
    subject.put("two.csv", b"2\n")
    subject.put("sub/three.csv", b"3\n")
    with subject.source() as src:
        assert src.check() == 2
    sleeps: list[float] = []
    with subject.retrying(sleeps) as src:
        assert src.check() == 2
    assert sleeps == []


def test_an_empty_root_lists_empty(subject: Subject) -> None:
    """A new connection whose folder has no files yet: nothing to list, and its test says 0 (not 'no folder')."""
    with subject.source() as src:
        assert src.list("") == []
        assert src.list("", recursive=True) == []
        assert src.check() == 0
        with pytest.raises(SourceNotFound):
            src.list("not-there")


# -- stat -----------------------------------------------------------------------------------------


def test_stat_size_modified_and_version(subject: Subject) -> None:
    before = time.time()
    subject.put("in/audience.csv", b"email\na@example.com\n")
    after = time.time()
    with subject.source() as src:
        info = src.stat("in/audience.csv")
    assert info.path == "in/audience.csv"
    assert info.size == 20
    assert before - CLOCK_SLACK_S <= info.modified <= after + CLOCK_SLACK_S, (info, before, after)
    if subject.versions:
        assert isinstance(info.version, str) and info.version


@pytest.mark.parametrize("subject", ["sftp_password", "sftp_key", "local"], indirect=True)
def test_modified_follows_the_file_not_the_clock(subject: Subject) -> None:
    """Runs filter files by modification time: a file written long ago must say so (object stores set it)."""
    subject.put("old.csv", b"old\n")
    subject.put("new.csv", b"new\n")
    stamp = 1_600_000_000.0
    subject.set_mtime("old.csv", stamp)
    with subject.source() as src:
        assert src.stat("old.csv").modified == stamp
        assert {f.path: f.modified for f in src.list("")}["old.csv"] == stamp
        assert src.stat("new.csv").modified > stamp + 86400


def test_version_changes_with_the_content(subject: Subject) -> None:
    if not subject.versions:
        pytest.skip(f"{subject.kind}: files have no versions (FileInfo.version is None)")
    subject.put("v.csv", b"one\n")
    with subject.source() as src:
        first = src.stat("v.csv").version
        subject.put("v.csv", b"number two\n")
        assert src.stat("v.csv").version != first


# -- read -----------------------------------------------------------------------------------------


def test_read_whole_and_from_an_offset(subject: Subject) -> None:
    data = os.urandom(300_000)
    subject.put("r/data.bin", data)
    with subject.source() as src:
        assert read_all(src, "r/data.bin") == data
        for offset in (1, 4095, 65_536, 299_999):
            assert read_all(src, "r/data.bin", offset=offset) == data[offset:], offset
        with src.open("r/data.bin", offset=1000) as stream:
            assert stream.read(10) == data[1000:1010]
            assert stream.read(5) == data[1010:1015]


def test_read_with_the_current_version(subject: Subject) -> None:
    subject.put("data.csv", b"id\n1\n2\n")
    with subject.source() as src:
        info = src.stat("data.csv")
        assert read_all(src, "data.csv", version=info.version) == b"id\n1\n2\n"
        assert read_all(src, "data.csv", offset=3, version=info.version) == b"1\n2\n"


def read_closing(source: Source, path: str, n: int = -1, **kwargs: Any) -> bytes:
    """Like :func:`read_all` without the ``with`` statement (see test_open_at_the_end_is_a_context_manager)."""
    stream = source.open(path, **kwargs)
    try:
        return stream.read(n)
    finally:
        stream.close()


def test_read_from_the_end_or_past_it_is_empty(subject: Subject) -> None:
    subject.put("short.csv", b"0123456789")
    with subject.source() as src:
        assert read_closing(src, "short.csv", offset=10) == b""
        assert read_closing(src, "short.csv", 5, offset=10) == b""
        assert read_closing(src, "short.csv", 5, offset=11) == b""
        assert read_closing(src, "short.csv", offset=1000) == b""


def test_open_at_the_end_is_a_context_manager(subject: Subject) -> None:
    """RetryingSource reopens at the byte reached, which may be the end; callers use ``with source.open(...)``."""
    subject.put("short.csv", b"0123456789")
    with subject.source() as src:
        for offset in (0, 9, 10, 11):
            with src.open("short.csv", offset=offset) as stream:
                assert stream.read(100) == b"0123456789"[offset:]


def test_gzip_content_round_trips_as_bytes(subject: Subject) -> None:
    text = b"email,segment\n" + b"".join(b"user%d@example.com,s%d\n" % (i, i % 7) for i in range(20_000))
    packed = gzip.compress(text, mtime=0)
    subject.put("in/audience.csv.gz", packed)
    with subject.source() as src:
        assert src.stat("in/audience.csv.gz").size == len(packed)  # stored and served as is, not transcoded
        got = read_all(src, "in/audience.csv.gz")
        assert got == packed
        assert gzip.decompress(got) == text
        with src.open("in/audience.csv.gz", offset=0) as stream, gzip.open(stream) as unpacked:
            assert unpacked.read() == text


LARGE = 24 * MiB
"""Larger than ingestion's 8 MiB fetch chunk and RetryingSource's 1 MiB buffer."""


def test_a_large_file_streams_through_retrying_source_in_chunks(subject: Subject) -> None:
    data = os.urandom(LARGE)
    expected = hashlib.sha256(data).hexdigest()
    subject.put("big/large.bin", data)
    del data
    sleeps: list[float] = []
    digest = hashlib.sha256()
    total, biggest = 0, 0
    with subject.retrying(sleeps) as src:
        info = src.stat("big/large.bin")
        assert info.size == LARGE
        tracemalloc.start()
        try:
            with src.open("big/large.bin", version=info.version) as stream:
                while chunk := stream.read(MiB):
                    digest.update(chunk)
                    total += len(chunk)
                    biggest = max(biggest, len(chunk))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert total == LARGE
    assert digest.hexdigest() == expected
    assert biggest <= MiB
    # Whole-file reads would peak above 24 MiB. SFTP peaks near 10 MiB, flat in the file size: asyncssh's parallel
    # block requests, and the in-process test server's own buffers, are traced too.
    assert peak < LARGE / 2, f"reading 1 MiB at a time held {peak / MiB:.1f} MiB at once"
    assert sleeps == []


# -- missing --------------------------------------------------------------------------------------


def test_missing_file_is_not_found_naming_the_path(subject: Subject) -> None:
    subject.put("present.csv", b"x\n")
    with subject.source() as src:
        for call in (lambda: src.stat("in/missing-file.csv"), lambda: read_all(src, "in/missing-file.csv")):
            with pytest.raises(SourceNotFound, match=r"missing-file\.csv"):
                call()


def test_missing_folder_is_not_found(subject: Subject) -> None:
    subject.put("present/a.csv", b"x\n")
    with subject.source() as src:
        for recursive in (False, True):
            with pytest.raises(SourceNotFound, match="no-such-folder"):
                src.list("no-such-folder", recursive=recursive)
        with pytest.raises(SourceNotFound):
            src.list("present/a.csv")  # a file is not a folder


def test_a_folder_is_not_a_file(subject: Subject) -> None:
    subject.put("folder/a.csv", b"x\n")
    with subject.source() as src:
        with pytest.raises(SourceNotFound):
            src.stat("folder")
        with pytest.raises((SourceNotFound, SourceError)):
            read_all(src, "folder")


def test_not_found_is_not_retried(subject: Subject) -> None:
    subject.put("present.csv", b"x\n")
    sleeps: list[float] = []
    with subject.retrying(sleeps, attempts=5) as src:
        with pytest.raises(SourceNotFound):
            src.stat("absent.csv")
        with pytest.raises(SourceNotFound):
            src.list("absent")
        with pytest.raises(SourceNotFound):
            src.open("absent.csv")
    assert sleeps == []


# -- credentials ----------------------------------------------------------------------------------


def secret_values(backend: Backend) -> list[str]:
    """Every secret either connection (good or bad) carries, and enough of long ones to spot a partial echo."""
    spec = find_spec(backend.spec_id)
    assert spec is not None
    auth = spec.auth_spec(backend.spec_name)
    assert auth is not None
    out = set(backend.secrets)
    for params in (backend.params, backend.bad_params):
        for name in auth.secret_names:
            value = params.get(name)
            if isinstance(value, str):
                out.add(value)
                out.update(value[i : i + 24] for i in range(0, max(len(value) - 24, 0), 24))
    return sorted(v for v in out if len(v) >= 8)


SERVER_SAID = {
    "s3": ("SignatureDoesNotMatch", "HTTP 403"),
    "gcs_hmac": ("SignatureDoesNotMatch", "HTTP 403"),
    "sftp_password": ("refused the login: Permission denied", "refused the login: Permission denied"),
    "sftp_key": ("refused the login: Permission denied", "refused the login: Permission denied"),
}
"""What the server said to the wrong secret: for a listing (with an error body) and for a HEAD (no body)."""


def test_wrong_credentials_are_a_permanent_error_that_names_the_connection_and_not_the_secret(
    subject: Subject,
) -> None:
    if subject.backend is None:
        pytest.skip("the landing zone has no credentials")
    if not subject.backend.checks_credentials:
        pytest.skip(f"{subject.kind}: the emulator never checks Authorization, so a wrong key cannot fail")
    subject.put("a.csv", b"x\n")
    listing_said, head_said = SERVER_SAID[subject.kind]
    sleeps: list[float] = []
    with subject.source(bad=True) as bad:
        label = bad.describe()
        assert subject.kind in label
        calls: list[tuple[str, Callable[[], object], str]] = [
            ("check", bad.check, listing_said),
            ("list", lambda: bad.list(""), listing_said),
            ("stat", lambda: bad.stat("a.csv"), head_said),
            ("open", lambda: read_all(bad, "a.csv"), listing_said),
        ]
        for what, call, said in calls:
            with pytest.raises(SourceError) as caught:
                call()
            message = str(caught.value)
            assert not isinstance(caught.value, SourceUnavailable | SourceNotFound), what
            assert caught.value.status == 422
            assert label in message, (what, message)
            assert said in message, (what, message)
            for secret in secret_values(subject.backend):
                assert secret not in message, (what, message)
        retrying = RetryingSource(bad, RetryPolicy(attempts=5, base_delay=0.0), sleep=sleeps.append)
        with pytest.raises(SourceError):
            retrying.check()
    assert sleeps == []


# -- escapes --------------------------------------------------------------------------------------


def assert_unreachable(src: Source, path: str) -> None:
    """``path`` is refused for stat, open and list, and nothing read through it comes from outside the root."""
    for what, call in (
        ("stat", lambda: src.stat(path)),
        ("open", lambda: read_all(src, path)),
        ("list", lambda: src.list(path)),
        ("list recursive", lambda: src.list(path, recursive=True)),
    ):
        try:
            got = call()
        except PERMANENT:
            continue
        if isinstance(got, bytes):
            assert OUTSIDE not in got, f"{what} {path!r} read outside the root"
        pytest.fail(f"{what} {path!r} was not refused: {got!r}")


def test_paths_cannot_leave_the_root(subject: Subject) -> None:
    subject.put("a.csv", b"inside\n")
    subject.put("sub/b.csv", b"inside\n")
    subject.put_outside(OUTSIDE)
    with subject.source() as src:
        for path in subject.escapes:
            assert_unreachable(src, path)
        listed = paths(src.list("", recursive=True))
        assert listed == ["a.csv", "sub/b.csv"]
        assert read_all(src, "a.csv") == b"inside\n"  # the source still works after all that


@pytest.mark.parametrize("subject", ["sftp_password", "sftp_key", "local"], indirect=True)
def test_symlinks_out_of_the_root_are_neither_listed_nor_read(subject: Subject) -> None:
    assert subject.folder is not None
    folder = subject.folder
    subject.put("a.csv", b"inside\n")
    subject.put_outside(OUTSIDE)
    outside_file = folder.parent / f"{folder.name}-secret.csv"
    assert outside_file.read_bytes() == OUTSIDE
    outside_dir = folder.parent / f"{folder.name}-sibling"
    os.symlink(f"../{outside_file.name}", folder / "relative-out.csv")
    os.symlink(outside_file, folder / "absolute-out.csv")
    os.symlink(f"../{outside_dir.name}", folder / "dir-out")
    os.symlink("/etc/passwd", folder / "etc-out.csv")
    os.symlink("a.csv", folder / "inside-link.csv")  # a symlink that stays inside is an ordinary file
    (folder / "deeper").mkdir()
    os.symlink("../../" + outside_file.name, folder / "deeper" / "out.csv")
    with subject.source() as src:
        assert paths(src.list("")) == ["a.csv", "inside-link.csv"]
        assert paths(src.list("", recursive=True)) == ["a.csv", "inside-link.csv"]
        assert read_all(src, "inside-link.csv") == b"inside\n"
        for path in ("relative-out.csv", "absolute-out.csv", "etc-out.csv", "dir-out/secret.csv", "deeper/out.csv"):
            assert_unreachable(src, path)
        for call in (lambda: src.list("dir-out"), lambda: src.list("dir-out", recursive=True)):
            with pytest.raises(PERMANENT):
                call()
        assert src.list("deeper") == []


# -- versions -------------------------------------------------------------------------------------


def test_a_stale_version_is_refused_as_changed(subject: Subject) -> None:
    if not subject.versions:
        pytest.skip(f"{subject.kind}: files have no versions to pin a read to")
    if subject.kind == "gcs_json":
        pytest.skip("the GCS emulator ignores ifGenerationMatch (see test_gcs_json_pins_reads_to_the_generation)")
    subject.put("v.csv", b"version one\n")
    sleeps: list[float] = []
    with subject.source() as src:
        stale = src.stat("v.csv").version
        subject.put("v.csv", b"version two, longer\n")
        for offset in (0, 3):
            with pytest.raises(SourceError, match="changed") as caught:
                read_all(src, "v.csv", offset=offset, version=stale)
            assert src.describe() in str(caught.value)
        fresh = src.stat("v.csv").version
        assert read_all(src, "v.csv", version=fresh) == b"version two, longer\n"
    with subject.retrying(sleeps, attempts=5) as retrying, pytest.raises(SourceError, match="changed"):
        retrying.open("v.csv", version=stale)
    assert sleeps == []


class _Recording(httpx.BaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("subject", ["gcs_json"], indirect=True)
def test_gcs_json_pins_reads_to_the_generation(subject: Subject) -> None:
    """The emulator ignores ifGenerationMatch, so check that the source asks for it (GCS answers 412 otherwise)."""
    subject.put("v.csv", b"version one\n")
    with subject.source() as src:
        assert isinstance(src, GcsSource)
        recording = _Recording()
        src._http.close()
        src._http = httpx.Client(transport=recording)
        info = src.stat("v.csv")
        assert info.version is not None and info.version.isdigit()
        assert read_all(src, "v.csv", offset=2, version=info.version) == b"rsion one\n"
    media = [r for r in recording.requests if r.url.params.get("alt") == "media"]
    assert len(media) == 1
    assert media[0].url.params.get("ifGenerationMatch") == info.version
    assert media[0].headers.get("Range") == "bytes=2-"


# -- the landing zone's own rules -----------------------------------------------------------------


@pytest.mark.parametrize("subject", ["sftp_password", "sftp_key", "local"], indirect=True)
def test_hidden_names_stay_hidden_where_the_tree_hides_them(subject: Subject) -> None:
    """SFTP and the landing zone leave names starting with "." out of the tree (object stores list every key)."""
    subject.put("a.csv", b"x\n")
    subject.put(".hidden.csv", b"h\n")
    subject.put(".uploads/b.csv", b"h\n")
    with subject.source() as src:
        assert paths(src.list("", recursive=True)) == ["a.csv"]
        for path in (".hidden.csv", ".uploads/b.csv"):
            with pytest.raises(PERMANENT):
                src.stat(path)
            with pytest.raises(PERMANENT):
                read_all(src, path)
