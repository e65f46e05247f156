"""A PostgreSQL connection's statements and portals, and the work on them that runs on the connection's
thread: reading a result's next rows as DataRow messages, skipping rows, closing results.

Cursors (DECLARE) are portals too, in the same namespace, as in PostgreSQL. A portal's result is closed on the
connection's thread, in order with the statements that follow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from audiencehub.query import pgtypes
from audiencehub.query.errors import QueryError
from audiencehub.query.pgcatalog import CatalogQuery
from audiencehub.query.pgstatements import Statement
from audiencehub.query.session import Result


@dataclass
class Prepared:
    """A parsed statement (Parse, or one statement of a simple Query)."""

    sql: str
    statement: Statement
    catalog: CatalogQuery | None = None
    param_types: list[int] = field(default_factory=list)


@dataclass
class Portal:
    """A statement with its parameters bound, and once started, its result being read (a cursor too)."""

    name: str
    prepared: Prepared
    params: list[Any]
    format_codes: list[int]
    result: Result | None = None
    types: list[pgtypes.PgType] = field(default_factory=list)
    formats: list[int] = field(default_factory=list)
    pending: pa.RecordBatch | None = None
    exhausted: bool = False
    hold: bool = False  # survives the end of the transaction (DECLARE ... WITH HOLD)
    cursor: bool = False
    from_session: bool = False  # its rows come from the QuerySession, which reads one result at a time
    stale: str | None = None  # why its rows can no longer be read


class Portals:
    """A connection's portals and cursors by name."""

    def __init__(self, thread: Executor) -> None:
        self._by_name: dict[str, Portal] = {}
        self._thread = thread

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def get(self, name: str) -> Portal:
        portal = self._by_name.get(name)
        if portal is None:
            raise QueryError(f'portal "{name}" does not exist', "34000")
        return portal

    def cursor(self, name: str | None) -> Portal:
        portal = self._by_name.get(name or "")
        if portal is None or not portal.cursor:
            raise QueryError(f'cursor "{name}" does not exist', "34000")
        return portal

    def add(self, portal: Portal) -> None:
        """Adds a portal; one of the same name (the unnamed portal) is closed."""
        old = self._by_name.get(portal.name)
        self._by_name[portal.name] = portal
        if old is not None:
            self._close(old)

    def remove(self, name: str) -> None:
        if name in self._by_name:
            self._close(self._by_name.pop(name))

    def close_where(self, drop: Callable[[Portal], bool]) -> None:
        for name in [n for n, p in self._by_name.items() if drop(p)]:
            self.remove(name)

    def leave_session_results(self) -> None:
        """The session reads one result at a time: a new statement ends the unread rest of the others."""
        for portal in self._by_name.values():
            if portal.from_session and portal.result is not None and not portal.exhausted and portal.stale is None:
                kind = "cursor" if portal.cursor else "portal"
                portal.stale = (
                    f'{kind} "{portal.name}" can no longer be read: another statement ran on this connection, which '
                    "reads one result at a time"
                )
                self._close(portal)

    def _close(self, portal: Portal) -> None:
        if portal.result is not None:
            self._thread.submit(close_result, portal.result)


def next_rows(portal: Portal, want: int) -> tuple[bytes | memoryview, int]:
    """The next DataRow messages of a portal, at most ``want`` rows; (b"", 0) when it has no more."""
    batch = _take(portal, want)
    return (b"", 0) if batch is None else (pgtypes.data_rows(batch, portal.types, portal.formats), batch.num_rows)


def skip(portal: Portal, count: int | None) -> int:
    """Skips ``count`` rows (None: all) of a portal (MOVE); how many there were."""
    moved = 0
    while count is None or moved < count:
        batch = _take(portal, None if count is None else count - moved)
        if batch is None:
            break
        moved += batch.num_rows
    return moved


def _take(portal: Portal, want: int | None) -> pa.RecordBatch | None:
    if portal.stale is not None:
        raise QueryError(portal.stale, "55000")
    batch, portal.pending = portal.pending, None
    while batch is None or batch.num_rows == 0:
        if portal.exhausted or portal.result is None:
            portal.exhausted = True
            return None
        batch = next(portal.result.batches, None)
        if batch is None:
            portal.exhausted = True
            return None
    if want is not None and batch.num_rows > want:
        portal.pending = batch.slice(want)
        batch = batch.slice(0, want)
    return batch


def close_result(result: Result) -> None:
    close = getattr(result.batches, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


def command_tag(verb: str, rows: int) -> str:
    if verb == "INSERT":
        return f"INSERT 0 {rows}"
    if verb in ("CREATE TABLE AS", "SELECT INTO"):
        return f"SELECT {rows}"  # as PostgreSQL tags CREATE TABLE AS
    if verb in ("SELECT", "UPDATE", "DELETE", "MERGE", "FETCH", "MOVE", "COPY"):
        return f"{verb} {rows}"
    return verb
