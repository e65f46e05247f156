"""SQL that validates XDM records against a resolved schema and types them, in one pass.

Records arrive as one JSON value per row (``j``) whatever the input format (JSON array or JSON lines,
CSV with dotted headers, Parquet). For every node of the schema this module writes two expressions
over that JSON: the list of what is wrong with it (``errors``: ``path: reason`` texts) and its typed
value (``value``: VARCHAR, BIGINT, DOUBLE, BOOLEAN, DATE, TIMESTAMPTZ, STRUCT, LIST, MAP). Nested
arrays and maps are walked with DuckDB lambdas, so a record is checked entirely inside the engine.

Keys of the schema are quoted into JSON paths and SQL identifiers by :func:`json_key` and ``ident``;
user data never becomes SQL text. Only DuckDB's dialect; Spark gets it through sqlglot (issue 7).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiencehub.domain.namespaces import RULE_PATTERN, RULE_REASON, Rule
from audiencehub.engines.ingest_sql import INTERNAL, ident, identity_norm, lit

ERRORS = INTERNAL + "errors"
"""The column with a record's problems: a list of texts, empty when the record is valid."""
IDS = INTERNAL + "ids"
"""The column with a record's identities: a list of {ns, id, primary}, normalized by namespace rule."""
RN = INTERNAL + "rn"
"""The record's number in its file (1-based)."""
FILE = INTERNAL + "file"
"""The index of the record's file in the batch."""
RAW = INTERNAL + "raw"
"""The record as received (JSON), kept for the failed-records file."""

INT_RANGE: dict[str, tuple[str, int, int]] = {
    "long": ("BIGINT", -(2**63), 2**63 - 1),
    "int": ("INTEGER", -(2**31), 2**31 - 1),
    "short": ("SMALLINT", -(2**15), 2**15 - 1),
    "byte": ("TINYINT", -(2**7), 2**7 - 1),
}
NUMERIC_JSON = "('BIGINT', 'UBIGINT', 'DOUBLE')"
INTEGER_JSON = "('BIGINT', 'UBIGINT')"
EMPTY = "CAST([] AS VARCHAR[])"


def json_key(key: str) -> str:
    """One step of a JSON path for an object key: ``."key"`` with ``\\`` and ``"`` escaped."""
    return '."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def child(x: str, key: str) -> str:
    return f"json_extract({x}, {lit('$' + json_key(key))})"


def kind(node: dict[str, Any]) -> str:
    """``struct``, ``map``, ``json`` (free-form object), ``array`` or the scalar type name."""
    t = node.get("type")
    if t == "object" or (t is None and "properties" in node):
        if node.get("properties"):
            return "struct"
        extra = node.get("additionalProperties")
        return "map" if isinstance(extra, dict) else "json"
    if t == "array":
        return "array"
    if t in ("string", "integer", "number", "boolean"):
        return str(t)
    return "json"


def duck_type(node: dict[str, Any]) -> str:
    k = kind(node)
    if k == "struct":
        return "STRUCT(" + ", ".join(f"{ident(n)} {duck_type(c)}" for n, c in node["properties"].items()) + ")"
    if k == "map":
        return f"MAP(VARCHAR, {duck_type(node['additionalProperties'])})"
    if k == "array":
        return f"{duck_type(node.get('items') or {})}[]"
    if k == "string":
        return {"date": "DATE", "date-time": "TIMESTAMPTZ"}.get(node.get("format", ""), "VARCHAR")
    if k == "integer":
        return INT_RANGE.get(node.get("meta:xdmType", "long"), INT_RANGE["long"])[0]
    if k == "number":
        return "DOUBLE"
    if k == "boolean":
        return "BOOLEAN"
    return "JSON"


@dataclass
class _Names:
    """Fresh lambda parameter names, one per nesting level."""

    n: int = 0

    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


def _absent(x: str) -> str:
    return f"({x} IS NULL OR json_type({x}) = 'NULL')"


def _msg(path: str, reason: str) -> str:
    """A one-element list ``[path || ': ' || reason]``; ``path`` is an SQL text expression."""
    return f"[{path} || {lit(': ' + reason)}]"


def _text(x: str) -> str:
    return f"({x} ->> '$')"


DATE_SHAPE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
DATETIME_SHAPE = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?\s*(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)?"
)
"""ISO 8601 shapes; DuckDB's casts also take words such as 'infinity' and 'epoch', which are no dates."""


def _bounds(node: dict[str, Any], number: str) -> list[tuple[str, str]]:
    """The field's own ``minimum``/``maximum`` (JSON Schema), checked on the value as a number."""
    out = []
    for key, op, word in (("minimum", "<", "less than the minimum"), ("maximum", ">", "more than the maximum")):
        bound = node.get(key)
        if isinstance(bound, int | float) and not isinstance(bound, bool):
            out.append((f"{number} {op} {float(bound)!r}", f"is {word} {bound}"))
    return out


def errors(node: dict[str, Any], x: str, path: str, *, lenient: bool, names: _Names | None = None) -> str:
    """SQL for the list of problems of the JSON value ``x`` (NULL when absent) at ``path`` (an SQL text)."""
    names = names or _Names()
    k = kind(node)
    checks: list[tuple[str, str]] = []  # (condition that is true when wrong, reason), tried in order
    nested: list[str] = []
    jt = f"json_type({x})"
    if k == "string":
        fmt = node.get("format")
        epoch_ms = lenient and fmt == "date-time"  # AEP reads an integer as epoch milliseconds
        checks.append(
            (f"{jt} <> 'VARCHAR'" + (f" AND {jt} NOT IN {INTEGER_JSON}" if epoch_ms else ""), "expected a string")
        )
        text = f"CASE WHEN {jt} = 'VARCHAR' THEN {_text(x)} END"
        if fmt == "date":
            checks.append((f"NOT regexp_full_match({text}, {lit(DATE_SHAPE)})", "is not a date (YYYY-MM-DD)"))
            checks.append((f"TRY_CAST({text} AS DATE) IS NULL", "is not a date (YYYY-MM-DD)"))
        elif fmt == "date-time":
            reason = "is not a date-time (ISO 8601: 2025-05-23T20:19:00Z)"
            checks.append((f"{jt} = 'VARCHAR' AND NOT regexp_full_match({text}, {lit(DATETIME_SHAPE)})", reason))
            checks.append((f"{jt} = 'VARCHAR' AND TRY_CAST({text} AS TIMESTAMPTZ) IS NULL", reason))
        if node.get("enum"):
            values = ", ".join(lit(str(v)) for v in node["enum"])
            checks.append((f"{_text(x)} NOT IN ({values})", f"is not one of {[str(v) for v in node['enum']]}"))
        if isinstance(node.get("maxLength"), int):
            checks.append((f"length({_text(x)}) > {int(node['maxLength'])}", f"is longer than {node['maxLength']}"))
        if isinstance(node.get("minLength"), int):
            checks.append((f"length({_text(x)}) < {int(node['minLength'])}", f"is shorter than {node['minLength']}"))
        if isinstance(node.get("pattern"), str):
            checks.append(
                (f"NOT regexp_matches({_text(x)}, {lit(node['pattern'])})", f"does not match {node['pattern']}")
            )
    elif k == "integer":
        sql_type, low, high = INT_RANGE.get(node.get("meta:xdmType", "long"), INT_RANGE["long"])
        number = f"TRY_CAST({_text(x)} AS HUGEINT)"
        # Text converts only when it is all digits: TRY_CAST would round '1.5' to 2.
        digits = f"regexp_full_match(trim({_text(x)}), '[+-]?[0-9]+')"
        accepted = f"{jt} IN {INTEGER_JSON}" + (f" OR ({jt} = 'VARCHAR' AND {digits})" if lenient else "")
        checks.append((f"NOT ({accepted})", "expected an integer"))
        checks.append((f"{number} NOT BETWEEN {low} AND {high}", f"is out of range for {sql_type.lower()}"))
        checks += _bounds(node, f"TRY_CAST({_text(x)} AS DOUBLE)")
    elif k == "number":
        number = f"TRY_CAST({_text(x)} AS DOUBLE)"
        accepted = f"{jt} IN {NUMERIC_JSON}" + (f" OR ({jt} = 'VARCHAR' AND isfinite({number}))" if lenient else "")
        checks.append((f"NOT coalesce({accepted}, false)", "expected a number"))
        checks += _bounds(node, number)
    elif k == "boolean":
        accepted = f"{jt} = 'BOOLEAN'" + (
            f" OR ({jt} = 'VARCHAR' AND lower({_text(x)}) IN ('true', 'false'))" if lenient else ""
        )
        checks.append((f"NOT ({accepted})", "expected a boolean"))
    elif k == "struct":
        checks.append((f"{jt} <> 'OBJECT'", "expected an object"))
        known = "[" + ", ".join(lit(n) for n in node["properties"]) + "]"
        key = names.fresh("k")
        nested.append(
            f"list_transform(list_filter(json_keys({x}), lambda {key}: NOT list_contains({known}, {key})), "
            f"lambda {key}: {path} || '.' || {key} || ': is not a field of the schema')"
        )
        for name, sub in node["properties"].items():
            nested.append(errors(sub, child(x, name), f"{path} || {lit('.' + name)}", lenient=lenient, names=names))
        for name in node.get("required", []):
            if name in node["properties"]:
                where = f"{path} || {lit('.' + name)}"
                nested.append(f"CASE WHEN {_absent(child(x, name))} THEN {_msg(where, 'is required')} ELSE {EMPTY} END")
    elif k == "map":
        checks.append((f"{jt} <> 'OBJECT'", "expected an object (a map)"))
        key = names.fresh("k")
        inner = errors(
            node["additionalProperties"],
            f"json_extract({x}, '$.\"' || replace(replace({key}, '\\', '\\\\'), '\"', '\\\"') || '\"')",
            f"{path} || '.' || {key}",
            lenient=lenient,
            names=names,
        )
        nested.append(f"flatten(list_transform(json_keys({x}), lambda {key}: {inner}))")
    elif k == "array":
        checks.append((f"{jt} <> 'ARRAY'", "expected an array"))
        item, i = names.fresh("e"), names.fresh("i")
        where = f"{path} || '[' || ({i} - 1) || ']'"
        inner = errors(node.get("items") or {}, item, where, lenient=lenient, names=names)
        nested.append(f"flatten(list_transform(json_extract({x}, '$[*]'), lambda {item}, {i}: {inner}))")
    if not checks:
        return EMPTY
    # The first failed check is the value's problem; nested problems count only when the value's own shape is right.
    branches = " ".join(f"WHEN coalesce({cond}, true) THEN {_msg(path, reason)}" for cond, reason in checks)
    below = f"flatten([{', '.join(nested)}])" if nested else EMPTY
    return f"CASE WHEN {_absent(x)} THEN {EMPTY} {branches} ELSE {below} END"


def value(node: dict[str, Any], x: str, names: _Names | None = None) -> str:
    """SQL for the typed value of the JSON ``x`` (assumed valid: :func:`errors` said so)."""
    names = names or _Names()
    k = kind(node)
    t = duck_type(node)
    if k == "string":
        if t == "TIMESTAMPTZ":
            epoch = f"to_timestamp(TRY_CAST({_text(x)} AS BIGINT) / 1000.0)"
            return f"CASE WHEN json_type({x}) IN {INTEGER_JSON} THEN {epoch} ELSE TRY_CAST({_text(x)} AS {t}) END"
        return f"TRY_CAST({_text(x)} AS {t})" if t != "VARCHAR" else _text(x)
    if k in ("integer", "number"):
        return f"TRY_CAST({_text(x)} AS {t})"
    if k == "boolean":
        return f"TRY_CAST({_text(x)} AS BOOLEAN)"
    if k == "struct":
        fields = ", ".join(f"{ident(n)} := {value(c, child(x, n), names)}" for n, c in node["properties"].items())
        return f"CASE WHEN {_absent(x)} THEN NULL ELSE struct_pack({fields}) END"
    if k == "map":
        key = names.fresh("k")
        sub = value(
            node["additionalProperties"],
            f"json_extract({x}, '$.\"' || replace(replace({key}, '\\', '\\\\'), '\"', '\\\"') || '\"')",
            names,
        )
        return (
            f"CASE WHEN {_absent(x)} THEN NULL ELSE map_from_entries(list_transform(json_keys({x}), "
            f"lambda {key}: {{'key': {key}, 'value': {sub}}})) END"
        )
    if k == "array":
        item = names.fresh("e")
        sub = value(node.get("items") or {}, item, names)
        items = f"list_transform(json_extract({x}, '$[*]'), lambda {item}: {sub})"
        return f"CASE WHEN {_absent(x)} THEN NULL ELSE {items} END"
    return f"CASE WHEN {_absent(x)} THEN NULL ELSE {x} END"


@dataclass(frozen=True)
class Leaf:
    """A value of the schema that the profile store keeps as one column: a scalar, an array or a map."""

    path: tuple[str, ...]
    type: str

    @property
    def name(self) -> str:
        return ".".join(self.path)

    def access(self, root: str = "") -> str:
        """SQL reading the leaf from the typed columns (top level = column, then struct fields)."""
        first, *rest = self.path
        out = (f"{root}." if root else "") + ident(first)
        for step in rest:
            out += f"[{lit(step)}]"
        return out


def leaves(properties: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[Leaf]:
    for name, node in properties.items():
        if kind(node) == "struct":
            yield from leaves(node["properties"], (*prefix, name))
        else:
            yield Leaf((*prefix, name), duck_type(node))


def at(properties: dict[str, Any], path: Sequence[str]) -> dict[str, Any] | None:
    """The schema node at ``path``, or None."""
    node: dict[str, Any] | None = {"type": "object", "properties": properties}
    for step in path:
        if node is None or kind(node) != "struct":
            return None
        node = node["properties"].get(step)
    return node


def record_errors(properties: dict[str, Any], required: Sequence[Sequence[str]], *, lenient: bool) -> str:
    """The problems of the record ``j``: not JSON, not an object, fields that break the schema, missing ones."""
    root = {"type": "object", "properties": properties}
    parts = [errors(root, "j", "''", lenient=lenient)]
    for path in required:
        extract = "json_extract(j, " + lit("$" + "".join(json_key(p) for p in path)) + ")"
        parts.append(f"CASE WHEN {_absent(extract)} THEN [{lit('.'.join(path) + ': is required')}] ELSE {EMPTY} END")
    body = f"flatten([{', '.join(parts)}])"
    # Paths start with '.', from the root's empty path: drop it.
    body = f"list_transform({body}, lambda m: ltrim(m, '.'))"
    return (
        f"CASE WHEN j IS NULL THEN ['the record is not valid JSON'] "
        f"WHEN json_type(j) <> 'OBJECT' THEN ['the record is not a JSON object'] ELSE {body} END"
    )


def typed_columns(properties: dict[str, Any]) -> list[str]:
    """``value AS "field"`` for every top-level field of the schema."""
    return [f"{value(node, child('j', name))} AS {ident(name)}" for name, node in properties.items()]


@dataclass(frozen=True)
class IdentitySource:
    """Where a record's identities are: a descriptor's field, and/or the identityMap."""

    path: tuple[str, ...]
    namespace: str
    primary: bool


def _by_namespace(ns: str, rules: dict[str, Rule], make: Callable[[Rule], str | None], default: str) -> str:
    """``CASE ns WHEN 'Email' THEN make(email rule) ... ELSE default END`` over the sandbox's namespaces."""
    whens = []
    for code, rule in sorted(rules.items()):
        expr = make(rule)
        if expr is not None:
            whens.append(f"WHEN {lit(code)} THEN {expr}")
    return f"CASE {ns} {' '.join(whens)} ELSE {default} END" if whens else default


def identity_map_entries(rules: dict[str, Rule]) -> str:
    """SQL over the typed ``identityMap`` column: one struct per identity value with its namespace code
    (canonical; NULL when the key names no namespace of the sandbox), raw and normalized id, the primary
    flag, and whether the id keeps its namespace's rule (``ok``, with ``reason`` when not)."""
    canon = (
        "CASE lower(e.key) " + " ".join(f"WHEN {lit(code.lower())} THEN {lit(code)}" for code in sorted(rules)) + " END"
    )
    entries = (
        'flatten(list_transform(coalesce(map_entries("identityMap"), []), lambda e: list_transform('
        f"coalesce(e.value, []), lambda v: {{'key': e.key, 'ns': {canon}, 'raw': v.id, "
        "'primary': coalesce(v.\"primary\", false)})))"
    )
    norm = _by_namespace("x.ns", rules, lambda r: identity_norm("x.raw", r), "NULL")
    with_norm = f"list_transform({entries}, lambda x: struct_insert(x, nid := {norm}))"
    check = _by_namespace(
        "y.ns",
        rules,
        lambda r: None if RULE_PATTERN[r] is None else f"regexp_full_match(y.nid, {lit(RULE_PATTERN[r] or '')})",
        "true",
    )
    reason = _by_namespace("y.ns", rules, lambda r: lit(RULE_REASON[r]), "''")
    return f"list_transform({with_norm}, lambda y: struct_insert(y, ok := coalesce({check}, true), reason := {reason}))"


def identities(fields: Sequence[IdentitySource], rules: dict[str, Rule], *, identity_map: bool) -> tuple[str, str]:
    """SQL for a record's identities (a list of {ns, id, primary}) and for their problems.

    Reads the typed columns, and the column :data:`IM_ENTRIES` (:func:`identity_map_entries`) when the
    schema has an identityMap. ``rules`` maps every namespace code of the sandbox to its rule. An
    identity that breaks its namespace's rule, or an identityMap key that is no namespace, is a problem.
    """
    items: list[str] = []
    problems: list[str] = []
    for f in fields:
        rule = rules.get(f.namespace, Rule.TEXT)
        raw = f"CAST({Leaf(f.path, 'VARCHAR').access()} AS VARCHAR)"
        norm = identity_norm(raw, rule)
        items.append(
            f"CASE WHEN {norm} IS NULL THEN [] ELSE [{{'ns': {lit(f.namespace)}, 'id': {norm}, "
            f"'primary': {'true' if f.primary else 'false'}}}] END"
        )
        pattern = RULE_PATTERN[rule]
        if pattern is not None:
            problems.append(
                f"CASE WHEN {norm} IS NOT NULL AND NOT regexp_full_match({norm}, {lit(pattern)}) "
                f"THEN [{lit('.'.join(f.path) + ': ')} || {raw} || "
                f"{lit(' ' + RULE_REASON[rule] + ' (namespace ' + f.namespace + ')')}] ELSE {EMPTY} END"
            )
    if identity_map:
        items.append(
            f"list_transform(list_filter({IM_ENTRIES}, lambda x: x.nid IS NOT NULL AND x.ok), "
            "lambda x: {'ns': x.ns, 'id': x.nid, 'primary': x.\"primary\"})"
        )
        problems.append(
            f"list_transform(list_filter({IM_ENTRIES}, lambda x: x.ns IS NULL OR (x.nid IS NOT NULL AND NOT x.ok)), "
            "lambda x: 'identityMap.' || x.key || CASE WHEN x.ns IS NULL THEN ': is not an identity namespace' "
            "ELSE ': ' || coalesce(x.raw, '') || ' ' || x.reason || ' (namespace ' || x.ns || ')' END)"
        )
    ids = f"flatten([{', '.join(items)}])" if items else "[]"
    errs = f"flatten([{', '.join(problems)}])" if problems else EMPTY
    return ids, errs


IM_ENTRIES = INTERNAL + "im"
"""The intermediate column of identityMap entries (see :func:`identity_map_entries`)."""


@dataclass(frozen=True)
class InputFile:
    """One uploaded file of a batch and how to read it."""

    path: Path
    format: str
    """``json`` (its :attr:`json_format`: ``array``, ``newline_delimited``, ``unstructured``), ``csv``, ``parquet``."""
    json_format: str = "newline_delimited"
    width: int = 0
    """CSV: the number of columns of the header."""
    header: tuple[str, ...] = ()
    """CSV: the header's names; a dotted name (``person.name.firstName``) is a nested field."""
    gzip: bool = False
    """The file is gzip-compressed (told by its first bytes, whatever its name)."""


def _nest(names: Sequence[tuple[tuple[str, ...], str]]) -> str:
    """``struct_pack`` nesting of (path, column) pairs that share their first steps."""
    groups: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for path, col in names:
        groups.setdefault(path[0], []).append((path[1:], col))
    parts = []
    for key, members in groups.items():
        leaf = [col for rest, col in members if not rest]
        if leaf:
            parts.append(f"{ident(key)} := {leaf[-1]}")
        else:
            parts.append(f"{ident(key)} := {_nest([(r, c) for r, c in members])}")
    return "struct_pack(" + ", ".join(parts) + ")"


def source_select(files: Sequence[InputFile]) -> str:
    """Every record of the batch as ``(FILE, RN, j)``: file index, record number in the file, the JSON."""
    parts = []
    for n, f in enumerate(files):
        path = lit(str(f.path))
        if f.format == "json":
            compression = "'gzip'" if f.gzip else "'none'"
            scan = (
                f"read_json_objects({path}, format = {lit(f.json_format)}, ignore_errors = true, "
                f"compression = {compression})"
            )
            parts.append(f"SELECT {n} AS {FILE}, row_number() OVER () AS {RN}, json AS j FROM {scan}")
        elif f.format == "csv":
            cols = ", ".join(f"{lit(f'c{i}')}: 'VARCHAR'" for i in range(f.width))
            scan = (
                f"read_csv({path}, auto_detect = false, header = true, columns = {{{cols}}}, delim = ',', "
                f"quote = '\"', escape = '\"', compression = {'gzip' if f.gzip else 'none'!r})"
            )
            nested = _nest([(tuple(name.split(".")), f"c{i}") for i, name in enumerate(f.header)])
            parts.append(f"SELECT {n} AS {FILE}, row_number() OVER () AS {RN}, to_json({nested}) AS j FROM {scan}")
        elif f.format == "parquet":
            parts.append(
                f"SELECT {n} AS {FILE}, row_number() OVER () AS {RN}, to_json(t) AS j FROM read_parquet({path}) t"
            )
        else:
            raise ValueError(f"unknown input format {f.format!r}")
    return " UNION ALL ".join(parts)


@dataclass(frozen=True)
class Validation:
    """What :func:`validated_select` needs to know about the dataset's schema and sandbox."""

    properties: dict[str, Any]
    required: tuple[tuple[str, ...], ...]
    identity_fields: tuple[IdentitySource, ...]
    rules: dict[str, Rule]
    needs_identity: bool
    """Profile-enabled datasets: a record without any identity is refused."""
    lenient: bool
    """Values convert to the field's type as AEP documents (numbers and booleans as text, epoch ms date-times);
    False checks JSON types strictly."""


def validated_select(files: Sequence[InputFile], v: Validation) -> str:
    """One row per record: FILE, RN, RAW (the JSON), the typed top-level fields, IDS and ERRORS."""
    typed = ", ".join(typed_columns(v.properties))
    level1 = (
        f"SELECT {FILE}, {RN}, j AS {RAW}, {record_errors(v.properties, v.required, lenient=v.lenient)} "
        f"AS {INTERNAL}e0, {typed} FROM ({source_select(files)})"
    )
    has_map = kind(v.properties.get("identityMap", {})) == "map"
    if has_map:
        level1 = f"SELECT *, {identity_map_entries(v.rules)} AS {IM_ENTRIES} FROM ({level1})"
    ids, id_errors = identities(v.identity_fields, v.rules, identity_map=has_map)
    level2 = f"SELECT *, {ids} AS {IDS}, {id_errors} AS {INTERNAL}e1 FROM ({level1})"
    missing = (
        f"CASE WHEN len({IDS}) = 0 THEN ['the record has no identity (a profile-enabled dataset needs one)'] "
        f"ELSE {EMPTY} END"
        if v.needs_identity
        else EMPTY
    )
    drop = f"{INTERNAL}e0, {INTERNAL}e1" + (f", {IM_ENTRIES}" if has_map else "")
    return (
        f"SELECT * EXCLUDE ({drop}), "
        f"CASE WHEN len({INTERNAL}e0) > 0 THEN {INTERNAL}e0 ELSE flatten([{INTERNAL}e1, {missing}]) END AS {ERRORS} "
        f"FROM ({level2})"
    )


def failed_select(validated: Path, file_names: Sequence[str]) -> str:
    """AEP's failed-records rows: the record as sent (when it was JSON) with ``_errors`` [{code, message}]."""
    names = "[" + ", ".join(lit(n) for n in file_names) + "]"
    errs = (
        f"to_json(list_transform({ERRORS}, lambda m: {{'code': CASE WHEN m LIKE 'the record is not valid JSON%' "
        f"THEN {lit(CODE_MALFORMED)} ELSE {lit(CODE_INVALID)} END, 'message': m}}))"
    )
    meta = f"json_object('_file', {names}[{FILE} + 1], '_record', {RN}, '_errors', {errs})"
    return (
        f"SELECT CASE WHEN json_type({RAW}) = 'OBJECT' THEN json_merge_patch({RAW}, {meta}) ELSE {meta} END AS line "
        f"FROM read_parquet({lit(str(validated))}) WHERE len({ERRORS}) > 0 ORDER BY {FILE}, {RN}"
    )


CODE_INVALID = "XDM-1001-400"
"""A record breaks the schema or an identity namespace's rule."""
CODE_MALFORMED = "XDM-1000-400"
"""A record is not valid JSON."""


def dataset_select(validated: Path, properties: dict[str, Any]) -> str:
    """The typed records of a valid batch, in arrival order: what the dataset's batch folder holds."""
    cols = ", ".join(ident(name) for name in properties)
    return f"SELECT {cols} FROM read_parquet({lit(str(validated))}) ORDER BY {FILE}, {RN}"
