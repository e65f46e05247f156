"""DuckDB-dialect SELECTs as Spark SQL: sqlglot's translation plus a few named rewrites on its tree.

Jobs write one SELECT in DuckDB's dialect (``engines/ingest_sql.py``, ``engines/xdm_sql.py``); the
Spark engine hands it to :func:`to_spark`, never a second hand-written copy. sqlglot maps most of the
dialect; each function below rewrites one construct it does not map (or maps with other semantics),
so that Spark computes what DuckDB computes (the JSON ones live in ``engines/spark_json.py``, the helpers
they share in ``engines/spark_tree.py``). Table functions that read files become :class:`Scan`
descriptions that the engine turns into temporary views (this module does not import pyspark).
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


# -- lists, structs and the rest ---------------------------------------------------------------------


def _lambda_params(lam: exp.Lambda) -> list[str]:
    return [p.name for p in lam.expressions]


def _refers(node: exp.Expression, name: str) -> bool:
    return (
        isinstance(node, exp.Identifier | exp.Column)
        and not (isinstance(node, exp.Column) and node.table)
        and node.name == name
        and not isinstance(node.parent, exp.Column | exp.Dot | exp.Lambda)
    )


def lambda_index_one_based(tree: exp.Expression) -> exp.Expression:
    """``list_transform(l, lambda e, i: ...)``: DuckDB's ``i`` counts from 1, Spark's from 0: ``i`` → ``(i + 1)``."""
    for node in list(tree.find_all(exp.Transform)):
        lam = node.expression
        if isinstance(lam, exp.Lambda) and len(lam.expressions) == 2:
            index = _lambda_params(lam)[1]
            body = lam.this
            for ref in list(body.find_all(exp.Identifier, exp.Column)):
                if _refers(ref, index):
                    ref.replace(exp.paren(exp.Add(this=exp.column(index), expression=exp.Literal.number(1))))
            if _refers(body, index):
                lam.set("this", exp.paren(exp.Add(this=exp.column(index), expression=exp.Literal.number(1))))
    return tree


def list_index_one_based(tree: exp.Expression) -> exp.Expression:
    """``l[n]`` (DuckDB: from 1, NULL past the end) → ``try_element_at(l, n)``; a text key (``m['k']``) stays."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
            index = node.expressions[0]
            if isinstance(index, exp.Literal) and not index.is_string:
                # sqlglot keeps literal indexes from 0 after parsing DuckDB.
                one_based: exp.Expression = exp.Literal.number(int(index.this) + 1)
            elif isinstance(index, exp.Add | exp.Sub | exp.Mul):
                one_based = index.copy()
            else:
                return node
            return exp.Anonymous(this="try_element_at", expressions=[node.this.copy(), one_based])
        return node

    return bottom_up(tree, swap)


def _struct_fields(node: exp.Expression, scope: dict[str, exp.Expression]) -> list[str] | None:
    """The field names of the struct (or list of structs) ``node`` evaluates to, when the SQL shows them."""
    if isinstance(node, exp.Paren):
        return _struct_fields(node.this, scope)
    if isinstance(node, exp.Struct):
        names = []
        for item in node.expressions:
            if isinstance(item, exp.PropertyEQ | exp.Alias | exp.Slice):
                names.append(item.alias_or_name if isinstance(item, exp.Alias) else item.this.name)
            else:
                return None
        return names
    if isinstance(node, exp.Transform | exp.ArrayFilter) and isinstance(node.expression, exp.Lambda):
        lam = node.expression
        inner = dict(scope)
        inner[_lambda_params(lam)[0]] = node.this
        return _struct_fields(lam.this if isinstance(node, exp.Transform) else node.this, inner)
    if isinstance(node, exp.Flatten | exp.Coalesce):
        return _struct_fields(node.this, scope)
    if isinstance(node, exp.Anonymous) and node.name.lower() == "struct_insert":
        base = _struct_fields(node.expressions[0], scope)
        return None if base is None else base + [a.this.name for a in node.expressions[1:]]
    if isinstance(node, exp.Column | exp.Identifier) and node.name in scope:
        return _struct_fields(scope[node.name], scope)
    return None


def struct_insert_to_struct(tree: exp.Expression) -> exp.Expression:
    """``struct_insert(x, a := e)`` → ``STRUCT(x.f1 AS f1, ..., e AS a)``: Spark SQL cannot add a field, so the
    fields of ``x`` are read from the SQL that built it (a struct literal, through list_transform lambdas)."""
    for node in list(tree.find_all(exp.Anonymous)):
        if node.name.lower() != "struct_insert":
            continue
        target = node.expressions[0]
        scope: dict[str, exp.Expression] = {}
        parent = node.parent
        while parent is not None:
            if isinstance(parent, exp.Lambda) and isinstance(parent.parent, exp.Transform | exp.ArrayFilter):
                scope.setdefault(_lambda_params(parent)[0], parent.parent.this)
            parent = parent.parent
        fields = _struct_fields(target, scope)
        if fields is None:
            raise UnsupportedSql("struct_insert on a struct whose fields the statement does not show")
        items: list[exp.Expression] = [
            cast(
                exp.Expression,
                exp.alias_(exp.Dot(this=target.copy(), expression=exp.to_identifier(f, quoted=True)), f, quoted=True),
            )
            for f in fields
        ]
        items += [
            cast(exp.Expression, exp.alias_(a.expression.copy(), a.this.name, quoted=True))
            for a in node.expressions[1:]
        ]
        node.replace(exp.Struct(expressions=items))
    return tree


def ordered_first_to_min_by(tree: exp.Expression) -> exp.Expression:
    """``first(x ORDER BY a, b)`` → ``min_by(x, struct(a, b))`` (Spark's first takes no order)."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.First) and isinstance(node.this, exp.Order):
            order = node.this
            if any(o.args.get("desc") for o in order.expressions):
                raise UnsupportedSql("first(... ORDER BY ... DESC)")
            keys = [o.this.copy() for o in order.expressions]
            return exp.Anonymous(
                this="min_by", expressions=[order.this.copy(), exp.Anonymous(this="struct", expressions=keys)]
            )
        return node

    return bottom_up(tree, swap)


def ordered_list_to_sorted_collect(tree: exp.Expression) -> exp.Expression:
    """``list(x ORDER BY a, b)`` → ``transform(array_sort(collect_list(struct(a, b, x))), e -> e.x)``: Spark's
    collect_list takes no order, so the order keys travel with each value and the list is sorted by them."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Order):
            order = node.this
            if any(o.args.get("desc") for o in order.expressions):
                raise UnsupportedSql("list(... ORDER BY ... DESC)")
            keys = [
                cast(exp.Expression, exp.alias_(o.this.copy(), f"__k{i}", quoted=True))
                for i, o in enumerate(order.expressions)
            ]
            packed = exp.Struct(
                expressions=[*keys, cast(exp.Expression, exp.alias_(order.this.copy(), "__v", quoted=True))]
            )
            collected = exp.Anonymous(this="collect_list", expressions=[packed])
            return substitute("transform(array_sort(__l), e -> e.`__v`)", l=collected)
        return node

    return bottom_up(tree, swap)


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


def side_by_side_unnests_to_zipped_inline(tree: exp.Expression) -> exp.Expression:
    """Several ``unnest(list) AS name`` in one select list: DuckDB walks the lists side by side (row n holds each
    list's n-th element, NULL past a shorter or NULL list's end); Spark nests two explodes of one select list (a map
    exploded as ``unnest(map_keys(m)), unnest(map_values(m))`` gave every key with every value). They become one
    ``inline(arrays_zip(coalesce(list, array()), ...)) AS (name, ...)``: arrays_zip pads with NULL as DuckDB does."""
    for select in list(tree.find_all(exp.Select)):
        items = select.expressions
        spots = [n for n, item in enumerate(items) if type(item.unalias()) is exp.Explode]
        if len(spots) < 2:
            continue
        if spots != list(range(spots[0], spots[0] + len(spots))) or not all(
            isinstance(items[n], exp.Alias) for n in spots
        ):
            raise UnsupportedSql(f"side-by-side unnests must be next to each other and named: {select.sql('duckdb')}")
        lists = [substitute("coalesce(__v, array())", v=items[n].unalias().this) for n in spots]
        zipped = exp.Inline(this=exp.Anonymous(this="arrays_zip", expressions=lists))
        names = [exp.to_identifier(items[n].alias) for n in spots]
        inline = exp.Aliases(this=zipped, expressions=names)
        select.set("expressions", [*items[: spots[0]], inline, *items[spots[-1] + 1 :]])
    return tree


def _generator_of_lateral(join: exp.Join) -> tuple[exp.Expression, list[exp.Identifier]] | None:
    """The generator and its column names of ``CROSS JOIN LATERAL (SELECT gen AS (names))`` or ``LEFT JOIN LATERAL
    (...) ON true`` when the subquery is that one generator and nothing else."""
    lateral = join.this
    if not isinstance(lateral, exp.Lateral) or lateral.args.get("view") or not isinstance(lateral.this, exp.Subquery):
        return None
    body = lateral.this.this
    if not isinstance(body, exp.Select) or len(body.expressions) != 1:
        return None
    if any(body.args.get(k) for k in ("from_", "joins", "where", "group", "having", "order", "limit", "laterals")):
        return None
    item = body.expressions[0]
    if isinstance(item, exp.Aliases) and isinstance(item.this, exp.Inline):
        return item.this, [exp.to_identifier(e.name) for e in item.expressions]
    if isinstance(item, exp.Alias) and type(item.this) is exp.Explode:
        return item.this, [exp.to_identifier(item.alias)]
    return None


def lateral_generators_to_lateral_view(tree: exp.Expression) -> exp.Expression:
    """``CROSS JOIN LATERAL (SELECT unnest(x) AS c) AS t`` (what the Query Service writes for LATERAL VIEW) → Spark's
    own ``LATERAL VIEW explode(x) t AS c`` (``LEFT JOIN LATERAL ... ON true`` → ``LATERAL VIEW OUTER``): Spark
    refuses a lateral subquery whose generator reads the outer row. Only trailing joins of that shape move (Spark
    puts lateral views after every join)."""
    for select in list(tree.find_all(exp.Select)):
        joins = list(select.args.get("joins") or [])
        views: list[exp.Lateral] = []
        while joins:
            join = joins[-1]
            found = _generator_of_lateral(join)
            cross = join.args.get("kind") == "CROSS" and not join.args.get("on")
            left = join.args.get("side") == "LEFT" and isinstance(join.args.get("on"), exp.Boolean)
            left = left and bool(join.args["on"].this)
            alias = join.this.args.get("alias")
            if found is None or not (cross or left) or alias is None or alias.columns:
                break
            generator, names = found
            views.insert(
                0,
                exp.Lateral(
                    this=generator.copy(),
                    view=True,
                    outer=left,
                    alias=exp.TableAlias(this=exp.to_identifier(alias.name), columns=names),
                ),
            )
            joins.pop()
        if views:
            select.set("joins", joins or None)
            select.set("laterals", [*(select.args.get("laterals") or []), *views])
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
