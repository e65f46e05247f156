"""Values on the wire as PostgreSQL 15 writes them (the expected texts and bytes were taken from a real server)."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal

import pyarrow as pa
import pytest

from audiencehub.query import pgjson, pgtypes
from audiencehub.query.errors import QueryError

UTC = dt.UTC


def cells(values: list[object], arrow: pa.DataType, *, binary: bool = False) -> list[bytes | None]:
    column = pa.array(values, arrow)
    out: list[bytes | None] = pgtypes.encode(column, pgtypes.pg_type(arrow), binary=binary).to_pylist()
    return out


def texts(values: list[object], arrow: pa.DataType) -> list[str | None]:
    return [None if c is None else c.decode() for c in cells(values, arrow)]


def test_floats_print_as_postgresql_prints_them() -> None:
    doubles = {
        1e15: "1e+15",
        1e14: "100000000000000",
        1e-5: "1e-05",
        0.0001: "0.0001",
        1.5e-7: "1.5e-07",
        -0.0: "-0",
        123456789012345.0: "123456789012345",
        12345678.9: "12345678.9",
        0.1 + 0.2: "0.30000000000000004",
        1e100: "1e+100",
        -2.5e-300: "-2.5e-300",
        1.5e16: "1.5e+16",
        float("inf"): "Infinity",
        float("-inf"): "-Infinity",
        float("nan"): "NaN",
    }
    assert texts([*doubles, None], pa.float64()) == [*doubles.values(), None]
    reals = {1e6: "1e+06", 0.1: "0.1", 12345.5: "12345.5", 2182319.8: "2.1823198e+06", 1e-5: "1e-05", 1e5: "100000"}
    assert texts(list(reals), pa.float32()) == list(reals.values())


def test_scalars_as_text() -> None:
    assert texts([True, False, None], pa.bool_()) == ["t", "f", None]
    assert texts([-(2**63), 0, None], pa.int64()) == ["-9223372036854775808", "0", None]
    assert texts([Decimal("1.50"), Decimal("-0.001")], pa.decimal128(10, 3)) == ["1.500", "-0.001"]
    assert texts([b"\x00\xff"], pa.binary()) == ["\\x00ff"]
    assert texts([dt.date(2024, 1, 2)], pa.date32()) == ["2024-01-02"]
    stamps = [dt.datetime(2024, 1, 1, 12, 0, 0, 500000), dt.datetime(2024, 1, 1), None]
    assert texts(stamps, pa.timestamp("us")) == ["2024-01-01 12:00:00.5", "2024-01-01 00:00:00", None]
    aware = [dt.datetime(2024, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)]
    assert texts(aware, pa.timestamp("us", tz="UTC")) == ["2024-01-01 12:00:00.5+00"]
    assert texts([dt.timedelta(days=1, hours=2, microseconds=500)], pa.duration("us")) == ["1 day 02:00:00.0005"]
    intervals = pa.array(
        [(14, 3, 14_706_500_000_000), (-14, 0, 0), (0, 0, -3_600_000_000_000), (0, 0, 0)], pa.month_day_nano_interval()
    )
    assert pgtypes.encode(intervals, pgtypes.INTERVAL, binary=False).to_pylist() == [
        b"1 year 2 mons 3 days 04:05:06.5",
        b"-1 years -2 mons",
        b"-01:00:00",
        b"00:00:00",
    ]


def test_nested_values_are_json_as_postgresql_shows_it() -> None:
    member = pa.struct([("status", pa.string()), ("lastQualificationTime", pa.timestamp("us", tz="UTC"))])
    membership = pa.map_(pa.string(), pa.map_(pa.string(), member))
    at = dt.datetime(2024, 5, 1, tzinfo=UTC)
    value = [("ups", [("s1", {"status": "realized", "lastQualificationTime": at})])]
    assert pgtypes.pg_type(membership) is pgtypes.JSON
    assert texts([value, None, []], membership) == [
        '{"ups":{"s1":{"status":"realized","lastQualificationTime":"2024-05-01T00:00:00+00:00"}}}',
        None,
        "{}",
    ]
    floats = pa.list_(pa.float64())
    assert texts([[1.5, float("nan"), None, float("-inf")], []], floats) == ['[1.5,"NaN",null,"-Infinity"]', "[]"]
    person = pa.struct(
        [("name", pa.string()), ("born", pa.date32()), ("seen", pa.timestamp("us")), ("photo", pa.binary())]
    )
    row = {"name": 'Zoë "Z"', "born": dt.date(1990, 1, 2), "seen": dt.datetime(2024, 1, 2, 3, 4, 5, 500000)}
    assert texts([{**row, "photo": b"\x00\xff"}, None], person) == [
        '{"name":"Zoë \\"Z\\"","born":"1990-01-02","seen":"2024-01-02T03:04:05.5","photo":"\\\\x00ff"}',
        None,
    ]


def test_the_python_json_path_writes_what_duckdb_writes() -> None:
    member = pa.struct([("status", pa.string()), ("at", pa.timestamp("us", tz="UTC")), ("score", pa.float64())])
    kind = pa.map_(pa.string(), pa.list_(member))
    at = dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    values = [[("a", [{"status": "x", "at": at, "score": float("inf")}, None])], [], None]
    column = pa.array(values, kind)
    assert [None if v is None else pgjson.json_text(v, kind) for v in values] == pgjson.json_texts(column).to_pylist()


def test_binary_cells() -> None:
    assert cells([1, None], pa.int16(), binary=True) == [b"\x00\x01", None]
    assert cells([-2], pa.int32(), binary=True) == [struct.pack("!i", -2)]
    assert cells([2**40], pa.int64(), binary=True) == [struct.pack("!q", 2**40)]
    assert cells([1.5], pa.float64(), binary=True) == [struct.pack("!d", 1.5)]
    assert cells([0.5], pa.float32(), binary=True) == [struct.pack("!f", 0.5)]
    assert cells([True, False], pa.bool_(), binary=True) == [b"\x01", b"\x00"]
    assert cells(["é"], pa.string(), binary=True) == ["é".encode()]
    assert cells([dt.date(2000, 1, 2)], pa.date32(), binary=True) == [struct.pack("!i", 1)]
    assert cells([dt.datetime(2000, 1, 1, 0, 0, 1)], pa.timestamp("us"), binary=True) == [struct.pack("!q", 10**6)]


@pytest.mark.parametrize(
    ("value", "wire"),
    [  # PostgreSQL's binary numeric of each value
        ("0", "0000000000000000"),
        ("1.50", "000200000000000200011388"),
        ("-0.001", "0001ffff40000003000a"),
        ("12345678.9", "000300010000000104d2162e2328"),
        ("0.0001", "0001ffff000000040001"),
        ("1e20", "00010005000000000001"),
        ("123.4500", "0002000000000004007b1194"),
        ("-99999999999999999999.123", "0006000440000003270f270f270f270f270f04ce"),
    ],
)
def test_numeric_in_binary(value: str, wire: str) -> None:
    assert pgtypes.numeric_binary(Decimal(value)).hex() == wire
    assert pgtypes.numeric_from_binary(bytes.fromhex(wire)) == Decimal(value)


def test_data_rows_are_whole_messages() -> None:
    batch = pa.record_batch({"a": pa.array([1, None]), "b": pa.array(["x", "yz"])})
    out = bytes(pgtypes.data_rows(batch, [pgtypes.INT8, pgtypes.TEXT], [0, 0]))
    first = b"D" + struct.pack("!ihi", 4 + 2 + 4 + 1 + 4 + 1, 2, 1) + b"1" + struct.pack("!i", 1) + b"x"
    second = b"D" + struct.pack("!ihi", 4 + 2 + 4 + 4 + 2, 2, -1) + struct.pack("!i", 2) + b"yz"
    assert out == first + second


def test_a_sliced_batch_encodes_its_own_rows() -> None:
    batch = pa.record_batch({"a": pa.array([1, 2, 3], pa.int32())}).slice(1, 2)
    out = bytes(pgtypes.data_rows(batch, [pgtypes.INT4], [1]))
    assert out == b"".join(b"D" + struct.pack("!ihii", 14, 1, 4, v) for v in (2, 3))


def test_binary_format_is_refused_where_not_implemented() -> None:
    with pytest.raises(QueryError) as refused:
        pgtypes.check_formats([pgtypes.INT4, pgtypes.INTERVAL], [1, 1])
    assert refused.value.sqlstate == "0A000" and "interval" in refused.value.message


def test_parameters_decode_by_their_declared_type() -> None:
    decode = pgtypes.decode_param
    assert decode(b"42", pgtypes.INT8.oid, False) == 42
    assert decode(b"2.5", pgtypes.FLOAT8.oid, False) == 2.5
    assert decode(b"1.50", pgtypes.NUMERIC.oid, False) == Decimal("1.50")
    assert decode(b"t", pgtypes.BOOL.oid, False) is True
    assert decode(b"2024-01-02", pgtypes.DATE.oid, False) == dt.date(2024, 1, 2)
    assert decode(b"2024-01-02 03:04:05+00", pgtypes.TIMESTAMPTZ.oid, False) == dt.datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    assert decode(b"\\x00ff", pgtypes.BYTEA.oid, False) == b"\x00\xff"
    assert decode(b"text", 0, False) == "text"
    assert decode(None, pgtypes.INT4.oid, False) is None
    assert decode(struct.pack("!i", -7), pgtypes.INT4.oid, True) == -7
    assert decode(struct.pack("!d", 0.25), pgtypes.FLOAT8.oid, True) == 0.25
    assert decode(struct.pack("!q", 10**6), pgtypes.TIMESTAMP.oid, True) == dt.datetime(2000, 1, 1, 0, 0, 1)
    with pytest.raises(QueryError) as bad:
        decode(b"forty", pgtypes.INT4.oid, False)
    assert bad.value.sqlstate == "22P02" and "int4" in bad.value.message
