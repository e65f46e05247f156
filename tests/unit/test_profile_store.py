"""The embedded profile store on its own: audience records and secondary identities."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from audiencehub.domain.audiences import FieldType
from audiencehub.engines.ingest_sql import CHECK, VALUE, field_column, ident, lit
from audiencehub.metadata.store import Scope
from audiencehub.profile.base import AudienceRows, IdentityColumn
from audiencehub.profile.duckdb import DuckDBProfileStore

SCOPE = Scope("ORG@AdobeOrg", "prod")
AUDIENCE = "6b2a4d7e-0000-4000-8000-000000000001"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBProfileStore]:
    s = DuckDBProfileStore(tmp_path / "lake", memory_limit="256MB", threads=2, temp_dir=tmp_path / "tmp")
    yield s
    s.close()


def _validated(path: Path, fields: list[str], rows: list[tuple[Any, ...]]) -> Path:
    """A validated file as the DATASET_INGEST stage writes it: string fields, every row accepted."""
    cols = ", ".join(f"CAST(NULL AS VARCHAR) AS {ident(field_column(f))}" for f in fields)
    con = duckdb.connect()
    try:
        if rows:
            values = ", ".join("(" + ", ".join(lit(str(v)) for v in row) + ")" for row in rows)
            names = ", ".join(f"v{i}" for i in range(len(fields)))
            select = ", ".join(f"v{i} AS {ident(field_column(f))}" for i, f in enumerate(fields))
            sql = f"SELECT {select}, CAST(NULL AS INTEGER) AS {CHECK}, CAST(NULL AS VARCHAR) AS {VALUE} "
            sql += f"FROM (VALUES {values}) t({names})"
        else:
            sql = f"SELECT {cols}, CAST(NULL AS INTEGER) AS {CHECK}, CAST(NULL AS VARCHAR) AS {VALUE} LIMIT 0"
        con.execute(f"COPY ({sql}) TO {lit(str(path))} (FORMAT parquet)")
    finally:
        con.close()
    return path


def _rows(files: list[Path], *, run_id: str, ttl_days: int = 30, crm: bool = False) -> AudienceRows:
    identities = [IdentityColumn("email", "Email")] + ([IdentityColumn("crm", "CRMID")] if crm else [])
    return AudienceRows(
        run_id=run_id,
        audience_id=AUDIENCE,
        namespace="CustomerAudienceUpload",
        ttl_days=ttl_days,
        files=files,
        identities=identities,
        payload=[("tier", FieldType.STRING)],
        delete_column=None,
        replace=False,
        qualified_at=1_700_000_000,
    )


def _ttl(store: DuckDBProfileStore) -> int:
    with store._cursor(SCOPE) as cur:
        row = cur.execute("SELECT ttl_days FROM audiences WHERE audience_id = ?", [AUDIENCE]).fetchone()
    assert row is not None
    return int(row[0])


def test_a_run_records_an_audience_the_store_does_not_know_with_its_ttl(
    store: DuckDBProfileStore, tmp_path: Path
) -> None:
    files = [_validated(tmp_path / "v.parquet", ["email", "tier"], [("a@example.com", "gold")])]
    store.apply_audience(SCOPE, _rows(files, run_id="r1", ttl_days=12))
    assert _ttl(store) == 12


def test_a_run_keeps_the_ttl_that_set_audience_recorded(store: DuckDBProfileStore, tmp_path: Path) -> None:
    store.set_audience(SCOPE, AUDIENCE, "CustomerAudienceUpload", 5)
    files = [_validated(tmp_path / "v.parquet", ["email", "tier"], [("a@example.com", "gold")])]
    store.apply_audience(SCOPE, _rows(files, run_id="r1", ttl_days=40))
    assert _ttl(store) == 5
    store.set_audience(SCOPE, AUDIENCE, "CustomerAudienceUpload", 7)
    assert _ttl(store) == 7


@pytest.mark.parametrize("dedupe", [False, True], ids=["unique-rows", "repeated-first-identity"])
def test_a_repeated_new_secondary_identity_joins_the_first_rows_profile(
    store: DuckDBProfileStore, tmp_path: Path, dedupe: bool
) -> None:
    # Many rows share the CRMID C-1 with different emails; the first of them (file order) keeps it.
    rows = [(f"user{i:05d}@example.com", "C-1", "t") for i in range(20_000)]
    rows.insert(0, ("first@example.com", "C-1", "t"))
    if dedupe:
        rows.append(("user00005@example.com", "", "t"))  # the same email twice: the last row wins
    second = [("later@example.com", "C-1", "t")]
    files = [
        _validated(tmp_path / "v0.parquet", ["email", "crm", "tier"], rows),
        _validated(tmp_path / "v1.parquet", ["email", "crm", "tier"], second),
    ]
    store.apply_audience(SCOPE, _rows(files, run_id="r1", crm=True))
    crm = store.lookup(SCOPE, "CRMID", "C-1")
    first = store.lookup(SCOPE, "Email", "first@example.com")
    assert crm is not None and first is not None
    assert crm.profile_id == first.profile_id
    assert ("CRMID", "C-1") in first.identities
