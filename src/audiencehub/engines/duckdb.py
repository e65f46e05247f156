"""The embedded engine: DuckDB, in process, one in-memory connection per job."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from audiencehub.engines.base import Engine, EngineSession, Format, Progress

PROGRESS_INTERVAL_S = 0.5


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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

    def copy(self, select_sql: str, dest: Path, fmt: Format = "parquet") -> int:
        dest.parent.mkdir(parents=True, exist_ok=True)
        options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER true"
        with self._watch():
            row = self._con.execute(f"COPY ({select_sql}) TO {quote_literal(str(dest))} ({options})").fetchone()
        return int(row[0]) if row else 0

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self._watch():
            return self._con.execute(sql).fetchall()

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
