"""The identity graph of the embedded profile store, resolved in SQL over a batch's records.

The caller's transaction holds a temp table ``rec`` (``r``: the record's number, ``ids``: its identities as
{ns, id, primary}); :func:`stitch` leaves ``rec_profile`` (``r`` → ``profile_id``) and has added the new
identities to ``identities``, merging profiles that a record links in every table that holds profile ids.
"""

from __future__ import annotations

import duckdb

from audiencehub.engines.ingest_sql import ident
from audiencehub.profile.base import FragmentResult
from audiencehub.profile.columns import PROFILE_ID, QUALIFIED_AT
from audiencehub.profile.segment_codes import RESULT_PREFIX, newest_codes

TEMP_TABLES = ("rec", "rid", "known", "edges", "labels", "comp", "rec_profile", "remap")
"""The temp tables a stitch leaves behind; the caller drops them before its next batch."""


def stitch(cur: duckdb.DuckDBPyConnection, result: FragmentResult) -> None:
    """Links the identities of each record of ``rec`` and resolves every record to one profile.

    The graph's nodes are records, identities and the profiles those identities already belong to;
    a record links its identities, a known identity links its profile. Each connected component
    (labels propagated to the smallest until nothing changes) is one profile: the smallest existing
    profile id of the component, or a new one. Other existing profiles of the component merge into it.
    """
    cur.execute(
        "CREATE TEMP TABLE rid AS SELECT DISTINCT r, x.ns AS ns, x.id AS id FROM (SELECT r, unnest(ids) AS x FROM rec)"
    )
    cur.execute(
        "CREATE TEMP TABLE known AS SELECT DISTINCT rid.r, i.profile_id FROM rid "
        "JOIN identities i ON i.ns = rid.ns AND i.id = rid.id"
    )
    tangled = cur.execute(
        "SELECT (SELECT count(*) FROM (SELECT r FROM known GROUP BY r HAVING count(*) > 1)) + "
        "(SELECT count(*) FROM (SELECT ns, id FROM rid GROUP BY ns, id HAVING count(*) > 1))"
    ).fetchone()
    if not tangled or not tangled[0]:
        # No record links two profiles and no identity is in two records: each record is its known profile
        # or a new one, and the graph needs no walk (the usual case, and the one bulk loads take).
        cur.execute(
            "CREATE TEMP TABLE rec_profile AS SELECT rec.r, coalesce(k.profile_id, uuidv7()) AS "
            "profile_id, k.profile_id IS NULL AS new FROM rec LEFT JOIN known k USING (r)"
        )
        row = cur.execute("SELECT count(*) FILTER (WHERE new) FROM rec_profile").fetchone()
        result.profilesCreated = int(row[0]) if row else 0
    else:
        _components(cur, result)
    added = cur.execute(
        "INSERT INTO identities SELECT DISTINCT ON (rid.ns, rid.id) rid.ns, rid.id, rp.profile_id FROM rid "
        "JOIN rec_profile rp USING (r) ANTI JOIN identities i ON i.ns = rid.ns AND i.id = rid.id "
        "ORDER BY rid.ns, rid.id, rid.r"
    ).fetchone()
    result.identitiesAdded = int(added[0]) if added else 0


def _components(cur: duckdb.DuckDBPyConnection, result: FragmentResult) -> None:
    """The general case of :meth:`_stitch`: connected components by label propagation, then merges."""
    node_i = "'i:' || rid.ns || chr(1) || rid.id"
    cur.execute(
        f"CREATE TEMP TABLE edges AS SELECT 'r:' || r AS a, {node_i} AS b FROM rid "
        f"UNION ALL SELECT {node_i}, 'r:' || r FROM rid "
        f"UNION ALL SELECT DISTINCT {node_i}, 'p:' || CAST(i.profile_id AS VARCHAR) FROM rid "
        "JOIN identities i ON i.ns = rid.ns AND i.id = rid.id "
        f"UNION ALL SELECT DISTINCT 'p:' || CAST(i.profile_id AS VARCHAR), {node_i} FROM rid "
        "JOIN identities i ON i.ns = rid.ns AND i.id = rid.id"
    )
    cur.execute("CREATE TEMP TABLE labels AS SELECT DISTINCT a AS node, a AS lab FROM edges")
    while True:
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE labels2 AS SELECT l.node, least(l.lab, min(m.lab)) AS lab "
            "FROM labels l JOIN edges e ON e.a = l.node JOIN labels m ON m.node = e.b GROUP BY l.node, l.lab"
        )
        changed = cur.execute(
            "SELECT count(*) FROM labels l JOIN labels2 n USING (node) WHERE n.lab <> l.lab"
        ).fetchone()
        cur.execute("DROP TABLE labels")
        cur.execute("ALTER TABLE labels2 RENAME TO labels")
        if not changed or not changed[0]:
            break
    cur.execute(
        "CREATE TEMP TABLE comp AS SELECT lab, min(CASE WHEN node LIKE 'p:%' THEN substr(node, 3) END) AS keeper, "
        "count(*) FILTER (WHERE node LIKE 'p:%') AS profiles FROM labels GROUP BY lab"
    )
    row = cur.execute("SELECT count(*) FILTER (WHERE keeper IS NULL), sum(greatest(profiles - 1, 0)) FROM comp")
    counted = row.fetchone()
    result.profilesCreated = int(counted[0] or 0) if counted else 0
    result.profilesMerged = int(counted[1] or 0) if counted else 0
    cur.execute("UPDATE comp SET keeper = CAST(uuidv7() AS VARCHAR) WHERE keeper IS NULL")
    cur.execute(
        "CREATE TEMP TABLE rec_profile AS SELECT CAST(substr(l.node, 3) AS BIGINT) AS r, "
        "CAST(c.keeper AS UUID) AS profile_id FROM labels l JOIN comp c USING (lab) WHERE l.node LIKE 'r:%'"
    )
    if result.profilesMerged:
        cur.execute(
            "CREATE TEMP TABLE remap AS SELECT CAST(substr(l.node, 3) AS UUID) AS old, CAST(c.keeper AS UUID) "
            "AS new FROM labels l JOIN comp c USING (lab) WHERE l.node LIKE 'p:%' AND substr(l.node, 3) <> c.keeper"
        )
        _merge_profiles(cur)


def _merge_profiles(cur: duckdb.DuckDBPyConnection) -> None:
    """Moves everything of the profiles in ``remap`` (old → new) to the profile they merged into."""
    found = cur.execute(
        # Tables only: a segment's membership view (``m_{segment}``) reads its result table, which is moved here.
        "SELECT c.table_name, c.column_name FROM duckdb_columns() c JOIN duckdb_tables() t USING "
        "(database_name, schema_name, table_name) WHERE c.schema_name = 'main' AND c.column_name IN (?, ?) "
        "AND c.database_name <> 'temp'",
        [PROFILE_ID, "profile_id"],
    ).fetchall()
    for tbl, col in ((str(t), str(c)) for t, c in found):
        cur.execute(
            f"UPDATE {ident(tbl)} SET {ident(col)} = remap.new FROM remap WHERE {ident(tbl)}.{ident(col)} = remap.old"
        )
        if tbl.startswith("m_"):
            # A member of the audience under both profiles: the newest qualification stays.
            cur.execute(
                f"DELETE FROM {ident(tbl)} WHERE rowid IN (SELECT rowid FROM (SELECT rowid, row_number() OVER "
                f"(PARTITION BY {PROFILE_ID} ORDER BY {QUALIFIED_AT} DESC) AS n FROM {ident(tbl)} WHERE "
                f"{PROFILE_ID} IN (SELECT new FROM remap)) WHERE n > 1)"
            )
        elif tbl.startswith(RESULT_PREFIX):
            _merge_result_rows(cur, tbl)


def _merge_result_rows(cur: duckdb.DuckDBPyConnection, tbl: str) -> None:
    """One row per profile again in a segment result table (``profile/segments.py``): per segment, the status set by
    the newest evaluation (the higher stamp in the code's upper bits), an active one before an exit of the same."""
    codes = [
        str(r[0])
        for r in cur.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND database_name <> 'temp' "
            "AND column_name <> ? ORDER BY column_index",
            [tbl, PROFILE_ID],
        ).fetchall()
    ]
    newest = ", ".join(newest_codes(codes))
    cur.execute(
        f"CREATE OR REPLACE TEMP TABLE merged_results AS SELECT {PROFILE_ID}, {newest} FROM {ident(tbl)} "
        f"WHERE {PROFILE_ID} IN (SELECT new FROM remap) GROUP BY {PROFILE_ID} HAVING count(*) > 1"
    )
    cur.execute(f"DELETE FROM {ident(tbl)} WHERE {PROFILE_ID} IN (SELECT {PROFILE_ID} FROM merged_results)")
    cur.execute(f"INSERT INTO {ident(tbl)} BY NAME SELECT * FROM merged_results")
    cur.execute("DROP TABLE merged_results")
