"""An SFTP server (asyncssh) on 127.0.0.1 in this process, on its own event loop in a daemon thread.

It serves :attr:`SftpServer.root` chrooted, to user ``alice`` with password ``s3cret-pass`` or one of two client
keys (:attr:`client_key_pem`, and :attr:`client_key_pem_encrypted` with :attr:`client_key_passphrase`), and rejects
everything else. No shell, exec or port forwarding: only the ``sftp`` subsystem.

The encrypted key is PKCS#8 PEM (``-----BEGIN ENCRYPTED PRIVATE KEY-----``), not the OpenSSH format: asyncssh
needs the optional ``bcrypt`` package to read or write passphrase-protected OpenSSH keys, and it is not installed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import asyncssh

from tests.servers._process import LOOPBACK, READY_TIMEOUT


class _Auth(asyncssh.SSHServer):
    """Password or public-key auth for one user; keeps track of connections so the server can close them."""

    def __init__(self, server: SftpServer) -> None:
        self._server = server
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._server._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # always require authentication

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._server.user and password == self._server.password

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._server.user and key.public_data in self._server._authorized

    def kbdint_auth_supported(self) -> bool:
        return False


class SftpServer:
    """An asyncssh SFTP server serving ``root`` (a new temporary folder when none is given) on a free port."""

    host = LOOPBACK
    user = "alice"
    password = "s3cret-pass"
    client_key_passphrase = "key-pass-phrase"

    def __init__(self, root: Path | None = None) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="sftp-root-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)

        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key_openssh = self._host_key.export_public_key("openssh").decode().strip()
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_pem = client_key.export_private_key("openssh").decode()
        encrypted_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_pem_encrypted = encrypted_key.export_private_key(
            "pkcs8-pem", passphrase=self.client_key_passphrase
        ).decode()
        self._authorized = {client_key.public_data, encrypted_key.public_data}
        self._connections: set[Any] = set()

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sftp-server", daemon=True)
        self._thread.start()
        try:
            self._acceptor = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(READY_TIMEOUT)
        except BaseException:
            self._stop_loop()
            raise
        self.port: int = self._acceptor.get_port()

    @property
    def known_hosts_line(self) -> str:
        """A known_hosts line pinning the host key for this host and port."""
        return f"[{self.host}]:{self.port} {self.host_key_openssh}"

    async def _listen(self) -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            self.host,
            0,
            server_host_keys=[self._host_key],
            server_factory=lambda: _Auth(self),
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=os.fsencode(self.root)),
            allow_scp=False,
        )

    async def _close(self) -> None:
        self._acceptor.close()
        await self._acceptor.wait_closed()
        for conn in list(self._connections):
            conn.close()
        for conn in list(self._connections):
            await conn.wait_closed()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def stop(self) -> None:
        """Closes the listener and every open connection, stops the loop, removes a root it created."""
        if self._loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        finally:
            self._stop_loop()
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)

    def make_folder(self, name: str | None = None) -> tuple[str, Path]:
        """A new folder under root: its name relative to root (as SFTP clients see it under the chroot) and path."""
        name = name or f"t-{uuid.uuid4().hex[:12]}"
        path = self.root / name
        path.mkdir(parents=True)
        return name, path
