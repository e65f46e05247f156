"""The tables a Query Service session reads: its sandbox's datasets and its profile store, by name.

- A dataset is the table named after it in lower snake case (:func:`table_name`; seed 002's "Segment Export Job
  Dataset for CJA" is ``segment_export_job_dataset_for_cja``). Its rows are its committed (``success``) batches'
  Parquet files, nothing staged, read through ``pyarrow.dataset`` (the engine itself may not open files; or, with
  ``AUDIENCEHUB_QUERY_NATIVE_PARQUET``, by the engine, allowed exactly those files), with the columns of the
  dataset's schema (batches written before the schema gained a field read NULL there; fields the
  schema no longer has are not shown). When two datasets' names give one table name, the older dataset keeps it and
  the newer ones get ``_2``, ``_3``... in creation order.
- The profile store is the read-only table ``profile_snapshot_export_{merge policy id}`` (AEP's name for its daily
  profile snapshot datasets, one per merge policy; here the sandbox's default policy, read live): one row per
  merged profile with ``identityMap``, ``segmentMembership`` and the merged attributes as nested columns.

Only metadata rows of the session's own org and sandbox are read: nothing else can be named.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
from sqlalchemy import select

from audiencehub.engines.ingest_sql import ident
from audiencehub.engines.xdm_sql import duck_type
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Scope

PROFILE_PREFIX = "profile_snapshot_export_"
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def table_name(dataset_name: str) -> str:
    """A dataset name in lower snake case: accents dropped, every run of other characters one ``_``.

    A name that would start with a digit gets a leading ``_``; one with no letter or digit at all is ``dataset``.
    """
    ascii_name = unicodedata.normalize("NFKD", dataset_name).encode("ascii", "ignore").decode()
    name = _NOT_WORD.sub("_", ascii_name.lower()).strip("_")
    if not name:
        return "dataset"
    return "_" + name if name[0].isdigit() else name


def assign_names(datasets: Sequence[tuple[str, str]], reserved: Sequence[str] = ()) -> dict[str, str]:
    """Table name per dataset id for ``datasets`` ((id, name), oldest first): the older keeps a shared name."""
    taken = {r.lower() for r in reserved}
    out: dict[str, str] = {}
    for dataset_id, name in datasets:
        base = table_name(name)
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate)
        out[dataset_id] = candidate
    return out


def profile_table_name(merge_policy_id: str) -> str:
    """AEP's name of a merge policy's profile snapshot: ``profile_snapshot_export_`` and the id with ``_``."""
    return PROFILE_PREFIX + _NOT_WORD.sub("_", merge_policy_id.lower()).strip("_")


def arrow_schema(properties: dict[str, Any]) -> pa.Schema:
    """The Arrow schema of a dataset's batch files: one column per top-level field, typed as ingestion writes it."""
    if not properties:
        return pa.schema([])
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        cols = ", ".join(f"CAST(NULL AS {duck_type(node)}) AS {ident(name)}" for name, node in properties.items())
        schema = con.sql(f"SELECT {cols}").to_arrow_table().schema
    finally:
        con.close()
    return pa.schema([pa.field(f.name, f.type) for f in schema])


@dataclass(frozen=True)
class DatasetTable:
    """One dataset as a table: its committed batch files and the columns of its schema."""

    name: str
    dataset_id: str
    files: tuple[str, ...]
    schema: pa.Schema
    version: tuple[str, ...] = ()
    """What the table was built from (its batch ids): a session re-registers it only when this changes."""
    duck_types: tuple[str, ...] | None = None
    """The engine type of each column, as ingestion writes it (None: the schema is the files' own)."""

    def open(self) -> pds.Dataset:
        return pds.dataset(list(self.files), schema=self.schema, format="parquet")

    def file_columns(self) -> set[str]:
        """The top-level columns that at least one of the table's files has."""
        return {name for f in self.files for name in pq.read_schema(f).names}


@dataclass(frozen=True)
class ProfileTable:
    """The profile store's merged profiles, read when a statement names the table."""

    name: str
    snapshot: Callable[[], pa.RecordBatchReader] = field(compare=False)
    """A fresh reader of every merged profile of the sandbox, each call."""

    @property
    def schema(self) -> pa.Schema:
        reader = self.snapshot()
        try:
            return reader.schema
        finally:
            reader.close()


Table = DatasetTable | ProfileTable


class TableSource(Protocol):
    """Where a session finds its tables (:class:`SandboxTables`; tests give a fixed set)."""

    def load(self) -> dict[str, Table]:
        """Every table by (lower-case) name, as it is now."""
        ...


class SandboxTables:
    """Reads the catalog of one sandbox into tables, each statement anew (a new batch shows at once)."""

    def __init__(
        self,
        store: MetadataStore,
        scope: Scope,
        *,
        batch_dir: Callable[[str, str], Path],
        schema_of: Callable[[str], dict[str, Any] | None],
        profile: ProfileTable | None,
    ) -> None:
        """``batch_dir(dataset_id, batch_id)`` is a committed batch's folder; ``schema_of(schema_id)`` the
        dataset schema's top-level properties (None when it cannot be resolved: the files' own columns are used)."""
        self._store = store
        self._scope = scope
        self._batch_dir = batch_dir
        self._schema_of = schema_of
        self._profile = profile
        self._cache: dict[str, DatasetTable] = {}

    def load(self) -> dict[str, Table]:
        """Every table of the sandbox by (lower-case) name."""
        d, b = t.datasets.c, t.batches.c
        scope = self._scope
        with self._store.read() as conn:
            datasets = conn.execute(
                select(d.id, d.name, d.schema_id)
                .where(d.org_id == scope.org_id, d.sandbox == scope.sandbox)
                .order_by(d.created_ms, d.created_at, d.id)
            ).all()
            batches = conn.execute(
                select(b.dataset_id, b.id)
                .where(b.org_id == scope.org_id, b.sandbox == scope.sandbox, b.status == "success")
                .order_by(b.created_ms, b.created_at, b.id)
            ).all()
        by_dataset: dict[str, list[str]] = {}
        for dataset_id, batch_id in batches:
            by_dataset.setdefault(str(dataset_id), []).append(str(batch_id))
        reserved = [self._profile.name] if self._profile is not None else []
        names = assign_names([(str(r.id), str(r.name)) for r in datasets], reserved)
        out: dict[str, Table] = {}
        if self._profile is not None:
            out[self._profile.name] = self._profile
        fresh: dict[str, DatasetTable] = {}
        for row in datasets:
            dataset_id = str(row.id)
            version = tuple(by_dataset.get(dataset_id, []))
            cached = self._cache.get(dataset_id)
            name = names[dataset_id]
            if cached is not None and cached.version == version and cached.name == name:
                table = cached
            else:
                built = self._build(name, dataset_id, str(row.schema_id), version)
                if built is None:
                    continue
                table = built
            fresh[dataset_id] = table
            out[name] = table
        self._cache = fresh
        return out

    def _build(self, name: str, dataset_id: str, schema_id: str, batch_ids: tuple[str, ...]) -> DatasetTable | None:
        files = tuple(
            str(p)
            for batch_id in batch_ids
            for p in sorted(self._batch_dir(dataset_id, batch_id).glob("*.parquet"))
            if p.is_file()
        )
        properties = self._schema_of(schema_id)
        duck_types = None
        if properties:
            schema = arrow_schema(properties)
            duck_types = tuple(duck_type(node) for node in properties.values())
        elif files:
            schema = pa.unify_schemas(
                [pds.dataset(f, format="parquet").schema for f in files], promote_options="permissive"
            )
        else:
            return None
        if not len(schema):
            return None
        return DatasetTable(name, dataset_id, files, schema, batch_ids, duck_types)
