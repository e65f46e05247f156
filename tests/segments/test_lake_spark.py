"""Segment evaluation in the lake profile store on Spark ``local[2]``: one small random scenario checked against the
Python evaluator, as ``test_lake_oracle.py`` checks the DuckDB engine.

Its expressions read memberships (with payload conditions), records' memberships, earlier segments and events, not
merged attributes: their merge key (``columns.merge_key``) shifts HUGEINTs, which Spark cannot (its ``shiftleft``
takes no DECIMAL)."""

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
from tests.segments.test_lake_oracle import MembershipGen, evaluate_and_check, lake, load

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
    world = World(rng, start, profiles=15)
    load(store, world)
    gen = MembershipGen(rng, world)
    gen.with_events = True
    first, second = [], []
    for n in range(7):
        sid = f"spark-segment-{n}"
        world.defined.add(sid)
        (first if n < 5 else second).append(
            (sid, gen.profile(3, tuple(s for s, _, _ in first) if n >= 5 else ()), None)
        )
    ttl = {sid: 30 for sid, _, _ in first[:2]}
    evaluate_and_check(store, world, start, "spark-1", [first, second], ttl)
    at = start + dt.timedelta(days=45)
    world.mutate(at)
    load(store, world)
    evaluate_and_check(store, world, at, "spark-2", [first, second], ttl)
