"""The identity rules agree in both implementations: ``normalize()`` (one value) and the bulk SQL.

For every rule, a table of raw values (valid, needing normalization, invalid) goes through a CSV
file, ``ingest_sql.validated_select`` in DuckDB and a Parquet file; each row's outcome (the
normalized identity, or a rejection) must be what ``normalize(rule, value)`` says.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import duckdb
import pytest

from audiencehub.domain.audiences import FieldType
from audiencehub.domain.namespaces import WHITESPACE, Rule, normalize
from audiencehub.engines.ingest_sql import CHECK, Column, field_column, ident, lit, validated_select

SHA = hashlib.sha256(b"alice@example.com").hexdigest()
ECID = "12345678901234567890123456789012345678"
UUID = "123e4567-e89b-12d3-a456-426614174000"
FULLWIDTH_A = "\uff41"  # not a hex digit, though it lower-cases and looks like one
ARABIC_INDIC_ONE = "\u0661"  # a digit to Unicode, not to [0-9]

# Whitespace that CSV exports really carry: tabs, CR, no-break spaces (spreadsheets), ideographic space.
PADDING = (" ", "  ", "\t", "\r", "\u00a0", "\u3000", " \t ")

VALUES: dict[Rule, dict[str, list[str]]] = {
    Rule.EMAIL: {
        "valid": ["alice@example.com", "a.b+tag@sub.example.co.uk", "x_y-z@example.io", "élodie@exemple.fr"],
        "normalize": [
            "Alice@Example.COM",
            "BOB@EXAMPLE.COM",
            "ÉLODIE@EXEMPLE.FR",
            "ΟΔΟΣ@EXAMPLE.GR",
            "İLKER@EXAMPLE.COM.TR",
            *(f"{p}carol@example.com{p}" for p in PADDING),
            "\tDave@Example.com ",
        ],
        "invalid": [
            "",
            " ",
            "\t",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "alice@example.",
            "a b@example.com",
            "a@b@example.com",
            "alice@exa mple.com",
            "a\tb@example.com",
            "a\u00a0b@example.com",
            "a\u2003b@example.com",
            "a\vb@example.com",
        ],
    },
    Rule.SHA256: {
        "valid": [SHA, "0" * 64, "f" * 64],
        "normalize": [SHA.upper(), *(f"{p}{SHA}{p}" for p in PADDING), f" {SHA.upper()} "],
        "invalid": [
            "",
            " ",
            SHA[:-1],
            SHA + "0",
            "g" * 64,
            SHA[:32] + " " + SHA[33:],
            "0x" + SHA[2:],
            FULLWIDTH_A * 64,
        ],
    },
    Rule.PHONE: {
        "valid": ["+14155552671", "+442071838750", "+12345678", "+123456789012345"],
        "normalize": [
            "+1 415 555 2671",
            "+1 (415) 555-2671",
            "+1.415.555.2671",
            "+44 20-7183-8750",
            *(f"{p}+14155552671{p}" for p in PADDING),
            "+1\t415\t555\t2671",
            "+1\u00a0415\u00a0555\u00a02671",
        ],
        "invalid": [
            "",
            " ",
            "()",
            "14155552671",
            "+0123456789",
            "+1234567",
            "+1234567890123456",
            "++14155552671",
            "+1 415 CALL ME",
            "+1/415/555/2671",
            "+" + ARABIC_INDIC_ONE * 11,
        ],
    },
    Rule.ECID: {
        "valid": [ECID, "0" * 38],
        "normalize": [f"{p}{ECID}{p}" for p in PADDING],
        "invalid": [
            "",
            " ",
            ECID[:-1],
            ECID + "1",
            ECID[:-1] + "a",
            ECID[:19] + " " + ECID[19:],
            ARABIC_INDIC_ONE * 38,
        ],
    },
    Rule.UUID: {
        "valid": [UUID, "00000000-0000-0000-0000-000000000000"],
        "normalize": [UUID.upper(), *(f"{p}{UUID}{p}" for p in PADDING)],
        "invalid": ["", " ", UUID.replace("-", ""), "{" + UUID + "}", UUID[:-1], UUID[:-1] + "g", UUID + "0"],
    },
    Rule.TEXT: {
        "valid": ["abc", "CRM-0001", "ünïcødé", "a b", "a\tb", "0"],
        "normalize": [f"{p}abc{p}" for p in PADDING],
        "invalid": ["", " ", "  ", "\t", "\r", "\u00a0", " \t "],
    },
}


def test_every_rule_has_a_table() -> None:
    assert set(VALUES) == set(Rule)


def test_whitespace_is_what_python_calls_whitespace() -> None:
    assert set(WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}


def _bulk(tmp_path: Path, rule: Rule, values: list[str], quoting: int) -> list[tuple[str | None, int | None]]:
    """(normalized identity, check index) per value, in order, as the ingestion SQL gives them."""
    src = tmp_path / "in.csv"
    with src.open("w", encoding="utf-8", newline="") as fh:
        # Minimal quoting with CRLF (as spreadsheets export), so a value holding CR or LF is quoted.
        terminator = "\r\n" if quoting == csv.QUOTE_MINIMAL else "\n"
        writer = csv.writer(fh, quoting=quoting, lineterminator=terminator)
        writer.writerow(["id"])
        writer.writerows([v] for v in values)
    out = tmp_path / "out.parquet"
    con = duckdb.connect()
    try:
        select = validated_select(src, 1, [Column("id", FieldType.STRING, rule, 0)], 0)
        con.execute(f"COPY ({select}) TO {lit(str(out))} (FORMAT parquet)")
        malformed = con.execute("SELECT count(*) FROM _rejects_0").fetchone()
        assert malformed == (0,), con.execute("SELECT * FROM _rejects_0").fetchall()
        rows = con.execute(
            f"SELECT {ident(field_column('id'))}, {CHECK} FROM read_parquet({lit(str(out))}, file_row_number = true) "
            "ORDER BY file_row_number"
        ).fetchall()
    finally:
        con.close()
    return [(r[0], r[1]) for r in rows]


@pytest.mark.parametrize("quoting", [csv.QUOTE_MINIMAL, csv.QUOTE_ALL], ids=["minimal-quoting", "all-quoted"])
@pytest.mark.parametrize("rule", list(Rule), ids=[r.value for r in Rule])
def test_python_and_sql_agree(tmp_path: Path, rule: Rule, quoting: int) -> None:
    table = VALUES[rule]
    values = [v for kind in ("valid", "normalize", "invalid") for v in table[kind]]
    rows = _bulk(tmp_path, rule, values, quoting)
    assert len(rows) == len(values)
    disagree = []
    for value, (sql_value, check) in zip(values, rows, strict=True):
        expected = normalize(rule, value)
        got = None if check is not None else sql_value
        if expected != got:
            disagree.append(f"{value!r}: normalize() -> {expected!r}, SQL -> {got!r} (check {check})")
    assert not disagree, "\n".join(disagree)


@pytest.mark.parametrize("rule", list(Rule), ids=[r.value for r in Rule])
def test_tables_mean_what_they_say(rule: Rule) -> None:
    table = VALUES[rule]
    for value in table["valid"]:
        assert normalize(rule, value) == value, value
    for value in table["normalize"]:
        got = normalize(rule, value)
        assert got is not None and got != value, value
        assert normalize(rule, got) == got, value
    for value in table["invalid"]:
        assert normalize(rule, value) is None, value
