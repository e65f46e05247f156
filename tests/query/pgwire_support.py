"""The PostgreSQL front end's test support: an app that serves the protocol on a free port, with a dataset of
five profiles, and a bare protocol client for what drivers do not show (portal limits, Sync recovery, SQLSTATEs
of failed logins)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.query.pgwire import PgWireServer
from audiencehub.query.session import QueryBackend
from tests.api import xdm_support as xdm
from tests.api.support import headers_for
from tests.conftest import test_settings

TABLE = "pgwire_test_dataset"
FIELDS = {
    "email": {"type": "string"},
    "score": {"type": "number"},
    "visits": {"type": "integer"},
    "vip": {"type": "boolean"},
    "address": {"type": "object", "properties": {"city": {"type": "string"}}},
    "tags": {"type": "array", "items": {"type": "string"}},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PgApp:
    """A running app with its PostgreSQL port, and the connection credentials AEP would give."""

    client: TestClient
    headers: dict[str, str]
    port: int
    tenant: str  # the org's tenant id: the dataset's fields sit under _{tenant}

    @property
    def user(self) -> str:
        return self.headers["x-gw-ims-org-id"]

    @property
    def password(self) -> str:
        return self.headers["Authorization"].removeprefix("Bearer ")

    def dsn(self, database: str = "prod", password: str | None = None, **extra: str) -> str:
        parts = {"host": "127.0.0.1", "port": str(self.port), "user": self.user, "dbname": database}
        parts["password"] = self.password if password is None else password
        return " ".join(f"{k}='{v}'" for k, v in {**parts, **extra}.items())

    def connect(self, **kwargs: object) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn(), **kwargs)  # type: ignore[arg-type]

    def client_env(self, password: str | None = None) -> dict[str, str]:
        """The environment for psql and pgbench: PGPASSWORD, and no user settings of the machine."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return {**env, "PGPASSWORD": self.password if password is None else password, "PSQLRC": "/dev/null"}

    def psql(self, *args: str, database: str = "prod", password: str | None = None) -> subprocess.CompletedProcess[str]:
        command = ["psql", "-X", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database, *args]
        return subprocess.run(command, env=self.client_env(password), capture_output=True, text=True, timeout=60)


def profile(tenant: str, i: int) -> dict[str, object]:
    fields = {"email": f"p{i}@x.com", "score": i * 1.5, "visits": i, "vip": i % 2 == 0, "address": {"city": "Paris"}}
    return {f"_{tenant}": {**fields, "tags": ["a", "b"]}}


def start(home: Path) -> Iterator[PgApp]:
    """An app on ``home`` serving PostgreSQL, with dataset "Pgwire Test Dataset" (table pgwire_test_dataset)."""
    port = free_port()
    with TestClient(create_app(test_settings(home, pg_port=port))) as client:
        headers = headers_for(client, home)
        tenant = xdm.tenant(client, headers)
        group = xdm.field_group(client, headers, "Pgwire fields", FIELDS)
        schema_id = xdm.schema(client, headers, "Pgwire schema", xdm.PROFILE_CLASS, group)
        dataset_id = xdm.dataset(client, headers, "Pgwire Test Dataset", schema_id)
        batch = xdm.ingest(client, headers, dataset_id, xdm.json_lines(*(profile(tenant, i) for i in range(5))))
        assert batch["status"] == "success", batch
        yield PgApp(client, headers, port, tenant)


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgApp]:
    yield from start(tmp_path_factory.mktemp("pgwire") / "home")


# --- a bare protocol client ---------------------------------------------------------------------------------


class Wire:
    """Speaks the protocol message by message, to see exactly what the server answers."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        self.raw(kind + struct.pack("!i", len(payload) + 4) + payload)

    def startup(self, user: str, database: str, version: int = 196608) -> None:
        body = struct.pack("!i", version) + b"".join(s.encode() + b"\0" for s in ("user", user, "database", database))
        self.raw(struct.pack("!i", len(body) + 5) + body + b"\0")

    def login(self, user: str, password: str, database: str) -> list[tuple[bytes, bytes]]:
        """Startup and password; the messages up to ReadyForQuery (or the FATAL error)."""
        self.startup(user, database)
        kind, body = self.recv()
        assert (kind, body) == (b"R", struct.pack("!i", 3)), (kind, body)  # cleartext password asked
        self.send(b"p", password.encode() + b"\0")
        return self.until(b"Z", b"E")

    def recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self) -> tuple[bytes, bytes]:
        kind = self.recv_exact(1)
        (length,) = struct.unpack("!i", self.recv_exact(4))
        return kind, self.recv_exact(length - 4)

    def until(self, *kinds: bytes) -> list[tuple[bytes, bytes]]:
        """Messages up to and including the first of ``kinds``."""
        out = []
        while True:
            message = self.recv()
            out.append(message)
            if message[0] in kinds:
                return out

    def parse(self, sql: str, name: str = "", types: tuple[int, ...] = ()) -> None:
        body = name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack(f"!h{len(types)}i", len(types), *types)
        self.send(b"P", body)

    def bind(self, params: tuple[str | None, ...] = (), portal: str = "", name: str = "", results: int = 0) -> None:
        body = portal.encode() + b"\0" + name.encode() + b"\0" + struct.pack("!hh", 0, len(params))
        for p in params:
            body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p.encode())) + p.encode()
        body += struct.pack("!hh", 1, results) if results else struct.pack("!h", 0)
        self.send(b"B", body)

    def execute(self, portal: str = "", max_rows: int = 0) -> None:
        self.send(b"E", portal.encode() + b"\0" + struct.pack("!i", max_rows))

    def describe(self, kind: bytes, name: str = "") -> None:
        self.send(b"D", kind + name.encode() + b"\0")

    def sync(self) -> None:
        self.send(b"S")


def error_fields(body: bytes) -> dict[str, str]:
    """An ErrorResponse's or NoticeResponse's fields by their one-letter code."""
    return {part[:1].decode(): part[1:].decode() for part in body.split(b"\0") if part}


def data_row(body: bytes) -> list[str | None]:
    (count,) = struct.unpack_from("!h", body)
    at, out = 2, []
    for _ in range(count):
        (size,) = struct.unpack_from("!i", body, at)
        at += 4
        out.append(None if size < 0 else body[at : at + size].decode())
        at += max(size, 0)
    return out


@contextmanager
def serving(backend: QueryBackend) -> Iterator[int]:
    """A PgWireServer on a free port, on its own event loop in a thread, over any backend; yields the port."""
    loop = asyncio.new_event_loop()
    server = PgWireServer(backend, "127.0.0.1", 0)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, name="pgwire-test-loop", daemon=True)
    thread.start()
    try:
        yield server.port
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
