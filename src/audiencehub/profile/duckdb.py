"""The embedded profile store: one DuckDB database file per sandbox, owned by the server process.

Tables:
- ``identities`` (namespace, id → profile id);
- one membership table per audience, ``m_{audience id hex}``: profile id, status, qualification
  time, the run that wrote it, and the audience's enrichment attributes as typed columns (its
  payload), so that an audience's members are one columnar table to scan, join or replace;
- ``audiences`` (namespace, ttl and table per audience) and ``applied_runs`` (the commit marker of
  every applied run).
A run is applied in one transaction, marker included, so after a crash either all of it is there
(and the marker says so) or none. Writers to one sandbox take turns; readers never wait.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from audiencehub.domain.audiences import FieldType
from audiencehub.engines.duckdb import connect
from audiencehub.engines.ingest_sql import SQL_TYPE, ident, lit, path_list
from audiencehub.metadata.store import Scope
from audiencehub.profile.base import ApplyResult, AudienceRows, Membership, Profile, ProfileStore

# NOTE: no ART indexes yet: maintaining them doubled the time of a 1M-row run (benchmarks/ingest.py).
# Point lookups by identity arrive with the Profile Access API, with its own p99 benchmark.
SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (ns VARCHAR NOT NULL, id VARCHAR NOT NULL, profile_id UUID NOT NULL);
CREATE TABLE IF NOT EXISTS audiences (
    audience_id VARCHAR PRIMARY KEY, namespace VARCHAR NOT NULL, ttl_days INTEGER NOT NULL, tbl VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS applied_runs (
    run_id VARCHAR PRIMARY KEY, audience_id VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL, result VARCHAR NOT NULL);
"""
MEMBER_COLUMNS = ("profile_id", "status", "qualified_at", "run_id")


def table_for(audience_id: str) -> str:
    return "m_" + "".join(c for c in audience_id.lower() if c.isalnum())


def effective(tbl: str, ttl_days: int) -> str:
    """The audience's memberships with their status as read now: realized past the ttl reads exited."""
    expired = f"(status = 'realized' AND qualified_at < now() - to_days({int(ttl_days)}))"
    return (
        f"SELECT * REPLACE (CASE WHEN {expired} THEN 'exited' ELSE status END AS status, "
        f"CASE WHEN {expired} THEN qualified_at + to_days({int(ttl_days)}) ELSE qualified_at END AS qualified_at) "
        f"FROM {ident(tbl)}"
    )


def _delete_expr(column: str, ftype: FieldType) -> str:
    col = ident(column)
    if ftype in (FieldType.NUMBER, FieldType.LONG, FieldType.INTEGER):
        return f"coalesce({col} = 1, false)"
    if ftype is FieldType.BOOLEAN:
        return f"coalesce({col}, false)"
    return f"coalesce(lower(trim(CAST({col} AS VARCHAR))) IN ('1', 'true', 'yes', 'y'), false)"


def _source_sql(rows: AudienceRows, *, dedupe: bool) -> str:
    """The run's accepted rows keyed by their first identity; with ``dedupe``, only the last row per key."""
    ids = rows.identities
    ns = "CASE " + " ".join(f"WHEN {ident(i.column)} IS NOT NULL THEN {lit(i.namespace)}" for i in ids) + " END"
    pid = "coalesce(" + ", ".join(f"CAST({ident(i.column)} AS VARCHAR)" for i in ids) + ")"
    delete = _delete_expr(*rows.delete_column) if rows.delete_column else "false"
    extra = "".join(f", CAST({ident(i.column)} AS VARCHAR) AS i{n}" for n, i in enumerate(ids))
    payload = "".join(f", {ident(name)}" for name, _ in rows.payload)
    parts = [
        f"SELECT {ns} AS ns, {pid} AS id, {delete} AS is_delete{extra}{payload}"
        + (f", {n} AS file_index, file_row_number AS rn " if dedupe else " ")
        + f"FROM read_parquet({path_list([path])}{', file_row_number = true' if dedupe else ''}) WHERE _check IS NULL"
        for n, path in enumerate(rows.files)
    ]
    union = " UNION ALL ".join(parts)
    if not dedupe:
        return union
    return (
        f"SELECT * EXCLUDE (file_index, rn) FROM ({union}) "
        "QUALIFY row_number() OVER (PARTITION BY ns, id ORDER BY file_index DESC, rn DESC) = 1"
    )


def _key_count_sql(rows: AudienceRows) -> str:
    ids = rows.identities
    key = "coalesce(" + ", ".join(f"{lit(i.namespace + ':')} || CAST({ident(i.column)} AS VARCHAR)" for i in ids) + ")"
    scans = " UNION ALL ".join(
        f"SELECT {key} AS k FROM read_parquet({path_list([p])}) WHERE _check IS NULL" for p in rows.files
    )
    return f"SELECT count(*), count(DISTINCT k) FROM ({scans})"


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class DuckDBProfileStore(ProfileStore):
    def __init__(self, lake_root: Path, *, memory_limit: str, threads: int | None, temp_dir: Path) -> None:
        self._lake = lake_root
        self._memory_limit = memory_limit
        self._threads = threads
        self._temp_dir = temp_dir
        self._cons: dict[Scope, duckdb.DuckDBPyConnection] = {}
        self._write_locks: dict[Scope, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, scope: Scope) -> Path:
        return self._lake / scope.org_id / scope.sandbox / "_profile" / "profile.duckdb"

    def _connection(self, scope: Scope) -> duckdb.DuckDBPyConnection:
        with self._guard:
            con = self._cons.get(scope)
            if con is None:
                path = self.path(scope)
                path.parent.mkdir(parents=True, exist_ok=True)
                con = connect(
                    str(path), threads=self._threads, memory_limit=self._memory_limit, temp_dir=self._temp_dir
                )
                con.execute(SCHEMA)
                self._cons[scope] = con
                self._write_locks[scope] = threading.Lock()
            return con

    @contextmanager
    def _cursor(self, scope: Scope) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self._connection(scope).cursor()
        try:
            cur.execute("SET TimeZone = 'UTC'")
            yield cur
        finally:
            cur.close()

    @contextmanager
    def _writer(self, scope: Scope) -> Iterator[duckdb.DuckDBPyConnection]:
        self._connection(scope)
        with self._write_locks[scope], self._cursor(scope) as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def applied(self, scope: Scope, run_id: str) -> ApplyResult | None:
        with self._cursor(scope) as cur:
            row = cur.execute("SELECT result FROM applied_runs WHERE run_id = ?", [run_id]).fetchone()
        return ApplyResult(**json.loads(row[0])) if row else None

    @staticmethod
    def _ensure_audience(cur: duckdb.DuckDBPyConnection, rows: AudienceRows) -> str:
        tbl = table_for(rows.audience_id)
        payload = "".join(f", {ident(name)} {SQL_TYPE[ftype]}" for name, ftype in rows.payload)
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {ident(tbl)} (profile_id UUID NOT NULL, status VARCHAR NOT NULL, "
            f"qualified_at TIMESTAMPTZ NOT NULL, run_id VARCHAR NOT NULL{payload})"
        )
        cur.execute(
            "INSERT INTO audiences VALUES (?, ?, ?, ?) ON CONFLICT (audience_id) DO UPDATE SET "
            "namespace = excluded.namespace, ttl_days = excluded.ttl_days",
            [rows.audience_id, rows.namespace, rows.ttl_days, tbl],
        )
        return tbl

    def apply_audience(self, scope: Scope, rows: AudienceRows) -> ApplyResult:
        done = self.applied(scope, rows.run_id)
        if done is not None:
            return done
        at = dt.datetime.fromtimestamp(rows.qualified_at, dt.UTC)
        with self._writer(scope) as cur:
            tbl = self._ensure_audience(cur, rows)
            counted = cur.execute(_key_count_sql(rows)).fetchone()
            dedupe = counted is not None and counted[0] != counted[1]
            # A row joins the profile of the first of its identities that is already known; when none is,
            # it gets a fresh profile id. A delete row whose identities are all unknown creates nothing.
            ids = rows.identities
            joins = " ".join(
                f"LEFT JOIN identities j{n} ON j{n}.ns = {lit(col.namespace)} AND j{n}.id = r.i{n}"
                for n, col in enumerate(ids)
            )
            found = ", ".join(f"j{n}.profile_id" for n in range(len(ids)))
            unknown = ", ".join(f"j{n}.profile_id IS NULL AS u{n}" for n in range(len(ids)))
            cur.execute(
                f"CREATE TEMP TABLE resolved AS SELECT r.*, {unknown}, coalesce({found}) IS NULL AS is_new, "
                f"coalesce({found}, gen_random_uuid()) AS profile_id "
                f"FROM ({_source_sql(rows, dedupe=dedupe)}) r {joins} "
                f"WHERE NOT (r.is_delete AND coalesce({found}) IS NULL)"
            )
            # Every identity the store has not seen joins the row's profile. The first identity column
            # holds each value once (rows are unique by their first non-empty identity); later columns
            # may repeat a value across rows, and then the first row's profile keeps it.
            inserted = []
            for n, col in enumerate(ids):
                distinct = f"DISTINCT ON (i{n}) " if n else ""
                row = cur.execute(
                    f"INSERT INTO identities SELECT {distinct}{lit(col.namespace)}, i{n}, profile_id "
                    f"FROM resolved WHERE i{n} IS NOT NULL AND u{n} AND NOT is_delete"
                ).fetchone()
                inserted.append(int(row[0]) if row else 0)
            if len(ids) == 1:
                n_created = inserted[0]  # one identity column: a new identity is a new profile
            else:
                row = cur.execute("SELECT count(*) FILTER (WHERE is_new) FROM resolved").fetchone()
                n_created = int(row[0]) if row else 0
            has_members = cur.execute(f"SELECT count(*) > 0 FROM {ident(tbl)}").fetchone()
            exited = replaced = 0
            if has_members and has_members[0]:
                cur.execute(
                    f"CREATE TEMP TABLE prev AS SELECT profile_id, status FROM ({effective(tbl, rows.ttl_days)})"
                )
                row = cur.execute(
                    "SELECT count(*) FROM resolved r JOIN prev p USING (profile_id) "
                    "WHERE r.is_delete AND p.status = 'realized'"
                ).fetchone()
                exited = int(row[0]) if row else 0
                cur.execute(f"DELETE FROM {ident(tbl)} WHERE profile_id IN (SELECT profile_id FROM resolved)")
                keep = "NOT r.is_delete OR r.profile_id IN (SELECT profile_id FROM prev)"
            else:
                keep = "NOT r.is_delete"
            payload = "".join(f", r.{ident(name)}" for name, _ in rows.payload)
            cur.execute(
                f"INSERT INTO {ident(tbl)} SELECT r.profile_id, "
                f"CASE WHEN r.is_delete THEN 'exited' ELSE 'realized' END, ?, ?{payload} FROM resolved r WHERE {keep}",
                [at, rows.run_id],
            )
            if rows.replace and has_members and has_members[0]:
                row = cur.execute(
                    f"UPDATE {ident(tbl)} SET status = 'exited', qualified_at = ?, run_id = ? "
                    "WHERE profile_id IN (SELECT profile_id FROM prev WHERE status = 'realized') "
                    "AND profile_id NOT IN (SELECT profile_id FROM resolved)",
                    [at, rows.run_id],
                ).fetchone()
                replaced = int(row[0]) if row else 0
            stats = cur.execute("SELECT count(*), count(*) FILTER (WHERE NOT is_delete) FROM resolved").fetchone()
            assert stats is not None
            result = ApplyResult(
                profilesCreated=n_created,
                profilesUpdated=int(stats[0]) - n_created,
                membersRealized=int(stats[1]),
                membersExited=exited + replaced,
            )
            cur.execute(
                "INSERT INTO applied_runs VALUES (?, ?, ?, ?)",
                [rows.run_id, rows.audience_id, at, json.dumps(result.to_dict())],
            )
        return result

    def set_audience(self, scope: Scope, audience_id: str, namespace: str, ttl_days: int) -> None:
        with self._writer(scope) as cur:
            cur.execute(
                "INSERT INTO audiences VALUES (?, ?, ?, ?) ON CONFLICT (audience_id) DO UPDATE SET "
                "namespace = excluded.namespace, ttl_days = excluded.ttl_days",
                [audience_id, namespace, ttl_days, table_for(audience_id)],
            )

    def remove_audience(self, scope: Scope, audience_id: str) -> None:
        with self._writer(scope) as cur:
            cur.execute(f"DROP TABLE IF EXISTS {ident(table_for(audience_id))}")
            cur.execute("DELETE FROM audiences WHERE audience_id = ?", [audience_id])

    @staticmethod
    def _audiences(cur: duckdb.DuckDBPyConnection, audience_id: str | None = None) -> list[tuple[str, str, int, str]]:
        sql = (
            "SELECT a.audience_id, a.namespace, a.ttl_days, a.tbl FROM audiences a "
            "JOIN duckdb_tables() t ON t.table_name = a.tbl"
        )
        rows = cur.execute(
            sql + (" WHERE a.audience_id = ?" if audience_id else "") + " ORDER BY 1",
            [audience_id] if audience_id else [],
        ).fetchall()
        return [(str(a), str(ns), int(ttl), str(tbl)) for a, ns, ttl, tbl in rows]

    def _profiles(self, cur: duckdb.DuckDBPyConnection, profile_ids: list[str]) -> list[Profile]:
        if not profile_ids:
            return []
        out = {pid: Profile(pid, [], []) for pid in profile_ids}
        wanted = "(SELECT CAST(unnest(?) AS UUID))"
        for pid, ns, value in cur.execute(
            f"SELECT CAST(profile_id AS VARCHAR), ns, id FROM identities WHERE profile_id IN {wanted} ORDER BY ns, id",
            [profile_ids],
        ).fetchall():
            out[pid].identities.append((ns, value))
        for audience_id, namespace, ttl, tbl in self._audiences(cur):
            result = cur.execute(
                f"SELECT * REPLACE (CAST(profile_id AS VARCHAR) AS profile_id) FROM ({effective(tbl, ttl)}) "
                f"WHERE profile_id IN {wanted}",
                [profile_ids],
            )
            names = [d[0] for d in result.description]
            for values in result.fetchall():
                row = dict(zip(names, values, strict=True))
                payload = {k: _json_value(v) for k, v in row.items() if k not in MEMBER_COLUMNS}
                out[row["profile_id"]].memberships.append(
                    Membership(namespace, audience_id, row["status"], int(row["qualified_at"].timestamp()), payload)
                )
        return [out[pid] for pid in profile_ids]

    def lookup(self, scope: Scope, namespace: str, identity: str) -> Profile | None:
        with self._cursor(scope) as cur:
            row = cur.execute(
                "SELECT CAST(profile_id AS VARCHAR) FROM identities WHERE ns = ? AND id = ?", [namespace, identity]
            ).fetchone()
            return self._profiles(cur, [row[0]])[0] if row else None

    def members(self, scope: Scope, audience_id: str, *, limit: int, offset: int) -> tuple[list[Profile], int]:
        with self._cursor(scope) as cur:
            found = self._audiences(cur, audience_id)
            if not found:
                return [], 0
            tbl = ident(found[0][3])
            total = cur.execute(f"SELECT count(*) FROM {tbl}").fetchone()
            ids = cur.execute(
                f"SELECT CAST(profile_id AS VARCHAR) FROM {tbl} ORDER BY profile_id LIMIT ? OFFSET ?", [limit, offset]
            ).fetchall()
            profiles = self._profiles(cur, [r[0] for r in ids])
        return profiles, int(total[0]) if total else 0

    def counts(self, scope: Scope, audience_id: str) -> dict[str, int]:
        counts = {"realized": 0, "exited": 0}
        with self._cursor(scope) as cur:
            for _, _, ttl, tbl in self._audiences(cur, audience_id):
                for status, n in cur.execute(
                    f"SELECT status, count(*) FROM ({effective(tbl, ttl)}) GROUP BY status"
                ).fetchall():
                    counts[str(status)] = int(n)
        return counts

    def close(self) -> None:
        with self._guard:
            for con in self._cons.values():
                con.close()
            self._cons.clear()
