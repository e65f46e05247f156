"""The Query Service's seam: what its front ends (the PostgreSQL wire protocol, the HTTP API, the CJA
transform) ask of the executor, and what they get back.

A front end authenticates a client, opens one :class:`QuerySession` for it (one sandbox, one engine
connection) and hands it the client's statements in the client's dialect (Spark SQL, as AEP's Query
Service speaks). Results stream as Arrow record batches: nothing holds a whole result set.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    """One result column: its name as the client wrote it and its Arrow type (nested types kept)."""

    name: str
    type: pa.DataType


@dataclass
class Result:
    """The outcome of one statement.

    ``columns`` is None for a statement that returns no rows (CTAS, INSERT, ...); then ``batches`` is
    empty and ``rowcount`` says how many rows it wrote. ``tag`` is the statement's verb as PostgreSQL
    names it in a CommandComplete message (``SELECT``, ``INSERT``, ``CREATE TABLE AS``, ``SHOW``...):
    the wire front end adds the row count itself after streaming.
    """

    tag: str
    columns: list[Column] | None
    batches: Iterator[pa.RecordBatch] = field(default_factory=lambda: iter(()))
    rowcount: int | None = None


class QuerySession(Protocol):
    """One client's connection to one sandbox. Used by one thread at a time, but for :meth:`cancel`."""

    def describe(self, sql: str) -> list[Column] | None:
        """The columns ``sql`` would return, without running it; None when it returns no rows.

        ``$1``-style parameters may appear; their values are not needed.
        """
        ...

    def parameter_count(self, sql: str) -> int:
        """How many ``$n`` parameters ``sql`` takes."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Runs one statement with bound parameter values (Python values; text from the wire is fine).

        Raises :class:`audiencehub.query.errors.QueryError` (a user-facing message and a SQLSTATE)
        for anything the client did wrong or is not allowed, and on timeout or cancel.
        """
        ...

    def tables(self) -> list[str]:
        """The names of the tables this session can read (its sandbox's datasets, the profile store), sorted."""
        ...

    def columns(self, table: str) -> list[Column]:
        """A table's columns, for catalog queries (psql's ``\\d``); QueryError 42P01 when unknown."""
        ...

    def cancel(self) -> None:
        """Interrupts the statement that runs now, from any thread; it raises QueryError 57014."""
        ...

    def close(self) -> None: ...


class QueryBackend(Protocol):
    """What the wire front end needs: check credentials, open sessions."""

    def open(self, *, user: str, password: str, database: str) -> QuerySession:
        """Authenticates (``user`` the org id as ``{ORG}@AdobeOrg``, ``password`` an access token,
        ``database`` ``{sandbox}`` or ``{sandbox}:all``, as AEP's connection parameters give them)
        and opens a session. Raises QueryError 28P01 on bad credentials, 3D000 on an unknown sandbox.
        """
        ...
