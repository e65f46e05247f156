"""The Query Service's PostgreSQL front end: protocol v3 (simple and extended query) on asyncio.

One task per client connection; each connection owns one :class:`QuerySession` and one worker thread
that makes every blocking call on it (open, execute, next batch, encoding), so a slow query never
blocks the event loop or another client. Results stream batch by batch, each written only when the
socket has drained the one before. This module is the protocol: startup (``pgstartup.py``), the message loop,
simple and extended query; what each statement runs, and what is not a user query (session settings,
transactions, cursors, catalog queries), is answered in ``pgsession.py`` and :mod:`audiencehub.query.pgcatalog`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from audiencehub.query import pgtypes
from audiencehub.query.errors import QueryError
from audiencehub.query.pgcatalog import Catalog
from audiencehub.query.pgmessages import FLUSH_BYTES, ProtocolError, Wire, read_cstr
from audiencehub.query.pgportals import Portal
from audiencehub.query.pgsession import PgSession
from audiencehub.query.pgstartup import handshake
from audiencehub.query.pgstatements import ServerSettings, split
from audiencehub.query.session import QueryBackend, QuerySession

log = logging.getLogger(__name__)

_pids = itertools.count(1000)


class PgWireServer:
    """Serves the PostgreSQL protocol on ``host:port`` (port 0: any free port, then read :attr:`port`)."""

    def __init__(self, backend: QueryBackend, host: str, port: int) -> None:
        self.backend, self.host, self.port = backend, host, port
        self._server: asyncio.Server | None = None
        self._connections: dict[int, Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("PostgreSQL protocol (Query Service) on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._connections.values()):
            conn.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = Connection(self, reader, writer)
        try:
            await conn.run()
        finally:
            self._connections.pop(conn.pid, None)
            self._tasks.discard(task)

    def register(self, conn: Connection) -> None:
        self._connections[conn.pid] = conn

    def cancel(self, pid: int, key: int) -> None:
        conn = self._connections.get(pid)
        if conn is not None and conn.secret == key:
            conn.cancel()


class Connection(PgSession):
    """One client: the startup handshake, then messages until Terminate or end of stream."""

    def __init__(self, server: PgWireServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.pid = next(_pids)
        self.secret = secrets.randbits(31)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pgwire-{self.pid}")
        super().__init__(Wire(reader, writer), pool)
        self.skip_to_sync = False

    # -- lifecycle --

    async def run(self) -> None:
        try:
            if await self._startup():
                self.server.register(self)
                await self._serve()
        except ProtocolError as exc:
            self.wire.error(QueryError(str(exc), "08P01"), fatal=True)
            with contextlib.suppress(ConnectionError):
                await self.wire.flush()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("pgwire connection %d failed", self.pid)
        finally:
            await self._close()

    def abort(self) -> None:
        self.cancel()
        self.wire.writer.close()

    async def _close(self) -> None:
        self.portals.close_where(lambda p: True)
        try:
            if self.session is not None:
                session, catalog = self.session, self.catalog
                await self._call(lambda: _close_session(session, catalog))
        except Exception:
            log.exception("closing pgwire session %d", self.pid)
        self.pool.shutdown(wait=False)
        self.wire.writer.close()
        with contextlib.suppress(Exception):
            await self.wire.writer.wait_closed()

    # -- startup --

    async def _startup(self) -> bool:
        login = await handshake(self.wire, self.server.cancel)
        if login is None:
            return False
        try:
            session = await self._call(
                lambda: self.server.backend.open(user=login.user, password=login.password, database=login.database)
            )
        except QueryError as exc:
            self.wire.error(exc, fatal=True)
            await self.wire.flush()
            return False
        self.session = session
        self.settings = ServerSettings(login.user)
        self.settings.apply_startup(login.settings)
        self.catalog = Catalog(session, user=login.user, database=login.database, pid=self.pid, settings=self.settings)
        self.wire.send(b"R", struct.pack("!i", 0))
        for name, value in self.settings.reported():
            self.wire.parameter_status(name, value)
        self.wire.send(b"K", struct.pack("!ii", self.pid, self.secret))
        self._ready()
        await self.wire.flush()
        return True

    # -- message loop --

    async def _serve(self) -> None:
        handlers: dict[bytes, Callable[[bytes], Any]] = {
            b"Q": self._query,
            b"P": self._parse,
            b"B": self._bind,
            b"D": self._describe,
            b"E": self._execute,
            b"C": self._close_message,
            b"H": self._flush_message,
            b"S": self._sync,
        }
        while True:
            kind, payload = await self.wire.read()
            if kind == b"X":
                return
            if kind not in handlers:
                raise ProtocolError(f"invalid frontend message type {kind!r}")
            if self.skip_to_sync and kind not in (b"S", b"Q"):
                continue
            try:
                await handlers[kind](payload)
            except Exception as exc:
                if not isinstance(exc, QueryError):
                    log.exception("pgwire connection %d: %r failed", self.pid, kind)
                    exc = QueryError(f"internal error ({type(exc).__name__}); the server log has the details", "XX000")
                self._failed(exc)
                if kind == b"Q":
                    self._end_implicit_transaction()
                    self._ready()
                else:
                    self.skip_to_sync = True  # the extended protocol ignores all until Sync after an error
            if len(self.wire.out) >= FLUSH_BYTES:
                await self.wire.flush()

    # -- simple query --

    async def _query(self, payload: bytes) -> None:
        sql = payload.rstrip(b"\0").decode()
        statements = split(sql)
        if not statements:
            self.wire.send(b"I", b"")  # EmptyQueryResponse
        for text in statements:
            try:
                prepared = await self._prepare(text)
                portal = Portal("", prepared, [], [])
                self.portals.add(portal)
                async with self._statement():
                    await self._run(portal, 0, describe=True)
            except QueryError as exc:
                self._failed(exc)
                break
        self._end_implicit_transaction()
        self._ready()
        await self.wire.flush()

    # -- extended query --

    async def _parse(self, payload: bytes) -> None:
        name, at = read_cstr(payload, 0)
        sql, at = read_cstr(payload, at)
        (count,) = struct.unpack_from("!h", payload, at)
        types = list(struct.unpack_from(f"!{count}i", payload, at + 2))
        if len(split(sql)) > 1:
            raise QueryError("cannot insert multiple commands into a prepared statement", "42601")
        if name and name in self.statements:
            raise QueryError(f'prepared statement "{name}" already exists', "42P05")
        prepared = await self._prepare(sql)
        count = await self._parameter_count(prepared)
        prepared.param_types = (types + [0] * count)[: max(count, len(types))]
        self.statements[name] = prepared
        self.wire.send(b"1", b"")  # ParseComplete

    async def _bind(self, payload: bytes) -> None:
        portal_name, at = read_cstr(payload, 0)
        name, at = read_cstr(payload, at)
        (n,) = struct.unpack_from("!h", payload, at)
        param_formats = list(struct.unpack_from(f"!{n}h", payload, at + 2))
        at += 2 + 2 * n
        (n,) = struct.unpack_from("!h", payload, at)
        at += 2
        raw: list[bytes | None] = []
        for _ in range(n):
            (size,) = struct.unpack_from("!i", payload, at)
            at += 4
            raw.append(None if size < 0 else payload[at : at + size])
            at += max(size, 0)
        (count,) = struct.unpack_from("!h", payload, at)
        result_codes = list(struct.unpack_from(f"!{count}h", payload, at + 2))
        prepared = self.statements.get(name)
        if prepared is None:
            raise QueryError(f'prepared statement "{name}" does not exist', "26000")
        if len(raw) != len(prepared.param_types):
            raise QueryError(
                f'bind message supplies {len(raw)} parameters, but prepared statement "{name}" requires '
                f"{len(prepared.param_types)}",
                "08P01",
            )
        if len(param_formats) not in (0, 1, len(raw)):
            raise QueryError(
                f"bind message has {len(param_formats)} parameter formats but {len(raw)} parameters", "08P01"
            )
        fmts = param_formats * len(raw) if len(param_formats) == 1 else param_formats or [0] * len(raw)
        params = [pgtypes.decode_param(v, t, f == 1) for v, t, f in zip(raw, prepared.param_types, fmts, strict=True)]
        if portal_name and portal_name in self.portals:
            raise QueryError(f'portal "{portal_name}" already exists', "42P03")
        self.portals.add(Portal(portal_name, prepared, params, result_codes))
        self.wire.send(b"2", b"")  # BindComplete

    async def _describe(self, payload: bytes) -> None:
        kind, name = payload[:1], read_cstr(payload, 1)[0]
        if kind == b"S":
            prepared = self.statements.get(name)
            if prepared is None:
                raise QueryError(f'prepared statement "{name}" does not exist', "26000")
            types = [t or pgtypes.TEXT.oid for t in prepared.param_types]
            self.wire.send(b"t", struct.pack(f"!h{len(types)}i", len(types), *types))
            columns = await self._statement_columns(prepared)
            self.wire.row_description(columns, [0] * len(columns)) if columns is not None else self.wire.send(b"n", b"")
            return
        portal = self.portals.get(name)
        async with self._statement():
            await self._start(portal)
        if portal.result is not None and portal.result.columns is not None:
            self.wire.row_description(portal.result.columns, portal.formats)
        else:
            self.wire.send(b"n", b"")  # NoData

    async def _execute(self, payload: bytes) -> None:
        name, at = read_cstr(payload, 0)
        (limit,) = struct.unpack_from("!i", payload, at)
        portal = self.portals.get(name)
        async with self._statement():
            await self._run(portal, max(limit, 0), describe=False)

    async def _close_message(self, payload: bytes) -> None:
        kind, name = payload[:1], read_cstr(payload, 1)[0]
        if kind == b"S":
            self.statements.pop(name, None)
        else:
            self.portals.remove(name)
        self.wire.send(b"3", b"")  # CloseComplete

    async def _flush_message(self, payload: bytes) -> None:
        await self.wire.flush()

    async def _sync(self, payload: bytes) -> None:
        self.skip_to_sync = False
        self._end_implicit_transaction()
        self._ready()
        await self.wire.flush()


def _close_session(session: QuerySession, catalog: Catalog | None) -> None:
    if catalog is not None:
        catalog.close()
    session.close()
