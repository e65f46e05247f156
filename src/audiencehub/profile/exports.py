"""Export jobs in the embedded profile store: the profiles a filter selects, as XDM rows, written in bulk.

One ``COPY`` per output file, all in one snapshot of the store: the profiles the filter selects (the members of the
named audiences with the named statuses), left-joined with their merged attributes (one aggregate over the profile
fragment tables: the newest non-null value of each leaf, or by dataset precedence, as the profile's reads merge
them), with their membership in every audience and segment of the sandbox (one join per membership table, records'
own memberships as a list), and with their identities when ``identityMap`` is asked. The engine nests the leaves
into structs, builds ``segmentMembership`` (namespace → audience id → status and qualification time) and writes
Parquet: nothing is looked at row by row in Python. An export too large for the memory limit runs in slices of the
profile ids, one file each (the merge's states cannot spill to disk). :func:`snapshot_sql` is every profile in the
same shape, streamed to the Query Service's profile table.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from audiencehub.engines.ingest_sql import INTERNAL, ident, lit
from audiencehub.profile import segments
from audiencehub.profile.columns import (
    BATCH,
    MERGE_KEY,
    PROFILE_ID,
    QUALIFIED_AT,
    RANK,
    SEQ,
    STATUS,
    TS,
    batch_order,
    dataset_rank,
    effective,
    merge_key,
)

MEMBERSHIP = "STRUCT(status VARCHAR, lastQualificationTime TIMESTAMPTZ)"
MEMBERSHIP_TYPE = f"MAP(VARCHAR, MAP(VARCHAR, {MEMBERSHIP}))"
IDENTITY = 'STRUCT(id VARCHAR, authenticatedState VARCHAR, "primary" BOOLEAN)'
IDENTITY_MAP_TYPE = f"MAP(VARCHAR, {IDENTITY}[])"
RECORDS = "__ah_records"
PROFILE_BYTES, COLUMN_BYTES = 120, 60
"""Measured (DuckDB 2.0): a profile's merge states and join entries take about this much memory, plus this per
exported leaf, membership table or identity namespace."""


@dataclass(frozen=True)
class MemberFilter:
    """Profiles whose membership of one audience (a segment definition: namespace ``ups``) has one of ``statuses``."""

    namespace: str
    audience_id: str
    statuses: tuple[str, ...] = ("realized", "existing")


@dataclass(frozen=True)
class ExportField:
    """One value of the exported rows: a leaf of the schema (a scalar, an array or a map) and its SQL type."""

    path: tuple[str, ...]
    sql_type: str

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class ExportSpec:
    """What every row of an export holds, and which profiles every output file gets."""

    fields: tuple[ExportField, ...]
    """The attributes, nested in the rows by their paths (``person.name.firstName`` → person.name.firstName)."""
    identity_map: bool = False
    qualified_from: dt.datetime | None = None
    """``segmentQualificationTime.startTime``: the selecting membership qualified at or after it."""
    qualified_until: dt.datetime | None = None
    updated_after: dt.datetime | None = None
    """``fromIngestTimestamp``: only profiles with a fragment received, or a membership qualified, after it."""
    empty_profiles: bool = False
    """False: profiles whose only records are ExperienceEvents are left out (AEP's ``emptyProfiles``)."""
    precedence: tuple[str, ...] | None = None
    """Dataset ids, highest first, for a dataset-precedence merge policy; None merges by time."""


@dataclass(frozen=True)
class ExportOutput:
    members: tuple[MemberFilter, ...] | None
    """A profile is written when any of these selects it; None writes every profile."""
    folder: Path
    """Where its Parquet files go (``part-00000.parquet``, ...): an existing, empty folder."""


@dataclass(frozen=True)
class Store:
    """What the sandbox's store holds: membership tables (audience id → namespace, ttl, table), fragment tables
    (dataset id, kind, table, columns), the namespaces of records' own memberships and of identities."""

    audiences: dict[str, tuple[str, int, str]]
    fragments: list[tuple[str, str, str, set[str]]]
    record_namespaces: list[str]
    identity_namespaces: list[str] = field(default_factory=list)


def read_store(cur: duckdb.DuckDBPyConnection, *, identities: bool) -> Store:
    audiences = {a: (ns, ttl, tbl) for a, ns, ttl, tbl in segments.audiences(cur)}  # tables, and segments' views
    columns: dict[str, set[str]] = {}
    for tbl, col in cur.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name <> 'temp' "
        "AND table_name IN (SELECT tbl FROM fragment_tables)"
    ).fetchall():
        columns.setdefault(str(tbl), set()).add(str(col))
    fragments = [
        (str(d), str(k), str(t), columns[str(t)])
        for d, k, t in cur.execute("SELECT dataset_id, kind, tbl FROM fragment_tables ORDER BY dataset_id").fetchall()
        if str(t) in columns
    ]
    records = [str(r[0]) for r in cur.execute("SELECT DISTINCT ns FROM fragment_memberships ORDER BY 1").fetchall()]
    found = (
        [str(r[0]) for r in cur.execute("SELECT DISTINCT ns FROM identities ORDER BY 1").fetchall()]
        if identities
        else []
    )
    return Store(audiences, fragments, records, found)


def _ts(value: dt.datetime) -> str:
    return f"TIMESTAMPTZ {lit(value.astimezone(dt.UTC).isoformat())}"


def _in(values: tuple[str, ...] | list[str]) -> str:
    return "(" + ", ".join(lit(v) for v in values) + ")"


class ExportSQL:
    """The SQL of one export over one store: per output and slice, the selected profiles and their rows.

    ``table`` turns a table's name into the SQL that reads it (default: the embedded store's tables; the lake store
    passes ``read_parquet([...])`` of a version's files) and ``key_type`` is the profile id's SQL type (the lake store
    keeps it as text). Every statement is portable: the Spark engine runs it through ``engines/spark_sql.to_spark``.
    """

    def __init__(
        self, store: Store, spec: ExportSpec, *, table: Callable[[str], str] = ident, key_type: str = "UUID"
    ) -> None:
        self.store, self.spec = store, spec
        self.table, self.key_type = table, key_type
        self.audiences = list(store.audiences.items())  # membership table n becomes column __ah_a{n}

    def _none(self) -> str:
        return f"SELECT CAST(NULL AS {self.key_type}) AS {PROFILE_ID} WHERE 1 = 0"

    def _members(self, tbl: str, ttl_days: int) -> str:
        """The audience's memberships as read now (:func:`columns.effective`, with only the columns an export reads:
        Spark has no ``* REPLACE``)."""
        ttl = f"to_days({int(ttl_days)})"
        expired = f"({STATUS} IN ('realized', 'existing') AND {QUALIFIED_AT} < now() - {ttl})"
        return (
            f"SELECT {PROFILE_ID}, CASE WHEN {expired} THEN 'exited' ELSE {STATUS} END AS {STATUS}, "
            f"CASE WHEN {expired} THEN {QUALIFIED_AT} + {ttl} ELSE {QUALIFIED_AT} END AS {QUALIFIED_AT} "
            f"FROM {self.table(tbl)} e"
        )

    # -- the selected profiles

    def _records(self) -> str:
        """Records' own memberships, the newest per profile, namespace and id; an audience's table wins over them."""
        known = [f"{ns}\x00{aid}" for aid, (ns, _, _) in self.audiences]
        skip = f"WHERE ns || chr(0) || segment_id NOT IN {_in(known)} " if known else ""
        return (
            f"SELECT profile_id AS {PROFILE_ID}, ns, segment_id, m.status AS {STATUS}, m.q AS {QUALIFIED_AT} FROM "
            "(SELECT profile_id, ns, segment_id, arg_max({'status': coalesce(status, 'realized'), 'q': qualified_at}, "
            f"(qualified_at, received_at, seq)) AS m FROM {self.table('fragment_memberships')} fm {skip}"
            "GROUP BY profile_id, ns, segment_id) r"
        )

    def _window(self) -> str:
        spec, conds = self.spec, []
        if spec.qualified_from is not None:
            conds.append(f" AND {QUALIFIED_AT} >= {_ts(spec.qualified_from)}")
        if spec.qualified_until is not None:
            conds.append(f" AND {QUALIFIED_AT} <= {_ts(spec.qualified_until)}")
        return "".join(conds)

    def chosen(self, members: tuple[MemberFilter, ...] | None, bounds: str) -> str:
        """The profile ids an output writes: members of any of its filters (every profile without filters), less
        those the spec's profile conditions leave out."""
        if members is None:
            parts = [f"SELECT profile_id AS {PROFILE_ID} FROM {self.table('identities')} i"]
        else:
            parts = []
            for f in members:
                wanted = f"{STATUS} IN {_in(f.statuses)}{self._window()}"
                found = self.store.audiences.get(f.audience_id)
                if found is not None and found[0] == f.namespace:
                    parts.append(f"SELECT {PROFILE_ID} FROM ({self._members(found[2], found[1])}) m WHERE {wanted}")
                elif f.namespace in self.store.record_namespaces:
                    parts.append(
                        f"SELECT {PROFILE_ID} FROM ({self._records()}) r WHERE ns = {lit(f.namespace)} "
                        f"AND segment_id = {lit(f.audience_id)} AND {wanted}"
                    )
        if not parts:
            return self._none()
        conds = [bounds, *self._conditions()]
        return f"SELECT DISTINCT {PROFILE_ID} FROM ({' UNION ALL '.join(parts)}) p WHERE {' AND '.join(conds)}"

    def _conditions(self) -> list[str]:
        """The spec's conditions on profiles (emptyProfiles, fromIngestTimestamp), as SQL on ``PROFILE_ID``."""
        spec = self.spec
        profiles = [self.table(t) for _, k, t, _ in self.store.fragments if k == "profile"]
        events = [self.table(t) for _, k, t, _ in self.store.fragments if k == "event"]
        out = []
        if not spec.empty_profiles and events:
            only_events = " UNION ALL ".join(f"SELECT {PROFILE_ID} FROM {t} ev" for t in events)
            if profiles:
                only_events = (
                    f"SELECT {PROFILE_ID} FROM ({only_events}) e EXCEPT SELECT {PROFILE_ID} FROM ("
                    + " UNION ALL ".join(f"SELECT {PROFILE_ID} FROM {t} pr" for t in profiles)
                    + ") f"
                )
            out.append(f"{PROFILE_ID} NOT IN (SELECT {PROFILE_ID} FROM ({only_events}) o)")
        if spec.updated_after is not None:
            after = _ts(spec.updated_after)
            recent = [f"SELECT {PROFILE_ID} FROM {t} f WHERE {TS} > {after}" for t in profiles + events]
            recent += [
                f"SELECT {PROFILE_ID} FROM ({self._members(tbl, ttl)}) m WHERE {QUALIFIED_AT} > {after}"
                for _, (_, ttl, tbl) in self.audiences
            ]
            if self.store.record_namespaces:
                recent.append(
                    f"SELECT profile_id AS {PROFILE_ID} FROM {self.table('fragment_memberships')} fm "
                    f"WHERE qualified_at > {after}"
                )
            found = " UNION ALL ".join(recent) or self._none()
            out.append(f"{PROFILE_ID} IN (SELECT {PROFILE_ID} FROM ({found}) r)")
        return out

    # -- what is joined to them

    def _attributes(self, bounds: str) -> str | None:
        """Each profile's merged leaves (``__ah_v{n}``): one ``arg_max`` of the non-NULL values per leaf over the
        fragment tables that have it, keyed by dataset rank, then time and the record's place in its batch."""
        spec = self.spec
        parts, tables = [], []
        for dataset_id, kind, tbl, cols in self.store.fragments:
            if kind != "profile" or not any(f.name in cols for f in spec.fields):
                continue
            # Every part has every leaf, in order (a NULL of the leaf's type where the table lacks it): a plain
            # UNION ALL, which Spark runs (it has no UNION ALL BY NAME).
            values = ", ".join(
                f"{ident(f.name) if f.name in cols else f'CAST(NULL AS {f.sql_type})'} AS __ah_v{n}"
                for n, f in enumerate(spec.fields)
            )
            rank = dataset_rank(dataset_id, spec.precedence)
            parts.append(
                f"SELECT {PROFILE_ID}, {BATCH}, {TS}, {SEQ}, {rank} AS {RANK}, {values} "
                f"FROM {self.table(tbl)} f WHERE {bounds}"
            )
            tables.append(tbl)
        if not parts:
            return None
        # FILTER: Spark's max_by answers a NULL value where it has the greatest key; DuckDB's arg_max skips it.
        merged = ", ".join(
            f"CAST(arg_max(__ah_v{n}, {MERGE_KEY}) FILTER (WHERE __ah_v{n} IS NOT NULL) AS {f.sql_type}) AS __ah_v{n}"
            for n, f in enumerate(spec.fields)
        )
        union = " UNION ALL ".join(parts)
        keyed = (
            f"SELECT *, {merge_key()} AS {MERGE_KEY} FROM ({union}) u "
            f"JOIN ({batch_order(tables, self.table)}) b USING ({BATCH})"
        )
        return f"SELECT {PROFILE_ID}, {merged} FROM ({keyed}) k GROUP BY {PROFILE_ID}"

    def _joined(self, bounds: str) -> tuple[list[str], list[str]]:
        """The relations joined to the chosen profiles, and the columns they bring."""
        spec, store = self.spec, self.store
        joins, cols = [], []
        attributes = self._attributes(bounds)
        for n, f in enumerate(spec.fields):
            cols.append(f"__ah_v{n}" if attributes is not None else f"CAST(NULL AS {f.sql_type}) AS __ah_v{n}")
        if attributes is not None:
            joins.append(f"{attributes}")
        for n, (_, (_, ttl, tbl)) in enumerate(self.audiences):
            joins.append(
                f"SELECT {PROFILE_ID}, {{'status': {STATUS}, 'lastQualificationTime': {QUALIFIED_AT}}} AS __ah_a{n} "
                f"FROM ({self._members(tbl, ttl)}) m WHERE {bounds}"
            )
            cols.append(f"__ah_a{n}")
        if store.record_namespaces:
            value = f"{{'status': {STATUS}, 'lastQualificationTime': {QUALIFIED_AT}}}"
            item = f"{{'ns': ns, 'key': segment_id, 'value': {value}}}"
            joins.append(
                f"SELECT {PROFILE_ID}, list({item}) AS {RECORDS} FROM ({self._records()}) r WHERE {bounds} "
                f"GROUP BY {PROFILE_ID}"
            )
            cols.append(RECORDS)
        if spec.identity_map and store.identity_namespaces:
            item = "{'id': id, 'authenticatedState': CAST(NULL AS VARCHAR), 'primary': CAST(NULL AS BOOLEAN)}"
            lists = ", ".join(
                f"list_sort(list({item}) FILTER (WHERE ns = {lit(ns)})) AS __ah_i{n}"
                for n, ns in enumerate(store.identity_namespaces)
            )
            joins.append(
                f"SELECT {PROFILE_ID}, {lists} FROM (SELECT profile_id AS {PROFILE_ID}, ns, id "
                f"FROM {self.table('identities')} i) i WHERE {bounds} GROUP BY {PROFILE_ID}"
            )
            cols += [f"__ah_i{n}" for n in range(len(store.identity_namespaces))]
        return joins, cols

    # -- the rows of an output

    def _membership_map(self) -> str:
        by_ns: dict[str, list[str]] = {}
        for n, (aid, (ns, _, _)) in enumerate(self.audiences):
            by_ns.setdefault(ns, []).append(f"{{'key': {lit(aid)}, 'value': __ah_a{n}}}")
        namespaces = sorted(set(by_ns) | set(self.store.record_namespaces))
        if not namespaces:
            return f"CAST(NULL AS {MEMBERSHIP_TYPE})"
        entries = []
        for ns in namespaces:
            found = [f"list_filter([{', '.join(by_ns[ns])}], lambda e: e.value IS NOT NULL)"] if ns in by_ns else []
            if ns in self.store.record_namespaces:
                found.append(
                    f"list_transform(list_filter(coalesce({RECORDS}, []), lambda e: e.ns = {lit(ns)}), "
                    "lambda e: {'key': e.key, 'value': e.value})"
                )
            joined = found[0] if len(found) == 1 else f"list_concat({', '.join(found)})"
            entries.append(f"{{'key': {lit(ns)}, 'value': map_from_entries({joined})}}")
        whole = f"map_from_entries(list_filter([{', '.join(entries)}], lambda e: cardinality(e.value) > 0))"
        return f"CAST({whole} AS {MEMBERSHIP_TYPE})"

    def _identity_map(self) -> str:
        namespaces = self.store.identity_namespaces
        if not namespaces:
            return f"CAST(NULL AS {IDENTITY_MAP_TYPE})"
        entries = ", ".join(f"{{'key': {lit(ns)}, 'value': __ah_i{n}}}" for n, ns in enumerate(namespaces))
        # A namespace without ids: NULL in DuckDB (list of no rows), [] in Spark (collect_list).
        return f"map_from_entries(list_filter([{entries}], lambda e: coalesce(cardinality(e.value), 0) > 0))"

    def _tree(self) -> list[str]:
        """The rows' top-level columns: each field group as nested ``struct_pack``s of its leaves."""
        root: dict[str, object] = {}
        for n, f in enumerate(self.spec.fields):
            node = root
            for step in f.path[:-1]:
                node = node.setdefault(step, {})  # type: ignore[assignment]
            node[f.path[-1]] = f"__ah_v{n}"

        def expr(node: object) -> str:
            if isinstance(node, str):
                return node
            assert isinstance(node, dict)
            return "struct_pack(" + ", ".join(f"{ident(k)} := {expr(v)}" for k, v in node.items()) + ")"

        return [f"{expr(v)} AS {ident(k)}" for k, v in root.items()]

    def rows(self, members: tuple[MemberFilter, ...] | None, bounds: str = "true") -> str:
        """The XDM rows of the profiles ``members`` selects (every profile: None) whose ids ``bounds`` keeps."""
        joins, cols = self._joined(bounds)
        joined = "".join(f" LEFT JOIN ({j}) j{n} USING ({PROFILE_ID})" for n, j in enumerate(joins))
        inner = f"SELECT {', '.join([PROFILE_ID, *cols])} FROM ({self.chosen(members, bounds)}) c{joined}"
        out = self._tree()
        if self.spec.identity_map:
            out.append(f"{self._identity_map()} AS identityMap")
        out.append("CASE WHEN cardinality(__ah_sm) > 0 THEN __ah_sm END AS segmentMembership")
        return f"SELECT {', '.join(out)} FROM (SELECT *, {self._membership_map()} AS __ah_sm FROM ({inner}) i) r"


def _bytes(text: str) -> float:
    """DuckDB's ``memory_limit`` setting as it reads it back (``953.6 MiB``) in bytes."""
    number, _, unit = text.strip().partition(" ")
    scale = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    return float(number) * scale.get(unit, 2**30)


def passes(cur: duckdb.DuckDBPyConnection, plan: ExportSQL) -> int:
    """How many slices of the profile ids to aggregate one after the other so that one slice's groups fit in half
    the memory limit: the aggregate's states (strings, structs) cannot spill to disk."""
    found = cur.execute(
        "SELECT estimated_size FROM duckdb_tables() WHERE table_name = 'identities' AND database_name <> 'temp'"
    ).fetchone()
    profiles = int(found[0]) if found else 0
    limit = cur.execute("SELECT current_setting('memory_limit')").fetchone()
    return slices_for(plan, profiles, _bytes(str(limit[0])) if limit else float(2**30))


def slices_for(plan: ExportSQL, profiles: int, memory: float) -> int:
    """How many slices of the profile ids keep one slice's groups of ``profiles`` (an estimate) within half of
    ``memory`` bytes."""
    columns = len(plan.spec.fields) + len(plan.audiences) + 2 * len(plan.store.identity_namespaces)
    per_profile = PROFILE_BYTES + COLUMN_BYTES * (columns + (4 if plan.store.record_namespaces else 0))
    return max(1, math.ceil(profiles * per_profile / (memory / 2)))


def _bound(n: int, slices: int, key_type: str = "UUID") -> str:
    """The first profile id of slice ``n`` of ``slices`` (profile ids are random UUIDs: even slices); as text, the
    same order (lower-case hex at fixed places)."""
    h = f"{(n << 128) // slices:032x}"
    text = f"'{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}'"
    return f"UUID {text}" if key_type == "UUID" else text


def slice_bounds(n: int, slices: int, key_type: str = "UUID") -> str:
    """The condition on ``PROFILE_ID`` that keeps slice ``n`` of ``slices`` (``true`` for a single slice)."""
    bounds = " AND ".join(
        ([f"{PROFILE_ID} >= {_bound(n, slices, key_type)}"] if n else [])
        + ([f"{PROFILE_ID} < {_bound(n + 1, slices, key_type)}"] if n + 1 < slices else [])
    )
    return bounds or "true"


def export(cur: duckdb.DuckDBPyConnection, spec: ExportSpec, outputs: list[ExportOutput]) -> list[int]:
    """Writes every output from one snapshot of the store (the caller's transaction); answers their row counts."""
    plan = ExportSQL(read_store(cur, identities=spec.identity_map), spec)
    options = "FORMAT parquet, COMPRESSION zstd"
    slices = passes(cur, plan)
    counts = [0] * len(outputs)
    for n in range(slices):
        bounds = slice_bounds(n, slices)
        for k, o in enumerate(outputs):
            part = o.folder / f"part-{n:05d}.parquet"
            sql = plan.rows(o.members, bounds)
            found = cur.execute(f"COPY ({sql}) TO {lit(str(part))} ({options})").fetchone()
            counts[k] += int(found[0]) if found else 0
    return counts


def snapshot_sql(
    cur: duckdb.DuckDBPyConnection | None,
    audiences: list[tuple[str, str, int, str]],
    fragments: list[tuple[str, str, str]],
    precedence: list[str] | None,
    *,
    table: Callable[[str], str] = ident,
    columns: Callable[[str], list[str]] | None = None,
) -> str:
    """Every merged profile of the sandbox as one row (the Query Service's profile table): the merged attributes
    nested under their top-level fields, ``identityMap`` (namespace → [{id, authenticatedState, primary}]) and
    ``segmentMembership`` (namespace → audience id → {status, lastQualificationTime}) from every membership relation
    (``audiences``: id, namespace, ttl, table) and records' own memberships; merged as a profile lookup merges one.

    ``table`` turns a table's name into the SQL that reads it and ``columns`` lists a fragment table's columns in
    order; by default the embedded store's tables in ``cur``'s database (the lake store passes its files')."""
    if columns is None:
        assert cur is not None
        columns = _columns_of(cur)
    members = [
        f"SELECT {PROFILE_ID} AS pid, {lit(ns)} AS ns, {lit(a)} AS seg, {STATUS} AS status, "
        f"{QUALIFIED_AT} AS qat FROM ({effective(tbl, ttl, table=table)})"
        for a, ns, ttl, tbl in audiences
    ]
    members.append(
        "SELECT profile_id, ns, segment_id, coalesce(status, 'realized'), qualified_at "
        f"FROM {table('fragment_memberships')}"
    )
    typed = "SELECT CAST(NULL AS UUID) AS pid, '' AS ns, '' AS seg, '' AS status, CAST(NULL AS TIMESTAMPTZ) AS qat"
    parts = [
        "ids AS (SELECT pid, map_from_entries(list({'key': ns, 'value': v} ORDER BY ns)) AS m FROM (SELECT "
        "profile_id AS pid, ns, list({'id': id, 'authenticatedState': CAST(NULL AS VARCHAR), 'primary': "
        f"CAST(NULL AS BOOLEAN)}} ORDER BY id) AS v FROM {table('identities')} GROUP BY ALL) GROUP BY pid)",
        f"mem AS ({typed} WHERE false UNION ALL " + " UNION ALL ".join(members) + ")",
        "ms AS (SELECT pid, map_from_entries(list({'key': ns, 'value': v} ORDER BY ns)) AS m FROM (SELECT pid, "
        "ns, map_from_entries(list({'key': seg, 'value': {'status': status, 'lastQualificationTime': qat}} "
        "ORDER BY seg)) AS v FROM (SELECT * FROM mem WHERE pid IS NOT NULL QUALIFY row_number() OVER "
        "(PARTITION BY pid, ns, seg ORDER BY qat DESC) = 1) GROUP BY ALL) GROUP BY pid)",
    ]
    tables = [(d, tbl) for d, k, tbl in fragments if k == "profile"]
    leaves: list[str] = []
    for _, tbl in tables:
        for name in columns(tbl):
            if not name.startswith(INTERNAL) and name not in leaves:
                leaves.append(name)
    select = "SELECT ids.m AS identityMap, ms.m AS segmentMembership"
    joins = " FROM ids LEFT JOIN ms USING (pid)"
    if tables and leaves:
        scans = " UNION ALL BY NAME ".join(
            f"SELECT *, {dataset_rank(d, precedence)} AS {RANK} FROM {table(tbl)}" for d, tbl in tables
        )
        keyed = (
            f"SELECT *, {merge_key()} AS {MERGE_KEY} FROM ({scans}) "
            f"JOIN ({batch_order((t for _, t in tables), table)}) USING ({BATCH})"
        )
        merged = ", ".join(
            f"arg_max({ident(n)}, {MERGE_KEY}) FILTER (WHERE {ident(n)} IS NOT NULL) AS {ident(n)}" for n in leaves
        )
        parts.append(f"attrs AS (SELECT {PROFILE_ID} AS pid, {merged} FROM ({keyed}) GROUP BY 1)")
        tree: dict[str, Any] = {}
        for n in leaves:
            node = tree
            steps = n.split(".")
            for step in steps[:-1]:
                node = node.setdefault(step, {})
            node[steps[-1]] = n

        def nest(node: dict[str, Any] | str) -> str:
            if isinstance(node, str):
                return f"attrs.{ident(node)}"
            return "{" + ", ".join(f"{lit(k)}: {nest(v)}" for k, v in node.items()) + "}"

        select = "SELECT " + "".join(f"{nest(v)} AS {ident(k)}, " for k, v in tree.items())
        select += "ids.m AS identityMap, ms.m AS segmentMembership"
        joins += " LEFT JOIN attrs USING (pid)"
    return "WITH " + ", ".join(parts) + " " + select + joins


def _columns_of(cur: duckdb.DuckDBPyConnection) -> Callable[[str], list[str]]:
    """A table's columns in order, in the embedded store's database."""

    def columns(tbl: str) -> list[str]:
        return [
            str(name)
            for (name,) in cur.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND database_name <> 'temp' "
                "ORDER BY column_index",
                [tbl],
            ).fetchall()
        ]

    return columns
