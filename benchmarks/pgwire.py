"""PostgreSQL protocol benchmark: a SELECT of N rows streamed to psycopg, against DuckDB reading it into Arrow.

    .venv/bin/python benchmarks/pgwire.py --rows 1000000 [--nested]

Writes one Parquet file of N rows (bigint, text, double, boolean, timestamp; ``--nested`` adds a struct and a
list, sent as json) and serves it as table ``bench`` through the Query Service's executor (a DuckDBSession)
behind PgWireServer on a free port. psycopg 3 then reads ``SELECT * FROM bench`` with a server-side cursor
(DECLARE/FETCH 10,000 rows at a time) in text format and in binary format, converting every value to
Python; with ``--nested``, once more leaving json values as text (the client's json.loads is most of
their cost). The floor, in the same run, is bare DuckDB reading the same query into an Arrow table; the
executor alone (the session's batches, no wire) is printed in between to show where the time goes.
Prints rows/s of each and the ratio of each to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import psycopg
import pyarrow.parquet as pq
from psycopg.types.string import TextLoader

from audiencehub.query.duckdb import DuckDBSession, Limits
from audiencehub.query.pgwire import PgWireServer
from audiencehub.query.session import QuerySession
from audiencehub.query.tables import DatasetTable, Table

QUERY = "SELECT * FROM bench"


class OneTable:
    def __init__(self, table: DatasetTable) -> None:
        self.table = table

    def load(self) -> dict[str, Table]:
        return {"bench": self.table}


class Backend:
    """Every login gets a new executor session on the one table (no platform around it: no auth to time)."""

    def __init__(self, table: DatasetTable) -> None:
        self.table = table

    def open(self, *, user: str, password: str, database: str) -> QuerySession:
        return session_on(self.table)


def session_on(table: DatasetTable) -> DuckDBSession:
    return DuckDBSession(OneTable(table), None, Limits(timeout_s=3600, memory_limit="2GB"))


def write(path: Path, rows: int, nested: bool) -> DatasetTable:
    extra = ", {'city': 'C' || (i % 100), 'zip': i % 100000} AS address, ['a', 'b'] AS tags" if nested else ""
    duckdb.sql(
        f"""COPY (SELECT i AS id, 'user' || i || '@example.com' AS email, i * 0.5::DOUBLE AS score, i % 2 = 0 AS vip,
                TIMESTAMP '2024-01-01' + to_seconds(i) AS seen{extra}
            FROM range({rows}) t(i)) TO '{path}' (FORMAT parquet)"""
    )
    return DatasetTable("bench", "bench", (str(path),), pq.read_schema(path))


def floor(path: Path) -> float:
    start = time.perf_counter()
    table = duckdb.connect().sql(f"SELECT * FROM read_parquet('{path}')").to_arrow_table()
    assert table.num_rows > 0
    return time.perf_counter() - start


def executor_alone(table: DatasetTable) -> float:
    session = session_on(table)
    start = time.perf_counter()
    result = session.execute(QUERY)
    count = sum(b.num_rows for b in result.batches)
    elapsed = time.perf_counter() - start
    session.close()
    assert count > 0
    return elapsed


def through_psycopg(port: int, binary: bool, rows: int, *, json_as_text: bool = False) -> float:
    dsn = f"host=127.0.0.1 port={port} user=bench@AdobeOrg password=x dbname=prod"
    with psycopg.connect(dsn) as conn:
        if json_as_text:  # the client's json.loads is most of the time of nested columns: leave it out
            conn.adapters.register_loader("json", TextLoader)
        start = time.perf_counter()
        with conn.cursor(name="bench", binary=binary) as cur:
            cur.itersize = 10_000
            cur.execute(QUERY)
            count = sum(1 for _ in cur)
        elapsed = time.perf_counter() - start
    assert count == rows, (count, rows)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--nested", action="store_true", help="add a struct and a list column (sent as json)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.parquet"
        table = write(path, args.rows, args.nested)
        loop = asyncio.new_event_loop()
        server = PgWireServer(Backend(table), "127.0.0.1", 0)
        loop.run_until_complete(server.start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            base = floor(path)
            timings = {
                "DuckDB into Arrow (floor)": base,
                "executor alone (session batches)": executor_alone(table),
                "psycopg, text format": through_psycopg(server.port, False, args.rows),
                "psycopg, binary format": through_psycopg(server.port, True, args.rows),
            }
            if args.nested:
                timings["psycopg, text, json left as text"] = through_psycopg(
                    server.port, False, args.rows, json_as_text=True
                )
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=60)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=60)
    columns = ", ".join(f.name for f in table.schema)
    print(f"SELECT * of {args.rows:,} rows ({columns}):")
    for name, seconds in timings.items():
        print(f"  {name:34s} {seconds:7.2f} s  {args.rows / seconds:>12,.0f} rows/s  ratio {seconds / base:6.1f}")
    print(f"peak RSS of the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
