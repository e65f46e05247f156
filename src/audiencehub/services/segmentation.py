"""The Segmentation Service: segment definitions (segment jobs are in :mod:`audiencehub.services.segment_jobs`).

A definition's PQL is parsed and checked against the sandbox (its fields in the union schemas, the audiences it
names) when it is created or patched, and compiled again when a job evaluates it, since the sandbox may have
changed in between. The dependency graph between definitions refuses cycles and orders evaluation.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from audiencehub.domain import xdm
from audiencehub.domain.audiences import DEFAULT_NAMESPACE, AudienceField
from audiencehub.domain.segments import (
    SEGMENT_NAMESPACE,
    DefinitionSpec,
    MemberSource,
    Plan,
    check_definition,
    spec_of,
)
from audiencehub.domain.xdm import ResolvedSchema
from audiencehub.domain.xdm_standard import EVENT_CLASS, PROFILE_CLASS
from audiencehub.engines.ingest_sql import SQL_TYPE
from audiencehub.engines.xdm_sql import leaves
from audiencehub.errors import BadRequest, NotFound, Unprocessable
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, created_ns, get_row, insert_row, list_rows, update_row
from audiencehub.pql.ast import Membership, Node, PQLError
from audiencehub.pql.compile import Fields, compile_segment
from audiencehub.pql.parser import parse
from audiencehub.profile.base import ProfileStore
from audiencehub.services.auth import Principal
from audiencehub.services.merge_policies import MergePolicyService, sandbox_view

DEFINITIONS = "/data/core/ups/segment/definitions"
MAX_LIMIT = 1000
SORTABLE = {"name": "name", "creationTime": "created_ns", "updateTime": "updated_at"}
NOT_FIELDS = {"identityMap", "segmentMembership"}  # kept in the identity graph and the membership tables


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SegmentationService:
    def __init__(
        self,
        store: MetadataStore,
        profiles: ProfileStore,
        merge_policies: MergePolicyService,
        schema_of: Callable[[Scope, str], ResolvedSchema],
    ) -> None:
        self._store = store
        self._profiles = profiles
        self._policies = merge_policies
        self._schema_of = schema_of

    # -- segment definitions -----------------------------------------------------------------------

    def create(self, principal: Principal, data: Any) -> dict[str, Any]:
        scope = principal.scope
        spec = self._checked(data)
        policy = self._policies.resolve(scope, spec.merge_policy_id)
        spec = DefinitionSpec(**{**spec.__dict__, "merge_policy_id": policy.id})
        segment_id = str(uuid.uuid4())
        deps = self._dependencies(scope, segment_id, spec)
        stamp = now_ms()
        with self._store.tx() as conn:
            _lock_definitions(conn, scope)
            self._check_name(conn, scope, spec.name, None)
            insert_row(
                conn,
                t.segment_definitions,
                {
                    "id": segment_id,
                    "org_id": scope.org_id,
                    "sandbox": scope.sandbox,
                    "name": spec.name,
                    "spec": spec.to_spec(),
                    "dependencies": deps,
                    "created_by": principal.user,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "created_ns": created_ns(),
                },
            )
            row = self._row(conn, scope, segment_id)
        return definition_view(row)

    def get(self, scope: Scope, segment_id: str) -> dict[str, Any]:
        with self._store.read() as conn:
            return definition_view(self._row(conn, scope, segment_id))

    def list_definitions(
        self, scope: Scope, *, start: int = 0, limit: int = 100, page: int | None = None, sort: str | None = None
    ) -> dict[str, Any]:
        """AEP's list: ``segments``, ``page`` (totalCount, totalPages, sortField, sort, pageSize, limit), ``link``."""
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: must be from 1 to {MAX_LIMIT}, got {limit}")
        if start < 0 or (page is not None and page < 0):
            raise BadRequest(f"start: must be 0 or more, got {page if page is not None and page < 0 else start}")
        offset = page * limit if page is not None else start
        field, direction = sort_order(sort or "creationTime:desc")
        column = t.segment_definitions.c[SORTABLE[field]]
        order = [column.desc() if direction == "desc" else column.asc(), t.segment_definitions.c.id]
        with self._store.read() as conn:
            rows, total = list_rows(conn, t.segment_definitions, scope, order_by=order, limit=limit, offset=offset)
        nxt = f"{DEFINITIONS}?start={offset + limit}&limit={limit}" if offset + limit < total else ""
        return {
            "segments": [definition_view(r) for r in rows],
            "page": {
                "totalCount": total,
                "totalPages": -(-total // limit),
                "sortField": field,
                "sort": direction,
                "pageSize": len(rows),
                "limit": limit,
            },
            "link": {"next": nxt},
        }

    def bulk_get(self, scope: Scope, data: Any) -> dict[str, Any]:
        ids = data.get("ids") if isinstance(data, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in ids):
            raise BadRequest(f'ids: must be a list of {{"id": "<segment id>"}} objects, got {ids!r}')
        out: dict[str, Any] = {}
        with self._store.read() as conn:
            for item in ids:
                row = get_row(conn, t.segment_definitions, scope, id=item["id"])
                out[item["id"]] = (
                    definition_view(row)
                    if row is not None
                    else {"id": item["id"], "status": 404, "message": f"no segment definition {item['id']!r}"}
                )
        return {"results": out}

    def patch(self, scope: Scope, segment_id: str, data: Any) -> dict[str, Any]:
        with self._store.read() as conn:
            row = self._row(conn, scope, segment_id)
        current = spec_of(row["name"], row["spec"])
        spec = self._checked(data, current)
        if spec.merge_policy_id != current.merge_policy_id:
            policy = self._policies.resolve(scope, spec.merge_policy_id)
            spec = DefinitionSpec(**{**spec.__dict__, "merge_policy_id": policy.id})
        deps = self._dependencies(scope, segment_id, spec)
        with self._store.tx() as conn:
            _lock_definitions(conn, scope)
            self._row(conn, scope, segment_id)
            self._check_name(conn, scope, spec.name, segment_id)
            self._check_acyclic(conn, scope, segment_id, deps["segments"])
            update_row(
                conn,
                t.segment_definitions,
                segment_id,
                {"name": spec.name, "spec": spec.to_spec(), "dependencies": deps, "updated_at": now_ms()},
            )
            row = self._row(conn, scope, segment_id)
        return definition_view(row)

    def delete(self, scope: Scope, segment_id: str) -> None:
        with self._store.tx() as conn:
            _lock_definitions(conn, scope)
            self._row(conn, scope, segment_id)
            users = self.dependents(conn, scope, segment_id, direct=True)
            if users:
                names = ", ".join(f"{r['name']!r} ({r['id']})" for r in users)
                raise Unprocessable(f"segment definition {segment_id} is used by {names}; change or delete those first")
            conn.execute(t.segment_definitions.delete().where(t.segment_definitions.c.id == segment_id))
        self._profiles.remove_audience(scope, segment_id)

    def users_of(self, scope: Scope, audience_id: str) -> list[str]:
        """Names of the segment definitions whose expression reads the audience (external or a segment)."""
        with self._store.read() as conn:
            return [r["name"] for r in self.dependents(conn, scope, audience_id, direct=True)]

    # -- checks ------------------------------------------------------------------------------------

    @staticmethod
    def _checked(data: Any, current: DefinitionSpec | None = None) -> DefinitionSpec:
        try:
            spec = check_definition(data, current)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return spec

    def _parse(self, spec: DefinitionSpec) -> Node:
        try:
            return parse(spec.expression)
        except PQLError as exc:
            raise BadRequest(f"expression.value: {exc.describe(spec.expression)}") from exc

    def _dependencies(self, scope: Scope, segment_id: str, spec: DefinitionSpec) -> dict[str, list[str]]:
        """Checks the expression against the sandbox (by compiling it) and answers the audiences it reads."""
        node = self._parse(spec)
        resolve = self.resolver(scope)
        try:
            compile_segment(Plan(dt.datetime.now(dt.UTC)), segment_id, node, self.fields(scope), resolve.source)
        except PQLError as exc:
            raise BadRequest(f"expression.value: {exc.describe(spec.expression)}") from exc
        if segment_id in resolve.segments:
            raise BadRequest(f"expression.value: a segment definition cannot use itself ({segment_id})")
        return {"segments": sorted(resolve.segments), "audiences": sorted(resolve.audiences)}

    @staticmethod
    def _check_name(conn: Connection, scope: Scope, name: str, segment_id: str | None) -> None:
        row = get_row(conn, t.segment_definitions, scope, name=name)
        if row is not None and row["id"] != segment_id:
            raise Unprocessable(f"name: a segment definition named {name!r} already exists ({row['id']})")

    def _check_acyclic(self, conn: Connection, scope: Scope, segment_id: str, uses: list[str]) -> None:
        """``segment_id`` may use ``uses`` only if none of them already depends on it."""
        graph = {r["id"]: r["dependencies"]["segments"] for r in self.definitions(conn, scope)}
        graph[segment_id] = uses
        path = _cycle(graph, segment_id)
        if path:
            raise BadRequest(
                f"expression.value: the segment definitions would depend on themselves: {' → '.join(path)}"
            )

    # -- resolution ----------------------------------------------------------------------------------

    def fields(self, scope: Scope) -> Fields:
        return Fields(self._union_fields(scope, PROFILE_CLASS), self._union_fields(scope, EVENT_CLASS))

    def _union_fields(self, scope: Scope, class_id: str) -> dict[str, str]:
        try:
            schema = self._schema_of(scope, xdm.union_id(class_id))
        except NotFound:
            return {}
        return {leaf.name: leaf.type for leaf in leaves(schema.properties) if leaf.path[0] not in NOT_FIELDS}

    def resolver(self, scope: Scope) -> _Resolver:
        with self._store.read() as conn:
            segments = {r["id"] for r in self.definitions(conn, scope)}
            audiences = list_rows(conn, t.audiences, scope, state="ACTIVE")[0]
        return _Resolver(scope, segments, audiences, self._profiles)

    # -- rows ----------------------------------------------------------------------------------------

    @staticmethod
    def definitions(conn: Connection, scope: Scope) -> list[Row]:
        return list_rows(conn, t.segment_definitions, scope, order_by=t.segment_definitions.c.created_ns)[0]

    def dependents(self, conn: Connection, scope: Scope, audience_id: str, *, direct: bool) -> list[Row]:
        """Definitions that read ``audience_id`` (directly, or also through other definitions)."""
        defs = self.definitions(conn, scope)
        found: dict[str, Row] = {}
        frontier = {audience_id}
        while frontier:
            nxt = set()
            for r in defs:
                uses = set(r["dependencies"]["segments"]) | set(r["dependencies"]["audiences"])
                if r["id"] not in found and uses & frontier:
                    found[r["id"]] = r
                    nxt.add(r["id"])
            frontier = set() if direct else nxt
        return list(found.values())

    @staticmethod
    def _row(conn: Connection, scope: Scope, segment_id: str) -> Row:
        row = get_row(conn, t.segment_definitions, scope, id=segment_id)
        if row is None:
            raise NotFound(f"no segment definition {segment_id!r} in this sandbox")
        return row


class _Resolver:
    """Finds the audience a membership condition names, and remembers which ones it found."""

    def __init__(self, scope: Scope, segments: set[str], audiences: list[Row], profiles: ProfileStore) -> None:
        self._scope = scope
        self._segment_ids = segments
        self._audiences = audiences
        self._profiles = profiles
        self.segments: set[str] = set()
        self.audiences: set[str] = set()

    def source(self, n: Membership) -> tuple[MemberSource, dict[str, str]]:
        ns, sid = n.namespace, n.segment_id
        if ns in (None, SEGMENT_NAMESPACE) and sid in self._segment_ids:
            self.segments.add(sid)
            if n.payload is not None:
                raise PQLError(
                    "payload conditions need an external audience; segment definitions have no payload", n.pos
                )
            return MemberSource("segment", sid, SEGMENT_NAMESPACE), {}
        if ns != SEGMENT_NAMESPACE:
            for row in self._audiences:
                spec = row["spec"]
                if sid in (row["id"], row["custom_audience_id"]) and ns in (
                    None,
                    spec.get("namespace", DEFAULT_NAMESPACE),
                ):
                    self.audiences.add(row["id"])
                    fields = [AudienceField.model_validate(f) for f in spec["fields"]]
                    payload = {f.name: SQL_TYPE[f.type] for f in fields if not f.identityNs}
                    return MemberSource("audience", row["id"], spec.get("namespace", DEFAULT_NAMESPACE)), payload
            found = [ns] if ns is not None else self._profiles.record_segments(self._scope, sid)
            if found:
                if n.payload is not None:
                    raise PQLError(
                        "payload conditions need an external audience; imported memberships have none", n.pos
                    )
                return MemberSource("records", sid, found[0]), {}
        where = "segment definition" if ns == SEGMENT_NAMESPACE else "segment definition or audience"
        raise PQLError(f"no {where} {sid!r} in this sandbox", n.pos)


def _lock_definitions(conn: Connection, scope: Scope) -> None:
    """Serializes changes to the sandbox's segment definitions by locking its row in ``sandboxes``.

    A change checks the graph of definitions (no cycle, no dependent left behind) before it writes; on PostgreSQL
    two changes could each pass that check against the graph before the other's commit. SQLite's write lock does
    the same for every write; here only definitions wait, and only for each other.
    """
    get_row(conn, t.sandboxes, None, for_update=True, org_id=scope.org_id, name=scope.sandbox)


def sort_order(sort: str, allowed: tuple[str, ...] = tuple(SORTABLE)) -> tuple[str, str]:
    field, _, direction = sort.partition(":")
    direction = direction or "asc"
    if field not in allowed or direction not in ("asc", "desc"):
        raise BadRequest(f"sort: must be one of {', '.join(allowed)} with :asc or :desc, got {sort!r}")
    return field, direction


def _cycle(graph: dict[str, list[str]], start: str) -> list[str]:
    """A path start → ... → start through ``graph``, or empty."""
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, []):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return []


def definition_view(row: Row) -> dict[str, Any]:
    spec = row["spec"]
    body: dict[str, Any] = {
        "id": row["id"],
        "imsOrgId": row["org_id"],
        "sandbox": sandbox_view(row["org_id"], row["sandbox"]),
        "name": row["name"],
        "description": spec.get("description") or "",
        "expression": spec["expression"],
        "schema": spec["schema"],
        "evaluationInfo": spec["evaluationInfo"],
        "mergePolicyId": spec.get("mergePolicyId"),
        "profileInstanceId": "ups",
        "dataGovernancePolicy": {"excludeOptOut": True},
        "dependents": row["dependencies"]["segments"] + row["dependencies"]["audiences"],
        "creationTime": row["created_at"],
        "updateTime": row["updated_at"],
        "updateEpoch": row["updated_at"] // 1000,
    }
    if spec.get("ttlInDays") is not None:
        body["ttlInDays"] = spec["ttlInDays"]
    if spec.get("labels"):
        body["labels"] = spec["labels"]
    return body
