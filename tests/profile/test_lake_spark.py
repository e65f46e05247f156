"""The lake profile store on Spark ``local[2]``: the same runs as on the embedded store give the same results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audiencehub.engines.base import Engine
from audiencehub.metadata.store import MetadataStore
from tests.profile.test_lake_parity import A1, embedded_state, lake_store, metadata_store, play, script

pytest.importorskip("pyspark")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def spark_engine() -> Engine:
    from audiencehub.engines.spark import SparkEngine

    return SparkEngine(master="local[2]", ui=False)  # the process's one SparkSession, started on first use


@pytest.fixture
def metadata(tmp_path: Path) -> Iterator[MetadataStore]:
    yield from metadata_store(tmp_path)


def test_the_lake_store_on_spark_matches_the_embedded_store(
    tmp_path: Path, metadata: MetadataStore, spark_engine: Engine
) -> None:
    expected = embedded_state(tmp_path)
    store = lake_store(tmp_path, spark_engine, metadata)
    try:
        got = play(store, script(tmp_path / "files"))
    finally:
        store.close()
    assert got.results == expected.results
    for identity, profile in expected.lookups.items():
        assert got.lookups[identity] == profile, identity
    assert got.members == expected.members
    assert got.counts == expected.counts
    assert got.counts[A1] == {"realized": 2, "exited": 4}
    assert (got.profiles, got.applied) == (expected.profiles, expected.applied)
