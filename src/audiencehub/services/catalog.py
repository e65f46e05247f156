"""The Catalog Service subset: datasets (``/dataSets``) and the batches that fill them (``/batches``).

Catalog answers use AEP's shapes: objects keyed by id, timestamps in epoch milliseconds (the metadata
store keeps seconds), create/patch/delete answered with ``["@/dataSets/{id}"]``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, func, select

from audiencehub.errors import BadRequest, Duplicate, NotFound
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, delete_rows, get_row, insert_row, list_rows, now
from audiencehub.services.auth import Principal
from audiencehub.services.lake import Lake

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
KIND_XDM = "xdm"
KIND_AUDIENCE = "external-audience"
PROFILE_TAG = "unifiedProfile"
IDENTITY_TAG = "unifiedIdentity"
SCHEMA_CONTENT_TYPE = "application/vnd.adobe.xed+json;version=1"
CREATE_FIELDS = frozenset(
    {
        "name",
        "description",
        "schemaRef",
        "tags",
        "fileDescription",
        "enableErrorDiagnostics",
        "observableSchema",
        "basePath",
        "dataSourceId",
        "schema",
    }
)
PATCH_FIELDS = frozenset({"name", "description", "tags", "fileDescription", "enableErrorDiagnostics"})
_ENABLED = re.compile(r"^\s*enabled\s*:\s*true\s*$", re.IGNORECASE)


def ms(seconds: int | None) -> int | None:
    return None if seconds is None else int(seconds) * 1000


def created_ms() -> int:
    return time.time_ns() // 1_000_000


def created_of(row: Row) -> int:
    """A row's creation time in epoch ms (rows written before ``created_ms`` existed: whole seconds)."""
    return int(row["created_ms"]) if row.get("created_ms") else int(row["created_at"]) * 1000


def _created_order(table: Any) -> Any:
    return func.coalesce(table.c.created_ms, table.c.created_at * 1000)


def tag_enabled(tags: dict[str, Any], name: str) -> bool:
    """``tags[name]`` holds ``"enabled:true"`` (AEP writes it with and without a space)."""
    values = tags.get(name) or []
    return any(isinstance(v, str) and _ENABLED.match(v) for v in values)


def _check_tags(tags: Any) -> dict[str, list[str]]:
    if not isinstance(tags, dict):
        raise BadRequest(f"tags: must be an object of string lists, got {type(tags).__name__}")
    for key, values in tags.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BadRequest(f"tags.{key}: must be a list of strings, got {values!r}")
    return tags


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{key}: must be true or false, got {value!r}")
    return value


def _object(body: dict[str, Any], key: str, default: dict[str, Any]) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, dict):
        raise BadRequest(f"{key}: must be an object, got {value!r}")
    return value


def _text(body: dict[str, Any], key: str, *, required: bool, limit: int = 256) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{key}: must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise BadRequest(f"{key}: must be at most {limit} characters, got {len(value)}")
    return value


class CatalogService:
    def __init__(
        self,
        store: MetadataStore,
        lake: Lake,
        *,
        schema_of: Callable[[Scope, str], Any],
        on_delete: Callable[[Scope, str], None] = lambda scope, dataset_id: None,
    ) -> None:
        """``schema_of(scope, ref)`` resolves a schema reference (raises NotFound) and answers an object with
        ``id``, ``alt_id`` and ``profile_enabled``; ``on_delete`` removes what other stores keep of a dataset."""
        self._store = store
        self._lake = lake
        self._schema_of = schema_of
        self._on_delete = on_delete

    # ----- datasets -----

    def create_dataset(self, caller: Principal, body: dict[str, Any]) -> str:
        scope = caller.scope
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            # AEP ignores fields it does not know (seed 002 sends "persistet"); so do we, but only those.
            body = {k: v for k, v in body.items() if k in CREATE_FIELDS}
        name = _text(body, "name", required=True)
        assert name is not None
        description = _text(body, "description", required=False, limit=4000)
        ref = body.get("schemaRef")
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str) or not ref["id"].strip():
            raise BadRequest(f"schemaRef.id: a schema id is required, got {ref!r}")
        schema = self._schema_of(scope, ref["id"].strip())
        tags = _check_tags(body.get("tags") or {})
        if tag_enabled(tags, PROFILE_TAG) and not schema.profile_enabled:
            raise BadRequest(
                f"tags.unifiedProfile: schema {ref['id']!r} is not enabled for Profile; enable the schema first"
            )
        dataset_id = str(uuid.uuid4())
        stamp = now()
        props = {
            "description": description,
            "fileDescription": _object(body, "fileDescription", {"format": "parquet"}),
            "schemaRef": {"id": ref["id"].strip(), "contentType": ref.get("contentType") or SCHEMA_CONTENT_TYPE},
            "enableErrorDiagnostics": _flag(body, "enableErrorDiagnostics"),
            "createdUser": caller.user,
            "createdClient": caller.client_id,
            "updatedUser": caller.user,
        }
        with self._store.tx() as conn:
            self._refuse_duplicate_name(conn, scope, name)
            insert_row(
                conn,
                t.datasets,
                {
                    "id": dataset_id,
                    "org_id": scope.org_id,
                    "sandbox": scope.sandbox,
                    "name": name,
                    "schema_id": schema.id,
                    "kind": KIND_XDM,
                    "tags": tags,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "props": props,
                    "created_ms": created_ms(),
                },
            )
        return dataset_id

    @staticmethod
    def _refuse_duplicate_name(conn: Connection, scope: Scope, name: str, but: str | None = None) -> None:
        # Dataset names become Query Service table names (issue 6): they must stay unique in a sandbox. Locking the
        # sandbox's row makes namings take turns: on PostgreSQL two creates could otherwise both find the name free.
        get_row(conn, t.sandboxes, None, for_update=True, org_id=scope.org_id, name=scope.sandbox)
        rows, _ = list_rows(conn, t.datasets, scope, name=name)
        if any(r["id"] != but for r in rows):
            raise Duplicate(f"name: a dataset named {name!r} already exists in this sandbox")

    def get_row(self, scope: Scope, dataset_id: str) -> Row:
        with self._store.read() as conn:
            row = get_row(conn, t.datasets, scope, id=dataset_id)
        if row is None:
            raise NotFound(f"dataset {dataset_id!r} was not found")
        return row

    def dataset(self, scope: Scope, dataset_id: str, properties: str | None = None) -> dict[str, Any]:
        row = self.get_row(scope, dataset_id)
        with self._store.read() as conn:
            body = self._describe(conn, scope, row)
        return {dataset_id: _only(body, properties)}

    def list_datasets(
        self,
        scope: Scope,
        *,
        limit: int = DEFAULT_LIMIT,
        start: int = 0,
        properties: str | None = None,
        name: str | None = None,
        order_by: str | None = None,
    ) -> dict[str, Any]:
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: must be between 1 and {MAX_LIMIT}, got {limit}")
        if start < 0:
            raise BadRequest(f"start: must be 0 or more, got {start}")
        order = _order(
            order_by,
            {"created": _created_order(t.datasets), "updated": t.datasets.c.updated_at, "name": t.datasets.c.name},
        )
        keys = {"name": name} if name is not None else {}
        with self._store.read() as conn:
            rows, _ = list_rows(
                conn, t.datasets, scope, order_by=[order, t.datasets.c.id], limit=limit, offset=start, **keys
            )
            return {r["id"]: _only(self._describe(conn, scope, r), properties) for r in rows}

    def _describe(self, conn: Connection, scope: Scope, row: Row) -> dict[str, Any]:
        props = row.get("props") or {}
        body: dict[str, Any] = {
            "name": row["name"],
            "description": props.get("description") or "",
            "imsOrg": scope.org_id,
            "sandboxName": scope.sandbox,
            "version": "1.0.0",
            "created": created_of(row),
            "updated": max(created_of(row), ms(row["updated_at"]) or 0),
            "createdClient": props.get("createdClient", "audiencehub"),
            "createdUser": props.get("createdUser", "audiencehub"),
            "updatedUser": props.get("updatedUser", "audiencehub"),
            "tags": row["tags"] or {},
            "schemaRef": props.get("schemaRef") or {"id": row["schema_id"], "contentType": SCHEMA_CONTENT_TYPE},
            "fileDescription": props.get("fileDescription") or {"format": "parquet"},
            "enableErrorDiagnostics": props.get("enableErrorDiagnostics", False),
            "files": f"@/dataSetFiles?dataSetId={row['id']}",
        }
        batches, _ = list_rows(
            conn, t.batches, scope, order_by=[_created_order(t.batches).desc()], dataset_id=row["id"]
        )
        if batches:
            body["lastBatchId"] = batches[0]["id"]
            body["lastBatchStatus"] = batches[0]["status"]
            ok = [b for b in batches if b["status"] == "success"]
            bad = [b for b in batches if b["status"] == "failed"]
            if ok:
                body["lastSuccessfulBatch"] = ok[0]["id"]
            if bad:
                body["lastFailedBatch"] = bad[0]["id"]
        return body

    def patch_dataset(self, caller: Principal, dataset_id: str, body: dict[str, Any]) -> str:
        scope = caller.scope
        refused = sorted(set(body) - PATCH_FIELDS)
        if refused:
            raise BadRequest(f"{refused[0]}: cannot be changed (patchable: {', '.join(sorted(PATCH_FIELDS))})")
        with self._store.tx() as conn:
            row = get_row(conn, t.datasets, scope, for_update=True, id=dataset_id)  # two PATCHes: no lost update
            if row is None:
                raise NotFound(f"dataset {dataset_id!r} was not found")
            values: dict[str, Any] = {"updated_at": now()}
            props = dict(row.get("props") or {})
            if "name" in body:
                name = _text(body, "name", required=True)
                assert name is not None
                self._refuse_duplicate_name(conn, scope, name, but=dataset_id)
                values["name"] = name
            if "description" in body:
                props["description"] = _text(body, "description", required=False, limit=4000)
            if "fileDescription" in body:
                props["fileDescription"] = _object(body, "fileDescription", {"format": "parquet"})
            if "enableErrorDiagnostics" in body:
                props["enableErrorDiagnostics"] = _flag(body, "enableErrorDiagnostics")
            if "tags" in body:
                tags = _check_tags(body["tags"])
                if tag_enabled(tags, PROFILE_TAG) and row["kind"] == KIND_XDM:
                    schema = self._schema_of(scope, row["schema_id"])
                    if not schema.profile_enabled:
                        raise BadRequest(
                            f"tags.unifiedProfile: the dataset's schema {row['schema_id']!r} is not enabled for "
                            "Profile; enable the schema first"
                        )
                values["tags"] = {**(row["tags"] or {}), **tags}
            props["updatedUser"] = caller.user
            values["props"] = props
            conn.execute(t.datasets.update().where(t.datasets.c.id == dataset_id).values(**values))
        return dataset_id

    def delete_dataset(self, scope: Scope, dataset_id: str) -> str:
        with self._store.tx() as conn:
            # Writers of batches lock the dataset's row before they commit one: they finish first, or see it gone.
            row = get_row(conn, t.datasets, scope, for_update=True, id=dataset_id)
            if row is None:
                raise NotFound(f"dataset {dataset_id!r} was not found")
            if row["kind"] == KIND_AUDIENCE:
                ids = (row["tags"] or {}).get("externalAudienceId") or ["?"]
                raise Duplicate(
                    f"dataset {dataset_id!r} belongs to external audience {ids[0]!r}: delete the audience instead"
                )
            delete_rows(conn, t.batches, dataset_id=dataset_id)
            delete_rows(conn, t.datasets, id=dataset_id)
        self._on_delete(scope, dataset_id)
        self._lake.remove(self._lake.dataset(scope, dataset_id))
        return dataset_id

    def profile_enabled(self, row: Row) -> bool:
        return row["kind"] == KIND_XDM and tag_enabled(row["tags"] or {}, PROFILE_TAG)

    def profile_datasets(self, scope: Scope) -> list[Row]:
        """The sandbox's datasets that feed the profile store."""
        with self._store.read() as conn:
            rows, _ = list_rows(conn, t.datasets, scope, kind=KIND_XDM)
        return [r for r in rows if self.profile_enabled(r)]

    # ----- batches -----

    def batch(self, scope: Scope, batch_id: str) -> dict[str, Any]:
        with self._store.read() as conn:
            row = get_row(conn, t.batches, scope, id=batch_id)
        if row is None:
            raise NotFound(f"batch {batch_id!r} was not found")
        return {batch_id: describe_batch(scope, row)}

    def list_batches(
        self,
        scope: Scope,
        *,
        dataset_id: str | None = None,
        status: str | None = None,
        limit: int = DEFAULT_LIMIT,
        start: int = 0,
        order_by: str | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
    ) -> dict[str, Any]:
        """``created_after``/``created_before``: epoch ms, as the Catalog's ``createdAfter``/``createdBefore``."""
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: must be between 1 and {MAX_LIMIT}, got {limit}")
        if start < 0:
            raise BadRequest(f"start: must be 0 or more, got {start}")
        created = _created_order(t.batches)
        order = _order(order_by or "desc:created", {"created": created, "updated": t.batches.c.completed_at})
        stmt = select(t.batches).where(t.batches.c.org_id == scope.org_id, t.batches.c.sandbox == scope.sandbox)
        if dataset_id is not None:
            stmt = stmt.where(t.batches.c.dataset_id == dataset_id)
        if status is not None:
            stmt = stmt.where(t.batches.c.status == status)
        if created_after is not None:
            stmt = stmt.where(created > created_after)
        if created_before is not None:
            stmt = stmt.where(created < created_before)
        stmt = stmt.order_by(order, t.batches.c.id).limit(limit).offset(start)
        with self._store.read() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        return {r["id"]: describe_batch(scope, r) for r in rows}


def describe_batch(scope: Scope, row: Row) -> dict[str, Any]:
    """A batch as the Catalog and Batch Ingestion APIs answer it."""
    props: dict[str, Any] = row.get("props") or {}
    created = created_of(row)
    body: dict[str, Any] = {
        "id": row["id"],
        "imsOrg": scope.org_id,
        "sandboxName": scope.sandbox,
        "status": row["status"],
        "created": created,
        "updated": props.get("updated", created),
        "createdClient": props.get("createdClient", "audiencehub"),
        "createdUser": props.get("createdUser", "audiencehub"),
        "updatedUser": props.get("updatedUser", props.get("createdUser", "audiencehub")),
        "version": "1.0.0",
        "relatedObjects": [{"type": "dataSet", "id": row["dataset_id"]}],
        "recordCount": int(row["record_count"] or 0),
        "failedRecordCount": int(props.get("failedRecordCount", 0)),
        "size": int(row["size_bytes"] or 0),
        "tags": props.get("tags", {}),
        "inputFormat": props.get("inputFormat", {"format": "parquet"}),
        "errors": props.get("errors", []),
        "metrics": {
            "recordsRead": int(props.get("recordsRead") or row["record_count"] or 0),
            "recordsWritten": int(row["record_count"] or 0) if row["status"] == "success" else 0,
            "failedRecordCount": int(props.get("failedRecordCount", 0)),
        },
    }
    if row["run_id"]:
        body["relatedObjects"].append({"type": "externalAudienceRun", "id": row["run_id"]})
    if props.get("started") is not None:
        body["started"] = props["started"]
    if row["completed_at"] is not None:
        body["completed"] = props.get("completed") or ms(row["completed_at"])
    if row["status"] == "failed" and props.get("failedRecordCount"):
        body["failedBatchLocation"] = f"/data/foundation/export/batches/{row['id']}/failed"
    if row["error"] and not body["errors"]:
        body["errors"] = [{"code": "INGEST-1001-500", "description": row["error"]}]
    return body


def json_patch_to_fields(ops: list[Any]) -> dict[str, Any]:
    """A JSON Patch on a dataset (``add``/``replace`` of ``/name``, ``/description``, ``/tags``, ``/tags/{name}``,
    ...) as the top-level fields that :meth:`CatalogService.patch_dataset` takes."""
    body: dict[str, Any] = {}
    for n, op in enumerate(ops):
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace") or not isinstance(op.get("path"), str):
            raise BadRequest(f'body[{n}]: expected {{"op": "add"|"replace", "path", "value"}}, got {op!r}')
        steps = [s for s in op["path"].split("/") if s]
        if len(steps) == 1:
            body[steps[0]] = op.get("value")
        elif len(steps) == 2 and steps[0] == "tags":
            body.setdefault("tags", {})[steps[1]] = op.get("value")
        else:
            raise BadRequest(f"body[{n}].path: {op['path']!r} cannot be patched")
    return body


def _order(order_by: str | None, columns: dict[str, Any]) -> Any:
    """AEP's ``orderBy``: ``created``, ``asc:created`` or ``desc:created``."""
    if not order_by:
        return columns["created"].asc()
    direction, _, name = order_by.rpartition(":")
    direction = direction or "asc"
    if name not in columns or direction not in ("asc", "desc"):
        raise BadRequest(f"orderBy: expected [asc:|desc:]{{{'|'.join(columns)}}}, got {order_by!r}")
    col = columns[name]
    return col.asc() if direction == "asc" else col.desc()


def _only(body: dict[str, Any], properties: str | None) -> dict[str, Any]:
    """AEP's ``properties`` query parameter: only the named top-level fields."""
    if not properties:
        return body
    wanted = {p.strip() for p in properties.split(",") if p.strip()}
    return {k: v for k, v in body.items() if k in wanted}
