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

from audiencehub.errors import AudiencehubError

Progress = Callable[[float], None]
"""Called from time to time with the percentage done of the statement that runs."""

Format = Literal["parquet", "csv", "json", "json_array"]
"""``json``: the JSON texts of a single-column SELECT, one per line (JSON lines); ``json_array``: one JSON array of
the rows as objects, nested values (structs, maps, lists) as JSON."""


class EngineError(Exception):
    """A statement failed for a reason that is not the input's; the message holds no server path or SQL.

    The engine's own exception, with all its detail, is the ``__cause__`` (for the log).
    """


class EngineInputError(AudiencehubError):
    """An input file cannot be read (broken gzip, ...): a failure the user fixes by fixing the file.

    ``detail`` (the message) names the file by its base name and holds no server path or SQL;
    ``reason`` is the same without the name, and ``path`` the file on this machine (None when the
    engine does not say which), so a caller that knows the file's landing-zone name can use it.
    """

    def __init__(self, reason: str, path: Path | None = None) -> None:
        super().__init__(
            f"{path.name}: the file cannot be read: {reason}" if path else f"an input file cannot be read: {reason}"
        )
        self.reason = reason
        self.path = path


class EngineSession(ABC):
    """A working context for one job. Not shared between threads."""

    @abstractmethod
    def copy(self, select_sql: str, dest: Path, fmt: Format = "parquet", *, row_group_rows: int | None = None) -> int:
        """Writes the result of ``select_sql`` to the file ``dest``; returns the number of rows written.

        ``row_group_rows``: Parquet row groups of about that many rows, for files read by point lookups (DuckDB
        decodes a whole row group to find one key). A hint: an engine whose writer adds a page index (Spark's)
        serves point reads from its pages and may ignore it.

        Raises :class:`EngineInputError` when an input file cannot be read, :class:`EngineError` on any
        other failure of the statement.
        """

    @abstractmethod
    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Runs ``sql`` and returns its (small) result; raises as :meth:`copy` does."""

    @abstractmethod
    def interrupt(self) -> None:
        """Stops the statement that runs now (called from another thread): that call fails."""


class Engine(ABC):
    name: str

    @abstractmethod
    def session(self, *, progress: Progress | None = None) -> AbstractContextManager[EngineSession]:
        """A fresh session; ``progress`` hears how far each statement is."""
