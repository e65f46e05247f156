"""The Query Service's executor: one in-memory DuckDB database per session, walled off from the file system.

A session's database holds no data of its own: the sandbox's tables are registered as views over
``pyarrow.dataset`` objects (the dataset's committed batch files) and, when a statement names it, a stream of the
profile store's merged profiles. Then the database loses its access to files, the network and extensions
(``enable_external_access = false``) and its settings are locked, so even a statement that slipped past
``query/guard.py`` could not read ``/etc/passwd``, ``COPY`` or ``ATTACH``. Statements run with a timeout
(``connection.interrupt()`` from a timer; :meth:`DuckDBSession.cancel` does the same) and their results stream as
Arrow record batches.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

from audiencehub.engines.base import EngineError, EngineInputError, EngineSession
from audiencehub.engines.ingest_sql import ident, lit
from audiencehub.query import dialect, guard
from audiencehub.query.conform import dataset_select, snapshot_file, view_sql, write_parquet
from audiencehub.query.errors import QueryError
from audiencehub.query.guard import Kind, Statement
from audiencehub.query.session import Column, Result
from audiencehub.query.tables import DatasetTable, ProfileTable, Table, TableSource, table_name

BATCH_ROWS = 65_536
_PATH = re.compile(r"(?<![\w:])/(?:[\w.@+-]+/)+[\w.@+-]*")
TIMED_OUT = "canceling statement due to statement timeout"
CANCELLED = "canceling statement due to user request"


Write = Callable[[Path], int]
"""Writes a statement's rows as one Parquet file at the path given and answers how many rows it wrote."""


class TableWriter(Protocol):
    """Writes a statement's rows into the sandbox's datasets as a new batch (``services/query.py``)."""

    def create(self, name: str, write: Write) -> int:
        """CTAS: a new dataset called ``name`` (an ad hoc schema from the rows' columns) with the rows as its first
        batch; answers how many rows were written. QueryError when the batch fails."""
        ...

    def insert(self, table: DatasetTable, write: Write) -> int:
        """INSERT INTO: the rows as a new batch of the table's dataset, checked against its schema."""
        ...


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 300.0
    memory_limit: str = "1GB"
    threads: int | None = None
    temp_dir: str | None = None
    batch_rows: int = BATCH_ROWS
    native_parquet: bool = False
    """Let the engine read the tables' Parquet files itself, allowed exactly those (``allowed_paths``), instead of
    through ``pyarrow.dataset``: 2-3x faster on MAP columns (DuckDB checks every map it converts from Arrow), at the
    price of a database that can open (and, were both guards bypassed, write) the sandbox's committed batch files."""


def open_database(limits: Limits, allowed_paths: Sequence[str] = ()) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory database that cannot reach files (but ``allowed_paths``), the network or its own settings."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        con.execute("SET python_enable_replacements = false")
        con.execute(f"SET memory_limit = '{_setting(limits.memory_limit)}'")
        if limits.threads:
            con.execute(f"SET threads = {int(limits.threads)}")
        if limits.temp_dir:
            con.execute(f"SET temp_directory = '{_setting(limits.temp_dir)}'")
        if allowed_paths:
            listed = ", ".join(f"'{_setting(p)}'" for p in allowed_paths)
            con.execute(f"SET allowed_paths = [{listed}]")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _setting(value: str) -> str:
    return value.replace("'", "''")


class DuckDBSession:
    """One client's session on one sandbox (implements :class:`audiencehub.query.session.QuerySession`)."""

    def __init__(self, tables: TableSource, writer: TableWriter | None, limits: Limits) -> None:
        self._tables = tables
        self._writer = writer
        self._limits = limits
        self._con = open_database(limits)
        self._allowed: list[str] = []
        self._registered: dict[str, object] = {}
        self._known: dict[str, Table] = {}
        self._broken: dict[str, str] = {}
        self._read: list[str] = []
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._timer: threading.Timer | None = None
        self._active: Iterator[pa.RecordBatch] | None = None
        self._elsewhere: EngineSession | None = None
        self._closed = False

    # ----- QuerySession -----

    def describe(self, sql: str) -> list[Column] | None:
        with self._engine_errors():
            return self._describe(sql)

    def _describe(self, sql: str) -> list[Column] | None:
        stmt = guard.statement(sql)
        if stmt.kind is Kind.QUERY and stmt.query is not None:
            self._finish_active()
            return self._query_columns(stmt.query)
        return _static_columns(stmt)

    def parameter_count(self, sql: str) -> int:
        return dialect.parameter_count(dialect.parse(sql))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        with self._engine_errors():
            return self._execute(sql, params)

    def _execute(self, sql: str, params: Sequence[Any]) -> Result:
        self._read = []
        stmt = guard.statement(sql)
        self._finish_active()
        if stmt.kind is Kind.TRANSACTION:
            return Result(stmt.tag, None)
        if stmt.kind is Kind.SHOW_TABLES:
            self._refresh()
            names = sorted(self._known)
            kinds = ["view" if isinstance(self._known[n], ProfileTable) else "table" for n in names]
            return _rows(stmt, [pa.array(names, pa.string()), pa.array(kinds, pa.string())])
        if stmt.kind is Kind.DESCRIBE and stmt.target is not None:
            cols = self.columns(stmt.target)
            return _rows(
                stmt,
                [pa.array([c.name for c in cols], pa.string()), pa.array([_type_name(c.type) for c in cols])],
            )
        assert stmt.query is not None
        if stmt.kind is Kind.DESCRIBE:
            cols = self._query_columns(stmt.query)
            return _rows(
                stmt,
                [pa.array([c.name for c in cols], pa.string()), pa.array([_type_name(c.type) for c in cols])],
            )
        self._refresh()
        if stmt.kind is Kind.CTAS:
            return self._create(stmt, params)
        if stmt.kind is Kind.INSERT:
            return self._insert(stmt, params)
        duck_sql, read = self._prepare(stmt.query)
        if stmt.kind is Kind.EXPLAIN:
            return self._explain(duck_sql, read, params)
        return self._query(stmt.tag, duck_sql, read, params)

    def tables(self) -> list[str]:
        with self._engine_errors():
            self._refresh()
        return sorted(self._known)

    def columns(self, table: str) -> list[Column]:
        with self._engine_errors():
            self._refresh()
        found = self._known.get(table.lower())
        if found is None:
            raise guard.unknown_table(table, self._known)
        return [Column(f.name, f.type) for f in found.schema]

    @contextlib.contextmanager
    def _engine_errors(self) -> Iterator[None]:
        """Any engine error of a call (an interrupt may land in a check or a registration too) as a QueryError."""
        try:
            yield
        except (duckdb.Error, pa.ArrowException) as exc:
            raise _query_error(exc, self._reason) from None

    def datasets_read(self) -> list[str]:
        """The ids of the datasets the last statement read (AEP's ``referenced_datasets``)."""
        return [t.dataset_id for t in (self._known.get(n) for n in self._read) if isinstance(t, DatasetTable)]

    def dataset_of(self, table: str) -> str | None:
        """The id of the dataset that is ``table`` now, or None (after a CTAS: the dataset it created)."""
        with self._engine_errors():
            self._refresh()
        found = self._known.get(table_name(table))
        return found.dataset_id if isinstance(found, DatasetTable) else None

    def cancel(self) -> None:
        self._interrupt(CANCELLED)

    def close(self) -> None:
        if self._closed:
            return
        self._finish_active()
        with self._lock:
            self._closed = True
            self._con.close()

    # ----- statements -----

    def _refresh(self) -> None:
        """Registers the sandbox's tables as they are now: new batches and datasets show, removed ones go."""
        self._known = self._tables.load()
        self._broken = {}
        if self._limits.native_parquet:
            self._refresh_views()
            return
        for name in list(self._registered):
            table = self._known.get(name)
            if table is None or isinstance(table, ProfileTable) or table.version != self._registered[name]:
                self._con.unregister(name)
                del self._registered[name]
        for name, table in self._known.items():
            if isinstance(table, DatasetTable) and name not in self._registered:
                try:
                    self._con.register(name, table.open())
                except (OSError, pa.ArrowException) as exc:
                    # A batch's files went missing (its dataset is being deleted?): only statements that read the
                    # table fail, and the client never sees a server path.
                    self._broken[name] = _PATH.sub("<file>", str(exc))
                    continue
                self._registered[name] = table.version

    def _refresh_views(self) -> None:
        """Native mode: each dataset a view over ``read_parquet`` of its files, in a database allowed exactly the
        files of the tables (a new one when they change: the allowed paths are locked with the settings)."""
        files = sorted({f for t in self._known.values() if isinstance(t, DatasetTable) for f in t.files})
        if files != self._allowed:
            fresh = open_database(self._limits, files)
            with self._lock:
                old, self._con = self._con, fresh
            old.close()
            self._allowed, self._registered = files, {}
        for name in list(self._registered):
            table = self._known.get(name)
            if not isinstance(table, DatasetTable) or table.version != self._registered[name]:
                self._con.execute(f"DROP VIEW IF EXISTS {ident(name)}")
                del self._registered[name]
        for name, table in self._known.items():
            if isinstance(table, DatasetTable) and name not in self._registered:
                try:
                    self._con.execute(f"CREATE OR REPLACE VIEW {ident(name)} AS {view_sql(table)}")
                except (OSError, pa.ArrowException, duckdb.IOException) as exc:
                    self._broken[name] = _PATH.sub("<file>", str(exc))
                    continue
                self._registered[name] = table.version

    def _prepare(self, query: Any) -> tuple[str, list[str]]:
        """The DuckDB SQL of a checked query and the sandbox tables it reads."""
        read = guard.check_tree(query, self._known)
        self._read = read
        for name in read:
            if name in self._broken:
                raise QueryError(f"table {name} cannot be read now: {self._broken[name]}", "58030")
        with self._profile(read):
            tree = dialect.to_duckdb(query, self._probe)
            tree = dialect.without_hugeint(tree, self._probe_columns)
        duck_sql = dialect.render(tree)
        guard.check_engine_sql(self._con, duck_sql, self._known)
        return duck_sql, read

    def _probe_columns(self, sql: str) -> list[tuple[str, str]]:
        guard.check_engine_sql(self._con, sql, self._known)
        try:
            rel = self._con.sql(sql)
            return [(n, str(t)) for n, t in zip(rel.columns, rel.types, strict=True)]
        except duckdb.Error as exc:
            raise _query_error(exc, None) from None

    def _probe(self, sql: str) -> list[str]:
        guard.check_engine_sql(self._con, sql, self._known)
        try:
            return [str(t) for t in self._con.sql(sql).types]
        except duckdb.Error as exc:
            raise _query_error(exc, None) from None

    def _query_columns(self, query: Any) -> list[Column]:
        self._refresh()
        duck_sql, read = self._prepare(dialect.without_parameters(query))
        try:
            with self._running(read):
                schema = self._con.sql(f"SELECT * FROM ({duck_sql}) LIMIT 0").to_arrow_table().schema
        except duckdb.Error as exc:
            raise _query_error(exc, self._reason) from None
        return [Column(f.name, f.type) for f in schema]

    def _query(self, tag: str, duck_sql: str, read: list[str], params: Sequence[Any]) -> Result:
        reader, stop = self._start(duck_sql, read, params)
        columns = [Column(f.name, f.type) for f in reader.schema]
        stream = self._stream(reader, stop)
        self._active = stream
        return Result(tag, columns, stream)

    def _explain(self, duck_sql: str, read: list[str], params: Sequence[Any]) -> Result:
        reader, stop = self._start("EXPLAIN " + duck_sql, read, params, explain=True)
        lines: list[str] = []
        for batch in self._stream(reader, stop):
            for value in batch.column(batch.num_columns - 1).to_pylist():
                lines += str(value).splitlines()
        return Result("EXPLAIN", [Column("QUERY PLAN", pa.string())], iter([_batch(["QUERY PLAN"], [lines])]))

    def _create(self, stmt: Statement, params: Sequence[Any]) -> Result:
        if (done := self._creatable(stmt)) is not None:
            return done
        assert stmt.target is not None and stmt.query is not None and self._writer is not None
        duck_sql, read = self._prepare(stmt.query)
        count = self._writer.create(stmt.target, lambda dest: self._write_here(duck_sql, read, params, dest))
        return Result("SELECT", None, rowcount=count)

    def _creatable(self, stmt: Statement) -> Result | None:
        """Checks that a CTAS may run; answers its result when it has nothing to do (IF NOT EXISTS, table there)."""
        assert stmt.target is not None
        name = table_name(stmt.target)
        if name in self._known:
            if stmt.if_not_exists:
                return Result("SELECT", None, rowcount=0)
            raise QueryError(f"table {name} already exists in this sandbox", "42P07")
        if self._writer is None:
            raise QueryError("this session cannot write datasets", "25006")
        return None

    def _insert(self, stmt: Statement, params: Sequence[Any]) -> Result:
        table = self._insertable(stmt)
        assert stmt.query is not None and self._writer is not None
        duck_sql, read = self._prepare(stmt.query)
        count = self._writer.insert(table, lambda dest: self._write_here(duck_sql, read, params, dest))
        return Result("INSERT", None, rowcount=count)

    def _insertable(self, stmt: Statement) -> DatasetTable:
        """The dataset an INSERT writes (QueryError when it cannot)."""
        assert stmt.target is not None
        table = self._known.get(stmt.target.lower())
        if table is None:
            raise guard.unknown_table(stmt.target, self._known)
        if isinstance(table, ProfileTable):
            raise QueryError(f"table {table.name} is the profile store's, read-only: insert into a dataset", "42501")
        if self._writer is None:
            raise QueryError("this session cannot write datasets", "25006")
        return table

    def _write_here(self, duck_sql: str, read: list[str], params: Sequence[Any], dest: Path) -> int:
        """Runs a query in this session and writes its rows, as they stream, to the Parquet file ``dest``."""
        reader, stop = self._start(duck_sql, read, params)
        try:
            return write_parquet(dest, reader.schema, self._stream(reader, stop))
        finally:
            stop()

    # ----- batch queries on the configured engine -----

    def execute_on(self, sql: str, engine: EngineSession, results: Path, scratch: Path) -> Result:
        """Runs a batch query's statement with the data engine (Spark) instead of this session's database.

        The statement is checked and translated here as for :meth:`execute`; a query, CTAS or INSERT then runs
        as one self-contained SELECT over the tables' committed files (the profile table, when read, streamed
        once into ``scratch`` first) that the engine writes to a Parquet file without collecting rows: a
        query's rows to ``results``, a CTAS's or INSERT's to the new batch. Other statements (SHOW, DESCRIBE,
        EXPLAIN...) run here, their rows written to ``results`` too. The answer's ``batches`` is empty: the rows
        are in ``results`` when ``columns`` is not None. Timeout and :meth:`cancel` interrupt the engine.
        """
        with self._engine_errors():
            stmt = guard.statement(sql)
            self._finish_active()
            if stmt.kind not in (Kind.QUERY, Kind.CTAS, Kind.INSERT) or stmt.query is None:
                result = self._execute(sql, ())
                if result.columns is None:
                    return result
                schema = pa.schema([pa.field(c.name, c.type) for c in result.columns])
                return Result(result.tag, result.columns, rowcount=write_parquet(results, schema, result.batches))
            self._refresh()
            if stmt.kind is Kind.CTAS:
                if (done := self._creatable(stmt)) is not None:
                    return done
                assert stmt.target is not None and self._writer is not None
                select, read = self._portable(stmt.query, scratch)
                count = self._writer.create(stmt.target, lambda dest: self._write_on(engine, select, read, dest))
                return Result("SELECT", None, rowcount=count)
            if stmt.kind is Kind.INSERT:
                table = self._insertable(stmt)
                assert self._writer is not None
                select, read = self._portable(stmt.query, scratch)
                count = self._writer.insert(table, lambda dest: self._write_on(engine, select, read, dest))
                return Result("INSERT", None, rowcount=count)
            select, read = self._portable(stmt.query, scratch)
            count = self._write_on(engine, select, read, results)
            columns = [Column(f.name, f.type) for f in pq.read_schema(results)]
            return Result(stmt.tag, columns, rowcount=count)

    def _portable(self, query: Any, scratch: Path) -> tuple[str, list[str]]:
        """A checked query as one DuckDB SELECT that names no session table: each table it reads is a CTE over the
        table's committed files (as ``AUDIENCEHUB_QUERY_NATIVE_PARQUET`` reads them) or, for the profile table,
        over a file of the snapshot written into ``scratch``."""
        duck_sql, read = self._prepare(query)
        ctes: list[exp.CTE] = []
        for name in read:
            table = self._known[name]
            if isinstance(table, DatasetTable):
                # Nested columns rebuilt by field name: Spark casts structs by position (query/conform.py).
                body = view_sql(table) if table.duck_types is None or not table.files else dataset_select(table)
            else:
                body = f"SELECT * FROM read_parquet({lit(str(snapshot_file(table, scratch)))})"
            ctes.append(
                exp.CTE(this=sqlglot.parse_one(body, read="duckdb"), alias=exp.TableAlias(this=ident_node(name)))
            )
        if not ctes:
            return duck_sql, read
        tree = sqlglot.parse_one(duck_sql, read="duckdb")
        own = tree.args.get("with_")
        own_names = {c.alias_or_name.lower() for c in own.expressions} if own is not None else set()
        if own_names & set(read):
            # The query's own WITH shadows a table name somewhere: keep its scopes apart.
            tree = exp.select("*").from_(exp.Subquery(this=tree, alias=exp.TableAlias(this=ident_node("__ah_query"))))
            own = None
        tree.set(
            "with_",
            exp.With(
                expressions=[*ctes, *(own.expressions if own is not None else [])],
                recursive=own.args.get("recursive") if own is not None else None,
            ),
        )
        return tree.sql("duckdb"), read

    def _write_on(self, engine: EngineSession, select: str, read: list[str], dest: Path) -> int:
        """Runs a portable SELECT with ``engine`` into the Parquet file ``dest`` under this session's timeout."""
        self._reason = None
        timer = threading.Timer(self._limits.timeout_s, self._interrupt, args=(TIMED_OUT,))
        timer.daemon = True
        with self._lock:
            self._elsewhere = engine
        timer.start()
        try:
            return engine.copy(select, dest)
        except (EngineError, EngineInputError) as exc:
            if self._reason is not None:
                raise QueryError(self._reason, "57014") from None
            message = exc.detail if isinstance(exc, EngineInputError) else str(exc)
            raise QueryError(
                _PATH.sub("<file>", message), "22000" if isinstance(exc, EngineInputError) else "XX000"
            ) from None
        finally:
            timer.cancel()
            with self._lock:
                self._elsewhere = None
            if self._reason is not None and dest.exists():
                dest.unlink()

    # ----- running, streaming, stopping -----

    def _start(
        self, duck_sql: str, read: list[str], params: Sequence[Any], *, explain: bool = False
    ) -> tuple[pa.RecordBatchReader, Any]:
        """Starts a statement under the timeout; answers its reader and what ends the run (call it once)."""
        stop = self._arm(read)
        try:
            rel = self._con.sql(duck_sql, params=list(params)) if params else self._con.sql(duck_sql)
            if rel is None:  # pragma: no cover - only queries get here
                raise QueryError("the statement returned no rows", "XX000")
            reader = rel.to_arrow_reader(self._limits.batch_rows)
        except duckdb.Error as exc:
            reason = self._reason
            stop()
            raise _query_error(exc, reason) from None
        except BaseException:
            stop()
            raise
        return reader, stop

    def _stream(self, reader: pa.RecordBatchReader, stop: Any) -> Iterator[pa.RecordBatch]:
        try:
            while True:
                if self._reason is not None:
                    raise QueryError(self._reason, "57014")
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (duckdb.Error, OSError, pa.ArrowException) as exc:
                    raise _query_error(exc, self._reason) from None
                yield batch
        finally:
            reader.close()
            stop()

    def _arm(self, read: list[str]) -> Any:
        """Registers the profile table if read, starts the timeout; answers the function that undoes both."""
        self._reason = None
        profile = self._register_profile(read)
        timer = threading.Timer(self._limits.timeout_s, self._interrupt, args=(TIMED_OUT,))
        timer.daemon = True
        self._timer = timer
        timer.start()
        done = False

        def stop() -> None:
            nonlocal done
            if done:
                return
            done = True
            timer.cancel()
            if profile is not None:
                self._unregister_profile(profile)

        return stop

    def _interrupt(self, reason: str) -> None:
        with self._lock:
            if self._closed:
                return
            self._reason = reason
            self._con.interrupt()
            if self._elsewhere is not None:
                self._elsewhere.interrupt()

    def _finish_active(self) -> None:
        active, self._active = self._active, None
        if active is not None:
            close = getattr(active, "close", None)
            if close is not None:
                close()

    def _register_profile(self, read: list[str]) -> str | None:
        for name in read:
            table = self._known.get(name)
            if isinstance(table, ProfileTable):
                self._con.register(name, table.snapshot())
                return name
        return None

    def _unregister_profile(self, name: str) -> None:
        with contextlib.suppress(duckdb.Error):  # the connection was closed meanwhile
            self._con.unregister(name)

    class _Running:
        def __init__(self, session: DuckDBSession, read: list[str]) -> None:
            self._session, self._read = session, read
            self._stop: Any = None

        def __enter__(self) -> None:
            self._stop = self._session._arm(self._read)

        def __exit__(self, *exc: object) -> None:
            self._stop()

    def _running(self, read: list[str]) -> DuckDBSession._Running:
        return DuckDBSession._Running(self, read)

    def _profile(self, read: list[str]) -> DuckDBSession._Running:
        """The profile table registered while the statement is translated (its probes may read its types)."""
        return DuckDBSession._Running(self, read)


# ----- results and errors -----


def ident_node(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _rows(stmt: Statement, arrays: list[pa.Array]) -> Result:
    cols = _static_columns(stmt) or []
    batch = pa.RecordBatch.from_arrays(arrays, names=[c.name for c in cols])
    return Result(stmt.tag, cols, iter([batch]))


def _batch(names: list[str], columns: list[list[Any]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in columns], names=names)


def _static_columns(stmt: Statement) -> list[Column] | None:
    if stmt.kind is Kind.SHOW_TABLES:
        return [Column("name", pa.string()), Column("type", pa.string())]
    if stmt.kind is Kind.DESCRIBE:
        return [Column("col_name", pa.string()), Column("data_type", pa.string())]
    if stmt.kind is Kind.EXPLAIN:
        return [Column("QUERY PLAN", pa.string())]
    return None


def _type_name(t: pa.DataType) -> str:
    return str(t)


def _query_error(exc: BaseException, reason: str | None) -> QueryError:
    """A DuckDB (or Arrow) error as the client sees it: PostgreSQL's SQLSTATE, no server path in the message."""
    if reason is not None or isinstance(exc, duckdb.InterruptException) or "INTERRUPT" in str(exc):
        return QueryError(reason or CANCELLED, "57014")
    message = _PATH.sub("<file>", str(exc)).strip()
    if isinstance(exc, duckdb.ParserException):
        state = "42601"
    elif isinstance(exc, duckdb.CatalogException):
        state = "42883" if "Function" in message else "42P01"
    elif isinstance(exc, duckdb.BinderException):
        state = "42703" if "column" in message.lower() else "42804"
    elif isinstance(exc, duckdb.PermissionException):
        state = "42501"
    elif isinstance(exc, duckdb.OutOfMemoryException):
        state = "53200"
    elif isinstance(exc, duckdb.NotImplementedException):
        state = "0A000"
    elif isinstance(
        exc, duckdb.ConversionException | duckdb.InvalidInputException | duckdb.OutOfRangeException | pa.ArrowException
    ):
        state = "22000"
    else:
        state = "XX000"
    return QueryError(message, state)
