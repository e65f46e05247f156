"""DuckDB's JSON functions as Spark SQL: DuckDB's JSON values are Spark VARIANTs (rewrites for ``to_spark``).

DuckDB keeps JSON as text and reads it with json_* functions; Spark 4 parses JSON into VARIANT and
reads that. Inside a statement every JSON value is a VARIANT (read_json_objects gives one, to_json of
a struct makes one); the outermost SELECT's to_json stays text. Differences that remain: a VARIANT
object keeps its keys sorted (json_keys lists them sorted, maps built from them are in key order,
JSON written from one has sorted keys), and numbers print normalized (1.50 as 1.5).
"""

from __future__ import annotations

from sqlglot import exp

from audiencehub.engines.spark_tree import UnsupportedSql, bottom_up, substitute


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

    return bottom_up(tree, swap)


def _args(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    return [a for a in (node.this, *node.expressions) if a is not None]


def _variant(x: exp.Expression, spark_type: str, path: str = "$") -> exp.Expression:
    return exp.Anonymous(
        this="try_variant_get", expressions=[x.copy(), exp.Literal.string(path), exp.Literal.string(spark_type)]
    )


def _spark_path(parts: list[exp.Expression]) -> str | None:
    """A DuckDB JSON path (``$."a"."b"``) as Spark's (``$["a"]["b"]``); None when it ends in ``[*]``."""
    out = "$"
    for n, part in enumerate(parts):
        if isinstance(part, exp.JSONPathSubscript) and isinstance(part.this, exp.JSONPathWildcard):
            if n != len(parts) - 1:
                raise UnsupportedSql("[*] inside a JSON path")
            return None
        if isinstance(part, exp.JSONPathRoot):
            continue
        if isinstance(part, exp.JSONPathKey) and isinstance(part.this, str):
            key = part.this
            if '"' not in key:
                out += f'["{key}"]'
            elif "'" not in key:
                out += f"['{key}']"
            else:
                raise UnsupportedSql("a JSON key with both kinds of quote")
        elif isinstance(part, exp.JSONPathSubscript) and isinstance(part.this, int):
            out += f"[{part.this}]"
        else:
            raise UnsupportedSql(f"JSON path step {part!r}")
    return out


def _dynamic_key(path: exp.Expression) -> exp.Expression:
    """The key ``k`` of a path built as ``'$."' || replace(replace(k, ...), ...) || '"'`` (a map's entries)."""
    replaces = list(path.find_all(exp.Replace))
    if not replaces:
        raise UnsupportedSql("a JSON path computed in SQL")
    innermost = min(replaces, key=lambda r: len(r.sql()))
    return innermost.this.copy()


def json_extract_to_variant_get(tree: exp.Expression) -> exp.Expression:
    """``json_extract(x, '$."a"')`` → ``try_variant_get(x, '$["a"]', 'variant')``; ``json_extract(x, '$[*]')`` →
    the array's elements; a path built from a key → ``try_element_at(<x as a map>, key)``."""

    def swap(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.JSONExtract) or isinstance(node, exp.JSONExtractScalar):
            return node
        path = node.expression
        if isinstance(path, exp.JSONPath):
            spark_path = _spark_path(list(path.expressions))
            if spark_path is None:  # ``...[*]``: the elements of the array there
                return _variant(node.this, "array<variant>", _spark_path(list(path.expressions)[:-1]) or "$")
            return _variant(node.this, "variant", spark_path)
        return exp.Anonymous(
            this="try_element_at", expressions=[_variant(node.this, "map<string,variant>"), _dynamic_key(path)]
        )

    return bottom_up(tree, swap)


def json_type_of_variant(tree: exp.Expression) -> exp.Expression:
    """``json_type(x)`` → DuckDB's names (NULL, VARCHAR, UBIGINT when >= 0 and BIGINT when negative, DOUBLE,
    BOOLEAN, OBJECT, ARRAY) from ``schema_of_variant(x)``; an integer beyond BIGINT is a DECIMAL(p,0) there. A
    date, timestamp or binary value (a Parquet file's own types) is VARCHAR: DuckDB's ``to_json`` writes it as a
    string, and its text (a cast to string in the session's UTC) is one DuckDB's casts read back the same."""
    # One schema_of_variant for the common kinds (a map lookup evaluates it once; a CASE on it would repeat it per
    # branch in Spark's plan), and the number cases only when needed (coalesce is lazy).
    kinds = (
        "map('VOID', 'NULL', 'STRING', 'VARCHAR', 'BOOLEAN', 'BOOLEAN', 'OBJECT', 'OBJECT', 'ARRAY', 'ARRAY', "
        "'DOUBLE', 'DOUBLE', 'FLOAT', 'DOUBLE', 'DATE', 'VARCHAR', 'TIMESTAMP', 'VARCHAR', 'BINARY', 'VARCHAR')"
    )
    template = (
        f"CASE WHEN __x IS NULL THEN NULL ELSE coalesce(element_at({kinds}, "
        "regexp_extract(schema_of_variant(__x), '^[A-Z]+', 0)), "
        "CASE WHEN schema_of_variant(__x) LIKE 'DECIMAL(%,0)' THEN CASE WHEN try_variant_get(__x, '$', "
        "'decimal(38,0)') BETWEEN 0 AND 18446744073709551615 THEN 'UBIGINT' ELSE 'DOUBLE' END "
        "WHEN schema_of_variant(__x) LIKE 'DECIMAL%' THEN 'DOUBLE' "
        # DuckDB names a non-negative integer UBIGINT, a negative one BIGINT.
        "WHEN try_variant_get(__x, '$', 'bigint') < 0 THEN 'BIGINT' ELSE 'UBIGINT' END) END"
    )

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.JSONType):
            return exp.paren(substitute(template, x=node.this))
        return node

    return bottom_up(tree, swap)


def json_text_of_variant(tree: exp.Expression) -> exp.Expression:
    """``x ->> '$'`` → ``try_variant_get(x, '$', 'string')``: the string itself for a JSON string, NULL for JSON
    null, the JSON text of anything else (numbers as Spark prints them: 1.50 reads 1.5)."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.JSONExtractScalar):
            path = node.expression
            spark_path = _spark_path(list(path.expressions)) if isinstance(path, exp.JSONPath) else None
            if spark_path is None:
                raise UnsupportedSql("->> with a computed path")
            return _variant(node.this, "string", spark_path)
        return node

    return bottom_up(tree, swap)


def json_keys_of_variant(tree: exp.Expression) -> exp.Expression:
    """``json_keys(x)`` → ``map_keys(<x as a map>)`` (in key order: a VARIANT object keeps its keys sorted)."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.JSONKeys):
            return exp.Anonymous(this="map_keys", expressions=[_variant(node.this, "map<string,variant>")])
        return node

    return bottom_up(tree, swap)


def _outermost(node: exp.Expression, root: exp.Expression) -> bool:
    """Whether ``node`` is itself a column of the statement's result (under an alias or a cast at most)."""
    child, parent = node, node.parent
    while isinstance(parent, exp.Alias | exp.Cast | exp.Paren):
        child, parent = parent, parent.parent
    selects = (
        [root]
        if isinstance(root, exp.Select)
        else list(root.find_all(exp.Select))
        if isinstance(root, exp.Union)
        else []
    )
    return any(parent is sel and child in sel.expressions for sel in selects)


def to_json_as_variant(tree: exp.Expression) -> exp.Expression:
    """``to_json(x)`` inside the statement → ``to_variant_object(x)`` (a JSON value for the json_* rewrites);
    in the outermost SELECT it stays ``to_json`` (text, fields in their order), as the result is written."""
    root = tree

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and node.name.lower() == "to_json" and not _outermost(node, root):
            return exp.Anonymous(this="to_variant_object", expressions=[node.expressions[0].copy()])
        if isinstance(node, exp.JSONFormat) and not _outermost(node, root):
            return exp.Anonymous(this="to_variant_object", expressions=[node.this.copy()])
        return node

    return bottom_up(tree, swap)


def json_object_to_variant(tree: exp.Expression) -> exp.Expression:
    """``json_object('k', v, ...)`` → ``to_variant_object(named_struct('k', v, ...))``."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.JSONObject):
            args: list[exp.Expression] = []
            for pair in node.expressions:
                args += [pair.this.copy(), pair.expression.copy()]
            return exp.Anonymous(
                this="to_variant_object", expressions=[exp.Anonymous(this="named_struct", expressions=args)]
            )
        return node

    return bottom_up(tree, swap)


def json_merge_patch_to_map_concat(tree: exp.Expression) -> exp.Expression:
    """``json_merge_patch(a, b)`` of two objects → ``b``'s entries over ``a``'s (keys of ``b`` replace ``a``'s)."""
    template = (
        "to_variant_object(map_concat(map_filter(try_variant_get(__a, '$', 'map<string,variant>'), "
        "(k, v) -> NOT array_contains(map_keys(try_variant_get(__b, '$', 'map<string,variant>')), k)), "
        "try_variant_get(__b, '$', 'map<string,variant>')))"
    )

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and node.name.lower() == "json_merge_patch":
            a, b = node.expressions[:2]
            return substitute(template, a=a, b=b)
        return node

    return bottom_up(tree, swap)
