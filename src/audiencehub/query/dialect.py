"""Spark SQL (the Query Service's dialect, with PostgreSQL's ``::`` casts and ``$n`` parameters) to DuckDB SQL.

sqlglot parses the client's text with its Spark dialect and writes DuckDB; where its DuckDB output would be
wrong, the tree is changed first, never the text:

- ``explode`` / ``explode_outer`` / ``posexplode`` / ``posexplode_outer`` in a select list and in ``LATERAL VIEW``:
  sqlglot writes ``UNNEST(x)``, which DuckDB refuses on a MAP and which names its column differently. A map gives
  ``key`` and ``value`` (``unnest(map_keys(m)) AS key, unnest(map_values(m)) AS value``: two unnests of one select
  list run side by side), an array ``col``, ``pos`` counts from 0, and an ``_outer`` form keeps a row (of NULLs) for
  an empty or NULL input, as Spark does. Whether the argument is a map or an array is asked of the engine
  (:data:`TypeProbe`), on a ``LIMIT 0`` query over the same FROM clause.
- ``size(x)`` is DuckDB's ``cardinality`` (a map's entries, an array's items; sqlglot's ``array_length`` takes lists
  only).
- A result column that DuckDB would type HUGEINT (a sum of integers) is cast to BIGINT, Spark's type for it
  (:func:`without_hugeint`).
- Everything else sqlglot already writes right for DuckDB (checked by tests/query/test_dialect.py): ``a.b.c``
  through struct columns, ``arr[0]`` (Spark counts from 0, DuckDB from 1), ``element_at``, ``::text``
  (``TRY_CAST``, as Spark's non-ANSI cast), window functions, subqueries without an alias.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from audiencehub.query.errors import QueryError

READ = "spark"
WRITE = "duckdb"

TypeProbe = Callable[[str], list[str]]
"""Runs a DuckDB ``SELECT`` (that returns no rows) and answers its columns' DuckDB type names."""
ColumnProbe = Callable[[str], list[tuple[str, str]]]
"""Binds a DuckDB ``SELECT`` without running it and answers its columns' names and DuckDB type names."""

_GENERATORS = (exp.Explode, exp.Inline)  # Posexplode and the _outer forms subclass Explode


def statements(sql: str) -> list[exp.Expr]:
    """The statements of ``sql`` parsed as Spark SQL; QueryError 42601 names the position of a syntax error."""
    try:
        trees = sqlglot.parse(sql, read=READ)
    except ParseError as exc:
        raise QueryError(_syntax(exc), "42601") from None
    except TokenError as exc:
        raise QueryError(f"syntax error: {exc}", "42601") from None
    return [t for t in trees if t is not None]


def parse(sql: str) -> exp.Expr:
    """The one statement of ``sql``; QueryError 42601 when there is none or more than one."""
    trees = statements(sql)
    if not trees:
        raise QueryError("syntax error: the query is empty", "42601")
    if len(trees) > 1:
        raise QueryError(f"one statement at a time, got {len(trees)}", "42601")
    return trees[0]


def _syntax(exc: ParseError) -> str:
    if not exc.errors:
        return f"syntax error: {str(exc).splitlines()[0]}"
    first = exc.errors[0]
    desc = str(first.get("description") or "unexpected input").split(" <Token")[0]
    near = first.get("highlight")
    at = f" at line {first.get('line')}, column {first.get('col')}"
    return f"syntax error{at}: {desc}" + (f" (near {near!r})" if near else "")


def parameter_count(tree: exp.Expr) -> int:
    """How many ``$n`` parameters the statement takes: the highest n (``?`` placeholders count one each)."""
    highest = 0
    for node in tree.find_all(exp.Parameter):
        value = node.this
        if isinstance(value, exp.Literal) and not value.is_string and str(value.this).isdigit():
            highest = max(highest, int(value.this))
    anonymous = sum(1 for p in tree.find_all(exp.Placeholder) if not p.this)
    return max(highest, anonymous)


def without_parameters(tree: exp.Expr) -> exp.Expr:
    """A copy of ``tree`` with every parameter a NULL: its columns can be described before values are bound."""

    def null(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Parameter | exp.Placeholder):
            return exp.Null()
        return node

    return tree.copy().transform(null)


def render(tree: exp.Expr) -> str:
    """DuckDB SQL for a tree that :func:`to_duckdb` has made ready."""
    return tree.sql(dialect=WRITE)


def to_duckdb(tree: exp.Expr, probe: TypeProbe) -> exp.Expr:
    """A copy of ``tree`` (Spark) whose DuckDB rendering means what the Spark SQL means (see the module doc)."""
    tree = _spark_integer_results(tree.copy())
    for node in tree.find_all(exp.Inline):
        raise QueryError(
            f"inline() is not supported: use explode() and read the struct's fields ({node.sql(READ)})", "0A000"
        )
    while True:
        pending = _pending(tree)
        if not pending:
            return tree
        select = _ready(pending, tree)
        _rewrite(select, tree, probe)


_INT_RESULTS: tuple[type[exp.Expr], ...] = (
    exp.ArraySize,
    exp.Year,
    exp.Quarter,
    exp.Month,
    exp.WeekOfYear,
    exp.Day,
    exp.DayOfMonth,
    exp.DayOfWeek,
    exp.DayOfYear,
    exp.Hour,
    exp.Minute,
    exp.Second,
    exp.Length,
    exp.BitLength,
    exp.DateDiff,
    exp.StrPosition,
    exp.Levenshtein,
)
"""Spark functions that answer an INT where the DuckDB function sqlglot writes for them answers a BIGINT."""
_INT_WINDOWS = (exp.RowNumber, exp.Rank, exp.DenseRank, exp.Ntile)
_LEADING_FUNCTION = re.compile(r"^([A-Z_]+)\(")
_INT_PARTS = {"YEAR", "QUARTER", "MONTH", "WEEK", "DAY", "DAYOFWEEK", "DOW", "DAYOFYEAR", "DOY", "HOUR", "MINUTE"}


def _spark_integer_results(tree: exp.Expr) -> exp.Expr:
    """Each call of a Spark function that answers an INT (``size``, ``year``, ``length``, ``datediff``,
    ``row_number``...; :data:`_INT_RESULTS`) cast to INTEGER, so that DuckDB's BIGINT does not show through."""

    def cast(node: exp.Expr) -> exp.Expr:
        in_window = isinstance(node.parent, exp.Window)
        bare = isinstance(node.parent, exp.Select) and node.arg_key == "expressions"
        written = node.sql(READ) if bare else ""
        if isinstance(node, exp.ArraySize):
            # Spark's size() takes an array or a map; sqlglot writes DuckDB's array_length (lists only).
            node = exp.Anonymous(this="cardinality", expressions=[node.this])
        wanted = isinstance(node, _INT_RESULTS)
        wanted |= isinstance(node, exp.Window) and isinstance(node.this, _INT_WINDOWS)
        wanted |= isinstance(node, exp.Extract) and node.name.upper() in _INT_PARTS
        wanted |= isinstance(node, exp.Anonymous) and node.name.lower() == "cardinality"
        if not wanted or in_window:
            return node
        cast_node = exp.Cast(this=node, to=exp.DataType.build("INT"))
        if not bare:
            return cast_node
        # A bare result column keeps a name, Spark's way: the call as written, its function in lower case.
        name = _LEADING_FUNCTION.sub(lambda m: m.group(1).lower() + "(", written, count=1)
        return exp.Alias(this=cast_node, alias=exp.to_identifier(name, quoted=True))

    return tree.transform(cast, copy=False)


def without_hugeint(tree: exp.Expr, probe: ColumnProbe) -> exp.Expr:
    """``tree`` whose result columns have Spark's types where DuckDB's would differ: DuckDB sums integers into a
    HUGEINT (128 bits), Spark into a BIGINT. A result column of the query's own select list that holds a HUGEINT
    (at any depth) is cast to the same type with BIGINT there, under its own name; a sum beyond BIGINT's range
    then fails, as it does in Spark's ANSI mode. Set operations and ``*`` are left as they are."""
    if not isinstance(tree, exp.Select) or any(p.is_star for p in tree.expressions):
        return tree
    columns = probe(render(without_parameters(tree)))
    if len(columns) != len(tree.expressions) or not any("HUGEINT" in t for _, t in columns):
        return tree
    tree = tree.copy()
    projections = []
    for projection, (name, type_name) in zip(tree.expressions, columns, strict=True):
        if "HUGEINT" not in type_name:
            projections.append(projection)
            continue
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        try:
            target = exp.DataType.build(type_name.replace("HUGEINT", "BIGINT"), dialect=WRITE)
        except (ParseError, TokenError):  # pragma: no cover - a type DuckDB printed that sqlglot cannot read back
            projections.append(projection)
            continue
        projections.append(exp.Cast(this=inner.copy(), to=target).as_(name, quoted=True))
    tree.set("expressions", projections)
    return tree


# ----- explode and its kin -----


def _generators_of(select: exp.Select) -> list[exp.Expr]:
    """The generator calls of ``select`` itself: in its select list and its LATERAL VIEWs."""
    found: list[exp.Expr] = []
    for projection in select.expressions:
        inner = projection.this if isinstance(projection, exp.Alias | exp.Aliases) else projection
        if isinstance(inner, _GENERATORS):
            found.append(inner)
    for lateral in select.args.get("laterals") or []:
        if isinstance(lateral.this, _GENERATORS):
            found.append(lateral.this)
    return found


def _pending(tree: exp.Expr) -> list[exp.Select]:
    selects = [s for s in tree.find_all(exp.Select) if _generators_of(s)]
    mine = {id(g) for s in selects for g in _generators_of(s)}
    for node in tree.find_all(exp.Explode):
        if id(node) not in mine:
            raise QueryError(
                f"{_name(node)}() is allowed only in a select list or a LATERAL VIEW, got {node.sql(READ)}", "0A000"
            )
    return selects


def _name(node: exp.Expr) -> str:
    return {
        exp.Posexplode: "posexplode",
        exp.PosexplodeOuter: "posexplode_outer",
        exp.ExplodeOuter: "explode_outer",
    }.get(type(node), "explode")


def _ready(pending: list[exp.Select], tree: exp.Expr) -> exp.Select:
    """A select whose FROM clause and visible CTEs hold no generator left to rewrite (one always exists)."""
    for select in pending:
        if not any(other is not select and _depends_on(select, other) for other in pending):
            return select
    raise QueryError("explode(): could not order the rewrites of this statement", "XX000")  # pragma: no cover


def _depends_on(select: exp.Select, other: exp.Select) -> bool:
    for source in _sources(select):
        if _contains(source, other):
            return True
    return any(_contains(cte, other) for cte in _visible_ctes(select))


def _contains(root: exp.Expr, node: exp.Expr) -> bool:
    return any(n is node for n in root.walk())


def _sources(select: exp.Select) -> Iterator[exp.Expr]:
    if select.args.get("from_") is not None:
        yield select.args["from_"]
    yield from select.args.get("joins") or []


def _visible_ctes(select: exp.Select) -> list[exp.CTE]:
    """The CTEs ``select`` may read: those of its ancestors (and its own), but the one it sits in."""
    found: list[exp.CTE] = []
    node: exp.Expr | None = select
    chain: list[exp.Expr] = []
    while node is not None:
        chain.append(node)
        with_ = node.args.get("with_") if isinstance(node, exp.Query) else None
        if with_ is not None:
            found = [c for c in with_.expressions if not any(c is n for n in chain)] + found
        node = node.parent
    return found


def _probe_types(select: exp.Select, args: list[exp.Expr], probe: TypeProbe) -> list[str]:
    query = exp.select(*[a.copy().as_(f"__ah_p{n}") for n, a in enumerate(args)])
    for source in _sources(select):
        if isinstance(source, exp.From):
            query.set("from_", source.copy())
        else:
            query.append("joins", source.copy())
    ctes = _visible_ctes(select)
    if ctes:
        query.set("with_", exp.With(expressions=[c.copy() for c in ctes]))
    query = query.limit(0)
    return probe(render(without_parameters(query)))


def _rewrite(select: exp.Select, tree: exp.Expr, probe: TypeProbe) -> None:
    generators = _generators_of(select)
    types = _probe_types(select, [g.this for g in generators], probe)
    kinds = dict(zip((id(g) for g in generators), types, strict=True))
    projections: list[exp.Expr] = []
    for projection in select.expressions:
        inner = projection.this if isinstance(projection, exp.Alias | exp.Aliases) else projection
        if not isinstance(inner, _GENERATORS):
            projections.append(projection)
            continue
        names = _names(projection)
        projections += _expand(inner, kinds[id(inner)], names)
    select.set("expressions", projections)
    laterals = select.args.get("laterals") or []
    select.set("laterals", None)
    for lateral in laterals:
        gen = lateral.this
        alias = lateral.args.get("alias")
        columns = [c.name for c in alias.columns] if alias is not None and alias.columns else None
        body = exp.select(*_expand(gen, kinds[id(gen)], columns))
        table = exp.TableAlias(this=exp.to_identifier(alias.name if alias is not None and alias.name else "t"))
        subquery = exp.Lateral(this=body.subquery(), alias=table)
        outer = bool(lateral.args.get("outer"))
        join = exp.Join(this=subquery, side="LEFT", on=exp.true()) if outer else exp.Join(this=subquery, kind="CROSS")
        select.append("joins", join)


def _names(projection: exp.Expr) -> list[str] | None:
    if isinstance(projection, exp.Aliases):
        return [e.name for e in projection.expressions]
    if isinstance(projection, exp.Alias):
        return [projection.alias]
    return None


def _expand(gen: exp.Expr, duck_type: str, names: list[str] | None) -> list[exp.Expr]:
    """The select-list items that stand for ``gen`` over an argument of DuckDB type ``duck_type``."""
    arg = gen.this
    is_map = duck_type.upper().startswith("MAP(")
    is_list = duck_type.endswith("]")
    fn = _name(gen)
    if not (is_map or is_list):
        raise QueryError(f"{fn}() needs an array or a map, got {duck_type} ({arg.sql(READ)})", "42804")
    outer = isinstance(gen, exp.ExplodeOuter | exp.PosexplodeOuter)
    positional = isinstance(gen, exp.Posexplode)
    if is_map:
        lists = [_call("map_keys", arg.copy()), _call("map_values", arg.copy())]
        default = ["key", "value"]
    else:
        lists = [arg.copy()]
        default = ["col"]
    if positional:
        lists.insert(0, _call("range", _call("len", arg.copy())))
        default.insert(0, "pos")
    if outer:
        lists = [_keep_a_row(v) for v in lists]
    wanted = names or default
    if len(wanted) != len(default):
        raise QueryError(
            f"{fn}() of {'a map' if is_map else 'an array'} gives {len(default)} column(s) "
            f"({', '.join(default)}), got {len(wanted)} alias(es): {', '.join(wanted)}",
            "42601",
        )
    return [_call("unnest", v).as_(n) for v, n in zip(lists, wanted, strict=True)]


def _call(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=list(args))


def _keep_a_row(values: exp.Expr) -> exp.Expr:
    """``values``, or ``[NULL]`` when it is empty or NULL: an _outer generator keeps the row."""
    non_empty = exp.GT(this=_call("len", values.copy()), expression=exp.Literal.number(0))
    fallback = exp.Array(expressions=[exp.Null()])
    return cast(exp.Expr, exp.Case(ifs=[exp.If(this=non_empty, true=values)], default=fallback))
