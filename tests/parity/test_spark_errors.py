"""Spark's failures reach users as the engine interface says: an unreadable input file names the file by its base
name; anything else is an EngineError; neither holds a server path, SQL or a Java stack."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from audiencehub.domain.audiences import FieldType
from audiencehub.domain.namespaces import Rule
from audiencehub.engines.base import EngineError, EngineInputError
from audiencehub.engines.ingest_sql import Column, validated_select
from audiencehub.engines.spark import SparkEngine, parse_conf


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "server home's" / "landing"
    path.mkdir(parents=True)
    return path


def _assert_clean(message: str, folder: Path) -> None:
    assert str(folder.parent) not in message and "%20" not in message, message
    assert "SELECT" not in message and "\n" not in message and "at org." not in message, message


def test_a_broken_gzip_file_is_an_input_error_naming_the_file(folder: Path) -> None:
    path = folder / "list.csv.gz"
    path.write_bytes(gzip.compress(b"email\n" + b"a@example.com\n" * 1000)[:-30])
    with SparkEngine(master="local[2]", ui=False).session() as session, pytest.raises(EngineInputError) as err:
        session.copy(validated_select(path, 1, [Column("email", FieldType.STRING, Rule.EMAIL, 0)], 0), folder / "v")
    assert err.value.path == path
    assert err.value.detail.startswith("list.csv.gz: the file cannot be read: ")
    assert "end of input stream" in err.value.reason
    _assert_clean(err.value.detail, folder)


def test_a_failing_statement_is_an_engine_error_without_paths(folder: Path) -> None:
    with SparkEngine().session() as session, pytest.raises(EngineError) as err:
        session.query(f"SELECT nope FROM read_parquet('{folder / 'missing.parquet'}')")
    _assert_clean(str(err.value), folder)
    assert "missing.parquet" in str(err.value)


def test_sql_without_a_faithful_translation_is_refused_by_name() -> None:
    with (
        SparkEngine().session() as session,
        pytest.raises(EngineError, match=r"cannot run this statement.*first match"),
    ):
        session.query("SELECT regexp_replace('a-b', '-', '')")


def test_spark_conf_pairs() -> None:
    assert parse_conf("spark.executor.memory=4g, spark.a=b=c\\n") == {
        "spark.executor.memory": "4g",
        "spark.a": "b=c\\n",
    }
    assert parse_conf(None) == {}
    with pytest.raises(ValueError, match="not key=value"):
        parse_conf("spark.executor.memory")


def test_without_pyspark_the_engine_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyspark" else real(name, *a))
    with pytest.raises(EngineError, match=r"pip install 'audiencehub\[spark\]'"):
        SparkEngine()
