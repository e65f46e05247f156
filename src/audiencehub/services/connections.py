"""Flow Service base connections: create, read, update, delete and test, with sealed credentials.

Secret params are sealed with the server's key (AES-GCM; the associated purpose binds each blob to
its org, sandbox and connection id) and leave this module only inside a :class:`StoredConnection`
handed to the source factory. Answers show :data:`~audiencehub.domain.connections.MASK` instead.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, select

from audiencehub.domain.audiences import CloudType, SourceSpec
from audiencehub.domain.connections import (
    ALL_SPECS,
    HTTP_API_SPEC_ID,
    INLET_ID,
    MASK,
    AuthSpec,
    ConnectionParams,
    ConnectionSpec,
    complete_inlet,
    find_spec,
    new_inlet_id,
    validate_params,
)
from audiencehub.errors import AudiencehubError, BadRequest, Duplicate, NotFound, Unprocessable
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import (
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
from audiencehub.services.keyring import Keyring
from audiencehub.sources.base import Source

log = logging.getLogger(__name__)

ENABLED = "enabled"
DEFAULT_LIMIT, MAX_LIMIT = 50, 100
ORDERABLE = {
    "createdAt": t.connections.c.created_ns,
    "updatedAt": t.connections.c.updated_at,
    "name": t.connections.c.name,
}
MIN_REDACTED = 4


class PreconditionFailed(AudiencehubError):
    code = "100930-412"
    status = 412
    title = "PRECONDITION_FAILED"


@dataclass(frozen=True)
class StoredConnection:
    """A connection as the source factory needs it: spec, params with secrets, and a label for messages."""

    id: str
    name: str
    spec: ConnectionSpec
    auth: AuthSpec
    params: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.spec.kind} connection {self.name!r} ({self.id})"

    def redact(self, text: str) -> str:
        """``text`` with every secret value masked: a last line of defence for server messages."""
        for name in self.auth.secret_names:
            value = self.params.get(name)
            values = [json.dumps(value)] if isinstance(value, dict) else [value] if isinstance(value, str) else []
            for v in values:
                if len(v) >= MIN_REDACTED:
                    text = text.replace(v, MASK)
        return text


SourceFactory = Callable[[StoredConnection, bool], Source]
"""Builds the source of a connection; the flag asks for retries (runs) or a single attempt (tests)."""


@dataclass(frozen=True)
class Inlet:
    """An HTTP API streaming connection as its collection endpoint needs it."""

    inlet_id: str
    connection_id: str
    scope: Scope
    name: str
    source_id: str
    authentication_required: bool


@dataclass(frozen=True)
class CreateBody:
    name: str
    description: str | None
    spec: ConnectionSpec
    auth: AuthSpec
    params: Any


def parse_create(data: dict[str, Any]) -> CreateBody:
    """The create body of AEP's shape; BadRequest names the field (secret values are never echoed)."""
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"name: a non-empty string is required, got {name!r}")
    if len(name) > 256:
        raise BadRequest("name: at most 256 characters")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise BadRequest(f"description: must be a string, got {type(description).__name__}")
    ref = data.get("connectionSpec")
    if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
        raise BadRequest(
            "connectionSpec.id: required (the connection spec id of S3, Google Cloud Storage, SFTP or HTTP API)"
        )
    spec = find_spec(ref["id"])
    if spec is None:
        raise BadRequest(f"connectionSpec.id: {ref['id']!r} is not a connection spec audiencehub supports ({_known()})")
    version = ref.get("version")
    if version is not None and str(version) != spec.version:
        raise BadRequest(f"connectionSpec.version: {version!r} is not available; use {spec.version!r}")
    auth = data.get("auth")
    if not isinstance(auth, dict) or not isinstance(auth.get("specName"), str):
        names = ", ".join(repr(a.name) for a in spec.auth_specs)
        raise BadRequest(f"auth.specName: required, one of {names}")
    auth_spec = spec.auth_spec(auth["specName"])
    if auth_spec is None:
        names = ", ".join(repr(a.name) for a in spec.auth_specs)
        raise BadRequest(f"auth.specName: {auth['specName']!r} is not an authentication of {spec.name} (use {names})")
    unknown = sorted(set(data) - {"name", "description", "auth", "connectionSpec"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: not a field of a base connection")
    return CreateBody(name.strip(), description, spec, auth_spec, auth.get("params"))


def _known() -> str:
    return ", ".join(f"{s.name}: {s.id}" for s in ALL_SPECS)


class ConnectionService:
    def __init__(self, store: MetadataStore, keyring: Keyring, factory: SourceFactory) -> None:
        self._store = store
        self._keyring = keyring
        self._factory = factory

    # -- sealing -----------------------------------------------------------------------------

    @staticmethod
    def _purpose(scope: Scope, connection_id: str) -> str:
        return f"connection:{scope.org_id}:{scope.sandbox}:{connection_id}"

    def _seal(self, scope: Scope, connection_id: str, secrets: dict[str, Any]) -> str:
        return self._keyring.seal(json.dumps(secrets).encode(), self._purpose(scope, connection_id))

    def _unseal(self, scope: Scope, row: Row) -> dict[str, Any]:
        secrets: dict[str, Any] = json.loads(self._keyring.open(row["sealed"], self._purpose(scope, row["id"])))
        return secrets

    def _stored(self, scope: Scope, row: Row) -> StoredConnection:
        spec = find_spec(row["spec_id"])
        auth = spec.auth_spec(row["auth_spec"]) if spec else None
        if spec is None or auth is None:
            raise Unprocessable(f"connection {row['id']}: its spec is no longer supported")
        return StoredConnection(row["id"], row["name"], spec, auth, {**row["params"], **self._unseal(scope, row)})

    def _validated(self, body: CreateBody, keep: dict[str, Any] | None = None) -> ConnectionParams:
        try:
            params = validate_params(body.spec, body.auth, body.params, keep=keep)
            if not body.spec.inlet:
                # The backend checks what only it can (keys that parse, a host key that is one).
                probe = StoredConnection("new", body.name, body.spec, body.auth, params.merged)
                self._factory(probe, False).close()
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return params

    # -- endpoints ---------------------------------------------------------------------------

    def create(self, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
        body = parse_create(data)
        params = self._validated(body)
        if body.spec.inlet:
            complete_inlet(params, body.name, new_inlet_id())
        scope, stamp = principal.scope, _millis()
        connection_id, etag = str(uuid.uuid4()), _etag()
        with self._store.tx() as conn:
            insert_row(
                conn,
                t.connections,
                {
                    "id": connection_id,
                    "org_id": scope.org_id,
                    "sandbox": scope.sandbox,
                    "name": body.name,
                    "description": body.description,
                    "spec_id": body.spec.id,
                    "spec_version": body.spec.version,
                    "auth_spec": body.auth.name,
                    "params": params.public,
                    "sealed": self._seal(scope, connection_id, params.secrets),
                    "secret_names": sorted(params.secrets),
                    "state": ENABLED,
                    "etag": etag,
                    "created_by": principal.user,
                    "created_client": principal.client_id,
                    "created_at": stamp,
                    "updated_by": principal.user,
                    "updated_client": principal.client_id,
                    "updated_at": stamp,
                    "created_ns": time.time_ns(),
                },
            )
        log.info(
            "connection %s (%s, %s) created in %s/%s",
            connection_id,
            body.spec.name,
            body.auth.name,
            scope.org_id,
            scope.sandbox,
        )
        return {"id": connection_id, "etag": etag}

    def _row(self, conn: Connection, scope: Scope, connection_id: str, *, lock: bool = False) -> Row:
        row = get_row(conn, t.connections, scope, for_update=lock, id=connection_id)
        if row is None:
            raise NotFound(f"no connection {connection_id!r} in this sandbox")
        return row

    def get(self, scope: Scope, connection_id: str, *, base_url: str = "") -> dict[str, Any]:
        """``base_url``: this server's own, as the client reached it (an inlet's ``inletUrl`` starts with it)."""
        with self._store.read() as conn:
            row = self._row(conn, scope, connection_id)
        return {"items": [connection_view(row, base_url)]}

    def list(
        self, scope: Scope, *, limit: int, token: str | None, orderby: str | None, base_url: str = ""
    ) -> dict[str, Any]:
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: must be from 1 to {MAX_LIMIT}, got {limit}")
        start = _decode_token(token)
        field = (orderby or "-createdAt").strip()
        column = ORDERABLE.get(field.lstrip("-+"))
        if column is None:
            raise BadRequest(f"orderby: {orderby!r} is not one of {', '.join(ORDERABLE)} (prefix - for descending)")
        order = [column.desc() if field.startswith("-") else column.asc(), t.connections.c.id]
        with self._store.read() as conn:
            rows, total = list_rows(conn, t.connections, scope, order_by=order, limit=limit, offset=start)
        body: dict[str, Any] = {"items": [connection_view(r, base_url) for r in rows], "count": total}
        if start + limit < total:
            nxt = _encode_token(start + limit)
            query = urlencode({"limit": limit, "orderby": field, "continuationToken": nxt})
            body["_links"] = {"next": {"href": f"/connections?{query}"}}
        return body

    def patch(self, principal: Principal, connection_id: str, if_match: str | None, ops: Any) -> dict[str, Any]:
        scope = principal.scope
        if not isinstance(ops, list) or not ops:
            raise BadRequest("body: a JSON array of patch operations ({op, path, value}) is required")
        with self._store.tx() as conn:
            # Locked until the update commits: two PATCHes with the same if-match cannot both pass (PostgreSQL).
            row = self._row(conn, scope, connection_id, lock=True)
            if if_match is None or not if_match.strip():
                raise BadRequest(f"if-match: required; send the connection's etag ({row['etag']})")
            if if_match.strip() != row["etag"]:
                raise PreconditionFailed(
                    f"if-match: {if_match.strip()} is not the connection's etag ({row['etag']}); read it again"
                )
            stored = self._stored(scope, row)
            name, description, params = row["name"], row["description"], dict(stored.params)
            for i, op in enumerate(ops):
                name, description, params = _apply(i, op, name, description, params, stored.auth)
            body = CreateBody(name, description, stored.spec, stored.auth, params)
            checked = self._validated(body, keep=stored.params)
            etag = _etag()
            update_row(
                conn,
                t.connections,
                connection_id,
                {
                    "name": name,
                    "description": description,
                    "params": checked.public,
                    "sealed": self._seal(scope, connection_id, checked.secrets),
                    "secret_names": sorted(checked.secrets),
                    "etag": etag,
                    "updated_by": principal.user,
                    "updated_client": principal.client_id,
                    "updated_at": _millis(),
                },
            )
        return {"id": connection_id, "etag": etag}

    def delete(self, scope: Scope, connection_id: str) -> None:
        with self._store.tx() as conn:
            self._row(conn, scope, connection_id, lock=True)  # resolve(lock=True) of a new audience waits, or we do
            users = self._audiences_using(conn, scope, connection_id)
            if users:
                raise Duplicate(
                    f"connection {connection_id} is the source of {len(users)} external audience(s) "
                    f"({', '.join(users[:5])}); delete them or point them elsewhere first"
                )
            delete_rows(conn, t.connections, id=connection_id, org_id=scope.org_id, sandbox=scope.sandbox)

    @staticmethod
    def _audiences_using(conn: Connection, scope: Scope, connection_id: str) -> builtins.list[str]:
        rows, _ = list_rows(conn, t.audiences, scope)
        return [
            r["id"]
            for r in rows
            if SourceSpec.model_validate(r["spec"]["sourceSpec"]).params.baseConnectionId == connection_id
        ]

    def test(self, scope: Scope, connection_id: str) -> dict[str, Any]:
        """Reaches the connection's root once (no retries) and says whether that worked, and why not."""
        with self._store.read() as conn:
            row = self._row(conn, scope, connection_id)
        stored = self._stored(scope, row)
        if stored.spec.inlet:
            return {"result": True, "reason": "an HTTP API inlet has nothing to reach; send data to its inletUrl"}
        started = time.monotonic()
        try:
            with self._factory(stored, False) as source:
                files = source.check()
        except AudiencehubError as exc:
            return {
                "result": False,
                "reason": stored.redact(exc.detail),
                "elapsedMs": int((time.monotonic() - started) * 1000),
            }
        return {
            "result": True,
            "reason": f"reached the connection's root; {files} file(s) directly in it",
            "elapsedMs": int((time.monotonic() - started) * 1000),
        }

    # -- for ingestion ----------------------------------------------------------------------

    def resolve(
        self,
        scope: Scope,
        connection_id: str,
        cloud: CloudType | None,
        conn: Connection | None = None,
        *,
        lock: bool = False,
    ) -> StoredConnection:
        """The connection an audience names; Unprocessable when it is not there or not of ``cloud``.

        With ``conn`` and ``lock``, inside that read-write transaction: an audience's insert and the check of
        its connection then commit together, and the connection's row stays locked until then, so a DELETE of
        the connection cannot slip between them (PostgreSQL; SQLite's write lock serializes them anyway).
        """
        if conn is None:
            with self._store.read() as own:
                return self.resolve(scope, connection_id, cloud, own)
        row = get_row(conn, t.connections, scope, for_update=lock, id=connection_id)
        if row is None:
            raise Unprocessable(f"sourceSpec.baseConnectionId: no connection {connection_id!r} in this sandbox")
        stored = self._stored(scope, row)
        if stored.spec.inlet:
            raise Unprocessable(
                f"sourceSpec.baseConnectionId: connection {connection_id} is an HTTP API streaming inlet; it has "
                "no files to read (use an S3, Google Cloud Storage or SFTP connection)"
            )
        if cloud is not None and cloud is not stored.spec.cloud_type:
            raise Unprocessable(
                f"sourceSpec.cloudType: {cloud.value} does not match connection {connection_id}, which is "
                f"{stored.spec.kind}"
            )
        return stored

    def source(self, scope: Scope, connection_id: str, cloud: CloudType | None) -> Source:
        return self._factory(self.resolve(scope, connection_id, cloud), True)

    # -- for streaming ----------------------------------------------------------------------

    def inlet(self, inlet_id: str) -> Inlet | None:
        """The HTTP API connection whose inlet id this is, in whatever org and sandbox; None when none is."""
        c = t.connections.c
        stmt = select(t.connections).where(c.spec_id == HTTP_API_SPEC_ID, c.params[INLET_ID].as_string() == inlet_id)
        with self._store.read() as conn:
            row = conn.execute(stmt).mappings().first()
        if row is None:
            return None
        params = row["params"]
        return Inlet(
            inlet_id=inlet_id,
            connection_id=row["id"],
            scope=Scope(row["org_id"], row["sandbox"]),
            name=row["name"],
            source_id=str(params.get("sourceId") or row["name"]),
            authentication_required=bool(params.get("authenticationRequired")),
        )


def connection_view(row: Row, base_url: str = "") -> dict[str, Any]:
    """A connection as the Flow Service answers it (ConnectionItemDTO), secrets masked.

    An inlet's ``inletUrl`` is ``{base_url}/collection/{inletId}``: the server answers at the address the
    client used, so it is not stored.
    """
    params = {**{name: MASK for name in row["secret_names"]}, **row["params"]}
    if INLET_ID in params:
        params["inletUrl"] = f"{base_url.rstrip('/')}/collection/{params[INLET_ID]}"
    view: dict[str, Any] = {
        "id": row["id"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "createdBy": row["created_by"],
        "updatedBy": row["updated_by"],
        "createdClient": row["created_client"],
        "updatedClient": row["updated_client"],
        "sandboxId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"audiencehub:sandbox:{row['org_id']}/{row['sandbox']}")),
        "sandboxName": row["sandbox"],
        "imsOrgId": row["org_id"],
        "name": row["name"],
        "connectionSpec": {"id": row["spec_id"], "version": row["spec_version"]},
        "state": row["state"],
        "auth": {"specName": row["auth_spec"], "params": params},
        "version": row["etag"],
        "etag": row["etag"],
    }
    if row["description"] is not None:
        view["description"] = row["description"]
    return view


def _apply(
    i: int, op: Any, name: str, description: str | None, params: dict[str, Any], auth: AuthSpec
) -> tuple[str, str | None, dict[str, Any]]:
    """One patch operation applied; params are keyed by their canonical names (aliases resolved)."""

    def canonical(key: str) -> str:
        param = auth.param(key)
        return param.name if param is not None else key

    where = f"[{i}]"
    if not isinstance(op, dict):
        raise BadRequest(f"{where}: a patch operation must be an object with op, path and value")
    kind = str(op.get("op", "")).lower()
    path = op.get("path")
    if kind not in ("add", "replace", "remove"):
        raise BadRequest(f"{where}.op: {op.get('op')!r} is not add, replace or remove")
    if not isinstance(path, str):
        raise BadRequest(f"{where}.path: required")
    value = op.get("value")
    if path == "/name":
        if kind == "remove" or not isinstance(value, str) or not value.strip():
            raise BadRequest(f"{where}: /name must be replaced with a non-empty string")
        return value.strip(), description, params
    if path == "/description":
        if kind == "remove":
            return name, None, params
        if not isinstance(value, str):
            raise BadRequest(f"{where}.value: /description must be a string")
        return name, value, params
    if path == "/auth/params":
        if kind == "remove" or not isinstance(value, dict):
            raise BadRequest(f"{where}: /auth/params must be replaced with an object of params")
        given = {canonical(str(k)): v for k, v in value.items()}
        return name, description, {**params, **given} if kind == "add" else given
    if path.startswith("/auth/params/"):
        key = canonical(path[len("/auth/params/") :])
        updated = dict(params)
        if kind == "remove":
            updated.pop(key, None)
        else:
            updated[key] = value
        return name, description, updated
    raise BadRequest(f"{where}.path: {path!r} cannot be changed (use /name, /description or /auth/params)")


def _millis() -> int:
    return int(time.time() * 1000)


def _etag() -> str:
    return f'"{uuid.uuid4()}"'


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"start": offset}).encode()).decode().rstrip("=")


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        start = json.loads(base64.urlsafe_b64decode(padded.encode()))["start"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise BadRequest(f"continuationToken: {token!r} is not a token this server issued") from exc
    if not isinstance(start, int) or start < 0:
        raise BadRequest(f"continuationToken: {token!r} is not a token this server issued")
    return start
