"""The embedded profile store: one DuckDB database file per sandbox, owned by the server process.

Tables: ``identities`` (namespace, id → profile), ``memberships`` (profile x audience: status,
qualification time, payload as JSON), ``audiences`` (namespace and ttl per audience) and
``applied_runs`` (the commit marker of every applied run). A run is applied in one transaction,
marker included, so after a crash either all of it is there (and the marker says so) or none.
Writers to one sandbox take turns; readers never wait.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from audiencehub.domain.audiences import FieldType
from audiencehub.engines.duckdb import connect
from audiencehub.engines.ingest_sql import ident, lit, path_list
from audiencehub.metadata.store import Scope
from audiencehub.profile.base import ApplyResult, AudienceRows, Membership, Profile, ProfileStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
    ns VARCHAR NOT NULL, id VARCHAR NOT NULL, profile_id UUID NOT NULL, created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS memberships (
    profile_id UUID NOT NULL, namespace VARCHAR NOT NULL, audience_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL, qualified_at TIMESTAMPTZ NOT NULL, payload VARCHAR, run_id VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS audiences (
    audience_id VARCHAR PRIMARY KEY, namespace VARCHAR NOT NULL, ttl_days INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS applied_runs (
    run_id VARCHAR PRIMARY KEY, audience_id VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL, result VARCHAR NOT NULL);
"""
# NOTE: no ART indexes yet: maintaining three of them doubled the time of a 1M-row run (measured with
# benchmarks/ingest.py). Point lookups by identity arrive with the Profile Access API, which will
# build its index after bulk loads and carry its own p99 benchmark.

# A membership whose qualification is older than its audience's ttl reads as exited (as in AEP).
EFFECTIVE = """
SELECT m.profile_id, m.namespace, m.audience_id, m.payload,
  CASE WHEN m.status = 'realized' AND a.ttl_days IS NOT NULL
            AND m.qualified_at < now() - to_days(a.ttl_days) THEN 'exited' ELSE m.status END AS status,
  CASE WHEN m.status = 'realized' AND a.ttl_days IS NOT NULL
            AND m.qualified_at < now() - to_days(a.ttl_days)
       THEN m.qualified_at + to_days(a.ttl_days) ELSE m.qualified_at END AS qualified_at
FROM memberships m LEFT JOIN audiences a ON a.audience_id = m.audience_id
"""


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def _delete_expr(column: str, ftype: FieldType) -> str:
    col = ident(column)
    if ftype in (FieldType.NUMBER, FieldType.LONG, FieldType.INTEGER):
        return f"coalesce({col} = 1, false)"
    if ftype is FieldType.BOOLEAN:
        return f"coalesce({col}, false)"
    return f"coalesce(lower(trim(CAST({col} AS VARCHAR))) IN ('1', 'true', 'yes', 'y'), false)"


def _run_rows_sql(rows: AudienceRows) -> str:
    """One row per primary identity of the run: the last accepted row that names it."""
    ids = rows.identities
    ns = "CASE " + " ".join(f"WHEN {ident(i.column)} IS NOT NULL THEN {lit(i.namespace)}" for i in ids) + " END"
    pid = "coalesce(" + ", ".join(f"CAST({ident(i.column)} AS VARCHAR)" for i in ids) + ")"
    if rows.payload:
        payload = "CAST(json_object(" + ", ".join(f"{lit(n)}, {ident(n)}" for n, _ in rows.payload) + ") AS VARCHAR)"
    else:
        payload = "'{}'"
    delete = _delete_expr(*rows.delete_column) if rows.delete_column else "false"
    extra = "".join(f", CAST({ident(i.column)} AS VARCHAR) AS i{n}" for n, i in enumerate(ids))
    parts = [
        f"SELECT {ns} AS ns, {pid} AS id, {delete} AS is_delete, {payload} AS payload{extra}, "
        f"{n} AS file_index, file_row_number AS rn "
        f"FROM read_parquet({path_list([path])}, file_row_number = true) WHERE _check IS NULL"
        for n, path in enumerate(rows.files)
    ]
    return (
        f"SELECT * EXCLUDE (file_index, rn) FROM ({' UNION ALL '.join(parts)}) "
        "QUALIFY row_number() OVER (PARTITION BY ns, id ORDER BY file_index DESC, rn DESC) = 1"
    )


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

    def apply_audience(self, scope: Scope, rows: AudienceRows) -> ApplyResult:
        done = self.applied(scope, rows.run_id)
        if done is not None:
            return done
        at = datetime.fromtimestamp(rows.qualified_at, UTC)
        aud = rows.audience_id
        with self._writer(scope) as cur:
            cur.execute(f"CREATE TEMP TABLE run_rows AS {_run_rows_sql(rows)}")
            # A new profile's id derives from the identity that created it, so one left join both
            # resolves known identities and names the profiles to create.
            cur.execute(
                "CREATE TEMP TABLE resolved AS SELECT r.*, i.profile_id IS NULL AS is_new, "
                "coalesce(i.profile_id, CAST(md5(r.ns || chr(0) || r.id) AS UUID)) AS profile_id "
                "FROM run_rows r LEFT JOIN identities i ON i.ns = r.ns AND i.id = r.id "
                "WHERE NOT (r.is_delete AND i.profile_id IS NULL)"
            )
            created = cur.execute(
                "INSERT INTO identities SELECT ns, id, profile_id, ? FROM resolved WHERE is_new", [at]
            ).fetchone()
            # Other identities of a row join the profile its first identity resolved to.
            for n, col in enumerate(rows.identities[1:], start=1):
                cur.execute(
                    f"INSERT INTO identities SELECT DISTINCT ON (i{n}) {lit(col.namespace)}, i{n}, profile_id, ? "
                    f"FROM resolved r WHERE i{n} IS NOT NULL AND NOT is_delete AND NOT EXISTS "
                    f"(SELECT 1 FROM identities x WHERE x.ns = {lit(col.namespace)} AND x.id = r.i{n})",
                    [at],
                )
            cur.execute(
                "INSERT INTO audiences VALUES (?, ?, ?) ON CONFLICT (audience_id) DO UPDATE SET "
                "namespace = excluded.namespace, ttl_days = excluded.ttl_days",
                [aud, rows.namespace, rows.ttl_days],
            )
            cur.execute(
                f"CREATE TEMP TABLE prev AS SELECT profile_id, status FROM ({EFFECTIVE}) WHERE audience_id = ?",
                [aud],
            )
            stats = cur.execute(
                "SELECT count(*), count(*) FILTER (WHERE NOT r.is_delete), "
                "count(*) FILTER (WHERE r.is_delete AND p.status = 'realized') "
                "FROM resolved r LEFT JOIN prev p ON p.profile_id = r.profile_id"
            ).fetchone()
            assert stats is not None
            cur.execute(
                "DELETE FROM memberships WHERE audience_id = ? AND profile_id IN (SELECT profile_id FROM resolved)",
                [aud],
            )
            cur.execute(
                "INSERT INTO memberships SELECT r.profile_id, ?, ?, "
                "CASE WHEN r.is_delete THEN 'exited' ELSE 'realized' END, ?, r.payload, ? "
                "FROM resolved r WHERE NOT r.is_delete OR r.profile_id IN (SELECT profile_id FROM prev)",
                [rows.namespace, aud, at, rows.run_id],
            )
            replaced = 0
            if rows.replace:
                row = cur.execute(
                    "UPDATE memberships SET status = 'exited', qualified_at = ?, run_id = ? "
                    "WHERE audience_id = ? AND profile_id IN (SELECT profile_id FROM prev WHERE status = 'realized') "
                    "AND profile_id NOT IN (SELECT profile_id FROM resolved)",
                    [at, rows.run_id, aud],
                ).fetchone()
                replaced = int(row[0]) if row else 0
            n_created = int(created[0]) if created else 0
            result = ApplyResult(
                profilesCreated=n_created,
                profilesUpdated=int(stats[0]) - n_created,
                membersRealized=int(stats[1]),
                membersExited=int(stats[2]) + replaced,
            )
            cur.execute(
                "INSERT INTO applied_runs VALUES (?, ?, ?, ?)",
                [rows.run_id, aud, at, json.dumps(result.to_dict())],
            )
        return result

    def set_audience(self, scope: Scope, audience_id: str, namespace: str, ttl_days: int) -> None:
        with self._writer(scope) as cur:
            cur.execute(
                "INSERT INTO audiences VALUES (?, ?, ?) ON CONFLICT (audience_id) DO UPDATE SET "
                "namespace = excluded.namespace, ttl_days = excluded.ttl_days",
                [audience_id, namespace, ttl_days],
            )

    def remove_audience(self, scope: Scope, audience_id: str) -> None:
        with self._writer(scope) as cur:
            cur.execute("DELETE FROM memberships WHERE audience_id = ?", [audience_id])
            cur.execute("DELETE FROM audiences WHERE audience_id = ?", [audience_id])

    def _profiles(self, cur: duckdb.DuckDBPyConnection, profile_ids: list[str]) -> list[Profile]:
        if not profile_ids:
            return []
        ids = cur.execute(
            "SELECT CAST(profile_id AS VARCHAR), ns, id FROM identities WHERE profile_id IN "
            "(SELECT CAST(unnest(?) AS UUID)) ORDER BY created_at, ns, id",
            [profile_ids],
        ).fetchall()
        mems = cur.execute(
            f"SELECT CAST(profile_id AS VARCHAR), namespace, audience_id, status, qualified_at, payload "
            f"FROM ({EFFECTIVE}) WHERE profile_id IN (SELECT CAST(unnest(?) AS UUID)) ORDER BY audience_id",
            [profile_ids],
        ).fetchall()
        out = {pid: Profile(pid, [], []) for pid in profile_ids}
        for pid, ns, value in ids:
            out[pid].identities.append((ns, value))
        for pid, ns, aud, status, at, payload in mems:
            out[pid].memberships.append(Membership(ns, aud, status, _epoch(at), json.loads(payload or "{}")))
        return [out[pid] for pid in profile_ids]

    def lookup(self, scope: Scope, namespace: str, identity: str) -> Profile | None:
        with self._cursor(scope) as cur:
            row = cur.execute(
                "SELECT CAST(profile_id AS VARCHAR) FROM identities WHERE ns = ? AND id = ?",
                [namespace, identity],
            ).fetchone()
            return self._profiles(cur, [row[0]])[0] if row else None

    def members(self, scope: Scope, audience_id: str, *, limit: int, offset: int) -> tuple[list[Profile], int]:
        with self._cursor(scope) as cur:
            total_row = cur.execute("SELECT count(*) FROM memberships WHERE audience_id = ?", [audience_id]).fetchone()
            ids = cur.execute(
                "SELECT CAST(profile_id AS VARCHAR) FROM memberships WHERE audience_id = ? "
                "ORDER BY profile_id LIMIT ? OFFSET ?",
                [audience_id, limit, offset],
            ).fetchall()
            return self._profiles(cur, [r[0] for r in ids]), int(total_row[0]) if total_row else 0

    def counts(self, scope: Scope, audience_id: str) -> dict[str, int]:
        with self._cursor(scope) as cur:
            rows: list[Any] = cur.execute(
                f"SELECT status, count(*) FROM ({EFFECTIVE}) WHERE audience_id = ? GROUP BY status",
                [audience_id],
            ).fetchall()
        counts = {"realized": 0, "exited": 0}
        counts.update({status: int(n) for status, n in rows})
        return counts

    def close(self) -> None:
        with self._guard:
            for con in self._cons.values():
                con.close()
            self._cons.clear()
