"""The engine interface: where data work runs (DuckDB embedded; Spark for scale-out, later).

Jobs build portable SELECT statements (``engines/ingest_sql.py``) and hand them to an engine
session with input and output locations; the engine executes them and reports row counts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal

Progress = Callable[[float], None]
"""Called from time to time with the percentage done of the statement that runs."""

Format = Literal["parquet", "csv"]


class EngineSession(ABC):
    """A working context for one job. Not shared between threads."""

    @abstractmethod
    def copy(self, select_sql: str, dest: Path, fmt: Format = "parquet") -> int:
        """Writes the result of ``select_sql`` to the file ``dest``; returns the number of rows written."""

    @abstractmethod
    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Runs ``sql`` and returns its (small) result."""

    @abstractmethod
    def interrupt(self) -> None:
        """Stops the statement that runs, from another thread."""


class Engine(ABC):
    name: str

    @abstractmethod
    def session(self, *, progress: Progress | None = None) -> AbstractContextManager[EngineSession]:
        """A fresh session; ``progress`` hears how far each statement is."""
