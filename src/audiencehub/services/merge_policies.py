"""Merge policies of a sandbox: the default one every sandbox has, and the ones its users create.

Every sandbox has a default policy for the profile class from its first use (timestamp ordered over
the private identity graph), created here on first read inside a write transaction; a partial unique
index (one default per schema class per sandbox) decides races between two first uses.
"""

from __future__ import annotations

import logging
import time
import uuid

from sqlalchemy import Connection

from audiencehub.domain.merge_policies import DEFAULT_SPEC, PROFILE_SCHEMA, MergePolicy, PolicySpec
from audiencehub.errors import NotFound
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import IntegrityError, MetadataStore, Row, Scope, get_row, insert_row

log = logging.getLogger(__name__)


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
