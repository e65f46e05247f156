"""The lake profile store against the embedded one: the same runs give the same results.

What the lake tests share: validated run files, a scripted sequence of runs, and a view of a store
that leaves profile ids out (they are random in each store), so two stores compare equal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from audiencehub.domain.audiences import FieldType
from audiencehub.engines.base import Engine
from audiencehub.engines.duckdb import DuckDBEngine
from audiencehub.engines.ingest_sql import CHECK, VALUE, field_column, ident, lit
from audiencehub.metadata.store import MetadataStore, Scope
from audiencehub.profile.base import ApplyResult, AudienceRows, IdentityColumn, Profile, ProfileStore
from audiencehub.profile.duckdb import DuckDBProfileStore
from audiencehub.profile.lake import LakeProfileStore

SCOPE = Scope("lake@AdobeOrg", "prod")
A1 = "6b2a4d7e-0000-4000-8000-0000000000a1"
A2 = "6b2a4d7e-0000-4000-8000-0000000000a2"
NOW = int(time.time())
DAY = 86_400
FIELDS = ["email", "crm", "tier", "score", "del"]
TYPES = {"email": "VARCHAR", "crm": "VARCHAR", "tier": "VARCHAR", "score": "BIGINT", "del": "VARCHAR"}


def validated(path: Path, rows: list[tuple[Any, ...]]) -> Path:
    """A validated file as the DATASET_INGEST stage writes it: typed field columns, every row accepted (None is an
    empty cell)."""
    selects = []
    for row in rows:
        cols = ", ".join(
            f"CAST({'NULL' if v is None else lit(str(v))} AS {TYPES[f]}) AS {ident(field_column(f))}"
            for f, v in zip(FIELDS, row, strict=True)
        )
        selects.append(f"SELECT {cols}, CAST(NULL AS INTEGER) AS {CHECK}, CAST(NULL AS VARCHAR) AS {VALUE}")
    if not selects:  # no accepted row: the columns only
        cols = ", ".join(f"CAST(NULL AS {TYPES[f]}) AS {ident(field_column(f))}" for f in FIELDS)
        selects.append(f"SELECT {cols}, CAST(NULL AS INTEGER) AS {CHECK}, CAST(NULL AS VARCHAR) AS {VALUE} LIMIT 0")
    con = duckdb.connect()
    try:
        con.execute(f"COPY ({' UNION ALL '.join(selects)}) TO {lit(str(path))} (FORMAT parquet)")
    finally:
        con.close()
    return path


def run(
    tmp: Path,
    run_id: str,
    files: list[list[tuple[Any, ...]]],
    *,
    audience: str = A1,
    replace: bool = False,
    crm: bool = True,
    delete: bool = False,
    ttl_days: int = 30,
    at: int = NOW,
) -> AudienceRows:
    paths = [validated(tmp / f"{run_id}-{n}.parquet", rows) for n, rows in enumerate(files)]
    return AudienceRows(
        run_id=run_id,
        audience_id=audience,
        namespace="CustomerAudienceUpload",
        ttl_days=ttl_days,
        files=paths,
        identities=[IdentityColumn("email", "Email")] + ([IdentityColumn("crm", "CRMID")] if crm else []),
        payload=[("tier", FieldType.STRING), ("score", FieldType.LONG)],
        delete_column=("del", FieldType.STRING) if delete else None,
        replace=replace,
        qualified_at=at,
    )


def script(tmp: Path) -> list[tuple[str, Any]]:
    """The sequence both stores go through: (operation, argument)."""
    tmp.mkdir(parents=True, exist_ok=True)
    r1 = run(
        tmp,
        "r1",
        [
            [
                ("a@x.com", "C-1", "gold", 10, None),
                ("b@x.com", None, "silver", 20, None),
                ("c@x.com", "C-3", "gold", None, None),
                (None, "C-4", "bronze", 40, None),
                ("d@x.com", "C-1", "gold", 10, None),  # C-1 goes to a (first row): d's row links a and d
                ("b@x.com", "C-2", "platinum", 21, None),  # b again: the last row wins
            ],
            [("e@x.com", None, "gold", 60, None), ("f@x.com", "C-6", "silver", 70, None)],
        ],
        replace=True,
        delete=True,
        at=NOW - 2 * DAY,
    )
    r2 = run(
        tmp,
        "r2",
        [
            [
                ("a@x.com", None, "gold", 11, "no"),
                ("b@x.com", None, None, None, "true"),  # exits b
                ("zz@x.com", None, "gold", 1, "yes"),  # an unknown delete: nothing
                ("g@x.com", "C-6", "gold", 71, "false"),  # C-6 is f's: g joins f's profile
                ("h@x.com", "C-4", "gold", 90, None),  # C-4's profile gains h
                ("f@x.com", "C-3", "gold", 71, None),  # f and c (by C-3) link: their profiles merge
            ]
        ],
        delete=True,
        at=NOW - DAY,
    )
    r3 = run(
        tmp,
        "r3",
        [[("a@x.com", None, "gold", 12, None), ("i@x.com", None, "gold", 5, None)]],
        replace=True,
        crm=False,
        at=NOW - DAY // 2,
    )
    # Another audience, qualified long ago with a ttl of 1 day: its members read exited at lookup.
    r4 = run(
        tmp,
        "r4",
        [[("a@x.com", None, "x", 1, None), ("new@x.com", None, "y", 2, None)]],
        audience=A2,
        crm=False,
        ttl_days=1,
        at=NOW - 3 * DAY,
    )
    r5 = run(tmp, "r5", [[("j@x.com", None, "t", 3, None)]], audience=A2, crm=False, at=NOW)
    return [
        ("apply", r1),
        ("apply", r2),
        ("apply", r2),  # the same run again: nothing changes, the same result
        ("apply", r3),
        ("set_audience", (A2, "CustomerAudienceUpload", 7)),
        ("apply", r4),  # set_audience's ttl stays: 7, not the run's 1
        ("set_audience", (A2, "CustomerAudienceUpload", 1)),
        ("apply", r5),
        ("remove_audience", A2),
        ("apply", run(tmp, "r6", [[("k@x.com", None, "t", 4, None)]], audience=A2, crm=False, at=NOW)),
        ("apply", run(tmp, "r7", [[]], crm=False, at=NOW)),  # no accepted row: nothing changes
        ("remove_audience", A2),
        ("apply", run(tmp, "r8", [[]], audience=A2, crm=False, replace=True, at=NOW)),  # a new, empty audience
    ]


IDENTITIES = (
    [("Email", f"{c}@x.com") for c in "abcdefghijk"]
    + [
        ("Email", "zz@x.com"),
        ("Email", "new@x.com"),
        ("Email", "j@x.com"),
    ]
    + [("CRMID", f"C-{n}") for n in range(1, 7)]
)


def view(p: Profile | None) -> Any:
    if p is None:
        return None
    return (
        tuple(sorted(p.identities)),
        tuple(
            sorted(
                (m.namespace, m.audience_id, m.status, m.last_qualification_time, repr(sorted(m.payload.items())))
                for m in p.memberships
            )
        ),
    )


@dataclass
class State:
    results: list[ApplyResult | None]
    lookups: dict[tuple[str, str], Any]
    members: dict[str, tuple[list[Any], int]]
    counts: dict[str, dict[str, int]]
    profiles: int
    applied: dict[str, ApplyResult | None]


def snapshot(store: ProfileStore, results: list[ApplyResult | None]) -> State:
    members: dict[str, tuple[list[Any], int]] = {}
    for audience in (A1, A2):
        seen: list[Any] = []
        total = 0
        offset = 0
        while True:
            page, total = store.members(SCOPE, audience, limit=3, offset=offset)
            seen += [view(p) for p in page]
            offset += 3
            if offset >= total:
                break
        members[audience] = (sorted(seen, key=repr), total)
    return State(
        results=results,
        lookups={i: view(store.lookup(SCOPE, *i)) for i in IDENTITIES},
        members=members,
        counts={a: store.counts(SCOPE, a) for a in (A1, A2)},
        profiles=store.count_profiles(SCOPE),
        applied={r: store.applied(SCOPE, r) for r in ("r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "nope")},
    )


def play(store: ProfileStore, steps: list[tuple[str, Any]]) -> State:
    results: list[ApplyResult | None] = []
    for op, arg in steps:
        if op == "apply":
            results.append(store.apply_audience(SCOPE, arg))
        elif op == "set_audience":
            store.set_audience(SCOPE, *arg)
            results.append(None)
        else:
            store.remove_audience(SCOPE, arg)
            results.append(None)
    return snapshot(store, results)


# ----- the parity tests -----


def metadata_store(tmp_path: Path) -> Iterator[MetadataStore]:
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    store.create_all()
    yield store
    store.dispose()


@pytest.fixture
def metadata(tmp_path: Path) -> Iterator[MetadataStore]:
    yield from metadata_store(tmp_path)


def lake_store(tmp_path: Path, engine: Engine, metadata: MetadataStore, **kw: Any) -> LakeProfileStore:
    return LakeProfileStore(
        tmp_path / "lake", engine, metadata, memory_limit="512MB", threads=2, temp_dir=tmp_path / "tmp", **kw
    )


def duckdb_engine(tmp_path: Path) -> DuckDBEngine:
    return DuckDBEngine(threads=2, memory_limit="512MB", temp_dir=tmp_path / "etmp")


def embedded_state(tmp_path: Path) -> State:
    store = DuckDBProfileStore(tmp_path / "emb", memory_limit="512MB", threads=2, temp_dir=tmp_path / "etmp")
    try:
        return play(store, script(tmp_path / "files"))
    finally:
        store.close()


def test_the_lake_store_on_duckdb_matches_the_embedded_store(tmp_path: Path, metadata: MetadataStore) -> None:
    expected = embedded_state(tmp_path)
    store = lake_store(tmp_path, duckdb_engine(tmp_path), metadata)
    try:
        got = play(store, script(tmp_path / "files"))
    finally:
        store.close()
    assert got.results == expected.results
    for identity, profile in expected.lookups.items():
        assert got.lookups[identity] == profile, identity
    assert got.members == expected.members
    assert got.counts == expected.counts
    assert (got.profiles, got.applied) == (expected.profiles, expected.applied)
    # The script reaches what it means to test.
    assert expected.counts[A1] == {"realized": 2, "exited": 4}
    assert expected.results[1] == expected.results[2]
    merged = expected.lookups[("CRMID", "C-3")]
    assert merged is not None and ("Email", "f@x.com") in merged[0] and ("Email", "g@x.com") in merged[0]
