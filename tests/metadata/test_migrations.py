"""Alembic migrations: the migrated schema is tables.py's, on SQLite and PostgreSQL; homes made before Alembic."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, Table, create_engine, inspect, select, text

from audiencehub.metadata import tables as t
from audiencehub.metadata.store import BASELINE, MIGRATIONS, MetadataStore, _alembic_config, engine_url

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def schema_diff(store: MetadataStore) -> list[Any]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        diff: list[Any] = compare_metadata(context, t.metadata)
    return diff


def version(store: MetadataStore) -> list[str]:
    with store.read() as conn:
        return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]


def test_the_migrated_schema_is_tables_py(store: MetadataStore) -> None:
    # A change to tables.py without a revision in metadata/migrations/versions fails here.
    assert schema_diff(store) == [], "tables.py and the migrations differ: add a revision (see docs/drafts/postgres.md)"
    assert version(store) == [HEAD]


def test_migrating_again_changes_nothing(store: MetadataStore) -> None:
    store.migrate()
    store.migrate()
    assert version(store) == [HEAD]
    assert schema_diff(store) == []


def test_plain_postgresql_urls_use_psycopg_3() -> None:
    assert engine_url("postgresql://u:p@h:5432/db").drivername == "postgresql+psycopg"
    assert engine_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert engine_url("postgresql+psycopg2://u@h/db").drivername == "postgresql+psycopg2"  # an explicit driver stays
    assert engine_url("sqlite:////tmp/x.db").drivername == "sqlite"


def test_processes_starting_together_migrate_once(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from tests.metadata.conftest import open_store

    first = open_store(backend, tmp_path, request)
    stores = [first] + [MetadataStore(first.url) for _ in range(3)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def migrate(store: MetadataStore) -> None:
        try:
            start.wait()
            store.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert version(first) == [HEAD]
        assert schema_diff(first) == []
    finally:
        for store in stores:
            store.dispose()


def _legacy_home(path: Path) -> None:
    """A SQLite home as a version before Alembic left it: create_all of an older tables.py, no alembic_version.

    The older version lacked the ``queries`` table, ``datasets.created_ms`` and the index ``ix_segment_jobs_scope``.
    """
    engine = create_engine(f"sqlite:///{path}")
    t.metadata.create_all(engine, tables=[table for table in t.metadata.sorted_tables if table.name != "queries"])
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE datasets DROP COLUMN created_ms"))
        conn.execute(text("DROP INDEX ix_segment_jobs_scope"))
        conn.execute(text("INSERT INTO orgs (id, name, created_at) VALUES ('ORG@AdobeOrg', 'kept', 1)"))
    engine.dispose()


def test_a_home_made_before_alembic_is_completed_stamped_and_upgraded(tmp_path: Path) -> None:
    _legacy_home(tmp_path / "metadata.db")
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    try:
        store.migrate()
        assert version(store) == [HEAD]
        assert schema_diff(store) == []
        with store.read() as conn:
            assert conn.execute(select(t.orgs.c.name)).scalars().all() == ["kept"]
            indexes = {i["name"] for i in inspect(conn).get_indexes("segment_jobs")}
        assert "ix_segment_jobs_scope" in indexes
    finally:
        store.dispose()


def test_the_baseline_is_the_first_revision() -> None:
    script = ScriptDirectory(str(MIGRATIONS))
    assert [r.revision for r in script.walk_revisions()][-1] == BASELINE


def test_a_postgresql_database_with_tables_but_no_alembic_version_is_refused(postgres_url: str) -> None:
    engine = create_engine(engine_url(postgres_url))
    Table("orgs", MetaData(), Column("id", String(8), primary_key=True)).create(engine)
    engine.dispose()
    store = MetadataStore(postgres_url)
    try:
        with pytest.raises(RuntimeError, match="only SQLite homes predate it"):
            store.migrate()
    finally:
        store.dispose()


def test_migrations_run_without_an_alembic_ini(tmp_path: Path) -> None:
    config = _alembic_config(None)  # type: ignore[arg-type]
    assert config.config_file_name is None
    assert Path(config.get_main_option("script_location") or "").is_dir()
