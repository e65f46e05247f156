"""The SQL of the lake profile store: portable SELECTs (DuckDB dialect that sqlglot writes as Spark SQL) over
``read_parquet([...])`` of a version's files, run by an engine session (writes) or by DuckDB (reads).

Nothing here is DuckDB-only: no QUALIFY, EXCLUDE/REPLACE, DISTINCT ON, UPDATE or DELETE; profile ids are
text (``uuid()``), timestamps are literals computed by the caller. Tables and their columns:
- ``identities`` (and the same rows sorted by profile: ``identities_by_profile``): ns, id, profile_id;
- ``m_{audience id hex}``: the embedded store's membership table (``profile/columns.MEMBER_COLUMNS`` then the
  payload under the field names), profile id as text;
- ``applied_runs``: run_id, audience_id, applied_at, result (the ApplyResult as JSON).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from audiencehub.domain.audiences import FieldType
from audiencehub.engines.ingest_sql import INTERNAL, SQL_TYPE, ident, lit, path_list
from audiencehub.profile.base import AudienceRows
from audiencehub.profile.columns import (
    BATCH,
    DELETE,
    ENTITY_ID,
    ENTITY_NS,
    FILE,
    ID,
    IDS,
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
)
from audiencehub.profile.run_rows import accepted_sql, identity_text, identity_unknown
from audiencehub.profile.segment_codes import newest_code

IDENTITIES = "identities"
IDENTITIES_BY_PROFILE = "identities_by_profile"
APPLIED_RUNS = "applied_runs"
IDENTITY_COLUMNS = (("ns", "VARCHAR"), ("id", "VARCHAR"), ("profile_id", "VARCHAR"))
APPLIED_COLUMNS = (
    ("run_id", "VARCHAR"),
    ("audience_id", "VARCHAR"),
    ("applied_at", "TIMESTAMPTZ"),
    ("result", "VARCHAR"),
)
MEMBER_TYPES = ((PROFILE_ID, "VARCHAR"), (STATUS, "VARCHAR"), (QUALIFIED_AT, "TIMESTAMPTZ"), (RUN_ID, "VARCHAR"))
LAST = INTERNAL + "last"


def timestamp(epoch: float) -> str:
    """A TIMESTAMPTZ literal."""
    at = dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(sep=" ")
    return f"CAST({lit(at)} AS TIMESTAMPTZ)"


def relation(files: Sequence[Path], columns: Sequence[tuple[str, str]]) -> str:
    """The table stored in ``files``; with none, an empty relation with these (name, SQL type) columns."""
    if files:
        return f"(SELECT * FROM read_parquet({path_list(files)}))"
    cols = ", ".join(f"CAST(NULL AS {t}) AS {ident(c)}" for c, t in columns)
    return f"(SELECT {cols} WHERE 1 = 0)"


def member_columns(payload: Sequence[tuple[str, FieldType]]) -> list[tuple[str, str]]:
    return [*MEMBER_TYPES, *((name, SQL_TYPE[ftype]) for name, ftype in payload)]


def key_count_sql(rows: AudienceRows) -> str:
    """The run's accepted rows and their distinct keys: equal when no key repeats, and :func:`source_sql` then
    needs no pass that keeps the last row per key (a window that sorts every row with its payload)."""
    return f"SELECT count(*), count(DISTINCT {NS} || chr(1) || {ID}) FROM ({accepted_sql(rows)}) k"


def source_sql(rows: AudienceRows, *, dedupe: bool = True) -> str:
    """The run's accepted rows, the last one per first non-empty identity, with their place (file, row number);
    ``dedupe=False`` when :func:`key_count_sql` found no key twice (every row is then the last of its key)."""
    payload = [ident(name) for name, _ in rows.payload]
    names = ", ".join([NS, ID, DELETE, *(identity_text(n) for n in range(len(rows.identities))), *payload, FILE, RN])
    if not dedupe:
        return f"SELECT {names} FROM ({accepted_sql(rows)}) u"
    return (
        f"SELECT {names} FROM (SELECT *, row_number() OVER (PARTITION BY {NS}, {ID} ORDER BY {FILE} DESC, {RN} DESC) "
        f"AS {LAST} FROM ({accepted_sql(rows)}) u) d WHERE {LAST} = 1"
    )


def resolved_sql(rows: AudienceRows, identities: str, *, dedupe: bool = True) -> str:
    """Each of the run's rows (:func:`source_sql`) with the profile of the first of its identities that is known, or
    a fresh one; a delete row whose identities are all unknown is left out (as the embedded store's ``resolved``).

    Only what the later statements read: the identities as text, the payload, and the row's place only where a later
    identity column may repeat a value (then the first row in place keeps it, and the rows link their identities).
    """
    ids = rows.identities
    place = [FILE, RN] if len(ids) > 1 else []
    payload = [ident(name) for name, _ in rows.payload]
    kept = ", ".join(f"r.{c}" for c in [DELETE, *(identity_text(n) for n in range(len(ids))), *payload, *place])
    joins = " ".join(
        f"LEFT JOIN {identities} j{n} ON j{n}.ns = {lit(col.namespace)} AND j{n}.id = r.{identity_text(n)}"
        for n, col in enumerate(ids)
    )
    found = ", ".join(f"j{n}.profile_id" for n in range(len(ids)))
    unknown = "".join(f", j{n}.profile_id IS NULL AS {identity_unknown(n)}" for n in range(len(ids)))
    return (
        f"SELECT {kept}{unknown}, coalesce({found}) IS NULL AS {NEW}, "
        f"coalesce({found}, CAST(uuid() AS VARCHAR)) AS {PROFILE_ID} "
        f"FROM ({source_sql(rows, dedupe=dedupe)}) r {joins} WHERE NOT (r.{DELETE} AND coalesce({found}) IS NULL)"
    )


def new_identities_sql(rows: AudienceRows, resolved: Path) -> str:
    """The identities the store has not seen, each joined to the profile of the first row (in place) that has it;
    sorted for point lookups. The first identity column holds each value once (a row's key is its first non-empty
    identity, and :func:`source_sql` keeps one row per key): it needs no pass that picks the first row."""
    res = f"read_parquet({path_list([resolved])})"
    new = f"{identity_text(0)} IS NOT NULL AND {identity_unknown(0)} AND NOT {DELETE}"
    parts = [
        f"SELECT {lit(rows.identities[0].namespace)} AS ns, {identity_text(0)} AS id, {PROFILE_ID} AS profile_id "
        f"FROM {res} WHERE {new}"
    ]
    for n, col in enumerate(rows.identities[1:], start=1):
        parts.append(
            f"SELECT ns, id, profile_id FROM (SELECT {lit(col.namespace)} AS ns, {identity_text(n)} AS id, "
            f"{PROFILE_ID} AS profile_id, row_number() OVER (PARTITION BY {identity_text(n)} ORDER BY {FILE}, {RN}) "
            f"AS {LAST} FROM {res} WHERE {identity_text(n)} IS NOT NULL AND {identity_unknown(n)} AND NOT {DELETE}) "
            f"x{n} WHERE {LAST} = 1"
        )
    return f"SELECT ns, id, profile_id FROM ({' UNION ALL '.join(parts)}) n ORDER BY ns, id"


def status_sql(cutoff: str, alias: str = "") -> str:
    """A membership's status as read now: realized or existing past the ttl (``cutoff``: now - ttl) reads exited."""
    status, at = alias + STATUS, alias + QUALIFIED_AT
    return f"CASE WHEN {status} IN ('realized', 'existing') AND {at} < {cutoff} THEN 'exited' ELSE {status} END"


def effective_sql(members: str, payload: Sequence[str], cutoff: str, ttl_days: int) -> str:
    """The membership table as read now (the embedded store's ``columns.effective``)."""
    expired = f"({STATUS} IN ('realized', 'existing') AND {QUALIFIED_AT} < {cutoff})"
    cols = "".join(f", {ident(p)}" for p in payload)
    return (
        f"SELECT {PROFILE_ID}, CASE WHEN {expired} THEN 'exited' ELSE {STATUS} END AS {STATUS}, "
        f"CASE WHEN {expired} THEN {QUALIFIED_AT} + INTERVAL {int(ttl_days)} DAY ELSE {QUALIFIED_AT} END "
        f"AS {QUALIFIED_AT}, {RUN_ID}{cols} FROM {members} e"
    )


def counts_sql(resolved: Path, members: str, cutoff: str, *, replace: bool) -> str:
    """In one statement: the run's rows, those that are not deletes, those of a new profile, the delete rows that exit
    a member realized now, and (a full run) the members realized now that the run does not name."""
    res = f"read_parquet({path_list([resolved])})"
    replaced = (
        f"(SELECT count(*) FROM {members} o WHERE {status_sql(cutoff, 'o.')} = 'realized' AND NOT EXISTS "
        f"(SELECT 1 FROM {res} r WHERE r.{PROFILE_ID} = o.{PROFILE_ID}))"
        if replace
        else "0"
    )
    return (
        f"SELECT (SELECT count(*) FROM {res} a), (SELECT count(*) FROM {res} b WHERE NOT {DELETE}), "
        f"(SELECT count(*) FROM {res} c WHERE {NEW}), "
        f"(SELECT count(*) FROM {res} r JOIN {members} p ON p.{PROFILE_ID} = r.{PROFILE_ID} "
        f"WHERE r.{DELETE} AND {status_sql(cutoff, 'p.')} = 'realized'), {replaced}"
    )


def members_sql(
    resolved: Path, members: str, payload: Sequence[str], cutoff: str, *, at: str, run_id: str, replace: bool
) -> str:
    """The audience's membership table after the run: its rows' members (re)qualified or exited, the others kept
    (a full run exits those realized now), sorted by profile for point lookups."""
    res = f"read_parquet({path_list([resolved])})"
    cols = "".join(f", o.{ident(p)}" for p in payload)
    new_cols = "".join(f", r.{ident(p)}" for p in payload)
    if replace:
        gone = f"{status_sql(cutoff, 'o.')} = 'realized'"
        kept = (
            f"SELECT o.{PROFILE_ID}, CASE WHEN {gone} THEN 'exited' ELSE o.{STATUS} END AS {STATUS}, "
            f"CASE WHEN {gone} THEN {at} ELSE o.{QUALIFIED_AT} END AS {QUALIFIED_AT}, "
            f"CASE WHEN {gone} THEN {lit(run_id)} ELSE o.{RUN_ID} END AS {RUN_ID}{cols}"
        )
    else:
        kept = f"SELECT o.{PROFILE_ID}, o.{STATUS}, o.{QUALIFIED_AT}, o.{RUN_ID}{cols}"
    return (
        f"SELECT * FROM ({kept} FROM {members} o WHERE NOT EXISTS "
        f"(SELECT 1 FROM {res} r WHERE r.{PROFILE_ID} = o.{PROFILE_ID}) "
        f"UNION ALL SELECT r.{PROFILE_ID}, CASE WHEN r.{DELETE} THEN 'exited' ELSE 'realized' END AS {STATUS}, "
        f"{at} AS {QUALIFIED_AT}, {lit(run_id)} AS {RUN_ID}{new_cols} FROM {res} r WHERE NOT r.{DELETE} OR EXISTS "
        f"(SELECT 1 FROM {members} o WHERE o.{PROFILE_ID} = r.{PROFILE_ID})) t ORDER BY {PROFILE_ID}"
    )


def applied_sql(run_id: str, audience_id: str, at: str, result: str) -> str:
    return (
        f"SELECT {lit(run_id)} AS run_id, {lit(audience_id)} AS audience_id, {at} AS applied_at, "
        f"{lit(result)} AS result"
    )


# ----- identities in one row link (the embedded store's profile/graph.stitch over a run's rows) -----


def rid_sql(rows: AudienceRows, resolved: Path) -> str:
    """The identities of each row that is not a delete: (row node, ns, id)."""
    node = f"'r:' || CAST({FILE} AS VARCHAR) || ':' || CAST({RN} AS VARCHAR)"
    parts = [
        f"SELECT {node} AS r, {lit(col.namespace)} AS ns, {identity_text(n)} AS id "
        f"FROM read_parquet({path_list([resolved])}) WHERE NOT {DELETE} AND {identity_text(n)} IS NOT NULL"
        for n, col in enumerate(rows.identities)
    ]
    return f"SELECT DISTINCT r, ns, id FROM ({' UNION ALL '.join(parts)}) x"


def tangled_sql(rid: Path, identities: str) -> str:
    """How many rows link two profiles plus how many identities are in two rows: 0 means nothing to merge."""
    rids = f"read_parquet({path_list([rid])})"
    known = f"SELECT DISTINCT x.r, i.profile_id FROM {rids} x JOIN {identities} i ON i.ns = x.ns AND i.id = x.id"
    return (
        f"SELECT (SELECT count(*) FROM (SELECT r FROM ({known}) k GROUP BY r HAVING count(*) > 1) a) + "
        f"(SELECT count(*) FROM (SELECT ns, id FROM {rids} y GROUP BY ns, id HAVING count(*) > 1) b)"
    )


def edges_sql(rid: Path, identities: str) -> str:
    """The graph: a row links its identities, a known identity links its profile (both ways)."""
    rids = f"read_parquet({path_list([rid])})"
    node_i = "'i:' || x.ns || chr(1) || x.id"
    owned = f"FROM {rids} x JOIN {identities} i ON i.ns = x.ns AND i.id = x.id"
    return (
        f"SELECT x.r AS a, {node_i} AS b FROM {rids} x UNION ALL SELECT {node_i} AS a, x.r AS b FROM {rids} x "
        f"UNION ALL SELECT DISTINCT {node_i} AS a, 'p:' || i.profile_id AS b {owned} "
        f"UNION ALL SELECT DISTINCT 'p:' || i.profile_id AS a, {node_i} AS b {owned}"
    )


def labels_sql(edges: Path) -> str:
    return f"SELECT DISTINCT a AS node, a AS lab FROM read_parquet({path_list([edges])})"


def propagate_sql(labels: Path, edges: Path) -> str:
    """Each node takes the smallest label among its own and its neighbours'."""
    lab = f"read_parquet({path_list([labels])})"
    return (
        f"SELECT l.node, least(l.lab, min(m.lab)) AS lab FROM {lab} l JOIN read_parquet({path_list([edges])}) e "
        f"ON e.a = l.node JOIN {lab} m ON m.node = e.b GROUP BY l.node, l.lab"
    )


def changed_sql(before: Path, after: Path) -> str:
    return (
        f"SELECT count(*) FROM read_parquet({path_list([before])}) l JOIN read_parquet({path_list([after])}) n "
        "ON n.node = l.node WHERE n.lab <> l.lab"
    )


def remap_sql(labels: Path) -> str:
    """(old, new): every profile of a component moves to the component's smallest profile id."""
    lab = f"read_parquet({path_list([labels])})"
    return (
        f"SELECT substr(l.node, 3) AS old, c.keeper AS new FROM {lab} l JOIN (SELECT lab, "
        f"min(CASE WHEN node LIKE 'p:%' THEN substr(node, 3) END) AS keeper FROM {lab} g GROUP BY lab) c "
        "ON c.lab = l.lab WHERE l.node LIKE 'p:%' AND substr(l.node, 3) <> c.keeper"
    )


def remapped_identities_sql(identities: str, remap: Path, *, by_profile: bool) -> str:
    order = "profile_id, ns, id" if by_profile else "ns, id"
    return (
        f"SELECT i.ns, i.id, coalesce(m.new, i.profile_id) AS profile_id FROM {identities} i "
        f"LEFT JOIN read_parquet({path_list([remap])}) m ON m.old = i.profile_id ORDER BY {order}"
    )


def remapped_members_sql(members: str, columns: Sequence[str], remap: Path) -> str:
    """The membership table with merged profiles moved: a member under two of them keeps its newest row."""
    rem = f"read_parquet({path_list([remap])})"
    others = [c for c in columns if c != PROFILE_ID]
    moved = ", ".join(f"t.{ident(c)}" for c in others)
    names = ", ".join(ident(c) for c in columns)
    return (
        f"SELECT {names} FROM (SELECT x.*, row_number() OVER (PARTITION BY x.{PROFILE_ID} ORDER BY "
        f"x.{QUALIFIED_AT} DESC, x.{STATUS}, x.{RUN_ID}) AS {LAST}, k.new AS {INTERNAL}merged FROM "
        f"(SELECT coalesce(m.new, t.{PROFILE_ID}) AS {PROFILE_ID}, {moved} FROM {members} t LEFT JOIN {rem} m "
        f"ON m.old = t.{PROFILE_ID}) x LEFT JOIN (SELECT DISTINCT new FROM {rem} d) k ON k.new = x.{PROFILE_ID}) y "
        f"WHERE {INTERNAL}merged IS NULL OR {LAST} = 1 ORDER BY {PROFILE_ID}"
    )


# ----- fragments of profile-enabled datasets (the embedded store's ``apply_fragments``) -----

FRAGMENT_MEMBERSHIPS = "fragment_memberships"
APPLIED_BATCHES = "applied_batches"
FRAGMENT_MEMBERSHIP_COLUMNS = (
    ("profile_id", "VARCHAR"),
    ("ns", "VARCHAR"),
    ("segment_id", "VARCHAR"),
    ("status", "VARCHAR"),
    ("qualified_at", "TIMESTAMPTZ"),
    ("dataset_id", "VARCHAR"),
    ("received_at", "TIMESTAMPTZ"),
    ("seq", "BIGINT"),
)
APPLIED_BATCH_COLUMNS = (
    ("batch_id", "VARCHAR"),
    ("dataset_id", "VARCHAR"),
    ("applied_at", "TIMESTAMPTZ"),
    ("result", "VARCHAR"),
)


def fragment_columns(kind: str) -> list[tuple[str, str]]:
    """A fragment table's own columns, first in it: the profile id (an entity's ns and id), batch, time, place."""
    key = [(ENTITY_NS, "VARCHAR"), (ENTITY_ID, "VARCHAR")] if kind == "entity" else [(PROFILE_ID, "VARCHAR")]
    return [*key, (BATCH, "VARCHAR"), (TS, "TIMESTAMPTZ"), (SEQ, "BIGINT")]


def records_sql(file: Path, values: Sequence[tuple[str, str]], memberships: bool) -> str:
    """The batch's records (the embedded store's ``rec``): their number in file order, distinct identities, the
    leaves' values (``values``: name, SQL reading it) and, with ``memberships``, their own ``segmentMembership``."""
    cols = "".join(f", {expr} AS {ident(name)}" for name, expr in values)
    if memberships:
        cols += f", {ident(MEMBERSHIP_LEAF)} AS {ident(MEMBERSHIP_LEAF)}"
    return (
        f"SELECT row_number() OVER (ORDER BY {XFILE}, {XRN}) AS r, list_distinct({IDS}) AS ids{cols} "
        f"FROM read_parquet({path_list([file])})"
    )


def record_ids_sql(rec: Path) -> str:
    """The identities of each record: (r, ns, id), distinct."""
    return (
        f"SELECT DISTINCT r, x.ns AS ns, x.id AS id FROM (SELECT r, unnest(ids) AS x "
        f"FROM read_parquet({path_list([rec])})) u"
    )


def record_tangled_sql(rid: Path, identities: str) -> str:
    """How many records link two profiles plus how many identities are in two records: 0 means no walk."""
    rids = f"read_parquet({path_list([rid])})"
    known = f"SELECT DISTINCT x.r, i.profile_id FROM {rids} x JOIN {identities} i ON i.ns = x.ns AND i.id = x.id"
    return (
        f"SELECT (SELECT count(*) FROM (SELECT r FROM ({known}) k GROUP BY r HAVING count(*) > 1) a) + "
        f"(SELECT count(*) FROM (SELECT ns, id FROM {rids} y GROUP BY ns, id HAVING count(*) > 1) b)"
    )


def untangled_sql(rec: Path, rid: Path, identities: str) -> str:
    """Each record's profile when no record links two: its known profile, or a new one (``new``)."""
    known = (
        f"SELECT DISTINCT x.r, i.profile_id FROM read_parquet({path_list([rid])}) x JOIN {identities} i "
        "ON i.ns = x.ns AND i.id = x.id"
    )
    return (
        f"SELECT c.r, coalesce(k.profile_id, CAST(uuid() AS VARCHAR)) AS profile_id, k.profile_id IS NULL AS new "
        f"FROM read_parquet({path_list([rec])}) c LEFT JOIN ({known}) k ON k.r = c.r"
    )


def record_nodes_sql(rid: Path) -> str:
    """The records' identities with the record as a graph node (``r:{n}``), for :func:`edges_sql`."""
    return f"SELECT 'r:' || CAST(r AS VARCHAR) AS r, ns, id FROM read_parquet({path_list([rid])}) x"


def components_sql(labels: Path) -> str:
    """Each connected component: its profile (the smallest existing profile id, or a new one), whether it is new,
    and how many existing profiles it joins."""
    return (
        "SELECT lab, coalesce(keeper, CAST(uuid() AS VARCHAR)) AS keeper, keeper IS NULL AS new, profiles FROM "
        "(SELECT lab, min(CASE WHEN node LIKE 'p:%' THEN substr(node, 3) END) AS keeper, "
        f"count(CASE WHEN node LIKE 'p:%' THEN 1 END) AS profiles FROM read_parquet({path_list([labels])}) l "
        "GROUP BY lab) c"
    )


def component_counts_sql(comp: Path) -> str:
    """(new profiles, profiles merged into another)."""
    return (
        "SELECT count(CASE WHEN new THEN 1 END), sum(CASE WHEN profiles > 1 THEN profiles - 1 ELSE 0 END) "
        f"FROM read_parquet({path_list([comp])}) c"
    )


def record_profiles_sql(labels: Path, comp: Path) -> str:
    """Each record (``r``) and its component's profile."""
    return (
        "SELECT CAST(substr(l.node, 3) AS BIGINT) AS r, c.keeper AS profile_id, c.new AS new "
        f"FROM read_parquet({path_list([labels])}) l JOIN read_parquet({path_list([comp])}) c ON c.lab = l.lab "
        "WHERE l.node LIKE 'r:%'"
    )


def record_new_identities_sql(rid: Path, rec_profile: Path, identities: str) -> str:
    """The identities the store has not seen, each to the profile of the first record that has it; sorted."""
    return (
        "SELECT ns, id, profile_id FROM (SELECT x.ns, x.id, p.profile_id, row_number() OVER (PARTITION BY x.ns, x.id "
        f"ORDER BY x.r) AS {LAST} FROM read_parquet({path_list([rid])}) x "
        f"JOIN read_parquet({path_list([rec_profile])}) p ON p.r = x.r WHERE NOT EXISTS "
        f"(SELECT 1 FROM {identities} i WHERE i.ns = x.ns AND i.id = x.id)) n WHERE {LAST} = 1 ORDER BY ns, id"
    )


def profile_fragments_sql(
    rec: Path, rec_profile: Path, columns: Sequence[tuple[str, str]], values: set[str], batch_id: str, at: str
) -> str:
    """The batch's fragment rows in the table's column order (a leaf the batch lacks is NULL), sorted by profile."""
    cols = [f"p.profile_id AS {PROFILE_ID}", f"{lit(batch_id)} AS {BATCH}", f"{at} AS {TS}", f"c.r AS {SEQ}"]
    cols += [_leaf(name, sql_type, values, "c.") for name, sql_type in columns[4:]]
    return (
        f"SELECT {', '.join(cols)} FROM read_parquet({path_list([rec])}) c "
        f"JOIN read_parquet({path_list([rec_profile])}) p ON p.r = c.r ORDER BY {PROFILE_ID}, {SEQ}"
    )


def entity_fragments_sql(
    rec: Path, columns: Sequence[tuple[str, str]], values: set[str], batch_id: str, at: str
) -> str:
    """Non-people records keyed by their primary identity (else their first), never stitched."""
    cols = [f"c.p.ns AS {ENTITY_NS}", f"c.p.id AS {ENTITY_ID}", f"{lit(batch_id)} AS {BATCH}", f"{at} AS {TS}"]
    cols += [f"c.r AS {SEQ}", *(_leaf(name, sql_type, values, "c.") for name, sql_type in columns[5:])]
    keyed = (
        'SELECT *, coalesce(list_filter(ids, lambda x: x."primary")[1], ids[1]) AS p '
        f"FROM read_parquet({path_list([rec])}) e"
    )
    return f"SELECT {', '.join(cols)} FROM ({keyed}) c WHERE c.p IS NOT NULL ORDER BY {ENTITY_NS}, {ENTITY_ID}, {SEQ}"


def _leaf(name: str, sql_type: str, values: set[str], alias: str) -> str:
    value = f"{alias}{ident(name)}" if name in values else "NULL"
    return f"CAST({value} AS {sql_type}) AS {ident(name)}"


def widened_sql(table: str, columns: Sequence[tuple[str, str]], added: Sequence[tuple[str, str]]) -> str:
    """The table with NULL columns added (a schema gained fields), so that all its files have one schema."""
    have = ", ".join(f"t.{ident(c)}" for c, _ in columns)
    more = "".join(f", CAST(NULL AS {ty}) AS {ident(c)}" for c, ty in added)
    return f"SELECT {have}{more} FROM {table} t"


def record_memberships_sql(rec: Path, rec_profile: Path, at: str, dataset_id: str) -> str:
    """Records' own ``segmentMembership`` (namespace → segment id → {status, lastQualificationTime}): one row each."""
    inner = (
        f"SELECT p.profile_id, c.r, unnest(map_entries(c.{ident(MEMBERSHIP_LEAF)})) AS nse "
        f"FROM read_parquet({path_list([rec])}) c JOIN read_parquet({path_list([rec_profile])}) p ON p.r = c.r"
    )
    return (
        "SELECT profile_id, ns, se.key AS segment_id, se.value.status AS status, "
        f"coalesce(se.value.lastQualificationTime, {at}) AS qualified_at, {lit(dataset_id)} AS dataset_id, "
        f"{at} AS received_at, r AS seq FROM (SELECT profile_id, r, nse.key AS ns, unnest(map_entries(nse.value)) "
        f"AS se FROM ({inner}) a) b ORDER BY profile_id"
    )


def applied_batch_sql(batch_id: str, dataset_id: str, at: str, result: str) -> str:
    return (
        f"SELECT {lit(batch_id)} AS batch_id, {lit(dataset_id)} AS dataset_id, {at} AS applied_at, "
        f"{lit(result)} AS result"
    )


def remapped_results_sql(table: str, width: int, remap: Path) -> str:
    """A segment result table (``profile/segments.py``: the profile id, then ``c0``... codes) with merged profiles
    moved and folded into one row each: per segment the newest status (``segment_codes.newest_code``)."""
    codes = ", ".join(f"max_by(c{k}, {newest_code(f'c{k}')}) AS c{k}" for k in range(width))
    kept = "".join(f", t.c{k}" for k in range(width))
    moved = f"SELECT coalesce(m.new, t.{PROFILE_ID}) AS {PROFILE_ID}{kept} FROM {table} t "
    moved += f"LEFT JOIN read_parquet({path_list([remap])}) m ON m.old = t.{PROFILE_ID}"
    return f"SELECT {PROFILE_ID}, {codes} FROM ({moved}) x GROUP BY {PROFILE_ID} ORDER BY {PROFILE_ID}"


def remapped_sql(table: str, columns: Sequence[str], key: str, remap: Path) -> str:
    """A table whose ``key`` column holds profile ids, with merged profiles moved (rows kept, as UPDATE keeps them)."""
    cols = ", ".join(f"coalesce(m.new, t.{ident(c)}) AS {ident(c)}" if c == key else f"t.{ident(c)}" for c in columns)
    return (
        f"SELECT {cols} FROM {table} t LEFT JOIN read_parquet({path_list([remap])}) m ON m.old = t.{ident(key)} "
        f"ORDER BY {ident(key)}"
    )
