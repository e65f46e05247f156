"""What a Query Service statement may do: read its sandbox's tables, write new batches into its own datasets.

Two checks, then the engine's own walls:

1. :func:`classify` reads the client's statement (sqlglot, Spark dialect) and lets through only ``SELECT`` /
   ``WITH`` / ``VALUES``, ``EXPLAIN`` of those, ``SHOW TABLES``, ``DESCRIBE``, ``CREATE TABLE x AS SELECT``,
   ``INSERT INTO x SELECT`` and transaction statements (no-ops: every statement commits alone).
   :func:`check_tree` then refuses table functions but ``range``/``unnest``, every function that reaches files,
   the network, settings or the engine's catalog, and names a table the sandbox does not have.
2. :func:`check_engine_sql` runs the same rules on DuckDB's own parse of the SQL about to run
   (``json_serialize_sql``), so a difference between sqlglot's parser and DuckDB's cannot smuggle anything through.
3. The session's DuckDB database cannot touch files at all (``enable_external_access = false``, configuration
   locked; see ``query/duckdb.py``).

Every refusal is a QueryError 42501 that names the construct.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum
from typing import Any

import duckdb
from sqlglot import exp
from sqlglot.tokens import Tokenizer

from audiencehub.query import dialect
from audiencehub.query.errors import QueryError

ALLOWED = "SELECT, WITH, VALUES, EXPLAIN, SHOW TABLES, DESCRIBE, CREATE TABLE ... AS SELECT and INSERT INTO ... SELECT"
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "explode", "posexplode"})
"""Table functions a query may call: they make rows from values and reach nothing else."""
DENIED_PREFIXES = (
    "read_",
    "duckdb_",
    "pragma_",
    "parquet_",
    "sniff_",
    "glob",
    "iceberg_",
    "delta_",
    "sqlite_",
    "postgres_",
    "mysql_",
    "http",
    "json_execute",
    "json_deserialize",
    "json_serialize",
    "load_",
    "install_",
)
DENIED = frozenset(
    {
        "getenv",
        "current_setting",
        "getvariable",
        "set_variable",
        "query",
        "query_table",
        "checkpoint",
        "force_checkpoint",
        "enable_profiling",
        "disable_profiling",
        "which_secret",
        "sql_auto_complete",
        "test_all_types",
        "test_vector_types",
        "import_database",
        "export_database",
        "python_map_function",
        "arrow_scan",
        "arrow_scan_dumb",
        "seq_scan",
        "index_scan",
    }
)


class Kind(Enum):
    QUERY = "query"
    EXPLAIN = "explain"
    CTAS = "ctas"
    INSERT = "insert"
    SHOW_TABLES = "show tables"
    DESCRIBE = "describe"
    TRANSACTION = "transaction"


@dataclass(frozen=True)
class Statement:
    """A statement the Query Service runs: its kind, the query part (Spark tree) and the table it names."""

    kind: Kind
    tag: str
    """The PostgreSQL command tag (``SELECT``, ``INSERT``, ``EXPLAIN``, ``SHOW``, ``BEGIN``...)."""
    query: exp.Expr | None = None
    """The query to run (for CTAS and INSERT, the rows to write; for DESCRIBE of a query, that query)."""
    target: str | None = None
    """The table that CTAS creates, INSERT writes or DESCRIBE describes (as written, not lower-cased)."""
    if_not_exists: bool = False


def denied(function: str) -> str | None:
    """Why the engine function ``function`` may not be called, or None when it may."""
    name = function.lower().split(".")[-1]
    if name in DENIED or name.startswith(DENIED_PREFIXES):
        return f"function {name}() is not allowed in the Query Service: it reaches files, settings or the engine"
    return None


FORBIDDEN_VERBS = frozenset(
    {
        "ATTACH",
        "DETACH",
        "COPY",
        "INSTALL",
        "LOAD",
        "SET",
        "RESET",
        "PRAGMA",
        "CALL",
        "EXPORT",
        "IMPORT",
        "DROP",
        "DELETE",
        "UPDATE",
        "ALTER",
        "USE",
        "VACUUM",
        "CHECKPOINT",
        "TRUNCATE",
        "MERGE",
        "GRANT",
        "REVOKE",
    }
)


def statement(sql: str) -> Statement:
    """Parses and classifies ``sql``; a statement sqlglot cannot parse is still refused by name when it is one the
    Query Service never runs (``ATTACH``, ``EXPORT DATABASE``, a call of ``glob()``...)."""
    try:
        tree = dialect.parse(sql)
    except QueryError as exc:
        if exc.sqlstate != "42601":
            raise
        words = _leading_words(sql)
        if words and words[0] in FORBIDDEN_VERBS:
            raise _refused(_construct(exp.Command(this=words[0]), sql)) from None
        called = _called_functions(sql)
        for name in called:
            reason = denied(name)
            if reason:
                raise QueryError(reason, "42501") from None
        raise
    return classify(tree, sql)


def _called_functions(sql: str) -> list[str]:
    """Names followed by ``(`` in the text's tokens (for naming a refused call in text that does not parse)."""
    try:
        tokens = Tokenizer().tokenize(sql)
    except Exception:
        return []
    return [a.text for a, b in itertools.pairwise(tokens) if b.text == "("]


def classify(tree: exp.Expr, sql: str) -> Statement:
    """The statement's kind; QueryError 42501 for anything the Query Service does not run (named)."""
    if isinstance(tree, exp.Query | exp.Values):
        _plain_query(tree, sql)
        return Statement(Kind.QUERY, "SELECT", query=tree)
    if isinstance(tree, exp.Command):
        return _command(tree, sql)
    if isinstance(tree, exp.Describe):
        target = tree.this
        if isinstance(target, exp.Table) and not isinstance(target.this, exp.Func):
            return Statement(Kind.DESCRIBE, "SELECT", target=_table_name(target))
        if isinstance(target, exp.Query):
            _plain_query(target, sql)
            return Statement(Kind.DESCRIBE, "SELECT", query=target)
        raise QueryError(f"DESCRIBE: expected a table or a query, got {target.sql(dialect.READ)}", "42601")
    if isinstance(tree, exp.Create):
        return _create(tree, sql)
    if isinstance(tree, exp.Insert):
        return _insert(tree, sql)
    if isinstance(tree, exp.Transaction):
        return Statement(Kind.TRANSACTION, "BEGIN")
    if isinstance(tree, exp.Commit):
        return Statement(Kind.TRANSACTION, "COMMIT")
    if isinstance(tree, exp.Rollback):
        return Statement(Kind.TRANSACTION, "ROLLBACK")
    words = _leading_words(sql)
    if words[:2] == ["START", "TRANSACTION"]:
        return Statement(Kind.TRANSACTION, "BEGIN")
    if words[:1] in (["END"], ["ABORT"]):
        return Statement(Kind.TRANSACTION, "COMMIT" if words[0] == "END" else "ROLLBACK")
    raise _refused(_construct(tree, sql))


def _plain_query(tree: exp.Expr, sql: str) -> None:
    if isinstance(tree, exp.Select) and tree.args.get("into") is not None:
        raise _refused("SELECT ... INTO")


def _command(tree: exp.Command, sql: str) -> Statement:
    verb = str(tree.this).upper()
    rest = tree.expression.name if isinstance(tree.expression, exp.Expr) else str(tree.expression or "")
    if verb == "EXPLAIN":
        words = _leading_words(rest)
        if words[:1] in (["ANALYZE"], ["EXTENDED"], ["FORMATTED"], ["CODEGEN"], ["COST"], ["VERBOSE"]):
            raise QueryError(f"EXPLAIN {words[0]} is not supported: use EXPLAIN followed by the query", "0A000")
        inner = dialect.parse(rest)
        if not isinstance(inner, exp.Query | exp.Values):
            raise _refused(f"EXPLAIN {_construct(inner, rest)}")
        _plain_query(inner, rest)
        return Statement(Kind.EXPLAIN, "EXPLAIN", query=inner)
    if verb == "SHOW":
        words = _leading_words(rest)
        if words == ["TABLES"]:
            return Statement(Kind.SHOW_TABLES, "SHOW")
        raise _refused(f"SHOW {' '.join(words[:2])}".strip())
    raise _refused(_construct(tree, sql))


def _create(tree: exp.Create, sql: str) -> Statement:
    kind = str(tree.args.get("kind") or "").upper()
    query = tree.expression
    if kind != "TABLE" or not isinstance(query, exp.Query | exp.Values):
        raise _refused(f"CREATE {kind}".strip() if kind != "TABLE" else "CREATE TABLE without AS SELECT")
    target = tree.this
    if isinstance(target, exp.Schema):
        raise QueryError("CREATE TABLE ... AS SELECT takes its columns from the query: drop the column list", "0A000")
    if tree.args.get("replace"):
        raise QueryError("CREATE OR REPLACE TABLE is not supported: datasets only gain batches", "0A000")
    props = tree.args.get("properties")
    if props is not None and props.expressions:
        names = [p.sql(dialect.READ) for p in props.expressions]
        if any("TEMPORARY" in n.upper() for n in names):
            raise QueryError("CREATE TEMPORARY TABLE is not supported: a CTAS makes a dataset", "0A000")
        raise QueryError(f"CREATE TABLE options are not supported: {', '.join(names)}", "0A000")
    if not isinstance(target, exp.Table):
        raise QueryError(f"CREATE TABLE: expected a table name, got {target.sql(dialect.READ)}", "42601")
    _plain_query(query, sql)
    return Statement(
        Kind.CTAS, "SELECT", query=query, target=_table_name(target), if_not_exists=bool(tree.args.get("exists"))
    )


def _insert(tree: exp.Insert, sql: str) -> Statement:
    if tree.args.get("overwrite"):
        raise QueryError("INSERT OVERWRITE is not supported: datasets only gain batches (use INSERT INTO)", "0A000")
    target = tree.this
    if isinstance(target, exp.Schema):
        raise QueryError(
            "INSERT INTO with a column list is not supported: name the query's columns as the dataset's fields",
            "0A000",
        )
    query = tree.expression
    if not isinstance(target, exp.Table) or not isinstance(query, exp.Query | exp.Values):
        raise _refused("INSERT without a query")
    for key in ("where", "returning", "conflict", "partition"):
        if tree.args.get(key):
            raise QueryError(f"INSERT INTO ... {key.upper()} is not supported", "0A000")
    _plain_query(query, sql)
    return Statement(Kind.INSERT, "INSERT", query=query, target=_table_name(target))


def _table_name(table: exp.Table) -> str:
    if table.args.get("db") is not None or table.args.get("catalog") is not None:
        raise QueryError(
            f"table {table.sql(dialect.READ)}: name a table of this sandbox without a schema or database", "42P01"
        )
    return table.name


def _leading_words(sql: str) -> list[str]:
    try:
        tokens = Tokenizer().tokenize(sql)
    except Exception:
        return sql.upper().split()[:3]
    return [t.text.upper() for t in tokens[:3]]


def _construct(tree: exp.Expr, sql: str) -> str:
    """How the refused statement is named: its leading keyword(s), with the object kind for CREATE and DROP."""
    words = _leading_words(sql)
    first = words[0] if words else type(tree).__name__.upper()
    if first in ("CREATE", "DROP", "ALTER") and len(words) > 1:
        second = words[1]
        if second in ("OR", "TEMP", "TEMPORARY", "UNIQUE") and len(words) > 2:
            return f"{first} {second} {words[2]}"
        return f"{first} {second}"
    if first == "EXPORT" or first == "IMPORT":
        return f"{first} DATABASE"
    return first


def _refused(construct: str) -> QueryError:
    return QueryError(f"{construct} is not allowed in the Query Service; allowed: {ALLOWED}", "42501")


# ----- what a query reads and calls -----


def cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def check_tree(tree: exp.Expr, tables: Collection[str] | None) -> list[str]:
    """Checks the functions and tables of a Spark tree; answers the sandbox tables it reads (lower case, in order).

    ``tables`` are the session's table names (lower case); None checks the functions only.
    """
    ctes = cte_names(tree)
    read: list[str] = []
    for node in tree.walk():
        if isinstance(node, exp.Func):
            name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            reason = denied(name)
            if reason:
                raise QueryError(reason, "42501")
        if isinstance(node, exp.Table):
            if isinstance(node.this, exp.Func):
                fn = node.this.name if isinstance(node.this, exp.Anonymous) else node.this.sql_name()
                if fn.lower() not in TABLE_FUNCTIONS:
                    raise QueryError(
                        f"table function {fn.lower()}() is not allowed in the Query Service: read the sandbox's "
                        "tables by name",
                        "42501",
                    )
                continue
            if not node.name or tables is None:
                continue
            name = node.name.lower()
            if node.args.get("db") is None and name in ctes:
                continue
            if node.args.get("db") is not None or node.args.get("catalog") is not None or name not in tables:
                raise unknown_table(node.sql(dialect.READ), tables)
            if name not in read:
                read.append(name)
    return read


def unknown_table(name: str, tables: Collection[str]) -> QueryError:
    known = sorted(tables)
    listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return QueryError(f"table {name} does not exist in this sandbox (tables: {listed or 'none'})", "42P01")


def check_engine_sql(con: duckdb.DuckDBPyConnection, sql: str, tables: Collection[str]) -> None:
    """DuckDB's own parse of ``sql``: one SELECT whose functions and tables pass the same rules."""
    try:
        parsed = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"syntax error: {exc}", "42601") from None
    if len(parsed) != 1 or parsed[0].type != duckdb.StatementType.SELECT:
        raise _refused("a statement other than a query")
    rows = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
    tree: dict[str, Any] = json.loads(rows[0][0]) if rows else {"error": True}
    if tree.get("error"):
        raise QueryError(f"the query could not be checked: {tree.get('error_message', 'unknown error')}", "42601")
    for statement in tree.get("statements", []):
        _walk_engine(statement, frozenset(), tables)


def _walk_engine(node: Any, ctes: frozenset[str], tables: Collection[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk_engine(item, ctes, tables)
        return
    if not isinstance(node, dict):
        return
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict):
        ctes = ctes | {str(e.get("key", "")).lower() for e in cte_map.get("map", []) if isinstance(e, dict)}
    if node.get("class") == "FUNCTION" or node.get("type") == "FUNCTION":
        name = str(node.get("function_name", ""))
        reason = denied(name)
        if reason or node.get("schema") or node.get("catalog"):
            raise QueryError(reason or f"function {name}(): call functions without a schema", "42501")
    if node.get("type") == "TABLE_FUNCTION":
        fn = node.get("function") or {}
        name = str(fn.get("function_name", "")).lower()
        if name not in TABLE_FUNCTIONS:
            raise QueryError(f"table function {name}() is not allowed in the Query Service", "42501")
    if node.get("type") == "BASE_TABLE":
        name = str(node.get("table_name", "")).lower()
        qualified = node.get("schema_name") or node.get("catalog_name")
        if qualified or (name not in ctes and name not in tables):
            raise unknown_table(name, tables)
    for key, value in node.items():
        if isinstance(value, dict | list) and key != "cte_map":
            _walk_engine(value, ctes, tables)
    if isinstance(cte_map, dict):
        for entry in cte_map.get("map", []):
            _walk_engine(entry.get("value") if isinstance(entry, dict) else None, ctes, tables)
