"""The Schema Registry's descriptors: ``xdm:descriptorIdentity`` on a schema's string fields, rows of
``xdm_descriptors``. A descriptor names its schema, field and identity namespace; a schema has at most one primary
identity, and one enabled for Profile keeps it (unless the identityMap field group gives its records their own). The
schemas themselves, and the lookups a descriptor is checked with, are :class:`services.schemas.SchemaService`'s.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from audiencehub.domain import xdm
from audiencehub.domain import xdm_registry as reg
from audiencehub.domain.namespaces import STANDARD_NAMESPACES, find_standard
from audiencehub.domain.xdm import XdmInvalid
from audiencehub.domain.xdm_registry import DESCRIPTOR_KEYS, GLOBAL, IDENTITY, SCHEMAS, TENANT, DescriptorStyle
from audiencehub.errors import BadRequest, Duplicate, NotFound
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
from audiencehub.services.auth import Principal

if TYPE_CHECKING:
    from audiencehub.services.schemas import SchemaService

NamespaceExists = Callable[[Scope, str], bool]
"""Whether an identity namespace code exists in the sandbox (the identity service answers)."""


def standard_namespace_exists(_scope: Scope, code: str) -> bool:
    return find_standard(code) is not None


def _ms() -> int:
    return int(time.time() * 1000)


class DescriptorService:
    """The descriptors of a sandbox's schemas (``SchemaService.descriptors``)."""

    def __init__(self, store: MetadataStore, schemas: SchemaService, namespace_exists: NamespaceExists) -> None:
        self._store = store
        self._schemas = schemas
        self._namespace_exists = namespace_exists

    def create_descriptor(self, principal: Principal, body: Any) -> dict[str, Any]:
        scope = principal.scope
        with self._store.tx() as conn:
            values = self._descriptor_values(conn, scope, body)
            stamp = _ms()
            row = {
                "id": secrets.token_hex(20),
                "org_id": scope.org_id,
                "sandbox": scope.sandbox,
                **values,
                "created_by": principal.user,
                "created_client": principal.client_id,
                "updated_by": principal.user,
                "updated_client": principal.client_id,
                "created_at": stamp,
                "updated_at": stamp,
                "created_ns": time.time_ns(),
            }
            self._write_descriptor(conn, row, insert=True)
            return self._descriptor_public(scope, row)

    def replace_descriptor(self, principal: Principal, descriptor_id: str, body: Any) -> dict[str, Any]:
        scope = principal.scope
        with self._store.tx() as conn:
            old = self._descriptor_row(conn, scope, descriptor_id)
            values = self._descriptor_values(conn, scope, body, replacing=old)
            row = dict(
                old,
                **values,
                updated_by=principal.user,
                updated_client=principal.client_id,
                updated_at=_ms(),
            )
            self._write_descriptor(conn, row, insert=False)
            return self._descriptor_public(scope, row)

    def delete_descriptor(self, scope: Scope, descriptor_id: str) -> None:
        with self._store.tx() as conn:
            row = self._descriptor_row(conn, scope, descriptor_id)
            if row["is_primary"]:
                self._keep_primary(conn, scope, row["source_schema"])
            delete_rows(conn, t.xdm_descriptors, id=descriptor_id, org_id=scope.org_id, sandbox=scope.sandbox)

    def get_descriptor(self, scope: Scope, descriptor_id: str, container: str = TENANT) -> dict[str, Any]:
        reg.check_container(container)
        if container == GLOBAL:
            raise NotFound(f"no descriptor {descriptor_id!r} in the global container")
        with self._store.read() as conn:
            return self._descriptor_public(scope, self._descriptor_row(conn, scope, descriptor_id))

    def list_descriptors(
        self, scope: Scope, container: str, style: DescriptorStyle, *, paged: bool, prop: str | None = None
    ) -> dict[str, Any]:
        """Descriptors grouped by ``@type`` (AEP's ``xdm`` forms), or one ``results`` page for the ``-v2`` forms."""
        reg.check_container(container)
        rows: list[Row] = []
        if container == TENANT:
            with self._store.read() as conn:
                rows, _ = list_rows(conn, t.xdm_descriptors, scope, order_by=t.xdm_descriptors.c.created_ns)
        shaped = (self._descriptor_public(scope, r) for r in rows)
        docs = [d for d in shaped if reg.matches(d, reg.property_filters(prop))]

        def shown(d: dict[str, Any]) -> Any:
            if style is DescriptorStyle.ID:
                return d["@id"]
            if style is DescriptorStyle.LINK:
                return f"/descriptors/{d['@id']}"
            return d

        if paged:
            return {"results": [shown(d) for d in docs], "_page": {"count": len(docs), "next": None}}
        grouped: dict[str, list[Any]] = {}
        for d in docs:
            grouped.setdefault(d["@type"], []).append(shown(d))
        return grouped

    def _descriptor_row(self, conn: Connection, scope: Scope, descriptor_id: str) -> Row:
        row = get_row(conn, t.xdm_descriptors, scope, id=descriptor_id)
        if row is None:
            raise NotFound(f"no descriptor {descriptor_id!r} in this sandbox")
        return row

    def _descriptor_values(
        self, conn: Connection, scope: Scope, body: Any, replacing: Row | None = None
    ) -> dict[str, Any]:
        with reg.invalid_as_bad_request():
            body = reg.request_body(body, DESCRIPTOR_KEYS, "descriptor")
            kind = body.get("@type")
            if kind != IDENTITY:
                raise XdmInvalid(f"@type: {kind!r} is not supported; audiencehub keeps {IDENTITY} descriptors")
            ref = body.get("xdm:sourceSchema")
            if not isinstance(ref, str) or not ref.strip():
                raise XdmInvalid(f"xdm:sourceSchema: the $id of a schema is required, got {ref!r}")
            schema = self._schemas.resource(conn, scope, ref.strip(), SCHEMAS, required=False)
            if schema is None:
                raise XdmInvalid(f"xdm:sourceSchema: {ref!r} is not a schema of this sandbox (tenant container)")
            version = body.get("xdm:sourceVersion", 1)
            if str(version) != schema["version"].split(".")[0] or isinstance(version, bool):
                raise XdmInvalid(f"xdm:sourceVersion: the schema's major version is 1, got {version!r}")
            pointer = body.get("xdm:sourceProperty")
            path = xdm.pointer_path(pointer, "xdm:sourceProperty")
            props, _ = xdm.resolve_document(schema["body"], self._schemas.lookup(conn, scope))
            field = xdm.field_at(props, path)
            if field is None:
                raise XdmInvalid(f"xdm:sourceProperty: schema {schema['id']} has no field {pointer!r}")
            if field.get("type") != "string":
                raise XdmInvalid(
                    f"xdm:sourceProperty: field {pointer!r} is of type {field.get('meta:xdmType', field.get('type'))}; "
                    "an identity is a string field"
                )
            code = self._namespace(scope, body)
            primary = body.get("xdm:isPrimary", False)
            if not isinstance(primary, bool):
                raise XdmInvalid(f"xdm:isPrimary: true or false, got {primary!r}")
        c = t.xdm_descriptors.c
        clash = conn.execute(
            select(t.xdm_descriptors).where(
                c.org_id == scope.org_id, c.sandbox == scope.sandbox, c.source_schema == schema["id"]
            )
        ).mappings()
        for other in clash:
            if replacing is not None and other["id"] == replacing["id"]:
                continue
            if primary and other["is_primary"]:
                raise BadRequest(
                    f"xdm:isPrimary: schema {schema['id']} already has a primary identity ({other['source_property']}, "
                    f"descriptor {other['id']}); a schema has one"
                )
            if other["source_property"] == pointer and other["type"] == kind:
                raise Duplicate(f"xdm:sourceProperty: {pointer!r} already has an identity descriptor ({other['id']})")
        if (
            replacing is not None
            and replacing["is_primary"]
            and not (primary and replacing["source_schema"] == schema["id"])
        ):
            self._keep_primary(conn, scope, replacing["source_schema"])
        return {
            "type": kind,
            "source_schema": schema["id"],
            "source_property": pointer,
            "is_primary": primary,
            "body": {
                "@type": kind,
                "xdm:sourceSchema": schema["id"],
                "xdm:sourceVersion": 1,
                "xdm:sourceProperty": pointer,
                "xdm:namespace": body.get("xdm:namespace"),
                "xdm:property": body.get("xdm:property", "xdm:code"),
                "xdm:isPrimary": primary,
                "xdm:code": code,
            },
        }

    def _namespace(self, scope: Scope, body: Mapping[str, Any]) -> str:
        """The namespace code a descriptor names (by code, or by a standard namespace's numeric id)."""
        ns, by = body.get("xdm:namespace"), body.get("xdm:property", "xdm:code")
        if by == "xdm:id":
            found = next((n for n in STANDARD_NAMESPACES if str(n.id) == str(ns)), None)
            if found is None:
                raise XdmInvalid(
                    f"xdm:namespace: {ns!r} is not the id of a standard namespace; name custom namespaces by code "
                    "with xdm:property 'xdm:code'"
                )
            return found.code
        if by != "xdm:code":
            raise XdmInvalid(f"xdm:property: 'xdm:code' or 'xdm:id', got {by!r}")
        if not isinstance(ns, str) or not ns.strip():
            raise XdmInvalid(f"xdm:namespace: the code of an identity namespace is required, got {ns!r}")
        if not self._namespace_exists(scope, ns):
            raise XdmInvalid(f"xdm:namespace: {ns!r} is not an identity namespace of this sandbox")
        return ns

    def _keep_primary(self, conn: Connection, scope: Scope, schema_id: str) -> None:
        schema = get_row(conn, t.xdm_resources, scope, id=schema_id)
        if schema is not None and schema["profile_enabled"] and not self._schemas.has_identity_map(conn, scope, schema):
            raise BadRequest(
                f"xdm:isPrimary: schema {schema_id} ({schema['title']!r}) is enabled for Profile and keeps its primary "
                "identity"
            )

    def _write_descriptor(self, conn: Connection, row: Row, *, insert: bool) -> None:
        try:
            if insert:
                insert_row(conn, t.xdm_descriptors, row)
            else:
                keys = (
                    "type",
                    "source_schema",
                    "source_property",
                    "is_primary",
                    "body",
                    "updated_by",
                    "updated_client",
                )
                update_row(conn, t.xdm_descriptors, row["id"], {k: row[k] for k in (*keys, "updated_at")})
        except IntegrityError as exc:
            raise Duplicate(
                f"xdm:sourceProperty: {row['source_property']!r} of {row['source_schema']} already has a descriptor of "
                "this type, or the schema already has a primary identity"
            ) from exc

    def _descriptor_public(self, scope: Scope, row: Row) -> dict[str, Any]:
        body = {k: v for k, v in row["body"].items() if k != "xdm:code"}
        return {
            "@id": row["id"],
            **body,
            "imsOrg": scope.org_id,
            "version": "1",
            **reg.containers(scope.org_id, scope.sandbox),
            "meta:registryMetadata": reg.registry_metadata(row, reg.etag(row["body"])),
        }
