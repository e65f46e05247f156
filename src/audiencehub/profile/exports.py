"""Export jobs in the embedded profile store: the profiles a filter selects, as XDM rows, written in bulk.

One aggregation per export does all the work: every row the profiles' answer needs (their memberships in every
audience and segment of the sandbox, the fragments that hold the requested attributes, their identities) is read
into one ``UNION ALL BY NAME`` and grouped by profile once. Each group yields the profile's merged attributes (the
newest non-null value of each leaf, or by dataset precedence, as the profile's reads merge them), its
``segmentMembership`` map (all of its memberships, namespace → audience id → status and qualification time), its
``identityMap`` when asked, and one flag per output saying whether the filter selects it. The rows become nested
structs and are written to Parquet by the engine (``COPY``): nothing is looked at row by row in Python.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from audiencehub.engines.ingest_sql import ident, lit
from audiencehub.profile import segments
from audiencehub.profile.columns import BATCH, PROFILE_ID, QUALIFIED_AT, SEQ, STATUS, TS, effective

MEMBERSHIP = "STRUCT(status VARCHAR, lastQualificationTime TIMESTAMPTZ)"
MEMBERSHIP_TYPE = f"MAP(VARCHAR, MAP(VARCHAR, {MEMBERSHIP}))"
IDENTITY = 'STRUCT(id VARCHAR, authenticatedState VARCHAR, "primary" BOOLEAN)'
IDENTITY_MAP_TYPE = f"MAP(VARCHAR, {IDENTITY}[])"
AGG = "__ah_export"
# The columns of the rows grouped by profile. ``K``: m a membership table's row (audience number ``A``), r a
# record's own membership, f a profile fragment, e an event, i an identity.
K, A, M, NS, SID, KEY, FTS, INS, IID = (
    "__ah_k",
    "__ah_a",
    "__ah_m",
    "__ah_ns",
    "__ah_sid",
    "__ah_key",
    "__ah_fts",
    "__ah_ins",
    "__ah_iid",
)
RECORDS = "__ah_records"
PROFILE_BYTES, COLUMN_BYTES = 120, 60
"""Measured (DuckDB 2.0): one profile's aggregate states take about this much memory, plus this per column."""


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


class _Plan:
    """The SQL of one export over one store: the grouped rows, the aggregate, and each output's rows."""

    def __init__(self, store: Store, spec: ExportSpec, outputs: list[ExportOutput]) -> None:
        self.store, self.spec, self.outputs = store, spec, outputs
        self.audiences = list(store.audiences.items())  # membership table n is column a{n}
        self.number = {aid: n for n, (aid, _) in enumerate(self.audiences)}

    # -- the rows grouped by profile

    def _shape(self) -> str:
        """No rows, every column typed: the union's first relation, so that each column exists whatever the store
        holds."""
        cols = [
            f"CAST(NULL AS UUID) AS {PROFILE_ID}",
            f"CAST(NULL AS VARCHAR) AS {K}",
            f"CAST(NULL AS INTEGER) AS {A}",
            f"CAST(NULL AS {MEMBERSHIP}) AS {M}",
            *(f"CAST(NULL AS VARCHAR) AS {c}" for c in (NS, SID, INS, IID)),
            f"CAST(NULL AS TIMESTAMPTZ) AS {FTS}",
            f"CAST(NULL AS STRUCT(r INTEGER, t TIMESTAMPTZ, b VARCHAR, s BIGINT)) AS {KEY}",
            *(f"CAST(NULL AS {f.sql_type}) AS __ah_v{n}" for n, f in enumerate(self.spec.fields)),
        ]
        return f"SELECT {', '.join(cols)} WHERE false"

    def _memberships(self) -> list[str]:
        """Every membership of the sandbox as read now (ttl applied): each membership table's rows under its number,
        then records' own (the newest per profile, namespace and id; an audience's table wins over records)."""
        parts = [
            f"SELECT {PROFILE_ID}, 'm' AS {K}, {n} AS {A}, {{'status': {STATUS}, 'lastQualificationTime': "
            f"{QUALIFIED_AT}}} AS {M} FROM ({effective(tbl, ttl)})"
            for n, (_, (_, ttl, tbl)) in enumerate(self.audiences)
        ]
        if self.store.record_namespaces:
            known = [f"{ns}\x00{aid}" for aid, (ns, _, _) in self.audiences]
            skip = f"WHERE ns || chr(0) || segment_id NOT IN {_in(known)} " if known else ""
            parts.append(
                f"SELECT profile_id AS {PROFILE_ID}, 'r' AS {K}, ns AS {NS}, segment_id AS {SID}, m AS {M} FROM "
                f"(SELECT profile_id, ns, segment_id, arg_max({{'status': coalesce(status, 'realized'), "
                f"'lastQualificationTime': qualified_at}}, (qualified_at, received_at, seq)) AS m "
                f"FROM fragment_memberships {skip}GROUP BY profile_id, ns, segment_id)"
            )
        return parts

    def _fragments(self) -> list[str]:
        """One relation per profile fragment table: the leaves the export names (``__ah_v{n}``) with the merge key;
        a table without any of them only when the profile's flags need its rows. Event tables for the flags."""
        spec = self.spec
        flags = not spec.empty_profiles or spec.updated_after is not None
        order = spec.precedence or ()
        rank = {d: len(order) - n for n, d in enumerate(order)}
        parts = []
        for dataset_id, kind, tbl, cols in self.store.fragments:
            if kind == "event" and flags:
                parts.append(f"SELECT {PROFILE_ID}, 'e' AS {K}, {TS} AS {FTS} FROM {ident(tbl)}")
            if kind != "profile":
                continue
            values = [
                f"CAST({ident(f.name)} AS {f.sql_type}) AS __ah_v{n}"
                for n, f in enumerate(spec.fields)
                if f.name in cols
            ]
            if not values and not flags:
                continue
            key = f"{{'r': {rank.get(dataset_id, 0)}, 't': {TS}, 'b': {BATCH}, 's': {SEQ}}}"
            parts.append(
                f"SELECT {PROFILE_ID}, 'f' AS {K}, {key} AS {KEY}, {TS} AS {FTS}"
                + "".join(f", {v}" for v in values)
                + f" FROM {ident(tbl)}"
            )
        return parts

    def _picked(self) -> str | None:
        """The profiles some filter may select, to group only theirs; None when every profile is written, or when
        the filters read every membership of the sandbox (grouping everything once is then cheaper than a join)."""
        if any(o.members is None for o in self.outputs):
            return None
        filters = [f for o in self.outputs for f in o.members or ()]
        store = self.store
        tables = {f.audience_id for f in filters if self._table_of(f) is not None}
        records = any(f.namespace in store.record_namespaces for f in filters)
        if tables == set(store.audiences) and (records or not store.record_namespaces):
            return None
        parts = []
        for f in filters:
            found = self._table_of(f)
            if found is not None:
                _, ttl, tbl = found
                parts.append(f"SELECT {PROFILE_ID} FROM ({effective(tbl, ttl)}) WHERE {STATUS} IN {_in(f.statuses)}")
            elif f.namespace in store.record_namespaces:
                parts.append(
                    f"SELECT profile_id AS {PROFILE_ID} FROM fragment_memberships WHERE ns = {lit(f.namespace)} "
                    f"AND segment_id = {lit(f.audience_id)}"
                )
        return " UNION ALL ".join(parts) or f"SELECT CAST(NULL AS UUID) AS {PROFILE_ID} WHERE false"

    def _table_of(self, f: MemberFilter) -> tuple[str, int, str] | None:
        found = self.store.audiences.get(f.audience_id)
        return found if found is not None and found[0] == f.namespace else None

    def grouped(self, bounds: str) -> str:
        parts = [self._shape(), *self._memberships(), *self._fragments()]
        if self.spec.identity_map or any(o.members is None for o in self.outputs):
            ids = f", ns AS {INS}, id AS {IID}" if self.spec.identity_map else ""
            parts.append(f"SELECT profile_id AS {PROFILE_ID}, 'i' AS {K}{ids} FROM identities")
        union = " UNION ALL BY NAME ".join(f"({p})" for p in parts)
        picked = self._picked()
        if picked is not None:
            bounds += f" AND {PROFILE_ID} IN (SELECT {PROFILE_ID} FROM ({picked}))"
        return f"SELECT * FROM ({union}) WHERE {bounds}"

    # -- one row per profile

    def aggregate(self, bounds: str = "true") -> str:
        """One row per profile of those ``bounds`` keeps: its merged leaves (``__ah_v{n}``), its membership of each
        table (``__ah_a{n}``), its records' memberships, its identities by namespace, and ``__ah_keep`` (the spec's
        profile conditions)."""
        spec, store = self.spec, self.store
        cols = [PROFILE_ID]
        cols += [
            f"arg_max(__ah_v{n}, {KEY}) FILTER (WHERE __ah_v{n} IS NOT NULL) AS __ah_v{n}"
            for n in range(len(spec.fields))
        ]
        # One column per membership table: an aggregate of one value is far cheaper than a list per profile.
        cols += [f"any_value({M}) FILTER (WHERE {A} = {n}) AS __ah_a{n}" for n in range(len(self.audiences))]
        if store.record_namespaces:
            cols.append(f"list({{'ns': {NS}, 'key': {SID}, 'value': {M}}}) FILTER (WHERE {K} = 'r') AS {RECORDS}")
        if spec.identity_map:
            item = f"{{'id': {IID}, 'authenticatedState': CAST(NULL AS VARCHAR), 'primary': CAST(NULL AS BOOLEAN)}}"
            cols += [
                f"list_sort(list({item}) FILTER (WHERE {K} = 'i' AND {INS} = {lit(ns)})) AS __ah_i{n}"
                for n, ns in enumerate(store.identity_namespaces)
            ]
        keep = []
        if not spec.empty_profiles and any(kind == "event" for _, kind, _, _ in store.fragments):
            keep.append(f"(bool_or({K} = 'f') OR NOT bool_or({K} = 'e'))")
        if spec.updated_after is not None:
            after = _ts(spec.updated_after)
            keep.append(
                f"bool_or(({K} IN ('f', 'e') AND {FTS} > {after}) OR "
                f"({K} IN ('m', 'r') AND {M}.lastQualificationTime > {after}))"
            )
        cols.append(f"{' AND '.join(keep) or 'true'} AS __ah_keep")
        return f"SELECT {', '.join(cols)} FROM ({self.grouped(bounds)}) GROUP BY {PROFILE_ID}"

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
        return f"map_from_entries(list_filter([{entries}], lambda e: e.value IS NOT NULL))"

    def _hit(self, f: MemberFilter) -> str:
        """SQL over the aggregate: the profile's membership that ``f`` names passes it."""
        spec = self.spec

        def passes(m: str) -> str:
            conds = [f"{m}.status IN {_in(f.statuses)}"]
            if spec.qualified_from is not None:
                conds.append(f"{m}.lastQualificationTime >= {_ts(spec.qualified_from)}")
            if spec.qualified_until is not None:
                conds.append(f"{m}.lastQualificationTime <= {_ts(spec.qualified_until)}")
            return " AND ".join(conds)

        if self._table_of(f) is not None:
            return f"coalesce({passes(f'__ah_a{self.number[f.audience_id]}')}, false)"
        if f.namespace in self.store.record_namespaces:
            named = f"e.ns = {lit(f.namespace)} AND e.key = {lit(f.audience_id)}"
            return f"len(list_filter(coalesce({RECORDS}, []), lambda e: {named} AND {passes('e.value')})) > 0"
        return "false"

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

    def rows(self, source: str, k: int) -> str:
        """The XDM rows of output ``k`` over ``source`` (the aggregate, or a table that holds it)."""
        members = self.outputs[k].members
        hit = "true" if members is None else " OR ".join(self._hit(f) for f in members) or "false"
        cols = self._tree()
        if self.spec.identity_map:
            cols.append(f"{self._identity_map()} AS identityMap")
        cols.append("CASE WHEN cardinality(__ah_sm) > 0 THEN __ah_sm END AS segmentMembership")
        return (
            f"SELECT {', '.join(cols)} FROM (SELECT *, {self._membership_map()} AS __ah_sm FROM {source} "
            f"WHERE __ah_keep AND ({hit}))"
        )


def _bytes(text: str) -> float:
    """DuckDB's ``memory_limit`` setting as it reads it back (``953.6 MiB``) in bytes."""
    number, _, unit = text.strip().partition(" ")
    scale = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    return float(number) * scale.get(unit, 2**30)


def passes(cur: duckdb.DuckDBPyConnection, plan: _Plan) -> int:
    """How many slices of the profile ids to aggregate one after the other so that one slice's groups fit in half
    the memory limit: the aggregate's states (strings, structs) cannot spill to disk."""
    found = cur.execute(
        "SELECT estimated_size FROM duckdb_tables() WHERE table_name = 'identities' AND database_name <> 'temp'"
    ).fetchone()
    profiles = int(found[0]) if found else 0
    limit = cur.execute("SELECT current_setting('memory_limit')").fetchone()
    memory = _bytes(str(limit[0])) if limit else float(2**30)
    columns = len(plan.spec.fields) + len(plan.audiences) + 2 * len(plan.store.identity_namespaces)
    per_profile = PROFILE_BYTES + COLUMN_BYTES * (columns + (4 if plan.store.record_namespaces else 0))
    return max(1, math.ceil(profiles * per_profile / (memory / 2)))


def _bound(n: int, slices: int) -> str:
    """The first profile id of slice ``n`` of ``slices`` (profile ids are random UUIDs: even slices)."""
    h = f"{(n << 128) // slices:032x}"
    return f"UUID '{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}'"


def export(cur: duckdb.DuckDBPyConnection, spec: ExportSpec, outputs: list[ExportOutput]) -> list[int]:
    """Writes every output from one snapshot of the store (the caller's transaction); answers their row counts."""
    plan = _Plan(read_store(cur, identities=spec.identity_map), spec, outputs)
    options = "FORMAT parquet, COMPRESSION zstd"
    slices = passes(cur, plan)
    counts = [0] * len(outputs)
    for n in range(slices):
        bounds = " AND ".join(
            ([f"{PROFILE_ID} >= {_bound(n, slices)}"] if n else [])
            + ([f"{PROFILE_ID} < {_bound(n + 1, slices)}"] if n + 1 < slices else [])
        )
        aggregate = plan.aggregate(bounds or "true")
        source = f"({aggregate})"
        if len(outputs) > 1:
            cur.execute(f"CREATE OR REPLACE TEMP TABLE {AGG} AS {aggregate}")
            source = AGG
        for k, o in enumerate(outputs):
            part = o.folder / f"part-{n:05d}.parquet"
            found = cur.execute(f"COPY ({plan.rows(source, k)}) TO {lit(str(part))} ({options})").fetchone()
            counts[k] += int(found[0]) if found else 0
    cur.execute(f"DROP TABLE IF EXISTS {AGG}")
    return counts
