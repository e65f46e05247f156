"""One merge order for every reader of merged values: lookups, the Query Service's profile table, exports, segments.

Two batches received at the same instant, each with one record of the same profile at the same row number, differ
only by batch id: the newest-value merge must pick the same record everywhere: the greater batch id (``b-2`` over
``b-10``), whatever order the batches were applied or scanned in.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow.parquet as pq

from audiencehub.profile.base import FragmentBatch
from audiencehub.profile.duckdb import DuckDBProfileStore
from audiencehub.profile.exports import ExportField, ExportOutput, ExportSpec
from tests.profile.test_stitching import LEAVES, SCOPE, store, write_batch

__all__ = ["store"]


def test_a_tie_on_time_is_broken_by_batch_id_in_lookups_snapshots_and_exports(
    store: DuckDBProfileStore, tmp_path: Path
) -> None:
    ds = str(uuid.uuid4())
    for batch_id, first in (("b-10", "FromB10"), ("b-2", "FromB2")):
        file = write_batch(tmp_path / f"{batch_id}.parquet", [{"ids": [("Email", "a@x.com", True)], "first": first}])
        store.apply_fragments(SCOPE, FragmentBatch(batch_id, ds, "profile", file, LEAVES, 1_700_000_000))

    entity = store.entity(SCOPE, "Email", "a@x.com")
    assert entity is not None and entity.attributes["person.name.firstName"] == "FromB2"

    snapshot = store.snapshot(SCOPE).read_all().to_pylist()
    assert [row["person"]["name"]["firstName"] for row in snapshot] == ["FromB2"]

    folder = tmp_path / "export"
    folder.mkdir()
    spec = ExportSpec(fields=(ExportField(("person", "name", "firstName"), "VARCHAR"),))
    assert store.export(SCOPE, spec, [ExportOutput(None, folder)]) == [1]
    rows = pq.read_table(folder).to_pylist()
    assert [row["person"]["name"]["firstName"] for row in rows] == ["FromB2"]
