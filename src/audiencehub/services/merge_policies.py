"""Merge policies of a sandbox: the default one every sandbox has, and the ones its users create.

Every sandbox has a default policy for the profile class from its first use (timestamp ordered over
the private identity graph), inserted by the first call that needs it. Partial unique indexes (one
default per schema class, one policy active on edge, per sandbox) let the database decide races;
making a policy the default un-defaults the previous one in the same transaction.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select

from audiencehub.domain.merge_policies import (
    DATASET_PRECEDENCE,
    DEFAULT_SPEC,
    PROFILE_SCHEMA,
    MergePolicy,
    PolicySpec,
    apply_patch,
    check_attribute_merge,
    check_identity_graph,
    check_schema,
    parse_spec,
)
from audiencehub.errors import BadRequest, Duplicate, NotFound, Unprocessable
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import (
    IntegrityError,
    MetadataStore,
    Row,
    Scope,
    delete_rows,
    get_row,
    insert_row,
    list_rows,
    update_row,
)
from audiencehub.services.tenancy import DEFAULT_SANDBOX

log = logging.getLogger(__name__)

DEFAULT_LIMIT, MAX_LIMIT = 20, 100
MAX_BULK = 100
ORDERABLE = {
    "name": t.merge_policies.c.name,
    "updateEpoch": t.merge_policies.c.update_epoch,
    "version": t.merge_policies.c.version,
}
Build = Callable[[Row], PolicySpec]
"""Makes the policy to write from its current row (empty for a new one); ValueError names a bad field."""
PATH = "@/mergePolicies"
"""How AEP writes the path of a next page's href (relative to ``/data/core/ups/config``)."""


def _invalid(exc: ValueError) -> BadRequest:
    return BadRequest(str(exc))


class MergePolicyService:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    # -- for the Profile Access API and segmentation ----------------------------------------

    def resolve(self, scope: Scope, policy_id: str | None) -> MergePolicy:
        """The policy ``policy_id`` names, or the sandbox's default when None; NotFound names an unknown id."""
        if policy_id is None:
            return to_policy(self._default_row(scope))
        with self._store.read() as conn:
            row = get_row(conn, t.merge_policies, scope, id=policy_id)
        if row is None:
            raise NotFound(f"mergePolicyId: no merge policy {policy_id!r} in this sandbox")
        return to_policy(row)

    # -- endpoints ---------------------------------------------------------------------------

    def list(
        self,
        scope: Scope,
        *,
        start: str | None = None,
        limit: int = DEFAULT_LIMIT,
        orderby: str | None = None,
        schema: str | None = None,
        default: bool | None = None,
        active_on_edge: bool | None = None,
        identity_graph: str | None = None,
        attribute_merge: str | None = None,
    ) -> dict[str, Any]:
        """One page of the sandbox's policies (AEP's ``_page``/``children``/``_links``), filtered and ordered."""
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: must be from 1 to {MAX_LIMIT}, got {limit}")
        offset = _offset(start)
        field = (orderby or "name").strip() or "name"
        column = ORDERABLE.get(field.lstrip("+-"))
        if column is None:
            raise BadRequest(f"orderBy: {orderby!r} is not one of {', '.join(ORDERABLE)} (prefix - for descending)")
        keys: dict[str, Any] = {}
        try:
            if schema is not None:
                keys["schema_name"] = check_schema(schema)
            if identity_graph is not None:
                keys["identity_graph"] = check_identity_graph(identity_graph)
            if attribute_merge is not None:
                keys["attribute_merge"] = check_attribute_merge(attribute_merge)
        except ValueError as exc:
            raise _invalid(exc) from exc
        if default is not None:
            keys["is_default"] = default
        if active_on_edge is not None:
            keys["active_on_edge"] = active_on_edge
        self._default_row(scope)
        c = t.merge_policies.c
        order = [column.desc() if field.startswith("-") else column.asc(), c.created_ns, c.id]
        with self._store.read() as conn:
            rows, total = list_rows(conn, t.merge_policies, scope, order_by=order, limit=limit, offset=offset, **keys)
        body: dict[str, Any] = {
            "_page": {"totalCount": total, "pageSize": len(rows), "count": len(rows)},
            "children": [policy_view(r) for r in rows],
            "_links": {"next": {"href": ""}},
        }
        if offset + limit < total:
            nxt = str(offset + limit)
            body["_page"]["next"] = nxt
            body["_links"]["next"]["href"] = f"{PATH}?start={nxt}&orderBy={field}&limit={limit}"
        return body

    def get(self, scope: Scope, policy_id: str) -> dict[str, Any]:
        with self._store.read() as conn:
            return policy_view(self._row(conn, scope, policy_id))

    def bulk_get(self, scope: Scope, data: Any) -> dict[str, Any]:
        """AEP's multi-status answer: each id maps to its policy, or to a problem naming why it is not there."""
        ids = _bulk_ids(data)
        self._default_row(scope)
        results: dict[str, Any] = {}
        with self._store.read() as conn:
            for policy_id in ids:
                row = get_row(conn, t.merge_policies, scope, id=policy_id)
                results[policy_id] = policy_view(row) if row is not None else _missing(policy_id)
        return {"results": results}

    def create(self, scope: Scope, data: Any) -> dict[str, Any]:
        try:
            spec = parse_spec(data)
        except ValueError as exc:
            raise _invalid(exc) from exc
        policy_id = str(uuid.uuid4())
        row = self._write(scope, policy_id, lambda _: spec, new=True)
        log.info("merge policy %s (%s) created in %s/%s", policy_id, spec.attribute_merge, scope.org_id, scope.sandbox)
        return policy_view(row)

    def replace(self, scope: Scope, policy_id: str, data: Any) -> dict[str, Any]:
        """PUT: the whole policy from ``data``; the read-only fields of an answer may be echoed and are ignored."""
        try:
            spec = parse_spec(data, echo_allowed=True)
        except ValueError as exc:
            raise _invalid(exc) from exc
        if data.get("id", policy_id) != policy_id:
            raise BadRequest(f"id: {data['id']!r} is not the id in the path ({policy_id})")
        return policy_view(self._write(scope, policy_id, lambda _: spec, new=False))

    def patch(self, scope: Scope, policy_id: str, ops: Any) -> dict[str, Any]:
        # Applied to the row read in the write transaction, so two PATCHes never lose each other's change.
        return policy_view(self._write(scope, policy_id, lambda row: apply_patch(to_spec(row), ops), new=False))

    def delete(self, scope: Scope, policy_id: str) -> None:
        with self._store.tx() as conn:
            row = self._row(conn, scope, policy_id)
            if row["is_default"]:
                raise Unprocessable(
                    f"merge policy {policy_id} is the default of {row['schema_name']} in this sandbox and cannot "
                    "be deleted; make another policy the default first"
                )
            if row["active_on_edge"]:
                raise Unprocessable(
                    f"merge policy {policy_id} is active on edge and cannot be deleted; "
                    "set isActiveOnEdge to false (PATCH or PUT) first"
                )
            delete_rows(conn, t.merge_policies, id=policy_id, org_id=scope.org_id, sandbox=scope.sandbox)
        log.info("merge policy %s deleted in %s/%s", policy_id, scope.org_id, scope.sandbox)

    # -- writing -----------------------------------------------------------------------------

    def _write(self, scope: Scope, policy_id: str, build: Build, *, new: bool) -> Row:
        """Inserts (``new``) or updates the policy ``build`` makes of its current row, in one transaction."""
        try:
            with self._store.tx() as conn:
                return self._write_in(conn, scope, policy_id, build, new=new)
        except IntegrityError as exc:
            # Only where writers do not serialize (PostgreSQL): a concurrent change took the default or the edge.
            raise Duplicate(
                "another request changed this sandbox's default or active-on-edge merge policy at the same time; "
                "try again"
            ) from exc

    def _write_in(self, conn: Connection, scope: Scope, policy_id: str, build: Build, *, new: bool) -> Row:
        # The row lock makes two updates of one policy take turns: each version follows the one before.
        row = None if new else self._row(conn, scope, policy_id, lock=True)
        try:
            spec = build(row or {})
        except ValueError as exc:
            raise _invalid(exc) from exc
        current = ensure_default(conn, scope, spec.schema)
        if row is not None:
            if row["is_default"] and not spec.default:
                raise Unprocessable(
                    f"default: merge policy {policy_id} is the default of {row['schema_name']} in this sandbox; "
                    "make another policy the default instead (a sandbox always has one)"
                )
            if row["schema_name"] != spec.schema:
                raise BadRequest(f"schema.name: a policy's schema class cannot change (it is {row['schema_name']})")
        if spec.attribute_merge == DATASET_PRECEDENCE:
            self._check_datasets(conn, scope, spec.dataset_order)
        if spec.active_on_edge:
            edge = get_row(conn, t.merge_policies, scope, active_on_edge=True)
            if edge is not None and edge["id"] != policy_id:
                raise Unprocessable(
                    f"isActiveOnEdge: merge policy {edge['id']} ({edge['name']!r}) is already active on edge; "
                    "a sandbox has one, so set it to false there first"
                )
        now = int(time.time())
        if spec.default and current["id"] != policy_id:
            update_row(
                conn,
                t.merge_policies,
                current["id"],
                {"is_default": False, "version": current["version"] + 1, "update_epoch": now},
            )
            log.info("merge policy %s is no longer the default in %s/%s", current["id"], scope.org_id, scope.sandbox)
        values = spec_values(spec)
        if row is None:
            insert_row(conn, t.merge_policies, values | new_row_values(scope, policy_id))
        else:
            update_row(conn, t.merge_policies, policy_id, values | {"version": row["version"] + 1, "update_epoch": now})
        return self._row(conn, scope, policy_id)

    @staticmethod
    def _check_datasets(conn: Connection, scope: Scope, order: tuple[str, ...]) -> None:
        c = t.datasets.c
        stmt = select(c.id).where(c.org_id == scope.org_id, c.sandbox == scope.sandbox, c.id.in_(order))
        found = set(conn.execute(stmt).scalars())
        for i, dataset_id in enumerate(order):
            if dataset_id not in found:
                raise BadRequest(f"attributeMerge.order[{i}]: no dataset {dataset_id!r} in this sandbox")

    @staticmethod
    def _row(conn: Connection, scope: Scope, policy_id: str, *, lock: bool = False) -> Row:
        row = get_row(conn, t.merge_policies, scope, for_update=lock, id=policy_id)
        if row is None:
            raise NotFound(f"mergePolicyId: no merge policy {policy_id!r} in this sandbox")
        return row

    # -- the default ------------------------------------------------------------------------

    def _default_row(self, scope: Scope, schema: str = PROFILE_SCHEMA) -> Row:
        with self._store.read() as conn:
            row = _find_default(conn, scope, schema)
        if row is not None:
            return row
        try:
            with self._store.tx() as conn:
                return ensure_default(conn, scope, schema)
        except IntegrityError:
            # Another process seeded it between our check and our insert (PostgreSQL; SQLite serializes).
            with self._store.read() as conn:
                row = _find_default(conn, scope, schema)
            if row is None:
                raise
            return row


def _find_default(conn: Connection, scope: Scope, schema: str) -> Row | None:
    return get_row(conn, t.merge_policies, scope, schema_name=schema, is_default=True)


def ensure_default(conn: Connection, scope: Scope, schema: str = PROFILE_SCHEMA) -> Row:
    """The sandbox's default policy of ``schema``, inserted in ``conn``'s transaction when it has none yet."""
    row = _find_default(conn, scope, schema)
    if row is not None:
        return row
    policy_id = str(uuid.uuid4())
    insert_row(conn, t.merge_policies, spec_values(DEFAULT_SPEC) | new_row_values(scope, policy_id))
    log.info("default merge policy %s created in %s/%s", policy_id, scope.org_id, scope.sandbox)
    row = get_row(conn, t.merge_policies, scope, id=policy_id)
    assert row is not None
    return row


def spec_values(spec: PolicySpec) -> Row:
    return {
        "name": spec.name,
        "schema_name": spec.schema,
        "identity_graph": spec.identity_graph,
        "attribute_merge": spec.attribute_merge,
        "dataset_order": list(spec.dataset_order),
        "is_default": spec.default,
        "active_on_edge": spec.active_on_edge,
    }


def new_row_values(scope: Scope, policy_id: str) -> Row:
    return {
        "id": policy_id,
        "org_id": scope.org_id,
        "sandbox": scope.sandbox,
        "version": 1,
        "update_epoch": int(time.time()),
        "created_ns": time.time_ns(),
    }


def to_policy(row: Row) -> MergePolicy:
    return MergePolicy(
        id=row["id"],
        name=row["name"],
        identity_graph=row["identity_graph"],
        attribute_merge=row["attribute_merge"],
        dataset_order=tuple(row["dataset_order"]),
        default=bool(row["is_default"]),
    )


def to_spec(row: Row) -> PolicySpec:
    return PolicySpec(
        name=row["name"],
        schema=row["schema_name"],
        identity_graph=row["identity_graph"],
        attribute_merge=row["attribute_merge"],
        dataset_order=tuple(row["dataset_order"]),
        default=bool(row["is_default"]),
        active_on_edge=bool(row["active_on_edge"]),
    )


def policy_view(row: Row) -> dict[str, Any]:
    """A merge policy as the Profile API answers it (the spec's MergePolicy, with AEP's sandbox and updateEpoch)."""
    merge: dict[str, Any] = {"type": row["attribute_merge"]}
    if row["attribute_merge"] == DATASET_PRECEDENCE:
        merge["order"] = list(row["dataset_order"])
    return {
        "id": row["id"],
        "name": row["name"],
        "imsOrgId": row["org_id"],
        "sandbox": sandbox_view(row["org_id"], row["sandbox"]),
        "schema": {"name": row["schema_name"]},
        "version": row["version"],
        "identityGraph": {"type": row["identity_graph"]},
        "attributeMerge": merge,
        "isActiveOnEdge": bool(row["active_on_edge"]),
        "default": bool(row["is_default"]),
        "updateEpoch": row["update_epoch"],
    }


def sandbox_view(org_id: str, sandbox: str) -> dict[str, Any]:
    # NOTE: sandboxes have no type here; the org's first sandbox (prod) plays AEP's default production one.
    is_default = sandbox == DEFAULT_SANDBOX
    return {
        "sandboxId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"audiencehub:sandbox:{org_id}/{sandbox}")),
        "sandboxName": sandbox,
        "type": "production" if is_default else "development",
        "default": is_default,
    }


def _offset(start: str | None) -> int:
    if start is None or start == "":
        return 0
    if not start.isdigit():
        raise BadRequest(f"start: {start!r} is not a page offset (a whole number, as in a next page's href)")
    return int(start)


def _bulk_ids(data: Any) -> list[str]:
    if not isinstance(data, dict) or not isinstance(data.get("ids"), list) or not data["ids"]:
        raise BadRequest('ids: a non-empty array of {"id": "{MERGE_POLICY_ID}"} objects is required')
    unknown = sorted(set(data) - {"ids"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: not a field of a bulk-get request (only ids)")
    if len(data["ids"]) > MAX_BULK:
        raise BadRequest(f"ids: at most {MAX_BULK} ids in one request, got {len(data['ids'])}")
    ids: list[str] = []
    for i, item in enumerate(data["ids"]):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise BadRequest(f'ids[{i}]: must be an object {{"id": "{{MERGE_POLICY_ID}}"}}, got {item!r}')
        if item["id"] not in ids:
            ids.append(item["id"])
    return ids


def _missing(policy_id: str) -> dict[str, Any]:
    return {
        "id": policy_id,
        "status": NotFound.status,
        "errorCode": NotFound.code,
        "title": NotFound.title,
        "detail": f"no merge policy {policy_id!r} in this sandbox",
    }
