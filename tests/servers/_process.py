"""Shared plumbing: free loopback ports, polling with a deadline, and server subprocesses with a log file."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 20.0


def free_port() -> int:
    """A loopback port free right now (another process may take it before the caller binds it)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_until(probe: Callable[[], bool], *, timeout: float, what: str, details: Callable[[], str] = str) -> None:
    """Polls ``probe`` until it is True; after ``timeout`` s raises RuntimeError with ``what`` and ``details()``."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}\n{details()}")
        time.sleep(0.05)


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200."""
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


class ServerExited(RuntimeError):
    """The server process ended before it became ready."""


class ServerProcess:
    """A server subprocess; its stdout and stderr go to a log file (an unread pipe would fill up and block it)."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self._dir = tempfile.TemporaryDirectory(prefix=f"{name}-")
        self.log_path = Path(self._dir.name) / "server.log"
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                list(argv), env=dict(env) if env is not None else None, cwd=self._dir.name, stdout=log, stderr=log
            )

    @classmethod
    def launch(
        cls,
        name: str,
        argv_for_port: Callable[[int], Sequence[str]],
        ready_for_port: Callable[[int], bool],
        env: Mapping[str, str] | None = None,
        attempts: int = 3,
    ) -> tuple[ServerProcess, int]:
        """Starts the server on a free port and waits until ``ready_for_port(port)``.

        Retries on another port when the process exits early (another process took the port in between).
        """
        for attempt in range(1, attempts + 1):
            port = free_port()
            server = cls(name, argv_for_port(port), env)
            try:
                server.wait_ready(functools.partial(ready_for_port, port))
                return server, port
            except ServerExited:
                server.stop()
                if attempt == attempts:
                    raise
            except BaseException:
                server.stop()
                raise
        raise AssertionError("unreachable")

    def wait_ready(self, probe: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
        def ready() -> bool:
            if self._proc.poll() is not None:
                raise ServerExited(f"{self.name} exited with {self._proc.returncode} before it was ready\n{self.log()}")
            return probe()

        wait_until(ready, timeout=timeout, what=f"{self.name} to be ready", details=self.log)

    def log(self, limit: int = 4000) -> str:
        """The last ``limit`` characters the server wrote."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return f"--- {self.name} output (last {limit} chars) ---\n{text[-limit:]}"

    def stop(self) -> None:
        """Terminates the process (kills it after 10 s) and removes its log folder."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._dir.cleanup()


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without AWS/GCP settings that could leak in, plus ``extra``."""
    drop = ("AWS_", "GOOGLE_", "STORAGE_EMULATOR_HOST", "BOTO_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env
