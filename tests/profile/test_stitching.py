"""The profile store's identity graph: records link identities, connected components are profiles.

Batches are written here as the validation step leaves them (typed columns, ``__ah_ids``, file and record
numbers), so each test states its graph directly and checks the store against a computation of its own.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

from audiencehub.metadata.store import Scope
from audiencehub.profile.base import AudienceRows, FragmentBatch, IdentityColumn
from audiencehub.profile.duckdb import DuckDBProfileStore

SCOPE = Scope("org@AdobeOrg", "prod")
LEAVES = [
    ("person.name.firstName", "VARCHAR", "\"person\"['name']['firstName']"),
    ("loyalty.points", "BIGINT", "\"loyalty\"['points']"),
    ("segmentMembership", "MAP(VARCHAR, MAP(VARCHAR, STRUCT(status VARCHAR)))", '"segmentMembership"'),
]


@pytest.fixture
def store(tmp_path: Path) -> DuckDBProfileStore:
    s = DuckDBProfileStore(tmp_path / "lake", memory_limit="1GB", threads=2, temp_dir=tmp_path / "tmp")
    yield s
    s.close()


def write_batch(path: Path, records: list[dict[str, Any]]) -> Path:
    """records: {"ids": [(ns, id, primary)], "first": str|None, "points": int|None, "seg": {ns: {id: status}}}"""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE b (__ah_file INTEGER, __ah_rn BIGINT, "
        '__ah_ids STRUCT(ns VARCHAR, id VARCHAR, "primary" BOOLEAN)[], '
        "person STRUCT(name STRUCT(firstName VARCHAR)), loyalty STRUCT(points BIGINT), "
        "segmentMembership MAP(VARCHAR, MAP(VARCHAR, STRUCT(status VARCHAR, lastQualificationTime TIMESTAMPTZ))))"
    )
    for n, r in enumerate(records, start=1):
        ids = [{"ns": ns, "id": i, "primary": p} for ns, i, p in r["ids"]]
        seg = r.get("seg")
        con.execute(
            "INSERT INTO b VALUES (0, ?, ?, {'name': {'firstName': ?}}, {'points': ?}, ?)",
            [
                n,
                ids,
                r.get("first"),
                r.get("points"),
                None
                if seg is None
                else {
                    ns: {k: {"status": v, "lastQualificationTime": None} for k, v in m.items()} for ns, m in seg.items()
                },
            ],
        )
    con.execute(f"COPY b TO '{path}' (FORMAT parquet)")
    con.close()
    return path


def apply(
    store: DuckDBProfileStore,
    tmp: Path,
    dataset: str,
    records: list[dict[str, Any]],
    at: int = 1_700_000_000,
    kind: str = "profile",
) -> Any:
    batch_id = str(uuid.uuid4())
    file = write_batch(tmp / f"{batch_id}.parquet", records)
    return store.apply_fragments(SCOPE, FragmentBatch(batch_id, dataset, kind, file, LEAVES, at))


def profile_of(store: DuckDBProfileStore, ns: str, value: str) -> str | None:
    e = store.entity(SCOPE, ns, value)
    return None if e is None else e.entity_id


def test_identities_in_one_record_link_and_later_values_win(store: DuckDBProfileStore, tmp_path: Path) -> None:
    ds = str(uuid.uuid4())
    r1 = apply(
        store,
        tmp_path,
        ds,
        [{"ids": [("Email", "a@x.com", True), ("CRMID", "c1", False)], "first": "Ann", "points": 5}],
        at=100,
    )
    assert (r1.records, r1.profilesCreated, r1.identitiesAdded) == (1, 1, 2)
    apply(store, tmp_path, ds, [{"ids": [("CRMID", "c1", True)], "first": "Anna"}], at=200)
    e = store.entity(SCOPE, "Email", "a@x.com")
    assert e is not None
    assert e.attributes == {"person.name.firstName": "Anna", "loyalty.points": 5}
    assert sorted(e.identities) == [("CRMID", "c1"), ("Email", "a@x.com")]
    assert profile_of(store, "CRMID", "c1") == e.entity_id


def test_a_record_that_links_two_profiles_merges_them_with_their_memberships(
    store: DuckDBProfileStore, tmp_path: Path
) -> None:
    ds = str(uuid.uuid4())
    apply(
        store,
        tmp_path,
        ds,
        [{"ids": [("Email", "a@x.com", True)], "first": "Ann"}, {"ids": [("CRMID", "c1", True)], "points": 7}],
    )
    p_email, p_crm = profile_of(store, "Email", "a@x.com"), profile_of(store, "CRMID", "c1")
    assert p_email and p_crm and p_email != p_crm
    # An external audience holds the CRM id's profile.
    csv_file = tmp_path / "aud.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 'c1' AS __ah_f_crm, NULL::VARCHAR AS __ah_check) TO '{csv_file}' (FORMAT parquet)")
    audience = str(uuid.uuid4())
    store.apply_audience(
        SCOPE,
        AudienceRows(
            run_id=str(uuid.uuid4()),
            audience_id=audience,
            namespace="CustomerAudienceUpload",
            ttl_days=30,
            files=[csv_file],
            identities=[IdentityColumn("crm", "CRMID")],
            payload=[],
            delete_column=None,
            replace=False,
            qualified_at=int(time.time()),
        ),
    )
    result = apply(
        store,
        tmp_path,
        ds,
        [{"ids": [("Email", "a@x.com", True), ("CRMID", "c1", False)], "seg": {"ups": {"s1": "realized"}}}],
    )
    assert result.profilesMerged == 1 and result.profilesCreated == 0
    merged = store.entity(SCOPE, "CRMID", "c1")
    assert merged is not None and merged.entity_id == profile_of(store, "Email", "a@x.com")
    assert merged.entity_id in (p_email, p_crm)
    assert merged.attributes == {"person.name.firstName": "Ann", "loyalty.points": 7}
    assert {(m.namespace, m.audience_id, m.status) for m in merged.memberships} == {
        ("CustomerAudienceUpload", audience, "realized"),
        ("ups", "s1", "realized"),
    }
    # The other profile is gone: none of its rows point anywhere else.
    assert store.lookup(SCOPE, "CRMID", "c1").profile_id == merged.entity_id  # type: ignore[union-attr]


def test_dataset_precedence_beats_time(store: DuckDBProfileStore, tmp_path: Path) -> None:
    crm, web = str(uuid.uuid4()), str(uuid.uuid4())
    apply(store, tmp_path, crm, [{"ids": [("Email", "a@x.com", True)], "first": "FromCRM"}], at=100)
    apply(store, tmp_path, web, [{"ids": [("Email", "a@x.com", True)], "first": "FromWeb"}], at=200)
    assert store.entity(SCOPE, "Email", "a@x.com").attributes["person.name.firstName"] == "FromWeb"  # type: ignore[union-attr]
    by_crm = store.entity(SCOPE, "Email", "a@x.com", precedence=[crm, web])
    assert by_crm is not None and by_crm.attributes["person.name.firstName"] == "FromCRM"
    assert by_crm.sources == sorted([crm, web])


def test_a_batch_is_applied_once(store: DuckDBProfileStore, tmp_path: Path) -> None:
    ds = str(uuid.uuid4())
    file = write_batch(tmp_path / "b.parquet", [{"ids": [("Email", "a@x.com", True)], "points": 1}])
    batch = FragmentBatch("batch-1", ds, "profile", file, LEAVES, 100)
    first = store.apply_fragments(SCOPE, batch)
    again = store.apply_fragments(SCOPE, batch)
    assert first == again
    assert store.entity(SCOPE, "Email", "a@x.com").sources == [ds]  # type: ignore[union-attr]


def test_entities_stay_apart_from_people(store: DuckDBProfileStore, tmp_path: Path) -> None:
    ds = str(uuid.uuid4())
    apply(store, tmp_path, ds, [{"ids": [("ExtSegments", "seg-1", True)], "first": "not a person"}], kind="entity")
    assert store.entity(SCOPE, "ExtSegments", "seg-1") is None  # no people profile
    entity = store.entity(SCOPE, "ExtSegments", "seg-1", kind="entity")
    assert entity is not None and entity.attributes["person.name.firstName"] == "not a person"


Node = tuple[str, str]


def random_graph(
    rng: random.Random, size: int, batches: int, per_batch: int
) -> tuple[list[list[dict[str, Any]]], list[set[Node]]]:
    """Batches of records that each name 1-3 random identities of a universe of ``2 * size`` (Email and CRMID), and the
    connected components a union-find makes of the identities they link: the profiles a store must end with."""
    universe = [("Email", f"u{i}@x.com") for i in range(size)] + [("CRMID", f"c{i}") for i in range(size)]
    parent = {node: node for node in universe}

    def find(x: Node) -> Node:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    seen: set[Node] = set()
    out = []
    for n in range(batches):  # several batches, so merges happen across batches and within one
        records = []
        for _ in range(per_batch):
            ids = rng.sample(universe, rng.choice([1, 1, 2, 3]))
            records.append({"ids": [(ns, v, k == 0) for k, (ns, v) in enumerate(ids)], "points": n})
            seen.update(ids)
            for a, b in itertools.pairwise(ids):
                parent[find(a)] = find(b)
        out.append(records)
    components: dict[Node, set[Node]] = {}
    for node in seen:
        components.setdefault(find(node), set()).add(node)
    return out, list(components.values())


def test_random_graphs_match_a_union_find(store: DuckDBProfileStore, tmp_path: Path) -> None:
    ds = str(uuid.uuid4())
    batches, expected = random_graph(random.Random(7), 60, 4, 25)
    for records in batches:
        apply(store, tmp_path, ds, records)
    seen = set().union(*expected)
    for component in expected:
        ids = {profile_of(store, ns, v) for ns, v in component}
        assert len(ids) == 1 and None not in ids
        got = store.entity(SCOPE, *next(iter(component)))
        assert got is not None and set(got.identities) == component
    assert len({profile_of(store, ns, v) for ns, v in seen}) == len(expected)
