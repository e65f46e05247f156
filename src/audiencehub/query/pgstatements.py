"""The statements the PostgreSQL front end handles itself, and each connection's settings.

A simple Query is split into statements on semicolons outside quotes and comments; each statement is
classified by its first words: transaction control, ``SET``/``SHOW``/``RESET`` of the session settings
clients send, cursors (``DECLARE``/``FETCH``/``MOVE``/``CLOSE``), ``DISCARD``, ``DEALLOCATE``, or a
query for the executor (or the catalog). Lexing is token-based, never a pattern over the query's meaning.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from audiencehub import __version__
from audiencehub.query.errors import QueryError
from audiencehub.query.session import Column, Result

log = logging.getLogger(__name__)

SERVER_VERSION = f"15.0 (audiencehub {__version__})"

_TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<line>--[^\n]*)|(?P<block>/\*)
    |(?P<str>[eE]?'(?:[^'\\]|\\.|'')*(?:'|$))|(?P<ident>"(?:[^"]|"")*(?:"|$))|(?P<bq>`(?:[^`]|``)*(?:`|$))
    |(?P<dollar>\$(?:[A-Za-z_]\w*)?\$)|(?P<param>\$\d+)|(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
    |(?P<word>[^\W\d][\w$]*)|(?P<op>.)""",
    re.X | re.S,
)


@dataclass(frozen=True)
class Token:
    kind: str  # word (lower-cased), ident (unquoted), str (unquoted), num, param, op
    text: str
    start: int
    end: int


def tokens(sql: str) -> list[Token]:
    """SQL's tokens, comments and whitespace dropped; enough to split and classify statements."""
    out: list[Token] = []
    i = 0
    while i < len(sql):
        m = _TOKEN.match(sql, i)
        assert m is not None  # the last alternative matches any character
        kind, text, end = m.lastgroup or "op", m.group(), m.end()
        if kind == "block":  # block comments nest in PostgreSQL
            depth, end = 1, i + 2
            while depth and end < len(sql):
                if sql.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif sql.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                else:
                    end += 1
        elif kind == "dollar":
            close = sql.find(text, end)
            end = len(sql) if close < 0 else close + len(text)
            out.append(Token("str", sql[m.end() : max(close, m.end())], i, end))
        elif kind == "word":
            out.append(Token("word", text.lower(), i, end))
        elif kind == "ident":
            out.append(Token("ident", text[1:-1].replace('""', '"'), i, end))
        elif kind == "str":
            body = text[2:-1] if text[0] in "eE" else text[1:-1]
            out.append(Token("str", body.replace("''", "'"), i, end))
        elif kind in ("num", "param", "op", "bq"):
            out.append(Token(kind, text, i, end))
        i = end
    return out


def split(sql: str) -> list[str]:
    """The statements of a simple Query message, split on semicolons outside quotes and comments."""
    parts, start = [], 0
    for t in tokens(sql):
        if t.kind == "op" and t.text == ";":
            parts.append(sql[start : t.start])
            start = t.end
    parts.append(sql[start:])
    return [p for p in parts if tokens(p)]


@dataclass(frozen=True)
class Statement:
    """One statement, classified. ``kind`` ``query`` goes to the executor (or the catalog); the rest the
    front end handles: begin, commit, rollback, savepoint, release, set, reset, show, declare, fetch, move,
    close, discard, deallocate, empty."""

    kind: str
    sql: str
    name: str | None = None  # cursor, setting or prepared statement
    value: str | None = None  # SET's value (None: DEFAULT)
    count: int | None = None  # FETCH/MOVE rows; None: ALL
    query: str | None = None  # DECLARE's query
    binary: bool = False
    hold: bool = False
    tag: str = ""


def classify(sql: str) -> Statement:
    ts = tokens(sql)
    if not ts:
        return Statement("empty", sql)
    words = [t.text if t.kind == "word" else "" for t in ts]
    first = words[0]
    if first in ("begin", "start"):
        return Statement("begin", sql, tag="BEGIN")
    if first in ("commit", "end"):
        return Statement("commit", sql, tag="COMMIT")
    if first in ("rollback", "abort"):
        if "to" in words[1:3]:
            return Statement("savepoint", sql, tag="ROLLBACK")
        return Statement("rollback", sql, tag="ROLLBACK")
    if first == "savepoint":
        return Statement("savepoint", sql, tag="SAVEPOINT")
    if first == "release":
        return Statement("savepoint", sql, tag="RELEASE")
    if first == "set":
        return _set(sql, ts)
    if first == "reset":
        name = _name(ts[1:]) if len(ts) > 1 else None
        if name == "all" or (name is not None and name in GUCS):
            return Statement("reset", sql, name=None if name == "all" else name, tag="RESET")
    if first == "show":
        return _show(sql, ts)
    if first == "declare":
        return _declare(sql, ts)
    if first in ("fetch", "move"):
        return _fetch(sql, ts)
    if first == "close" and len(ts) == 2:
        name = None if words[1] == "all" else _ident(ts[1])
        return Statement("close", sql, name=name, tag="CLOSE CURSOR")
    if first == "discard":
        return Statement("discard", sql, tag=f"DISCARD {words[1].upper() if len(ts) > 1 else 'ALL'}")
    if first == "deallocate":
        rest = ts[2:] if words[1:2] == ["prepare"] else ts[1:]
        name = None if rest and rest[0].text == "all" else (_ident(rest[0]) if rest else None)
        return Statement("deallocate", sql, name=name, tag="DEALLOCATE" if name else "DEALLOCATE ALL")
    return Statement("query", sql)


def _ident(t: Token) -> str:
    return t.text  # words are already lower-cased, quoted identifiers kept as written


def _name(ts: Sequence[Token]) -> str | None:
    """A setting's name (``a`` or ``a.b``), lower-cased; None if the tokens do not start with one."""
    if not ts or ts[0].kind not in ("word", "ident"):
        return None
    if len(ts) >= 3 and ts[1].text == "." and ts[2].kind in ("word", "ident"):
        return f"{ts[0].text}.{ts[2].text}".lower()
    return ts[0].text.lower()


def _set(sql: str, ts: list[Token]) -> Statement:
    rest = ts[1:]
    if rest and rest[0].text in ("session", "local") and rest[0].kind == "word":
        rest = rest[1:]
    words = [t.text for t in rest]
    if words[:1] in (["transaction"], ["characteristics"]):  # SET TRANSACTION ..., SET SESSION CHARACTERISTICS ...
        return Statement("set", sql, tag="SET")
    name: str | None
    if words[:2] == ["time", "zone"]:
        name, values = "timezone", rest[2:]
    elif words[:1] == ["schema"]:
        name, values = "search_path", rest[1:]
    elif words[:1] == ["names"]:
        name, values = "client_encoding", rest[1:]
    else:
        name = _name(rest)
        skip = 3 if len(rest) >= 3 and rest[1].text == "." else 1
        values = rest[skip + 1 :] if len(rest) > skip and rest[skip].text in ("to", "=") else []
        if not values:
            return Statement("query", sql)
    if name is None or name not in GUCS or not GUCS[name].settable:
        return Statement("query", sql)  # the executor answers (and refuses engine settings)
    value = ", ".join(t.text for t in values if t.text != ",")
    is_default = len(values) == 1 and values[0].kind == "word" and values[0].text in ("default", "local")
    return Statement("set", sql, name=name, value=None if is_default else value, tag="SET")


_SPARK_SHOW = {"tables", "table", "columns", "databases", "schemas", "views", "functions", "create", "tblproperties"}
_SPARK_SHOW |= {"partitions", "catalogs"}


def _show(sql: str, ts: list[Token]) -> Statement:
    words = [t.text for t in ts[1:]]
    if words[:2] == ["time", "zone"]:
        name: str | None = "timezone"
    elif words[:3] == ["transaction", "isolation", "level"]:
        name = "transaction_isolation"
    else:
        name = _name(ts[1:])
    if name in _SPARK_SHOW:
        return Statement("query", sql)  # SHOW TABLES and the like: the executor's
    return Statement("show", sql, name=name, tag="SHOW")


def _declare(sql: str, ts: list[Token]) -> Statement:
    words = [t.text if t.kind == "word" else "" for t in ts]
    if len(ts) < 4 or "for" not in words:
        raise QueryError("syntax error in DECLARE: expected DECLARE name CURSOR FOR query", "42601")
    at = words.index("for")
    options = words[2:at]
    if "cursor" not in options:
        raise QueryError("syntax error in DECLARE: expected CURSOR", "42601")
    if "scroll" in options and "no" not in options:
        raise QueryError("scrollable cursors are not supported: declare it NO SCROLL", "0A000")
    return Statement(
        "declare",
        sql,
        name=_ident(ts[1]),
        query=sql[ts[at].end :].strip(),
        binary="binary" in options,
        hold="with" in options and "hold" in options,
        tag="DECLARE CURSOR",
    )


def _fetch(sql: str, ts: list[Token]) -> Statement:
    verb = ts[0].text
    rest = [t for t in ts[1:] if not (t.kind == "word" and t.text in ("from", "in"))]
    if not rest:
        raise QueryError(f"syntax error in {verb.upper()}: a cursor name is needed", "42601")
    name, direction = _ident(rest[-1]), rest[:-1]
    words = [t.text for t in direction]
    count: int | None = 1
    if words and words[0] == "forward":
        words = words[1:] or ["1"]
    if words in ([], ["next"]):
        count = 1
    elif words == ["all"]:
        count = None
    elif len(words) == 1 and words[0].isdigit():
        count = int(words[0])
    else:
        raise QueryError(f"cursor can only scan forward: {verb.upper()} {' '.join(words).upper()}", "55000")
    return Statement(verb, sql, name=name, count=count, tag=verb.upper())


@dataclass(frozen=True)
class Guc:
    name: str  # as PostgreSQL spells it in ParameterStatus and SHOW ALL
    default: str
    reported: bool = False  # sent as ParameterStatus at start and when it changes
    settable: bool = False
    allowed: tuple[str, ...] = ()  # lower-case values accepted by SET; empty: any
    description: str = ""


_UTC = ("utc", "gmt", "etc/utc", "etc/gmt", "etc/universal", "universal", "uct", "zulu", "z", "+00", "0", "00:00")
GUCS: dict[str, Guc] = {
    g.name.lower(): g
    for g in (
        Guc("application_name", "", reported=True, settable=True, description="Sets the application name."),
        Guc("client_encoding", "UTF8", reported=True, settable=True, allowed=("utf8", "utf-8", "unicode")),
        Guc("DateStyle", "ISO, MDY", reported=True, settable=True, description="Only ISO output is supported."),
        Guc("default_transaction_read_only", "off", reported=True, settable=True),
        Guc("in_hot_standby", "off", reported=True),
        Guc("integer_datetimes", "on", reported=True),
        Guc("IntervalStyle", "postgres", reported=True, settable=True, allowed=("postgres",)),
        Guc("is_superuser", "off", reported=True),
        Guc("server_encoding", "UTF8", reported=True),
        Guc("server_version", SERVER_VERSION, reported=True),
        Guc("session_authorization", "", reported=True),
        Guc("standard_conforming_strings", "on", reported=True, settable=True, allowed=("on", "true")),
        Guc("TimeZone", "UTC", reported=True, settable=True, allowed=_UTC, description="Only UTC is supported."),
        Guc("server_version_num", "150000"),
        Guc("extra_float_digits", "1", settable=True, description="Floats are always sent in shortest exact form."),
        Guc("search_path", '"$user", public', settable=True),
        Guc("bytea_output", "hex", settable=True, allowed=("hex",)),
        Guc("transaction_isolation", "read committed", settable=True),
        Guc("default_transaction_isolation", "read committed", settable=True),
        Guc("transaction_read_only", "off", settable=True),
        Guc("max_identifier_length", "63"),
        Guc("lc_collate", "C.UTF-8"),
        Guc("lc_ctype", "C.UTF-8"),
    )
}


class ServerSettings:
    """One connection's settings: what SHOW answers and ParameterStatus reports."""

    def __init__(self, user: str) -> None:
        self.values = {key: g.default for key, g in GUCS.items()}
        self.values["session_authorization"] = user

    def reported(self) -> list[tuple[str, str]]:
        return [(g.name, self.values[key]) for key, g in GUCS.items() if g.reported]

    def apply_startup(self, params: dict[str, str]) -> None:
        """Startup packet parameters: known settings are applied; a time zone other than UTC is ignored."""
        for key, value in params.items():
            if key.lower() in GUCS and GUCS[key.lower()].settable:
                try:
                    self.set(key.lower(), value)
                except QueryError:
                    log.info("ignoring startup parameter %s=%r", key, value)

    def set(self, name: str, value: str | None) -> tuple[str, str] | None:
        """Sets (None: resets) a setting; the ParameterStatus to send, if it is reported."""
        g = GUCS[name]
        value = g.default if value is None else value
        low = value.strip().lower()
        if name == "datestyle":
            parts = [p.strip().lower() for p in low.split(",") if p.strip()]
            if any(p not in ("iso", "mdy", "dmy", "ymd", "us", "euro", "european", "noneuropean") for p in parts):
                raise QueryError(f"DateStyle {value!r} is not supported: output is always ISO", "0A000")
            order = next((p.upper() for p in parts if p in ("mdy", "dmy", "ymd")), "MDY")
            value = f"ISO, {order}"
        elif g.allowed and low not in g.allowed:
            raise QueryError(f"{g.name} {value!r} is not supported: only {g.default} is", "0A000")
        elif g.allowed:
            value = g.default
        elif name == "extra_float_digits" and not re.fullmatch(r"-?\d+", low):
            raise QueryError(f'invalid value for parameter "extra_float_digits": "{value}"', "22023")
        self.values[name] = value
        return (g.name, value) if g.reported else None

    def show(self, name: str | None) -> Result:
        if name == "all":
            rows = [(g.name, self.values[key], g.description) for key, g in GUCS.items()]
            names = ["name", "setting", "description"]
            table = pa.table([pa.array(list(col), pa.string()) for col in zip(*rows, strict=True)], names=names)
            return table_result(table, "SHOW")
        if name is None or name not in GUCS:
            raise QueryError(f'unrecognized configuration parameter "{name}"', "42704")
        table = pa.table({name: pa.array([self.values[name]], pa.string())})
        return table_result(table, "SHOW")


def table_result(table: pa.Table, tag: str) -> Result:
    columns = [Column(f.name, f.type) for f in table.schema]
    return Result(tag=tag, columns=columns, batches=iter(table.to_batches()))
