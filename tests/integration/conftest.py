"""Real ``audiencehub serve`` processes: start on a free loopback port, kill -9, restart on the same home.

Every process a test starts is ended by the ``servers`` fixture's finalizer, pass or fail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import EA, LZ, wait_for

# The console script beside this interpreter (what `make run` runs), else the module.
_SCRIPT = Path(sys.executable).with_name("audiencehub")
AUDIENCEHUB = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "audiencehub"]
SERVE = [*AUDIENCEHUB, "serve"]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
JOB_TIMEOUT_S = 60.0
HOLD_ENV = "AUDIENCEHUB_DEBUG_HOLD_AT"
# Settings that a developer's shell may hold and that would leak into the servers under test.
FOREIGN_ENV = ("PORT", "DATABASE_URL")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any audiencehub setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIENCEHUB_") and k not in FOREIGN_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli(*args: str, home: Path, cwd: Path, timeout: float = 120.0, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs ``audiencehub ARGS`` with AUDIENCEHUB_HOME=home and nothing else of ours in its environment."""
    return subprocess.run(
        [*AUDIENCEHUB, *args],
        env=clean_env(AUDIENCEHUB_HOME=str(home), **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Server:
    """One audiencehub home and the server process currently serving it (if any)."""

    def __init__(self, home: Path, logs: Path, env: Mapping[str, str] | None = None) -> None:
        self.home = home
        self.logs = logs
        self.env = dict(env or {})
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._http: httpx.Client | None = None
        home.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)

    # -- process -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the server is not running"
        return self.proc.pid

    def start(self, env: Mapping[str, str] | None = None) -> Server:
        """Starts the server; ``env`` (when given) replaces the extra environment of earlier starts."""
        assert self.proc is None or self.proc.poll() is not None, "the server is already running"
        if env is not None:
            self.env = dict(env)
        self.starts += 1
        full = clean_env(
            AUDIENCEHUB_HOME=str(self.home),
            AUDIENCEHUB_WORKERS="2",
            AUDIENCEHUB_ENGINE_THREADS="2",
            AUDIENCEHUB_JOB_HEARTBEAT_SECONDS="0.5",
            **{"AUDIENCEHUB_PG_PORT": "0", **self.env},  # no PostgreSQL listener unless a test asks for one
        )
        with self.stdout_path().open("wb") as out, self.stderr_path().open("wb") as err:
            self.proc = subprocess.Popen(
                [*SERVE, "--host", "127.0.0.1", "--port", str(self.port)],
                env=full,
                cwd=self.home.parent,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(healthy, timeout=START_TIMEOUT_S, interval=0.1, what=f"{self.url}/health")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    def kill(self) -> None:
        """kill -9, and wait until the process is gone."""
        self._close_http()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        """A graceful stop (SIGTERM), then kill -9 if it takes too long; kill -9 at once if runs may be held."""
        self._close_http()
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.env.get(HOLD_ENV):
            self.kill()  # a held run would keep a graceful stop waiting for its worker
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self, env: Mapping[str, str] | None = None) -> Server:
        self.kill()
        return self.start(env)

    def stdout_path(self, start: int | None = None) -> Path:
        return self.logs / f"stdout-{start or self.starts}.log"

    def stderr_path(self, start: int | None = None) -> Path:
        return self.logs / f"stderr-{start or self.starts}.log"

    def stdout(self, start: int | None = None) -> str:
        return self.stdout_path(start).read_text(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        text = ""
        for path in (self.stdout_path(), self.stderr_path()):
            if path.exists():
                text += f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}\n"
        return text

    # -- HTTP ----------------------------------------------------------------------------------

    @property
    def http(self) -> httpx.Client:
        """A client of the current process (a new one after each restart)."""
        if self._http is None:
            self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(30.0, read=120.0, write=None))
        return self._http

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def credentials(self) -> dict[str, str]:
        data: dict[str, str] = json.loads((self.home / "credentials.json").read_text())
        return data

    def token(self, client_id: str, secret: str) -> str:
        resp = self.http.post(
            "/ims/token/v3",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )
        assert resp.status_code == 200, resp.text
        token: str = resp.json()["access_token"]
        return token

    def headers(self, creds: Mapping[str, str] | None = None, sandbox: str | None = None) -> dict[str, str]:
        creds = creds or self.credentials()
        return {
            "Authorization": f"Bearer {self.token(creds['client_id'], creds['client_secret'])}",
            "x-api-key": creds["client_id"],
            "x-gw-ims-org-id": creds["org_id"],
            "x-sandbox-name": sandbox or creds.get("sandbox", "prod"),
        }


ServerFactory = Callable[..., Server]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerFactory]:
    """``servers(home=None, env=None, start=True)``: a Server; all are stopped when the test ends."""
    made: list[Server] = []

    def make(home: Path | None = None, env: Mapping[str, str] | None = None, *, start: bool = True) -> Server:
        n = len(made) + 1
        server = Server(home or tmp_path / f"home-{n}", tmp_path / f"logs-{n}", env)
        made.append(server)
        return server.start() if start else server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def server(servers: ServerFactory) -> Server:
    return servers()


@pytest.fixture
def creds(server: Server) -> dict[str, str]:
    return server.credentials()


@pytest.fixture
def headers(server: Server, creds: dict[str, str]) -> dict[str, str]:
    return server.headers(creds)


# -- the API as a README user calls it -------------------------------------------------------------

SEED_CSV = (
    b"ppid,list_id,delete,process_consent\n"
    b"alice@example.com,L1,0,yes\n"
    b" BOB@Example.com ,L2,0,no\n"
    b"\tDave@Example.COM\t,L3,0,yes\n"
    b"carol@example.com,L4,1,yes\n"
)
SEED_MEMBERS = ["alice@example.com", "bob@example.com", "dave@example.com"]
SEED_PATH = "activation/sample-source/example.csv"
# The seed's run body, sent as its curl sends it: no Content-Type header.
SEED_RUN_BODY = b'{"dataFilterStartTime": 764245635}'


def upload(http: httpx.Client, headers: Mapping[str, str], path: str, content: bytes) -> dict[str, Any]:
    resp = http.put(f"{LZ}/dlz-user-container/{path}", content=content, headers=headers)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def create_audience(http: httpx.Client, headers: Mapping[str, str], body: dict[str, Any]) -> str:
    resp = http.post(EA + "/", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    op_id = resp.json()["operationId"]

    def done() -> dict[str, Any] | None:
        got = http.get(f"{EA}/operations/{op_id}", headers=headers)
        assert got.status_code == 200, got.text
        op: dict[str, Any] = got.json()
        return op if op["status"] != "PROCESSING" else None

    op = wait_for(done, timeout=JOB_TIMEOUT_S, interval=0.1, what=f"operation {op_id}")
    assert op["status"] == "SUCCESS", op
    audience_id: str = op["audienceId"]
    return audience_id


def start_run(http: httpx.Client, headers: Mapping[str, str], audience_id: str, body: bytes = SEED_RUN_BODY) -> str:
    """POSTs the run body as raw bytes, without a Content-Type header."""
    resp = http.post(f"{EA}/{audience_id}/runs", content=body, headers=headers)
    assert "content-type" not in resp.request.headers
    assert resp.status_code == 200, resp.text
    run_id: str = resp.json()["runId"]
    return run_id


def get_run(http: httpx.Client, headers: Mapping[str, str], audience_id: str, run_id: str) -> dict[str, Any]:
    resp = http.get(f"{EA}/{audience_id}/runs/{run_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    run: dict[str, Any] = resp.json()
    return run


def wait_run(
    http: httpx.Client, headers: Mapping[str, str], audience_id: str, run_id: str, timeout: float = JOB_TIMEOUT_S
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = get_run(http, headers, audience_id, run_id)
        return run if run["status"] != "PROCESSING" else None

    return wait_for(done, timeout=timeout, interval=0.1, what=f"run {run_id}")


def members(http: httpx.Client, headers: Mapping[str, str], audience_id: str) -> dict[str, Any]:
    resp = http.get(f"{EA}/{audience_id}/members", params={"limit": 100}, headers=headers)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def member_ids(body: dict[str, Any]) -> list[str]:
    return sorted(m["identities"][0]["id"] for m in body["members"] if m["status"] == "realized")
