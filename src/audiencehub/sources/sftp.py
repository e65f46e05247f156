"""An SFTP server as a source (asyncssh), with password or key login and host-key checking.

asyncssh is asynchronous and sources are called from worker threads, so each source runs one
event loop in a thread of its own and keeps one SSH connection there, reopened after a failure.
The root is the connection's ``folderPath`` (absolute, or relative to the login folder). Symlinks
that resolve outside it, and names starting with ".", are not part of the tree.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import logging
import posixpath
import socket
import stat as stat_mode
import threading
from collections.abc import Coroutine
from typing import Any, BinaryIO, TypeVar, cast

import asyncssh

from audiencehub.domain.paths import validate_relative_path
from audiencehub.errors import AudiencehubError
from audiencehub.sources.base import FileInfo, PieceStream, Source, SourceError, SourceNotFound, SourceUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
CONNECT_TIMEOUT_S = 15.0
CALL_TIMEOUT_S = 300.0
PIECE = 4 << 20
"""Bytes asked per read, sent as parallel requests of BLOCK bytes; a broken connection costs at most this."""
BLOCK = 256 << 10
LOST = (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection, asyncssh.ConnectionLost, asyncssh.DisconnectError)
"""What asyncssh raises when the connection is gone: transient, the source reconnects."""


def private_key_text(content: str) -> str:
    """``privateKeyContent`` as PEM text: AEP sends it Base64-encoded; pasted PEM works too."""
    if "-----BEGIN" in content:
        return content
    try:
        return base64.b64decode("".join(content.split()), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("auth.params.privateKeyContent: neither a PEM private key nor one encoded in Base64") from exc


MAX_KDF_ROUNDS = 256
"""bcrypt rounds of an encrypted OpenSSH key we agree to run (ssh-keygen's default is 16; 128 take ~1 s here)."""


def kdf_rounds(text: str) -> int:
    """The bcrypt rounds an encrypted OpenSSH-format key asks for; 0 for other keys."""
    if "BEGIN OPENSSH PRIVATE KEY" not in text:
        return 0
    body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
    try:
        raw = base64.b64decode(body)
    except (binascii.Error, ValueError):
        return 0
    magic = b"openssh-key-v1\0"
    if not raw.startswith(magic):
        return 0
    pos, fields = len(magic), []
    for _ in range(3):  # ciphername, kdfname, kdfoptions
        size = int.from_bytes(raw[pos : pos + 4], "big")
        fields.append(raw[pos + 4 : pos + 4 + size])
        pos += 4 + size
    if fields[1] != b"bcrypt" or len(fields[2]) < 8:
        return 0
    salt_size = int.from_bytes(fields[2][:4], "big")
    return int.from_bytes(fields[2][4 + salt_size : 8 + salt_size], "big")


def load_private_key(content: str, passphrase: str | None) -> asyncssh.SSHKey:
    """The client key, or ValueError naming the param at fault (never the key or the passphrase)."""
    text = private_key_text(content)
    rounds = kdf_rounds(text)
    if rounds > MAX_KDF_ROUNDS:
        # Decrypting costs time linear in the rounds: a key asking for millions would hold a worker for hours.
        raise ValueError(
            f"auth.params.privateKeyContent: the key's passphrase protection asks for {rounds} bcrypt rounds, "
            f"more than {MAX_KDF_ROUNDS}; re-encrypt it with `ssh-keygen -p -a 16 -f KEY`"
        )
    try:
        return asyncssh.import_private_key(text, passphrase)
    except (asyncssh.KeyEncryptionError, asyncssh.KeyImportError) as exc:
        encrypted = isinstance(exc, asyncssh.KeyEncryptionError) or "passphrase" in str(exc).lower()
        if not encrypted:
            raise ValueError("auth.params.privateKeyContent: not a private key that SSH accepts") from exc
        what = "a passPhrase is required" if not passphrase else "the passPhrase does not decrypt it"
        raise ValueError(f"auth.params.privateKeyContent: the key is encrypted and {what}") from exc


def load_host_key(line: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(
            "auth.params.knownHostKey: not an OpenSSH public key line (such as 'ssh-ed25519 AAAA...'; "
            "`ssh-keyscan HOST` prints the server's)"
        ) from exc


class SftpSource(Source):
    def __init__(
        self,
        label: str,
        *,
        host: str,
        port: int,
        user: str,
        password: str | None = None,
        private_key: str | None = None,
        passphrase: str | None = None,
        known_host_key: str | None = None,
        folder: str = "",
    ) -> None:
        self.label = label
        self.root_folder = folder or "."
        self._host, self._port, self._user = host, port, user
        self._password = password
        self._client_key = load_private_key(private_key, passphrase) if private_key else None
        self._host_key = load_host_key(known_host_key) if known_host_key else None
        if self._host_key is None:
            log.warning("%s: host-key checking is disabled for this connection (disableHostKeyChecking)", label)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._root: str | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        return self.label

    # -- the loop and the connection ---------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], where: str) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="sftp-source", daemon=True)
                self._thread.start()
            loop = self._loop
        future = asyncio.run_coroutine_threadsafe(self._guard(coro, where), loop)
        return future.result(CALL_TIMEOUT_S + 5)

    async def _guard(self, coro: Coroutine[Any, Any, T], where: str) -> T:
        try:
            return await asyncio.wait_for(coro, CALL_TIMEOUT_S)
        except AudiencehubError:
            raise
        except Exception as exc:
            error = self._error(exc, where)
            if isinstance(error, SourceUnavailable):
                await self._disconnect()
            raise error from exc

    async def _client(self) -> tuple[asyncssh.SFTPClient, str]:
        if self._sftp is None or self._conn is None or self._root is None:
            await self._disconnect()
            self._conn = await asyncssh.connect(
                self._host,
                self._port,
                username=self._user,
                password=self._password,
                client_keys=[self._client_key] if self._client_key else (),
                known_hosts=([self._host_key], [], []) if self._host_key else None,
                preferred_auth="publickey" if self._client_key else "password,keyboard-interactive",
                agent_path=None,
                config=None,
                connect_timeout=CONNECT_TIMEOUT_S,
                login_timeout=CONNECT_TIMEOUT_S,
            )
            self._sftp = await self._conn.start_sftp_client()
            try:
                self._root = await self._sftp.realpath(self.root_folder)
            except asyncssh.SFTPNoSuchFile as exc:
                raise SourceNotFound(
                    f"{self.label}: the connection's folderPath {self.root_folder!r} does not exist"
                ) from exc
        return self._sftp, self._root

    async def _disconnect(self) -> None:
        conn, self._conn, self._sftp, self._root = self._conn, None, None, None
        if conn is not None:
            conn.abort()

    async def _resolve(self, sftp: asyncssh.SFTPClient, root: str, rel: str) -> str:
        """The real path of ``rel`` under the root; one that leads outside it (a symlink) is not found."""
        full = await sftp.realpath(posixpath.join(root, rel) if rel else root)
        if full != root and not full.startswith(root.rstrip("/") + "/"):
            raise SourceNotFound(f"{self.label}: {rel!r} leads outside the connection's folder")
        return full

    @staticmethod
    def _rel(path: str) -> str:
        rel = validate_relative_path(path.strip("/"), allow_empty=True)
        if any(s.startswith(".") for s in rel.split("/") if s):
            raise SourceNotFound(f"path {path!r} names a hidden file or folder")
        return rel

    # -- operations --------------------------------------------------------------------------

    def stat(self, path: str) -> FileInfo:
        rel = self._rel(path)
        return self._run(self._stat(rel), rel)

    async def _stat(self, rel: str) -> FileInfo:
        sftp, root = await self._client()
        full = await self._resolve(sftp, root, rel)
        attrs = await sftp.stat(full)
        if not stat_mode.S_ISREG(attrs.permissions or 0):
            raise SourceNotFound(f"{self.label}: {rel!r} is not a file")
        return _info(rel, attrs)

    def list(self, path: str, *, recursive: bool = False) -> builtins.list[FileInfo]:
        rel = self._rel(path)
        return sorted(self._run(self._list(rel, recursive), rel or "/"), key=lambda f: f.path)

    async def _list(self, rel: str, recursive: bool) -> builtins.list[FileInfo]:
        sftp, root = await self._client()
        folder = await self._resolve(sftp, root, rel)
        if not await sftp.isdir(folder):
            raise SourceNotFound(f"{self.label}: no folder at {rel!r}")
        out: builtins.list[FileInfo] = []
        pending = [(folder, rel)]
        while pending:
            here, here_rel = pending.pop()
            for entry in await sftp.readdir(here):
                name = str(entry.filename)
                if name in (".", "..") or name.startswith("."):
                    continue
                child_rel = posixpath.join(here_rel, name) if here_rel else name
                attrs = entry.attrs
                if attrs.type == asyncssh.FILEXFER_TYPE_SYMLINK:
                    try:
                        target = await self._resolve(sftp, root, child_rel)
                        attrs = await sftp.stat(target)
                    except (SourceNotFound, asyncssh.SFTPError):
                        continue
                    if not stat_mode.S_ISREG(attrs.permissions or 0):
                        continue  # symlinked folders are listed by DLZ's rules: not walked into
                if stat_mode.S_ISDIR(attrs.permissions or 0) or attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                    if recursive:
                        pending.append((posixpath.join(here, name), child_rel))
                    continue
                out.append(_info(child_rel, attrs))
        return out

    def open(self, path: str, *, offset: int = 0, version: str | None = None) -> BinaryIO:
        rel = self._rel(path)
        remote = _File(self, self._run(self._open(rel, version), rel), rel, offset)
        return PieceStream(remote.read_piece, remote.close, PIECE)  # type: ignore[return-value]

    async def _open(self, rel: str, version: str | None) -> asyncssh.SFTPClientFile:
        sftp, root = await self._client()
        full = await self._resolve(sftp, root, rel)
        handle = await sftp.open(full, "rb", block_size=BLOCK)
        if version is not None:
            now = _version(await handle.stat())
            if now != version:
                await handle.close()
                raise SourceError(f"{self.label}: {rel!r}: the file changed while it was being read; start a new run")
        return handle

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._disconnect(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()

    # -- errors ------------------------------------------------------------------------------

    def _error(self, exc: BaseException, rel: str) -> Exception:
        where = f"{self.label}: {rel!r}"
        server = f"{self._user}@{self._host}:{self._port}"
        if isinstance(exc, asyncssh.PermissionDenied):
            return SourceError(f"{self.label}: {server} refused the login: {exc.reason or 'permission denied'}")
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return SourceError(
                f"{self.label}: the host key of {self._host}:{self._port} does not match the connection's "
                f"knownHostKey ({exc.reason}); nothing was sent to it"
            )
        if isinstance(exc, asyncssh.SFTPNoSuchFile):
            return SourceNotFound(f"{where}: no such file or folder; the server said: {exc.reason}")
        if isinstance(exc, asyncssh.SFTPPermissionDenied):
            return SourceError(f"{where}: the server refused access: {exc.reason}")
        lost = (
            asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection | asyncssh.ConnectionLost | asyncssh.DisconnectError
        )
        if isinstance(exc, lost):
            return SourceUnavailable(f"{where}: the connection to {server} was lost ({exc.reason})")
        if isinstance(exc, asyncssh.SFTPError):
            return SourceError(f"{where}: the server said: {exc.reason}")
        if isinstance(exc, socket.gaierror):
            return SourceError(f"{self.label}: the host {self._host!r} cannot be resolved ({exc.strerror})")
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            return SourceUnavailable(f"{where}: {server} did not answer in time")
        if isinstance(exc, OSError):
            return SourceUnavailable(f"{where}: cannot reach {server} ({exc.strerror or type(exc).__name__})")
        return SourceError(f"{where}: {type(exc).__name__}: {exc}")


def _version(attrs: asyncssh.SFTPAttrs) -> str:
    return f"{attrs.size}:{attrs.mtime}"


def _info(rel: str, attrs: asyncssh.SFTPAttrs) -> FileInfo:
    return FileInfo(path=rel, size=int(attrs.size or 0), modified=float(attrs.mtime or 0), version=_version(attrs))


class _File:
    """An open remote file read from a worker thread; its position is kept here (reads are pread)."""

    def __init__(self, source: SftpSource, handle: asyncssh.SFTPClientFile, rel: str, offset: int) -> None:
        self._source = source
        self._handle = handle
        self._rel: str = rel
        self._pos = offset

    def read_piece(self, n: int) -> bytes:
        data = cast(bytes, self._source._run(self._handle.read(n, self._pos), self._rel))
        self._pos += len(data)
        return data

    def close(self) -> None:
        loop = self._source._loop
        if loop is not None and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._handle.close(), loop).result(10)
            except Exception:
                log.debug("closing an SFTP handle failed", exc_info=True)
