"""Segment evaluation in the embedded profile store: one query per plan computes every segment of it.

The query reads each table once for all the plan's segments: the profiles (``identities``), the merged attributes
the segments name (one aggregate over the profile fragment tables per merge policy), the memberships they test (one
bitmask per profile over every audience table they name), payload values, and event counts (one aggregate over the
event tables). Its result, one boolean column per segment, is then folded into each segment's membership table:
``realized`` on entry, ``existing`` while it still qualifies, ``exited`` when it leaves.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

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
    MERGE_KEY,
    PROFILE_ID,
    RANK,
    SEQ,
    STATUS,
    TS,
    batch_order,
    dataset_rank,
    effective,
    merge_key,
    table_for,
)
from audiencehub.profile.segment_codes import (
    CODES,
    EXISTING,
    EXITED,
    REALIZED,
    RESULT_PREFIX,
    Stamps,
    Stored,
    code,
    code_bits,
    code_field,
    code_of,
    new_word,
    new_word_masks,
    packed,
    result_table,
    stored,
    unpacked,
    view,
    word_columns,
)

WORD = 63  # membership flags per bitmask column: a signed BIGINT's bits (Spark has no UBIGINT)
NO_TTL = 36500
"""A segment definition without ``ttlInDays``: its memberships stay until an evaluation says otherwise."""


@dataclass(frozen=True)
class Tables:
    """What the sandbox's store holds: membership tables (or views) by audience id (namespace, ttl, table), fragment
    tables (dataset id, kind, table, columns), where segments' results are (``results``) and those that the running
    job has written so far (``fresh``)."""

    audiences: dict[str, tuple[str, int, str]]
    fragments: list[tuple[str, str, str, set[str]]]
    results: dict[str, Stored]
    fresh: dict[str, Stored] = field(default_factory=dict)
    ref: Callable[[str], str] = ident
    """A table's name → SQL for its rows: the embedded store's identifiers; the lake store's ``read_parquet([...])``
    of a version's files."""
    members: Callable[[str, int, str], str] = effective
    """(membership table, ttl days, SQL of the instant) → the memberships as read then (:func:`effective`)."""
    key_type: str = "UUID"
    """The profile key's SQL type (the lake store keeps it as text)."""


RELATIONS = (
    "(SELECT table_name AS name FROM duckdb_tables() WHERE database_name <> 'temp' "
    "UNION ALL SELECT view_name FROM duckdb_views() WHERE database_name <> 'temp' AND NOT internal)"
)
"""The names of the store's tables and views."""


def audiences(cur: duckdb.DuckDBPyConnection, audience_id: str | None = None) -> list[tuple[str, str, int, str]]:
    """The registered audiences (external ones and segments) whose membership relation exists: (audience id,
    namespace, ttl days, table or view), by id."""
    sql = f"SELECT audience_id, namespace, ttl_days, tbl FROM audiences WHERE tbl IN {RELATIONS}"
    rows = cur.execute(
        sql + (" AND audience_id = ?" if audience_id else "") + " ORDER BY 1",
        [audience_id] if audience_id else [],
    ).fetchall()
    return [(str(a), str(ns), int(ttl), str(tbl)) for a, ns, ttl, tbl in rows]


def tables(cur: duckdb.DuckDBPyConnection) -> Tables:
    registered = {a: (ns, ttl, tbl) for a, ns, ttl, tbl in audiences(cur)}
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
    return Tables(registered, fragments, stored(cur))


def _empty(have: Tables, names: list[tuple[str, str]]) -> str:
    """A relation with the profile key and these (alias, SQL type) columns and no rows."""
    cols = "".join(f", CAST(NULL AS {t}) AS {ident(a)}" for a, t in names)
    return f"SELECT CAST(NULL AS {have.key_type}) AS {PROFILE_ID}{cols} WHERE false"


def _attributes(have: Tables, attrs: dict[str, Attribute]) -> list[str]:
    """One relation per merge policy: each profile's newest non-null value of each attribute the plan names."""
    by_policy: dict[tuple[str, ...] | None, dict[str, Attribute]] = defaultdict(dict)
    for alias, a in attrs.items():
        by_policy[a.precedence][alias] = a
    out = []
    for precedence, named in by_policy.items():
        parts, tables = [], []
        for dataset_id, kind, tbl, cols in have.fragments:
            if kind != "profile" or not any(a.leaf in cols for a in named.values()):
                continue
            values = "".join(
                f", {ident(a.leaf) if a.leaf in cols else f'CAST(NULL AS {a.sql_type})'} AS {ident(alias)}"
                for alias, a in named.items()
            )
            rank = dataset_rank(dataset_id, precedence)
            parts.append(f"SELECT {PROFILE_ID}, {BATCH}, {TS}, {SEQ}, {rank} AS {RANK}{values} FROM {have.ref(tbl)}")
            tables.append(tbl)
        if not parts:
            out.append(_empty(have, [(alias, a.sql_type) for alias, a in named.items()]))
            continue
        aggs = "".join(
            f", arg_max({ident(alias)}, {MERGE_KEY}) FILTER (WHERE {ident(alias)} IS NOT NULL) AS {ident(alias)}"
            for alias in named
        )
        keyed = (
            f"SELECT *, {merge_key()} AS {MERGE_KEY} FROM ({' UNION ALL '.join(parts)}) "
            f"JOIN ({batch_order(tables, have.ref)}) USING ({BATCH})"
        )
        out.append(f"SELECT {PROFILE_ID}{aggs} FROM ({keyed}) GROUP BY {PROFILE_ID}")
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
            f"SELECT profile_id AS {PROFILE_ID} FROM {have.ref('fragment_memberships')} "
            f"WHERE ns = {plan.param(source.namespace)} AND segment_id = {plan.param(source.ref)} GROUP BY profile_id "
            f"HAVING arg_max(coalesce(status, 'realized'), (qualified_at, received_at, seq)) IN ({wanted})"
        )
    found = have.audiences.get(source.ref)
    if found is None:
        return None
    _, ttl, tbl = found
    return f"SELECT {cols} FROM ({have.members(tbl, ttl, '$now')}) a WHERE {STATUS} IN ({wanted})"


def _profiles(have: Tables, plan: Plan, flags: dict[str, Flag]) -> str:
    """One row per profile: its id and each flag as a boolean column. The flags are bits of BIGINT masks (63 to a
    mask) that ONE aggregate computes over the identities and every membership the flags test: bit 0 of the first
    mask marks a row of ``identities`` (the profiles that exist), so the profiles and their memberships cost one
    grouping of all those rows, not one each and a join."""
    profiles = f"SELECT profile_id AS {PROFILE_ID} FROM {have.ref('identities')}"
    if not flags:
        return f"SELECT DISTINCT {profiles.removeprefix('SELECT ')}"
    bits = {alias: divmod(n, WORD) for n, alias in enumerate(flags, start=1)}
    words = max(w for w, _ in bits.values()) + 1

    def masks(word: int, bit: int) -> str:
        """The mask columns of a row that sets this bit (the others NULL: bit_or skips them, without a FILTER)."""
        one = f"CAST(1 AS BIGINT) << {bit}"
        return ", ".join(f"{one if w == word else 'CAST(NULL AS BIGINT)'} AS m{w}" for w in range(words))

    parts = [f"SELECT {PROFILE_ID}, {masks(0, 0)} FROM ({profiles}) i"]
    for alias, f in flags.items():
        rows = _active_rows(have, plan, f, f.statuses, PROFILE_ID)
        if rows is not None:
            parts.append(f"SELECT {PROFILE_ID}, {masks(*bits[alias])} FROM ({rows}) r")
    aggs = ", ".join(f"bit_or(m{w}) AS m{w}" for w in range(words))
    cols = ", ".join(f"((coalesce(m{w}, 0) >> {b}) & 1) = 1 AS {ident(alias)}" for alias, (w, b) in bits.items())
    return (
        f"SELECT {PROFILE_ID}, {cols} FROM (SELECT {PROFILE_ID}, {aggs} FROM ({' UNION ALL '.join(parts)}) u "
        f"GROUP BY {PROFILE_ID} HAVING (bit_or(m0) & 1) = 1) f"
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
        out.append(rows if rows is not None else _empty(have, [(a, p.sql_type) for a, p in named.items()]))
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
        parts.append(f"SELECT {PROFILE_ID}{values} FROM {have.ref(tbl)}")
    if not parts:
        return _empty(have, [(alias, "BIGINT") for alias in counts])
    aggs = "".join(
        f", count(*){'' if c.condition is None else f' FILTER (WHERE {c.condition})'} AS {ident(alias)}"
        for alias, c in counts.items()
    )
    return f"SELECT {PROFILE_ID}{aggs} FROM ({' UNION ALL '.join(parts)}) e GROUP BY {PROFILE_ID}"


def _joins(have: Tables, plan: Plan) -> tuple[str, dict[str, Flag]]:
    """One row per profile: its id and every column the plan's segments read, except the flags on segments of the
    plan itself (answered apart: they are read from the codes the same statement computes)."""
    kinds: dict[type, dict[str, Column]] = defaultdict(dict)
    fresh: dict[str, Flag] = {}
    inner: dict[str, Flag] = {}
    own = {segment_id for segment_id, _ in plan.segments}
    for alias, col in plan.columns.items():
        if isinstance(col, Flag) and col.source.kind == "segment" and col.source.ref in own:
            inner[alias] = col
        elif isinstance(col, Flag) and col.source.kind == "segment" and col.source.ref in have.fresh:
            fresh[alias] = col
        else:
            kinds[type(col)][alias] = col
    joins: list[str] = []
    joins += _attributes(have, kinds[Attribute])  # type: ignore[arg-type]
    joins += _fresh_flags(have, fresh)
    joins += _payloads(have, plan, kinds[Payload])  # type: ignore[arg-type]
    if kinds[EventCount]:
        joins.append(_events(have, kinds[EventCount]))  # type: ignore[arg-type]
    joined = "".join(f" LEFT JOIN ({j}) j{n} USING ({PROFILE_ID})" for n, j in enumerate(joins))
    return f"SELECT * FROM ({_profiles(have, plan, kinds[Flag])}) i{joined}", inner  # type: ignore[arg-type]


def query(have: Tables, plan: Plan) -> str:
    """One row per profile: its id and one boolean column ``s{n}`` per segment of the plan (a plan whose segments
    read none of its own segments: :func:`combine` puts those in one plan, that :func:`result_sql` evaluates)."""
    joined, inner = _joins(have, plan)
    if inner:
        raise ValueError("a plan whose segments read its own segments is evaluated by result_sql")
    segs = ", ".join(f"{sql} AS s{n}" for n, (_, sql) in enumerate(plan.segments))
    return f"SELECT {PROFILE_ID}, {segs} FROM ({joined}) j"


_NAMES = re.compile(r'"(__ah_[a-z]+\d+)"|\$([A-Za-z_]\w*)')
"""The column aliases (quoted) and parameters that a plan's SQL names."""


def _rename(sql: str, names: dict[str, str]) -> str:
    return _NAMES.sub(lambda m: names.get(m[0], m[0]), sql)


def combine(plans: list[Plan]) -> list[Plan]:
    """The plans of a job's dependency levels as one plan, their segments in order: one statement then evaluates
    every level, a later level reading the statuses an earlier level's segments get in the same pass (instead of
    computing the merged attributes and the membership bitmask again per level). Columns and parameters the levels
    share are computed and bound once; the others are renamed apart."""
    if len(plans) <= 1:
        return list(plans)
    out = Plan(plans[0].now)
    for plan in plans:
        if plan.now != out.now:
            raise ValueError(f"the plans of one evaluation share one now: {plan.now} is not {out.now}")
        names: dict[str, str] = {}
        for name, value in plan.params.items():
            if name == "now":
                out.params.setdefault("now", value)
                names["$now"] = "$now"
            else:
                names[f"${name}"] = out.param(value)

        for alias, col in plan.columns.items():
            if isinstance(col, EventCount) and col.condition is not None:
                col = EventCount(_rename(col.condition, names), col.fields)
            prefix = alias.removeprefix("__ah_").rstrip("0123456789")
            names[ident(alias)] = ident(out.column(prefix, col))
        out.segments += [(segment_id, _rename(sql, names)) for segment_id, sql in plan.segments]
    return [out]


def used(sql: str, params: dict[str, object]) -> dict[str, object]:
    """The parameters that ``sql`` names (DuckDB refuses a parameter that the statement does not use)."""
    names = set(re.findall(r"\$([A-Za-z_]\w*)", sql))
    return {k: v for k, v in params.items() if k in names}


# ----- results: one table per plan and job (profile/segment_codes.py: how it holds the codes) -------------------------

LIVE = "__ah_live"


def _fresh_flags(have: Tables, flags: dict[str, Flag]) -> list[str]:
    """Flags on segments evaluated earlier in this job: read from that plan's result table, one join per table."""
    by_table: dict[str, list[str]] = defaultdict(list)
    for alias, f in flags.items():
        st = have.fresh[f.source.ref]
        wanted = ", ".join(str(CODES[s]) for s in f.statuses)
        by_table[st.tbl].append(f"coalesce({code_of(st)} & 3 IN ({wanted}), false) AS {ident(alias)}")
    return [f"SELECT {PROFILE_ID}, {', '.join(cols)} FROM {have.ref(tbl)}" for tbl, cols in by_table.items()]


def _status(k: int, member: str, st: Stored | None, ttl_days: int, now: dt.datetime, stamps: Stamps) -> str:
    """The new code of segment ``k`` (position in the plan) from ``member`` (SQL; NULL is false) and the old code
    ``o{k}``."""
    entered = code(stamps.now, REALIZED)
    if st is None:
        return f"CASE WHEN {member} THEN {entered} END"
    was = f"((o{k} & 3) < {EXITED})"  # realized or existing: a code's status is never 0
    if st.at < now - dt.timedelta(days=ttl_days):  # every member of that evaluation qualified at st.at: all expired
        gone = stamps.add(st.job_id, st.at + dt.timedelta(days=ttl_days))
        return f"CASE WHEN {member} THEN {entered} WHEN {was} THEN {code(gone, EXITED)} ELSE o{k} END"
    # Arithmetic, not a nested CASE (a hundred of them per row): realized + 1 is existing.
    assert EXISTING == REALIZED + 1
    return (
        f"CASE WHEN {member} THEN {entered} + coalesce(CAST({was} AS INTEGER), 0) "
        f"WHEN {was} THEN {code(stamps.now, EXITED)} ELSE o{k} END"
    )


def result_sql(have: Tables, plan: Plan, n: int, stamps: Stamps, ttl_days: dict[str, int], bits: int = 0) -> str:
    """The plan's result table (:func:`result_table`) as one SELECT: the profile key, then the codes of the plan's
    segments in the layout ``bits`` (:attr:`Stored.bits`), sorted by profile; profiles that are and were in none of
    its segments are left out.

    Segments that read segments of the same plan (:func:`combine`) are computed in a later layer of the statement
    than those: a flag on a segment of the plan is its new code's status.

    Packed, a word whose segments' old codes are the same word of one old table (the same segments in the same
    places: a job that evaluates what the last one did) is computed as a word (:func:`new_word`), not code by code."""
    joined, inner = _joins(have, plan)  # first: it may bind more of the plan's parameters
    position = {segment_id: k for k, (segment_id, _) in enumerate(plan.segments)}
    count = len(plan.segments)
    # Layers: a segment's codes are computed after the codes of every segment of the plan it reads.
    level: dict[int, int] = {}
    reads: dict[int, list[str]] = {}
    for k, (_, member) in enumerate(plan.segments):
        reads[k] = [alias for alias in inner if ident(alias) in member]
        level[k] = 1 + max((level[position[inner[a].source.ref]] for a in reads[k]), default=-1)

    def expired(segment_id: str, st: Stored) -> bool:  # every member of that evaluation qualified at st.at
        return st.at < plan.now - dt.timedelta(days=ttl_days.get(segment_id, NO_TTL))

    per = 64 // bits if bits else 1
    places = {j: range(j * per, min(count, (j + 1) * per)) for j in range(-(-count // per))} if bits else {}
    aligned: dict[int, Stored | None] = {}  # word → the old code of its first segment (None: none has one)
    for j, ks in places.items():
        olds = [have.results.get(plan.segments[k][0]) for k in ks]
        first = olds[0]
        if len({level[k] for k in ks}) > 1:
            continue
        if first is None and not any(olds):
            aligned[j] = None
        elif first is not None and all(
            st is not None and (st.tbl, st.bits, st.col) == (first.tbl, bits, k) and not expired(segment_id, st)
            for k, st, (segment_id, _) in zip(ks, olds, plan.segments[ks.start : ks.stop], strict=True)
        ):
            aligned[j] = first
    word_of = {k: j for j, ks in places.items() if j in aligned for k in ks}

    # The old codes ``o{k}`` (and old words ``o{m}_{j}``): the columns they are in join the new result, packed words
    # unpacked after the join (a hundred unpacked codes would make the join's hash table four times wider).
    by_table: dict[str, dict[str, str]] = defaultdict(dict)  # table → its column → that column's name here
    unpack: list[str] = []
    old_words: dict[int, str] = {}
    for k, (segment_id, _) in enumerate(plan.segments):
        st = have.results.get(segment_id)
        if st is None:
            continue
        cols = by_table[st.tbl]
        if not st.bits:
            cols[f"c{st.col}"] = f"o{k}"
            continue
        word, place = divmod(st.col, 64 // st.bits)
        name = cols.setdefault(f"b{st.bits}_{word}", f"o{list(by_table).index(st.tbl)}_{word}")
        if k in word_of:
            old_words[word_of[k]] = name
        else:
            unpack.append(f"nullif({unpacked(name, place, st.bits)}, 0) AS o{k}")
    olds_sql = "".join(
        f" FULL JOIN (SELECT {PROFILE_ID}, {', '.join(f'{c} AS {a}' for c, a in cols.items())} FROM {have.ref(t)}) "
        f"o{m} USING ({PROFILE_ID})"
        for m, (t, cols) in enumerate(by_table.items())
    )
    live = ""
    if olds_sql:  # a profile that only a past result holds (merged away since): in no segment now
        joined = f"SELECT *, true AS {LIVE} FROM ({joined}) e"
        live = f" AND {LIVE} IS NOT NULL"
    sql = f"SELECT * FROM ({joined}) n{olds_sql}"
    if unpack:
        sql = f"SELECT *, {', '.join(unpack)} FROM ({sql}) u"

    def status(k: int) -> str:  # the new status of segment k, once its layer is computed
        if k in word_of:
            return f"((w{word_of[k]} >> {(k % per) * bits}) & 3)"
        return f"(c{k} & 3)"

    defined: set[str] = set()
    for layer in range(max(level.values(), default=-1) + 1):
        flags = {a for k in level if level[k] == layer for a in reads[k]} - defined
        if flags:
            read = []
            for alias in sorted(flags):
                f = inner[alias]
                wanted = ", ".join(str(CODES[s]) for s in f.statuses)
                read.append(f"coalesce({status(position[f.source.ref])} IN ({wanted}), false) AS {ident(alias)}")
            sql = f"SELECT *, {', '.join(read)} FROM ({sql}) f{layer}"
            defined |= flags
        codes = []
        for k, (segment_id, member) in enumerate(plan.segments):
            if level[k] == layer and k not in word_of:
                ttl = ttl_days.get(segment_id, NO_TTL)
                code = _status(k, f"({member}{live})", have.results.get(segment_id), ttl, plan.now, stamps)
                codes.append(f"CAST({code} AS INTEGER) AS c{k}")
        words = [j for j, ks in places.items() if j in aligned and level[ks[0]] == layer]
        if words:
            masks = []
            for j in words:
                members = [f"({plan.segments[k][1]}{live})" for k in places[j]]
                masks += new_word_masks(j, members, old_words.get(j), bits)
            sql = f"SELECT *, {', '.join(masks)} FROM ({sql}) m{layer}"
            codes += [f"{new_word(j, len(places[j]), j in old_words, bits, stamps.now)} AS w{j}" for j in words]
        if codes:
            sql = f"SELECT *, {', '.join(codes)} FROM ({sql}) l{layer}"
    every = [f"c{k}" for k in range(count)]
    if not bits:
        return (
            f"SELECT {PROFILE_ID}, {', '.join(every)} FROM ({sql}) r WHERE coalesce({', '.join(every)}) IS NOT NULL "
            f"ORDER BY {PROFILE_ID}"
        )
    names = word_columns(count, bits)
    out = [f"w{j}" if j in aligned else packed([every[k] for k in ks], bits)[0] for j, ks in places.items()]
    return (
        f"SELECT * FROM (SELECT {PROFILE_ID}, {', '.join(f'{w} AS {c}' for w, c in zip(out, names, strict=True))} "
        f"FROM ({sql}) r) p WHERE ({' | '.join(names)}) <> 0 ORDER BY {PROFILE_ID}"
    )


def counts_sql(result: str, plan: Plan, stamps: Stamps, bits: int = 0) -> str:
    """One row: for each segment of the plan, how many of the result's (SQL of its rows, of layout ``bits``) codes
    are realized, existing and exited by this evaluation."""
    aggs = ", ".join(
        f"count_if({code_field(k, bits)} = {code(stamps.now, status)})"
        for k in range(len(plan.segments))
        for status in (REALIZED, EXISTING, EXITED)
    )
    return f"SELECT {aggs} FROM {result}"


def record(
    have: Tables, plan: Plan, tbl: str, stamps: Stamps, row: tuple[object, ...] | list[object], bits: int = 0
) -> dict[str, SegmentCounts]:
    """The plan's counts from :func:`counts_sql`'s row; its segments' results become readable by later plans."""
    counts = {}
    for k, (segment_id, _) in enumerate(plan.segments):
        values = row[3 * k : 3 * k + 3]
        counts[segment_id] = SegmentCounts(*(int(v or 0) for v in values))  # type: ignore[call-overload]
        have.fresh[segment_id] = Stored(tbl, k, stamps.now, stamps.job_id, stamps.at, bits)
    return counts


def build(
    cur: duckdb.DuckDBPyConnection,
    have: Tables,
    plan: Plan,
    n: int,
    stamps: Stamps,
    ttl_days: dict[str, int],
) -> dict[str, SegmentCounts]:
    """Evaluates the plan and writes its result table (not yet visible to readers: see :func:`publish`)."""
    tbl = result_table(stamps.job_id, n)
    # The words are stored uncompressed: analysing them for bit-packing and RLE took longer than writing them did.
    bits = code_bits(stamps, len(plan.segments))
    words = "".join(f", {w} BIGINT USING COMPRESSION uncompressed" for w in word_columns(len(plan.segments), bits))
    cur.execute(f"CREATE OR REPLACE TABLE {ident(tbl)} ({PROFILE_ID} {have.key_type} NOT NULL{words})")
    sql = f"INSERT INTO {ident(tbl)} {result_sql(have, plan, n, stamps, ttl_days, bits)}"
    cur.execute(sql, used(sql, plan.params))
    row = cur.execute(counts_sql(ident(tbl), plan, stamps, bits)).fetchone()
    assert row is not None
    return record(have, plan, tbl, stamps, row, bits)  # count_if of no rows: NULL


def drop_relation(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drops the table or view ``name`` if there is one (DuckDB's DROP names the kind)."""
    for kind, listing in (("VIEW", "duckdb_views()"), ("TABLE", "duckdb_tables()")):
        found = cur.execute(
            f"SELECT 1 FROM {listing} WHERE database_name <> 'temp' AND {kind.lower()}_name = ?", [name]
        ).fetchone()
        if found:
            cur.execute(f"DROP {kind} {ident(name)}")


def publish(cur: duckdb.DuckDBPyConnection, have: Tables, stamps: Stamps, ttl_days: dict[str, int]) -> None:
    """Makes the job's results the segments' memberships (in the caller's transaction), then drops result tables
    that no segment reads any more."""
    cur.executemany("INSERT INTO segment_stamps VALUES (?, ?, ?)", [[no, *v] for no, v in stamps.added.items()])
    base_tables = {str(r[0]) for r in cur.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    for segment_id, st in have.fresh.items():
        name = table_for(segment_id)
        if name in base_tables:  # written by an earlier version of the store, as a table of its own
            cur.execute(f"DROP TABLE {ident(name)}")
        cur.execute(f"CREATE OR REPLACE VIEW {ident(name)} AS {view(st)}")
    if have.fresh:  # one statement per registry, however many segments
        ids = list(have.fresh)
        cur.execute(
            "INSERT INTO audiences SELECT unnest($ids), $ns, unnest($ttl), unnest($tbl) ON CONFLICT (audience_id) "
            "DO UPDATE SET namespace = excluded.namespace, ttl_days = excluded.ttl_days, tbl = excluded.tbl",
            {
                "ids": ids,
                "ns": SEGMENT_NAMESPACE,
                "ttl": [ttl_days.get(i, NO_TTL) for i in ids],
                "tbl": [table_for(i) for i in ids],
            },
        )
        cur.execute(
            "INSERT INTO segment_results SELECT unnest($ids), unnest($tbl), unnest($col), unnest($stamp) "
            "ON CONFLICT (segment_id) DO UPDATE SET tbl = excluded.tbl, col = excluded.col, stamp = excluded.stamp",
            {
                "ids": ids,
                "tbl": [have.fresh[i].tbl for i in ids],
                "col": [have.fresh[i].col for i in ids],
                "stamp": [have.fresh[i].stamp for i in ids],
            },
        )
    collect(cur)


def collect(cur: duckdb.DuckDBPyConnection) -> None:
    """Drops the result tables that no segment reads (replaced, or left by a job that crashed before publishing)."""
    for (tbl,) in cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name <> 'temp' AND starts_with(table_name, ?) "
        "AND table_name NOT IN (SELECT tbl FROM segment_results)",
        [RESULT_PREFIX],
    ).fetchall():
        cur.execute(f"DROP TABLE {ident(str(tbl))}")
