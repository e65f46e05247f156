"""The embedded profile store: one DuckDB database file per sandbox, owned by the server process.

Tables:
- ``identities`` (namespace, id → profile id);
- one membership table per audience, ``m_{audience id hex}``: profile id, status, qualification
  time, the run that wrote it (named with the internal prefix ``__ah_``, which field names cannot
  have), and the audience's enrichment attributes as typed columns under their field names (its
  payload), so that an audience's members are one columnar table to scan, join or replace;
- ``audiences`` (namespace, ttl and table per audience) and ``applied_runs`` (the commit marker of
  every applied run).
A run is applied in one transaction, marker included, so after a crash either all of it is there
(and the marker says so) or none. Writers to one sandbox take turns; readers never wait.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from audiencehub.domain.segments import SEGMENT_NAMESPACE, Plan, SegmentCounts
from audiencehub.engines.ingest_sql import CHECK, INTERNAL, SQL_TYPE, field_column, ident, lit, path_list
from audiencehub.metadata.store import Scope
from audiencehub.profile import exports, segment_codes, segments
from audiencehub.profile.base import (
    ApplyResult,
    AudienceRows,
    Entity,
    FragmentBatch,
    FragmentResult,
    Membership,
    Profile,
    ProfileStore,
)
from audiencehub.profile.columns import (
    BATCH,
    DELETE,
    ENTITY_ID,
    ENTITY_NS,
    FILE,
    ID,
    IDS,
    MEMBER_COLUMNS,
    MEMBERSHIP_LEAF,
    NEW,
    NS,
    PROFILE_ID,
    QUALIFIED_AT,
    RN,
    RUN_ID,
    SEQ,
    STATUS,
    TS,
    XFILE,
    XRN,
    dataset_rank,
    effective,
    fragment_table_for,
    table_for,
)
from audiencehub.profile.duckdb_files import SandboxFiles, rollback
from audiencehub.profile.graph import TEMP_TABLES, stitch
from audiencehub.profile.run_rows import accepted_sql, identity_text, identity_unknown

# ART indexes on identities and on every table's profile key: the Profile Access API's point lookups need them
# (benchmarks/profile_access.py); they cost bulk writes some time (benchmarks/ingest.py).
SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (ns VARCHAR NOT NULL, id VARCHAR NOT NULL, profile_id UUID NOT NULL);
CREATE TABLE IF NOT EXISTS audiences (
    audience_id VARCHAR PRIMARY KEY, namespace VARCHAR NOT NULL, ttl_days INTEGER NOT NULL, tbl VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS applied_runs (
    run_id VARCHAR PRIMARY KEY, audience_id VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL, result VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS applied_batches (
    batch_id VARCHAR PRIMARY KEY, dataset_id VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL,
    result VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS segment_stamps (
    no INTEGER PRIMARY KEY, job_id VARCHAR NOT NULL, stamped_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS segment_results (
    segment_id VARCHAR PRIMARY KEY, tbl VARCHAR NOT NULL, col INTEGER NOT NULL, stamp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS applied_jobs (
    job_id VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL, result VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS fragment_tables (
    dataset_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, tbl VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS fragment_memberships (
    profile_id UUID NOT NULL, ns VARCHAR NOT NULL, segment_id VARCHAR NOT NULL, status VARCHAR,
    qualified_at TIMESTAMPTZ NOT NULL, dataset_id VARCHAR NOT NULL, received_at TIMESTAMPTZ NOT NULL,
    seq BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS identities_by_id ON identities (id);
CREATE INDEX IF NOT EXISTS identities_profile ON identities (profile_id);
CREATE INDEX IF NOT EXISTS fragment_memberships_profile ON fragment_memberships (profile_id);
"""
MEMBERSHIP_LEAF_SQL = ident(MEMBERSHIP_LEAF)


def _source_sql(rows: AudienceRows, *, dedupe: bool, ordered: bool) -> str:
    """The run's accepted rows keyed by their first identity; with ``dedupe``, only the last row per key.

    With ``ordered``, the rows keep their place in the run (file, then row number in the file).
    """
    union = accepted_sql(rows, place=dedupe or ordered)
    if not dedupe:
        return union
    return (
        f"SELECT *{'' if ordered else f' EXCLUDE ({FILE}, {RN})'} FROM ({union}) "
        f"QUALIFY row_number() OVER (PARTITION BY {NS}, {ID} ORDER BY {FILE} DESC, {RN} DESC) = 1"
    )


def _key_count_sql(rows: AudienceRows) -> str:
    ids = rows.identities
    key = (
        "coalesce("
        + ", ".join(f"{lit(i.namespace + ':')} || CAST({ident(field_column(i.column))} AS VARCHAR)" for i in ids)
        + ")"
    )
    scans = " UNION ALL ".join(
        f"SELECT {key} AS k FROM read_parquet({path_list([p])}) WHERE {CHECK} IS NULL" for p in rows.files
    )
    return f"SELECT count(*), count(DISTINCT k) FROM ({scans})"


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class DuckDBProfileStore(ProfileStore):
    def __init__(
        self,
        lake_root: Path,
        *,
        memory_limit: str,
        threads: int | None,
        temp_dir: Path,
        owner: bool = True,
        memory_setting: str = "AUDIENCEHUB_PROFILE_MEMORY_LIMIT",
    ) -> None:
        """``owner=False`` in an ``audiencehub worker`` process: the files belong to the server, which holds the
        home's lock; opening one here would fail, or lock the server out of it for as long as this process lives.
        ``memory_setting`` names the setting that ``memory_limit`` came from, for the reason of an out-of-memory
        failure."""
        self._lake = lake_root
        self._files = SandboxFiles(
            self.path,
            schema=SCHEMA,
            memory_limit=memory_limit,
            memory_setting=memory_setting,
            threads=threads,
            temp_dir=temp_dir,
            owner=owner,
        )
        # The lists of membership and fragment tables, read once per sandbox until a write commits
        # (``SandboxFiles.generation`` counts commits; a list read under an older count is never used).
        self._tables: dict[Scope, tuple[int, list[tuple[str, str, int, str]], list[tuple[str, str, str]]]] = {}

    def path(self, scope: Scope) -> Path:
        return self._lake / scope.org_id / scope.sandbox / "_profile" / "profile.duckdb"

    def _connection(self, scope: Scope) -> duckdb.DuckDBPyConnection:
        """The sandbox's open connection (opened if need be): for tests and tools that load tables directly."""
        return self._files.connection(scope)

    def _cursor(self, scope: Scope) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self._files.cursor(scope)

    def _writer(self, scope: Scope) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self._files.writer(scope)

    def applied(self, scope: Scope, run_id: str) -> ApplyResult | None:
        with self._cursor(scope) as cur:
            row = cur.execute("SELECT result FROM applied_runs WHERE run_id = ?", [run_id]).fetchone()
        return ApplyResult(**json.loads(row[0])) if row else None

    @staticmethod
    def _put_audience(
        cur: duckdb.DuckDBPyConnection, audience_id: str, namespace: str, ttl_days: int, *, overwrite: bool
    ) -> None:
        """Records the audience's namespace and ttl; without ``overwrite``, only if it has no record yet."""
        action = (
            "DO UPDATE SET namespace = excluded.namespace, ttl_days = excluded.ttl_days" if overwrite else "DO NOTHING"
        )
        cur.execute(
            f"INSERT INTO audiences VALUES (?, ?, ?, ?) ON CONFLICT (audience_id) {action}",
            [audience_id, namespace, ttl_days, table_for(audience_id)],
        )

    @classmethod
    def _ensure_audience(cls, cur: duckdb.DuckDBPyConnection, rows: AudienceRows) -> tuple[str, int]:
        """The audience's membership table, created if new, and its ttl as recorded.

        The run's ttl (read when it started) is recorded only for an audience the store does not know:
        a PATCH of ttlInDays while the run processed (``set_audience``) stays authoritative.
        """
        tbl = table_for(rows.audience_id)
        payload = "".join(f", {ident(name)} {SQL_TYPE[ftype]}" for name, ftype in rows.payload)
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {ident(tbl)} ({PROFILE_ID} UUID NOT NULL, {STATUS} VARCHAR NOT NULL, "
            f"{QUALIFIED_AT} TIMESTAMPTZ NOT NULL, {RUN_ID} VARCHAR NOT NULL{payload})"
        )
        cur.execute(f"CREATE INDEX IF NOT EXISTS {ident(tbl + '_profile')} ON {ident(tbl)} ({PROFILE_ID})")
        cls._put_audience(cur, rows.audience_id, rows.namespace, rows.ttl_days, overwrite=False)
        row = cur.execute("SELECT ttl_days FROM audiences WHERE audience_id = ?", [rows.audience_id]).fetchone()
        return tbl, int(row[0]) if row else rows.ttl_days

    def apply_audience(self, scope: Scope, rows: AudienceRows) -> ApplyResult:
        done = self.applied(scope, rows.run_id)
        if done is not None:
            return done
        at = dt.datetime.fromtimestamp(rows.qualified_at, dt.UTC)
        with self._writer(scope) as cur:
            tbl, ttl_days = self._ensure_audience(cur, rows)
            counted = cur.execute(_key_count_sql(rows)).fetchone()
            dedupe = counted is not None and counted[0] != counted[1]
            # A row joins the profile of the first of its identities that is already known; when none is,
            # it gets a fresh profile id. A delete row whose identities are all unknown creates nothing.
            ids = rows.identities
            joins = " ".join(
                f"LEFT JOIN identities j{n} ON j{n}.ns = {lit(col.namespace)} AND j{n}.id = r.{identity_text(n)}"
                for n, col in enumerate(ids)
            )
            found = ", ".join(f"j{n}.profile_id" for n in range(len(ids)))
            unknown = ", ".join(f"j{n}.profile_id IS NULL AS {identity_unknown(n)}" for n in range(len(ids)))
            ordered = len(ids) > 1  # the place of each row decides who keeps a repeated later identity
            cur.execute(
                f"CREATE TEMP TABLE resolved AS SELECT r.*, {unknown}, coalesce({found}) IS NULL AS {NEW}, "
                f"coalesce({found}, uuidv7()) AS {PROFILE_ID} "
                f"FROM ({_source_sql(rows, dedupe=dedupe, ordered=ordered)}) r {joins} "
                f"WHERE NOT (r.{DELETE} AND coalesce({found}) IS NULL)"
            )
            # Every identity the store has not seen joins the row's profile. The first identity column
            # holds each value once (rows are unique by their first non-empty identity); later columns
            # may repeat a value across rows, and then the profile of the first of those rows (in file
            # order, files in processing order) keeps it.
            inserted = []
            for n, col in enumerate(ids):
                first = f"DISTINCT ON ({identity_text(n)}) " if n else ""
                order = f" ORDER BY {identity_text(n)}, {FILE}, {RN}" if n else ""
                text, unknown = identity_text(n), identity_unknown(n)
                row = cur.execute(
                    f"INSERT INTO identities SELECT {first}{lit(col.namespace)}, {text}, {PROFILE_ID} "
                    f"FROM resolved WHERE {text} IS NOT NULL AND {unknown} AND NOT {DELETE}{order}"
                ).fetchone()
                inserted.append(int(row[0]) if row else 0)
            if len(ids) == 1:
                n_created = inserted[0]  # one identity column: a new identity is a new profile
            else:
                row = cur.execute(f"SELECT count(*) FILTER (WHERE {NEW}) FROM resolved").fetchone()
                n_created = int(row[0]) if row else 0
            has_members = cur.execute(f"SELECT count(*) > 0 FROM {ident(tbl)}").fetchone()
            exited = replaced = 0
            if has_members and has_members[0]:
                cur.execute(
                    f"CREATE TEMP TABLE prev AS SELECT {PROFILE_ID}, {STATUS} FROM ({effective(tbl, ttl_days)})"
                )
                row = cur.execute(
                    f"SELECT count(*) FROM resolved r JOIN prev p USING ({PROFILE_ID}) "
                    f"WHERE r.{DELETE} AND p.{STATUS} = 'realized'"
                ).fetchone()
                exited = int(row[0]) if row else 0
                cur.execute(f"DELETE FROM {ident(tbl)} WHERE {PROFILE_ID} IN (SELECT {PROFILE_ID} FROM resolved)")
                keep = f"NOT r.{DELETE} OR r.{PROFILE_ID} IN (SELECT {PROFILE_ID} FROM prev)"
            else:
                keep = f"NOT r.{DELETE}"
            payload = "".join(f", r.{ident(name)}" for name, _ in rows.payload)
            cur.execute(
                f"INSERT INTO {ident(tbl)} SELECT r.{PROFILE_ID}, "
                f"CASE WHEN r.{DELETE} THEN 'exited' ELSE 'realized' END, ?, ?{payload} FROM resolved r WHERE {keep}",
                [at, rows.run_id],
            )
            if rows.replace and has_members and has_members[0]:
                row = cur.execute(
                    f"UPDATE {ident(tbl)} SET {STATUS} = 'exited', {QUALIFIED_AT} = ?, {RUN_ID} = ? "
                    f"WHERE {PROFILE_ID} IN (SELECT {PROFILE_ID} FROM prev WHERE {STATUS} = 'realized') "
                    f"AND {PROFILE_ID} NOT IN (SELECT {PROFILE_ID} FROM resolved)",
                    [at, rows.run_id],
                ).fetchone()
                replaced = int(row[0]) if row else 0
            stats = cur.execute(f"SELECT count(*), count(*) FILTER (WHERE NOT {DELETE}) FROM resolved").fetchone()
            assert stats is not None
            result = ApplyResult(
                profilesCreated=n_created,
                profilesUpdated=int(stats[0]) - n_created,
                membersRealized=int(stats[1]),
                membersExited=exited + replaced,
            )
            if len(ids) > 1:
                self._link_row_identities(cur, rows)
            cur.execute(
                "INSERT INTO applied_runs VALUES (?, ?, ?, ?)",
                [rows.run_id, rows.audience_id, at, json.dumps(result.to_dict())],
            )
        return result

    def set_audience(self, scope: Scope, audience_id: str, namespace: str, ttl_days: int) -> None:
        with self._writer(scope) as cur:
            self._put_audience(cur, audience_id, namespace, ttl_days, overwrite=True)

    def remove_audience(self, scope: Scope, audience_id: str) -> None:
        self._files.connection(scope)
        with self._files.evaluation_locks[scope], self._writer(scope) as cur:
            segments.drop_relation(cur, table_for(audience_id))
            cur.execute("DELETE FROM audiences WHERE audience_id = ?", [audience_id])
            cur.execute("DELETE FROM segment_results WHERE segment_id = ?", [audience_id])
            segments.collect(cur)

    @staticmethod
    def _audiences(cur: duckdb.DuckDBPyConnection, audience_id: str | None = None) -> list[tuple[str, str, int, str]]:
        return segments.audiences(cur, audience_id)

    def _table_lists(
        self, scope: Scope, cur: duckdb.DuckDBPyConnection
    ) -> tuple[list[tuple[str, str, int, str]], list[tuple[str, str, str]]]:
        """The sandbox's audiences (as ``_audiences``) and fragment tables (dataset id, kind, table)."""
        generation = self._files.generation.get(scope, 0)
        cached = self._tables.get(scope)
        if cached is not None and cached[0] == generation:
            return cached[1], cached[2]
        audiences = self._audiences(cur)
        fragments = [
            (str(d), str(k), str(t))
            for d, k, t in cur.execute(
                "SELECT f.dataset_id, f.kind, f.tbl FROM fragment_tables f "
                "JOIN duckdb_tables() t ON t.table_name = f.tbl ORDER BY 1"
            ).fetchall()
        ]
        self._tables[scope] = (generation, audiences, fragments)
        return audiences, fragments

    def _profiles(
        self,
        cur: duckdb.DuckDBPyConnection,
        profile_ids: list[str],
        audiences: list[tuple[str, str, int, str]] | None = None,
    ) -> list[Profile]:
        if not profile_ids:
            return []
        out = {pid: Profile(pid, [], []) for pid in profile_ids}
        # One profile (the Access API's lookup) compares with = so that the engine's index serves it.
        wanted = "(CAST(? AS UUID))" if len(profile_ids) == 1 else "(SELECT CAST(unnest(?) AS UUID))"
        param: object = profile_ids[0] if len(profile_ids) == 1 else profile_ids
        for pid, ns, value in cur.execute(
            f"SELECT CAST(profile_id AS VARCHAR), ns, id FROM identities WHERE profile_id IN {wanted} ORDER BY ns, id",
            [param],
        ).fetchall():
            out[pid].identities.append((ns, value))
        results = segment_codes.stored(cur)
        evaluated = {}
        for audience_id, namespace, ttl, tbl in self._audiences(cur) if audiences is None else audiences:
            if audience_id in results:  # read below, one query per result table
                evaluated[audience_id] = (results[audience_id], ttl)
                continue
            result = cur.execute(
                f"SELECT * REPLACE (CAST({PROFILE_ID} AS VARCHAR) AS {PROFILE_ID}) FROM ({effective(tbl, ttl)}) "
                f"WHERE {PROFILE_ID} IN {wanted}",
                [param],
            )
            names = [d[0] for d in result.description]
            for values in result.fetchall():
                row = dict(zip(names, values, strict=True))
                payload = {k: _json_value(v) for k, v in row.items() if k not in MEMBER_COLUMNS}
                out[row[PROFILE_ID]].memberships.append(
                    Membership(namespace, audience_id, row[STATUS], int(row[QUALIFIED_AT].timestamp()), payload)
                )
        for pid, segment_id, status, at in segment_codes.memberships(cur, wanted, param, evaluated):
            out[pid].memberships.append(Membership(SEGMENT_NAMESPACE, segment_id, status, int(at.timestamp())))
        for profile in out.values():
            profile.memberships.sort(key=lambda m: m.audience_id)
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
                f"SELECT CAST({PROFILE_ID} AS VARCHAR) FROM {tbl} ORDER BY {PROFILE_ID} LIMIT ? OFFSET ?",
                [limit, offset],
            ).fetchall()
            profiles = self._profiles(cur, [r[0] for r in ids])
        return profiles, int(total[0]) if total else 0

    def counts(self, scope: Scope, audience_id: str) -> dict[str, int]:
        counts = {"realized": 0, "exited": 0}
        with self._cursor(scope) as cur:
            for _, _, ttl, tbl in self._audiences(cur, audience_id):
                for status, n in cur.execute(
                    f"SELECT {STATUS}, count(*) FROM ({effective(tbl, ttl)}) GROUP BY {STATUS}"
                ).fetchall():
                    counts[str(status)] = int(n)
        return counts

    # ----- fragments from profile-enabled datasets -----

    @staticmethod
    def _fragment_table(cur: duckdb.DuckDBPyConnection, batch: FragmentBatch) -> str:
        """The dataset's fragment table, created or widened (a schema may gain fields) to hold every leaf."""
        tbl = fragment_table_for(batch.dataset_id)
        key = (
            f"{ENTITY_NS} VARCHAR NOT NULL, {ENTITY_ID} VARCHAR NOT NULL"
            if batch.kind == "entity"
            else f"{PROFILE_ID} UUID NOT NULL"
        )
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {ident(tbl)} ({key}, {BATCH} VARCHAR NOT NULL, {TS} TIMESTAMPTZ NOT NULL, "
            f"{SEQ} BIGINT NOT NULL)"
        )
        keys = f"{ENTITY_NS}, {ENTITY_ID}" if batch.kind == "entity" else PROFILE_ID
        cur.execute(f"CREATE INDEX IF NOT EXISTS {ident(tbl + '_key')} ON {ident(tbl)} ({keys})")
        have = {
            str(r[0])
            for r in cur.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND database_name <> 'temp'", [tbl]
            ).fetchall()
        }
        for name, sql_type, _ in batch.leaves:
            if name not in have and name != MEMBERSHIP_LEAF:
                cur.execute(f"ALTER TABLE {ident(tbl)} ADD COLUMN {ident(name)} {sql_type}")
        cur.execute(
            "INSERT INTO fragment_tables VALUES (?, ?, ?) ON CONFLICT (dataset_id) DO NOTHING",
            [batch.dataset_id, batch.kind, tbl],
        )
        return tbl

    def batch_applied(self, scope: Scope, batch_id: str) -> bool:
        with self._cursor(scope) as cur:
            return cur.execute("SELECT 1 FROM applied_batches WHERE batch_id = ?", [batch_id]).fetchone() is not None

    def apply_fragments(self, scope: Scope, batch: FragmentBatch) -> FragmentResult:
        with self._cursor(scope) as cur:
            done = cur.execute("SELECT result FROM applied_batches WHERE batch_id = ?", [batch.batch_id]).fetchone()
        if done:
            return FragmentResult(**json.loads(done[0]))
        at = dt.datetime.fromtimestamp(batch.received_at, dt.UTC)
        src = f"read_parquet({lit(str(batch.file))})"
        values = [(name, expr) for name, _, expr in batch.leaves if name != MEMBERSHIP_LEAF]
        cols = "".join(f", {expr} AS {ident(name)}" for name, expr in values)
        names = "".join(f", {ident(name)}" for name, _ in values)
        with self._writer(scope) as cur:
            tbl = self._fragment_table(cur, batch)
            cur.execute(
                f"CREATE TEMP TABLE rec AS SELECT row_number() OVER (ORDER BY {XFILE}, {XRN}) AS r, "
                f"list_distinct({IDS}) AS ids{cols}"
                + (f", {MEMBERSHIP_LEAF_SQL} AS {ident(MEMBERSHIP_LEAF)}" if self._has_memberships(batch) else "")
                + f" FROM {src}"
            )
            result = FragmentResult()
            row = cur.execute("SELECT count(*) FROM rec").fetchone()
            result.records = int(row[0]) if row else 0
            if batch.kind == "entity":
                # Non-people records (segment definitions): keyed by their primary identity, never stitched.
                cur.execute(
                    f"INSERT INTO {ident(tbl)} ({ENTITY_NS}, {ENTITY_ID}, {BATCH}, {TS}, {SEQ}{names}) "
                    f"SELECT p.ns, p.id, ?, ?, r{names} FROM (SELECT *, coalesce(list_filter(ids, lambda x: "
                    f'x."primary")[1], ids[1]) AS p FROM rec) WHERE p IS NOT NULL',
                    [batch.batch_id, at],
                )
            else:
                stitch(cur, result)
                cur.execute(
                    f"INSERT INTO {ident(tbl)} ({PROFILE_ID}, {BATCH}, {TS}, {SEQ}{names}) "
                    f"SELECT rp.profile_id, ?, ?, rec.r{''.join(f', rec.{ident(n)}' for n, _ in values)} "
                    "FROM rec JOIN rec_profile rp USING (r)",
                    [batch.batch_id, at],
                )
                if self._has_memberships(batch):
                    cur.execute(
                        "INSERT INTO fragment_memberships SELECT profile_id, ns, se.key, se.value.status, "
                        "coalesce(se.value.lastQualificationTime, ?), ?, ?, r FROM (SELECT profile_id, r, "
                        "nse.key AS ns, unnest(map_entries(nse.value)) AS se FROM (SELECT rp.profile_id, rec.r, "
                        f"unnest(map_entries(rec.{ident(MEMBERSHIP_LEAF)})) AS nse FROM rec JOIN rec_profile rp "
                        "USING (r)))",
                        [at, batch.dataset_id, at],
                    )
            for temp in TEMP_TABLES:
                cur.execute(f"DROP TABLE IF EXISTS {temp}")
            cur.execute(
                "INSERT INTO applied_batches VALUES (?, ?, ?, ?)",
                [batch.batch_id, batch.dataset_id, at, json.dumps(result.to_dict())],
            )
        return result

    def _link_row_identities(self, cur: duckdb.DuckDBPyConnection, rows: AudienceRows) -> None:
        """Identities in one row of an audience link, as in a dataset's record: a row whose identities belonged
        to two profiles merges them (the row already joined the first one's)."""
        items = ", ".join(
            f"{{'ns': {lit(col.namespace)}, 'id': {identity_text(n)}, 'primary': false}}"
            for n, col in enumerate(rows.identities)
        )
        cur.execute(
            f"CREATE TEMP TABLE rec AS SELECT row_number() OVER () AS r, list_filter([{items}], lambda x: x.id IS "
            f"NOT NULL) AS ids FROM resolved WHERE NOT {DELETE}"
        )
        stitch(cur, FragmentResult())
        for temp in TEMP_TABLES:
            cur.execute(f"DROP TABLE IF EXISTS {temp}")

    @staticmethod
    def _has_memberships(batch: FragmentBatch) -> bool:
        return any(name == MEMBERSHIP_LEAF for name, _, _ in batch.leaves)

    def remove_dataset(self, scope: Scope, dataset_id: str) -> None:
        with self._writer(scope) as cur:
            cur.execute(f"DROP TABLE IF EXISTS {ident(fragment_table_for(dataset_id))}")
            cur.execute("DELETE FROM fragment_memberships WHERE dataset_id = ?", [dataset_id])
            cur.execute("DELETE FROM fragment_tables WHERE dataset_id = ?", [dataset_id])

    def entity(
        self, scope: Scope, namespace: str, identity: str, *, kind: str = "profile", precedence: list[str] | None = None
    ) -> Entity | None:
        with self._cursor(scope) as cur:
            audiences, fragments = self._table_lists(scope, cur)
            wanted_kind = "entity" if kind == "entity" else "profile"
            tables = [(d, t) for d, k, t in fragments if k == wanted_kind]
            rows: list[tuple[str, dict[str, Any]]] = []
            if kind == "entity":
                where, args = f"{ENTITY_NS} = ? AND {ENTITY_ID} = ?", [namespace, identity]
                profile = None
            else:
                found = cur.execute(
                    "SELECT CAST(profile_id AS VARCHAR) FROM identities WHERE ns = ? AND id = ?", [namespace, identity]
                ).fetchone()
                if found is None:
                    return None
                profile = self._profiles(cur, [found[0]], audiences)[0]
                where, args = f"{PROFILE_ID} = ?", [found[0]]
            for dataset_id, tbl in tables:
                result = cur.execute(f"SELECT * FROM {ident(str(tbl))} WHERE {where}", args)
                names = [d[0] for d in result.description]
                rows += [(str(dataset_id), dict(zip(names, v, strict=True))) for v in result.fetchall()]
            if kind == "entity":
                if not rows:
                    return None
                identities = [(namespace, identity)]
                memberships: list[Membership] = []
            else:
                assert profile is not None
                identities, memberships = profile.identities, profile.memberships
                memberships += self._fragment_memberships(cur, profile.profile_id, precedence)
                if not rows and not memberships:
                    return None  # every fragment and membership of it was deleted: no profile is left
        # Oldest first, so that each later row overwrites: the order of columns.merge_key, which every other reader
        # of merged values uses.
        rows.sort(
            key=lambda dr: (
                dataset_rank(dr[0], precedence),
                dr[1][TS],
                dr[1][BATCH],
                dr[1][SEQ],
            )
        )
        attributes: dict[str, Any] = {}
        for _, row in rows:
            for name, v in row.items():
                if not name.startswith(INTERNAL) and v is not None:
                    attributes[name] = _json_value(v)
        stamps = [int(r[TS].timestamp()) for _, r in rows] + [m.last_qualification_time for m in memberships]
        entity_id = profile.profile_id if kind != "entity" and profile else f"{namespace}:{identity}"
        return Entity(
            entity_id=entity_id,
            identities=identities,
            attributes=attributes,
            sources=sorted({d for d, _ in rows}),
            memberships=memberships,
            last_modified=max(stamps) if stamps else 0,
        )

    @staticmethod
    def _fragment_memberships(
        cur: duckdb.DuckDBPyConnection, profile_id: str, precedence: list[str] | None
    ) -> list[Membership]:
        """Memberships carried by the profile's records (``segmentMembership``): the newest per namespace and id."""
        rows = cur.execute(
            "SELECT ns, segment_id, status, qualified_at, dataset_id FROM fragment_memberships WHERE profile_id = ? "
            "ORDER BY qualified_at, received_at, seq",
            [profile_id],
        ).fetchall()
        rank = {d: n for n, d in enumerate(precedence or [])}
        if precedence:
            rows.sort(key=lambda r: -rank.get(str(r[4]), len(rank)))
        latest: dict[tuple[str, str], Membership] = {}
        for ns, seg, status, at, _ in rows:
            latest[(str(ns), str(seg))] = Membership(str(ns), str(seg), str(status or "realized"), int(at.timestamp()))
        return list(latest.values())

    def evaluate(
        self, scope: Scope, job_id: str, plans: list[Plan], ttl_days: dict[str, int]
    ) -> dict[str, SegmentCounts]:
        """Builds the job's result tables in a transaction of their own, without the sandbox's write lock (runs and
        batches go on meanwhile; readers do not see them), then publishes them in one short write transaction with
        the job's marker. Evaluations of one sandbox run one at a time."""
        counts: dict[str, SegmentCounts] = {}
        self._files.connection(scope)
        with self._files.evaluation_locks[scope]:
            with self._cursor(scope) as cur:
                cur.execute("BEGIN TRANSACTION")
                try:
                    have = segments.tables(cur)
                    stamps = segment_codes.Stamps.next(cur, job_id, plans[0].now if plans else dt.datetime.now(dt.UTC))
                    for n, plan in enumerate(segments.combine(plans)):  # one plan: every level in one pass
                        counts |= segments.build(cur, have, plan, n, stamps, ttl_days)
                    cur.execute("COMMIT")
                except BaseException as exc:
                    rollback(cur, exc)
                    raise
            with self._writer(scope) as cur:
                segments.publish(cur, have, stamps, ttl_days)
                cur.execute(
                    "INSERT INTO applied_jobs VALUES (?, now(), ?)",
                    [job_id, json.dumps({k: asdict(v) for k, v in counts.items()})],
                )
        return counts

    def evaluation(self, scope: Scope, job_id: str) -> dict[str, SegmentCounts] | None:
        with self._cursor(scope) as cur:
            row = cur.execute("SELECT result FROM applied_jobs WHERE job_id = ?", [job_id]).fetchone()
        return {k: SegmentCounts(**v) for k, v in json.loads(row[0]).items()} if row else None

    def count_profiles(self, scope: Scope) -> int:
        with self._cursor(scope) as cur:
            row = cur.execute("SELECT count(DISTINCT profile_id) FROM identities").fetchone()
        return int(row[0]) if row else 0

    def record_segments(self, scope: Scope, segment_id: str) -> list[str]:
        with self._cursor(scope) as cur:
            rows = cur.execute(
                "SELECT DISTINCT ns FROM fragment_memberships WHERE segment_id = ? ORDER BY 1", [segment_id]
            ).fetchall()
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self._files.close()

    def snapshot(
        self, scope: Scope, *, precedence: list[str] | None = None, batch_rows: int = 65_536
    ) -> pa.RecordBatchReader:
        """Every merged profile of the sandbox, streamed: the merged attributes nested under their top-level
        fields, ``identityMap`` (namespace → [{id, authenticatedState, primary}]) and ``segmentMembership``
        (namespace → segment id → {status, lastQualificationTime}). Merged as :meth:`entity` merges one."""
        con, cur = self._files.open_cursor(scope)
        try:
            audiences, fragments = self._table_lists(scope, cur)
            reader = cur.sql(exports.snapshot_sql(cur, audiences, fragments, precedence)).to_arrow_reader(batch_rows)
        except BaseException as exc:
            self._files.close_cursor(con, cur)
            failure = self._files.failure(scope, con, exc)
            if failure is None:
                raise
            raise failure from exc

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from reader
            except BaseException as exc:
                failure = self._files.failure(scope, con, exc)
                if failure is None:
                    raise
                raise failure from exc
            finally:
                self._files.close_cursor(con, cur)

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def export(self, scope: Scope, spec: exports.ExportSpec, outputs: list[exports.ExportOutput]) -> list[int]:
        with self._cursor(scope) as cur:
            cur.execute("BEGIN TRANSACTION")  # one snapshot for every output, whatever commits meanwhile
            try:
                written = exports.export(cur, spec, outputs)
            except BaseException as exc:
                rollback(cur, exc)
                raise
            rollback(cur)  # it wrote only files and a temporary table
            return written
