"""The scale-out profile store: Parquet tables in the lake, written by an engine session, committed as versions
through the metadata store.

Layout: ``lake/{org}/{sandbox}/_profile/v{n}-{token}/{table}-{k}.parquet``; a version's manifest (table → files,
the audiences' namespace, ttl and columns) is a row of ``profile_versions``. A write reads the current version's
tables, writes the tables it changes into a new version folder (the others carry over by reference), then inserts
version n + 1: the unique (sandbox, version) is the compare-and-swap, and a writer that lost the race raises
:class:`TransientError` (the job runner retries it). Nothing is visible before that commit; a crash leaves only an
unreferenced folder, removed with superseded versions after the grace period (readers in flight keep their files).

Reads run in DuckDB, in memory, over the current manifest's files: any process can read. Identities are stored
twice, sorted by (ns, id) and by profile, and membership tables by profile, so point lookups prune row groups.

Profile-enabled datasets' batches are stitched into the identity graph and kept as fragment tables (``f_{dataset
hex}``, the embedded store's names and columns, with records' own memberships in ``fragment_memberships``), read
merged by the Profile Access API and the Query Service's profile table; those writes and the identity graph's
stitching and merges are ``lake_fragments``. Segment evaluation (``lake_segments``) and exports (``lake_exports``)
run the embedded store's SQL builders over the version's files.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
from sqlalchemy import delete, func, insert, select, update

from audiencehub.domain.segments import Plan, SegmentCounts
from audiencehub.engines.base import Engine
from audiencehub.engines.duckdb import connect
from audiencehub.engines.ingest_sql import INTERNAL, path_list
from audiencehub.errors import TransientError
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import IntegrityError, MetadataStore, Scope
from audiencehub.profile import exports, lake_exports, lake_fragments, lake_segments
from audiencehub.profile import lake_sql as q
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
    ENTITY_ID,
    ENTITY_NS,
    MEMBER_COLUMNS,
    PROFILE_ID,
    QUALIFIED_AT,
    SEQ,
    STATUS,
    TS,
    dataset_rank,
    table_for,
)
from audiencehub.profile.exports import ExportOutput, ExportSpec
from audiencehub.profile.lake_work import Manifest, Work

if TYPE_CHECKING:
    import pyarrow as pa

R = TypeVar("R")
GRACE_S = 3600.0
"""How long a superseded version (and a folder no version names) stays: readers in flight still use its files."""
RACES = 3
"""How many times a write (a run, a batch, a dataset's removal) is built when other processes keep committing first."""


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class LakeProfileStore(ProfileStore):
    def __init__(
        self,
        lake_root: Path,
        engine: Engine,
        metadata: MetadataStore,
        *,
        memory_limit: str,
        threads: int | None,
        temp_dir: Path,
        grace_s: float = GRACE_S,
    ) -> None:
        self._lake = lake_root
        self._engine = engine
        self._meta = metadata
        self._memory_limit = memory_limit
        self._threads = threads
        self._temp_dir = temp_dir
        self._grace_s = grace_s
        self._guard = threading.Lock()
        self._locks: dict[Scope, threading.Lock] = {}
        self._con: duckdb.DuckDBPyConnection | None = None

    def root(self, scope: Scope) -> Path:
        return self._lake / scope.org_id / scope.sandbox / "_profile"

    # ----- versions -----

    def manifest(self, scope: Scope) -> Manifest:
        """The sandbox's current version (version 0, empty, before the first write)."""
        v = t.profile_versions.c
        with self._meta.read() as conn:
            row = conn.execute(
                select(v.version, v.manifest)
                .where(v.org_id == scope.org_id, v.sandbox == scope.sandbox)
                .order_by(v.version.desc())
                .limit(1)
            ).first()
        if row is None:
            return Manifest(0)
        return Manifest(
            int(row[0]), dict(row[1]["tables"]), dict(row[1]["audiences"]), dict(row[1].get("fragments", {}))
        )

    def _commit(self, scope: Scope, base: int, manifest: Manifest) -> None:
        """Makes ``manifest`` version ``base + 1``; raises TransientError when another writer committed first."""
        v = t.profile_versions.c
        ms = int(time.time() * 1000)
        lost = TransientError(
            f"the profile store of sandbox {scope.sandbox} changed while this write ran (version {base}): retry it"
        )
        try:
            with self._meta.tx() as conn:
                current = conn.execute(
                    select(func.max(v.version)).where(v.org_id == scope.org_id, v.sandbox == scope.sandbox)
                ).scalar()
                if int(current or 0) != base:
                    raise lost
                conn.execute(
                    insert(t.profile_versions).values(
                        id=str(uuid.uuid4()),
                        org_id=scope.org_id,
                        sandbox=scope.sandbox,
                        version=base + 1,
                        manifest=manifest.to_json(),
                        created_ms=ms,
                        superseded_ms=None,
                    )
                )
                conn.execute(
                    update(t.profile_versions)
                    .where(v.org_id == scope.org_id, v.sandbox == scope.sandbox, v.version == base)
                    .values(superseded_ms=ms)
                )
        except IntegrityError as exc:
            raise lost from exc
        manifest.version = base + 1

    def collect(self, scope: Scope) -> None:
        """Forgets versions superseded longer than the grace period ago and deletes the folders no version names
        (theirs, and those a failed write left) once they are that old."""
        v = t.profile_versions.c
        now = time.time()
        cutoff_ms = int((now - self._grace_s) * 1000)
        where = (v.org_id == scope.org_id, v.sandbox == scope.sandbox)
        with self._meta.tx() as conn:
            conn.execute(delete(t.profile_versions).where(*where, v.superseded_ms < cutoff_ms))
            manifests = [m for (m,) in conn.execute(select(v.manifest).where(*where))]
        named = {f.split("/", 1)[0] for m in manifests for files in m["tables"].values() for f in files}
        root = self.root(scope)
        if not root.is_dir():
            return
        for child in [*root.iterdir(), *((root / "_tmp").iterdir() if (root / "_tmp").is_dir() else [])]:
            if child.name in named or child.name == "_tmp" or not child.is_dir():
                continue
            try:
                old = child.stat().st_mtime < now - self._grace_s
            except FileNotFoundError:
                continue
            if old:
                shutil.rmtree(child, ignore_errors=True)

    def _write_again(self, scope: Scope, work: Callable[[Work], R]) -> R:
        """:meth:`_write`, built again from the new version when another process committed first (up to ``RACES``
        times): the embedded store's writers take turns, so a batch never fails there for that. ``work`` must read
        its base (``w.base``) to see what the winner did, as ``_apply_batch`` does."""
        for attempt in range(1, RACES + 1):
            try:
                return self._write(scope, work)
            except TransientError:
                if attempt == RACES:
                    raise
        raise AssertionError("unreachable")

    def _lock(self, scope: Scope) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(scope, threading.Lock())

    def _write(self, scope: Scope, work: Callable[[Work], R]) -> R:
        """Runs ``work`` on a new version built from the current one and commits it if it changed anything.

        Writers of one process take turns; writers of several processes race, and the loser raises TransientError.
        """
        root = self.root(scope)
        with self._lock(scope):
            base = self.manifest(scope)
            token = uuid.uuid4().hex[:12]
            folder = root / f"v{base.version + 1:08d}-{token}"
            scratch = root / "_tmp" / token
            try:
                with self._engine.session() as session:
                    w = Work(root, base, session, folder, scratch)
                    out = work(w)
                if w.changed:
                    self._commit(scope, base.version, w.new)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        self.collect(scope)
        return out

    # ----- reads -----

    def _reader(self) -> duckdb.DuckDBPyConnection:
        """A cursor of the process's in-memory DuckDB connection, which reads every version's files."""
        with self._guard:
            if self._con is None:
                self._con = connect(threads=self._threads, memory_limit=self._memory_limit, temp_dir=self._temp_dir)
                # Files never change once written (a version writes new ones): their metadata can stay cached.
                self._con.execute("SET parquet_metadata_cache = true")
            return self._con.cursor()

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self._reader()
        try:
            cur.execute("SET TimeZone = 'UTC'")
            yield cur
        finally:
            cur.close()

    def _files(self, scope: Scope, m: Manifest, table: str) -> list[Path]:
        root = self.root(scope)
        return [root / f for f in m.tables.get(table, [])]

    def _applied(self, scope: Scope, m: Manifest, run_id: str) -> ApplyResult | None:
        files = self._files(scope, m, q.APPLIED_RUNS)
        if not files:
            return None
        with self._cursor() as cur:
            row = cur.execute(
                f"SELECT result FROM read_parquet({path_list(files)}) WHERE run_id = ? LIMIT 1", [run_id]
            ).fetchone()
        return ApplyResult(**json.loads(row[0])) if row else None

    def applied(self, scope: Scope, run_id: str) -> ApplyResult | None:
        return self._applied(scope, self.manifest(scope), run_id)

    def _members_of(self, scope: Scope, m: Manifest, audience_id: str, now: float) -> str:
        aud = m.audiences[audience_id]
        payload = [c for c, _ in aud["columns"] if c not in MEMBER_COLUMNS]
        cutoff = q.timestamp(now - int(aud["ttl_days"]) * 86400)
        members = q.relation(self._files(scope, m, aud["table"]), [tuple(c) for c in aud["columns"]])
        return q.effective_sql(members, payload, cutoff, int(aud["ttl_days"]))

    def _profiles(
        self, cur: duckdb.DuckDBPyConnection, scope: Scope, m: Manifest, profile_ids: list[str]
    ) -> list[Profile]:
        if not profile_ids:
            return []
        out = {pid: Profile(pid, [], []) for pid in profile_ids}
        # One profile (a lookup) compares with = so that the row groups' statistics prune.
        wanted = "= ?" if len(profile_ids) == 1 else "IN (SELECT unnest(?))"
        param: object = profile_ids[0] if len(profile_ids) == 1 else profile_ids
        by_profile = self._files(scope, m, q.IDENTITIES_BY_PROFILE)
        if by_profile:
            for pid, ns, value in cur.execute(
                f"SELECT profile_id, ns, id FROM read_parquet({path_list(by_profile)}) WHERE profile_id {wanted} "
                "ORDER BY ns, id",
                [param],
            ).fetchall():
                out[pid].identities.append((ns, value))
        now = time.time()
        for audience_id, aud in m.members():
            result = cur.execute(
                f"SELECT * FROM ({self._members_of(scope, m, audience_id, now)}) x WHERE {PROFILE_ID} {wanted}",
                [param],
            )
            names = [d[0] for d in result.description]
            for values in result.fetchall():
                row = dict(zip(names, values, strict=True))
                payload = {k: _json_value(v) for k, v in row.items() if k not in MEMBER_COLUMNS}
                out[row[PROFILE_ID]].memberships.append(
                    Membership(aud["namespace"], audience_id, row[STATUS], int(row[QUALIFIED_AT].timestamp()), payload)
                )
        for profile in out.values():
            profile.memberships.sort(key=lambda ms: ms.audience_id)
        return [out[pid] for pid in profile_ids]

    def lookup(self, scope: Scope, namespace: str, identity: str) -> Profile | None:
        m = self.manifest(scope)
        files = self._files(scope, m, q.IDENTITIES)
        if not files:
            return None
        with self._cursor() as cur:
            row = cur.execute(
                f"SELECT profile_id FROM read_parquet({path_list(files)}) WHERE ns = ? AND id = ? LIMIT 1",
                [namespace, identity],
            ).fetchone()
            return self._profiles(cur, scope, m, [row[0]])[0] if row else None

    def members(self, scope: Scope, audience_id: str, *, limit: int, offset: int) -> tuple[list[Profile], int]:
        m = self.manifest(scope)
        found = m.members(audience_id)
        if not found:
            return [], 0
        paths = self._files(scope, m, found[0][1]["table"])
        if not paths:
            return [], 0
        files = path_list(paths)
        with self._cursor() as cur:
            total = cur.execute(f"SELECT count(*) FROM read_parquet({files})").fetchone()
            ids = cur.execute(
                f"SELECT {PROFILE_ID} FROM read_parquet({files}) ORDER BY {PROFILE_ID} LIMIT ? OFFSET ?",
                [limit, offset],
            ).fetchall()
            profiles = self._profiles(cur, scope, m, [r[0] for r in ids])
        return profiles, int(total[0]) if total else 0

    def counts(self, scope: Scope, audience_id: str) -> dict[str, int]:
        counts = {"realized": 0, "exited": 0}
        m = self.manifest(scope)
        with self._cursor() as cur:
            for aid, _ in m.members(audience_id):
                for status, n in cur.execute(
                    f"SELECT {STATUS}, count(*) FROM ({self._members_of(scope, m, aid, time.time())}) x "
                    f"GROUP BY {STATUS}"
                ).fetchall():
                    counts[str(status)] = int(n)
        return counts

    def count_profiles(self, scope: Scope) -> int:
        files = self._files(scope, self.manifest(scope), q.IDENTITIES)
        if not files:
            return 0
        with self._cursor() as cur:
            row = cur.execute(f"SELECT count(DISTINCT profile_id) FROM read_parquet({path_list(files)})").fetchone()
        return int(row[0]) if row else 0

    def record_segments(self, scope: Scope, segment_id: str) -> list[str]:
        files = self._files(scope, self.manifest(scope), q.FRAGMENT_MEMBERSHIPS)
        if not files:
            return []
        with self._cursor() as cur:
            rows = cur.execute(
                f"SELECT DISTINCT ns FROM read_parquet({path_list(files)}) WHERE segment_id = ? ORDER BY 1",
                [segment_id],
            ).fetchall()
        return [str(r[0]) for r in rows]

    def entity(
        self, scope: Scope, namespace: str, identity: str, *, kind: str = "profile", precedence: list[str] | None = None
    ) -> Entity | None:
        m = self.manifest(scope)
        wanted_kind = "entity" if kind == "entity" else "profile"
        tables = [(d, str(f["table"])) for d, f in sorted(m.fragments.items()) if f["kind"] == wanted_kind]
        rows: list[tuple[str, dict[str, Any]]] = []
        with self._cursor() as cur:
            if kind == "entity":
                where, args = f"{ENTITY_NS} = ? AND {ENTITY_ID} = ?", [namespace, identity]
                profile = None
            else:
                files = self._files(scope, m, q.IDENTITIES)
                found = (
                    cur.execute(
                        f"SELECT profile_id FROM read_parquet({path_list(files)}) WHERE ns = ? AND id = ? LIMIT 1",
                        [namespace, identity],
                    ).fetchone()
                    if files
                    else None
                )
                if found is None:
                    return None
                profile = self._profiles(cur, scope, m, [str(found[0])])[0]
                where, args = f"{PROFILE_ID} = ?", [str(found[0])]
            for dataset_id, table in tables:
                files = self._files(scope, m, table)
                if not files:
                    continue
                result = cur.execute(f"SELECT * FROM read_parquet({path_list(files)}) WHERE {where}", args)
                names = [d[0] for d in result.description]
                rows += [(dataset_id, dict(zip(names, v, strict=True))) for v in result.fetchall()]
            if kind == "entity":
                if not rows:
                    return None
                identities = [(namespace, identity)]
                memberships: list[Membership] = []
            else:
                assert profile is not None
                identities, memberships = profile.identities, profile.memberships
                memberships += self._record_memberships(cur, scope, m, profile.profile_id, precedence)
                if not rows and not memberships:
                    return None  # every fragment and membership of it was deleted: no profile is left
        # Oldest first, so that each later row overwrites: the order of columns.merge_key (as the embedded store).
        rows.sort(key=lambda dr: (dataset_rank(dr[0], precedence), dr[1][TS], dr[1][BATCH], dr[1][SEQ]))
        attributes: dict[str, Any] = {}
        for _, row in rows:
            for name, v in row.items():
                if not name.startswith(INTERNAL) and v is not None:
                    attributes[name] = _json_value(v)
        stamps = [int(r[TS].timestamp()) for _, r in rows] + [ms.last_qualification_time for ms in memberships]
        return Entity(
            entity_id=profile.profile_id if profile is not None else f"{namespace}:{identity}",
            identities=identities,
            attributes=attributes,
            sources=sorted({d for d, _ in rows}),
            memberships=memberships,
            last_modified=max(stamps) if stamps else 0,
        )

    def _record_memberships(
        self, cur: duckdb.DuckDBPyConnection, scope: Scope, m: Manifest, profile_id: str, precedence: list[str] | None
    ) -> list[Membership]:
        """Memberships carried by the profile's records (``segmentMembership``): the newest per namespace and id
        (the embedded store's ``_fragment_memberships``)."""
        files = self._files(scope, m, q.FRAGMENT_MEMBERSHIPS)
        if not files:
            return []
        rows = cur.execute(
            f"SELECT ns, segment_id, status, qualified_at, dataset_id FROM read_parquet({path_list(files)}) "
            "WHERE profile_id = ? ORDER BY qualified_at, received_at, seq",
            [profile_id],
        ).fetchall()
        rank = {d: n for n, d in enumerate(precedence or [])}
        if precedence:
            rows.sort(key=lambda r: -rank.get(str(r[4]), len(rank)))
        latest: dict[tuple[str, str], Membership] = {}
        for ns, seg, status, at, _ in rows:
            latest[(str(ns), str(seg))] = Membership(str(ns), str(seg), str(status or "realized"), int(at.timestamp()))
        return list(latest.values())

    def _relation(self, scope: Scope, m: Manifest, table: str) -> str:
        """One of the version's tables as SQL that reads its files (typed and empty when it has none)."""
        return q.relation(self._files(scope, m, table), m.columns(table))

    def snapshot(
        self, scope: Scope, *, precedence: list[str] | None = None, batch_rows: int = 65_536
    ) -> pa.RecordBatchReader:
        """The embedded store's query (:func:`exports.snapshot_sql`) over the current version's files."""
        import pyarrow as pa

        m = self.manifest(scope)
        audiences = [(a, str(v["namespace"]), int(v["ttl_days"]), str(v["table"])) for a, v in m.members()]
        fragments = [(d, str(f["kind"]), str(f["table"])) for d, f in sorted(m.fragments.items())]
        sql = exports.snapshot_sql(
            None,
            audiences,
            fragments,
            precedence,
            table=lambda name: self._relation(scope, m, name),
            columns=lambda name: [c for c, _ in m.columns(name)],
        )
        cur = self._reader()
        try:
            cur.execute("SET TimeZone = 'UTC'")
            reader = cur.sql(sql).to_arrow_reader(batch_rows)
        except BaseException:
            cur.close()
            raise

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from reader
            finally:
                cur.close()

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def close(self) -> None:
        with self._guard:
            if self._con is not None:
                self._con.close()
                self._con = None

    # ----- writes -----

    def set_audience(self, scope: Scope, audience_id: str, namespace: str, ttl_days: int) -> None:
        def work(w: Work) -> None:
            aud = w.new.audiences.setdefault(audience_id, {"table": table_for(audience_id), "columns": []})
            aud.update(namespace=namespace, ttl_days=int(ttl_days))
            w.changed = True

        self._write(scope, work)

    def remove_audience(self, scope: Scope, audience_id: str) -> None:
        def work(w: Work) -> None:
            aud = w.new.audiences.pop(audience_id, None)
            w.changed = aud is not None
            w.drop(table_for(audience_id))

        self._write(scope, work)

    def apply_audience(self, scope: Scope, rows: AudienceRows) -> ApplyResult:
        done = self.applied(scope, rows.run_id)
        if done is not None:
            return done
        # An ingestion run is not retried as a job (it is never run twice): a lost race is built again here.
        return self._write_again(scope, lambda w: self._apply(scope, w, rows))

    def _apply(self, scope: Scope, w: Work, rows: AudienceRows) -> ApplyResult:
        done = self._applied(scope, w.base, rows.run_id)  # committed by another process since the first look
        if done is not None:
            return done
        now = time.time()
        at = q.timestamp(rows.qualified_at)
        # The run's ttl is recorded only for an audience the store does not know (set_audience's stays).
        aud = w.new.audiences.setdefault(
            rows.audience_id,
            {"namespace": rows.namespace, "ttl_days": rows.ttl_days, "table": table_for(rows.audience_id)},
        )
        tbl = aud["table"]
        if tbl not in w.new.tables or not aud.get("columns"):
            aud["columns"] = [list(c) for c in q.member_columns(rows.payload)]
        columns = [(str(c), str(ty)) for c, ty in aud["columns"]]
        payload = [name for name, _ in rows.payload]
        cutoff = q.timestamp(now - int(aud["ttl_days"]) * 86400)
        keys = w.session.query(q.key_count_sql(rows))[0]
        dedupe = keys[0] != keys[1]  # a key in two rows: the last one counts
        identities = w.rel(q.IDENTITIES, q.IDENTITY_COLUMNS)
        resolved, _ = w.temp("resolved", q.resolved_sql(rows, identities, dedupe=dedupe))
        added, inserted = w.append(q.IDENTITIES, q.new_identities_sql(rows, resolved))
        if added is not None:
            w.add_by_profile(added)
        members = w.rel(tbl, columns)
        counted = w.session.query(q.counts_sql(resolved, members, cutoff, replace=rows.replace))[0]
        n_rows, n_realized, n_new, exited, replaced = (int(v or 0) for v in counted)
        n_created = inserted if len(rows.identities) == 1 else n_new
        w.put(
            tbl,
            q.members_sql(resolved, members, payload, cutoff, at=at, run_id=rows.run_id, replace=rows.replace),
        )
        result = ApplyResult(
            profilesCreated=n_created,
            profilesUpdated=n_rows - n_created,
            membersRealized=n_realized,
            membersExited=exited + replaced,
        )
        if len(rows.identities) > 1:
            lake_fragments.link(w, rows, resolved)
        w.append(q.APPLIED_RUNS, q.applied_sql(rows.run_id, rows.audience_id, at, json.dumps(result.to_dict())))
        w.compact()
        return result

    # ----- fragments of profile-enabled datasets -----

    def _batch_result(self, scope: Scope, m: Manifest, batch_id: str) -> FragmentResult | None:
        files = self._files(scope, m, q.APPLIED_BATCHES)
        if not files:
            return None
        with self._cursor() as cur:
            row = cur.execute(
                f"SELECT result FROM read_parquet({path_list(files)}) WHERE batch_id = ? LIMIT 1", [batch_id]
            ).fetchone()
        return FragmentResult(**json.loads(row[0])) if row else None

    def batch_applied(self, scope: Scope, batch_id: str) -> bool:
        return self._batch_result(scope, self.manifest(scope), batch_id) is not None

    def apply_fragments(self, scope: Scope, batch: FragmentBatch) -> FragmentResult:
        done = self._batch_result(scope, self.manifest(scope), batch.batch_id)
        if done is not None:
            return done
        return self._write_again(scope, lambda w: self._apply_batch(scope, w, batch))

    def _apply_batch(self, scope: Scope, w: Work, batch: FragmentBatch) -> FragmentResult:
        done = self._batch_result(scope, w.base, batch.batch_id)  # committed by another process since the first look
        if done is not None:
            return done
        return lake_fragments.apply_batch(w, batch)

    def remove_dataset(self, scope: Scope, dataset_id: str) -> None:
        self._write_again(scope, lambda w: lake_fragments.remove_dataset(w, dataset_id))

    def evaluate(
        self, scope: Scope, job_id: str, plans: list[Plan], ttl_days: dict[str, int]
    ) -> dict[str, SegmentCounts]:
        """The embedded store's builders over the version's files, committed as one version (``lake_segments``)."""
        done = self.evaluation(scope, job_id)
        if done is not None:
            return done
        return self._write(scope, lambda w: lake_segments.evaluate(w, job_id, plans, ttl_days))

    def evaluation(self, scope: Scope, job_id: str) -> dict[str, SegmentCounts] | None:
        files = self._files(scope, self.manifest(scope), lake_segments.APPLIED_JOBS)
        with self._cursor() as cur:
            return lake_segments.evaluation(cur, files, job_id)

    def export(self, scope: Scope, spec: ExportSpec, outputs: list[ExportOutput]) -> list[int]:
        """The embedded store's builder over the current version's files, run by the engine (``lake_exports``)."""
        return lake_exports.export(
            self._engine, self.root(scope), self.manifest(scope), spec, outputs, memory_limit=self._memory_limit
        )
