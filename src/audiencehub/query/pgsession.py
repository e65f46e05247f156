"""A PostgreSQL connection's SQL side: its :class:`QuerySession`, settings, prepared statements, portals and
transaction state, and what runs for each statement (the wire protocol that feeds it is ``pgwire.py``).

Every blocking call (execute, next batch, encoding) runs on the connection's one worker thread. What is not a user
query (session settings, transactions, cursors, catalog queries) is answered here and in
:mod:`audiencehub.query.pgcatalog`.

Transactions are accepted and tracked for the client's sake (BEGIN/COMMIT/ROLLBACK, the ``T``/``E``
states, cursors closed at commit) but change nothing: the service is read-only but for
``CREATE TABLE AS`` and ``INSERT``, which commit on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from audiencehub.query import pgtypes
from audiencehub.query.errors import QueryError
from audiencehub.query.pgcatalog import Catalog
from audiencehub.query.pgmessages import FLUSH_BYTES, Wire
from audiencehub.query.pgportals import Portal, Portals, Prepared, command_tag, next_rows, skip
from audiencehub.query.pgstatements import GUCS, ServerSettings, Statement, classify
from audiencehub.query.session import Column, QuerySession, Result

T = TypeVar("T")

ROWS_PER_CHUNK = 32768  # rows encoded and written at a time


class PgSession:
    """A connection's statements, portals and transaction state; results go out on ``wire``."""

    def __init__(self, wire: Wire, pool: ThreadPoolExecutor) -> None:
        self.wire, self.pool = wire, pool
        self.session: QuerySession | None = None
        self.catalog: Catalog | None = None
        self.settings: ServerSettings | None = None
        self.statements: dict[str, Prepared] = {}
        self.portals = Portals(pool)
        self.status = b"I"  # I idle, T in a transaction block, E in a failed one
        self.busy = False
        self.cancelled = False

    def cancel(self) -> None:
        """A CancelRequest with this connection's key: interrupts the statement that runs now, if any."""
        if self.busy and self.session is not None:
            self.cancelled = True
            session = self.session
            asyncio.get_running_loop().run_in_executor(None, session.cancel)

    async def _call(self, fn: Callable[[], T]) -> T:
        """Runs a blocking call on this connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    # -- statements --

    async def _prepare(self, sql: str) -> Prepared:
        statement = classify(sql)
        prepared = Prepared(sql, statement)
        query = statement.query if statement.kind == "declare" else sql if statement.kind == "query" else None
        if query is not None:
            catalog = self._catalog()
            prepared.catalog = await self._call(lambda: catalog.recognize(query))
        return prepared

    async def _parameter_count(self, prepared: Prepared) -> int:
        if prepared.catalog is not None:
            return prepared.catalog.parameters
        query = prepared.sql if prepared.statement.kind == "query" else prepared.statement.query
        if query is None or prepared.statement.kind not in ("query", "declare"):
            return 0
        session = self._session()
        return await self._call(lambda: session.parameter_count(query))

    async def _statement_columns(self, prepared: Prepared) -> list[Column] | None:
        st = prepared.statement
        if st.kind == "show":
            assert self.settings is not None
            return self.settings.show(st.name).columns
        if st.kind == "fetch" and st.name is not None and st.name in self.portals:
            return await self._columns_of_cursor(self.portals.get(st.name))
        if st.kind != "query":
            return None
        if prepared.catalog is not None:
            catalog, query = self.catalog, prepared.catalog
            assert catalog is not None
            nulls = [None] * query.parameters
            return (await self._call(lambda: catalog.run(query, nulls))).columns
        session, sql = self._session(), prepared.sql
        self.portals.leave_session_results()
        return await self._call(lambda: session.describe(sql))

    async def _columns_of_cursor(self, cursor: Portal) -> list[Column] | None:
        await self._start(cursor)
        return None if cursor.result is None else cursor.result.columns

    async def _start(self, portal: Portal) -> None:
        """Runs a portal's query, if it has one and has not yet: its result is then read by Execute."""
        if portal.result is not None or portal.exhausted:
            return
        st = portal.prepared.statement
        if st.kind == "show":
            assert self.settings is not None
            portal.result = self.settings.show(st.name)
        elif st.kind == "fetch":
            columns = await self._columns_of_cursor(self.portals.cursor(st.name))
            portal.result = Result(tag="FETCH", columns=columns)
        elif st.kind == "query":
            portal.result = await self._execute_query(portal.prepared, portal.prepared.sql, portal.params)
            portal.from_session = portal.prepared.catalog is None
        if portal.result is not None and portal.result.columns is not None:
            portal.types = [pgtypes.pg_type(c.type) for c in portal.result.columns]
            portal.formats = pgtypes.result_formats(portal.format_codes, len(portal.types))
            pgtypes.check_formats(portal.types, portal.formats)

    async def _execute_query(self, prepared: Prepared, sql: str, params: list[Any]) -> Result:
        self._check_not_aborted()
        if prepared.catalog is not None:
            catalog, query = self.catalog, prepared.catalog
            assert catalog is not None
            return await self._call(lambda: catalog.run(query, params))
        session = self._session()
        self.portals.leave_session_results()
        return await self._call(lambda: session.execute(sql, params))

    @contextlib.asynccontextmanager
    async def _statement(self) -> AsyncIterator[None]:
        """While a statement runs (executes, streams), a CancelRequest interrupts it."""
        if self.busy:
            yield
            return
        self.busy, self.cancelled = True, False
        try:
            yield
        finally:
            self.busy = False

    async def _run(self, portal: Portal, limit: int, *, describe: bool) -> None:
        """Executes a portal (Execute, or one statement of a simple Query): rows, then the completion."""
        st = portal.prepared.statement
        if st.kind not in ("commit", "rollback", "savepoint", "empty"):
            self._check_not_aborted()
        if st.kind == "empty":
            self.wire.send(b"I", b"")
        elif st.kind in ("begin", "commit", "rollback", "savepoint"):
            self._transaction(st)
        elif st.kind in ("set", "reset"):
            self._set(st)
        elif st.kind == "declare":
            await self._declare(portal)
        elif st.kind in ("fetch", "move"):
            await self._fetch(portal, st, describe=describe)
        elif st.kind == "close":
            self._close_cursor(st.name)
        elif st.kind == "discard":
            self._discard(portal)
        elif st.kind == "deallocate":
            if st.name is None:
                self.statements = {k: v for k, v in self.statements.items() if not k}
            elif self.statements.pop(st.name, None) is None:
                raise QueryError(f'prepared statement "{st.name}" does not exist', "26000")
            self.wire.complete(st.tag)
        else:
            await self._start(portal)
            result = portal.result
            assert result is not None
            if result.columns is None:
                self.wire.complete(command_tag(result.tag, result.rowcount or 0))
                return
            if describe:
                self.wire.row_description(result.columns, portal.formats)
            sent, done = await self._stream(portal, limit or None)
            if done:
                self.wire.complete(command_tag(result.tag, sent if result.rowcount is None else result.rowcount))
            else:
                self.wire.send(b"s", b"")  # PortalSuspended: Execute again for more

    async def _stream(self, portal: Portal, limit: int | None) -> tuple[int, bool]:
        """Writes up to ``limit`` rows of a started portal; (rows written, whether the result is done)."""
        sent = 0
        while limit is None or sent < limit:
            want = ROWS_PER_CHUNK if limit is None else min(ROWS_PER_CHUNK, limit - sent)
            if self.cancelled:
                raise QueryError("canceling statement due to user request", "57014")
            rows, count = await self._call(lambda w=want: next_rows(portal, w))  # type: ignore[misc]
            if count == 0:
                return sent, True
            self.wire.out += rows
            sent += count
            if len(self.wire.out) >= FLUSH_BYTES:
                await self.wire.flush()
        return sent, portal.exhausted and portal.pending is None

    def _transaction(self, st: Statement) -> None:
        if st.kind == "begin":
            if self.status != b"I":
                self.wire.notice("there is already a transaction in progress", "25001")
            self.status = b"T" if self.status == b"I" else self.status
            self.wire.complete("BEGIN")
            return
        if st.kind == "savepoint":
            if self.status == b"I":
                raise QueryError(f"{st.tag} can only be used in transaction blocks", "25P01")
            if st.tag == "ROLLBACK":  # ROLLBACK TO SAVEPOINT leaves a failed block usable again
                self.status = b"T"
            self.wire.complete(st.tag)
            return
        if self.status == b"I":
            self.wire.notice("there is no transaction in progress", "25P01")
        tag = "ROLLBACK" if self.status == b"E" else st.tag
        self.status = b"I"
        self.portals.close_where(lambda p: not p.hold)
        self.wire.complete(tag)

    def _set(self, st: Statement) -> None:
        settings = self.settings
        assert settings is not None
        names = [st.name] if st.name is not None or st.kind == "set" else list(_settable())
        for name in names:
            if name is None:
                continue  # SET TRANSACTION ...: nothing to change
            report = settings.set(name, st.value if st.kind == "set" else None)
            if report is not None:
                self.wire.parameter_status(*report)
        self.wire.complete(st.tag)

    async def _declare(self, portal: Portal) -> None:
        st = portal.prepared.statement
        assert st.name is not None and st.query is not None
        if self.status == b"I" and not st.hold:
            raise QueryError("DECLARE CURSOR can only be used in transaction blocks", "25P01")
        if st.name in self.portals:
            raise QueryError(f'cursor "{st.name}" already exists', "42P03")
        result = await self._execute_query(portal.prepared, st.query, portal.params)
        cursor = Portal(st.name, portal.prepared, portal.params, [1 if st.binary else 0], result=result)
        cursor.hold, cursor.cursor, cursor.from_session = st.hold, True, portal.prepared.catalog is None
        if result.columns is not None:
            cursor.types = [pgtypes.pg_type(c.type) for c in result.columns]
            cursor.formats = pgtypes.result_formats(cursor.format_codes, len(cursor.types))
        self.portals.add(cursor)
        self.wire.complete("DECLARE CURSOR")

    async def _fetch(self, portal: Portal, st: Statement, *, describe: bool) -> None:
        cursor = self.portals.cursor(st.name)
        result = cursor.result
        assert result is not None
        if result.columns is None:
            raise QueryError(f'cursor "{st.name}" does not return rows', "42809")
        # A FETCH sent through Bind/Execute uses the formats its own Bind asked for.
        formats = cursor.formats if describe else pgtypes.result_formats(portal.format_codes, len(cursor.types))
        pgtypes.check_formats(cursor.types, formats)
        if st.kind == "move":
            moved = await self._call(lambda: skip(cursor, st.count))
            self.wire.complete(f"MOVE {moved}")
            return
        if describe:
            self.wire.row_description(result.columns, formats)
        saved, cursor.formats = cursor.formats, formats
        try:
            sent, _ = await self._stream(cursor, st.count)
        finally:
            cursor.formats = saved
        self.wire.complete(f"FETCH {sent}")

    def _close_cursor(self, name: str | None) -> None:
        if name is None:
            self.portals.close_where(lambda p: p.cursor)
        else:
            self.portals.remove(self.portals.cursor(name).name)
        self.wire.complete("CLOSE CURSOR")

    def _discard(self, portal: Portal) -> None:
        self.portals.close_where(lambda p: p is not portal)
        self.statements = {}
        assert self.settings is not None
        for name in _settable():
            self.settings.set(name, None)
        self.wire.complete(portal.prepared.statement.tag)

    # -- state --

    def _end_implicit_transaction(self) -> None:
        if self.status == b"I":  # outside a block, each Sync or Query ends an implicit transaction: its portals go
            self.portals.close_where(lambda p: not p.hold)

    def _session(self) -> QuerySession:
        assert self.session is not None
        return self.session

    def _catalog(self) -> Catalog:
        assert self.catalog is not None
        return self.catalog

    def _check_not_aborted(self) -> None:
        if self.status == b"E":
            raise QueryError("current transaction is aborted, commands ignored until end of transaction block", "25P02")

    # -- messages out --

    def _ready(self) -> None:
        self.wire.send(b"Z", self.status)

    def _failed(self, exc: QueryError) -> None:
        self.wire.error(exc)
        if self.status == b"T":
            self.status = b"E"


def _settable() -> list[str]:
    return [k for k, g in GUCS.items() if g.settable]
