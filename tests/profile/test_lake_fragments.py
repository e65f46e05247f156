"""Profile-enabled datasets on the lake profile store: the same batches as on the embedded store give the same
results, merged profiles (Profile Access API), entities and snapshot rows (the Query Service's profile table).

Each test plays one sequence on both stores (the lake one on DuckDB; one small sequence on Spark ``local[2]``) and
compares what they answer, profile ids left out (random in each store)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from audiencehub.engines.base import Engine
from audiencehub.engines.spark_sql import Scan, to_spark
from audiencehub.metadata.store import MetadataStore
from audiencehub.profile.base import AudienceRows, Entity, FragmentBatch, FragmentResult, IdentityColumn, ProfileStore
from audiencehub.profile.duckdb import DuckDBProfileStore
from audiencehub.profile.lake import LakeProfileStore
from tests.profile.test_lake_parity import duckdb_engine, lake_store, metadata_store
from tests.profile.test_lake_versions import _Recording
from tests.profile.test_stitching import LEAVES, SCOPE, random_graph, write_batch

Stores = tuple[DuckDBProfileStore, LakeProfileStore]


@pytest.fixture
def metadata(tmp_path: Path) -> Iterator[MetadataStore]:
    yield from metadata_store(tmp_path)


def pair(tmp_path: Path, engine: Engine, metadata: MetadataStore) -> Stores:
    embedded = DuckDBProfileStore(tmp_path / "emb", memory_limit="512MB", threads=2, temp_dir=tmp_path / "etmp")
    return embedded, lake_store(tmp_path, engine, metadata)


@pytest.fixture
def stores(tmp_path: Path, metadata: MetadataStore) -> Iterator[Stores]:
    embedded, lake = pair(tmp_path, duckdb_engine(tmp_path), metadata)
    yield embedded, lake
    embedded.close()
    lake.close()


class Player:
    """Applies one sequence to both stores: batch files are written once, ids are fixed by the test."""

    def __init__(self, stores: Stores, tmp: Path) -> None:
        self.stores = stores
        self.tmp = tmp

    def batch(
        self,
        dataset: str,
        records: list[dict[str, Any]],
        at: float = 1_700_000_000,
        kind: str = "profile",
        batch_id: str | None = None,
        leaves: list[tuple[str, str, str]] = LEAVES,
    ) -> FragmentResult:
        batch_id = batch_id or str(uuid.uuid4())
        file = write_batch(self.tmp / f"{batch_id}.parquet", records)
        batch = FragmentBatch(batch_id, dataset, kind, file, leaves, at)
        got = [s.apply_fragments(SCOPE, batch) for s in self.stores]
        assert got[1] == got[0], batch_id
        return got[0]

    def audience(self, audience_id: str, column: str, ns: str, values: list[str], at: int) -> None:
        path = self.tmp / f"aud-{uuid.uuid4()}.parquet"
        con = duckdb.connect()
        rows = " UNION ALL ".join(f"SELECT '{v}' AS __ah_f_{column}, NULL::VARCHAR AS __ah_check" for v in values)
        con.execute(f"COPY ({rows}) TO '{path}' (FORMAT parquet)")
        con.close()
        rows_ = AudienceRows(
            str(uuid.uuid4()), audience_id, "CustomerAudienceUpload", 30, [path], [IdentityColumn(column, ns)], [],
            None, False, at,
        )  # fmt: skip
        got = [s.apply_audience(SCOPE, rows_) for s in self.stores]
        assert got[1] == got[0]

    def same(self, read: Callable[[ProfileStore], Any]) -> Any:
        """What both stores answer (asserted equal)."""
        embedded, lake = (read(s) for s in self.stores)
        assert lake == embedded
        return embedded


def entity_view(e: Entity | None) -> Any:
    if e is None:
        return None
    return {
        "identities": sorted(e.identities),
        "attributes": e.attributes,
        "sources": e.sources,
        "memberships": sorted(
            (m.namespace, m.audience_id, m.status, m.last_qualification_time, repr(sorted(m.payload.items())))
            for m in e.memberships
        ),
        "last_modified": e.last_modified,
        "id": e.entity_id if ":" in e.entity_id else "profile",
    }


def entity(ns: str, value: str, **kw: Any) -> Callable[[ProfileStore], Any]:
    return lambda s: entity_view(s.entity(SCOPE, ns, value, **kw))


def snapshot_rows(s: ProfileStore, **kw: Any) -> list[Any]:
    return sorted(s.snapshot(SCOPE, **kw).read_all().to_pylist(), key=repr)


# ----- the scenarios of test_stitching.py and test_merge_order.py, on both stores -----


def test_identities_in_one_record_link_and_later_values_win(stores: Stores, tmp_path: Path) -> None:
    p = Player(stores, tmp_path)
    ds = str(uuid.uuid4())
    r1 = p.batch(ds, [{"ids": [("Email", "a@x.com", True), ("CRMID", "c1", False)], "first": "Ann", "points": 5}], 100)
    assert (r1.records, r1.profilesCreated, r1.identitiesAdded) == (1, 1, 2)
    p.batch(ds, [{"ids": [("CRMID", "c1", True)], "first": "Anna"}], 200)
    got = p.same(entity("Email", "a@x.com"))
    assert got["attributes"] == {"person.name.firstName": "Anna", "loyalty.points": 5}
    assert got["identities"] == [("CRMID", "c1"), ("Email", "a@x.com")]
    lake = stores[1]
    assert lake.entity(SCOPE, "CRMID", "c1").entity_id == lake.entity(SCOPE, "Email", "a@x.com").entity_id  # type: ignore[union-attr]
    assert p.same(lambda s: s.count_profiles(SCOPE)) == 1


def test_a_record_that_links_two_profiles_merges_them_with_their_memberships(stores: Stores, tmp_path: Path) -> None:
    p = Player(stores, tmp_path)
    ds = str(uuid.uuid4())
    p.batch(ds, [{"ids": [("Email", "a@x.com", True)], "first": "Ann"}, {"ids": [("CRMID", "c1", True)], "points": 7}])
    lake = stores[1]
    before = {lake.entity(SCOPE, "Email", "a@x.com").entity_id, lake.entity(SCOPE, "CRMID", "c1").entity_id}  # type: ignore[union-attr]
    assert len(before) == 2
    audience = str(uuid.uuid4())
    now = int(time.time())
    p.audience(audience, "crm", "CRMID", ["c1"], now)
    result = p.batch(
        ds, [{"ids": [("Email", "a@x.com", True), ("CRMID", "c1", False)], "seg": {"ups": {"s1": "realized"}}}]
    )
    assert result.profilesMerged == 1 and result.profilesCreated == 0
    merged = p.same(entity("CRMID", "c1"))
    assert merged == p.same(entity("Email", "a@x.com"))
    assert merged["attributes"] == {"person.name.firstName": "Ann", "loyalty.points": 7}
    assert {m[:3] for m in merged["memberships"]} == {
        ("CustomerAudienceUpload", audience, "realized"),
        ("ups", "s1", "realized"),
    }
    kept = lake.entity(SCOPE, "CRMID", "c1")
    assert kept is not None and kept.entity_id in before
    assert lake.lookup(SCOPE, "Email", "a@x.com").profile_id == kept.entity_id  # type: ignore[union-attr]
    assert p.same(lambda s: s.counts(SCOPE, audience)) == {"realized": 1, "exited": 0}
    assert p.same(lambda s: s.record_segments(SCOPE, "s1")) == ["ups"]
    assert p.same(lambda s: s.count_profiles(SCOPE)) == 1


def test_an_audience_row_that_links_two_profiles_moves_their_fragments(stores: Stores, tmp_path: Path) -> None:
    p = Player(stores, tmp_path)
    ds = str(uuid.uuid4())
    p.batch(
        ds,
        [
            {"ids": [("Email", "a@x.com", True)], "first": "Ann", "seg": {"ups": {"s1": "realized"}}},
            {"ids": [("CRMID", "c1", True)], "points": 7},
        ],
    )
    # An audience row with both identities links them, as a record does.
    path = tmp_path / "both.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 'a@x.com' AS __ah_f_email, 'c1' AS __ah_f_crm, NULL::VARCHAR AS __ah_check) TO '{path}'")
    con.close()
    rows = AudienceRows(
        "run-1", str(uuid.uuid4()), "CustomerAudienceUpload", 30, [path],
        [IdentityColumn("email", "Email"), IdentityColumn("crm", "CRMID")], [], None, False, int(time.time()),
    )  # fmt: skip
    assert stores[1].apply_audience(SCOPE, rows) == stores[0].apply_audience(SCOPE, rows)
    merged = p.same(entity("CRMID", "c1"))
    assert merged["attributes"] == {"person.name.firstName": "Ann", "loyalty.points": 7}
    assert ("ups", "s1", "realized") in {m[:3] for m in merged["memberships"]}
    p.same(snapshot_rows)


def test_dataset_precedence_beats_time(stores: Stores, tmp_path: Path) -> None:
    p = Player(stores, tmp_path)
    crm, web = str(uuid.uuid4()), str(uuid.uuid4())
    p.batch(crm, [{"ids": [("Email", "a@x.com", True)], "first": "FromCRM", "seg": {"ups": {"s": "exited"}}}], 100)
    p.batch(web, [{"ids": [("Email", "a@x.com", True)], "first": "FromWeb", "seg": {"ups": {"s": "realized"}}}], 200)
    assert p.same(entity("Email", "a@x.com"))["attributes"]["person.name.firstName"] == "FromWeb"
    by_crm = p.same(entity("Email", "a@x.com", precedence=[crm, web]))
    assert by_crm["attributes"]["person.name.firstName"] == "FromCRM"
    assert by_crm["sources"] == sorted([crm, web])
    assert [m[2] for m in by_crm["memberships"]] == ["exited"]
    assert [r["person"]["name"]["firstName"] for r in p.same(lambda s: snapshot_rows(s, precedence=[crm]))] == [
        "FromCRM"
    ]


def test_a_batch_is_applied_once(stores: Stores, tmp_path: Path) -> None:
    p = Player(stores, tmp_path)
    ds = str(uuid.uuid4())
    first = p.batch(ds, [{"ids": [("Email", "a@x.com", True)], "points": 1}], batch_id="batch-1")
    again = p.batch(ds, [{"ids": [("Email", "a@x.com", True)], "points": 2}], batch_id="batch-1")
    assert first == again
    assert p.same(lambda s: (s.batch_applied(SCOPE, "batch-1"), s.batch_applied(SCOPE, "batch-2"))) == (True, False)
    assert p.same(entity("Email", "a@x.com"))["attributes"] == {"loyalty.points": 1}
    version = stores[1].manifest(SCOPE).version
    p.batch(ds, [{"ids": [("Email", "a@x.com", True)]}], batch_id="batch-1")
    assert stores[1].manifest(SCOPE).version == version  # nothing written


def test_entities_stay_apart_from_people(stores: Stores, tmp_path: Path) -> None:
    p = Player(stores, tmp_path)
    ds = str(uuid.uuid4())
    p.batch(ds, [{"ids": [("ExtSegments", "seg-1", True)], "first": "not a person"}], kind="entity")
    assert p.same(entity("ExtSegments", "seg-1")) is None  # no people profile
    got = p.same(entity("ExtSegments", "seg-1", kind="entity"))
    assert got["attributes"]["person.name.firstName"] == "not a person" and got["id"] == "ExtSegments:seg-1"
    assert p.same(lambda s: s.count_profiles(SCOPE)) == 0
    assert p.same(snapshot_rows) == []


def test_random_graphs_match_a_union_find(stores: Stores, tmp_path: Path) -> None:
    p = Player(stores, tmp_path)
    ds = str(uuid.uuid4())
    batches, expected = random_graph(random.Random(7), 40, 4, 20)
    for n, records in enumerate(batches):
        p.batch(ds, records, at=1_700_000_000 + n)
    lake = stores[1]
    for component in expected:
        ids = {lake.entity(SCOPE, ns, v).entity_id for ns, v in component}  # type: ignore[union-attr]
        assert len(ids) == 1
        got = p.same(entity(*next(iter(component))))
        assert set(got["identities"]) == component
    assert p.same(lambda s: s.count_profiles(SCOPE)) == len(expected)
    assert len(p.same(snapshot_rows)) == len(expected)


def test_a_tie_on_time_is_broken_by_batch_id(stores: Stores, tmp_path: Path) -> None:
    p = Player(stores, tmp_path)
    ds = str(uuid.uuid4())
    for batch_id, first in (("b-10", "FromB10"), ("b-2", "FromB2")):
        p.batch(ds, [{"ids": [("Email", "a@x.com", True)], "first": first}], batch_id=batch_id)
    assert p.same(entity("Email", "a@x.com"))["attributes"]["person.name.firstName"] == "FromB2"
    assert [r["person"]["name"]["firstName"] for r in p.same(snapshot_rows)] == ["FromB2"]


# ----- what the embedded store's tests do not name: widening, events, removal, snapshots -----


def test_a_schema_that_gains_fields_widens_the_table_and_events_stay_apart(stores: Stores, tmp_path: Path) -> None:
    p = Player(stores, tmp_path)
    ds, events = str(uuid.uuid4()), str(uuid.uuid4())
    p.batch(ds, [{"ids": [("Email", "a@x.com", True)], "first": "Ann"}], 100, leaves=LEAVES[:1])
    p.batch(ds, [{"ids": [("Email", "b@x.com", True)], "points": 3}], 200)  # loyalty.points: a new column
    p.batch(events, [{"ids": [("Email", "a@x.com", True)], "points": 99}], 300, kind="event")
    assert p.same(entity("Email", "a@x.com"))["attributes"] == {"person.name.firstName": "Ann"}
    assert p.same(entity("Email", "b@x.com"))["attributes"] == {"loyalty.points": 3}
    lake = stores[1]
    m = lake.manifest(SCOPE)
    assert [c for c, _ in m.fragments[ds]["columns"]][-2:] == ["person.name.firstName", "loyalty.points"]
    assert m.fragments[events]["kind"] == "event"
    rows = p.same(snapshot_rows)
    assert sorted(((r["person"]["name"]["firstName"], r["loyalty"]["points"]) for r in rows), key=repr) == [
        ("Ann", None),
        (None, 3),
    ]


def test_removing_a_dataset_drops_its_fragments_and_memberships(stores: Stores, tmp_path: Path) -> None:
    p = Player(stores, tmp_path)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    p.batch(a, [{"ids": [("Email", "a@x.com", True)], "first": "Ann", "seg": {"ups": {"s1": "realized"}}}])
    p.batch(b, [{"ids": [("Email", "a@x.com", True)], "points": 4, "seg": {"imp": {"s2": "realized"}}}])
    for s in stores:
        s.remove_dataset(SCOPE, a)
        s.remove_dataset(SCOPE, "never-seen")
    got = p.same(entity("Email", "a@x.com"))
    assert got["attributes"] == {"loyalty.points": 4} and got["sources"] == [b]
    assert p.same(lambda s: (s.record_segments(SCOPE, "s1"), s.record_segments(SCOPE, "s2"))) == ([], ["imp"])
    assert a not in stores[1].manifest(SCOPE).fragments
    for s in stores:
        s.remove_dataset(SCOPE, b)
    assert p.same(entity("Email", "a@x.com")) is None  # nothing of it is left
    assert p.same(lambda s: s.count_profiles(SCOPE)) == 1  # its identities stay, as in the embedded store


def test_snapshot_rows_with_audiences_records_memberships_and_ttl(stores: Stores, tmp_path: Path) -> None:
    p = Player(stores, tmp_path)
    ds = str(uuid.uuid4())
    now = int(time.time())
    p.audience("6b2a4d7e-0000-4000-8000-0000000000b1", "email", "Email", ["a@x.com", "z@x.com"], now - 40 * 86_400)
    p.audience("6b2a4d7e-0000-4000-8000-0000000000b2", "email", "Email", ["a@x.com"], now)
    p.batch(
        ds,
        [
            {"ids": [("Email", "a@x.com", True), ("CRMID", "c1", False)], "first": "Ann", "points": 1},
            {"ids": [("CRMID", "c2", True)], "first": "Bob", "seg": {"ups": {"s1": "existing", "s2": "exited"}}},
        ],
        at=now - 10,
    )
    p.batch(ds, [{"ids": [("CRMID", "c1", True)], "points": 2}], at=now)
    rows = p.same(snapshot_rows)
    assert len(rows) == 3
    ann = next(r for r in rows if r["person"]["name"]["firstName"] == "Ann")
    assert ann["loyalty"]["points"] == 2
    statuses = {ns: {k: v["status"] for k, v in m} for ns, m in ann["segmentMembership"]}
    assert statuses == {
        "CustomerAudienceUpload": {
            "6b2a4d7e-0000-4000-8000-0000000000b1": "exited",  # past the ttl
            "6b2a4d7e-0000-4000-8000-0000000000b2": "realized",
        }
    }
    assert sorted(ns for ns, _ in ann["identityMap"]) == ["CRMID", "Email"]


def test_every_statement_of_a_fragment_write_is_spark_sql(tmp_path: Path, metadata: MetadataStore) -> None:
    engine = _Recording(duckdb_engine(tmp_path))
    embedded, lake = pair(tmp_path, engine, metadata)
    try:
        p = Player((embedded, lake), tmp_path)
        ds = str(uuid.uuid4())
        p.batch(ds, [{"ids": [("Email", "a@x.com", True)], "first": "A"}, {"ids": [("CRMID", "c1", True)]}])
        p.batch(ds, [{"ids": [("Email", "a@x.com", True), ("CRMID", "c1", True)], "seg": {"ups": {"s": "realized"}}}])
        p.batch(str(uuid.uuid4()), [{"ids": [("Seg", "s-1", True)], "first": "E"}], kind="entity")
        p.batch(ds, [{"ids": [("Email", "b@x.com", True)]}], leaves=[*LEAVES, ("extra", "VARCHAR", "NULL")])
        for s in (embedded, lake):
            s.remove_dataset(SCOPE, ds)
    finally:
        embedded.close()
        lake.close()
    assert len(engine.statements) > 20
    scans: list[Scan] = []
    for sql in engine.statements:
        to_spark(sql, lambda scan: scans.append(scan) or f"v{len(scans)}")  # raises on what Spark cannot run


def test_a_batch_whose_write_lost_the_race_is_built_again_on_the_winners_version(
    tmp_path: Path, metadata: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two stores over one lake and one catalog: two worker processes.
    a, b = (lake_store(tmp_path, duckdb_engine(tmp_path), metadata) for _ in range(2))
    ds = str(uuid.uuid4())
    mine = write_batch(tmp_path / "a.parquet", [{"ids": [("Email", "a@x.com", True), ("CRMID", "c1", False)]}])
    theirs = write_batch(tmp_path / "b.parquet", [{"ids": [("CRMID", "c1", True), ("Email", "b@x.com", False)]}])
    commit, raced = a._commit, []

    def racing(*args: Any) -> None:
        if not raced:  # the other process commits while this write is being built
            raced.append(b.apply_fragments(SCOPE, FragmentBatch("b-1", ds, "profile", theirs, LEAVES, 100)))
        commit(*args)

    monkeypatch.setattr(a, "_commit", racing)
    result = a.apply_fragments(SCOPE, FragmentBatch("a-1", ds, "profile", mine, LEAVES, 200))
    assert raced == [FragmentResult(records=1, profilesCreated=1, identitiesAdded=2)]
    assert result == FragmentResult(records=1, profilesCreated=0, identitiesAdded=1)  # built on b's version
    assert a.manifest(SCOPE).version == 2 and a.batch_applied(SCOPE, "a-1") and a.batch_applied(SCOPE, "b-1")
    got = a.entity(SCOPE, "Email", "b@x.com")
    assert got is not None and sorted(got.identities) == [("CRMID", "c1"), ("Email", "a@x.com"), ("Email", "b@x.com")]
    a.close()
    b.close()


# ----- Spark local[2] -----


@pytest.mark.slow
def test_a_small_sequence_on_spark_matches_the_embedded_store(tmp_path: Path, metadata: MetadataStore) -> None:
    pytest.importorskip("pyspark")
    from audiencehub.engines.spark import SparkEngine

    embedded, lake = pair(tmp_path, SparkEngine(master="local[2]", ui=False), metadata)
    try:
        p = Player((embedded, lake), tmp_path)
        ds, other = str(uuid.uuid4()), str(uuid.uuid4())
        p.batch(ds, [{"ids": [("Email", "a@x.com", True)], "first": "Ann"}, {"ids": [("CRMID", "c1", True)]}], 100)
        linking = {"ids": [("Email", "a@x.com", True), ("CRMID", "c1", False)], "points": 3}
        p.batch(other, [{**linking, "seg": {"ups": {"s": "realized"}}}], 200)
        p.batch(str(uuid.uuid4()), [{"ids": [("Seg", "s-1", True)], "first": "E"}], kind="entity")
        merged = p.same(entity("CRMID", "c1"))
        assert merged["attributes"] == {"person.name.firstName": "Ann", "loyalty.points": 3}
        assert merged["memberships"][0][:3] == ("ups", "s", "realized")
        p.same(entity("Email", "a@x.com", precedence=[other, ds]))
        p.same(entity("Seg", "s-1", kind="entity"))
        assert len(p.same(snapshot_rows)) == 1
    finally:
        embedded.close()
        lake.close()
