"""The job behind ``POST /external-audience/``: the audience's schema and dataset, then ACTIVE."""

from __future__ import annotations

import uuid
from typing import Any

from audiencehub.domain.runs import Status
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Scope, delete_rows, get_row, insert_row, now, update_row
from audiencehub.profile.base import ProfileStore
from audiencehub.services.external_audiences import ACTIVE, CREATING

XDM_TYPE: dict[str, dict[str, str]] = {
    "string": {"type": "string"},
    "number": {"type": "number"},
    "long": {"type": "integer", "meta:xdmType": "long"},
    "integer": {"type": "integer", "meta:xdmType": "int"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
    "boolean": {"type": "boolean"},
}


def audience_schema(name: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    """The dataset schema of an external audience: its fields, typed, with identity descriptors."""
    return {
        "title": f"{name} schema",
        "type": "object",
        "meta:class": "https://ns.adobe.com/xdm/context/external-audience",
        "properties": {f["name"]: dict(XDM_TYPE[f["type"]]) for f in fields},
        "meta:identities": [
            {"field": f["name"], "namespace": f["identityNs"], "primary": i == 0}
            for i, f in enumerate(x for x in fields if x.get("identityNs"))
        ],
    }


class AudienceCreation:
    """The job behind ``POST /external-audience/``: schema, dataset, then the audience is ACTIVE."""

    def __init__(self, store: MetadataStore, profiles: ProfileStore) -> None:
        self._store = store
        self._profiles = profiles

    def execute(self, operation_id: str, scope: Scope) -> None:
        with self._store.tx() as conn:
            # The operation's row lock orders this against fail(): a finished operation stays finished.
            op = get_row(conn, t.operations, scope, for_update=True, id=operation_id)
            if op is None or Status(op["status"]).finished:
                return
            audience = get_row(conn, t.audiences, scope, id=op["audience_id"])
            if audience is None:
                return
            update_row(conn, t.operations, operation_id, {"status": Status.PROCESSING.value, "updated_at": now()})
        spec, stamp = audience["spec"], now()
        # Deterministic ids: a retried creation finds what the first attempt made.
        schema_id = f"https://ns.adobe.com/{scope.org_id}/schemas/{uuid.uuid5(uuid.NAMESPACE_URL, audience['id']).hex}"
        dataset_id = str(uuid.uuid5(uuid.NAMESPACE_OID, audience["id"]))
        self._profiles.set_audience(scope, audience["id"], spec["namespace"], spec["ttlInDays"])
        with self._store.tx() as conn:
            op = get_row(conn, t.operations, scope, for_update=True, id=operation_id)
            if op is None or Status(op["status"]).finished:
                return  # failed meanwhile (recovered as dead): the audience is gone, nothing is added for it
            scoped = {"org_id": scope.org_id, "sandbox": scope.sandbox, "created_at": stamp}
            if get_row(conn, t.schemas, scope, id=schema_id) is None:
                insert_row(
                    conn,
                    t.schemas,
                    {
                        "id": schema_id,
                        **scoped,
                        "title": f"{audience['name']} schema",
                        "class_id": "https://ns.adobe.com/xdm/context/external-audience",
                        "definition": audience_schema(audience["name"], spec["fields"]),
                    },
                )
            if get_row(conn, t.datasets, scope, id=dataset_id) is None:
                insert_row(
                    conn,
                    t.datasets,
                    {
                        "id": dataset_id,
                        **scoped,
                        "name": f"{audience['name']} Dataset",
                        "schema_id": schema_id,
                        "kind": "external-audience",
                        "tags": {"externalAudienceId": [audience["id"]]},
                        "updated_at": stamp,
                    },
                )
            update_row(
                conn,
                t.audiences,
                audience["id"],
                {"state": ACTIVE, "dataset_id": dataset_id, "schema_id": schema_id},
            )
            update_row(conn, t.operations, operation_id, {"status": Status.SUCCESS.value, "updated_at": now()})

    def fail(self, operation_id: str, scope: Scope, reason: str) -> None:
        """Gives up on a creation: the operation reports FAILED and the name is free again."""
        with self._store.tx() as conn:
            op = get_row(conn, t.operations, scope, for_update=True, id=operation_id)
            if op is None or Status(op["status"]).finished:
                return
            update_row(
                conn,
                t.operations,
                operation_id,
                {"status": Status.FAILED.value, "error": reason, "updated_at": now()},
            )
            audience = get_row(conn, t.audiences, scope, id=op["audience_id"])
            if audience is not None and audience["state"] == CREATING:
                delete_rows(conn, t.audiences, id=audience["id"])
