"""The Query Service's HTTP API (``/data/foundation/query/queries``): rows of the ``queries`` table run as jobs of
kind ``query``: SUBMITTED → IN_PROGRESS → SUCCESS / FAILED / KILLED / TIMEOUT, with cancel and soft delete. A
query's rows are written to ``lake/{org}/{sandbox}/_runs/{queryId}/results.parquet`` and can be downloaded as
Parquet, CSV or JSON."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import literal, select
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import TokenType

from audiencehub.engines.base import Engine
from audiencehub.engines.ingest_sql import ident, lit
from audiencehub.errors import BadRequest, Duplicate, NotFound
from audiencehub.metadata import jobs
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, get_row, insert_row
from audiencehub.query import guard
from audiencehub.query.conform import write_parquet
from audiencehub.query.dialect import READ, parse
from audiencehub.query.duckdb import TIMED_OUT, DuckDBSession
from audiencehub.query.errors import QueryError
from audiencehub.query.guard import Kind
from audiencehub.query.tables import assign_names, table_name
from audiencehub.services.auth import Principal
from audiencehub.services.lake import Lake
from audiencehub.services.query import QueryService

log = logging.getLogger(__name__)

JOB_QUERY = "query"
SUBMITTED, IN_PROGRESS, SUCCESS_STATE, FAILED, KILLED, TIMEOUT = (
    "SUBMITTED",
    "IN_PROGRESS",
    "SUCCESS",
    "FAILED",
    "KILLED",
    "TIMEOUT",
)
FINISHED = frozenset({SUCCESS_STATE, FAILED, KILLED, TIMEOUT})
RESULTS = "results.parquet"
SCRATCH = "scratch"  # the profile snapshot a statement on Spark reads, while it runs
FORMATS = ("csv", "json", "parquet")
REQUEST_FIELDS = frozenset(
    {"dbName", "sql", "queryParameters", "templateId", "name", "description", "insertIntoParameters", "ctasParameters"}
)
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
_FILTER = re.compile(r"^(created|updated|state|id|sql|client)(==|!=|>=|<=|>|<|~)(.*)$")


def _ms() -> int:
    return time.time_ns() // 1_000_000


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _parse_time(value: str, what: str) -> int:
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{what}: expected an ISO timestamp such as 2024-04-05T13:30:00Z, got {value!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return int(stamp.timestamp() * 1000)


def substitute(sql: str, parameters: dict[str, Any]) -> str:
    """AEP's ``queryParameters``: each ``$key`` of ``sql`` replaced by its value's text (no type checks, as AEP
    documents). Parameters are found by the Spark dialect's tokenizer, so a ``'$key'`` inside a string stays."""
    try:
        tokens = Dialect.get_or_raise(READ).tokenize(sql)
    except Exception as exc:
        raise BadRequest(f"sql: could not be read ({exc})") from None
    out, at = [], 0
    for n, tok in enumerate(tokens):
        if tok.token_type == TokenType.PARAMETER and tok.text == "$" and n + 1 < len(tokens):
            name_tok = tokens[n + 1]
            if name_tok.start != tok.end + 1 or name_tok.token_type != TokenType.VAR:
                continue
            name, begin, end = name_tok.text, tok.start, name_tok.end
        elif tok.token_type == TokenType.VAR and tok.text.startswith("$") and len(tok.text) > 1:
            name, begin, end = tok.text[1:], tok.start, tok.end
        else:
            continue
        if name.isdigit():
            continue  # $1: a bound parameter of the wire protocol, not a template's
        if name not in parameters:
            raise BadRequest(f"queryParameters: the sql uses ${name}, which queryParameters does not give")
        out += [sql[at:begin], str(parameters[name])]
        at = end + 1
    return "".join(out) + sql[at:]


def effective_sql(body: dict[str, Any]) -> tuple[str, Kind]:
    """The statement a query body runs (its parameters in place, as CTAS or INSERT when asked) and its kind."""
    sql = body["sql"]
    params = body.get("queryParameters") or {}
    if not isinstance(params, dict):
        raise BadRequest(f"queryParameters: must be an object of key/value pairs, got {params!r}")
    sql = substitute(sql, params)
    ctas, insert = body.get("ctasParameters"), body.get("insertIntoParameters")
    if ctas is not None and insert is not None:
        raise BadRequest("ctasParameters, insertIntoParameters: give one of them, not both")
    try:
        tree = parse(sql)
        stmt = guard.classify(tree, sql)
        guard.check_tree(tree, None)
    except QueryError as exc:
        raise BadRequest(f"sql: {exc.message} (SQLSTATE {exc.sqlstate})") from None
    for key, given in (("ctasParameters", ctas), ("insertIntoParameters", insert)):
        if given is None:
            continue
        if not isinstance(given, dict) or not isinstance(given.get("datasetName"), str) or not given["datasetName"]:
            raise BadRequest(f"{key}.datasetName: a dataset name is required, got {given!r}")
        if stmt.kind is not Kind.QUERY or stmt.query is None:
            raise BadRequest(f"{key}: the sql must be a query (SELECT, WITH or VALUES), got a {stmt.tag} statement")
        name = given["datasetName"]
        target: exp.Expr
        if key == "ctasParameters":
            target = exp.Create(
                this=exp.Table(this=exp.to_identifier(name, quoted=True)), kind="TABLE", expression=stmt.query
            )
        else:
            target = exp.Insert(this=exp.Table(this=exp.to_identifier(table_name(name))), expression=stmt.query)
        sql = target.sql(dialect=READ)
        stmt = guard.classify(target, sql)
    return sql, stmt.kind


class QueryRuns:
    """The HTTP API's queries: stored, run as jobs, cancelled, listed, their results kept for download."""

    def __init__(
        self,
        store: MetadataStore,
        lake: Lake,
        service: QueryService,
        engine: Engine,
        wake: Callable[[], None],
        *,
        cancel_poll_s: float = 1.0,
    ) -> None:
        """``cancel_poll_s``: how often a running query looks for a cancel asked in another process."""
        self._cancel_poll_s = cancel_poll_s
        self._store = store
        self._lake = lake
        self._service = service
        self._engine = engine
        self._wake = wake
        self._running: dict[str, DuckDBSession] = {}
        self._lock = threading.Lock()

    # ----- the API -----

    def create(self, caller: Principal, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        unknown = sorted(set(body) - REQUEST_FIELDS)
        if unknown:
            raise BadRequest(f"{unknown[0]}: not a field of a query (fields: {', '.join(sorted(REQUEST_FIELDS))})")
        if body.get("templateId") is not None:
            raise BadRequest("templateId: query templates are not supported; send the sql")
        if not isinstance(body.get("sql"), str) or not body["sql"].strip():
            raise BadRequest(f"sql: an SQL statement is required, got {body.get('sql')!r}")
        for key in ("name", "description", "dbName"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise BadRequest(f"{key}: must be a string, got {body[key]!r}")
        db = body.get("dbName")
        if db and db.split(":")[0] != caller.sandbox:
            raise BadRequest(
                f"dbName: {db!r} is not a database of sandbox {caller.sandbox!r} (use {caller.sandbox}:all)"
            )
        sql, kind = effective_sql(body)
        query_id, stamp = str(uuid.uuid4()), _ms()
        request = {k: v for k, v in body.items() if k in REQUEST_FIELDS}
        request.setdefault("dbName", f"{caller.sandbox}:all")
        row: Row = {
            "id": query_id,
            "org_id": caller.org_id,
            "sandbox": caller.sandbox,
            "state": SUBMITTED,
            "request": request,
            "effective_sql": sql,
            "kind": kind.value,
            "client_id": caller.client_id,
            "errors": [],
            "datasets": {"referenced": [], "created": None},
            "deleted": False,
            "cancel": False,
            "created_ms": stamp,
            "updated_ms": stamp,
        }
        with self._store.tx() as conn:
            insert_row(conn, t.queries, row)
            jobs.enqueue(conn, caller.scope, JOB_QUERY, query_id)
        self._wake()
        # AEP answers 202 with the query as submitted: described from the row as inserted, since a job may have
        # taken it (IN_PROGRESS, or even finished) by now.
        return describe_query({**row, "row_count": None, "started_ms": None, "ended_ms": None}, base_url)

    def get(self, scope: Scope, query_id: str, base_url: str) -> dict[str, Any]:
        return describe_query(self._row(scope, query_id), base_url)

    def _row(self, scope: Scope, query_id: str) -> Row:
        with self._store.read() as conn:
            row = get_row(conn, t.queries, scope, id=query_id)
        if row is None:
            raise NotFound(f"query {query_id!r} was not found")
        return row

    def list_queries(
        self,
        scope: Scope,
        *,
        base_url: str,
        orderby: str | None = None,
        limit: int = DEFAULT_LIMIT,
        start: str | None = None,
        prop: str | None = None,
        exclude_soft_deleted: bool = True,
    ) -> dict[str, Any]:
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: must be between 1 and {MAX_LIMIT}, got {limit}")
        order = orderby or "-created"
        field = order.lstrip("+- ")
        if field not in ("created", "updated"):
            raise BadRequest(f"orderby: expected created or updated with + or -, got {orderby!r}")
        desc = not order.startswith("+") and not order.startswith(" ")  # a '+' not URL-escaped arrives as ' '
        c = t.queries.c
        col = c.created_ms if field == "created" else c.updated_ms
        stmt = select(t.queries).where(c.org_id == scope.org_id, c.sandbox == scope.sandbox)
        if exclude_soft_deleted:
            stmt = stmt.where(c.deleted.is_(False))
        for cond in _filters(prop):
            stmt = stmt.where(cond)
        if start:
            at = _parse_time(start, "start")
            stmt = stmt.where(col <= at if desc else col >= at)
        stmt = stmt.order_by(col.desc() if desc else col.asc(), c.id).limit(limit + 1)
        with self._store.read() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        page, more = rows[:limit], rows[limit:]
        key = "created_ms" if field == "created" else "updated_ms"
        body: dict[str, Any] = {
            "queries": [describe_query(r, base_url) for r in page],
            "_page": {"orderby": order.strip() if order.strip() else "-created", "count": len(page)},
            "_links": {},
            "version": 1,
        }
        if page:
            body["_page"]["start"] = iso_ms(page[0][key])
        if prop:
            body["_page"]["property"] = prop
        if more:
            nxt = iso_ms(more[0][key])
            body["_page"]["next"] = nxt
            query = {"orderby": order, "limit": str(limit), "start": nxt}
            if prop:
                query["property"] = prop
            body["_links"]["next"] = {"href": f"{base_url}data/foundation/query/queries?{urlencode(query)}"}
        return body

    def patch(self, scope: Scope, query_id: str, body: Any) -> dict[str, Any]:
        op = body.get("op") if isinstance(body, dict) else None
        if op not in ("cancel", "soft_delete"):
            raise BadRequest(f'op: expected "cancel" or "soft_delete", got {op!r}')
        with self._store.tx() as conn:
            # Each state change locks the query's row first: a cancel and the job's start never both win.
            row = get_row(conn, t.queries, scope, for_update=True, id=query_id)
            if row is None:
                raise NotFound(f"query {query_id!r} was not found")
            if op == "soft_delete":
                conn.execute(
                    t.queries.update().where(t.queries.c.id == query_id).values(deleted=True, updated_ms=_ms())
                )
                return {"message": "Query soft delete request received", "statusCode": 202}
            if row["state"] in FINISHED:
                raise Duplicate(f"query {query_id!r} is already {row['state']}: there is nothing to cancel")
            values: dict[str, Any] = {"cancel": True, "updated_ms": _ms()}
            if row["state"] == SUBMITTED:
                values.update(state=KILLED, ended_ms=_ms(), errors=[_error("57014", CANCELLED_MSG)])
            conn.execute(t.queries.update().where(t.queries.c.id == query_id).values(**values))
        with self._lock:
            session = self._running.get(query_id)
        if session is not None:
            session.cancel()
        return {"message": "Query cancel request received", "statusCode": 202}

    def results(self, scope: Scope, query_id: str, fmt: str) -> tuple[Path, str]:
        """The query's rows as a file in ``fmt`` and its media type; written once per format, then kept."""
        if fmt not in FORMATS:
            raise BadRequest(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        row = self._row(scope, query_id)
        source = self._lake.run_dir(scope, query_id) / RESULTS
        if row["state"] != SUCCESS_STATE:
            raise NotFound(f"query {query_id!r} has no results: it is {row['state']}, and only a successful query has")
        if row["kind"] in (Kind.CTAS.value, Kind.INSERT.value):
            raise NotFound(self._written_to(scope, row))
        if not source.is_file():
            raise NotFound(f"query {query_id!r} has no results: its statement returns no rows")
        media = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv", "json": "application/json"}[fmt]
        if fmt == "parquet":
            return source, media
        target = source.with_name(f"results.{fmt}")
        if not target.is_file():
            partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
            try:
                convert_results(self._engine, source, partial, fmt)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
        return target, media

    def _written_to(self, scope: Scope, row: Row) -> str:
        """Where a successful CTAS or INSERT INTO put its rows, said as the answer to a request for its results."""
        table = table_name(guard.statement(row["effective_sql"]).target or "")
        tables = self._dataset_tables(scope)
        ctas = row["kind"] == Kind.CTAS.value
        dataset = (row.get("datasets") or {}).get("created") if ctas else None
        if dataset is None:
            dataset = next((d for d, name in tables.items() if name == table), None)
        table = tables.get(dataset, table) if dataset else table
        what = "a CTAS" if ctas else "an INSERT INTO"
        where = f"dataset {dataset!r}" if dataset else f"table {table}"
        link = " (its _links.created_dataset)" if ctas and dataset else ""
        return (
            f"query {row['id']!r} is {what}: its {int(row['row_count'] or 0)} rows went into {where}{link}, not into "
            f"results; read them there, as table {table}"
        )

    def _dataset_tables(self, scope: Scope) -> dict[str, str]:
        """The Query Service's table name of each of the sandbox's datasets, by dataset id."""
        d = t.datasets.c
        with self._store.read() as conn:
            rows = conn.execute(
                select(d.id, d.name)
                .where(d.org_id == scope.org_id, d.sandbox == scope.sandbox)
                .order_by(d.created_ms, d.created_at, d.id)
            ).all()
        return assign_names([(str(r.id), str(r.name)) for r in rows])

    # ----- the job -----

    def execute(self, query_id: str, scope: Scope) -> None:
        with self._store.tx() as conn:
            row = get_row(conn, t.queries, scope, for_update=True, id=query_id)
            if row is None or row["state"] != SUBMITTED:
                return
            stamp = _ms()
            conn.execute(
                t.queries.update()
                .where(t.queries.c.id == query_id)
                .values(state=IN_PROGRESS, started_ms=stamp, updated_ms=stamp)
            )
        who = Principal(client_id=row["client_id"], org_id=scope.org_id, sandbox=scope.sandbox)
        session = self._service.session(who)
        with self._lock:
            self._running[query_id] = session
        done = threading.Event()
        watcher = threading.Thread(
            target=self._watch_cancel, args=(scope, query_id, session, done), name=f"cancel-{query_id}", daemon=True
        )
        try:
            if self._cancelled(scope, query_id):
                session.cancel()
                raise QueryError(CANCELLED_MSG, "57014")
            watcher.start()
            count, created, referenced = self._run(scope, query_id, session, row)
        except QueryError as exc:
            state = TIMEOUT if exc.message == TIMED_OUT else KILLED if exc.sqlstate == "57014" else FAILED
            self._lake.remove(self._lake.run_dir(scope, query_id))
            self._finish(scope, query_id, state, errors=[_error(exc.sqlstate, exc.message)])
        except Exception as exc:
            log.exception("query %s failed", query_id)
            self._lake.remove(self._lake.run_dir(scope, query_id))
            self._finish(scope, query_id, FAILED, errors=[_error("XX000", f"internal error ({type(exc).__name__})")])
        else:
            self._finish(scope, query_id, SUCCESS_STATE, count=count, created=created, referenced=referenced)
        finally:
            done.set()
            if watcher.is_alive():
                watcher.join()
            with self._lock:
                self._running.pop(query_id, None)
            session.close()

    def _watch_cancel(self, scope: Scope, query_id: str, session: DuckDBSession, done: threading.Event) -> None:
        """Cancels the session when the query's cancel flag is set: a ``PATCH`` answered by another process (an API
        replica, while a worker runs the query) reaches it within ``cancel_poll_s``."""
        while not done.wait(self._cancel_poll_s):
            try:
                cancelled = self._cancelled(scope, query_id)
            except Exception:  # the metadata store is away for a moment: look again next time
                log.warning("query %s: could not read its cancel flag", query_id, exc_info=True)
                continue
            if cancelled:
                session.cancel()  # again at each look: a cancel that fell between two statements is not lost

    def _cancelled(self, scope: Scope, query_id: str) -> bool:
        with self._store.read() as conn:
            row = get_row(conn, t.queries, scope, id=query_id)
        return row is None or bool(row["cancel"])

    def _run(self, scope: Scope, query_id: str, session: DuckDBSession, row: Row) -> tuple[int, str | None, list[str]]:
        folder = self._lake.run_dir(scope, query_id)
        folder.mkdir(parents=True, exist_ok=True)
        sql = row["effective_sql"]
        if self._engine.name == "duckdb":
            # The session's own walled database is DuckDB already: rows stream from it into the files.
            result = session.execute(sql)
            if result.columns is not None:
                schema = pa.schema([pa.field(c.name, c.type) for c in result.columns])
                result.rowcount = write_parquet(folder / RESULTS, schema, result.batches)
        else:
            scratch = folder / SCRATCH
            try:
                with self._engine.session() as engine:
                    result = session.execute_on(sql, engine, folder / RESULTS, scratch)
            finally:
                self._lake.remove(scratch)
        referenced = session.datasets_read()
        created = None
        if result.columns is None and row["kind"] == Kind.CTAS.value:
            target = guard.statement(sql).target
            created = session.dataset_of(target) if target else None
        return int(result.rowcount or 0), created, referenced

    def _finish(
        self,
        scope: Scope,
        query_id: str,
        state: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        count: int | None = None,
        created: str | None = None,
        referenced: list[str] | None = None,
    ) -> None:
        stamp = _ms()
        with self._store.tx() as conn:
            row = get_row(conn, t.queries, scope, for_update=True, id=query_id)
            if row is None:
                return
            if row["cancel"] and state == FAILED and errors and errors[0]["code"] == "57014":
                state = KILLED
            conn.execute(
                t.queries.update()
                .where(t.queries.c.id == query_id)
                .values(
                    state=state,
                    errors=errors or [],
                    row_count=count,
                    datasets={"referenced": referenced or [], "created": created},
                    ended_ms=stamp,
                    updated_ms=stamp,
                )
            )

    def recover(self, query_id: str, scope: Scope) -> None:
        """The server stopped while the query ran: it failed (a CTAS or INSERT is not run twice)."""
        with self._store.read() as conn:
            row = get_row(conn, t.queries, scope, id=query_id)
        if row is None or row["state"] in FINISHED:
            return
        self._lake.remove(self._lake.run_dir(scope, query_id))
        self._finish(scope, query_id, FAILED, errors=[_error("XX000", "the server stopped while the query ran")])


CANCELLED_MSG = "canceling statement due to user request"


def _error(sqlstate: str, message: str) -> dict[str, Any]:
    system = sqlstate.startswith(("XX", "53", "58"))
    return {"code": sqlstate, "message": message, "errorType": "SYSTEM_ERROR" if system else "USER_ERROR"}


def _filters(prop: str | None) -> list[Any]:
    """AEP's ``property`` filter: comma-separated ``name op value`` on created, updated, state, id, sql, client."""
    c = t.queries.c
    out: list[Any] = []
    for part in (p.strip() for p in (prop or "").split(",") if p.strip()):
        found = _FILTER.match(part)
        if found is None:
            raise BadRequest(
                f"property: {part!r} is not a filter (name op value; names: created, updated, state, id, sql, "
                "client; ops: ==, !=, >, <, >=, <=, ~)"
            )
        name, op, value = found.groups()
        if name in ("created", "updated"):
            col: Any = c.created_ms if name == "created" else c.updated_ms
            val: Any = _parse_time(value, f"property {name}")
        elif name == "client":
            if op != "==":
                raise BadRequest(f"property: client takes only ==, got {op!r}")
            out.append(literal(value == "API"))
            continue
        else:
            col = {"state": c.state, "id": c.id, "sql": c.effective_sql}[name]
            val = value
        if name == "sql" and op != "~":
            raise BadRequest(f"property: sql takes only ~ (contains), got {op!r}")
        ops = {
            "==": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            ">": lambda a, b: a > b,
            "<": lambda a, b: a < b,
            ">=": lambda a, b: a >= b,
            "<=": lambda a, b: a <= b,
            "~": lambda a, b: a.icontains(str(b), autoescape=True),  # the same on SQLite and PostgreSQL
        }
        out.append(ops[op](col, val))
    return out


def describe_query(row: Row, base_url: str) -> dict[str, Any]:
    """A query as AEP's Query Service answers it."""
    href = f"{base_url}data/foundation/query/queries/{row['id']}"
    request = dict(row["request"] or {})
    started, ended = row.get("started_ms"), row.get("ended_ms")
    elapsed = 0 if started is None else int((ended or _ms()) - started)
    datasets = row.get("datasets") or {}
    links: dict[str, Any] = {
        "self": {"href": href},
        "soft_delete": {"href": href, "method": "PATCH", "body": '{"op": "soft_delete"}'},
        "cancel": {"href": href, "method": "PATCH", "body": '{"op": "cancel"}'},
        "referenced_datasets": [
            {"id": d, "href": f"{base_url}data/foundation/catalog/dataSets/{d}"} for d in datasets.get("referenced", [])
        ],
    }
    if datasets.get("created"):
        d = datasets["created"]
        links["created_dataset"] = {"id": d, "href": f"{base_url}data/foundation/catalog/dataSets/{d}"}
    if row["state"] == SUCCESS_STATE and row["kind"] not in (Kind.CTAS.value, Kind.INSERT.value):
        links["results"] = {"href": f"{href}/results", "method": "GET"}
    body: dict[str, Any] = {
        "id": row["id"],
        "request": request,
        "isCTAS": row["kind"] == Kind.CTAS.value,
        "isInsertInto": row["kind"] == Kind.INSERT.value,
        "state": row["state"],
        "created": iso_ms(row["created_ms"]),
        "updated": iso_ms(row["updated_ms"]),
        "elapsedTime": elapsed,
        "rowCount": int(row["row_count"] or 0),
        "userId": f"{row['client_id']}@techacct.adobe.com",
        "client": "API",
        "errors": list(row["errors"] or []),
        "_links": links,
        "version": 1,
    }
    if row["effective_sql"] != request.get("sql"):
        body["effectiveSQL"] = row["effective_sql"]
    return body


def convert_results(engine: Engine, source: Path, target: Path, fmt: str) -> None:
    """A results Parquet file as CSV (nested values as JSON text) or as one JSON array of row objects (maps as JSON
    objects), written by the engine in bulk."""
    columns = []
    for f in pq.read_schema(source):
        col = ident(f.name)
        nested = pa.types.is_nested(f.type) or pa.types.is_map(f.type)
        columns.append(f"CAST(to_json({col}) AS VARCHAR) AS {col}" if nested and fmt == "csv" else col)
    select = f"SELECT {', '.join(columns)} FROM read_parquet({lit(str(source))})"
    with engine.session() as session:
        session.copy(select, target, "csv" if fmt == "csv" else "json_array")
