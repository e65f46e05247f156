"""Profile Access benchmark: single-profile lookups in a profile store of N profiles.

    .venv/bin/python benchmarks/profile_access.py --profiles 10000000 --lookups 2000
    .venv/bin/python benchmarks/profile_access.py --profiles 1000000 --store lake     # the lake profile store

Builds a store through the profile store's own bulk paths (one profile-enabled dataset whose records carry
an email and two attributes; two external audiences of N/2 members each), then times lookups of random
existing emails with ``ProfileStore.entity`` (what ``GET /data/core/ups/access/entities`` calls: identity →
profile → fragments merged → memberships of every audience). The floor, measured in the same run on the
same database file, is the bare engine doing the same reads as plain point queries (identity, fragment rows,
one membership table per audience) with nothing of ours around them. Prints p50/p99 of both and the ratio.
With ``--store lake`` the store is the lake profile store (DuckDB engine) and the floor the same point reads as
bare ``read_parquet`` queries over the current version's files.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import duckdb

from audiencehub.engines.duckdb import DuckDBEngine
from audiencehub.engines.ingest_sql import path_list
from audiencehub.metadata.store import MetadataStore, Scope
from audiencehub.profile import lake_sql
from audiencehub.profile.base import AudienceRows, FragmentBatch, IdentityColumn, ProfileStore
from audiencehub.profile.duckdb import DuckDBProfileStore, fragment_table_for, table_for
from audiencehub.profile.lake import LakeProfileStore

SCOPE = Scope("bench@AdobeOrg", "prod")
LEAVES = [
    ("person.name.firstName", "VARCHAR", "\"person\"['name']['firstName']"),
    ("loyalty.points", "BIGINT", "\"loyalty\"['points']"),
]


def email(i: int) -> str:
    return f"user{i}@example.com"


def build(store: ProfileStore, work: Path, n: int) -> tuple[str, list[str], dict[str, float]]:
    con = duckdb.connect()
    timings: dict[str, float] = {}
    records = work / "records.parquet"
    con.execute(
        f"""COPY (SELECT 0 AS __ah_file, i + 1 AS __ah_rn,
                [{{'ns': 'Email', 'id': 'user' || i || '@example.com', 'primary': true}}] AS __ah_ids,
                {{'name': {{'firstName': 'F' || (i % 5000)}}}} AS person, {{'points': i % 1000}} AS loyalty
            FROM range({n}) t(i)) TO '{records}' (FORMAT parquet)"""
    )
    dataset = str(uuid.uuid4())
    start = time.perf_counter()
    store.apply_fragments(SCOPE, FragmentBatch("b1", dataset, "profile", records, LEAVES, int(time.time())))
    timings["load_fragments_s"] = time.perf_counter() - start
    audiences = []
    for a in range(2):
        members = work / f"aud{a}.parquet"
        con.execute(
            f"""COPY (SELECT 'user' || i || '@example.com' AS __ah_f_email, NULL::VARCHAR AS __ah_check
                FROM range({a}, {n}, 2) t(i)) TO '{members}' (FORMAT parquet)"""
        )
        audience = str(uuid.uuid4())
        start = time.perf_counter()
        store.apply_audience(
            SCOPE,
            AudienceRows(
                run_id=str(uuid.uuid4()),
                audience_id=audience,
                namespace="CustomerAudienceUpload",
                ttl_days=30,
                files=[members],
                identities=[IdentityColumn("email", "Email")],
                payload=[],
                delete_column=None,
                replace=False,
                qualified_at=int(time.time()),
            ),
        )
        timings[f"load_audience_{a}_s"] = time.perf_counter() - start
        audiences.append(audience)
    return dataset, audiences, timings


def embedded_floor(path: Path, dataset: str, audiences: list[str], picks: list[str]) -> list[float]:
    """The same reads as plain point queries on the store's DuckDB file."""
    con = duckdb.connect(str(path), read_only=True)
    frag = fragment_table_for(dataset)
    member_tables = [table_for(a) for a in audiences]
    floor = []
    for value in picks[:50]:
        con.execute("SELECT profile_id FROM identities WHERE ns = 'Email' AND id = ?", [value]).fetchall()
    for value in picks:
        start = time.perf_counter()
        pid = con.execute("SELECT profile_id FROM identities WHERE ns = 'Email' AND id = ?", [value]).fetchone()
        assert pid is not None
        con.execute("SELECT ns, id FROM identities WHERE profile_id = ?", [pid[0]]).fetchall()
        con.execute(f"SELECT * FROM {frag} WHERE __ah_profile_id = ?", [pid[0]]).fetchall()
        for tbl in member_tables:
            con.execute(f"SELECT * FROM {tbl} WHERE __ah_profile_id = ?", [pid[0]]).fetchall()
        floor.append(time.perf_counter() - start)
    con.close()
    return floor


def lake_floor(store: LakeProfileStore, picks: list[str]) -> list[float]:
    """The same reads as bare ``read_parquet`` point queries over the current version's files."""
    manifest = store.manifest(SCOPE)
    root = store.root(SCOPE)

    def files(table: str) -> str:
        return path_list([root / f for f in manifest.tables[table]])

    identities, by_profile = files(lake_sql.IDENTITIES), files(lake_sql.IDENTITIES_BY_PROFILE)
    tables = [e["table"] for e in [*manifest.fragments.values(), *manifest.audiences.values()]]
    others = [files(t) for t in tables if manifest.tables.get(t)]
    con = duckdb.connect()
    floor = []
    for value in picks[:50]:
        con.execute(f"SELECT profile_id FROM read_parquet({identities}) WHERE ns = 'Email' AND id = ?", [value])
    for value in picks:
        start = time.perf_counter()
        pid = con.execute(
            f"SELECT profile_id FROM read_parquet({identities}) WHERE ns = 'Email' AND id = ?", [value]
        ).fetchone()
        assert pid is not None
        con.execute(f"SELECT ns, id FROM read_parquet({by_profile}) WHERE profile_id = ?", [pid[0]]).fetchall()
        for table in others:
            con.execute(f"SELECT * FROM read_parquet({table}) WHERE __ah_profile_id = ?", [pid[0]]).fetchall()
        floor.append(time.perf_counter() - start)
    con.close()
    return floor


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--store", choices=("duckdb", "lake"), default="duckdb", help="the profile store to time")
    args = parser.parse_args()
    rng = random.Random(42)
    with tempfile.TemporaryDirectory(prefix="ah-bench-profile-") as tmp:
        work = Path(tmp)
        store: ProfileStore
        if args.store == "lake":
            meta = MetadataStore(f"sqlite:///{work / 'metadata.db'}")
            meta.create_all()
            engine = DuckDBEngine(threads=args.threads, memory_limit="75%", temp_dir=work / "tmp")
            store = LakeProfileStore(
                work / "lake", engine, meta, memory_limit="75%", threads=args.threads, temp_dir=work / "tmp2"
            )
        else:
            store = DuckDBProfileStore(work / "lake", memory_limit="75%", threads=args.threads, temp_dir=work / "tmp")
        dataset, audiences, timings = build(store, work, args.profiles)
        picks = [email(rng.randrange(args.profiles)) for _ in range(args.lookups)]
        for value in picks[:50]:  # warm the caches both sides use
            store.entity(SCOPE, "Email", value)
        ours = []
        for value in picks:
            start = time.perf_counter()
            found = store.entity(SCOPE, "Email", value)
            ours.append(time.perf_counter() - start)
            assert found is not None and found.attributes
        if isinstance(store, LakeProfileStore):
            floor = lake_floor(store, picks)
        else:
            path = store.path(SCOPE)
            store.close()
            floor = embedded_floor(path, dataset, audiences, picks)
        store.close()

    p50, p99 = percentiles(ours)
    f50, f99 = percentiles(floor)
    print(
        f"profiles: {args.profiles:,}  lookups: {args.lookups:,}  "
        + "  ".join(f"{k} {v:.1f}" for k, v in timings.items())
    )
    print(f"ours:  p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    print(f"store: {args.store}")
    print(f"floor: p50 {f50:.2f} ms  p99 {f99:.2f} ms  (bare DuckDB point queries, same files)")
    print(f"ratio p99 ours/floor: {p99 / f99:.2f}")


if __name__ == "__main__":
    main()
