"""PostgreSQL types on the wire: the type of each Arrow column, its cells in text or binary format, and
bound parameter values decoded from either.

Cells are built column by column with Arrow compute kernels and joined into whole DataRow messages
(:func:`data_rows`), so a batch costs a handful of kernel calls, not a Python loop per value; nested values
become JSON text in DuckDB (:mod:`audiencehub.query.pgjson`). Only values PostgreSQL prints in a way
neither does (floats outside the common range, bytea, intervals, numeric in binary) go through Python,
one value at a time.
"""

from __future__ import annotations

import datetime as dt
import struct
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any
from uuid import UUID

import pyarrow as pa
import pyarrow.compute as pc

from audiencehub.query.errors import QueryError
from audiencehub.query.pgjson import json_texts


@dataclass(frozen=True)
class PgType:
    """A PostgreSQL type as RowDescription and ``format_type`` name it."""

    oid: int
    name: str  # pg_type.typname
    display: str  # format_type(): what psql's \d shows
    size: int  # typlen; -1 for variable length


BOOL = PgType(16, "bool", "boolean", 1)
BYTEA = PgType(17, "bytea", "bytea", -1)
NAME = PgType(19, "name", "name", 64)
INT8 = PgType(20, "int8", "bigint", 8)
INT2 = PgType(21, "int2", "smallint", 2)
INT4 = PgType(23, "int4", "integer", 4)
TEXT = PgType(25, "text", "text", -1)
OID = PgType(26, "oid", "oid", 4)
JSON = PgType(114, "json", "json", -1)
FLOAT4 = PgType(700, "float4", "real", 4)
FLOAT8 = PgType(701, "float8", "double precision", 8)
UNKNOWN = PgType(705, "unknown", "unknown", -2)
BPCHAR = PgType(1042, "bpchar", "character", -1)
VARCHAR = PgType(1043, "varchar", "character varying", -1)
DATE = PgType(1082, "date", "date", 4)
TIME = PgType(1083, "time", "time without time zone", 8)
TIMESTAMP = PgType(1114, "timestamp", "timestamp without time zone", 8)
TIMESTAMPTZ = PgType(1184, "timestamptz", "timestamp with time zone", 8)
INTERVAL = PgType(1186, "interval", "interval", 16)
NUMERIC = PgType(1700, "numeric", "numeric", -1)
UUID_ = PgType(2950, "uuid", "uuid", 16)
JSONB = PgType(3802, "jsonb", "jsonb", -1)

ALL_TYPES: tuple[PgType, ...] = (
    BOOL,
    BYTEA,
    NAME,
    INT8,
    INT2,
    INT4,
    TEXT,
    OID,
    JSON,
    FLOAT4,
    FLOAT8,
    UNKNOWN,
    BPCHAR,
    VARCHAR,
    DATE,
)
ALL_TYPES += (TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, NUMERIC, UUID_, JSONB)
TYPES: dict[int, PgType] = {t.oid: t for t in ALL_TYPES}
"""Every type this front end sends or accepts, by oid."""

PG_EPOCH_DAYS = 10957  # 2000-01-01, PostgreSQL's epoch, in days since 1970-01-01
PG_EPOCH_US = PG_EPOCH_DAYS * 86_400_000_000
LITTLE_ENDIAN = sys.byteorder == "little"


def pg_type(t: pa.DataType) -> PgType:
    """The PostgreSQL type a column of Arrow type ``t`` is sent as; nested types are sent as ``json``."""
    if isinstance(t, pa.ExtensionType):
        return UUID_ if t.extension_name == "arrow.uuid" else pg_type(t.storage_type)
    if pa.types.is_dictionary(t):
        return pg_type(t.value_type)
    if pa.types.is_boolean(t):
        return BOOL
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return INT2
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return INT4
    if pa.types.is_integer(t):
        return INT8 if not pa.types.is_uint64(t) else NUMERIC
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return FLOAT4
    if pa.types.is_float64(t):
        return FLOAT8
    if pa.types.is_decimal(t):
        return NUMERIC
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_null(t):
        return TEXT
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return BYTEA
    if pa.types.is_fixed_size_binary(t):
        return BYTEA
    if pa.types.is_date(t):
        return DATE
    if pa.types.is_timestamp(t):
        return TIMESTAMP if t.tz is None else TIMESTAMPTZ
    if pa.types.is_time(t):
        return TIME
    if pa.types.is_duration(t) or pa.types.is_interval(t):
        return INTERVAL
    return JSON  # structs, lists, maps: rendered as JSON text, as PostgreSQL shows json


BINARY_TYPES = {BOOL, BYTEA, INT2, INT4, INT8, FLOAT4, FLOAT8, TEXT, VARCHAR, NAME, JSON, DATE, TIMESTAMP}
BINARY_TYPES |= {TIMESTAMPTZ, NUMERIC, UUID_}


def check_formats(types: list[PgType], formats: list[int]) -> None:
    """Refuses binary format for a type this front end only sends as text (0A000, naming the type)."""
    for t, f in zip(types, formats, strict=True):
        if f == 1 and t not in BINARY_TYPES:
            raise QueryError(f"binary format for type {t.name} is not supported; request text format", "0A000")
        if f not in (0, 1):
            raise QueryError(f"unsupported format code: {f}", "08P01")


def result_formats(codes: list[int], count: int) -> list[int]:
    """Bind's result-column format codes spread over ``count`` columns, as the protocol defines."""
    if not codes:
        return [0] * count
    if len(codes) == 1:
        return codes * count
    if len(codes) != count:
        raise QueryError(f"bind message has {len(codes)} result formats but query has {count} columns", "08P01")
    return list(codes)


# --- DataRow messages ---------------------------------------------------------------------------------


def data_rows(batch: pa.RecordBatch, types: list[PgType], formats: list[int]) -> bytes | memoryview:
    """The DataRow messages of every row of ``batch``, concatenated, ready to write."""
    n = batch.num_rows
    if n == 0:
        return b""
    total = pa.repeat(pa.scalar(6, pa.int32()), n)  # the int32 length field and the int16 column count
    parts: list[Any] = [pa.scalar(b"D", pa.binary()), None, pa.scalar(struct.pack("!h", len(types)), pa.binary())]
    for column, t, f in zip(batch.columns, types, formats, strict=True):
        cells = encode(column, t, binary=f == 1)
        lengths = pc.binary_length(cells)
        total = pc.add(total, pc.add(pc.fill_null(lengths, 0), 4))
        parts.append(_be32(pc.fill_null(lengths, -1)))
        parts.append(pc.fill_null(cells, b""))
    parts[1] = _be32(total)
    joined = pc.binary_join_element_wise(*parts, b"")
    offsets = memoryview(joined.buffers()[1]).cast("i")
    return memoryview(joined.buffers()[2])[offsets[joined.offset] : offsets[joined.offset + n]]


def _be32(values: pa.Array) -> pa.Array:
    """int32 values as 4-byte big-endian binary cells."""
    return _fixed_be(pc.cast(values, pa.int32()), "i", 4)


_WIDTHS = {"h": pa.int16(), "i": pa.int32(), "q": pa.int64(), "f": pa.float32(), "d": pa.float64()}


def _fixed_be(values: pa.Array, code: str, width: int) -> pa.Array:
    """Fixed-width numbers (no nulls needed) as big-endian binary cells of ``width`` bytes."""
    values = pc.cast(values, _WIDTHS[code])
    values = pc.fill_null(values, 0) if values.null_count else values
    buf = values.buffers()[1]
    raw = array(code)
    raw.frombytes(memoryview(buf)[values.offset * width : (values.offset + len(values)) * width])
    if LITTLE_ENDIAN:
        raw.byteswap()
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(values), [None, pa.py_buffer(raw)])
    return pc.cast(fixed, pa.binary())


def encode(column: pa.Array, t: PgType, *, binary: bool) -> pa.Array:
    """A column's cells as binary values in the wire format asked for; nulls stay null."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column.type, pa.ExtensionType):
        column = column.storage
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    cells = _binary_cells(column, t) if binary else _text_cells(column, t)
    if column.null_count and cells.null_count != column.null_count:
        cells = pc.if_else(pc.is_valid(column), cells, pa.scalar(None, pa.binary()))
    return cells


def _text_cells(column: pa.Array, t: PgType) -> pa.Array:
    if t is BOOL:
        return pc.if_else(column, pa.scalar(b"t", pa.binary()), pa.scalar(b"f", pa.binary()))
    if t in (INT2, INT4, INT8, DATE) or (t is NUMERIC and not pa.types.is_floating(column.type)):
        text = pc.cast(column, pa.string())
    elif t in (FLOAT4, FLOAT8):
        text = _float_text(column, t)
    elif t is TEXT:
        text = column if pa.types.is_null(column.type) else pc.cast(column, pa.string())
    elif t is TIMESTAMP or t is TIMESTAMPTZ:
        naive = pc.cast(column, pa.timestamp("us"), safe=False) if t is TIMESTAMPTZ else column
        text = _strip_fraction(pc.cast(pc.cast(naive, pa.timestamp("us"), safe=False), pa.string()))
        if t is TIMESTAMPTZ:
            text = pc.binary_join_element_wise(text, pa.scalar("+00"), "")
    elif t is TIME:
        text = _strip_fraction(pc.cast(pc.cast(column, pa.time64("us"), safe=False), pa.string()))
    elif t is JSON:
        text = json_texts(column)
    else:
        return pa.array(_python_text(column, t), pa.binary())
    return pc.cast(text, pa.binary())


def _strip_fraction(text: pa.Array) -> pa.Array:
    """``12:00:00.500000`` -> ``12:00:00.5``, ``12:00:00.000000`` -> ``12:00:00``, as PostgreSQL prints."""
    text = pc.replace_substring_regex(text, r"(\.\d*[1-9])0+$", r"\1")
    return pc.replace_substring_regex(text, r"\.0+$", "")


def _float_text(column: pa.Array, t: PgType) -> pa.Array:
    """Shortest round-trip digits laid out as PostgreSQL 12+ does (exponent below 1e-4 and from 1e15/1e6)."""
    floats = pc.cast(column, pa.float64() if t is FLOAT8 else pa.float32())
    text = pc.cast(floats, pa.string())
    magnitude = pc.abs(floats)
    high = 1e7 if t is FLOAT8 else 1e5  # below this, Arrow and PostgreSQL print the same digits the same way
    common = pc.or_(pc.equal(floats, 0), pc.and_(pc.greater_equal(magnitude, 1e-4), pc.less(magnitude, high)))
    if pc.all(pc.fill_null(common, True)).as_py():
        return text
    precision = 15 if t is FLOAT8 else 6
    pairs = zip(text.to_pylist(), common.to_pylist(), strict=True)
    fixed = [s if ok or s is None else _pg_float(s, precision) for s, ok in pairs]
    return pa.array(fixed, pa.string())


def _pg_float(shortest: str, precision: int) -> str:
    if shortest in ("inf", "-inf", "nan"):
        return {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}[shortest]
    d = Decimal(shortest)
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digits)).rstrip("0") or "0"
    e = len(digits) + exp - 1
    minus = "-" if sign else ""
    if -4 <= e < precision:
        return minus + format(abs(d).normalize(), "f")
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return f"{minus}{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"


def _python_text(column: pa.Array, t: PgType) -> list[bytes | None]:
    values = column.to_pylist()
    if t is BYTEA:
        return [None if v is None else b"\\x" + bytes(v).hex().encode() for v in values]
    if t is INTERVAL:
        return [None if v is None else _interval_text(v).encode() for v in values]
    if t is UUID_:
        return [None if v is None else str(UUID(bytes=v) if isinstance(v, bytes) else v).encode() for v in values]
    return [None if v is None else str(v).encode() for v in values]  # numeric from floats or uint64


def _interval_text(v: Any) -> str:
    """``1 year 2 mons 3 days 04:05:06.5``, as PostgreSQL's default IntervalStyle prints an interval."""
    if isinstance(v, dt.timedelta):
        months, days, micros = 0, v.days, v.seconds * 1_000_000 + v.microseconds
    else:  # pyarrow's MonthDayNano
        months, days, micros = v.months, v.days, v.nanoseconds // 1000
    years, months = divmod(abs(months), 12) if months >= 0 else (-(abs(months) // 12), -(abs(months) % 12))
    parts = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in ((years, "year"), (months, "mon"), (days, "day")) if n]
    if micros or not parts:
        sign, micros = ("-" if micros < 0 else ""), abs(micros)
        seconds, fraction = divmod(micros, 1_000_000)
        clock = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        parts.append(sign + clock + (f".{fraction:06d}".rstrip("0") if fraction else ""))
    return " ".join(parts)


def _binary_cells(column: pa.Array, t: PgType) -> pa.Array:
    if t is INT2:
        return _fixed_be(pc.cast(column, pa.int16()), "h", 2)
    if t is INT4:
        return _fixed_be(pc.cast(column, pa.int32()), "i", 4)
    if t is INT8:
        return _fixed_be(pc.cast(column, pa.int64()), "q", 8)
    if t is FLOAT4:
        return _fixed_be(pc.cast(column, pa.float32()), "f", 4)
    if t is FLOAT8:
        return _fixed_be(pc.cast(column, pa.float64()), "d", 8)
    if t is BOOL:
        return pc.if_else(column, pa.scalar(b"\x01", pa.binary()), pa.scalar(b"\x00", pa.binary()))
    if t is DATE:
        days = pc.subtract(pc.cast(pc.cast(column, pa.date32()), pa.int32()), PG_EPOCH_DAYS)
        return _fixed_be(days, "i", 4)
    if t is TIMESTAMP or t is TIMESTAMPTZ:
        us = pc.cast(pc.cast(column, pa.timestamp("us", tz=column.type.tz), safe=False), pa.int64())
        return _fixed_be(pc.subtract(us, PG_EPOCH_US), "q", 8)
    if t is BYTEA:
        return pc.cast(column, pa.binary()) if not pa.types.is_fixed_size_binary(column.type) else _rebinary(column)
    if t is NUMERIC:
        return pa.array([None if v is None else numeric_binary(Decimal(v)) for v in column.to_pylist()], pa.binary())
    if t is UUID_:
        return pa.array([None if v is None else UUID(str(v)).bytes for v in column.to_pylist()], pa.binary())
    return _text_cells(column, t)  # text and json: the binary format is the text


def _rebinary(column: pa.Array) -> pa.Array:
    return pa.array(column.to_pylist(), pa.binary())


def numeric_binary(d: Decimal) -> bytes:
    """PostgreSQL's binary numeric: ndigits, weight, sign, dscale, then base-10000 digits."""
    if d.is_nan():
        return struct.pack("!hhHh", 0, 0, 0xC000, 0)
    if d.is_infinite():
        return struct.pack("!hhHh", 0, 0, 0xD000 if d > 0 else 0xF000, 0)
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    dscale = max(0, -exp)
    fraction_groups = (dscale + 3) // 4
    n = int("".join(map(str, digits)) or "0") * 10 ** (exp + 4 * fraction_groups)  # groups aligned on the point
    groups: list[int] = []
    while n:
        n, group = divmod(n, 10000)
        groups.insert(0, group)
    weight = len(groups) - fraction_groups - 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    return struct.pack(f"!hhHh{len(groups)}H", len(groups), weight, 0x4000 if sign else 0, dscale, *groups)


def numeric_from_binary(raw: bytes) -> Decimal:
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHh", raw)
    if sign == 0xC000:
        return Decimal("NaN")
    if sign in (0xD000, 0xF000):
        return Decimal("Infinity" if sign == 0xD000 else "-Infinity")
    groups = struct.unpack_from(f"!{ndigits}H", raw, 8)
    n = int("".join(f"{g:04d}" for g in groups) or "0")
    with localcontext() as ctx:
        ctx.prec = 4 * (max(weight, 0) + 1) + dscale + 10
        value = Decimal(n).scaleb(4 * (weight - ndigits + 1)).quantize(Decimal(1).scaleb(-dscale))
    return -value if sign == 0x4000 else value


# --- bound parameters ---------------------------------------------------------------------------------

_TEXT_PARAMS: dict[int, Callable[[str], Any]] = {
    INT2.oid: int,
    INT4.oid: int,
    INT8.oid: int,
    OID.oid: int,
    FLOAT4.oid: float,
    FLOAT8.oid: float,
    NUMERIC.oid: Decimal,
    BOOL.oid: lambda s: s.strip().lower() in ("t", "true", "1", "on", "yes", "y"),
    DATE.oid: dt.date.fromisoformat,
    TIMESTAMP.oid: dt.datetime.fromisoformat,
    TIMESTAMPTZ.oid: dt.datetime.fromisoformat,
    BYTEA.oid: lambda s: bytes.fromhex(s[2:]) if s.startswith("\\x") else s.encode(),
}

_BINARY_PARAMS: dict[int, Callable[[bytes], Any]] = {
    INT2.oid: lambda b: struct.unpack("!h", b)[0],
    INT4.oid: lambda b: struct.unpack("!i", b)[0],
    INT8.oid: lambda b: struct.unpack("!q", b)[0],
    OID.oid: lambda b: struct.unpack("!I", b)[0],
    FLOAT4.oid: lambda b: struct.unpack("!f", b)[0],
    FLOAT8.oid: lambda b: struct.unpack("!d", b)[0],
    BOOL.oid: lambda b: b != b"\x00",
    BYTEA.oid: bytes,
    NUMERIC.oid: numeric_from_binary,
    UUID_.oid: lambda b: str(UUID(bytes=b)),
    JSONB.oid: lambda b: b[1:].decode(),
    DATE.oid: lambda b: dt.date(2000, 1, 1) + dt.timedelta(days=struct.unpack("!i", b)[0]),
    TIMESTAMP.oid: lambda b: dt.datetime(2000, 1, 1) + dt.timedelta(microseconds=struct.unpack("!q", b)[0]),
    TIMESTAMPTZ.oid: lambda b: (
        dt.datetime(2000, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=struct.unpack("!q", b)[0])
    ),
}
_TEXTUAL = {0, TEXT.oid, VARCHAR.oid, BPCHAR.oid, NAME.oid, UNKNOWN.oid, JSON.oid, JSONB.oid, UUID_.oid}


def decode_param(raw: bytes | None, oid: int, binary: bool) -> Any:
    """A bound parameter as a Python value, by its declared type (0 = unspecified: text)."""
    if raw is None:
        return None
    try:
        if binary:
            if oid in _BINARY_PARAMS:
                return _BINARY_PARAMS[oid](raw)
            if oid in _TEXTUAL:
                return raw.decode()
            raise QueryError(f"binary format for parameters of type oid {oid} is not supported", "0A000")
        text = raw.decode()
        return _TEXT_PARAMS[oid](text) if oid in _TEXT_PARAMS else text
    except QueryError:
        raise
    except (ValueError, struct.error, UnicodeDecodeError, ArithmeticError) as exc:
        name = TYPES[oid].name if oid in TYPES else f"oid {oid}"
        raise QueryError(f"invalid input for parameter of type {name}: {raw[:40]!r}", "22P02") from exc
