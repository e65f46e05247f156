"""DuckDB-dialect SELECTs as Spark SQL: sqlglot's translation plus a few named rewrites on its tree.

Jobs write one SELECT in DuckDB's dialect (``engines/ingest_sql.py``, ``engines/xdm_sql.py``); the
Spark engine hands it to :func:`to_spark`, never a second hand-written copy. sqlglot maps most of the
dialect; each function below rewrites one construct it does not map (or maps with other semantics),
so that Spark computes what DuckDB computes. Table functions that read files become :class:`Scan`
descriptions that the engine turns into temporary views (this module does not import pyspark).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import sqlglot
from sqlglot import exp

NUMBER_SHAPE = r"\s*[+-]?([0-9]+\.?[0-9]*([eE][+-]?[0-9]+)?|\.[0-9]+([eE][+-]?[0-9]+)?|inf|infinity|nan)\s*"
"""What DuckDB's DOUBLE cast reads (case-insensitive); Java's parser also reads ``1d``, ``0x1p3``, ``1f``."""
DATE_SHAPE = r"\s*[0-9]{4,}-[0-9]{1,2}-[0-9]{1,2}\s*"
TIMESTAMP_SHAPE = (
    r"\s*[0-9]{4,}-[0-9]{1,2}-[0-9]{1,2}([T ][0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2}(\.[0-9]+)?)?)?"
    r"\s*(Z|z|UTC|[+-][0-9]{1,2}(:?[0-9]{2})?)?\s*"
)
"""What DuckDB's DATE and TIMESTAMPTZ casts read; Spark's also read ``2025``, ``2025-05`` and ``T20:19``."""


class UnsupportedSql(ValueError):
    """The statement uses DuckDB SQL that has no faithful Spark translation (the message says which)."""


@dataclass(frozen=True)
class Scan:
    """A file-reading table function of the statement: what to read and how (DuckDB's option names)."""

    kind: str
    """``csv``, ``parquet`` or ``json_objects``."""
    paths: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    """Option name (lower case) → Python value: str, bool, int, or a dict for ``columns``."""


Register = Callable[[Scan], str]
"""Turns a scan into a temporary view and returns the view's name."""


def _value(node: exp.Expression) -> Any:
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else int(node.this) if node.this.lstrip("-").isdigit() else float(node.this)
    if isinstance(node, exp.Struct):
        out: dict[str, Any] = {}
        for item in node.expressions:
            if isinstance(item, exp.PropertyEQ | exp.Slice):
                out[item.this.name] = _value(item.expression)
            else:
                raise UnsupportedSql(f"struct item {item.sql('duckdb')}")
        return out
    if isinstance(node, exp.Array):
        return [_value(e) for e in node.expressions]
    if isinstance(node, exp.Neg):
        return -_value(node.this)
    raise UnsupportedSql(f"table function argument {node.sql('duckdb')}")


def _scan_of(func: exp.Expression) -> Scan | None:
    """The scan a table function call describes, or None when the call is no file-reading function."""
    if isinstance(func, exp.ReadCSV):
        kind, args = "csv", [func.this, *func.expressions]
    elif isinstance(func, exp.ReadParquet):
        kind, args = "parquet", list(func.expressions)
    elif isinstance(func, exp.Anonymous) and func.name.lower() in ("read_json_objects", "read_csv", "read_parquet"):
        kind, args = func.name.lower().removeprefix("read_"), list(func.expressions)
    else:
        return None
    positional = [a for a in args if not isinstance(a, exp.EQ)]
    if len(positional) != 1:
        raise UnsupportedSql(f"read_{kind} takes one path or one list of paths")
    first = _value(positional[0])
    paths = tuple(first) if isinstance(first, list) else (first,)
    options = {a.this.name.lower(): _value(a.expression) for a in args if isinstance(a, exp.EQ)}
    return Scan(kind, tuple(str(p) for p in paths), options)


def table_functions_to_views(tree: exp.Expression, register: Register) -> exp.Expression:
    """``FROM read_csv(...)``, ``read_parquet(path | [paths], file_row_number = true)``, ``read_json_objects(...)``
    → ``FROM <view>``: the engine reads the files with Spark's DataFrameReader under DuckDB's options."""
    for table in list(tree.find_all(exp.Table)):
        scan = _scan_of(table.this)
        if scan is None:
            continue
        view = register(scan)
        alias = table.args.get("alias")
        replacement = exp.Table(this=exp.to_identifier(view))
        if alias is not None:
            replacement.set("alias", alias.copy())
        table.replace(replacement)
    return tree


def regexp_full_match_to_rlike(tree: exp.Expression) -> exp.Expression:
    """``regexp_full_match(x, p)`` → ``x RLIKE '^(?:p)$'`` (Spark has no whole-string match)."""

    def anchored(pattern: exp.Expression) -> exp.Expression:
        if isinstance(pattern, exp.Literal) and pattern.is_string:
            return exp.Literal.string(f"^(?:{pattern.this})$")
        return exp.Anonymous(
            this="concat", expressions=[exp.Literal.string("^(?:"), pattern.copy(), exp.Literal.string(")$")]
        )

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.RegexpFullMatch):
            return exp.RegexpLike(this=node.this.copy(), expression=anchored(node.expression))
        if isinstance(node, exp.Anonymous) and node.name.lower() == "regexp_full_match":
            subject, pattern = node.expressions[:2]
            return exp.RegexpLike(this=subject.copy(), expression=anchored(pattern))
        return node

    return tree.transform(swap)


def regexp_matches_to_rlike(tree: exp.Expression) -> exp.Expression:
    """``regexp_matches(x, p)`` (DuckDB: p occurs somewhere in x) → ``x RLIKE p``."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.RegexpLike | exp.Anonymous) and node.sql("duckdb").upper().startswith(
            "REGEXP_MATCHES("
        ):
            args = [node.this, node.expression] if isinstance(node, exp.RegexpLike) else node.expressions
            return exp.RegexpLike(this=args[0].copy(), expression=args[1].copy())
        return node

    return tree.transform(swap)


def first_regexp_replace(tree: exp.Expression) -> exp.Expression:
    """DuckDB's ``regexp_replace`` without ``'g'`` replaces the first match, Spark's every match: the same
    only when the pattern is anchored (``^...`` or ``...$``, which match once); anything else is refused."""
    for node in tree.find_all(exp.RegexpReplace):
        modifiers = node.args.get("modifiers")
        if modifiers is not None:
            flags = modifiers.name if isinstance(modifiers, exp.Literal) else ""
            if set(flags) - {"g"}:
                raise UnsupportedSql(f"regexp_replace options {flags!r}")
            node.set("modifiers", None)
            node.set("single_replace", None)
            if "g" in flags:
                continue
        pattern = node.expression
        literal = pattern.this if isinstance(pattern, exp.Literal) and pattern.is_string else None
        if literal is None or not (literal.startswith("^") or (literal.endswith("$") and not literal.endswith("\\$"))):
            raise UnsupportedSql("regexp_replace of the first match of an unanchored pattern (add 'g' or anchor it)")
        node.set("single_replace", None)
    return tree


def _substitute(template: str, **values: exp.Expression) -> exp.Expression:
    """``template`` (Spark SQL) with each column ``__name`` replaced by a copy of ``values[name]``."""
    tree = sqlglot.parse_one(template, read="spark")

    def put(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name.startswith("__"):
            return values[node.name[2:]].copy()
        return node

    return tree.transform(put)


def isfinite_to_checks(tree: exp.Expression) -> exp.Expression:
    """``isfinite(x)`` → ``NOT isnan(x) AND abs(x) <> double('Infinity')`` (Spark has no isfinite)."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and node.name.lower() == "isfinite":
            x = node.expressions[0]
            return exp.paren(_substitute("NOT isnan(__x) AND abs(__x) <> double('Infinity')", x=x))
        return node

    return tree.transform(swap)


def _shape_guard(try_cast: exp.Expression, shape: str) -> exp.Expression:
    text = try_cast.this
    guarded = exp.TryCast(this=text.copy(), to=try_cast.args["to"].copy(), safe=True)
    guarded.meta["shape_checked"] = True
    return _substitute(
        f"CASE WHEN __t RLIKE {_spark_string('(?i)^(?:' + shape + ')$')} THEN __c END", t=text, c=guarded
    )


def _spark_string(value: str) -> str:
    return exp.Literal.string(value).sql("spark")


def try_cast_text_like_duckdb(tree: exp.Expression) -> exp.Expression:
    """``TRY_CAST(text AS DOUBLE | DATE | TIMESTAMPTZ)`` reads only what DuckDB's cast reads.

    Spark's string casts read more (``1d``, ``0x1p3``, ``2025``, ``2025-05``), which DuckDB turns into
    NULL, i.e. a rejected value: a shape check before the cast keeps both engines' answers the same.
    Applied to casts of text only (a cast of a column of unknown type is guarded too: the check is on
    its text, which is the value for the types that can reach these casts).
    """
    shapes = {
        exp.DataType.Type.DOUBLE: NUMBER_SHAPE,
        exp.DataType.Type.FLOAT: NUMBER_SHAPE,
        exp.DataType.Type.DATE: DATE_SHAPE,
        exp.DataType.Type.TIMESTAMPTZ: TIMESTAMP_SHAPE,
        exp.DataType.Type.TIMESTAMP: TIMESTAMP_SHAPE,
    }

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.TryCast) and not node.meta.get("shape_checked"):
            to = node.args.get("to")
            if isinstance(to, exp.DataType) and to.this in shapes and _is_text(node.this):
                return exp.paren(_shape_guard(node, shapes[to.this]))
        return node

    return tree.transform(swap)


def _is_text(node: exp.Expression) -> bool:
    """Whether ``node`` is (likely) text: not a number literal or an arithmetic result."""
    return not (isinstance(node, exp.Literal) and not node.is_string) and not isinstance(node, exp.Binary)


def timestamptz_to_timestamp(tree: exp.Expression) -> exp.Expression:
    """``TIMESTAMPTZ`` → ``TIMESTAMP``: Spark's TIMESTAMP is an instant shown in the session time zone (UTC),
    written to Parquet as an adjusted-to-UTC microsecond timestamp, as DuckDB writes TIMESTAMPTZ."""
    for node in tree.find_all(exp.DataType):
        if node.this is exp.DataType.Type.TIMESTAMPTZ:
            node.set("this", exp.DataType.Type.TIMESTAMP)
    return tree


def to_json_of_row(tree: exp.Expression) -> exp.Expression:
    """``to_json(t)`` of a whole row (``t`` a table alias) → ``to_json(struct(t.*))``."""
    aliases = {a.name for a in tree.find_all(exp.TableAlias) if a.name}

    def swap(node: exp.Expression) -> exp.Expression:
        if (
            isinstance(node, exp.Anonymous | exp.JSONFormat)
            and node.sql("duckdb").upper().startswith("TO_JSON(")
            and len(_args(node)) == 1
        ):
            arg = _args(node)[0]
            if isinstance(arg, exp.Column) and not arg.table and arg.name in aliases:
                star = exp.Column(this=exp.Star(), table=exp.to_identifier(arg.name))
                return exp.Anonymous(this="to_json", expressions=[exp.Struct(expressions=[star])])
        return node

    return tree.transform(swap)


def _args(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    return [a for a in (node.this, *node.expressions) if a is not None]


REWRITES: tuple[Callable[[exp.Expression], exp.Expression], ...] = (
    regexp_full_match_to_rlike,
    regexp_matches_to_rlike,
    first_regexp_replace,
    isfinite_to_checks,
    try_cast_text_like_duckdb,
    timestamptz_to_timestamp,
    to_json_of_row,
)
"""The named rewrites, in the order they apply (after the table functions became views)."""


def to_spark(sql: str, register: Register) -> str:
    """The Spark SQL for the DuckDB-dialect ``sql``; file-reading table functions go to ``register``.

    Raises :class:`UnsupportedSql` when the statement uses something without a faithful translation.
    """
    try:
        tree = cast(exp.Expression, sqlglot.parse_one(sql, read="duckdb"))
    except sqlglot.errors.ParseError as exc:
        raise UnsupportedSql(f"the statement cannot be parsed: {exc.errors[0].get('description', '')}") from exc
    tree = table_functions_to_views(tree, register)
    for rewrite in REWRITES:
        tree = rewrite(tree)
    try:
        return tree.sql(dialect="spark", unsupported_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.UnsupportedError as exc:
        raise UnsupportedSql(str(exc).splitlines()[0]) from exc
