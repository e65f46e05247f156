"""DuckDB-dialect SELECTs as Spark SQL: sqlglot's translation plus a few named rewrites on its tree.

Jobs write one SELECT in DuckDB's dialect (``engines/ingest_sql.py``, ``engines/xdm_sql.py``); the
Spark engine hands it to :func:`to_spark`, never a second hand-written copy. sqlglot maps most of the
dialect; each function below rewrites one construct it does not map (or maps with other semantics),
so that Spark computes what DuckDB computes (the JSON ones live in ``engines/spark_json.py``, those of
lists and structs in ``engines/spark_lists.py``, the helpers they share in ``engines/spark_tree.py``).
Table functions that read files become :class:`Scan` descriptions that the engine turns into temporary
views (this module does not import pyspark).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.helper import seq_get

from audiencehub.engines.spark_json import (
    json_extract_to_variant_get,
    json_keys_of_variant,
    json_merge_patch_to_map_concat,
    json_object_to_variant,
    json_text_of_variant,
    json_type_of_variant,
    to_json_as_variant,
    to_json_of_row,
)
from audiencehub.engines.spark_lists import (
    lambda_index_one_based,
    lateral_generators_to_lateral_view,
    list_index_one_based,
    ordered_first_to_min_by,
    ordered_list_to_sorted_collect,
    side_by_side_unnests_to_zipped_inline,
    struct_insert_to_struct,
)
from audiencehub.engines.spark_tree import UnsupportedSql, bottom_up, substitute

NUMBER_SHAPE = r"\s*[+-]?([0-9]+\.?[0-9]*([eE][+-]?[0-9]+)?|\.[0-9]+([eE][+-]?[0-9]+)?|inf|infinity|nan)\s*"
"""What DuckDB's DOUBLE cast reads (case-insensitive); Java's parser also reads ``1d``, ``0x1p3``, ``1f``."""
DATE_SHAPE = r"\s*[0-9]{4,}-[0-9]{1,2}-[0-9]{1,2}\s*"
TIMESTAMP_SHAPE = (
    r"\s*[0-9]{4,}-[0-9]{1,2}-[0-9]{1,2}([T ][0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2}(\.[0-9]+)?)?)?"
    r"\s*(Z|z|UTC|[+-][0-9]{1,2}(:?[0-9]{2})?)?\s*"
)
"""What DuckDB's DATE and TIMESTAMPTZ casts read; Spark's also read ``2025``, ``2025-05`` and ``T20:19``."""


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

    return bottom_up(tree, swap)


def regexp_matches_to_rlike(tree: exp.Expression) -> exp.Expression:
    """``regexp_matches(x, p)`` (DuckDB: p occurs somewhere in x) → ``x RLIKE p``."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.RegexpLike | exp.Anonymous) and node.sql("duckdb").upper().startswith(
            "REGEXP_MATCHES("
        ):
            args = [node.this, node.expression] if isinstance(node, exp.RegexpLike) else node.expressions
            return exp.RegexpLike(this=args[0].copy(), expression=args[1].copy())
        return node

    return bottom_up(tree, swap)


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


def isfinite_to_checks(tree: exp.Expression) -> exp.Expression:
    """``isfinite(x)`` → ``NOT isnan(x) AND abs(x) <> double('Infinity')`` (Spark has no isfinite)."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and node.name.lower() == "isfinite":
            x = node.expressions[0]
            return exp.paren(substitute("NOT isnan(__x) AND abs(__x) <> double('Infinity')", x=x))
        return node

    return bottom_up(tree, swap)


INTERVAL_ARGS = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
"""``make_interval``'s arguments in order (DuckDB's ``to_{unit}`` functions are one each)."""
RENAMED = {"epoch_us": "unix_micros", "suffix": "endswith"}
"""DuckDB functions that Spark has under another name, with the same arguments and result."""


def interval_functions_to_make_interval(tree: exp.Expression) -> exp.Expression:
    """``to_days(n)`` (and ``to_seconds`` ... ``to_years``) → ``make_interval(0, 0, 0, n)``: Spark has no ``to_*``
    interval functions; ``make_interval`` takes the amount in its unit's place (the segment compiler's ``occurs``).
    And the functions of :data:`RENAMED`, which Spark has under other names."""

    def swap(node: exp.Expression) -> exp.Expression:
        name = "to_days" if isinstance(node, exp.ToDays) else node.name.lower()
        unit = name[3:] if name.startswith("to_") else ""
        if isinstance(node, exp.Anonymous) and name in RENAMED:
            return exp.Anonymous(this=RENAMED[name], expressions=[e.copy() for e in node.expressions])
        if unit not in INTERVAL_ARGS or not isinstance(node, exp.ToDays | exp.Anonymous):
            return node
        amount = node.this if isinstance(node, exp.ToDays) else node.expressions[0]
        zeros = [exp.Literal.number(0) for _ in range(INTERVAL_ARGS.index(unit))]
        return exp.Anonymous(this="make_interval", expressions=[*zeros, amount.copy()])

    return bottom_up(tree, swap)


def _shape_guard(try_cast: exp.Expression, shape: str) -> exp.Expression:
    text = try_cast.this
    guarded = exp.TryCast(this=text.copy(), to=try_cast.args["to"].copy(), safe=True)
    guarded.meta["shape_checked"] = True
    return substitute(f"CASE WHEN __t RLIKE {_spark_string('(?i)^(?:' + shape + ')$')} THEN __c END", t=text, c=guarded)


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

    return bottom_up(tree, swap)


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


# -- grouping, numbers, times and row sources ------------------------------------------------------


def aggregate_order_in_subquery(tree: exp.Expression) -> exp.Expression:
    """``SELECT ... GROUP BY ... ORDER BY agg(...)`` → the aggregates ordered by become hidden columns of a subquery
    that the outer SELECT orders by (Spark cannot resolve them next to a window function over the groups)."""
    if not isinstance(tree, exp.Select) or not tree.args.get("group") or not tree.args.get("order"):
        return tree
    order = tree.args["order"]
    if not any(o.find(exp.AggFunc) for o in order.expressions):
        return tree
    inner = tree.copy()
    inner.set("order", None)
    outputs = []
    for i, e in enumerate(inner.expressions):
        name = e.alias_or_name if isinstance(e, exp.Alias | exp.Column) else ""
        inner.expressions[i] = exp.alias_(e.unalias() if isinstance(e, exp.Alias) else e, f"__c{i}", quoted=True)
        outputs.append(exp.alias_(exp.column(f"__c{i}", quoted=True), name or f"_c{i}", quoted=True))
    ordered = []
    for i, o in enumerate(order.expressions):
        inner.append("expressions", exp.alias_(o.this.copy(), f"__o{i}", quoted=True))
        ordered.append(
            exp.Ordered(
                this=exp.column(f"__o{i}", quoted=True), desc=o.args.get("desc"), nulls_first=o.args.get("nulls_first")
            )
        )
    outer = exp.select(*outputs).from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("__g"))))
    outer.set("order", exp.Order(expressions=ordered))
    return outer


def hugeint_to_decimal(tree: exp.Expression) -> exp.Expression:
    """``HUGEINT`` (128-bit) → ``DECIMAL(38, 0)``, Spark's widest integer."""
    for node in tree.find_all(exp.DataType):
        if node.this is exp.DataType.Type.INT128:
            node.replace(exp.DataType.build("DECIMAL(38, 0)"))
    return tree


def epoch_seconds_to_timestamp(tree: exp.Expression) -> exp.Expression:
    """``to_timestamp(seconds)`` → ``timestamp_micros(round(seconds * 1e6))`` (sqlglot's from_unixtime is text)."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.UnixToTime) and node.args.get("scale") is None:
            return substitute("timestamp_micros(CAST(round(__s * 1000000) AS BIGINT))", s=node.this)
        return node

    return bottom_up(tree, swap)


def range_table_to_spark_range(tree: exp.Expression) -> exp.Expression:
    """``FROM range(a, b[, step])`` / ``generate_series(...)`` (DuckDB: one BIGINT column named after the function;
    ``generate_series`` includes its end) → ``FROM (SELECT id AS range FROM range(a, b, step))``: Spark's range
    table function, which counts in its tasks instead of exploding a list built in one row. Only integer series:
    a series of dates or timestamps is refused by name."""
    for table in list(tree.find_all(exp.Table)):
        series = table.this
        if not isinstance(series, exp.GenerateSeries):
            continue
        start, end, step = series.args.get("start"), series.args.get("end"), series.args.get("step")
        if any(isinstance(a, exp.Interval) for a in (start, end, step)) or end is None:
            raise UnsupportedSql(f"a range of dates or timestamps: {series.sql('duckdb')}")
        step = step.copy() if step is not None else exp.Literal.number(1)
        name = "range" if series.args.get("is_end_exclusive") else "generate_series"
        past_end = "__e + CASE WHEN __s < 0 THEN -1 ELSE 1 END"
        stop = end.copy() if name == "range" else substitute(past_end, e=end, s=step)
        call = exp.Anonymous(this="range", expressions=[start.copy() if start else exp.Literal.number(0), stop, step])
        body = exp.select(exp.column("id").as_(name)).from_(exp.Table(this=call))
        alias = table.args.get("alias")
        table.replace(
            exp.Subquery(this=body, alias=alias.copy() if alias else exp.TableAlias(this=exp.to_identifier(name)))
        )
    return tree


def row_number_in_file_order(tree: exp.Expression) -> exp.Expression:
    """``row_number() OVER ()`` (DuckDB: the scan's order) → ``OVER (ORDER BY monotonically_increasing_id())``,
    which follows the files' partitions in order."""
    for node in tree.find_all(exp.Window):
        if isinstance(node.this, exp.RowNumber) and not node.args.get("order") and not node.args.get("partition_by"):
            node.set(
                "order", exp.Order(expressions=[exp.Ordered(this=exp.Anonymous(this="monotonically_increasing_id"))])
            )
    return tree


REWRITES: tuple[Callable[[exp.Expression], exp.Expression], ...] = (
    regexp_full_match_to_rlike,
    regexp_matches_to_rlike,
    first_regexp_replace,
    isfinite_to_checks,
    interval_functions_to_make_interval,
    try_cast_text_like_duckdb,
    timestamptz_to_timestamp,
    to_json_of_row,
    to_json_as_variant,
    json_object_to_variant,
    json_merge_patch_to_map_concat,
    json_extract_to_variant_get,
    json_text_of_variant,
    json_type_of_variant,
    json_keys_of_variant,
    lambda_index_one_based,
    list_index_one_based,
    struct_insert_to_struct,
    ordered_first_to_min_by,
    ordered_list_to_sorted_collect,
    aggregate_order_in_subquery,
    hugeint_to_decimal,
    epoch_seconds_to_timestamp,
    row_number_in_file_order,
    range_table_to_spark_range,
    side_by_side_unnests_to_zipped_inline,
    lateral_generators_to_lateral_view,
)
"""The named rewrites, in the order they apply (after the table functions became views)."""


class _DuckDB(DuckDB):
    """DuckDB's dialect, reading ``len(x)`` as the size of a list (the jobs write ``length`` for text)."""

    class Parser(DuckDB.Parser):  # type: ignore[valid-type,misc]
        FUNCTIONS = {**DuckDB.Parser.FUNCTIONS, "LEN": lambda args: exp.ArraySize(this=seq_get(args, 0))}


def to_spark(sql: str, register: Register) -> str:
    """The Spark SQL for the DuckDB-dialect ``sql``; file-reading table functions go to ``register``.

    Raises :class:`UnsupportedSql` when the statement uses something without a faithful translation.
    """
    try:
        tree = cast(exp.Expression, sqlglot.parse_one(sql, read=_DuckDB))
    except sqlglot.errors.ParseError as exc:
        raise UnsupportedSql(f"the statement cannot be parsed: {exc.errors[0].get('description', '')}") from exc
    tree = table_functions_to_views(tree, register)
    for rewrite in REWRITES:
        tree = rewrite(tree)
    try:
        return tree.sql(dialect="spark", unsupported_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.UnsupportedError as exc:
        raise UnsupportedSql(str(exc).splitlines()[0]) from exc
