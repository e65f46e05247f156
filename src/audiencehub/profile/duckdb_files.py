"""The embedded profile store's open files: one DuckDB database per sandbox, its cursors, locks and failures.

A statement may fail in a way its transaction cannot contain: DuckDB then raises ``FatalException`` and
invalidates the whole database (typically a write that ran out of memory, whose rollback could not get memory
either). Every later statement on it fails, so :meth:`SandboxFiles.cursor` closes it at the first such error; the
next call opens the file again, which replays the committed transactions of its write-ahead log and drops the
one that failed. The operation that failed still raises, as :class:`ProfileStoreFailed` with a reason a user can
act on; so does an out-of-memory error that DuckDB survived.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb

from audiencehub.engines.duckdb import clean_message, connect
from audiencehub.errors import AudiencehubError
from audiencehub.metadata.store import Scope
from audiencehub.profile.base import ProfileStoreFailed

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 5.0
"""How long reopening a failed database waits for the statements still running on it to stop."""


class ProfileStoreElsewhere(AudiencehubError):
    """The sandbox's profile file is held by another process: DuckDB lets one process open a file."""


OUT_OF_MEMORY = ("Out of Memory Error", "could not allocate block", "failed to pin block")
"""How DuckDB's messages say that it ran out of memory (a commit that could not get memory says it as a
``TransactionException``)."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors that caused it or that it interrupted the handling of, newest first."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def out_of_memory(exc: BaseException) -> bool:
    """Whether DuckDB's out-of-memory error is ``exc`` or caused it (a fatal error names its original)."""
    return any(
        isinstance(e, duckdb.OutOfMemoryException) or any(m in str(e) for m in OUT_OF_MEMORY) for e in _chain(exc)
    )


def original(exc: BaseException) -> str:
    """DuckDB's message of the first error in ``exc``'s chain (the one that the others followed), cleaned."""
    first = [e for e in _chain(exc) if isinstance(e, duckdb.Error)]
    return clean_message(first[-1], "") if first else str(exc)


def rollback(cur: duckdb.DuckDBPyConnection, failure: BaseException | None = None) -> None:
    """Rolls back the cursor's transaction; after a fatal error there is nothing left to roll back (DuckDB would
    only raise again, hiding the error that matters)."""
    if not isinstance(failure, duckdb.FatalException):
        cur.execute("ROLLBACK")


class SandboxFiles:
    def __init__(
        self,
        path_of: Callable[[Scope], Path],
        *,
        schema: str,
        memory_limit: str,
        memory_setting: str,
        threads: int | None,
        temp_dir: Path,
        owner: bool,
    ) -> None:
        self._path_of = path_of
        self._schema = schema
        self._memory_limit = memory_limit
        self._memory_setting = memory_setting
        self._threads = threads
        self._temp_dir = temp_dir
        self._owner = owner
        self._cons: dict[Scope, duckdb.DuckDBPyConnection] = {}
        self._cursors: dict[int, tuple[duckdb.DuckDBPyConnection, set[duckdb.DuckDBPyConnection]]] = {}
        """The open cursors of each open connection (by ``id``): a failed database interrupts them to close."""
        self._failed: dict[Scope, list[duckdb.DuckDBPyConnection]] = {}
        """Connections to a database that failed and that could not be closed yet (a statement still ran)."""
        # A sandbox's locks outlive its connections: a writer waiting on one while the database is reopened must
        # still take turns with the writers that come after.
        self.write_locks: dict[Scope, threading.Lock] = {}
        self.evaluation_locks: dict[Scope, threading.Lock] = {}
        self._guard = threading.Lock()
        self.generation: dict[Scope, int] = {}
        """Counts the writes (and reopenings) of each sandbox: what was read under an older count is stale."""

    def connection(self, scope: Scope) -> duckdb.DuckDBPyConnection:
        with self._guard:
            con = self._cons.get(scope)
            if con is not None:
                return con
            path = self._path_of(scope)
            if not self._owner:
                raise ProfileStoreElsewhere(
                    f"the profile store of sandbox {scope.sandbox!r} is an embedded DuckDB file, which "
                    "only the audiencehub server holding the home's lock may open: run this job in the server "
                    "(AUDIENCEHUB_WORKERS >= 1) or share the profile store (AUDIENCEHUB_PROFILE_STORE=lake)"
                )
            if not self._close_failed(scope, wait=CLOSE_WAIT_S):
                raise ProfileStoreFailed(
                    f"the profile store of sandbox {scope.sandbox!r} failed and is being reopened; try again"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                con = connect(
                    str(path), threads=self._threads, memory_limit=self._memory_limit, temp_dir=self._temp_dir
                )
            except duckdb.IOException as exc:
                if "lock" not in str(exc):
                    raise
                raise ProfileStoreElsewhere(
                    f"the profile store of sandbox {scope.sandbox!r} is held by another process (an embedded "
                    "DuckDB file opens in one process at a time)"
                ) from exc
            try:
                con.execute(self._schema)
            except duckdb.Error as exc:
                con.close()
                raise self._reason(exc) from exc
            self._cons[scope] = con
            self._cursors[id(con)] = (con, set())
            self.write_locks.setdefault(scope, threading.Lock())
            self.evaluation_locks.setdefault(scope, threading.Lock())
            return con

    def open_cursor(self, scope: Scope) -> tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection]:
        """A new cursor on the sandbox's database (and the connection it belongs to), in UTC; close it with
        :meth:`close_cursor`, and pass what it raises to :meth:`failure`."""
        con = self.connection(scope)
        with self._guard:
            entry = self._cursors.get(id(con))
            if entry is None or entry[0] is not con:  # closed meanwhile: its database failed
                raise ProfileStoreFailed(
                    f"the profile store of sandbox {scope.sandbox!r} failed and is being reopened; try again"
                )
            cur = con.cursor()
            entry[1].add(cur)
        try:
            cur.execute("SET TimeZone = 'UTC'")
        except BaseException as exc:
            self.close_cursor(con, cur)
            failure = self.failure(scope, con, exc)
            if failure is None:
                raise
            raise failure from exc
        return con, cur

    def close_cursor(self, con: duckdb.DuckDBPyConnection, cur: duckdb.DuckDBPyConnection) -> None:
        with self._guard:
            entry = self._cursors.get(id(con))
            if entry is not None and entry[0] is con:
                entry[1].discard(cur)
        with suppress(duckdb.Error):  # its connection was closed after a failure: nothing is left to close
            cur.close()

    @contextmanager
    def cursor(self, scope: Scope) -> Iterator[duckdb.DuckDBPyConnection]:
        con, cur = self.open_cursor(scope)
        try:
            try:
                yield cur
            finally:
                self.close_cursor(con, cur)
        except BaseException as exc:
            failure = self.failure(scope, con, exc)
            if failure is None:
                raise
            raise failure from exc

    @contextmanager
    def writer(self, scope: Scope) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor in a write transaction that commits when the block ends, one writer per sandbox at a time."""
        self.connection(scope)
        with self.write_locks[scope], self.cursor(scope) as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                rollback(cur, exc)
                raise
            finally:
                self.generation[scope] = self.generation.get(scope, 0) + 1

    def failure(self, scope: Scope, con: duckdb.DuckDBPyConnection, exc: BaseException) -> Exception | None:
        """What to raise instead of ``exc``, which a statement on ``con`` raised (None: ``exc`` itself). A fatal
        error closes the database, so that the next operation opens it again."""
        if isinstance(exc, ProfileStoreFailed) or not isinstance(exc, duckdb.Error):
            return None
        if isinstance(exc, duckdb.FatalException):
            self._drop(scope, con)
        elif self._cons.get(scope) is not con:  # interrupted, or closed under it, when another thread's call failed
            return ProfileStoreFailed(
                f"the profile store of sandbox {scope.sandbox!r} failed and is being reopened; try again. "
                f"DuckDB: {original(exc)}"
            )
        elif not out_of_memory(exc):
            return None
        return self._reason(exc)

    def _reason(self, exc: BaseException) -> ProfileStoreFailed:
        message = original(exc)
        if out_of_memory(exc):
            return ProfileStoreFailed(
                f"the profile store ran out of memory ({self._memory_setting}={self._memory_limit}); raise the "
                f"limit. DuckDB: {message}"
            )
        return ProfileStoreFailed(f"the profile store failed and was closed, to be opened again; DuckDB: {message}")

    def _drop(self, scope: Scope, con: duckdb.DuckDBPyConnection) -> None:
        """Forgets the sandbox's failed database (unless a thread that failed earlier did, and it was reopened)."""
        with self._guard:
            if self._cons.get(scope) is not con:
                return
            log.warning("the profile store of sandbox %s/%s failed; closing it", scope.org_id, scope.sandbox)
            del self._cons[scope]
            self.generation[scope] = self.generation.get(scope, 0) + 1
            self._failed.setdefault(scope, []).append(con)
            self._close_failed(scope, wait=0)

    def _close_failed(self, scope: Scope, *, wait: float) -> bool:
        """Closes the failed connections of the sandbox, and with them every cursor, interrupting what still runs
        (for up to ``wait`` seconds): until the last is closed, DuckDB would hand the failed database out again.
        Whether all are closed. Holds ``_guard``."""
        left = []
        for con in self._failed.pop(scope, []):
            entry = self._cursors.get(id(con))
            cursors = list(entry[1]) if entry is not None and entry[0] is con else []
            for cur in cursors:
                with suppress(duckdb.Error):
                    cur.interrupt()
            deadline = time.monotonic() + wait
            while True:
                try:
                    con.close()
                except duckdb.Error:  # a cursor still runs a statement (it stops at the interrupt)
                    if time.monotonic() < deadline:
                        time.sleep(0.02)
                        continue
                    left.append(con)
                else:
                    self._cursors.pop(id(con), None)
                break
        if left:
            self._failed[scope] = left
        return not left

    def close(self) -> None:
        with self._guard:
            for con in self._cons.values():
                con.close()
            for failed in self._failed.values():
                for con in failed:
                    with suppress(duckdb.Error):
                        con.close()
            self._cons.clear()
            self._failed.clear()
            self._cursors.clear()
