"""Lists, structs and the rows they become, as Spark SQL (rewrites for ``to_spark``): DuckDB counts list
positions from 1, builds structs field by field, orders inside aggregates and walks side-by-side unnests
together; Spark does each of these otherwise.
"""

from __future__ import annotations

from typing import cast

from sqlglot import exp

from audiencehub.engines.spark_tree import UnsupportedSql, bottom_up, substitute


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
