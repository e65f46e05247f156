"""The embedded engine: DuckDB, in process, one in-memory connection per job."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from audiencehub.engines.base import Engine, EngineError, EngineInputError, EngineSession, Format, Progress
from audiencehub.engines.ingest_sql import lit

PROGRESS_INTERVAL_S = 0.5
MESSAGE_MAX = 500

_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_READ_CSV = re.compile(r"read_(?:csv|json_objects)\('((?:[^']|'')*)'")
# An absolute path that starts a word: at the start, or after a space, a quote or a parenthesis.
_ABSOLUTE = re.compile(r"(?<![^\s\"'(])/[^\s\"'),]+")
_KIND = re.compile(r"^[A-Za-z ]* Error: ")
# Where DuckDB's message ends and its hints, search space or the statement begin.
_TRAILER = ("LINE ", "Possible fixes", "Possible solutions", "The search space", "* ")
_INPUT_ERRORS = (duckdb.InvalidInputException, duckdb.ConversionException)


def connect(
    database: str = ":memory:", *, threads: int | None, memory_limit: str, temp_dir: Path
) -> duckdb.DuckDBPyConnection:
    temp_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "memory_limit": memory_limit,
        "temp_directory": str(temp_dir),
        "preserve_insertion_order": True,
        # Nothing a job runs may read files it was not handed, nor load code.
        "autoload_known_extensions": False,
        "autoinstall_known_extensions": False,
    }
    if threads:
        config["threads"] = threads
    con = duckdb.connect(database, config=config)
    con.execute("SET TimeZone = 'UTC'")
    return con


def _unquote(literal: str) -> str:
    return literal.replace("''", "'")


def clean_message(exc: duckdb.Error, sql: str) -> str:
    """DuckDB's message for users, on one line: files by base name, without its hints and the statement."""
    text = str(exc)
    paths = {_unquote(m) for m in _LITERAL.findall(sql) if m.startswith("/")}
    for path in sorted(paths, key=len, reverse=True):  # the statement's own paths may hold spaces
        text = text.replace(path, Path(path).name)
    text = _ABSOLUTE.sub(lambda m: Path(m.group()).name, text)
    kept: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(_TRAILER):
            break
        if line:
            kept.append(line)
    message = _KIND.sub("", " ".join(kept)) or type(exc).__name__
    return message if len(message) <= MESSAGE_MAX else message[: MESSAGE_MAX - 3] + "..."


def translate(exc: duckdb.Error, sql: str) -> Exception:
    """The exception to raise for ``exc``: :class:`EngineInputError` when a CSV file of ``sql`` is at fault."""
    inputs = [Path(_unquote(m)) for m in _READ_CSV.findall(sql)]
    named = [p for p in inputs if str(p) in str(exc)]
    reason = clean_message(exc, sql)
    if inputs and (isinstance(exc, _INPUT_ERRORS) or (isinstance(exc, duckdb.IOException) and named)):
        path = named[0] if named else inputs[0] if len(inputs) == 1 else None
        return EngineInputError(reason, path)
    return EngineError(f"{type(exc).__name__}: {reason}")


class DuckDBSession(EngineSession):
    def __init__(self, con: duckdb.DuckDBPyConnection, progress: Progress | None) -> None:
        self._con = con
        self._progress = progress

    @contextmanager
    def _watch(self) -> Iterator[None]:
        if self._progress is None:
            yield
            return
        done = threading.Event()

        def poll() -> None:
            while not done.wait(PROGRESS_INTERVAL_S):
                try:
                    pct = float(self._con.query_progress())
                except duckdb.Error:
                    return
                if pct >= 0 and self._progress is not None:
                    self._progress(pct)

        watcher = threading.Thread(target=poll, name="duckdb-progress", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()

    def _run(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            with self._watch():
                return self._con.execute(sql).fetchall()
        except duckdb.InterruptException:
            raise
        except duckdb.Error as exc:
            raise translate(exc, sql) from exc

    def copy(self, select_sql: str, dest: Path, fmt: Format = "parquet", *, row_group_rows: int | None = None) -> int:
        dest.parent.mkdir(parents=True, exist_ok=True)
        options = {
            "parquet": "FORMAT parquet, COMPRESSION zstd",
            "csv": "FORMAT csv, HEADER true",
            # One JSON text per line, as selected: CSV without quoting, header or a delimiter that can occur.
            "json": "FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01'",
            "json_array": "FORMAT json, ARRAY true",
        }[fmt]
        if fmt == "parquet" and row_group_rows:
            options += f", ROW_GROUP_SIZE {int(row_group_rows)}"
        rows = self._run(f"COPY ({select_sql}) TO {lit(str(dest))} ({options})")
        return int(rows[0][0]) if rows else 0

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self._run(sql)

    def interrupt(self) -> None:
        self._con.interrupt()


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, *, threads: int | None, memory_limit: str, temp_dir: Path) -> None:
        self._threads = threads
        self._memory_limit = memory_limit
        self._temp_dir = temp_dir

    @contextmanager
    def session(self, *, progress: Progress | None = None) -> Iterator[EngineSession]:
        con = connect(threads=self._threads, memory_limit=self._memory_limit, temp_dir=self._temp_dir)
        try:
            yield DuckDBSession(con, progress)
        finally:
            con.close()
