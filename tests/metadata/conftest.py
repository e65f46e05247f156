"""The metadata suite runs on both backends: ``store`` is a migrated MetadataStore on SQLite, then on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audiencehub.metadata.store import MetadataStore


def open_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> MetadataStore:
    """A fresh, unmigrated store: a SQLite file under ``tmp_path`` or a new database on the test PostgreSQL."""
    if backend == "sqlite":
        return MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    url: str = request.getfixturevalue("postgres_url")
    return MetadataStore(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def bare_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MetadataStore]:
    """An empty database, not migrated yet."""
    store = open_store(backend, tmp_path, request)
    yield store
    store.dispose()


@pytest.fixture
def store(bare_store: MetadataStore) -> MetadataStore:
    """A store migrated to the newest revision."""
    bare_store.migrate()
    return bare_store
