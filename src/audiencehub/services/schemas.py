"""The Schema Registry: tenant field groups, schemas, identity descriptors, unions and the tenant id.

Standard classes and field groups come from :mod:`audiencehub.domain.xdm`; a sandbox's own field
groups and schemas are rows of ``xdm_resources`` (the ``xed`` document as stored), its descriptors
rows of ``xdm_descriptors``. Every change is checked against everything it touches, in the one
transaction that writes it: the schemas that use a field group, their descriptors, and the union of
their class when they are enabled for Profile (whose fields may then only be added, never changed).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, or_, select

from audiencehub.domain import xdm
from audiencehub.domain.namespaces import STANDARD_NAMESPACES, find_standard
from audiencehub.domain.xdm import IdentityField, ResolvedSchema, XdmInvalid
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

NamespaceExists = Callable[[Scope, str], bool]
"""Whether an identity namespace code exists in the sandbox (the identity service answers)."""

BASE = "/data/foundation/schemaregistry"
SCHEMAS, MIXINS, CLASSES, UNIONS = "schemas", "mixins", "classes", "unions"
GLOBAL, TENANT = "global", "tenant"
IDENTITY = "xdm:descriptorIdentity"
TAGS = "/meta:immutableTags"
DEFAULT_LIMIT, MAX_LIMIT = 300, 500
ORDER_KEYS = ("title", "$id", "meta:altId", "version", "created", "updated")
# Keys of the answers that a client may send back in a PUT: read-only, never taken from the body.
READ_ONLY = frozenset(
    {
        "$id",
        "meta:altId",
        "meta:resourceType",
        "version",
        "imsOrg",
        "meta:extensible",
        "meta:abstract",
        "meta:extends",
        "meta:xdmType",
        "meta:registryMetadata",
        "meta:class",
        "meta:containerId",
        "meta:sandboxId",
        "meta:sandboxType",
        "meta:tenantNamespace",
        "refs",
        "$schema",
        "meta:status",
    }
)
SCHEMA_KEYS = frozenset({"title", "description", "type", "allOf", "meta:immutableTags"})
FIELD_GROUP_KEYS = frozenset({"title", "description", "type", "allOf", "definitions", "meta:intendedToExtend"})
DESCRIPTOR_KEYS = frozenset(
    {
        "@type",
        "xdm:sourceSchema",
        "xdm:sourceVersion",
        "xdm:sourceProperty",
        "xdm:namespace",
        "xdm:property",
        "xdm:isPrimary",
        # read-only, as answered:
        "@id",
        "imsOrg",
        "version",
        "meta:containerId",
        "meta:sandboxId",
        "meta:sandboxType",
        "meta:registryMetadata",
    }
)


class Form(StrEnum):
    """The ``Accept`` forms of one resource (``application/vnd.adobe.{form}+json; version=1``)."""

    XED = "xed"
    FULL = "xed-full"
    NOTEXT = "xed-notext"
    FULL_NOTEXT = "xed-full-notext"
    FULL_DESC = "xed-full-desc"

    @property
    def full(self) -> bool:
        return self.value.startswith("xed-full")


class DescriptorStyle(StrEnum):
    """The ``Accept`` forms of a descriptor listing: ids, API paths, or objects."""

    ID = "id"
    LINK = "link"
    FULL = "full"


def standard_namespace_exists(_scope: Scope, code: str) -> bool:
    return find_standard(code) is not None


@contextmanager
def _invalid() -> Iterator[None]:
    """Rule violations from the domain become 400s."""
    try:
        yield
    except XdmInvalid as exc:
        raise BadRequest(str(exc)) from exc


def _ms() -> int:
    return int(time.time() * 1000)


def _bump(version: str) -> str:
    major, _, minor = version.partition(".")
    return f"{major}.{int(minor or 0) + 1}"


def _etag(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


class SchemaService:
    def __init__(self, store: MetadataStore, namespace_exists: NamespaceExists | None = None) -> None:
        self._store = store
        self._namespace_exists = namespace_exists or standard_namespace_exists

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
        with _invalid():
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
        row = self._row(conn, scope, ref, SCHEMAS, required=False)
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
            return _legacy(legacy, tenant)
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
    def _row(
        conn: Connection, scope: Scope, ref: str, kind: str, *, required: bool = True, lock: bool = False
    ) -> Row | None:
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

    def _lookup(self, conn: Connection, scope: Scope) -> xdm.Lookup:
        def lookup(ref: str) -> Mapping[str, Any] | None:
            found = xdm.find_global(ref)
            if found is not None:
                return found
            row = self._row(conn, scope, ref, MIXINS, required=False)
            return row["body"] if row is not None else None

        return lookup

    def _properties(
        self, conn: Connection, scope: Scope, doc: Mapping[str, Any]
    ) -> tuple[dict[str, Any], tuple[tuple[str, ...], ...]]:
        try:
            return xdm.resolve_document(doc, self._lookup(conn, scope))
        except XdmInvalid as exc:  # stored resources were checked when written: this is a broken store
            raise Unprocessable(f"{doc.get('$id')}: {exc}") from exc

    def _identities(self, conn: Connection, scope: Scope, schema_ids: Iterable[str]) -> tuple[IdentityField, ...]:
        found: dict[tuple[tuple[str, ...], str, bool], None] = {}
        for schema_id in schema_ids:
            order = t.xdm_descriptors.c.created_ns
            rows, _ = list_rows(conn, t.xdm_descriptors, scope, order_by=order, type=IDENTITY, source_schema=schema_id)
            for r in sorted(rows, key=lambda r: not r["is_primary"]):
                path = xdm.pointer_path(r["source_property"], "xdm:sourceProperty")
                found[(path, _namespace_code(r["body"]), bool(r["is_primary"]))] = None
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
        props, required = xdm.resolve_document(doc, self._lookup(conn, scope))
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

    @staticmethod
    def _containers(scope: Scope) -> dict[str, str]:
        return {
            "meta:containerId": TENANT,
            "meta:sandboxId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"audiencehub:{scope.org_id}:{scope.sandbox}")),
            "meta:sandboxType": "production" if scope.sandbox == "prod" else "development",
        }

    def _public(self, scope: Scope, row: Row) -> dict[str, Any]:
        doc = copy.deepcopy(row["body"])
        doc["version"] = row["version"]
        doc["imsOrg"] = scope.org_id
        doc["meta:registryMetadata"] = {
            "repo:createdDate": row["created_at"],
            "repo:lastModifiedDate": row["updated_at"],
            "xdm:createdClientId": row["created_client"],
            "xdm:lastModifiedClientId": row["updated_client"],
            "xdm:createdUserId": row["created_by"],
            "xdm:lastModifiedUserId": row["updated_by"],
            "eTag": _etag([row["body"], row["version"]]),
            "meta:globalLibVersion": xdm.GLOBAL_LIB_VERSION,
        }
        doc.update(self._containers(scope))
        return doc

    @staticmethod
    def _global_public(doc: dict[str, Any]) -> dict[str, Any]:
        doc["meta:registryMetadata"] = {"eTag": _etag(doc), "meta:globalLibVersion": xdm.GLOBAL_LIB_VERSION}
        doc["meta:containerId"] = GLOBAL
        return doc

    def _render(self, conn: Connection, scope: Scope, doc: dict[str, Any], form: Form) -> dict[str, Any]:
        if form.full:
            props, required = xdm.resolve_document(doc, self._lookup(conn, scope))
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
        doc.update(self._containers(scope))
        doc["meta:registryMetadata"] = {"eTag": _etag(doc), "meta:globalLibVersion": xdm.GLOBAL_LIB_VERSION}
        return doc

    # -- reading -----------------------------------------------------------------------------------

    def get_resource(self, scope: Scope, container: str, kind: str, ref: str, form: Form) -> dict[str, Any]:
        """One class, field group, schema or union in ``form``."""
        _check_container(container)
        with self._store.read() as conn:
            if kind == UNIONS or (kind == SCHEMAS and container == TENANT and xdm.union_class(ref)):
                cls = xdm.union_class(ref)
                if container != TENANT or cls is None or cls not in self._union_classes(conn, scope):
                    raise NotFound(f"no union {ref!r} in this sandbox")
                return self._render(conn, scope, self._union_public(conn, scope, cls), form)
            if container == GLOBAL:
                found = xdm.find_global(ref) if xdm.global_kind(ref) == kind else None
                if found is None:
                    raise NotFound(f"no {_noun(kind)} {ref!r} in the global container")
                return self._render(conn, scope, self._global_public(found), form)
            if kind == CLASSES:
                raise NotFound(f"no class {ref!r} in the tenant container (the standard classes are global)")
            row = self._row(conn, scope, ref, kind)
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
        _check_container(container)
        with self._store.read() as conn:
            if kind == UNIONS:
                docs = [self._union_public(conn, scope, c) for c in self._union_classes(conn, scope)]
                stamps = [(0, 0)] * len(docs)
            elif container == GLOBAL:
                docs = [self._global_public(copy.deepcopy(d)) for d in _globals(kind)]
                stamps = [(0, 0)] * len(docs)
            elif kind == CLASSES:
                docs, stamps = [], []
            else:
                rows, _ = list_rows(conn, t.xdm_resources, scope, order_by=t.xdm_resources.c.created_ns, kind=kind)
                docs = [self._public(scope, r) for r in rows]
                stamps = [(r["created_ns"], r["updated_at"]) for r in rows]
        return _page(kind, container, docs, stamps, full=full, orderby=orderby, limit=limit, start=start, prop=prop)

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
        with _invalid():
            body = _object(body, FIELD_GROUP_KEYS, "field group")
            xdm.check_object_type(body)
            title = xdm.text_field(body, "title", required=True)
            description = xdm.text_field(body, "description", required=False)
            extends = body.get("meta:intendedToExtend")
            if not isinstance(extends, list) or not extends:
                raise XdmInvalid("meta:intendedToExtend: a list of the $ids of the classes it extends is required")
            classes = []
            for n, cls in enumerate(extends):
                found = xdm.find_global(cls) if isinstance(cls, str) and xdm.global_kind(cls) == CLASSES else None
                if found is None:
                    raise XdmInvalid(f"meta:intendedToExtend[{n}]: {cls!r} is not a class of this registry")
                classes.append(found["$id"])
            definitions = xdm.check_field_group_definitions(body.get("definitions"), tenant)
            own = [f"#/definitions/{name}" for name in definitions]
            refs = xdm.refs_of(body["allOf"]) if "allOf" in body else own
            for n, ref in enumerate(refs):
                if ref not in own and ref != xdm.CONTEXT_REF:
                    raise XdmInvalid(
                        f"allOf[{n}].$ref: {ref!r} is not one of this field group's definitions ({', '.join(own)})"
                    )
            doc = {
                "$id": rid,
                "meta:altId": xdm.alt_id_of(rid),
                "meta:resourceType": MIXINS,
                "version": "1.0",
                "title": title,
                "type": "object",
                "description": description or "",
                "definitions": definitions,
                "allOf": [xdm.ref_entry(r) for r in refs],
                "meta:intendedToExtend": list(dict.fromkeys(classes)),
                "meta:extensible": True,
                "meta:abstract": True,
                "meta:xdmType": "object",
                "meta:tenantNamespace": f"_{tenant}",
            }
            xdm.resolve_document(doc, self._lookup(conn, scope))
        return doc

    def replace_field_group(self, principal: Principal, ref: str, body: Any) -> dict[str, Any]:
        return self._update(principal, ref, MIXINS, lambda _old: body)

    def patch_field_group(self, principal: Principal, ref: str, ops: Any) -> dict[str, Any]:
        return self._update(principal, ref, MIXINS, lambda old: _patched(old, ops))

    def delete_field_group(self, scope: Scope, ref: str) -> None:
        with self._store.tx() as conn:
            row = self._row(conn, scope, ref, MIXINS)
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
        with _invalid():
            body = _object(body, SCHEMA_KEYS, "schema")
            xdm.check_object_type(body)
            title = xdm.text_field(body, "title", required=True)
            description = xdm.text_field(body, "description", required=False)
            tags = body.get("meta:immutableTags", [])
            if not isinstance(tags, list) or any(tag != xdm.UNION_TAG for tag in tags):
                raise XdmInvalid(f"meta:immutableTags: only ['union'] (enabled for Profile) is supported, got {tags!r}")
            lookup = self._lookup(conn, scope)
            classes: list[dict[str, Any]] = []
            groups: list[Mapping[str, Any]] = []
            for n, ref in enumerate(xdm.refs_of(body.get("allOf"))):
                found = lookup(ref)
                if found is not None and found.get("meta:resourceType") == CLASSES:
                    classes.append(dict(found))
                elif (
                    found is not None
                    and found.get("meta:resourceType") == MIXINS
                    and (xdm.find_global(ref) is None or xdm.global_kind(ref) == MIXINS)
                ):
                    groups.append(found)
                else:
                    raise XdmInvalid(f"allOf[{n}].$ref: {ref!r} is not a class or field group in this sandbox")
            if len(classes) != 1:
                got = ", ".join(c["$id"] for c in classes) or "none"
                raise XdmInvalid(f"allOf: a schema references exactly one class, got {got}")
            cls = classes[0]
            for group in groups:
                if cls["$id"] not in group.get("meta:intendedToExtend", []):
                    raise XdmInvalid(
                        f"allOf: field group {group['$id']} ({group['title']!r}) extends "
                        f"{', '.join(group.get('meta:intendedToExtend', []))}, not the schema's class {cls['$id']}"
                    )
            refs = [cls["$id"], *dict.fromkeys(g["$id"] for g in groups)]
            extends = [cls["$id"], *cls.get("meta:extends", [])]
            for group in groups:
                extends += [group["$id"], *group.get("meta:extends", [])]
            doc: dict[str, Any] = {
                "$id": rid,
                "meta:altId": xdm.alt_id_of(rid),
                "meta:resourceType": SCHEMAS,
                "version": "1.0",
                "title": title,
                "type": "object",
                "description": description or "",
                "allOf": [xdm.ref_entry(r) for r in refs],
                "refs": refs,
                "meta:extensible": False,
                "meta:abstract": False,
                "meta:extends": list(dict.fromkeys(extends)),
                "meta:xdmType": "object",
                "meta:class": cls["$id"],
                "meta:tenantNamespace": f"_{tenant}",
            }
            if tags:
                doc["meta:immutableTags"] = [xdm.UNION_TAG]
            xdm.resolve_document(doc, lookup)
        return doc

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
            return _patched(base, steps)

        return self._update(principal, ref, SCHEMAS, patched)

    def delete_schema(self, scope: Scope, ref: str) -> None:
        with self._store.tx() as conn:
            row = self._row(conn, scope, ref, SCHEMAS, lock=True)
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
            row = self._row(conn, scope, ref, kind, lock=True)  # two updates: the second builds on the first
            assert row is not None
            with _invalid():
                body = new_body(self._public(scope, row))
            build = self._schema_doc if kind == SCHEMAS else self._field_group_doc
            doc = build(conn, scope, tenant, body, row["id"])
            if kind == SCHEMAS and doc["meta:class"] != row["class_id"]:
                raise BadRequest(f"allOf: the class of a schema cannot change (it is {row['class_id']})")
            updated = dict(
                row,
                body=doc,
                title=doc["title"],
                version=_bump(row["version"]),
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
                    f"title: a {_noun(kind)} titled {doc['title']!r} already exists in this sandbox"
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
        removed = _removed(before, props)
        if removed:
            raise BadRequest(
                f"{removed}: schema {schema['id']} ({schema['title']!r}) is enabled for Profile; its fields may only "
                "be added to, never removed or changed"
            )
        with _invalid():
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
        if primary is None and not self._has_identity_map(conn, scope, schema):
            raise BadRequest(
                f"meta:immutableTags: schema {schema['id']} ({schema['title']!r}) has no primary identity; create an "
                "xdm:descriptorIdentity with xdm:isPrimary true on one of its fields (or add the identityMap field "
                "group) before enabling it for Profile"
            )
        with _invalid():
            self._union(conn, scope, schema["class_id"], tenant, extra=dict(schema, profile_enabled=True))

    # -- descriptors -------------------------------------------------------------------------------

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
        _check_container(container)
        if container == GLOBAL:
            raise NotFound(f"no descriptor {descriptor_id!r} in the global container")
        with self._store.read() as conn:
            return self._descriptor_public(scope, self._descriptor_row(conn, scope, descriptor_id))

    def list_descriptors(
        self, scope: Scope, container: str, style: DescriptorStyle, *, paged: bool, prop: str | None = None
    ) -> dict[str, Any]:
        """Descriptors grouped by ``@type`` (AEP's ``xdm`` forms), or one ``results`` page for the ``-v2`` forms."""
        _check_container(container)
        rows: list[Row] = []
        if container == TENANT:
            with self._store.read() as conn:
                rows, _ = list_rows(conn, t.xdm_descriptors, scope, order_by=t.xdm_descriptors.c.created_ns)
        docs = [d for d in (self._descriptor_public(scope, r) for r in rows) if _matches(d, _filters(prop))]

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
        with _invalid():
            body = _object(body, DESCRIPTOR_KEYS, "descriptor")
            kind = body.get("@type")
            if kind != IDENTITY:
                raise XdmInvalid(f"@type: {kind!r} is not supported; audiencehub keeps {IDENTITY} descriptors")
            ref = body.get("xdm:sourceSchema")
            if not isinstance(ref, str) or not ref.strip():
                raise XdmInvalid(f"xdm:sourceSchema: the $id of a schema is required, got {ref!r}")
            schema = self._row(conn, scope, ref.strip(), SCHEMAS, required=False)
            if schema is None:
                raise XdmInvalid(f"xdm:sourceSchema: {ref!r} is not a schema of this sandbox (tenant container)")
            version = body.get("xdm:sourceVersion", 1)
            if str(version) != schema["version"].split(".")[0] or isinstance(version, bool):
                raise XdmInvalid(f"xdm:sourceVersion: the schema's major version is 1, got {version!r}")
            pointer = body.get("xdm:sourceProperty")
            path = xdm.pointer_path(pointer, "xdm:sourceProperty")
            props, _ = xdm.resolve_document(schema["body"], self._lookup(conn, scope))
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

    def _has_identity_map(self, conn: Connection, scope: Scope, schema: Row) -> bool:
        return "identityMap" in self._properties(conn, scope, schema["body"])[0]

    def _keep_primary(self, conn: Connection, scope: Scope, schema_id: str) -> None:
        schema = get_row(conn, t.xdm_resources, scope, id=schema_id)
        if schema is not None and schema["profile_enabled"] and not self._has_identity_map(conn, scope, schema):
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
            **self._containers(scope),
            "meta:registryMetadata": {
                "repo:createdDate": row["created_at"],
                "repo:lastModifiedDate": row["updated_at"],
                "xdm:createdClientId": row["created_client"],
                "xdm:lastModifiedClientId": row["updated_client"],
                "xdm:createdUserId": row["created_by"],
                "xdm:lastModifiedUserId": row["updated_by"],
                "eTag": _etag(row["body"]),
            },
        }

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
                f"title: a {_noun(row['kind'])} titled {row['title']!r} already exists in this sandbox"
            ) from exc


# -- helpers -----------------------------------------------------------------------------------------


def _noun(kind: str) -> str:
    return {SCHEMAS: "schema", MIXINS: "field group", CLASSES: "class", UNIONS: "union"}.get(kind, kind)


def _check_container(container: str) -> None:
    if container not in (GLOBAL, TENANT):
        raise NotFound(f"container {container!r}: use 'global' (Adobe's resources) or 'tenant' (your own)")


def _globals(kind: str) -> tuple[dict[str, Any], ...]:
    return {CLASSES: xdm.CLASSES, MIXINS: xdm.FIELD_GROUPS}.get(kind, ())


def _object(body: Any, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise XdmInvalid(f"body: a JSON object (the {what}) is required, got {type(body).__name__}")
    unknown = sorted(k for k in body if k not in keys and k not in READ_ONLY)
    if unknown:
        raise XdmInvalid(f"{unknown[0]}: not a field of a {what} that can be sent")
    return body


def _patched(old: dict[str, Any], ops: Any) -> dict[str, Any]:
    new = xdm.apply_patch(old, ops)
    for key in READ_ONLY:
        if new.get(key) != old.get(key):
            raise XdmInvalid(f"/{key}: read-only; it cannot be changed")
    return new


def _removed(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> str | None:
    """The first field of ``before`` that ``after`` lacks or types differently, as a dotted path."""
    for name, field in before.items():
        path = f"{prefix}{name}"
        other = after.get(name)
        if other is None or xdm.shape(field) != xdm.shape(other):
            return path
        for key in ("properties",):
            if isinstance(field.get(key), Mapping):
                found = _removed(field[key], other.get(key, {}), path + ".")
                if found:
                    return found
        for key in ("items", "additionalProperties"):
            if isinstance(field.get(key), Mapping):
                found = _removed({"*": field[key]}, {"*": other.get(key, {})}, path + ".")
                if found:
                    return found
    return None


def _namespace_code(body: Mapping[str, Any]) -> str:
    return str(body.get("xdm:code") or body.get("xdm:namespace"))


def _filters(prop: str | None) -> list[tuple[str, str, str]]:
    """``property=key==value,key!=value`` as (key, op, value) triples."""
    out = []
    for part in (prop or "").split(","):
        if not part.strip():
            continue
        for op in ("==", "!="):
            if op in part:
                key, _, value = part.partition(op)
                out.append((key.strip(), op, value.strip()))
                break
        else:
            raise BadRequest(f"property: {part!r} is not key==value or key!=value")
    return out


def _matches(doc: Mapping[str, Any], filters: list[tuple[str, str, str]]) -> bool:
    for key, op, value in filters:
        have = doc.get(key)
        hit = value in map(str, have) if isinstance(have, list) else str(have) == value
        if hit != (op == "=="):
            return False
    return True


def _page(
    kind: str,
    container: str,
    docs: list[dict[str, Any]],
    stamps: list[tuple[int, int]],
    *,
    full: bool,
    orderby: str | None,
    limit: int | None,
    start: str | None,
    prop: str | None,
) -> dict[str, Any]:
    """AEP's listing page: ``results``, ``_page`` (orderby, next, count) and ``_links``."""
    order = (orderby or "created").strip()
    keys = [k.strip() for k in order.split(",") if k.strip()]
    for key in keys:
        if key.lstrip("-+") not in ORDER_KEYS:
            raise BadRequest(f"orderby: {key!r} is not one of {', '.join(ORDER_KEYS)} (prefix - for descending)")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit: must be from 1 to {MAX_LIMIT}, got {limit}")
    size = limit or DEFAULT_LIMIT
    filters = _filters(prop)
    items = [(d, s) for d, s in zip(docs, stamps, strict=True) if _matches(d, filters)]

    def value(item: tuple[dict[str, Any], tuple[int, int]], key: str) -> Any:
        doc, (created, updated) = item
        return (
            {"created": created, "updated": updated}.get(key)
            if key in ("created", "updated")
            else str(doc.get(key, ""))
        )

    for key in reversed(keys):
        items.sort(key=functools.partial(value, key=key.lstrip("-+")), reverse=key.startswith("-"))
    primary = keys[0].lstrip("-+")
    descending = keys[0].startswith("-")
    if start is not None:
        items = [i for i in items if (str(value(i, primary)) < start if descending else str(value(i, primary)) > start)]
    shown, rest = items[:size], items[size:]
    nxt = str(value(shown[-1], primary)) if rest and shown else None

    def summary(doc: dict[str, Any]) -> dict[str, Any]:
        return {"$id": doc["$id"], "meta:altId": doc["meta:altId"], "version": doc["version"], "title": doc["title"]}

    query = {
        "orderby": order,
        "start": nxt,
        **({"limit": limit} if limit else {}),
        **({"property": prop} if prop else {}),
    }
    path = "fieldgroups" if kind == MIXINS else kind
    links: dict[str, Any] = {"next": f"{BASE}/{container}/{path}?{urlencode(query)}" if nxt is not None else None}
    if kind == SCHEMAS:
        links["global_schemas"] = {"href": f"{BASE}/global/schemas"}
    return {
        "results": [d if full else summary(d) for d, _ in shown],
        "_page": {"orderby": order, "next": nxt, "count": len(shown)},
        "_links": links,
    }


def _legacy(row: Row, tenant: str) -> ResolvedSchema:
    """An external audience's dataset schema (services/audience_creation.py) as a resolved schema."""
    definition = row["definition"]
    identities = tuple(
        IdentityField((i["field"],), i["namespace"], bool(i["primary"])) for i in definition.get("meta:identities", [])
    )
    return ResolvedSchema(
        id=row["id"],
        alt_id=xdm.alt_id_of(row["id"]),
        title=row["title"],
        class_id=row["class_id"],
        properties=copy.deepcopy(definition.get("properties", {})),
        required=(),
        identities=identities,
        profile_enabled=False,
        version="1.0",
        tenant_id=tenant,
    )
