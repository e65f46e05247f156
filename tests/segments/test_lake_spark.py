"""Segment evaluation in the lake profile store on Spark ``local[2]``: one small random scenario (the oracle's full
expressions: merged attributes under merge policies, events, audiences with payloads, records' memberships, segments
of the first plan) checked against the Python evaluator, as ``test_lake_oracle.py`` checks the DuckDB engine."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from audiencehub.engines.base import Engine
from audiencehub.metadata.store import MetadataStore
from audiencehub.profile.lake import LakeProfileStore
from tests.profile.test_lake_spark import spark_engine
from tests.segments.oracle import World
from tests.segments.test_evaluation_oracle import STARTS
from tests.segments.test_lake_oracle import evaluate_and_check, lake, load, scenario

pytest.importorskip("pyspark")
pytestmark = pytest.mark.slow
__all__ = ["spark_engine"]


@pytest.fixture
def store(tmp_path: Path, metadata: MetadataStore, spark_engine: Engine) -> Iterator[LakeProfileStore]:
    s = lake(tmp_path, spark_engine, metadata)
    yield s
    s.close()


@pytest.fixture
def metadata(tmp_path: Path) -> Iterator[MetadataStore]:
    meta = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    meta.create_all()
    yield meta
    meta.dispose()


def test_a_small_random_scenario_on_spark_matches_the_python_evaluator(store: LakeProfileStore) -> None:
    rng = random.Random(3)
    start = STARTS[0]
    world = World(rng, start, profiles=12)
    load(store, world)
    first, second = scenario(rng, world, 5, 2, full=True)
    ttl = {sid: 30 for sid, _, _ in first[:2]}
    evaluate_and_check(store, world, start, "spark-1", [first, second], ttl)
    at = start + dt.timedelta(days=45)
    world.mutate(at)
    load(store, world)
    evaluate_and_check(store, world, at, "spark-2", [first, second], ttl)
