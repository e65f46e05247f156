"""Orgs, sandboxes and API clients, and the first-start bootstrap."""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from audiencehub.errors import BadRequest, Duplicate, NotFound
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, get_row, insert_row, list_rows, now
from audiencehub.services.auth import hash_secret

DEFAULT_SANDBOX = "prod"
# Both name folders (landing/{org}/{sandbox}, lake/{org}/{sandbox}): the first character is a letter or a
# digit, so that neither can be "." or ".." (or hidden) and leave its parent.
SANDBOX_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
ORG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._-]{0,127}")


def check_org_id(org_id: str) -> str:
    """``org_id`` when it may name an org (and its folders), else BadRequest saying why."""
    if org_id in (".", "..") or not ORG_ID.fullmatch(org_id):
        raise BadRequest(
            f"org id {org_id!r} must start with a letter or digit and hold only letters, digits and @._- "
            "(at most 128), e.g. 0123456789ABCDEF01234567@AdobeOrg"
        )
    return org_id


def check_sandbox_name(name: str) -> str:
    """``name`` when it may name a sandbox (and its folders), else BadRequest saying why."""
    if not SANDBOX_NAME.fullmatch(name):
        raise BadRequest(
            f"sandbox name {name!r} must start with a lower-case letter or digit and hold only lower-case "
            "letters, digits and dashes (at most 128)"
        )
    return name


@dataclass(frozen=True)
class ClientCredentials:
    org_id: str
    sandbox: str
    client_id: str
    client_secret: str

    def to_json(self) -> dict[str, str]:
        return {
            "org_id": self.org_id,
            "sandbox": self.sandbox,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }


class TenancyService:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def create_org(self, org_id: str | None = None, name: str | None = None) -> str:
        org_id = org_id or f"{secrets.token_hex(12).upper()}@AdobeOrg"
        check_org_id(org_id)
        with self._store.tx() as conn:
            if get_row(conn, t.orgs, None, id=org_id) is not None:
                raise Duplicate(f"org {org_id!r} already exists")
            insert_row(conn, t.orgs, {"id": org_id, "name": name or org_id, "created_at": now()})
            insert_row(
                conn,
                t.sandboxes,
                {"org_id": org_id, "name": DEFAULT_SANDBOX, "title": "Production", "created_at": now()},
            )
        return org_id

    def create_sandbox(self, org_id: str, name: str, title: str | None = None) -> None:
        check_sandbox_name(name)
        with self._store.tx() as conn:
            if get_row(conn, t.orgs, None, id=org_id) is None:
                raise NotFound(f"org {org_id!r} does not exist")
            if get_row(conn, t.sandboxes, None, org_id=org_id, name=name) is not None:
                raise Duplicate(f"sandbox {name!r} already exists in org {org_id!r}")
            insert_row(
                conn,
                t.sandboxes,
                {"org_id": org_id, "name": name, "title": title or name, "created_at": now()},
            )

    def create_client(
        self,
        org_id: str,
        *,
        client_id: str | None = None,
        secret: str | None = None,
        name: str = "API client",
    ) -> ClientCredentials:
        client_id = client_id or secrets.token_hex(16)
        secret = secret or "p8e-" + secrets.token_urlsafe(24)
        with self._store.tx() as conn:
            if get_row(conn, t.orgs, None, id=org_id) is None:
                raise NotFound(f"org {org_id!r} does not exist")
            if get_row(conn, t.clients, None, client_id=client_id) is not None:
                raise Duplicate(f"client {client_id!r} already exists")
            insert_row(
                conn,
                t.clients,
                {
                    "client_id": client_id,
                    "org_id": org_id,
                    "name": name,
                    "secret_hash": hash_secret(secret),
                    "enabled": True,
                    "created_at": now(),
                },
            )
        return ClientCredentials(org_id, DEFAULT_SANDBOX, client_id, secret)

    def list_orgs(self) -> list[dict[str, object]]:
        with self._store.tx() as conn:
            orgs, _ = list_rows(conn, t.orgs, None, order_by=t.orgs.c.created_at)
            boxes, _ = list_rows(conn, t.sandboxes, None, order_by=t.sandboxes.c.name)
            clients, _ = list_rows(conn, t.clients, None, order_by=t.clients.c.created_at)
        return [
            {
                "id": org["id"],
                "name": org["name"],
                "sandboxes": [b["name"] for b in boxes if b["org_id"] == org["id"]],
                "clients": [c["client_id"] for c in clients if c["org_id"] == org["id"]],
            }
            for org in orgs
        ]

    def is_empty(self) -> bool:
        with self._store.tx() as conn:
            _, total = list_rows(conn, t.orgs, None, limit=1)
        return total == 0

    def bootstrap(
        self,
        *,
        credentials_path: Path,
        org_id: str | None,
        client_id: str | None,
        client_secret: str | None,
    ) -> ClientCredentials | None:
        """Creates the first org and client on an empty store.

        Returns generated dev credentials (written to ``credentials_path``, mode 0600) so the caller
        can print them once; returns None when there was nothing to do or the env named them.
        """
        named = [org_id, client_id, client_secret]
        if any(named) and not all(named):
            raise BadRequest(
                "set all of AUDIENCEHUB_BOOTSTRAP_ORG_ID, AUDIENCEHUB_BOOTSTRAP_CLIENT_ID and "
                "AUDIENCEHUB_BOOTSTRAP_CLIENT_SECRET, or none of them"
            )
        if all(named):
            assert org_id and client_id and client_secret
            with self._store.tx() as conn:
                org_exists = get_row(conn, t.orgs, None, id=org_id) is not None
                client_exists = get_row(conn, t.clients, None, client_id=client_id) is not None
            if not org_exists:
                self.create_org(org_id)
            if not client_exists:
                self.create_client(org_id, client_id=client_id, secret=client_secret)
            return None
        if not self.is_empty():
            return None
        org = self.create_org(name="Development org")
        creds = self.create_client(org, name="dev client")
        write_credentials(credentials_path, creds)
        return creds


def write_credentials(path: Path, creds: ClientCredentials) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds.to_json(), fh, indent=2)
        fh.write("\n")
    os.chmod(path, 0o600)
