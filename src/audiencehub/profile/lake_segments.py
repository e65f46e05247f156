"""Segment evaluation in the lake profile store: the embedded store's builders (``profile/segments.py``) over a
version's Parquet files, run by the write's engine session (DuckDB or Spark).

The builders read tables through :attr:`segments.Tables.ref`; here a name becomes ``read_parquet([...])`` of the
files the version being written names. Per plan, the builders' result table (``seg_{job}_{n}``: the profile key and,
per segment, a code holding its status and stamp) is a table of the version, as in the embedded store: later plans
of the job and the segments' next evaluation read it. Each segment's memberships are also written as a table in the
external audiences' shape (``m_{segment hex}``: profile id, status, qualified at, run id; sorted by profile id),
registered in the manifest as an audience of namespace ``ups`` with the segment's ttl and where its codes are, so
that lookups, member pages, counts and snapshots read segments as they read audiences. The stamps (number → job,
time) and each job's counts are tables of the version (``segment_stamps``, ``applied_jobs``); the whole job commits as
one version, or not at all.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from audiencehub.domain.segments import SEGMENT_NAMESPACE, Plan, SegmentCounts
from audiencehub.engines.ingest_sql import lit, path_list
from audiencehub.profile import lake_sql as q
from audiencehub.profile import segment_codes, segments
from audiencehub.profile.columns import MEMBER_COLUMNS, PROFILE_ID, table_for

if TYPE_CHECKING:
    from audiencehub.profile.lake_work import Work

STAMPS = "segment_stamps"
STAMP_COLUMNS = (("no", "BIGINT"), ("job_id", "VARCHAR"), ("stamped_at", "TIMESTAMPTZ"))
APPLIED_JOBS = "applied_jobs"
JOB_COLUMNS = (("job_id", "VARCHAR"), ("applied_at", "TIMESTAMPTZ"), ("result", "VARCHAR"))
COMPACT_AT = 8


def literal(value: Any) -> str:
    """``value`` as the SQL literal of the type DuckDB binds it to (the engine session takes no parameters)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return f"CAST({value} AS BIGINT)"
    if isinstance(value, float):
        return f"CAST({lit(repr(value))} AS DOUBLE)"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return f"CAST({lit(value.isoformat(sep=' '))} AS TIMESTAMP)"
        return f"CAST({lit(value.astimezone(dt.UTC).isoformat(sep=' '))} AS TIMESTAMPTZ)"
    if isinstance(value, dt.date):
        return f"CAST({lit(value.isoformat())} AS DATE)"
    if isinstance(value, str):
        return lit(value)
    raise TypeError(f"a segment parameter of type {type(value).__name__} has no SQL literal: {value!r}")


def inline(sql: str, params: dict[str, Any]) -> str:
    """``sql`` with each ``$name`` of ``params`` replaced by its literal."""
    return re.sub(r"\$([A-Za-z_]\w*)", lambda m: literal(params[m[1]]) if m[1] in params else m[0], sql)


class _Reader:
    """The builders' view of the version a write builds: table names → SQL over its files (read when asked, so that
    tables the job writes are seen), with the columns of result tables that have no file."""

    def __init__(self, w: Work) -> None:
        self.w = w
        self.widths: dict[str, int] = {}
        """Result table → how many code columns it has (its columns when it has no file)."""

    def columns(self, table: str) -> list[tuple[str, str]]:
        if table in (STAMPS, APPLIED_JOBS):
            return list(STAMP_COLUMNS if table == STAMPS else JOB_COLUMNS)
        if table in self.widths:
            return [(PROFILE_ID, "VARCHAR"), *((f"c{k}", "INTEGER") for k in range(self.widths[table]))]
        return self.w.new.columns(table)  # KeyError: a table the version does not know

    def ref(self, name: str) -> str:
        return self.w.rel(name, self.columns(name))

    def members(self, table: str, ttl_days: int, at: str) -> str:
        payload = [c for c, _ in self.columns(table) if c not in MEMBER_COLUMNS]
        return q.effective_sql(self.ref(table), payload, f"{at} - INTERVAL {int(ttl_days)} DAY", ttl_days)


def _job(w: Work, job_id: str) -> dict[str, SegmentCounts] | None:
    rows = w.session.query(
        f"SELECT result FROM {w.rel(APPLIED_JOBS, list(JOB_COLUMNS))} j WHERE job_id = {lit(job_id)}"
    )
    return _counts(str(rows[0][0])) if rows else None


def _counts(result: str) -> dict[str, SegmentCounts]:
    return {k: SegmentCounts(**v) for k, v in json.loads(result).items()}


def evaluate(w: Work, job_id: str, plans: list[Plan], ttl_days: dict[str, int]) -> dict[str, SegmentCounts]:
    """Evaluates the plans in order into the version ``w`` builds (see the module's docstring); a job the base
    version has already applied answers its recorded counts and changes nothing."""
    done = _job(w, job_id)
    if done is not None:
        return done
    reader = _Reader(w)
    results: dict[str, segment_codes.Stored] = {}
    audiences: dict[str, tuple[str, int, str]] = {}
    for audience_id, aud in w.new.members():
        audiences[audience_id] = (str(aud["namespace"]), int(aud["ttl_days"]), str(aud["table"]))
        seg = aud.get("segment")
        if seg is not None and seg.get("table") in w.new.tables:
            at = dt.datetime.fromisoformat(seg["at"])
            results[audience_id] = segment_codes.Stored(seg["table"], int(seg["col"]), 0, str(seg["job_id"]), at)
            reader.widths[seg["table"]] = int(seg["width"])
    fragments = [
        (dataset_id, str(f["kind"]), str(f["table"]), {str(c) for c, _ in f["columns"]})
        for dataset_id, f in sorted(w.new.fragments.items())
        if w.files(str(f["table"]))
    ]
    have = segments.Tables(audiences, fragments, results, ref=reader.ref, members=reader.members, key_type="VARCHAR")
    at = plans[0].now if plans else dt.datetime.now(dt.UTC)
    first = w.query(f"SELECT coalesce(max(no), 0) + 1 FROM {reader.ref(STAMPS)} s")
    stamps = segment_codes.Stamps(first, job_id, at, {first: (job_id, at)})
    counts: dict[str, SegmentCounts] = {}
    for n, plan in enumerate(segments.combine(plans)):  # one plan: every level in one pass
        tbl = segment_codes.result_table(job_id, n)
        reader.widths[tbl] = len(plan.segments)
        w.put(tbl, inline(segments.result_sql(have, plan, n, stamps, ttl_days), plan.params))
        row = w.session.query(segments.counts_sql(reader.ref(tbl), plan, stamps))[0]
        counts |= segments.record(have, plan, tbl, stamps, row)
    _publish(w, reader, have, stamps, ttl_days)
    w.append(
        APPLIED_JOBS,
        f"SELECT {lit(job_id)} AS job_id, {literal(dt.datetime.now(dt.UTC))} AS applied_at, "
        f"{lit(json.dumps({k: asdict(v) for k, v in counts.items()}))} AS result",
    )
    for table, columns_, order in ((STAMPS, STAMP_COLUMNS, "no"), (APPLIED_JOBS, JOB_COLUMNS, "job_id")):
        if len(w.new.tables.get(table, [])) > COMPACT_AT:
            w.put(table, f"SELECT * FROM {w.rel(table, list(columns_))} c ORDER BY {order}")
    w.changed = True
    return counts


def _publish(
    w: Work, reader: _Reader, have: segments.Tables, stamps: segment_codes.Stamps, ttl: dict[str, int]
) -> None:
    """The job's stamps, then each evaluated segment's memberships as its membership table, registered as an
    audience of namespace ``ups``."""
    added = " UNION ALL ".join(
        f"SELECT CAST({no} AS BIGINT) AS no, {lit(job)} AS job_id, {literal(at)} AS stamped_at"
        for no, (job, at) in sorted(stamps.added.items())
    )
    w.append(STAMPS, added)
    for segment_id, st in have.fresh.items():
        table = table_for(segment_id)
        w.new.audiences[segment_id] = {
            "namespace": SEGMENT_NAMESPACE,
            "ttl_days": ttl.get(segment_id, segments.NO_TTL),
            "table": table,
            "columns": [list(c) for c in q.MEMBER_TYPES],
            "segment": {
                "job_id": st.job_id,
                "at": st.at.isoformat(),
                "table": st.tbl,
                "col": st.col,
                "width": reader.widths[st.tbl],
            },
        }
        w.put(table, f"SELECT * FROM ({segment_codes.view(st, reader.ref)}) v ORDER BY {PROFILE_ID}")
    read = {str(aud["segment"]["table"]) for aud in w.new.audiences.values() if "segment" in aud}
    for table in [t for t in w.new.tables if t.startswith(segment_codes.RESULT_PREFIX) and t not in read]:
        w.drop(table)  # replaced: no segment reads it any more


def evaluation(cur: duckdb.DuckDBPyConnection, files: list[Path], job_id: str) -> dict[str, SegmentCounts] | None:
    """The counts the job committed, from the current version's ``applied_jobs`` files; None if it never did."""
    if not files:
        return None
    row = cur.execute(
        f"SELECT result FROM read_parquet({path_list(files)}) WHERE job_id = ? LIMIT 1", [job_id]
    ).fetchone()
    return _counts(str(row[0])) if row else None
