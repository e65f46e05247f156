"""Real processes on one home: ``audiencehub serve`` with no job threads and ``audiencehub worker`` processes,
on SQLite (the home's metadata.db) and on a real PostgreSQL server. Every process a test starts is ended by the
fixture's finalizer, pass or fail."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore
from tests.conftest import wait_for
from tests.integration.conftest import AUDIENCEHUB, START_TIMEOUT_S, STOP_TIMEOUT_S, Server, clean_env

STALE_AFTER_S = 5.0  # well above the 0.2 s heartbeat, even on a loaded machine
# What each worker process runs with: quick heartbeats and polls, a short stale period, one engine thread each.
WORKER_ENV = {
    "AUDIENCEHUB_WORKERS": "2",
    "AUDIENCEHUB_ENGINE_THREADS": "1",
    "AUDIENCEHUB_JOB_HEARTBEAT_SECONDS": "0.2",
    "AUDIENCEHUB_JOB_STALE_AFTER_SECONDS": str(STALE_AFTER_S),
    "AUDIENCEHUB_JOB_POLL_SECONDS": "0.1",
    "AUDIENCEHUB_WORKER_GRACE_SECONDS": "5",
    "AUDIENCEHUB_SEGMENT_SCHEDULE": "off",
    "AUDIENCEHUB_PG_PORT": "0",
}


class Worker:
    """One ``audiencehub worker`` process."""

    def __init__(self, home: Path, log: Path, env: dict[str, str]) -> None:
        self.home, self.log_path = home, log
        full = clean_env(AUDIENCEHUB_HOME=str(home), **{**WORKER_ENV, **env})
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*AUDIENCEHUB, "worker"],
                env=full,
                cwd=home.parent,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        found = wait_for(self._started, timeout=START_TIMEOUT_S, interval=0.05, what=f"worker log {log}")
        self.worker_id: str = found.group(1)

    def _started(self) -> re.Match[str] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the worker exited with {self.proc.returncode}:\n{self.log()}")
        return re.search(r"job worker (\S+) started with", self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def claims(self) -> list[str]:
        """The job ids this worker's log says it claimed."""
        return re.findall(r"job (\S+) \(\S+ \S+\) claimed by", self.log())

    def cpu_seconds(self) -> float:
        """The CPU time the process has used (user + system, from /proc): it grows fast while a query runs."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM and wait for the exit; kill -9 if it takes too long. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


class ApiServer(Server):
    """``audiencehub serve`` with the environment given (integration's Server fixes AUDIENCEHUB_WORKERS to 2)."""

    def start(self, env: Mapping[str, str] | None = None) -> Server:
        assert self.proc is None or self.proc.poll() is not None, "the server is already running"
        self.starts += 1
        full = clean_env(AUDIENCEHUB_HOME=str(self.home), **{**WORKER_ENV, **self.env})
        with self.stdout_path().open("wb") as out, self.stderr_path().open("wb") as err:
            self.proc = subprocess.Popen(
                [*AUDIENCEHUB, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=full,
                cwd=self.home.parent,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self._wait_healthy()
        return self


class Cluster:
    """A server with AUDIENCEHUB_WORKERS=0 and the worker processes started with :meth:`worker`, on one home."""

    def __init__(self, tmp_path: Path, database_url: str | None) -> None:
        self.home = tmp_path / "home"
        self.tmp_path = tmp_path
        self.env = {"AUDIENCEHUB_DATABASE_URL": database_url} if database_url else {}
        self.url = database_url or f"sqlite:///{self.home / 'metadata.db'}"
        self.server = ApiServer(self.home, tmp_path / "server-logs", {**self.env, "AUDIENCEHUB_WORKERS": "0"})
        self.workers: list[Worker] = []
        self._db: MetadataStore | None = None

    def worker(self, **env: str) -> Worker:
        made = Worker(self.home, self.tmp_path / f"worker-{len(self.workers) + 1}.log", {**self.env, **env})
        self.workers.append(made)
        return made

    @property
    def db(self) -> MetadataStore:
        """The metadata store the processes share, read directly by the test."""
        if self._db is None:
            self._db = MetadataStore(self.url)
        return self._db

    def jobs(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(select(t.jobs).order_by(t.jobs.c.created_at)).mappings()]

    def job(self, job_id: str) -> dict[str, Any]:
        (found,) = [j for j in self.jobs() if j["id"] == job_id]
        return found

    def close(self) -> None:
        for made in self.workers:
            made.kill()
        self.server.stop()
        if self._db is not None:
            self._db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    made = Cluster(tmp_path, url)
    try:
        made.server.start()
        yield made
    finally:
        made.close()
