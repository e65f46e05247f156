"""Export jobs in the lake profile store: the embedded store's builder (:class:`exports.ExportSQL`) over one version's
Parquet files, run and written by an engine session (DuckDB or Spark).

The builder reads tables through a reference function: here a table's name becomes ``read_parquet([...])`` of the
files the version names (a typed empty relation when it has none), and profile ids are text. The version is fixed
when the export starts (its files never change), so every output and slice reads one snapshot of the store, as the
embedded store's transaction gives. Each output's slice is one ``session.copy`` to its ``part-{n}.parquet``, as in
the embedded store; only the namespaces of records' memberships and of identities (a few rows) reach the driver.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from audiencehub.engines.base import Engine, EngineSession
from audiencehub.profile import exports
from audiencehub.profile import lake_sql as q
from audiencehub.profile.exports import ExportOutput, ExportSpec, Store

if TYPE_CHECKING:
    from audiencehub.profile.lake_work import Manifest

KEY_TYPE = "VARCHAR"
"""The lake store keeps profile ids as text (``lake_sql``'s tables)."""
UNITS = {"": 1, "B": 1, "BYTES": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class _Version:
    """One version's tables as SQL over their files."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.m = manifest

    def files(self, table: str) -> list[Path]:
        return [self.root / f for f in self.m.tables.get(table, [])]

    def ref(self, table: str) -> str:
        return q.relation(self.files(table), self.m.columns(table))

    def profiles(self) -> int:
        """The identities' row count from the files' footers (the embedded store's ``estimated_size``)."""
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in self.files(q.IDENTITIES))


def memory_bytes(setting: str) -> float:
    """A memory limit setting (``4GB``, ``512MB``, ``1.5 GiB``) in bytes; 1 GiB when it cannot be read."""
    found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", setting)
    if found is None or found[2].upper() not in UNITS:
        return float(2**30)
    return float(found[1]) * UNITS[found[2].upper()]


def read_store(session: EngineSession, version: _Version, *, identities: bool) -> Store:
    """What the version holds, in the shape of :func:`exports.read_store`: membership tables (external audiences'
    and segments'), fragment tables with files, and the namespaces of records' memberships and of identities."""
    m = version.m
    audiences = {a: (str(v["namespace"]), int(v["ttl_days"]), str(v["table"])) for a, v in m.members()}
    fragments = [
        (dataset_id, str(f["kind"]), str(f["table"]), {str(c) for c, _ in f["columns"]})
        for dataset_id, f in sorted(m.fragments.items())
        if version.files(str(f["table"]))
    ]

    def namespaces(table: str) -> list[str]:
        if not version.files(table):
            return []
        return [str(r[0]) for r in session.query(f"SELECT DISTINCT ns FROM {version.ref(table)} t ORDER BY 1")]

    found = namespaces(q.IDENTITIES) if identities else []
    return Store(audiences, fragments, namespaces(q.FRAGMENT_MEMBERSHIPS), found)


def export(
    engine: Engine,
    root: Path,
    manifest: Manifest,
    spec: ExportSpec,
    outputs: list[ExportOutput],
    *,
    memory_limit: str,
) -> list[int]:
    """Writes every output from the version ``manifest`` (its files under the sandbox's ``_profile`` folder
    ``root``), in the slices of profile ids the embedded store would use under ``memory_limit``; answers each output's
    row count (:meth:`ProfileStore.export`)."""
    version = _Version(root, manifest)
    counts = [0] * len(outputs)
    with engine.session() as session:
        store = read_store(session, version, identities=spec.identity_map)
        plan = exports.ExportSQL(store, spec, table=version.ref, key_type=KEY_TYPE)
        slices = exports.slices_for(plan, version.profiles(), memory_bytes(memory_limit))
        for n in range(slices):
            bounds = exports.slice_bounds(n, slices, KEY_TYPE)
            for k, o in enumerate(outputs):
                counts[k] += session.copy(plan.rows(o.members, bounds), o.folder / f"part-{n:05d}.parquet")
    return counts
