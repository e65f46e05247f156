"""pytest fixtures for the real servers; import them into a conftest with ``from tests.servers.fixtures import *``.

Servers are session-scoped (each starts once per session, on first use); ``s3_bucket``, ``gcs_bucket`` and
``sftp_folder`` give each test its own fresh bucket or folder, and ``fault_proxy`` makes proxies that stop at
the end of the test.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers.faults import FaultProxy
from tests.servers.gcs import GcsEmulator
from tests.servers.s3 import MotoServer
from tests.servers.sftp import SftpServer

__all__ = [
    "closed_port",
    "fault_proxy",
    "gcs_bucket",
    "gcs_emulator",
    "moto_server",
    "s3_bucket",
    "sftp_folder",
    "sftp_server",
]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> str:
    """A new, uniquely named, empty bucket on :func:`moto_server`."""
    return moto_server.make_bucket()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    server = GcsEmulator()
    yield server
    server.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator) -> str:
    """A new, uniquely named, empty bucket on :func:`gcs_emulator`."""
    return gcs_emulator.make_bucket()


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpServer]:
    server = SftpServer(tmp_path_factory.mktemp("sftp-root"))
    yield server
    server.stop()


@pytest.fixture
def sftp_folder(sftp_server: SftpServer) -> tuple[str, Path]:
    """A new folder under the SFTP root: (its name as SFTP clients see it, relative to the chroot, and its Path)."""
    return sftp_server.make_folder()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[str, int], FaultProxy]]:
    """A factory ``make(target_host, target_port) -> FaultProxy``; the proxies stop when the test ends."""
    proxies: list[FaultProxy] = []

    def make(target_host: str, target_port: int) -> FaultProxy:
        proxy = FaultProxy(target_host, target_port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening, so no one else takes it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()
