"""The metadata store: one SQLAlchemy engine, transactions, and scoped row access.

Services open a transaction with ``store.tx()`` and call the table functions in this package
with the connection, so one use case commits or rolls back as a whole. The store runs on SQLite
(the embedded default) or PostgreSQL (``DATABASE_URL=postgresql://...``); ``migrate()`` brings
either to the schema of ``tables.py`` with the Alembic revisions in ``migrations/``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

Row = dict[str, Any]

__all__ = ["IntegrityError", "MetadataStore", "Row", "Scope", "created_ns", "engine_url", "now", "write_revision"]

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
"""The first Alembic revision: the schema of the last version that created its tables without Alembic."""

# pg_advisory_lock's key for migrations: every API replica and worker starting at once waits on it, one migrates.
MIGRATION_LOCK_KEY = 0x6175_6469_656E_6365  # "audience"


def engine_url(url: str) -> URL:
    """``url`` as SQLAlchemy takes it: plain ``postgresql://`` (and ``postgres://``) use psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


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
    def __init__(self, url: str, *, pool_size: int = 5, max_overflow: int = 10) -> None:
        self.url = url
        parsed = engine_url(url)
        is_sqlite = parsed.get_backend_name() == "sqlite"
        if is_sqlite:
            self.engine: Engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # NOTE: pysqlite's own transaction handling defers BEGIN; we issue BEGIN IMMEDIATE ourselves
            # so that two writers never both read-then-write on a stale snapshot. Reads (``read()``) take
            # a plain BEGIN: under WAL they never wait for a writer.
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            # Several processes (API replicas, workers) each hold a pool: keep it small, check connections
            # before use (a server restart or a proxy's idle timeout drops them) and renew them every 30 min.
            self.engine = create_engine(
                parsed,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_timeout=30,
                pool_pre_ping=True,
                pool_recycle=1800,
                connect_args={"application_name": "audiencehub"} if parsed.get_backend_name() == "postgresql" else {},
            )

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return str(self.engine.dialect.name)

    def migrate(self) -> None:
        """Upgrades the database to the newest Alembic revision (``upgrade head``); every entry point calls it.

        On PostgreSQL an advisory lock makes processes that start together migrate one after the other (the
        later ones find nothing to do); the upgrade runs in one transaction, so a failed one leaves nothing
        behind. A SQLite home made before Alembic (tables, no ``alembic_version``) is first completed to the
        baseline and stamped with it.
        """
        from alembic import command

        plugins = logging.getLogger("alembic.runtime.plugins")
        if plugins.level == logging.NOTSET:
            plugins.setLevel(logging.WARNING)  # one INFO line per autogenerate plugin on every start otherwise
        with self.engine.connect() as conn:
            locked = self.dialect == "postgresql"
            if locked:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
            try:
                with conn.begin():  # BEGIN IMMEDIATE on SQLite: one process migrates at a time there too
                    config = _alembic_config(conn)
                    if _predates_alembic(conn):
                        _complete_to_baseline(conn)
                        command.stamp(config, BASELINE)
                    command.upgrade(config, "head")
            finally:
                if locked:
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    conn.commit()

    def create_all(self) -> None:
        """Kept for callers of the version before Alembic: the same as :meth:`migrate`."""
        self.migrate()

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


def write_revision(message: str) -> str:
    """Writes ``migrations/versions/{NNNN}_{slug}.py`` for what ``tables.py`` has and the newest revision lacks.

    For developers after a change to ``tables.py``: Alembic's autogenerate against a scratch SQLite database at
    ``head``, in batch mode (which works on both databases). Read the file it writes before you commit it.
    """
    from alembic import command
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    rev_id = f"{int(head or '0') + 1:04d}"
    scratch_engine = create_engine("sqlite://")
    with scratch_engine.begin() as conn:
        config = _alembic_config(conn)
        config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
        command.upgrade(config, "head")
        command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
    scratch_engine.dispose()
    return rev_id


def _alembic_config(conn: Connection) -> Any:
    """Alembic's config in code (no alembic.ini): the revisions shipped in this package, run on ``conn``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _predates_alembic(conn: Connection) -> bool:
    names = set(inspect(conn).get_table_names())
    return "alembic_version" not in names and "orgs" in names


def _complete_to_baseline(conn: Connection) -> None:
    """Adds to a pre-Alembic SQLite home what the baseline has and it lacks: tables, nullable columns, indexes.

    Such a home was made by ``metadata.create_all`` plus additive ALTERs of some earlier version; the baseline's
    own DDL, run on a scratch in-memory database, says exactly what each missing piece looks like.
    """
    from alembic import command

    if conn.dialect.name != "sqlite":
        raise RuntimeError("a database with audiencehub's tables but no alembic_version: only SQLite homes predate it")
    scratch_engine = create_engine("sqlite://")
    with scratch_engine.begin() as scratch:
        command.upgrade(_alembic_config(scratch), BASELINE)
        wanted = scratch.exec_driver_sql(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
            " WHERE sql IS NOT NULL AND name != 'alembic_version' AND name NOT LIKE 'sqlite_%'"
        ).all()
        columns = {
            table: scratch.exec_driver_sql(f'PRAGMA table_info("{table}")').all()
            for kind, _name, table, _sql in wanted
            if kind == "table"
        }
    scratch_engine.dispose()
    found = inspect(conn)
    tables = set(found.get_table_names())
    for kind, _name, table, sql in wanted:
        if kind == "table" and table not in tables:
            conn.exec_driver_sql(sql)
        elif kind == "table":
            have = {c["name"] for c in found.get_columns(table)}
            for _cid, column, type_, notnull, default, _pk in columns[table]:
                if column in have:
                    continue
                if notnull and default is None:
                    raise RuntimeError(f"{table}.{column}: this home lacks a required column; it cannot be adopted")
                conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {type_}')
    found = inspect(conn)
    for kind, name, table, sql in wanted:
        if kind == "index" and name not in {i["name"] for i in found.get_indexes(table)}:
            conn.exec_driver_sql(sql)


def _sqlite_begin(conn: Connection) -> None:
    read_only = conn.get_execution_options().get("audiencehub_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # autocommit at the driver; SQLAlchemy's begin event opens ours
    cur = dbapi_conn.cursor()
    _sqlite_wal(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_wal(cur: Any) -> None:
    """Puts the database in WAL mode (once: it persists in the file).

    NOTE: switching needs the database to itself and SQLite answers "database is locked" at once, without its
    busy timeout, while another connection writes; that happens when several processes open a new home together.
    """
    deadline = time.monotonic() + 30
    while cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            cur.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def insert_row(conn: Connection, table: Table, values: Mapping[str, Any]) -> None:
    conn.execute(insert(table).values(**values))


def get_row(
    conn: Connection, table: Table, scope: Scope | None, *, for_update: bool = False, **keys: Any
) -> Row | None:
    """The row of ``table`` in ``scope`` with ``keys``; ``for_update`` locks it until the transaction ends.

    Lock the row you read before you change it on the strength of what you read (a status transition, a
    counter): PostgreSQL's READ COMMITTED lets another transaction change it in between. SQLite ignores
    ``FOR UPDATE``; its ``tx()`` holds the database's write lock from BEGIN.
    """
    stmt = select(table)
    if for_update:
        stmt = stmt.with_for_update()
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
