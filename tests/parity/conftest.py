"""Two apps over homes of their own, one per engine: DuckDB (embedded) and Spark ``local[2]``.

Both are built once for the session (Spark takes some seconds to start; its SparkSession is the
process's and is reused). Each test runs the same job on both and compares what the jobs wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.config import Settings
from audiencehub.engines.spark import spark_session
from tests.api.support import headers_for
from tests.conftest import test_settings


@dataclass
class App:
    """One running app: its client, headers, settings and org."""

    engine: str
    client: TestClient
    headers: dict[str, str]
    settings: Settings
    org: str


def _app(tmp: pytest.TempPathFactory, engine: str) -> Iterator[App]:
    home: Path = tmp.mktemp(f"parity-{engine}") / "home"
    settings = test_settings(home, engine=engine, spark_master="local[2]", spark_ui=False)
    with TestClient(create_app(settings)) as client:
        org = json.loads((home / "credentials.json").read_text())["org_id"]
        yield App(engine, client, headers_for(client, home), settings, org)


@pytest.fixture(scope="session")
def duckdb_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    yield from _app(tmp_path_factory, "duckdb")


@pytest.fixture(scope="session")
def spark_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    # Start Spark before the first job, so that no job's wait includes the JVM's start.
    spark_session("local[2]", {}, ui=False)
    yield from _app(tmp_path_factory, "spark")


@pytest.fixture(scope="session")
def apps(duckdb_app: App, spark_app: App) -> tuple[App, App]:
    return duckdb_app, spark_app
