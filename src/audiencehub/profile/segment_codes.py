"""How a segment result table holds its codes, and reading them back.

A plan's evaluation (``profile/segments.py``) is written as ONE table ``seg_{job}_{n}``: the profile key, then for
the segment in position k a code (none when the profile is not and never was a member) holding the membership's
status in its two low bits and, above them, the number of the stamp (``segment_stamps``: job id and time) when that
status was set. Each segment's memberships are read through a view named like an external audience's membership
table (``m_{segment hex}``, :func:`view`), so every reader sees one shape. Writing 100 segments is then one join of
the new result with the old codes and one table write, not 100 joins and 100 tables with an index.

The embedded store packs the codes into BIGINT words ``b{bits}_{j}``, 64 / bits codes to a word (0: none): DuckDB
writes, sorts and scans a column at a fixed cost per column and vector, so 25 words of 4 codes cost a quarter of 100
code columns of the same bytes (benchmarks/segment.py), and a word whose segments are those of an old word is
computed whole (:func:`new_word`). The lake store keeps one INTEGER column ``c{k}`` per code (Parquet compresses them;
Spark reads them) and so do the embedded store's tables from before the packing: ``Stored.bits`` 0.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import duckdb

from audiencehub.engines.ingest_sql import ident
from audiencehub.profile.columns import PROFILE_ID, QUALIFIED_AT, RUN_ID, STATUS

REALIZED, EXISTING, EXITED = 1, 2, 3
CODES = {"realized": REALIZED, "existing": EXISTING, "exited": EXITED}
RESULT_PREFIX = "seg_"


@dataclass(frozen=True)
class Stored:
    """Where a segment's memberships are: code ``col`` of the result table ``tbl``, written by the evaluation
    of stamp ``stamp`` (job ``job_id`` at ``at``: every member of that evaluation qualified then)."""

    tbl: str
    col: int
    stamp: int
    job_id: str
    at: dt.datetime
    bits: int = 0
    """The table's layout: codes of this many bits packed in words (:func:`packed`), or 0: a column per code."""


PACKED_BITS = (16, 32)


def packed_bits(columns: list[str]) -> int:
    """The layout (:attr:`Stored.bits`) of a result table with these columns."""
    return next((bits for bits in PACKED_BITS if f"b{bits}_0" in columns), 0)


def stored(cur: duckdb.DuckDBPyConnection) -> dict[str, Stored]:
    firsts = ", ".join(f"'b{bits}_0'" for bits in PACKED_BITS)
    return {
        str(seg): Stored(str(tbl), int(col), int(no), str(job), at, packed_bits(list(words or [])))
        for seg, tbl, col, no, job, at, words in cur.execute(
            "SELECT r.segment_id, r.tbl, r.col, r.stamp, s.job_id, s.stamped_at, w.words FROM segment_results r "
            "JOIN segment_stamps s ON s.no = r.stamp LEFT JOIN (SELECT table_name, list(column_name) AS words "
            f"FROM duckdb_columns() WHERE database_name <> 'temp' AND column_name IN ({firsts}) GROUP BY table_name) w "
            "ON w.table_name = r.tbl"
        ).fetchall()
    }


def code_bits(stamps: Stamps, segments: int) -> int:
    """The bits per packed code that hold every code an evaluation of ``segments`` segments may write: its own
    stamp's and those of the ttl expiries it may add (one per segment at most), and the older ones it keeps. A
    sandbox's first 8,190 stamps fit 16 bits (4 codes to a word; the top one below the sign bit)."""
    return 16 if code(stamps.now + segments, EXITED) < 1 << 15 else 32


def code_field(col: int, bits: int, alias: str = "") -> str:
    """SQL of the code of segment ``col`` in a row of a result table of layout ``bits``: 0 or NULL when none."""
    at = f"{alias}." if alias else ""
    if not bits:
        return f"{at}c{col}"
    word, place = divmod(col, 64 // bits)
    return unpacked(f"{at}b{bits}_{word}", place, bits)


def unpacked(word: str, place: int, bits: int) -> str:
    """SQL of the code in place ``place`` of a word (SQL) of ``bits``-bit codes."""
    return f"(({word} >> {place * bits}) & {(1 << bits) - 1})"


def column_of(st: Stored) -> str:
    """The result table's column that holds the segment's code."""
    return f"b{st.bits}_{st.col // (64 // st.bits)}" if st.bits else f"c{st.col}"


def code_in(st: Stored, value: int | None) -> int | None:
    """The segment's code in the value of its column (:func:`column_of`); 0 or None when none."""
    if not st.bits or value is None:
        return value
    return (value >> (st.col % (64 // st.bits)) * st.bits) & ((1 << st.bits) - 1)


def code_of(st: Stored, alias: str = "") -> str:
    """SQL of the segment's code in a row of its result table (``alias``), NULL when the profile has none."""
    value = code_field(st.col, st.bits, alias)
    return f"nullif({value}, 0)" if st.bits else value


def packed(codes: list[str], bits: int) -> list[str]:
    """The words (SQL) that pack these codes (SQL; NULL for none), 64 / ``bits`` to a word in order."""
    per = 64 // bits
    return [
        " | ".join(
            f"(coalesce(CAST({code} AS BIGINT), 0) << {place * bits})" for place, code in enumerate(codes[j : j + per])
        )
        for j in range(0, len(codes), per)
    ]


def word_columns(count: int, bits: int) -> list[str]:
    return [f"b{bits}_{j}" for j in range(-(-count // (64 // bits)))]


def newest_codes(columns: list[str]) -> list[str]:
    """Per column of a result table (these, in order), the aggregate that keeps of each segment's codes in the rows
    of merged profiles the newest one (:func:`newest_code`), as that column again."""
    bits = packed_bits(columns)
    if not bits:
        return [f"arg_max({ident(c)}, {newest_code(ident(c))}) AS {ident(c)}" for c in columns]
    per = 64 // bits
    out = []
    for j, word in enumerate(columns):
        codes = [f"nullif({code_field(j * per + place, bits)}, 0)" for place in range(per)]
        newest = [f"arg_max({c}, {newest_code(c)})" for c in codes]
        out.append(f"{packed(newest, bits)[0]} AS {ident(word)}")
    return out


def result_table(job_id: str, n: int) -> str:
    return f"{RESULT_PREFIX}{''.join(c for c in job_id.lower() if c.isalnum())}_{n}"


@dataclass
class Stamps:
    """The stamps an evaluation adds: its own (number ``now``) and one per ttl expiry it records."""

    now: int
    job_id: str
    at: dt.datetime
    added: dict[int, tuple[str, dt.datetime]] = field(default_factory=dict)

    @classmethod
    def next(cls, cur: duckdb.DuckDBPyConnection, job_id: str, at: dt.datetime) -> Stamps:
        row = cur.execute("SELECT coalesce(max(no), 0) + 1 FROM segment_stamps").fetchone()
        no = int(row[0]) if row else 1
        return cls(no, job_id, at, {no: (job_id, at)})

    def add(self, job_id: str, at: dt.datetime) -> int:
        for no, have in self.added.items():
            if have == (job_id, at):
                return no
        no = max(self.added) + 1
        self.added[no] = (job_id, at)
        return no


def newest_code(col: str) -> str:
    """The ``arg_max`` key that picks, among the codes two merged profiles had for one segment, the status set by the
    newest evaluation (the stamp in the upper bits), an active one before an exit of the same evaluation. Portable
    arithmetic (``//`` and ``%``: Spark runs it)."""
    return f"(({col}) // 4) * 2 + CASE WHEN ({col}) % 4 = {EXITED} THEN 0 ELSE 1 END"


def code(stamp: int, status: int) -> int:
    """The code of ``status`` set by the evaluation of stamp ``stamp``."""
    return stamp << 2 | status


def new_word_masks(j: int, members: list[str], old: str | None, bits: int) -> list[str]:
    """The masks :func:`new_word` reads, per place of word ``j``: ``mm{j}`` 1 where the profile is a member now
    (``members``: SQL, NULL is false), and with an old word (its column ``old``) ``ow{j}`` that word (0 for none)
    and ``mw{j}`` 1 where its code is active (status 1 or 2: the status's two bits differ)."""
    ones = sum(1 << place * bits for place in range(len(members)))
    member = " | ".join(f"(CAST(coalesce({m}, false) AS BIGINT) << {p * bits})" for p, m in enumerate(members))
    out = [f"({member}) AS mm{j}"]
    if old is not None:
        was = f"coalesce({old}, 0)"
        out += [f"{was} AS ow{j}", f"(xor({was}, {was} >> 1) & {ones}) AS mw{j}"]
    return out


def new_word(j: int, used: int, old: bool, bits: int, now: int) -> str:
    """Word ``j``'s new codes (``used`` of its places), all at once (``segments._status`` goes code by code): with
    ``m`` a member now and ``w`` active before, the new code is ``N + 3 - 2m + mw`` (``N`` the stamp's code base:
    realized ``N + 1``, existing ``N + 2``, exited ``N + 3``) where ``m`` or ``w``, and the old code elsewhere. Each
    place's value stays within its bits (codes are below ``1 << bits - 1``), so whole-word arithmetic computes every
    place."""
    base = code(now, 0)
    if not old:
        return f"(mm{j} * {base + REALIZED})"
    mask = (1 << (bits - 1)) - 1  # a code's bits: the place's top bit is never set
    keep = sum(mask << place * bits for place in range(used))
    new = f"(mm{j} | mw{j})"
    return f"((ow{j} & {keep} & ~({new} * {mask})) | ({new} * {base + EXITED} - 2 * mm{j} + (mm{j} & mw{j})))"


def view(st: Stored, ref: Callable[[str], str] = ident) -> str:
    """The segment's memberships in a membership table's shape (``MEMBER_COLUMNS``); ``ref`` as :attr:`Tables.ref`."""
    c = code_of(st, "r")
    return (
        f"SELECT r.{PROFILE_ID}, CASE {c} & 3 WHEN {REALIZED} THEN 'realized' WHEN {EXISTING} THEN 'existing' "
        f"ELSE 'exited' END AS {STATUS}, s.stamped_at AS {QUALIFIED_AT}, s.job_id AS {RUN_ID} "
        f"FROM {ref(st.tbl)} r JOIN {ref('segment_stamps')} s ON s.no = {c} >> 2"
    )


def memberships(
    cur: duckdb.DuckDBPyConnection, wanted: str, param: object, segments: dict[str, tuple[Stored, int]]
) -> Iterator[tuple[str, str, str, dt.datetime]]:
    """(profile id, segment id, status, qualified at) of the ``wanted`` profiles (SQL and its parameter) in these
    segments (their results and ttl), as read now (ttl applied as :func:`effective` does): one query per result table,
    however many segments it holds."""
    by_table: dict[str, list[tuple[str, Stored, int]]] = defaultdict(list)
    for segment_id, (st, ttl) in segments.items():
        by_table[st.tbl].append((segment_id, st, ttl))
    if not by_table:
        return
    stamps = {int(no): (at, str(job)) for no, job, at in cur.execute("SELECT * FROM segment_stamps").fetchall()}
    now = dt.datetime.now(dt.UTC)
    names = {value: name for name, value in CODES.items()}
    for tbl, cols in by_table.items():
        # The columns as stored, unpacked here: a point lookup's few rows cost less than binding a hundred
        # expressions that unpack them in SQL (20 ms).
        columns = sorted({column_of(st) for _, st, _ in cols})
        for pid, *row in cur.execute(
            f"SELECT CAST({PROFILE_ID} AS VARCHAR), {', '.join(columns)} FROM {ident(tbl)} "
            f"WHERE {PROFILE_ID} IN {wanted}",
            [param],
        ).fetchall():
            values = dict(zip(columns, row, strict=True))
            for segment_id, st, ttl in cols:
                found = code_in(st, values[column_of(st)])
                if not found:
                    continue
                status, (at, _) = names[found & 3], stamps[found >> 2]
                if status != "exited" and at < now - dt.timedelta(days=ttl):
                    status, at = "exited", at + dt.timedelta(days=ttl)
                yield pid, segment_id, status, at
