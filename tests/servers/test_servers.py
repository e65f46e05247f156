"""The test servers behave as their docstrings say: auth really enforced, emulator quirks, faults that fire."""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import botocore.exceptions
import httpx
import pytest
from botocore.config import Config

from tests.servers.faults import FaultProxy
from tests.servers.gcs import GcsEmulator
from tests.servers.s3 import MotoServer
from tests.servers.sftp import SftpServer

NO_RETRIES = Config(retries={"total_max_attempts": 1})
MakeProxy = Callable[[str, int], FaultProxy]


def error_of(call: Callable[[], Any]) -> tuple[str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# -- S3 (moto)


def test_moto_accepts_the_valid_key(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.put(s3_bucket, "a/b.csv", b"x,y\n")
    listed = moto_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["a/b.csv"]


def test_moto_rejects_a_wrong_secret(moto_server: MotoServer, s3_bucket: str) -> None:
    client = moto_server.client(secret_key="not-the-secret", config=NO_RETRIES)
    assert error_of(lambda: client.list_objects_v2(Bucket=s3_bucket)) == ("SignatureDoesNotMatch", 403)


def test_moto_rejects_an_unknown_key_id(moto_server: MotoServer, s3_bucket: str) -> None:
    client = moto_server.client(access_key="AKIAUNKNOWNUNKNOWN00", config=NO_RETRIES)
    assert error_of(lambda: client.list_objects_v2(Bucket=s3_bucket)) == ("InvalidAccessKeyId", 403)


def test_s3_buckets_are_fresh(moto_server: MotoServer, s3_bucket: str) -> None:
    assert moto_server.client().list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


# -- GCS (emulator)


def test_gcs_emulator_serves_what_the_docstring_says(gcs_emulator: GcsEmulator, gcs_bucket: str) -> None:
    for name in ["a/1.csv", "a/2.csv", "a/3.csv", "a/sub/4.csv", "b.csv"]:
        gcs_emulator.put(gcs_bucket, name, f"data of {name}".encode())
    objects = f"{gcs_emulator.endpoint}/storage/v1/b/{gcs_bucket}/o"
    url = gcs_emulator.object_url(gcs_bucket, "a/1.csv")

    listing = httpx.get(objects, params={"prefix": "a/", "delimiter": "/"}).json()
    assert [i["name"] for i in listing["items"]] == ["a/1.csv", "a/2.csv", "a/3.csv"]
    assert listing["prefixes"] == ["a/sub/"]
    unpaged = httpx.get(objects, params={"maxResults": 2}).json()
    assert len(unpaged["items"]) == 5 and "nextPageToken" not in unpaged  # no paging

    meta = httpx.get(url).json()
    assert meta["size"] == "15" and meta["generation"] and meta["updated"]

    ranged = httpx.get(url, params={"alt": "media"}, headers={"Range": "bytes=5-"})
    assert ranged.status_code == 206
    assert (ranged.content, ranged.headers["content-range"]) == (b"of a/1.csv", "bytes 5-14/15")

    missing = httpx.get(gcs_emulator.object_url(gcs_bucket, "nope"), headers={"Authorization": "Bearer garbage"})
    assert (missing.status_code, missing.content) == (404, b"")


# -- SFTP (asyncssh)


def connect(server: SftpServer, via: FaultProxy | None = None, **options: Any) -> Any:
    """asyncssh.connect to ``server`` (or through ``via``) with its host key pinned, unless ``known_hosts`` is given."""
    host, port = (via.host, via.port) if via else (server.host, server.port)
    options.setdefault("known_hosts", asyncssh.import_known_hosts(f"[{host}]:{port} {server.host_key_openssh}"))
    return asyncssh.connect(host, port, username=server.user, **options)


async def read_over_sftp(server: SftpServer, path: str, via: FaultProxy | None = None, **options: Any) -> bytes:
    async with connect(server, via, **options) as conn, conn.start_sftp_client() as sftp, sftp.open(path, "rb") as f:
        return await f.read()


@pytest.mark.parametrize("auth", ["password", "key", "encrypted key"])
def test_sftp_auth_methods(sftp_server: SftpServer, sftp_folder: tuple[str, Path], auth: str) -> None:
    name, path = sftp_folder
    (path / "f.csv").write_bytes(b"hello")
    options: dict[str, Any] = {"password": sftp_server.password, "client_keys": None}
    if auth == "key":
        options = {"client_keys": [asyncssh.import_private_key(sftp_server.client_key_pem)]}
    elif auth == "encrypted key":
        key = asyncssh.import_private_key(sftp_server.client_key_pem_encrypted, sftp_server.client_key_passphrase)
        options = {"client_keys": [key]}
    assert asyncio.run(read_over_sftp(sftp_server, f"/{name}/f.csv", **options)) == b"hello"


def test_sftp_is_chrooted(sftp_server: SftpServer) -> None:
    async def listing() -> list[str]:
        async with (
            connect(sftp_server, password=sftp_server.password, client_keys=None) as conn,
            conn.start_sftp_client() as sftp,
        ):
            return sorted(await sftp.listdir("/"))

    assert set(asyncio.run(listing())) - {".", ".."} == {p.name for p in sftp_server.root.iterdir()}


def test_sftp_rejects_a_wrong_password(sftp_server: SftpServer) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(read_over_sftp(sftp_server, "/x", password="wrong", client_keys=None))


def test_sftp_rejects_an_unregistered_key(sftp_server: SftpServer) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(read_over_sftp(sftp_server, "/x", client_keys=[other]))


def test_sftp_client_rejects_a_different_host_key(sftp_server: SftpServer) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    pinned = asyncssh.import_known_hosts(f"[{sftp_server.host}]:{sftp_server.port} {impostor}")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        asyncio.run(read_over_sftp(sftp_server, "/x", known_hosts=pinned, password=sftp_server.password))


# -- fault proxy


def test_http_error_answers_slow_down_then_forwards(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: MakeProxy
) -> None:
    moto_server.put(s3_bucket, "k", b"v")
    proxy = fault_proxy("127.0.0.1", moto_server.port)
    client = moto_server.client(endpoint_url=proxy.endpoint, config=NO_RETRIES)
    assert client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"v"
    proxy.http_error(times=2)
    for _ in range(2):
        assert error_of(lambda: client.get_object(Bucket=s3_bucket, Key="k")) == ("SlowDown", 503)
    assert client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"v"
    assert proxy.faults_fired == 2


class _KeepAliveHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive (moto and the GCS emulator close every connection): echoes the body's length."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        reply = str(len(body)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_http_error_counts_requests_on_a_kept_alive_connection(fault_proxy: MakeProxy) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAliveHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        proxy = fault_proxy("127.0.0.1", server.server_address[1])
        with httpx.Client(base_url=proxy.endpoint) as client:
            assert client.post("/", content=b"a" * 100_000).text == "100000"
            assert client.post("/", content=b"b" * 10).text == "10"  # same connection, next request
            proxy.http_error(times=1)
            slow_down = client.post("/", content=b"c" * 5000)
            assert (slow_down.status_code, slow_down.headers["connection"]) == (503, "close")
            assert b"<Code>SlowDown</Code>" in slow_down.content
            assert client.post("/", content=b"d").text == "1"
        assert (proxy.connections, proxy.faults_fired) == (2, 1)
    finally:
        server.shutdown()
        server.server_close()


def test_botocore_retries_through_slow_down(moto_server: MotoServer, s3_bucket: str, fault_proxy: MakeProxy) -> None:
    proxy = fault_proxy("127.0.0.1", moto_server.port)
    client = moto_server.client(endpoint_url=proxy.endpoint, config=Config(retries={"total_max_attempts": 3}))
    proxy.http_error(times=2)
    client.put_object(Bucket=s3_bucket, Key="k", Body=b"v" * 2_000_000)  # a body, dropped by the proxy twice
    assert proxy.faults_fired == 2
    assert moto_server.client().get_object(Bucket=s3_bucket, Key="k")["ContentLength"] == 2_000_000


def test_reset_after_breaks_one_s3_download(moto_server: MotoServer, s3_bucket: str, fault_proxy: MakeProxy) -> None:
    data = os.urandom(5_000_000)
    moto_server.put(s3_bucket, "big", data)
    proxy = fault_proxy("127.0.0.1", moto_server.port)
    proxy.reset_after(1_000_000)
    client = moto_server.client(endpoint_url=proxy.endpoint, config=NO_RETRIES)
    with pytest.raises(botocore.exceptions.ResponseStreamingError, match="Connection reset by peer"):
        client.get_object(Bucket=s3_bucket, Key="big")["Body"].read()
    assert client.get_object(Bucket=s3_bucket, Key="big")["Body"].read() == data
    assert (proxy.faults_fired, proxy.connections) == (1, 2)


def test_reset_after_breaks_an_sftp_download(
    sftp_server: SftpServer, sftp_folder: tuple[str, Path], fault_proxy: MakeProxy
) -> None:
    name, path = sftp_folder
    (path / "big.bin").write_bytes(os.urandom(2_000_000))
    proxy = fault_proxy(sftp_server.host, sftp_server.port)
    proxy.reset_after(500_000)

    def download() -> bytes:
        options = {"password": sftp_server.password, "client_keys": None}
        return asyncio.run(read_over_sftp(sftp_server, f"/{name}/big.bin", via=proxy, **options))

    with pytest.raises(asyncssh.SFTPConnectionLost):
        download()
    assert proxy.faults_fired == 1
    assert download() == (path / "big.bin").read_bytes()
