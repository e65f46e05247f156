"""The Profile Access API subset: one merged profile (or non-people entity) by identity.

The profile store resolves the identity to its profile through the identity graph and merges the
fragments of every profile-enabled dataset; the merge policy (the sandbox's default unless one is
named) says which value wins. The answer is AEP's: keyed by entity id, with ``entity`` in XDM shape
(nested fields, ``identityMap``, ``segmentMembership``), ``sources`` and ``lastModifiedAt``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from audiencehub.domain.merge_policies import DATASET_PRECEDENCE
from audiencehub.domain.namespaces import normalize
from audiencehub.errors import BadRequest, NotFound, Unprocessable
from audiencehub.metadata.store import Scope
from audiencehub.profile.base import Entity, ProfileStore
from audiencehub.services.identity import NamespaceService
from audiencehub.services.merge_policies import MergePolicyService

PROFILE = "_xdm.context.profile"
SEGMENT_DEFINITION = "_xdm.context.segmentdefinition"
EXPERIENCE_EVENT = "_xdm.context.experienceevent"


def iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"person.name.firstName": "Ann"}`` → ``{"person": {"name": {"firstName": "Ann"}}}``."""
    out: dict[str, Any] = {}
    for name, value in sorted(flat.items()):
        *parents, last = name.split(".")
        node = out
        for step in parents:
            node = node.setdefault(step, {})
        node[last] = value
    return out


def only_fields(body: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """AEP's ``fields``: the named fields, dotted paths keeping the nested field (``person.name``)."""
    out: dict[str, Any] = {}
    for path in paths:
        steps = path.split(".")
        node: Any = body
        for step in steps:
            if not isinstance(node, dict) or step not in node:
                break
            node = node[step]
        else:
            target = out
            for step in steps[:-1]:
                target = target.setdefault(step, {})
            target[steps[-1]] = node
    return out


class ProfileAccessService:
    def __init__(self, profiles: ProfileStore, namespaces: NamespaceService, policies: MergePolicyService) -> None:
        self._profiles = profiles
        self._namespaces = namespaces
        self._policies = policies

    def entity(
        self,
        scope: Scope,
        *,
        schema_name: str,
        entity_id: str | None,
        entity_ns: str | None,
        fields: str | None = None,
        merge_policy_id: str | None = None,
    ) -> dict[str, Any]:
        if schema_name == EXPERIENCE_EVENT:
            raise Unprocessable(
                f"schema.name: {EXPERIENCE_EVENT} lookups are not supported yet; read events with the Query Service"
            )
        if schema_name not in (PROFILE, SEGMENT_DEFINITION):
            raise BadRequest(f"schema.name: must be {PROFILE} or {SEGMENT_DEFINITION}, got {schema_name!r}")
        if not entity_id:
            raise BadRequest("entityId: an identity value is required")
        if not entity_ns:
            raise BadRequest("entityIdNS: the identity's namespace code is required (e.g. Email)")
        ns = self._namespaces.resolve(scope, entity_ns)
        if ns is None:
            raise BadRequest(f"entityIdNS: {entity_ns!r} is not an identity namespace of this sandbox")
        value = normalize(ns.rule, entity_id)
        if value is None:
            raise BadRequest(f"entityId: {entity_id!r} is not a valid {ns.code} identity")
        policy = self._policies.resolve(scope, merge_policy_id)
        precedence = list(policy.dataset_order) if policy.attribute_merge == DATASET_PRECEDENCE else None
        kind = "entity" if schema_name == SEGMENT_DEFINITION else "profile"
        found = self._profiles.entity(scope, ns.code, value, kind=kind, precedence=precedence)
        if found is None:
            raise NotFound(f"no {'profile' if kind == 'profile' else 'entity'} holds {ns.code} identity {entity_id!r}")
        body = self._shape(found)
        if fields:
            body = only_fields(body, [f.strip() for f in fields.split(",") if f.strip()])
        return {
            found.entity_id: {
                "entityId": found.entity_id,
                "mergePolicy": {"id": policy.id},
                "sources": found.sources,
                "entity": body,
                "lastModifiedAt": iso(found.last_modified),
            }
        }

    @staticmethod
    def _shape(found: Entity) -> dict[str, Any]:
        body = nest(found.attributes)
        identity_map: dict[str, list[dict[str, Any]]] = {}
        for code, ident in sorted(found.identities):
            identity_map.setdefault(code, []).append({"id": ident})
        body["identityMap"] = identity_map
        memberships: dict[str, dict[str, Any]] = {}
        for m in sorted(found.memberships, key=lambda m: (m.namespace, m.audience_id)):
            item: dict[str, Any] = {"status": m.status, "lastQualificationTime": iso(m.last_qualification_time)}
            if m.payload:
                item["payload"] = m.payload
            memberships.setdefault(m.namespace, {})[m.audience_id] = item
        if memberships:
            body["segmentMembership"] = memberships
        return body
