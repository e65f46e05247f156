"""Identity namespaces (AEP's Identity Service namespace API): the standard ones and each sandbox's own.

Standard namespaces are code (``domain/namespaces.STANDARD_NAMESPACES``); custom ones are rows of the
``identity_namespaces`` table, scoped to org and sandbox. Codes are unique per sandbox in any case,
standard codes included. AEP never deletes a namespace ("a qualifier for identities"), and neither do
we: a code, once resolved, keeps meaning the same namespace.
"""

from __future__ import annotations

import builtins
import time
from typing import Any

from sqlalchemy import Connection, func, select

from audiencehub.domain.namespaces import (
    CUSTOM_ID_START,
    STANDARD_NAMESPACES,
    IdType,
    Namespace,
    custom_namespace,
    find_standard,
    find_standard_by_id,
    parse_body,
)
from audiencehub.errors import BadRequest, Duplicate, NotFound
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import IntegrityError, MetadataStore, Row, Scope, get_row, insert_row, list_rows

ALLOCATION_ATTEMPTS = 5


def _now_ms() -> int:
    return int(time.time() * 1000)


def _namespace(row: Row) -> Namespace:
    return custom_namespace(
        row["code"],
        int(row["id"]),
        IdType(row["id_type"]),
        name=row["name"],
        description=row["description"],
        create_time=int(row["created_at"]),
        update_time=int(row["updated_at"]),
    )


def parse_namespace_id(value: str) -> int:
    """The path's ``{ID}``: AEP's spec declares it an integer (the namespace's ``id``), not a code."""
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadRequest(f"ID: must be the numeric id of an identity namespace (6 is Email), got {value!r}")
    return int(text)


class NamespaceService:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    # -- lookups (ingestion and external audiences use these) ----------------------------------------

    def list(self, scope: Scope) -> builtins.list[Namespace]:
        """Every namespace the sandbox can use: the standard ones, then its own, each in id order."""
        with self._store.read() as conn:
            rows, _ = list_rows(conn, t.identity_namespaces, scope, order_by=t.identity_namespaces.c.id)
        return [*STANDARD_NAMESPACES, *(_namespace(r) for r in rows)]

    def resolve(self, scope: Scope, code: str, conn: Connection | None = None) -> Namespace | None:
        """The standard or custom namespace whose code is ``code`` in any case (canonical code in the answer)."""
        found = find_standard(code)
        if found is not None:
            return found
        if conn is not None:
            row = get_row(conn, t.identity_namespaces, scope, code_key=code.strip().lower())
        else:
            with self._store.read() as own:
                row = get_row(own, t.identity_namespaces, scope, code_key=code.strip().lower())
        return _namespace(row) if row is not None else None

    def get(self, scope: Scope, namespace_id: int) -> Namespace:
        found = find_standard_by_id(namespace_id)
        if found is not None:
            return found
        with self._store.read() as conn:
            row = get_row(conn, t.identity_namespaces, scope, id=namespace_id)
        if row is None:
            raise NotFound(f"no identity namespace with id {namespace_id} in sandbox {scope.sandbox!r}")
        return _namespace(row)

    # -- changes ------------------------------------------------------------------------------------

    def create(self, scope: Scope, data: Any) -> Namespace:
        """A custom namespace from AEP's create body ``{name, code, idType, description}``."""
        try:
            body = parse_body(data, create=True)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        assert body.code is not None and body.id_type is not None  # parse_body requires them on create
        stamp = _now_ms()
        # The id is the sandbox's highest plus one; two creates racing for it on PostgreSQL meet the primary
        # key, and the loser takes the next one (SQLite's write lock serializes them before that).
        for _ in range(ALLOCATION_ATTEMPTS):
            try:
                with self._store.tx() as conn:
                    self._check_code_free(conn, scope, body.code)
                    top = conn.execute(
                        select(func.max(t.identity_namespaces.c.id)).where(
                            t.identity_namespaces.c.org_id == scope.org_id,
                            t.identity_namespaces.c.sandbox == scope.sandbox,
                        )
                    ).scalar_one()
                    namespace_id = CUSTOM_ID_START if top is None else int(top) + 1
                    insert_row(
                        conn,
                        t.identity_namespaces,
                        {
                            "id": namespace_id,
                            "org_id": scope.org_id,
                            "sandbox": scope.sandbox,
                            "code": body.code,
                            "code_key": body.code.lower(),
                            "name": body.name,
                            "description": body.description,
                            "id_type": body.id_type.value,
                            "created_at": stamp,
                            "updated_at": stamp,
                        },
                    )
                    row = get_row(conn, t.identity_namespaces, scope, id=namespace_id)
            except IntegrityError:
                continue  # a code taken meanwhile is found by the next attempt's check
            assert row is not None
            return _namespace(row)
        raise Duplicate(f"code: other namespaces were created at the same time as {body.code!r}; try again")

    @staticmethod
    def _check_code_free(conn: Connection, scope: Scope, code: str) -> None:
        standard = find_standard(code)
        if standard is not None:
            raise Duplicate(
                f"code: {code!r} is taken by the standard namespace {standard.code!r} (id {standard.id}); "
                "codes are unique in any case"
            )
        row = get_row(conn, t.identity_namespaces, scope, code_key=code.lower())
        if row is not None:
            raise Duplicate(
                f"code: {code!r} is taken by the namespace {row['code']!r} (id {row['id']}) in sandbox "
                f"{scope.sandbox!r}; codes are unique in any case"
            )

    def update(self, scope: Scope, namespace_id: int, data: Any) -> Namespace:
        """Replaces name and description (AEP's PUT); code and idType may be sent but not changed."""
        standard = find_standard_by_id(namespace_id)
        if standard is not None:
            raise BadRequest(
                f"ID: {namespace_id} is the standard namespace {standard.code!r}; only custom namespaces change"
            )
        try:
            body = parse_body(data, create=False)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        with self._store.tx() as conn:
            row = get_row(conn, t.identity_namespaces, scope, id=namespace_id)
            if row is None:
                raise NotFound(f"no identity namespace with id {namespace_id} in sandbox {scope.sandbox!r}")
            if body.code is not None and body.code.lower() != row["code_key"]:
                raise BadRequest(f"code: cannot be changed (it is {row['code']!r}, got {body.code!r})")
            if body.id_type is not None and body.id_type.value != row["id_type"]:
                raise BadRequest(f"idType: cannot be changed (it is {row['id_type']}, got {data['idType']!r})")
            conn.execute(
                t.identity_namespaces.update()
                .where(
                    t.identity_namespaces.c.org_id == scope.org_id,
                    t.identity_namespaces.c.sandbox == scope.sandbox,
                    t.identity_namespaces.c.id == namespace_id,
                )
                .values(name=body.name, description=body.description, updated_at=max(_now_ms(), row["created_at"]))
            )
            row = get_row(conn, t.identity_namespaces, scope, id=namespace_id)
        assert row is not None
        return _namespace(row)
