"""Clients, secrets and access tokens: what ``/ims/token/v3`` issues and every ``/data/**`` call checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from audiencehub.errors import ClientNotAllowed, InvalidOrg, InvalidToken, NotFound
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Scope, get_row
from audiencehub.services.keyring import Keyring

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
TOKEN_ALGORITHM = "HS256"


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt_b64), dklen=32, **_SCRYPT)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


@dataclass(frozen=True)
class Principal:
    """Who is calling: the API client, its org, and the sandbox the request names."""

    client_id: str
    org_id: str
    sandbox: str

    @property
    def scope(self) -> Scope:
        return Scope(self.org_id, self.sandbox)

    @property
    def user(self) -> str:
        return f"{self.client_id}@techacct.adobe.com"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


class InvalidClient(Exception):
    """Wrong client id or secret at the token endpoint (answered in OAuth's error shape)."""


class AuthService:
    def __init__(self, store: MetadataStore, keyring: Keyring, token_ttl_seconds: int) -> None:
        self._store = store
        self._key = keyring.derive("access-token")
        self._ttl = token_ttl_seconds

    def issue_token(self, client_id: str, client_secret: str, scope: str = "") -> IssuedToken:
        with self._store.read() as conn:
            client = get_row(conn, t.clients, None, client_id=client_id)
        if client is None or not client["enabled"] or not verify_secret(client_secret, client["secret_hash"]):
            raise InvalidClient("invalid client_id or client_secret")
        issued = int(time.time())
        claims = {
            "sub": client_id,
            "client_id": client_id,
            "org": client["org_id"],
            "scope": scope,
            "iat": issued,
            "exp": issued + self._ttl,
            "jti": str(uuid.uuid4()),
            "type": "access_token",
        }
        return IssuedToken(jwt.encode(claims, self._key, algorithm=TOKEN_ALGORITHM), self._ttl)

    def authenticate(self, *, token: str, api_key: str, org_id: str, sandbox: str) -> Principal:
        """Checks in the order AEP's gateway does: token, org, client, then sandbox."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[TOKEN_ALGORITHM],
                options={"require": ["exp", "org", "client_id"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the access token has expired; request a new one from /ims/token/v3") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("the access token is not valid") from exc
        if claims["org"] != org_id:
            raise InvalidOrg(f"x-gw-ims-org-id {org_id!r} is not the org of the access token")
        if claims["client_id"] != api_key:
            raise ClientNotAllowed(f"x-api-key {api_key!r} is not the client the access token was issued to")
        with self._store.read() as conn:
            client = get_row(conn, t.clients, None, client_id=api_key)
            box = get_row(conn, t.sandboxes, None, org_id=org_id, name=sandbox)
        if client is None or not client["enabled"] or client["org_id"] != org_id:
            raise ClientNotAllowed(f"client {api_key!r} is not allowed to use this API")
        if box is None:
            raise UnknownSandbox(f"x-sandbox-name {sandbox!r} is not a sandbox of org {org_id!r}")
        return Principal(client_id=api_key, org_id=org_id, sandbox=sandbox)


class UnknownSandbox(NotFound):
    """A sandbox that does not exist in the caller's org."""

    code = "100910-404"
    title = "NOT_FOUND"
