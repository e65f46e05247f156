"""The Schema Registry: tenant field groups, schemas, unions and the tenant id; identity descriptors are
``schema_descriptors`` (``SchemaService.descriptors``), the rules that need no store ``domain/xdm_registry``.

Standard classes and field groups come from :mod:`audiencehub.domain.xdm`; a sandbox's own field
groups and schemas are rows of ``xdm_resources`` (the ``xed`` document as stored), its descriptors
rows of ``xdm_descriptors``. Every change is checked against everything it touches, in the one
transaction that writes it: the schemas that use a field group, their descriptors, and the union of
their class when they are enabled for Profile (whose fields may then only be added, never changed).
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, or_, select

from audiencehub.domain import xdm
from audiencehub.domain import xdm_registry as reg
from audiencehub.domain.xdm import IdentityField, ResolvedSchema, XdmInvalid
from audiencehub.domain.xdm_registry import CLASSES, GLOBAL, IDENTITY, MIXINS, SCHEMAS, TAGS, TENANT, UNIONS, Form
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
    now,
    update_row,
)
from audiencehub.services.auth import Principal
from audiencehub.services.schema_descriptors import DescriptorService, NamespaceExists, standard_namespace_exists


def _ms() -> int:
    return int(time.time() * 1000)


class SchemaService:
    def __init__(self, store: MetadataStore, namespace_exists: NamespaceExists | None = None) -> None:
        self._store = store
        self.descriptors = DescriptorService(store, self, namespace_exists or standard_namespace_exists)
        """The schemas' identity descriptors."""

    # -- the tenant id -------------------------------------------------------------------------

    def tenant_id(self, scope: Scope) -> str:
        """The org's tenant id: the one set for it, else derived from its id (``domain/xdm.tenant_id_for``)."""
        with self._store.read() as conn:
            return self._tenant(conn, scope)

    @staticmethod
    def _tenant(conn: Connection, scope: Scope) -> str:
        row = get_row(conn, t.xdm_tenants, None, org_id=scope.org_id)
        return str(row["tenant_id"]) if row is not None else xdm.tenant_id_for(scope.org_id)

    def set_tenant_id(self, org_id: str, tenant_id: str) -> None:
        """Sets an org's tenant id; refused once the org has field groups or schemas (their ids hold it)."""
        with reg.invalid_as_bad_request():
            xdm.check_tenant_id(tenant_id)
        with self._store.tx() as conn:
            if get_row(conn, t.orgs, None, id=org_id) is None:
                raise NotFound(f"no org {org_id!r}")
            used = conn.execute(select(t.xdm_resources.c.id).where(t.xdm_resources.c.org_id == org_id).limit(1)).first()
            current = get_row(conn, t.xdm_tenants, None, org_id=org_id)
            if used is not None and tenant_id != (current or {}).get("tenant_id", xdm.tenant_id_for(org_id)):
                raise Duplicate(f"org {org_id!r} already has schemas or field groups under its tenant id; it stays")
            if current is None:
                insert_row(conn, t.xdm_tenants, {"org_id": org_id, "tenant_id": tenant_id, "created_at": now()})
            else:
                update_row(conn, t.xdm_tenants, org_id, {"tenant_id": tenant_id})

    # -- the interface other services call -------------------------------------------------------

    def resolve(self, scope: Scope, ref: str) -> ResolvedSchema:
        """The schema, union or class named by ``ref`` (``$id`` or altId) with all its fields and identities.

        NotFound names ``ref`` when the sandbox has no such schema.
        """
        with self._store.read() as conn:
            return self._resolve(conn, scope, ref)

    def is_profile_enabled(self, scope: Scope, ref: str) -> bool:
        return self.resolve(scope, ref).profile_enabled

    def _resolve(self, conn: Connection, scope: Scope, ref: str) -> ResolvedSchema:
        tenant = self._tenant(conn, scope)
        cls = xdm.union_class(ref)
        if cls is not None and xdm.global_kind(cls) == CLASSES:
            return self._union(conn, scope, cls, tenant)[1]
        row = self.resource(conn, scope, ref, SCHEMAS, required=False)
        if row is not None:
            return self._resolved_row(conn, scope, row, tenant)
        if xdm.global_kind(ref) == CLASSES:
            doc = xdm.find_global(ref)
            assert doc is not None
            props, required = xdm.resolve_document(doc, xdm.find_global)
            return ResolvedSchema(
                doc["$id"], doc["meta:altId"], doc["title"], doc["$id"], props, required, (), False, "1.0", tenant
            )
        legacy = get_row(conn, t.schemas, scope, id=ref)
        if legacy is not None:
            return reg.legacy_schema(legacy, tenant)
        raise NotFound(f"no schema {ref!r} in this sandbox")

    def _resolved_row(self, conn: Connection, scope: Scope, row: Row, tenant: str) -> ResolvedSchema:
        props, required = self._properties(conn, scope, row["body"])
        return ResolvedSchema(
            id=row["id"],
            alt_id=row["alt_id"],
            title=row["title"],
            class_id=row["class_id"],
            properties=props,
            required=required,
            identities=self._identities(conn, scope, [row["id"]]),
            profile_enabled=bool(row["profile_enabled"]),
            version=row["version"],
            tenant_id=tenant,
        )

    # -- lookups -----------------------------------------------------------------------------------

    @staticmethod
    def resource(
        conn: Connection, scope: Scope, ref: str, kind: str, *, required: bool = True, lock: bool = False
    ) -> Row | None:
        """The sandbox's field group or schema (``kind``) by ``$id`` or altId, in the caller's transaction."""
        c = t.xdm_resources.c
        stmt = select(t.xdm_resources).where(
            c.org_id == scope.org_id, c.sandbox == scope.sandbox, c.kind == kind, or_(c.id == ref, c.alt_id == ref)
        )
        if lock:  # held until the transaction ends: an update computes the next version from what it read
            stmt = stmt.with_for_update()
        found = conn.execute(stmt).mappings().first()
        if found is None and required:
            what = "schema" if kind == SCHEMAS else "field group"
            raise NotFound(f"no {what} {ref!r} in this sandbox (tenant container)")
        return dict(found) if found is not None else None

    def lookup(self, conn: Connection, scope: Scope) -> xdm.Lookup:
        """Finds the references of a document: standard resources, then the sandbox's field groups."""

        def lookup(ref: str) -> Mapping[str, Any] | None:
            found = xdm.find_global(ref)
            if found is not None:
                return found
            row = self.resource(conn, scope, ref, MIXINS, required=False)
            return row["body"] if row is not None else None

        return lookup

    def has_identity_map(self, conn: Connection, scope: Scope, schema: Row) -> bool:
        """Whether the schema has the identityMap field (its records then carry their own primary identity)."""
        return "identityMap" in self._properties(conn, scope, schema["body"])[0]

    def _properties(
        self, conn: Connection, scope: Scope, doc: Mapping[str, Any]
    ) -> tuple[dict[str, Any], tuple[tuple[str, ...], ...]]:
        try:
            return xdm.resolve_document(doc, self.lookup(conn, scope))
        except XdmInvalid as exc:  # stored resources were checked when written: this is a broken store
            raise Unprocessable(f"{doc.get('$id')}: {exc}") from exc

    def _identities(self, conn: Connection, scope: Scope, schema_ids: Iterable[str]) -> tuple[IdentityField, ...]:
        found: dict[tuple[tuple[str, ...], str, bool], None] = {}
        for schema_id in schema_ids:
            order = t.xdm_descriptors.c.created_ns
            rows, _ = list_rows(conn, t.xdm_descriptors, scope, order_by=order, type=IDENTITY, source_schema=schema_id)
            for r in sorted(rows, key=lambda r: not r["is_primary"]):
                path = xdm.pointer_path(r["source_property"], "xdm:sourceProperty")
                found[(path, reg.namespace_code(r["body"]), bool(r["is_primary"]))] = None
        return tuple(IdentityField(p, ns, primary) for p, ns, primary in found)

    # -- unions ------------------------------------------------------------------------------------

    def _union_classes(self, conn: Connection, scope: Scope) -> list[str]:
        c = t.xdm_resources.c
        enabled = conn.execute(
            select(c.class_id)
            .where(c.org_id == scope.org_id, c.sandbox == scope.sandbox, c.kind == SCHEMAS, c.profile_enabled)
            .distinct()
        ).scalars()
        return list(dict.fromkeys([xdm.PROFILE_CLASS, xdm.EVENT_CLASS, *sorted(enabled)]))

    def _union(
        self, conn: Connection, scope: Scope, class_id: str, tenant: str, extra: Row | None = None
    ) -> tuple[dict[str, Any], ResolvedSchema]:
        """The union of ``class_id``: its xed document and resolved form (``extra``: a schema about to join)."""
        cls = xdm.find_global(class_id)
        if cls is None:
            raise NotFound(f"no union for class {class_id!r}")
        order = t.xdm_resources.c.created_ns
        rows, _ = list_rows(conn, t.xdm_resources, scope, order_by=order, kind=SCHEMAS, class_id=class_id)
        rows = [r for r in rows if r["profile_enabled"]]
        if extra is not None:
            rows = [r for r in rows if r["id"] != extra["id"]] + [extra]
        refs = [class_id, *xdm.UNION_EXTRAS.get(class_id, ())]
        for r in rows:
            refs.extend(e["$ref"] for e in r["body"]["allOf"])
        refs = list(dict.fromkeys(refs))
        doc: dict[str, Any] = {
            "$id": xdm.union_id(class_id),
            "meta:altId": cls["meta:altId"] + xdm.UNION_SUFFIX,
            "meta:resourceType": UNIONS,
            "version": "1.0",
            "title": cls["title"],
            "type": "object",
            "description": cls["description"],
            "allOf": [{"$ref": r} for r in refs],
            "meta:extends": list(dict.fromkeys([*refs, *cls.get("meta:extends", []), *(r["id"] for r in rows)])),
            "meta:xdmType": "object",
            "meta:class": class_id,
        }
        props, required = xdm.resolve_document(doc, self.lookup(conn, scope))
        resolved = ResolvedSchema(
            id=doc["$id"],
            alt_id=doc["meta:altId"],
            title=doc["title"],
            class_id=class_id,
            properties=props,
            required=required,
            identities=self._identities(conn, scope, [r["id"] for r in rows]),
            profile_enabled=True,
            version="1.0",
            tenant_id=tenant,
        )
        return doc, resolved

    # -- rendering ---------------------------------------------------------------------------------

    def _public(self, scope: Scope, row: Row) -> dict[str, Any]:
        doc = copy.deepcopy(row["body"])
        doc["version"] = row["version"]
        doc["imsOrg"] = scope.org_id
        doc["meta:registryMetadata"] = reg.registry_metadata(row, reg.etag([row["body"], row["version"]])) | {
            "meta:globalLibVersion": xdm.GLOBAL_LIB_VERSION
        }
        doc.update(reg.containers(scope.org_id, scope.sandbox))
        return doc

    @staticmethod
    def _global_public(doc: dict[str, Any]) -> dict[str, Any]:
        doc["meta:registryMetadata"] = {"eTag": reg.etag(doc), "meta:globalLibVersion": xdm.GLOBAL_LIB_VERSION}
        doc["meta:containerId"] = GLOBAL
        return doc

    def _render(self, conn: Connection, scope: Scope, doc: dict[str, Any], form: Form) -> dict[str, Any]:
        if form.full:
            props, required = xdm.resolve_document(doc, self.lookup(conn, scope))
            doc = {k: v for k, v in doc.items() if k not in ("definitions", "allOf", "required")}
            doc["properties"] = props
            top = [p[0] for p in required if len(p) == 1]
            if top:
                doc["required"] = top
        strip = {Form.NOTEXT: xdm.strip_text, Form.FULL_NOTEXT: xdm.strip_text, Form.FULL_DESC: xdm.strip_titles}
        if form in strip:
            for key in ("properties", "definitions"):
                if key in doc:
                    doc[key] = strip[form](doc[key])
        return doc

    def _union_public(self, conn: Connection, scope: Scope, class_id: str) -> dict[str, Any]:
        doc, _ = self._union(conn, scope, class_id, self._tenant(conn, scope))
        doc["imsOrg"] = scope.org_id
        doc.update(reg.containers(scope.org_id, scope.sandbox))
        doc["meta:registryMetadata"] = {"eTag": reg.etag(doc), "meta:globalLibVersion": xdm.GLOBAL_LIB_VERSION}
        return doc

    # -- reading -----------------------------------------------------------------------------------

    def get_resource(self, scope: Scope, container: str, kind: str, ref: str, form: Form) -> dict[str, Any]:
        """One class, field group, schema or union in ``form``."""
        reg.check_container(container)
        with self._store.read() as conn:
            if kind == UNIONS or (kind == SCHEMAS and container == TENANT and xdm.union_class(ref)):
                cls = xdm.union_class(ref)
                if container != TENANT or cls is None or cls not in self._union_classes(conn, scope):
                    raise NotFound(f"no union {ref!r} in this sandbox")
                return self._render(conn, scope, self._union_public(conn, scope, cls), form)
            if container == GLOBAL:
                found = xdm.find_global(ref) if xdm.global_kind(ref) == kind else None
                if found is None:
                    raise NotFound(f"no {reg.noun(kind)} {ref!r} in the global container")
                return self._render(conn, scope, self._global_public(found), form)
            if kind == CLASSES:
                raise NotFound(f"no class {ref!r} in the tenant container (the standard classes are global)")
            row = self.resource(conn, scope, ref, kind)
            assert row is not None
            return self._render(conn, scope, self._public(scope, row), form)

    def list_resources(
        self,
        scope: Scope,
        container: str,
        kind: str,
        *,
        full: bool,
        orderby: str | None = None,
        limit: int | None = None,
        start: str | None = None,
        prop: str | None = None,
    ) -> dict[str, Any]:
        """A page of classes, field groups, schemas or unions: summaries, or xed documents when ``full``."""
        reg.check_container(container)
        with self._store.read() as conn:
            if kind == UNIONS:
                docs = [self._union_public(conn, scope, c) for c in self._union_classes(conn, scope)]
                stamps = [(0, 0)] * len(docs)
            elif container == GLOBAL:
                docs = [self._global_public(copy.deepcopy(d)) for d in reg.standard_resources(kind)]
                stamps = [(0, 0)] * len(docs)
            elif kind == CLASSES:
                docs, stamps = [], []
            else:
                rows, _ = list_rows(conn, t.xdm_resources, scope, order_by=t.xdm_resources.c.created_ns, kind=kind)
                docs = [self._public(scope, r) for r in rows]
                stamps = [(r["created_ns"], r["updated_at"]) for r in rows]
        return reg.listing_page(
            kind, container, docs, stamps, full=full, orderby=orderby, limit=limit, start=start, prop=prop
        )

    def stats(self, principal: Principal) -> dict[str, Any]:
        scope = principal.scope
        with self._store.read() as conn:
            tenant = self._tenant(conn, scope)
            rows, _ = list_rows(conn, t.xdm_resources, scope, order_by=t.xdm_resources.c.created_ns)
            unions = len(self._union_classes(conn, scope))
        schemas = [r for r in rows if r["kind"] == SCHEMAS]

        def item(r: Row) -> dict[str, Any]:
            return {"$id": r["id"], "meta:altId": r["alt_id"], "title": r["title"], "version": r["version"]}

        usage = []
        for cls in xdm.CLASSES:
            using = [r for r in schemas if r["class_id"] == cls["$id"]]
            if using:
                usage.append(
                    {
                        "$id": cls["$id"],
                        "title": cls["title"],
                        "numberOfSchemas": len(using),
                        "schemas": [
                            {"$id": r["id"], "title": r["title"], "meta:altId": r["alt_id"]}
                            | ({"description": r["body"]["description"]} if r["body"].get("description") else {})
                            for r in using
                        ],
                    }
                )
        return {
            "imsOrg": scope.org_id,
            "tenantId": tenant,
            "counts": {
                "schemas": len(schemas),
                "mixins": len(rows) - len(schemas),
                "datatypes": 0,
                "classes": 0,
                "unions": unions,
            },
            "recentlyCreatedResources": [item(r) for r in sorted(rows, key=lambda r: -r["created_ns"])[:5]],
            "recentlyUpdatedResources": [
                item(r) for r in sorted(rows, key=lambda r: (-r["updated_at"], -r["created_ns"]))[:5]
            ],
            "classUsage": usage,
        }

    # -- field groups ------------------------------------------------------------------------------

    def create_field_group(self, principal: Principal, body: Any) -> dict[str, Any]:
        scope = principal.scope
        with self._store.tx() as conn:
            tenant = self._tenant(conn, scope)
            hexid = uuid.uuid4().hex
            rid = f"{xdm.NS}/{tenant}/mixins/{hexid}"
            doc = self._field_group_doc(conn, scope, tenant, body, rid)
            row = self._new_row(principal, rid, MIXINS, doc, class_id=None)
            self._insert(conn, row)
            return self._public(scope, row)

    def _field_group_doc(self, conn: Connection, scope: Scope, tenant: str, body: Any, rid: str) -> dict[str, Any]:
        with reg.invalid_as_bad_request():
            return reg.field_group_doc(body, tenant, rid, self.lookup(conn, scope))

    def replace_field_group(self, principal: Principal, ref: str, body: Any) -> dict[str, Any]:
        return self._update(principal, ref, MIXINS, lambda _old: body)

    def patch_field_group(self, principal: Principal, ref: str, ops: Any) -> dict[str, Any]:
        return self._update(principal, ref, MIXINS, lambda old: reg.patched(old, ops))

    def delete_field_group(self, scope: Scope, ref: str) -> None:
        with self._store.tx() as conn:
            row = self.resource(conn, scope, ref, MIXINS)
            assert row is not None
            users = [s["title"] for s in self._schemas_using(conn, scope, row["id"])]
            if users:
                raise Duplicate(
                    f"field group {row['id']} is used by schema(s) {', '.join(map(repr, users[:5]))}; "
                    "remove it from them first"
                )
            delete_rows(conn, t.xdm_resources, id=row["id"], org_id=scope.org_id, sandbox=scope.sandbox)

    def _schemas_using(self, conn: Connection, scope: Scope, fieldgroup_id: str) -> list[Row]:
        rows, _ = list_rows(conn, t.xdm_resources, scope, kind=SCHEMAS)
        return [r for r in rows if any(e["$ref"] == fieldgroup_id for e in r["body"]["allOf"])]

    # -- schemas -----------------------------------------------------------------------------------

    def create_schema(self, principal: Principal, body: Any) -> dict[str, Any]:
        scope = principal.scope
        with self._store.tx() as conn:
            tenant = self._tenant(conn, scope)
            rid = f"{xdm.NS}/{tenant}/schemas/{uuid.uuid4().hex}"
            doc = self._schema_doc(conn, scope, tenant, body, rid)
            row = self._new_row(principal, rid, SCHEMAS, doc, class_id=doc["meta:class"])
            if xdm.UNION_TAG in doc.get("meta:immutableTags", []):
                self._check_profile(conn, scope, row, tenant)
                row["profile_enabled"] = True
            self._insert(conn, row)
            return self._public(scope, row)

    def _schema_doc(self, conn: Connection, scope: Scope, tenant: str, body: Any, rid: str) -> dict[str, Any]:
        with reg.invalid_as_bad_request():
            return reg.schema_doc(body, tenant, rid, self.lookup(conn, scope))

    def replace_schema(self, principal: Principal, ref: str, body: Any) -> dict[str, Any]:
        return self._update(principal, ref, SCHEMAS, lambda _old: body)

    def patch_schema(self, principal: Principal, ref: str, ops: Any) -> dict[str, Any]:
        def patched(old: dict[str, Any]) -> dict[str, Any]:
            base, steps = dict(old), ops
            if isinstance(ops, list):
                # NOTE: Adobe's spec example writes the path "/meta:immutableTags-"; read it as ".../-".
                steps = [
                    dict(op, path=TAGS + "/-") if isinstance(op, dict) and op.get("path") == TAGS + "-" else op
                    for op in ops
                ]
                # "add /meta:immutableTags/-" works on a schema that has no tags yet.
                if any(isinstance(op, dict) and str(op.get("path", "")).startswith(TAGS + "/") for op in steps):
                    base.setdefault("meta:immutableTags", [])
            return reg.patched(base, steps)

        return self._update(principal, ref, SCHEMAS, patched)

    def delete_schema(self, scope: Scope, ref: str) -> None:
        with self._store.tx() as conn:
            row = self.resource(conn, scope, ref, SCHEMAS, lock=True)
            assert row is not None
            used = [
                d["id"] for d in list_rows(conn, t.datasets, scope)[0] if d["schema_id"] in (row["id"], row["alt_id"])
            ]
            if used:
                raise Duplicate(
                    f"schema {row['id']} is the schema of dataset(s) {', '.join(used[:5])}; delete them first"
                )
            delete_rows(conn, t.xdm_descriptors, org_id=scope.org_id, sandbox=scope.sandbox, source_schema=row["id"])
            delete_rows(conn, t.xdm_resources, id=row["id"], org_id=scope.org_id, sandbox=scope.sandbox)

    # -- updates, checked against everything they touch ---------------------------------------------

    def _update(
        self, principal: Principal, ref: str, kind: str, new_body: Callable[[dict[str, Any]], Any]
    ) -> dict[str, Any]:
        scope = principal.scope
        with self._store.tx() as conn:
            tenant = self._tenant(conn, scope)
            row = self.resource(conn, scope, ref, kind, lock=True)  # two updates: the second builds on the first
            assert row is not None
            with reg.invalid_as_bad_request():
                body = new_body(self._public(scope, row))
            build = self._schema_doc if kind == SCHEMAS else self._field_group_doc
            doc = build(conn, scope, tenant, body, row["id"])
            if kind == SCHEMAS and doc["meta:class"] != row["class_id"]:
                raise BadRequest(f"allOf: the class of a schema cannot change (it is {row['class_id']})")
            updated = dict(
                row,
                body=doc,
                title=doc["title"],
                version=reg.bump_version(row["version"]),
                updated_by=principal.user,
                updated_client=principal.client_id,
                updated_at=_ms(),
            )
            if kind == SCHEMAS:
                enable = xdm.UNION_TAG in doc.get("meta:immutableTags", [])
                if row["profile_enabled"] and not enable:
                    raise BadRequest(
                        "meta:immutableTags: a schema enabled for Profile stays enabled ('union' cannot be removed)"
                    )
                updated["profile_enabled"] = enable
                affected = [row]
            else:
                affected = self._schemas_using(conn, scope, row["id"])
            # The fields as they were: a schema enabled for Profile may only gain fields.
            before = {s["id"]: self._properties(conn, scope, s["body"])[0] for s in affected}
            newly = kind == SCHEMAS and updated["profile_enabled"] and not row["profile_enabled"]
            values = {k: updated[k] for k in ("body", "title", "version", "updated_by", "updated_client", "updated_at")}
            if kind == SCHEMAS:
                values["profile_enabled"] = updated["profile_enabled"]
            try:
                update_row(conn, t.xdm_resources, row["id"], values, org_id=scope.org_id, sandbox=scope.sandbox)
            except IntegrityError as exc:
                raise Duplicate(
                    f"title: a {reg.noun(kind)} titled {doc['title']!r} already exists in this sandbox"
                ) from exc
            for schema in affected:
                current = get_row(conn, t.xdm_resources, scope, id=schema["id"])
                assert current is not None
                self._check_schema(conn, scope, current, tenant, before[schema["id"]], newly=newly)
            return self._public(scope, updated)

    def _check_schema(
        self, conn: Connection, scope: Scope, schema: Row, tenant: str, before: dict[str, Any], *, newly: bool
    ) -> None:
        """A changed schema (or one whose field group changed) is still valid, keeps its descriptors' fields,
        and fits its union when enabled."""
        try:
            self._schema_doc(conn, scope, tenant, schema["body"], schema["id"])
        except BadRequest as exc:
            raise BadRequest(f"schema {schema['id']} ({schema['title']!r}): {exc.detail}") from exc
        props, _ = self._properties(conn, scope, schema["body"])
        rows, _ = list_rows(conn, t.xdm_descriptors, scope, source_schema=schema["id"])
        for d in rows:
            path = xdm.pointer_path(d["source_property"], "xdm:sourceProperty")
            field = xdm.field_at(props, path)
            if field is None or field.get("type") != "string":
                raise BadRequest(
                    f"{d['source_property']}: the identity descriptor {d['id']} of schema {schema['id']} needs this "
                    "string field; keep it or delete the descriptor first"
                )
        if not schema["profile_enabled"]:
            return
        if newly:
            self._check_profile(conn, scope, schema, tenant)
            return
        removed = reg.removed_field(before, props)
        if removed:
            raise BadRequest(
                f"{removed}: schema {schema['id']} ({schema['title']!r}) is enabled for Profile; its fields may only "
                "be added to, never removed or changed"
            )
        with reg.invalid_as_bad_request():
            self._union(conn, scope, schema["class_id"], tenant)

    def _check_profile(self, conn: Connection, scope: Scope, schema: Row, tenant: str) -> None:
        """Enabling for Profile: a primary identity (a descriptor, or identityMap, whose entries carry their own
        primary flag, as AEP allows), and fields that agree with the class's union."""
        if xdm.global_kind(schema["class_id"]) != CLASSES:
            raise BadRequest(f"meta:immutableTags: schemas of class {schema['class_id']} cannot be enabled for Profile")
        primary = conn.execute(
            select(t.xdm_descriptors.c.id).where(
                t.xdm_descriptors.c.org_id == scope.org_id,
                t.xdm_descriptors.c.sandbox == scope.sandbox,
                t.xdm_descriptors.c.source_schema == schema["id"],
                t.xdm_descriptors.c.is_primary,
            )
        ).first()
        if primary is None and not self.has_identity_map(conn, scope, schema):
            raise BadRequest(
                f"meta:immutableTags: schema {schema['id']} ({schema['title']!r}) has no primary identity; create an "
                "xdm:descriptorIdentity with xdm:isPrimary true on one of its fields (or add the identityMap field "
                "group) before enabling it for Profile"
            )
        with reg.invalid_as_bad_request():
            self._union(conn, scope, schema["class_id"], tenant, extra=dict(schema, profile_enabled=True))

    # -- rows --------------------------------------------------------------------------------------

    @staticmethod
    def _new_row(principal: Principal, rid: str, kind: str, doc: dict[str, Any], class_id: str | None) -> Row:
        stamp, scope = _ms(), principal.scope
        return {
            "id": rid,
            "org_id": scope.org_id,
            "sandbox": scope.sandbox,
            "alt_id": doc["meta:altId"],
            "kind": kind,
            "title": doc["title"],
            "class_id": class_id,
            "profile_enabled": False,
            "body": doc,
            "version": doc["version"],
            "created_by": principal.user,
            "created_client": principal.client_id,
            "updated_by": principal.user,
            "updated_client": principal.client_id,
            "created_at": stamp,
            "updated_at": stamp,
            "created_ns": time.time_ns(),
        }

    @staticmethod
    def _insert(conn: Connection, row: Row) -> None:
        try:
            insert_row(conn, t.xdm_resources, row)
        except IntegrityError as exc:
            raise Duplicate(
                f"title: a {reg.noun(row['kind'])} titled {row['title']!r} already exists in this sandbox"
            ) from exc
