"""An app whose settings carry DATABASE_URL keeps its catalog in PostgreSQL, not in the home's metadata.db."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from audiencehub.config import Settings


@pytest.mark.parametrize("metadata_backend", ["postgresql"])
def test_an_app_on_postgresql_keeps_its_catalog_there(
    client: TestClient, headers: dict[str, str], settings: Settings, metadata_backend: str
) -> None:
    assert client.app.state.container.store.dialect == "postgresql"  # type: ignore[attr-defined]
    resp = client.post(
        "/data/foundation/catalog/dataSets",
        json={"name": "Kept in PostgreSQL", "schemaRef": {"id": "_xdm.context.profile__union"}},
        headers=headers,
    )
    assert resp.status_code in (200, 201), resp.text
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM datasets")]
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone() or ("",)
    assert names == ["Kept in PostgreSQL"]
    assert revision
    assert not (settings.home / "metadata.db").exists()
