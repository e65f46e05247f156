"""Export benchmark (seed 002): N profiles with 3 audiences' memberships exported into a dataset, then the seed's query.

    .venv/bin/python benchmarks/export_query.py --profiles 10000000 --threads 2

Builds a sandbox's profile store directly with DuckDB SQL (the tables and registrations the store's own write paths
make): N profiles in ``identities``, one profile fragment dataset with the seed's six fields (the tenant's ecid,
email and phone number, person gender, first and last name), and 3 segment membership tables in namespace ``ups``
(50%, 30% and 20% of the profiles, a tenth of each exited). Then:

1. the export: ``DuckDBProfileStore.export`` writes every profile that is ``realized`` in one of the 3 audiences as
   an XDM row (the six fields nested, ``segmentMembership`` with all of the profile's memberships), as an export
   job's batch; the floor, timed in the same run on the same database file and settings, is one hand-written
   ``COPY`` of the same rows (the same merge of fragments by time, the memberships joined per table). Both must
   write the same rows (count and checksum; the benchmark fails otherwise).
2. the seed's query (``explode(segmentMembership.ups)`` ... ``ROW_NUMBER() OVER (ORDER BY key)``) over the exported
   files, through the Query Service's executor (its Spark SQL translation and guard, a session over the dataset's
   files; every result row fetched) against plain DuckDB running a hand translation of it on the same files.

Prints seconds, profiles (or rows) per second and the ratio to the floor. The floors run before and after
audiencehub's runs and the best of both counts: on a shared machine, load that comes and goes weighs less.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from audiencehub.engines.duckdb import connect
from audiencehub.metadata.store import Scope
from audiencehub.profile.columns import BATCH, PROFILE_ID, QUALIFIED_AT, RUN_ID, SEQ, STATUS, TS, table_for
from audiencehub.profile.duckdb import SCHEMA, DuckDBProfileStore
from audiencehub.profile.exports import ExportField, ExportOutput, ExportSpec, MemberFilter
from audiencehub.query.duckdb import DuckDBSession, Limits
from audiencehub.query.tables import DatasetTable, Table

SCOPE = Scope("bench@AdobeOrg", "prod")
TENANT = "_bench"
FIELDS = (
    ((TENANT, "identification", "core", "ecid"), "VARCHAR"),
    ((TENANT, "identification", "core", "email"), "VARCHAR"),
    ((TENANT, "identification", "core", "phoneNumber"), "VARCHAR"),
    (("person", "gender"), "VARCHAR"),
    (("person", "name", "firstName"), "VARCHAR"),
    (("person", "name", "lastName"), "VARCHAR"),
)
AUDIENCES = {"a1000000-0000-4000-8000-000000000001": 0.5, "a2000000-0000-4000-8000-000000000002": 0.3}
AUDIENCES["a3000000-0000-4000-8000-000000000003"] = 0.2
TABLE = "segment_export_job_dataset_for_cja"
SEED_SQL = """SELECT ROW_NUMBER() OVER (ORDER BY key)::text as _id, personID, key as audienceMembershipId
FROM (
   SELECT {person} AS personID, explode(segmentMembership.ups)
   FROM {table}
)
WHERE value.status = 'realized' AND (key = '{a1}' OR key = '{a2}' OR key = '{a3}')"""


def build(con: duckdb.DuckDBPyConnection, n: int, now: dt.datetime) -> str:
    """The store's tables over N profiles; answers the fragment table's name."""
    for stmt in SCHEMA.split(";"):
        if stmt.strip() and "INDEX" not in stmt:  # the point-lookup indexes do not matter to an export
            con.execute(stmt)
    con.execute(
        f"CREATE TABLE identities_new AS SELECT 'Email' AS ns, 'p' || i || '@example.com' AS id, "
        f"uuid() AS profile_id FROM range({n}) t(i)"
    )
    con.execute("DROP TABLE identities")
    con.execute("ALTER TABLE identities_new RENAME TO identities")
    tbl = "f_benchdataset"
    leaves = {
        ".".join(FIELDS[0][0]): "'ecid-' || i",
        ".".join(FIELDS[1][0]): "id",
        ".".join(FIELDS[2][0]): "'+1555' || lpad(CAST(i AS VARCHAR), 7, '0')",
        ".".join(FIELDS[3][0]): "CASE WHEN i % 2 = 0 THEN 'female' ELSE 'male' END",
        ".".join(FIELDS[4][0]): "'First' || i",
        ".".join(FIELDS[5][0]): "'Last' || (i % 1000)",
    }
    values = ", ".join(f'{sql} AS "{name}"' for name, sql in leaves.items())
    con.execute(
        f"CREATE TABLE {tbl} AS SELECT profile_id AS {PROFILE_ID}, 'batch-1' AS {BATCH}, "
        f"TIMESTAMPTZ '{now.isoformat()}' AS {TS}, i AS {SEQ}, {values} "
        "FROM (SELECT *, CAST(split_part(substr(id, 2), '@', 1) AS BIGINT) AS i FROM identities)"
    )
    con.execute("INSERT INTO fragment_tables VALUES ('benchdataset', 'profile', ?)", [tbl])
    for k, (audience_id, share) in enumerate(AUDIENCES.items()):
        members = table_for(audience_id)
        con.execute(
            f"CREATE TABLE {members} AS SELECT profile_id AS {PROFILE_ID}, "
            f"CASE WHEN hash(profile_id, {k}) % 10 = 0 THEN 'exited' ELSE 'realized' END AS {STATUS}, "
            f"TIMESTAMPTZ '{now.isoformat()}' AS {QUALIFIED_AT}, 'job-1' AS {RUN_ID} FROM identities "
            f"WHERE hash(profile_id, {k + 100}) % 1000 < {int(share * 1000)}"
        )
        con.execute("INSERT INTO audiences VALUES (?, 'ups', 36500, ?)", [audience_id, members])
    con.execute("CHECKPOINT")
    return tbl


def export(store: DuckDBProfileStore, folder: Path) -> tuple[float, int]:
    spec = ExportSpec(fields=tuple(ExportField(path, t) for path, t in FIELDS))
    members = tuple(MemberFilter("ups", a, ("realized",)) for a in AUDIENCES)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    (count,) = store.export(SCOPE, spec, [ExportOutput(members, folder)])
    return time.perf_counter() - t0, count


def floor_export(con: duckdb.DuckDBPyConnection, tbl: str, out: Path) -> tuple[float, int]:
    """The same rows, written by hand: the chosen profiles, their fields merged by time, a join per audience."""
    chosen = " UNION ".join(f"SELECT {PROFILE_ID} FROM {table_for(a)} WHERE {STATUS} = 'realized'" for a in AUDIENCES)
    key = f"({TS}, {BATCH}, {SEQ})"
    merged = ", ".join(f'arg_max("{".".join(p)}", {key}) AS v{n}' for n, (p, _) in enumerate(FIELDS))
    joins = "".join(
        f" LEFT JOIN (SELECT {PROFILE_ID}, {{'status': {STATUS}, 'lastQualificationTime': {QUALIFIED_AT}}} AS m{k} "
        f"FROM {table_for(a)}) USING ({PROFILE_ID})"
        for k, a in enumerate(AUDIENCES)
    )
    entries = ", ".join(f"{{'key': '{a}', 'value': m{k}}}" for k, a in enumerate(AUDIENCES))
    sql = (
        f"SELECT {{'identification': {{'core': {{'ecid': v0, 'email': v1, 'phoneNumber': v2}}}}}} AS {TENANT}, "
        "{'gender': v3, 'name': {'firstName': v4, 'lastName': v5}} AS person, "
        f"MAP {{'ups': map_from_entries(list_filter([{entries}], lambda e: e.value IS NOT NULL))}} "
        "AS segmentMembership "
        f"FROM ({chosen}) LEFT JOIN (SELECT {PROFILE_ID}, {merged} FROM {tbl} GROUP BY {PROFILE_ID}) "
        f"USING ({PROFILE_ID}){joins}"
    )
    t0 = time.perf_counter()
    found = con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)").fetchone()
    return time.perf_counter() - t0, int(found[0]) if found else 0


def checksum(files: str) -> tuple[int, int, int]:
    row = (
        duckdb.connect()
        .execute(
            f"SELECT count(*), sum(hash({TENANT}.identification.core.email, person.name.firstName, "
            "list_sort(map_entries(segmentMembership['ups'])))), "
            f"count(*) FILTER (WHERE person.gender IS NULL) FROM read_parquet({files})"
        )
        .fetchone()
    )
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


class Files:
    """The exported dataset as the Query Service's table source sees a dataset: its committed files."""

    def __init__(self, files: list[Path]) -> None:
        self._table = DatasetTable(TABLE, "bench-dataset", tuple(map(str, files)), pq.read_schema(files[0]), ("b",))

    def load(self) -> dict[str, Table]:
        return {TABLE: self._table}


def seed_query(files: list[Path], threads: int | None, memory: str, work: Path) -> tuple[float, int]:
    sql = SEED_SQL.format(person=f"{TENANT}.identification.core.email", table=TABLE, **_ids())
    # As the server runs it by default (AUDIENCEHUB_QUERY_NATIVE_PARQUET): the engine reads the batch files itself.
    limits = Limits(memory_limit=memory, threads=threads, temp_dir=str(work), native_parquet=True)
    session = DuckDBSession(Files(files), None, limits)
    try:
        t0 = time.perf_counter()
        result = session.execute(sql)
        rows = sum(b.num_rows for b in result.batches)
        return time.perf_counter() - t0, rows
    finally:
        session.close()


def floor_query(files: list[Path], threads: int | None, memory: str, work: Path) -> tuple[float, int]:
    con = connect(threads=threads, memory_limit=memory, temp_dir=work)
    paths = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    ids = _ids()
    sql = (
        "SELECT CAST(ROW_NUMBER() OVER (ORDER BY e.key) AS VARCHAR) AS _id, personID, e.key AS audienceMembershipId "
        f"FROM (SELECT {TENANT}.identification.core.email AS personID, unnest(map_entries(segmentMembership['ups'])) "
        f"AS e FROM read_parquet({paths})) WHERE e.value.status = 'realized' AND "
        f"(e.key = '{ids['a1']}' OR e.key = '{ids['a2']}' OR e.key = '{ids['a3']}')"
    )
    try:
        t0 = time.perf_counter()
        reader = con.sql(sql).to_arrow_reader(65_536)
        rows = sum(b.num_rows for b in reader)
        return time.perf_counter() - t0, rows
    finally:
        con.close()


def _ids() -> dict[str, str]:
    a1, a2, a3 = AUDIENCES
    return {"a1": a1, "a2": a2, "a3": a3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory-limit", default="75%")
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: a temp folder)")
    args = parser.parse_args()
    n = args.profiles
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="ah-bench-export-", dir=args.work) as tmp:
        work = Path(tmp)
        settings: dict[str, Any] = {"threads": args.threads, "memory_limit": args.memory_limit, "temp_dir": work / "t"}
        store = DuckDBProfileStore(work / "lake", **settings)
        path = store.path(SCOPE)
        path.parent.mkdir(parents=True, exist_ok=True)
        con = connect(str(path), **settings)
        t0 = time.perf_counter()
        tbl = build(con, n, now)
        built = time.perf_counter() - t0
        print(
            f"profiles: {n:,}  audiences: {len(AUDIENCES)}  threads: {args.threads or 'all'}  "
            f"memory: {args.memory_limit}  build {built:.1f}s",
            flush=True,
        )
        floor_before = floor_export(con, tbl, work / "floor-1.parquet")
        con.close()
        ours_s, ours_n = export(store, work / "batch")
        store.close()
        con = connect(str(path), **settings)
        floor_after = floor_export(con, tbl, work / "floor-2.parquet")
        con.close()
        floor_s, floor_n = min(floor_before, floor_after)
        files = sorted((work / "batch").glob("*.parquet"))
        ours_sum = checksum("[" + ", ".join(f"'{f}'" for f in files) + "]")
        floor_sum = checksum(f"['{work / 'floor-2.parquet'}']")
        if ours_sum != floor_sum or ours_n != floor_n:
            raise SystemExit(f"the export and the floor differ: {ours_n} rows {ours_sum} vs {floor_n} rows {floor_sum}")
        print(
            f"export: {ours_n:,} profiles in {ours_s:.2f}s ({ours_n / ours_s:,.0f} profiles/s, {len(files)} files); "
            f"hand-written COPY {floor_s:.2f}s ({floor_n / floor_s:,.0f} profiles/s); ratio {ours_s / floor_s:.2f}; "
            "the same rows on both sides",
            flush=True,
        )
        q_floor_1 = floor_query(files, args.threads, args.memory_limit, work / "t")
        q_ours = seed_query(files, args.threads, args.memory_limit, work / "t")
        q_floor_2 = floor_query(files, args.threads, args.memory_limit, work / "t")
        q_floor_s, q_floor_n = min(q_floor_1, q_floor_2)
        q_s, q_n = q_ours
        if q_n != q_floor_n:
            raise SystemExit(f"the seed query answered {q_n} rows through the Query Service, {q_floor_n} in DuckDB")
        print(
            f"seed query over the exported dataset: {q_n:,} rows in {q_s:.2f}s through the Query Service "
            f"({q_n / q_s:,.0f} rows/s); plain DuckDB {q_floor_s:.2f}s; ratio {q_s / q_floor_s:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
