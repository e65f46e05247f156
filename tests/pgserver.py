"""A real PostgreSQL server for the tests: initdb into a temp dir, ``postgres`` on a free loopback port.

Debian ships the server binaries under ``/usr/lib/postgresql/{version}/bin`` (package ``postgresql``, which
``make pgclients`` installs); the newest version found there is used. initdb and postgres refuse to run as root,
so when the tests run as root both run as the ``postgres`` system user that the package creates, over a data
directory chowned to it. ``fsync`` is off: the data lives only as long as the test session.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg

from tests.servers._process import LOOPBACK, free_port, wait_until

MISSING = (
    "PostgreSQL server binaries (initdb, postgres) not found under /usr/lib/postgresql/*/bin or $PG_BIN: "
    "run `make pgclients` (installs Debian's package `postgresql`)"
)
SUPERUSER = "postgres"


def server_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb and postgres (``$PG_BIN`` first when set)."""
    candidates = [os.environ["PG_BIN"]] if os.environ.get("PG_BIN") else []

    def version(path: str) -> tuple[int, ...]:
        found = re.search(r"/postgresql/([\d.]+)/bin", path)
        return tuple(int(p) for p in found.group(1).split(".")) if found else (0,)

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            return path
    raise RuntimeError(MISSING)


class PostgresServer:
    """One PostgreSQL cluster: trust authentication on 127.0.0.1 and on a unix socket in its temp dir."""

    def __init__(self, *, max_connections: int = 400) -> None:
        self.bin = server_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="audiencehub-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "server.log"
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(SUPERUSER)
            except KeyError as exc:
                raise RuntimeError(f"running as root needs the `postgres` system user: {MISSING}") from exc
            self._run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        self.socket_dir.mkdir()
        self.root.chmod(0o755)
        if self._run_as:
            for path in (self.root, self.socket_dir):
                os.chown(path, self._run_as["user"], self._run_as["group"])
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            self._initdb()
            self.port = self._start(max_connections)
        except BaseException:
            self.stop()
            raise

    def _initdb(self) -> None:
        argv = [str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"]
        argv += ["--locale=C", "--no-sync"]
        done = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, check=False, **self._run_as)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def _start(self, max_connections: int) -> int:
        for attempt in range(3):
            port = free_port()
            argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(port), "-k", str(self.socket_dir)]
            for setting in (
                f"listen_addresses={LOOPBACK}",
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
                f"max_connections={max_connections}",
                "shared_buffers=32MB",
                "dynamic_shared_memory_type=mmap",
            ):
                argv += ["-c", setting]
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(argv, cwd=self.root, stdout=log, stderr=log, **self._run_as)
            proc = self._proc

            def ready(port: int = port, proc: subprocess.Popen[bytes] = proc) -> bool:
                if proc.poll() is not None:
                    return True
                try:
                    with psycopg.connect(self.url("postgres", port=port), connect_timeout=2):
                        return True
                except psycopg.OperationalError:
                    return False

            wait_until(ready, timeout=30, what="PostgreSQL to accept connections", details=self.log)
            if proc.poll() is None:
                return port
            if attempt == 2:
                raise RuntimeError(f"postgres exited with {proc.returncode}\n{self.log()}")
        raise AssertionError("unreachable")

    def url(self, database: str, *, port: int | None = None) -> str:
        """A plain ``postgresql://`` URL, as a user writes DATABASE_URL."""
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{port or self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drops ``name``, ending any session still connected to it."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log(self, limit: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return f"--- postgres output (last {limit} chars) ---\n{text[-limit:]}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnects clients), SIGKILL after 10 s; removes the cluster."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(2)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
