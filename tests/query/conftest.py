"""Fixtures of the Query Service executor's tests: a fixed set of tables in Parquet files, and a session on them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audiencehub.query.duckdb import DuckDBSession, Limits
from audiencehub.query.tables import DatasetTable, Table
from tests.api.conftest import dev_headers, other_org_headers  # noqa: F401 (fixtures of the service tests)

UTC = dt.UTC
MEMBER = pa.struct([("status", pa.string()), ("lastQualificationTime", pa.timestamp("us", tz="UTC"))])
IDENTITY = pa.struct([("id", pa.string()), ("primary", pa.bool_())])
PROFILE = pa.schema(
    [
        ("_demoemea", pa.struct([("identification", pa.struct([("core", pa.struct([("email", pa.string())]))]))])),
        ("person", pa.struct([("name", pa.struct([("firstName", pa.string()), ("lastName", pa.string())]))])),
        ("identityMap", pa.map_(pa.string(), pa.list_(IDENTITY))),
        ("segmentMembership", pa.map_(pa.string(), pa.map_(pa.string(), MEMBER))),
    ]
)
ORDERS = pa.schema([("order_id", pa.int64()), ("items", pa.list_(pa.string())), ("amount", pa.float64())])
T0 = dt.datetime(2024, 5, 1, tzinfo=UTC)


def _profile(email: str, first: str, memberships: dict[str, str]) -> dict[str, object]:
    return {
        "_demoemea": {"identification": {"core": {"email": email}}},
        "person": {"name": {"firstName": first, "lastName": "Doe"}},
        "identityMap": [("Email", [{"id": email, "primary": True}])],
        "segmentMembership": [
            ("ups", [(s, {"status": v, "lastQualificationTime": T0}) for s, v in memberships.items()])
        ],
    }


PROFILES = [
    _profile("a@x.com", "Ann", {"s1": "realized", "s2": "exited"}),
    _profile("b@x.com", "Bob", {"s1": "realized", "s3": "realized"}),
    _profile("c@x.com", "Cid", {"s2": "realized", "s9": "realized"}),
]


class FixedTables:
    """A table source that answers what the test put in it."""

    def __init__(self, tables: dict[str, Table]) -> None:
        self.tables = tables

    def load(self) -> dict[str, Table]:
        return dict(self.tables)


def write_tables(root: Path) -> dict[str, Table]:
    root.mkdir(parents=True, exist_ok=True)
    p1, p2 = root / "p-1.parquet", root / "p-2.parquet"
    pq.write_table(pa.Table.from_pylist(PROFILES[:2], schema=PROFILE), p1)
    # A later batch written before the schema had person.name.lastName: it reads as NULL.
    older = pa.schema([f for f in PROFILE if f.name != "person"])
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in PROFILES[2].items() if k != "person"}], schema=older), p2)
    o1 = root / "o-1.parquet"
    orders = [
        {"order_id": 1, "items": ["apple", "pear"], "amount": 3.5},
        {"order_id": 2, "items": [], "amount": 1.0},
        {"order_id": 3, "items": None, "amount": None},
    ]
    pq.write_table(pa.Table.from_pylist(orders, schema=ORDERS), o1)
    return {
        "segment_export_job_dataset_for_cja": DatasetTable(
            "segment_export_job_dataset_for_cja", "ds-1", (str(p1), str(p2)), PROFILE, ("b1", "b2")
        ),
        "orders": DatasetTable("orders", "ds-2", (str(o1),), ORDERS, ("b3",)),
    }


@pytest.fixture
def tables(tmp_path: Path) -> FixedTables:
    return FixedTables(write_tables(tmp_path / "lake"))


@pytest.fixture(params=["arrow", "native"])
def session(tables: FixedTables, request: pytest.FixtureRequest) -> Iterator[DuckDBSession]:
    """A session over the fixed tables, reading them through pyarrow and, natively, with the engine."""
    native = request.param == "native"
    s = DuckDBSession(tables, None, Limits(timeout_s=30, memory_limit="256MB", threads=2, native_parquet=native))
    yield s
    s.close()
