"""Segment evaluation in the embedded profile store: one query per plan computes every segment of it.

The query reads each table once for all the plan's segments: the profiles (``identities``), the merged attributes
the segments name (one aggregate over the profile fragment tables per merge policy), the memberships they test (one
bitmask per profile over every audience table they name), payload values, and event counts (one aggregate over the
event tables). Its result, one boolean column per segment, is then folded into each segment's membership table:
``realized`` on entry, ``existing`` while it still qualifies, ``exited`` when it leaves.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import duckdb

from audiencehub.domain.segments import (
    SEGMENT_NAMESPACE,
    Attribute,
    Column,
    EventCount,
    Flag,
    Payload,
    Plan,
    SegmentCounts,
)
from audiencehub.engines.ingest_sql import ident, lit
from audiencehub.profile.columns import (
    BATCH,
    PROFILE_ID,
    QUALIFIED_AT,
    RUN_ID,
    SEQ,
    STATUS,
    TS,
    effective,
    table_for,
)

RESULT = "seg_result"
WORD = 64  # membership flags per bitmask column


@dataclass(frozen=True)
class Tables:
    """What the sandbox's store holds: membership tables by audience id (namespace, ttl, table) and fragment tables
    (dataset id, kind, table, columns)."""

    audiences: dict[str, tuple[str, int, str]]
    fragments: list[tuple[str, str, str, set[str]]]


def tables(cur: duckdb.DuckDBPyConnection) -> Tables:
    audiences = {
        str(a): (str(ns), int(ttl), str(t))
        for a, ns, ttl, t in cur.execute(
            "SELECT a.audience_id, a.namespace, a.ttl_days, a.tbl FROM audiences a "
            "JOIN duckdb_tables() t ON t.table_name = a.tbl AND t.database_name <> 'temp'"
        ).fetchall()
    }
    columns: dict[str, set[str]] = defaultdict(set)
    for tbl, col in cur.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name <> 'temp' "
        "AND table_name IN (SELECT tbl FROM fragment_tables)"
    ).fetchall():
        columns[str(tbl)].add(str(col))
    fragments = [
        (str(d), str(k), str(t), columns[str(t)])
        for d, k, t in cur.execute("SELECT dataset_id, kind, tbl FROM fragment_tables ORDER BY dataset_id").fetchall()
        if str(t) in columns
    ]
    return Tables(audiences, fragments)


def _empty(names: list[tuple[str, str]]) -> str:
    """A relation with the profile key and these (alias, SQL type) columns and no rows."""
    cols = "".join(f", CAST(NULL AS {t}) AS {ident(a)}" for a, t in names)
    return f"SELECT CAST(NULL AS UUID) AS {PROFILE_ID}{cols} WHERE false"


def _attributes(have: Tables, attrs: dict[str, Attribute]) -> list[str]:
    """One relation per merge policy: each profile's newest non-null value of each attribute the plan names."""
    by_policy: dict[tuple[str, ...] | None, dict[str, Attribute]] = defaultdict(dict)
    for alias, a in attrs.items():
        by_policy[a.precedence][alias] = a
    out = []
    for precedence, named in by_policy.items():
        order = precedence or ()
        rank = {d: len(order) - n for n, d in enumerate(order)}
        parts = []
        for dataset_id, kind, tbl, cols in have.fragments:
            if kind != "profile" or not any(a.leaf in cols for a in named.values()):
                continue
            values = "".join(
                f", {ident(a.leaf) if a.leaf in cols else f'CAST(NULL AS {a.sql_type})'} AS {ident(alias)}"
                for alias, a in named.items()
            )
            key = f"{{'r': {rank.get(dataset_id, 0)}, 't': {TS}, 'b': {BATCH}, 's': {SEQ}}}"
            parts.append(f"SELECT {PROFILE_ID}, {key} AS __ah_key{values} FROM {ident(tbl)}")
        if not parts:
            out.append(_empty([(alias, a.sql_type) for alias, a in named.items()]))
            continue
        aggs = "".join(
            f", arg_max({ident(alias)}, __ah_key) FILTER (WHERE {ident(alias)} IS NOT NULL) AS {ident(alias)}"
            for alias in named
        )
        out.append(f"SELECT {PROFILE_ID}{aggs} FROM ({' UNION ALL '.join(parts)}) GROUP BY {PROFILE_ID}")
    return out


def _active_rows(
    have: Tables, plan: Plan, flag_source: Flag | Payload, statuses: tuple[str, ...], cols: str
) -> str | None:
    """``cols`` of the source's memberships whose status (as of the plan's now) is one of ``statuses``; None when the
    store holds no membership of it."""
    source = flag_source.source
    wanted = ", ".join(lit(s) for s in statuses)  # statuses are the parser's constants
    if source.kind == "records":
        if isinstance(flag_source, Payload):
            return None
        return (
            f"SELECT profile_id AS {PROFILE_ID} FROM fragment_memberships WHERE ns = {plan.param(source.namespace)} "
            f"AND segment_id = {plan.param(source.ref)} GROUP BY profile_id "
            f"HAVING arg_max(coalesce(status, 'realized'), (qualified_at, received_at, seq)) IN ({wanted})"
        )
    found = have.audiences.get(source.ref)
    if found is None:
        return None
    _, ttl, tbl = found
    return f"SELECT {cols} FROM ({effective(tbl, ttl, '$now')}) WHERE {STATUS} IN ({wanted})"


def _flags(have: Tables, plan: Plan, flags: dict[str, Flag]) -> str:
    """One row per profile with any flag: a bitmask per 64 flags, then each flag as a boolean column."""
    parts = []
    bits: dict[str, tuple[int, int]] = {}
    for n, (alias, f) in enumerate(flags.items()):
        word, bit = divmod(n, WORD)
        bits[alias] = (word, bit)
        rows = _active_rows(have, plan, f, f.statuses, PROFILE_ID)
        if rows is not None:
            parts.append(f"SELECT {PROFILE_ID}, {word} AS w, CAST(1 AS UBIGINT) << {bit} AS b FROM ({rows})")
    words = max(w for w, _ in bits.values()) + 1
    if not parts:
        return _empty([(alias, "BOOLEAN") for alias in flags])
    masks = ", ".join(f"bit_or(b) FILTER (WHERE w = {w}) AS m{w}" for w in range(words))
    cols = ", ".join(f"((coalesce(m{w}, 0) >> {b}) & 1) = 1 AS {ident(alias)}" for alias, (w, b) in bits.items())
    return (
        f"SELECT {PROFILE_ID}, {cols} FROM (SELECT {PROFILE_ID}, {masks} FROM ({' UNION ALL '.join(parts)}) "
        f"GROUP BY {PROFILE_ID})"
    )


def _payloads(have: Tables, plan: Plan, payloads: dict[str, Payload]) -> list[str]:
    by_source: dict[str, dict[str, Payload]] = defaultdict(dict)
    for alias, p in payloads.items():
        by_source[p.source.ref][alias] = p
    out = []
    for named in by_source.values():
        first = next(iter(named.values()))
        cols = PROFILE_ID + "".join(f", {ident(p.name)} AS {ident(alias)}" for alias, p in named.items())
        rows = _active_rows(have, plan, first, ("existing", "realized"), cols)
        out.append(rows if rows is not None else _empty([(a, p.sql_type) for a, p in named.items()]))
    return out


def _events(have: Tables, counts: dict[str, EventCount]) -> str:
    fields = sorted({f for c in counts.values() for f in c.fields})
    parts = []
    for _, kind, tbl, cols in have.fragments:
        if kind != "event":
            continue
        values = "".join(
            f", {ident(name) if name in cols else f'CAST(NULL AS {t})'} AS {ident(name)}" for name, t in fields
        )
        parts.append(f"SELECT {PROFILE_ID}{values} FROM {ident(tbl)}")
    if not parts:
        return _empty([(alias, "BIGINT") for alias in counts])
    aggs = "".join(
        f", count(*){'' if c.condition is None else f' FILTER (WHERE {c.condition})'} AS {ident(alias)}"
        for alias, c in counts.items()
    )
    return f"SELECT {PROFILE_ID}{aggs} FROM ({' UNION ALL '.join(parts)}) GROUP BY {PROFILE_ID}"


def query(have: Tables, plan: Plan) -> str:
    """One row per profile: its id and one boolean column ``s{n}`` per segment of the plan."""
    kinds: dict[type, dict[str, Column]] = defaultdict(dict)
    for alias, col in plan.columns.items():
        kinds[type(col)][alias] = col
    joins: list[str] = []
    joins += _attributes(have, kinds[Attribute])  # type: ignore[arg-type]
    if kinds[Flag]:
        joins.append(_flags(have, plan, kinds[Flag]))  # type: ignore[arg-type]
    joins += _payloads(have, plan, kinds[Payload])  # type: ignore[arg-type]
    if kinds[EventCount]:
        joins.append(_events(have, kinds[EventCount]))  # type: ignore[arg-type]
    segs = ", ".join(f"{sql} AS s{n}" for n, (_, sql) in enumerate(plan.segments))
    joined = "".join(f" LEFT JOIN ({j}) USING ({PROFILE_ID})" for j in joins)
    return f"SELECT {PROFILE_ID}, {segs} FROM (SELECT DISTINCT profile_id AS {PROFILE_ID} FROM identities){joined}"


def used(sql: str, plan: Plan) -> dict[str, object]:
    """The plan's parameters that ``sql`` names (DuckDB refuses a parameter that the statement does not use)."""
    names = set(re.findall(r"\$([A-Za-z_]\w*)", sql))
    return {k: v for k, v in plan.params.items() if k in names}


def write(
    cur: duckdb.DuckDBPyConnection, have: Tables, segment_id: str, column: str, ttl_days: int, job_id: str, plan: Plan
) -> SegmentCounts:
    """Folds the evaluation's result column into the segment's memberships and registers the segment's table."""
    tbl = table_for(segment_id)
    params = {"now": plan.now, "job": job_id}
    members = f"SELECT {PROFILE_ID} FROM {RESULT} WHERE {column}"
    old = have.audiences.get(segment_id)
    if old is None:
        cur.execute(f"DROP TABLE IF EXISTS {ident(tbl)}")
        cur.execute(
            f"CREATE TABLE {ident(tbl)} AS SELECT {PROFILE_ID}, 'realized' AS {STATUS}, $now AS {QUALIFIED_AT}, "
            f"$job AS {RUN_ID} FROM ({members})",
            params,
        )
    else:
        before = effective(old[2], old[1], "$now")
        cur.execute(
            f"CREATE TABLE {ident(tbl + '_next')} AS "
            f"SELECT n.{PROFILE_ID}, CASE WHEN o.{STATUS} IN ('realized', 'existing') THEN 'existing' "
            f"ELSE 'realized' END AS {STATUS}, $now AS {QUALIFIED_AT}, $job AS {RUN_ID} "
            f"FROM ({members}) n LEFT JOIN ({before}) o USING ({PROFILE_ID}) "
            f"UNION ALL SELECT o.{PROFILE_ID}, 'exited', "
            f"CASE WHEN o.{STATUS} = 'exited' THEN o.{QUALIFIED_AT} ELSE $now END, "
            f"CASE WHEN o.{STATUS} = 'exited' THEN o.{RUN_ID} ELSE $job END "
            f"FROM ({before}) o ANTI JOIN ({members}) n USING ({PROFILE_ID})",
            params,
        )
        cur.execute(f"DROP TABLE {ident(tbl)}")
        cur.execute(f"ALTER TABLE {ident(tbl + '_next')} RENAME TO {ident(tbl)}")
    cur.execute(f"CREATE INDEX {ident(tbl + '_profile')} ON {ident(tbl)} ({PROFILE_ID})")
    cur.execute(
        "INSERT INTO audiences VALUES (?, ?, ?, ?) ON CONFLICT (audience_id) DO UPDATE SET "
        "namespace = excluded.namespace, ttl_days = excluded.ttl_days, tbl = excluded.tbl",
        [segment_id, SEGMENT_NAMESPACE, ttl_days, tbl],
    )
    have.audiences[segment_id] = (SEGMENT_NAMESPACE, ttl_days, tbl)
    row = cur.execute(
        f"SELECT count(*) FILTER (WHERE {STATUS} = 'realized'), count(*) FILTER (WHERE {STATUS} = 'existing'), "
        f"count(*) FILTER (WHERE {STATUS} = 'exited' AND {RUN_ID} = $job) FROM {ident(tbl)}",
        {"job": job_id},
    ).fetchone()
    assert row is not None
    return SegmentCounts(realized=int(row[0]), existing=int(row[1]), exited=int(row[2]))
