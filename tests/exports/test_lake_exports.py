"""Export jobs on the lake profile store: the same exports over the same data on the embedded store and on the lake
store (DuckDB engine; one small case on Spark ``local[2]``) write the same Parquet files: names, rows and Arrow types.
And the seed's export job through the API with AUDIENCEHUB_PROFILE_STORE=lake."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.domain.segments import Plan
from audiencehub.engines.base import Engine
from audiencehub.engines.spark_sql import Scan, to_spark
from audiencehub.metadata.store import MetadataStore
from audiencehub.pql import ast as A
from audiencehub.pql.compile import Fields, compile_segment
from audiencehub.pql.parser import parse
from audiencehub.profile import exports
from audiencehub.profile.exports import ExportField, ExportOutput, ExportSpec, MemberFilter
from tests.api.support import headers_for
from tests.conftest import test_settings
from tests.exports import test_seed_flow
from tests.profile.test_lake_fragments import Player, Stores, pair
from tests.profile.test_lake_parity import duckdb_engine, metadata_store
from tests.profile.test_lake_versions import _Recording
from tests.profile.test_stitching import SCOPE

with contextlib.suppress(pytest.skip.Exception):  # no pyspark: the Spark case skips itself
    from tests.profile.test_lake_spark import spark_engine  # noqa: F401  (a fixture: the session's Spark local[2])

NS = "CustomerAudienceUpload"
B1 = "6b2a4d7e-0000-4000-8000-0000000000b1"  # qualified 40 days ago, ttl 30: reads exited
B2 = "6b2a4d7e-0000-4000-8000-0000000000b2"
WOMEN = "5e9d0c2a-0000-4000-8000-00000000e001"  # a segment definition
FIELDS = (
    ExportField(("person", "name", "firstName"), "VARCHAR"),
    ExportField(("loyalty", "points"), "BIGINT"),
)


@pytest.fixture
def metadata(tmp_path: Path) -> Iterator[MetadataStore]:
    yield from metadata_store(tmp_path)


def _segment(now: dt.datetime) -> Plan:
    plan = Plan(now)

    def resolve(n: A.Membership) -> Any:
        raise A.PQLError(f"no audience {n.segment_id!r}", n.pos)

    fields = Fields({"person.name.firstName": "VARCHAR", "loyalty.points": "BIGINT"}, {})
    compile_segment(plan, WOMEN, parse('person.name.firstName = "Ann" or loyalty.points > 5'), fields, resolve)
    return plan


def sandbox(stores: Stores, tmp: Path) -> dict[str, str]:
    """Profiles from two profile datasets and an event dataset, records' own memberships, two external audiences (one
    past its ttl) and one evaluated segment definition, on both stores; answers the dataset ids."""
    p = Player(stores, tmp)
    crm, web, events = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    now = int(time.time())
    p.audience(B1, "email", "Email", ["a@x.com", "z@x.com"], now - 40 * 86_400)
    p.audience(B2, "email", "Email", ["a@x.com", "b@x.com", "y@x.com"], now - 3600)
    p.batch(
        crm,
        [
            {"ids": [("Email", "a@x.com", True), ("CRMID", "c1", False)], "first": "Ann", "points": 1},
            {"ids": [("CRMID", "c2", True)], "first": "Bob", "seg": {"ups": {"s1": "existing", "s2": "exited"}}},
            {"ids": [("Email", "b@x.com", True)], "first": "Cy", "seg": {"Imported": {"x9": "realized"}}},
        ],
        at=now - 7200,
    )
    p.batch(web, [{"ids": [("CRMID", "c1", True)], "first": "Annie", "points": 7}], at=now - 60)
    p.batch(web, [{"ids": [("CRMID", "c2", True)], "points": 3}], at=now - 30)
    p.batch(events, [{"ids": [("Email", "e@x.com", True)], "points": 99}], at=now - 10, kind="event")
    at = dt.datetime.fromtimestamp(now - 5, dt.UTC)
    got = [s.evaluate(SCOPE, "job-1", [_segment(at)], {}) for s in stores]
    assert got[1] == got[0]
    return {"crm": crm, "web": web, "events": events}


def run_both(
    stores: Stores,
    tmp: Path,
    spec: ExportSpec,
    members: list[tuple[MemberFilter, ...] | None],
    *,
    exact: bool = True,
) -> Any:
    """Runs the export on both stores and asserts the same files (names, rows in any order, Arrow schema; but for
    ``exact``, the types only: Spark marks nested values that cannot be NULL as not null); answers the embedded
    store's rows per output."""
    found = []
    for name, store in zip(("embedded", "lake"), stores, strict=True):
        outputs = []
        for k, m in enumerate(members):
            folder = tmp / f"out-{uuid.uuid4().hex[:6]}-{name}-{k}"
            folder.mkdir()
            outputs.append(ExportOutput(m, folder))
        counts = store.export(SCOPE, spec, outputs)
        files = []
        for o in outputs:
            parts = sorted(o.folder.glob("*.parquet"))
            tables = [pq.read_table(f) for f in parts]
            schemas = [t.schema if exact else [(f.name, _nullable(f.type)) for f in t.schema] for t in tables]
            files.append(([f.name for f in parts], schemas, _rows(tables)))
        assert counts == [len(rows) for _, _, rows in files]
        found.append(files)
    embedded, lake = found
    for (names_e, schemas_e, rows_e), (names_l, schemas_l, rows_l) in zip(embedded, lake, strict=True):
        assert names_l == names_e
        assert rows_l == rows_e
        assert schemas_l == schemas_e
    return [rows for _, _, rows in embedded]


def _nullable(t: pa.DataType) -> pa.DataType:
    """The type with every nested field nullable."""
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _nullable(f.type)) for f in t])
    if pa.types.is_map(t):
        return pa.map_(_nullable(t.key_type), _nullable(t.item_type))
    if pa.types.is_list(t):
        return pa.list_(_nullable(t.value_type))
    return t


def _rows(tables: list[pa.Table]) -> list[Any]:
    return sorted((r for t in tables for r in t.to_pylist()), key=repr)


def _first(row: dict[str, Any]) -> Any:
    return row["person"]["name"]["firstName"]


def _statuses(row: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {ns: {k: v["status"] for k, v in m} for ns, m in row["segmentMembership"] or []}


@pytest.fixture
def stores(tmp_path: Path, metadata: MetadataStore) -> Iterator[Stores]:
    embedded, lake = pair(tmp_path, duckdb_engine(tmp_path), metadata)
    yield embedded, lake
    embedded.close()
    lake.close()


def test_every_profile_with_its_identity_map_and_memberships(stores: Stores, tmp_path: Path) -> None:
    sandbox(stores, tmp_path)
    (rows,) = run_both(stores, tmp_path, ExportSpec(FIELDS, identity_map=True), [None])
    # a, c1 (one profile), c2, b, y and z (audiences only); e has only events: left out (emptyProfiles false)
    assert sorted((_first(r) or "-") for r in rows) == ["-", "-", "Annie", "Bob", "Cy"]
    annie = next(r for r in rows if _first(r) == "Annie")
    assert annie["loyalty"]["points"] == 7
    assert sorted(ns for ns, _ in annie["identityMap"]) == ["CRMID", "Email"]
    assert _statuses(annie) == {NS: {B1: "exited", B2: "realized"}, "ups": {WOMEN: "realized"}}
    bob = next(r for r in rows if _first(r) == "Bob")
    assert _statuses(bob) == {"ups": {"s1": "existing", "s2": "exited"}}
    cy = next(r for r in rows if _first(r) == "Cy")
    assert _statuses(cy) == {NS: {B2: "realized"}, "Imported": {"x9": "realized"}}


def test_member_filters_time_windows_precedence_and_empty_profiles(stores: Stores, tmp_path: Path) -> None:
    ds = sandbox(stores, tmp_path)
    members = [
        (MemberFilter(NS, B2),),
        (MemberFilter("ups", "s1", ("existing",)), MemberFilter("ups", WOMEN)),
        (MemberFilter(NS, B1, ("exited",)), MemberFilter("Imported", "x9")),
        (MemberFilter(NS, "no-such-audience"),),
    ]
    b2, ups, mixed, none = run_both(stores, tmp_path, ExportSpec(FIELDS), members)
    assert sorted(_first(r) or "-" for r in b2) == ["-", "Annie", "Cy"]
    assert sorted(_first(r) or "-" for r in ups) == ["Annie", "Bob"]
    assert sorted(_first(r) or "-" for r in mixed) == ["-", "Annie", "Cy"]
    assert none == []
    recent = dt.datetime.fromtimestamp(time.time() - 45, dt.UTC)
    spec = ExportSpec(FIELDS, precedence=(ds["crm"], ds["web"]), updated_after=recent, empty_profiles=True)
    (everyone,) = run_both(stores, tmp_path, spec, [None])
    # fragments or memberships newer than 45 s: c2's web record, e's event, the segment; crm wins by precedence
    assert sorted(_first(r) or "-" for r in everyone) == ["-", "Ann", "Bob"]
    window = ExportSpec(FIELDS, qualified_from=dt.datetime.fromtimestamp(time.time() - 3 * 3600, dt.UTC))
    # B2 qualified an hour ago; B1's memberships exited ten days ago (their ttl): only B2's members
    (fresh,) = run_both(stores, tmp_path, window, [(MemberFilter(NS, B2), MemberFilter(NS, B1, ("exited",)))])
    assert sorted(_first(r) or "-" for r in fresh) == ["-", "Annie", "Cy"]


def test_slices_of_profile_ids_give_the_same_files(
    stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox(stores, tmp_path)
    monkeypatch.setattr(exports, "slices_for", lambda *_: 3)
    (rows,) = run_both(stores, tmp_path, ExportSpec(FIELDS, identity_map=True), [None])
    assert len(rows) == 5
    out = sorted(tmp_path.glob("out-*-lake-0"))[-1]
    assert [f.name for f in sorted(out.glob("*.parquet"))] == [f"part-{n:05d}.parquet" for n in range(3)]


def test_every_statement_of_an_export_is_spark_sql(tmp_path: Path, metadata: MetadataStore) -> None:
    engine = _Recording(duckdb_engine(tmp_path))
    embedded, lake = pair(tmp_path, engine, metadata)
    try:
        sandbox((embedded, lake), tmp_path)
        engine.statements.clear()
        spec = ExportSpec(FIELDS, identity_map=True, updated_after=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        run_both((embedded, lake), tmp_path, spec, [None, (MemberFilter(NS, B1, ("exited",)),)])
    finally:
        embedded.close()
        lake.close()
    assert len(engine.statements) >= 4
    scans: list[Scan] = []
    for sql in engine.statements:
        to_spark(sql, lambda scan: scans.append(scan) or f"v{len(scans)}")  # raises on what Spark cannot run


@pytest.mark.slow
def test_a_small_export_on_spark_matches_the_embedded_store(
    tmp_path: Path, metadata: MetadataStore, request: pytest.FixtureRequest
) -> None:
    pytest.importorskip("pyspark")
    engine: Engine = request.getfixturevalue("spark_engine")  # the session's Spark local[2]
    embedded, lake = pair(tmp_path, engine, metadata)
    try:
        sandbox((embedded, lake), tmp_path)
        spec = ExportSpec(FIELDS, identity_map=True)
        rows, members = run_both((embedded, lake), tmp_path, spec, [None, (MemberFilter(NS, B2),)], exact=False)
        assert len(rows) == 5 and len(members) == 3
    finally:
        embedded.close()
        lake.close()


@pytest.mark.parametrize(
    "flow",
    [
        test_seed_flow.test_seed_002_export_writes_the_selected_profiles_with_all_their_memberships,
        test_seed_flow.test_an_export_without_a_filter_writes_every_profile_with_its_identity_map,
    ],
    ids=["seed-002", "no-filter"],
)
def test_the_seed_export_jobs_through_the_api_on_the_lake_store(tmp_path: Path, flow: Any) -> None:
    """test_seed_flow's export jobs and their checks, on a server with AUDIENCEHUB_PROFILE_STORE=lake."""
    settings = test_settings(tmp_path / "home", profile_store="lake")
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        flow(client, headers, settings, {"org_id": headers["x-gw-ims-org-id"]})
    assert list((settings.home / "lake").glob("*/prod/_profile/v*/identities-*.parquet"))  # the lake store's
    assert not list((settings.home / "lake").glob("*/prod/_profile/profile.duckdb"))
