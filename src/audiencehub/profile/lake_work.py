"""One write of the lake profile store: the version it builds (:class:`Manifest`: table → files, the audiences and
fragment tables) and the engine session that writes its files (:class:`Work`). ``lake.LakeProfileStore`` commits
it; ``lake_fragments``, ``lake_segments`` and the store's runs write through it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiencehub.engines.base import EngineSession
from audiencehub.engines.ingest_sql import path_list
from audiencehub.profile import lake_sql as q
from audiencehub.profile.columns import BATCH, ENTITY_ID, ENTITY_NS, PROFILE_ID, SEQ

COMPACT_AT = 8
"""An append-only table with more files than this has its small files merged into one sorted file."""
POINT_READ_ROWS = 16_384
"""Rows per Parquet row group of the store's tables: a point read (a lookup, an entity) decodes one row group of each
file it reads; DuckDB's default (122,880 rows) takes ~6 ms a read, this ~2 ms."""


@dataclass
class Manifest:
    version: int
    tables: dict[str, list[str]] = field(default_factory=dict)
    """Table → its files, relative to the sandbox's ``_profile`` folder."""
    audiences: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Audience id → {namespace, ttl_days, table, columns: [[name, SQL type], ...]}."""
    fragments: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Dataset id → {kind, table, columns: [[name, SQL type], ...]}: its fragment table (the embedded store's
    ``fragment_tables``; the columns are the table's, in order, as :func:`lake_sql.fragment_columns` begins them)."""

    def to_json(self) -> dict[str, Any]:
        return {"tables": self.tables, "audiences": self.audiences, "fragments": self.fragments}

    def copy(self) -> Manifest:
        return Manifest(
            self.version,
            {k: list(v) for k, v in self.tables.items()},
            json.loads(json.dumps(self.audiences)),
            json.loads(json.dumps(self.fragments)),
        )

    def columns(self, table: str) -> list[tuple[str, str]]:
        """The (name, SQL type) columns of one of the version's tables."""
        fixed = {
            q.IDENTITIES: q.IDENTITY_COLUMNS,
            q.IDENTITIES_BY_PROFILE: q.IDENTITY_COLUMNS,
            q.APPLIED_RUNS: q.APPLIED_COLUMNS,
            q.FRAGMENT_MEMBERSHIPS: q.FRAGMENT_MEMBERSHIP_COLUMNS,
            q.APPLIED_BATCHES: q.APPLIED_BATCH_COLUMNS,
        }
        if table in fixed:
            return list(fixed[table])
        for entry in [*self.audiences.values(), *self.fragments.values()]:
            if entry["table"] == table:
                return [(str(c), str(ty)) for c, ty in entry.get("columns", [])]
        raise KeyError(table)

    def members(self, audience_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The audiences (by id) that hold a membership table."""
        return sorted(
            (a, v)
            for a, v in self.audiences.items()
            if v["table"] in self.tables and (audience_id is None or a == audience_id)
        )


class Work:
    """One write: the base version, the version it builds and the engine session that builds it."""

    def __init__(self, root: Path, base: Manifest, session: EngineSession, folder: Path, scratch: Path) -> None:
        self.root = root
        self.base = base
        self.new = base.copy()
        self.session = session
        self.folder = folder
        self.scratch = scratch
        self.changed = False
        self._n = 0

    def files(self, table: str) -> list[Path]:
        return [self.root / f for f in self.new.tables.get(table, [])]

    def rel(self, table: str, columns: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
        return q.relation(self.files(table), columns)

    def temp(self, name: str, sql: str) -> tuple[Path, int]:
        """A scratch table (never part of a version)."""
        path = self.scratch / f"{name}.parquet"
        return path, self.session.copy(sql, path)

    def query(self, sql: str) -> int:
        rows = self.session.query(sql)
        return int(rows[0][0] or 0) if rows else 0

    def _write(self, table: str, sql: str) -> tuple[str, int]:
        self._n += 1
        rel = f"{self.folder.name}/{table}-{self._n}.parquet"
        rows = self.session.copy(sql, self.root / rel, row_group_rows=POINT_READ_ROWS)
        self.changed = True
        return rel, rows

    def put(self, table: str, sql: str) -> int:
        """Replaces the table with the rows of ``sql``: no file when there are none (an engine may write an empty
        result without its column types; readers use the manifest's)."""
        rel, rows = self._write(table, sql)
        if not rows:
            (self.root / rel).unlink(missing_ok=True)
        self.new.tables[table] = [rel] if rows else []
        return rows

    def append(self, table: str, sql: str) -> tuple[Path | None, int]:
        """Adds the rows of ``sql`` to the table as a file of their own (none when there are none)."""
        rel, rows = self._write(table, sql)
        if not rows:
            (self.root / rel).unlink(missing_ok=True)
            return None, 0
        self.new.tables.setdefault(table, []).append(rel)
        return self.root / rel, rows

    def drop(self, table: str) -> None:
        if self.new.tables.pop(table, None) is not None:
            self.changed = True

    def add_by_profile(self, added: Path) -> None:
        """Adds identities just appended (a file of ``identities``) to their copy sorted by profile."""
        self.append(q.IDENTITIES_BY_PROFILE, f"SELECT * FROM read_parquet({path_list([added])}) ORDER BY profile_id")

    def compact(self) -> None:
        """Merges the files of an append-only table once it has more than ``COMPACT_AT`` (lookups read fewer
        footers): the small ones (under a quarter of the largest) into one sorted file, keeping the large ones as
        they are, so that a big first load is not rewritten every few small runs; all of them when merging the small
        ones alone would not bring the count down to ``COMPACT_AT``."""
        appended = [
            (q.IDENTITIES, "ns, id"),
            (q.IDENTITIES_BY_PROFILE, "profile_id, ns, id"),
            (q.APPLIED_RUNS, "run_id"),
            (q.APPLIED_BATCHES, "batch_id"),
            (q.FRAGMENT_MEMBERSHIPS, "profile_id"),
        ]
        for f in self.new.fragments.values():
            key = f"{ENTITY_NS}, {ENTITY_ID}" if f["kind"] == "entity" else PROFILE_ID
            appended.append((f["table"], f"{key}, {BATCH}, {SEQ}"))
        for table, order in appended:
            files = self.new.tables.get(table, [])
            if len(files) <= COMPACT_AT:
                continue
            size = {f: (self.root / f).stat().st_size for f in files}
            largest = max(size.values())
            small = [f for f in files if size[f] * 4 < largest]
            if len(small) < 2 or len(files) - len(small) + 1 > COMPACT_AT:
                small = list(files)
            self._merge(table, small, order)

    def _merge(self, table: str, parts: list[str], order: str) -> None:
        """Replaces the table's files ``parts`` (in the table's order) by one file of their rows sorted by ``order``,
        where the first of them was."""
        files = self.new.tables[table]
        at = files.index(parts[0])
        rel, rows = self._write(
            table,
            f"SELECT * FROM {q.relation([self.root / f for f in parts], self.new.columns(table))} c ORDER BY {order}",
        )
        kept = [f for f in files if f not in parts]
        if rows:
            kept.insert(at, rel)
        else:
            (self.root / rel).unlink(missing_ok=True)
        self.new.tables[table] = kept
