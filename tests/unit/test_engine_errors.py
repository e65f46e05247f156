"""Engine failures reach users without server paths, SQL or DuckDB's hints."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

from audiencehub.domain.audiences import FieldType
from audiencehub.domain.namespaces import Rule
from audiencehub.engines.base import EngineError, EngineInputError
from audiencehub.engines.duckdb import DuckDBEngine, DuckDBSession
from audiencehub.engines.ingest_sql import Column, lit, validated_select
from audiencehub.errors import AudiencehubError

COLUMNS = [Column("email", FieldType.STRING, Rule.EMAIL, 0), Column("tier", FieldType.STRING, None, 1)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder whose path has a space and a quote, as a server's home might."""
    path = tmp_path / "server home's" / "landing"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def session(tmp_path: Path) -> Iterator[DuckDBSession]:
    engine = DuckDBEngine(threads=2, memory_limit="256MB", temp_dir=tmp_path / "tmp")
    with engine.session() as s:
        assert isinstance(s, DuckDBSession)
        yield s


def _assert_clean(message: str, folder: Path) -> None:
    assert str(folder) not in message and str(folder.parent) not in message, message
    assert "SELECT" not in message and "LINE 1" not in message and "Possible fixes" not in message, message
    assert "\n" not in message, message


def test_a_truncated_gzip_file_is_an_input_error_naming_the_file(
    session: DuckDBSession, folder: Path, tmp_path: Path
) -> None:
    packed = gzip.compress(b"email,tier\n" + b"".join(b"u%d@example.com,t\n" % i for i in range(50_000)))
    src = folder / "list.csv.gz"
    src.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(EngineInputError) as caught:
        session.copy(validated_select(src, 2, COLUMNS, 0), tmp_path / "out.parquet")
    err = caught.value
    assert isinstance(err, AudiencehubError), "services report its detail as the run's failure"
    assert err.path == src
    assert err.detail.startswith("list.csv.gz: the file cannot be read: ")
    assert "GZIP" in err.reason
    _assert_clean(err.detail, folder)


def test_a_missing_file_is_an_input_error(session: DuckDBSession, folder: Path, tmp_path: Path) -> None:
    src = folder / "gone.csv"
    with pytest.raises(EngineInputError) as caught:
        session.copy(validated_select(src, 2, COLUMNS, 0), tmp_path / "out.parquet")
    assert caught.value.path == src
    assert "gone.csv" in caught.value.detail
    _assert_clean(caught.value.detail, folder)


def test_a_csv_error_keeps_the_reason_and_drops_the_hints(session: DuckDBSession, folder: Path) -> None:
    src = folder / "list.csv"
    src.write_bytes(b'email,tier\na@example.com,t\n"eve@example.com,t\n')
    # Without store_rejects, DuckDB raises on the broken quote with its hints and the statement.
    sql = (
        f"SELECT * FROM read_csv({lit(str(src))}, auto_detect = false, header = true, "
        "columns = {'a': 'VARCHAR', 'b': 'VARCHAR'}, quote = '\"', escape = '\"')"
    )
    with pytest.raises(EngineInputError) as caught:
        session.query(sql)
    err = caught.value
    assert err.path == src
    assert "CSV Error on Line: 3" in err.reason and "unterminated quote" in err.reason, err.reason
    _assert_clean(err.detail, folder)


def test_a_failure_that_is_not_the_inputs_is_an_engine_error_without_paths(
    session: DuckDBSession, folder: Path
) -> None:
    data = folder / "data.parquet"
    session.copy("SELECT 'x' AS v", data)
    with pytest.raises(EngineError) as caught:
        session.query(f"SELECT CAST(v AS INTEGER) FROM read_parquet({lit(str(data))})")
    message = str(caught.value)
    assert message.startswith("ConversionException: ") and "'x'" in message, message
    _assert_clean(message, folder)
    assert isinstance(caught.value.__cause__, Exception), "the engine's own error stays the cause, for the log"


def test_an_unknown_table_is_an_engine_error(session: DuckDBSession) -> None:
    with pytest.raises(EngineError, match="CatalogException"):
        session.query("SELECT * FROM no_such_table")
