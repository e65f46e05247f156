"""The metadata store: one SQLAlchemy engine, transactions, and scoped row access.

Services open a transaction with ``store.tx()`` and call the table functions in this package
with the connection, so one use case commits or rolls back as a whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, delete, event, func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError

from audiencehub.metadata.tables import metadata

Row = dict[str, Any]

__all__ = ["IntegrityError", "MetadataStore", "Row", "Scope", "created_ns", "now"]


def now() -> int:
    return int(time.time())


def created_ns() -> int:
    """Creation order finer than ``createdAt`` (whole seconds), for lists that say newest first."""
    return time.time_ns()


@dataclass(frozen=True)
class Scope:
    """The org and sandbox every request and every resource belongs to."""

    org_id: str
    sandbox: str


class MetadataStore:
    def __init__(self, url: str) -> None:
        self.url = url
        is_sqlite = url.startswith("sqlite")
        self.engine: Engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30} if is_sqlite else {},
            pool_pre_ping=not is_sqlite,
        )
        if is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # NOTE: pysqlite's own transaction handling defers BEGIN; we issue BEGIN IMMEDIATE ourselves
            # so that two writers never both read-then-write on a stale snapshot. Reads (``read()``) take
            # a plain BEGIN: under WAL they never wait for a writer.
            event.listen(self.engine, "begin", _sqlite_begin)

    def create_all(self) -> None:
        """Creates missing tables, then adds the nullable columns that a newer version declares.

        Additive only (a column with no default and NULL allowed), so an existing home keeps working
        across upgrades; anything else waits for the Alembic migrations that come with PostgreSQL.
        """
        metadata.create_all(self.engine)
        with self.engine.connect() as conn:
            found = inspect(conn)
            missing = [
                (table, column)
                for table in metadata.sorted_tables
                for column in table.columns
                if column.name not in {c["name"] for c in found.get_columns(table.name)}
            ]
        if not missing:
            return
        with self.engine.begin() as conn:
            for table, column in missing:
                if not column.nullable:
                    raise RuntimeError(f"{table.name}.{column.name}: a new column must be nullable")
                kind = column.type.compile(dialect=self.engine.dialect)
                conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A read-write transaction; on SQLite it holds the write lock from its first statement."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: one consistent snapshot that never waits for writers."""
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            else:
                conn.execution_options(audiencehub_read_only=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_begin(conn: Connection) -> None:
    read_only = conn.get_execution_options().get("audiencehub_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # autocommit at the driver; SQLAlchemy's begin event opens ours
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def insert_row(conn: Connection, table: Table, values: Mapping[str, Any]) -> None:
    conn.execute(insert(table).values(**values))


def get_row(conn: Connection, table: Table, scope: Scope | None, **keys: Any) -> Row | None:
    stmt = select(table)
    if scope is not None:
        stmt = stmt.where(table.c.org_id == scope.org_id, table.c.sandbox == scope.sandbox)
    for name, value in keys.items():
        stmt = stmt.where(table.c[name] == value)
    row = conn.execute(stmt).mappings().first()
    return dict(row) if row is not None else None


def list_rows(
    conn: Connection,
    table: Table,
    scope: Scope | None,
    *,
    order_by: Any = None,
    limit: int | None = None,
    offset: int = 0,
    **keys: Any,
) -> tuple[list[Row], int]:
    """One page of rows and the total count that match ``scope`` and ``keys``."""
    stmt = select(table)
    count = select(func.count()).select_from(table)
    conds = [table.c[name] == value for name, value in keys.items()]
    if scope is not None:
        conds += [table.c.org_id == scope.org_id, table.c.sandbox == scope.sandbox]
    for cond in conds:
        stmt = stmt.where(cond)
        count = count.where(cond)
    if order_by is not None:
        stmt = stmt.order_by(*order_by) if isinstance(order_by, list | tuple) else stmt.order_by(order_by)
    if limit is not None:
        stmt = stmt.limit(limit)
    stmt = stmt.offset(offset)
    rows = [dict(r) for r in conn.execute(stmt).mappings()]
    total = int(conn.execute(count).scalar_one())
    return rows, total


def update_row(conn: Connection, table: Table, key: str, values: Mapping[str, Any], **where: Any) -> int:
    stmt = update(table).where(table.c.id == key)
    for name, value in where.items():
        stmt = stmt.where(table.c[name] == value)
    return conn.execute(stmt.values(**values)).rowcount


def delete_rows(conn: Connection, table: Table, **where: Any) -> int:
    stmt = delete(table)
    for name, value in where.items():
        stmt = stmt.where(table.c[name] == value)
    return conn.execute(stmt).rowcount
