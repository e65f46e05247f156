"""The packed layout of segment result tables (profile/segment_codes.py), run by DuckDB: codes packed into words
read back, the whole-word arithmetic agrees with the code-by-code rule, and merged profiles keep the newest code per
place."""

from __future__ import annotations

import datetime as dt
import itertools

import duckdb
import pytest

from audiencehub.profile import segment_codes as sc

_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("bits", sc.PACKED_BITS)
def test_codes_packed_into_words_read_back_in_their_places(bits: int) -> None:
    top = (1 << (bits - 1)) - 1  # the largest code a place holds
    codes = ["NULL", "5", str(top), "NULL", "9", "10", "11"]
    con = duckdb.connect()
    words = sc.packed(codes, bits)
    assert len(words) == len(sc.word_columns(len(codes), bits)) == -(-len(codes) // (64 // bits))
    names = sc.word_columns(len(codes), bits)
    con.execute("CREATE TABLE r AS SELECT " + ", ".join(f"{w} AS {n}" for w, n in zip(words, names, strict=True)))
    back = con.execute(
        "SELECT " + ", ".join(sc.code_of(sc.Stored("r", k, 1, "j", _AT, bits)) for k in range(len(codes))) + " FROM r"
    ).fetchone()
    assert back == tuple(None if c == "NULL" else int(c) for c in codes)
    row = dict(zip(names, con.execute("SELECT * FROM r").fetchone() or (), strict=True))
    for k, c in enumerate(codes):
        st = sc.Stored("r", k, 1, "j", _AT, bits)
        assert (sc.code_in(st, row[sc.column_of(st)]) or None) == (None if c == "NULL" else int(c))


@pytest.mark.parametrize("bits", sc.PACKED_BITS)
def test_a_word_computed_whole_matches_each_code_computed_alone(bits: int) -> None:
    """Every place of a word, every case at once: member or not, and an old code none, realized, existing or exited
    (of an older stamp), against the rule: member → realized (existing if it was active), not a member → exited if
    it was active, else the old code."""
    per = 64 // bits
    now, older = 7, 3
    olds = [0, sc.code(older, sc.REALIZED), sc.code(older, sc.EXISTING), sc.code(older, sc.EXITED)]
    cases = list(itertools.product([False, True], olds))
    con = duckdb.connect()
    for start in range(0, len(cases), per):
        chunk = cases[start : start + per]
        old_word = sum(old << (p * bits) for p, (_, old) in enumerate(chunk))
        members = ["true" if m else "false" for m, _ in chunk]
        masks = sc.new_word_masks(0, members, str(old_word), bits)
        sql = f"SELECT {sc.new_word(0, len(chunk), True, bits, now)} FROM (SELECT {', '.join(masks)})"
        got = int((con.execute(sql).fetchone() or (0,))[0])
        for place, (member, old) in enumerate(chunk):
            active = old & 3 in (sc.REALIZED, sc.EXISTING)
            if member:
                want = sc.code(now, sc.EXISTING if active else sc.REALIZED)
            else:
                want = sc.code(now, sc.EXITED) if active else old
            assert (got >> (place * bits)) & ((1 << bits) - 1) == want, (member, old, place)
        assert got >> (len(chunk) * bits) == 0  # nothing beyond the used places


@pytest.mark.parametrize("bits", sc.PACKED_BITS)
def test_merged_profiles_keep_the_newest_code_of_each_place(bits: int) -> None:
    per = 64 // bits
    a = [sc.code(2, sc.REALIZED), 0, sc.code(5, sc.EXITED), sc.code(4, sc.EXISTING)][:per]
    b = [sc.code(3, sc.EXITED), sc.code(1, sc.REALIZED), sc.code(5, sc.EXISTING), 0][:per]
    names = sc.word_columns(per, bits)
    con = duckdb.connect()
    rows = [
        ", ".join(f"{w} AS {n}" for w, n in zip(sc.packed([str(c) for c in codes], bits), names, strict=True))
        for codes in (a, b)
    ]
    con.execute(f"CREATE TABLE r AS SELECT {rows[0]} UNION ALL SELECT {rows[1]}")
    (merged,) = con.execute(f"SELECT {', '.join(sc.newest_codes(names))} FROM r").fetchone() or (0,)
    # per place: the higher stamp wins; of one stamp, the active status before the exit
    want = [sc.code(3, sc.EXITED), sc.code(1, sc.REALIZED), sc.code(5, sc.EXISTING), sc.code(4, sc.EXISTING)][:per]
    assert [(merged >> (p * bits)) & ((1 << bits) - 1) for p in range(per)] == want
