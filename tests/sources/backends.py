"""One test backend per kind of base connection, each over a real server on loopback.

A backend knows the connection body the API takes (good or with wrong credentials), how to put a
file where that connection's root is, and how to build the source exactly as the server does
(:func:`audiencehub.wiring.backend_for`). The contract suite and the end-to-end tests run over all.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from audiencehub.domain.connections import GCS_SPEC_ID, S3_SPEC_ID, SFTP_SPEC_ID, find_spec, validate_params
from audiencehub.services.connections import StoredConnection
from audiencehub.sources.base import Source
from audiencehub.wiring import backend_for
from tests.servers.gcs import GcsEmulator
from tests.servers.s3 import MotoServer
from tests.servers.sftp import SftpServer

KINDS = ("s3", "gcs_hmac", "gcs_json", "sftp_password", "sftp_key")
CLOUD = {"s3": "S3", "gcs_hmac": "GCS", "gcs_json": "GCS", "sftp_password": "SFTP", "sftp_key": "SFTP"}


@dataclass
class Backend:
    kind: str
    spec_id: str
    spec_name: str
    params: dict[str, Any]
    bad_params: dict[str, Any]
    """The same connection with a wrong secret (what 'wrong password' means for this kind)."""
    put: Callable[[str, bytes], None]
    """Writes a file at a path relative to the connection's root."""
    set_mtime: Callable[[str, float], None] | None = None
    """Sets a file's modification time, where the server allows it (SFTP: the served folder is local)."""
    checks_credentials: bool = True
    secrets: tuple[str, ...] = ()

    @property
    def cloud_type(self) -> str:
        return CLOUD[self.kind]

    def body(self, *, bad: bool = False, name: str | None = None) -> dict[str, Any]:
        return {
            "name": name or f"{self.kind} test connection",
            "description": f"{self.kind} on loopback",
            "auth": {"specName": self.spec_name, "params": dict(self.bad_params if bad else self.params)},
            "connectionSpec": {"id": self.spec_id, "version": "1.0"},
        }

    def secret_values(self) -> list[str]:
        """The values of the secret params (as the connection spec declares them) of both credential sets."""
        spec = find_spec(self.spec_id)
        auth = spec.auth_spec(self.spec_name) if spec else None
        assert auth is not None
        return [str(p[n]) for p in (self.params, self.bad_params) for n in auth.secret_names if n in p]

    def source(self, *, bad: bool = False, **changes: Any) -> Source:
        spec = find_spec(self.spec_id)
        assert spec is not None
        auth = spec.auth_spec(self.spec_name)
        assert auth is not None
        params = validate_params(spec, auth, {**(self.bad_params if bad else self.params), **changes})
        return backend_for(StoredConnection("test-" + self.kind, self.kind, spec, auth, params.merged))


@cache
def rsa_pem() -> str:
    """One RSA private key (PEM) per test session: generating one takes a noticeable fraction of a second."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


def service_account_key(**overrides: Any) -> dict[str, Any]:
    """A GCS service-account key file's content; ``overrides`` replace or add fields."""
    key: dict[str, Any] = {
        "type": "service_account",
        "project_id": "example-project",
        "private_key_id": "0123456789abcdef",
        "private_key": rsa_pem(),
        "client_email": "audiencehub-test@example-project.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    key.update(overrides)
    return key


def make_backend(
    kind: str,
    *,
    moto: MotoServer | None = None,
    bucket: str | None = None,
    gcs: GcsEmulator | None = None,
    sftp: SftpServer | None = None,
    sftp_folder: tuple[str, Path] | None = None,
    endpoint: str | None = None,
) -> Backend:
    """The backend ``kind`` over its server; ``endpoint`` overrides the address (a fault proxy's)."""
    if kind in ("s3", "gcs_hmac"):
        assert moto is not None and bucket is not None
        folder = "drop/zone"

        def put_s3(rel: str, data: bytes) -> None:
            moto.put(bucket, f"{folder}/{rel}", data)

        url = endpoint or moto.endpoint
        if kind == "s3":
            params = {
                "s3AccessKey": moto.access_key,
                "s3SecretKey": moto.secret_key,
                "serviceUrl": url,
                "region": moto.region,
                "bucketName": bucket,
                "folderPath": folder,
            }
            bad = dict(params, s3SecretKey="wrong-" + moto.secret_key)
            return Backend(kind, S3_SPEC_ID, "Access Key", params, bad, put_s3, secrets=(moto.secret_key,))
        # moto stands in for GCS's S3-compatible XML API (the HMAC path speaks that protocol).
        params = {
            "accessKeyId": moto.access_key,
            "secretAccessKey": moto.secret_key,
            "serviceUrl": url,
            "bucketName": bucket,
            "folderPath": folder,
        }
        bad = dict(params, secretAccessKey="wrong-" + moto.secret_key)
        return Backend(
            kind, GCS_SPEC_ID, "Basic Authentication for google-cloud", params, bad, put_s3, secrets=(moto.secret_key,)
        )
    if kind == "gcs_json":
        assert gcs is not None and bucket is not None
        folder = "drop/zone"
        key = service_account_key()

        def put_gcs(rel: str, data: bytes) -> None:
            gcs.put(bucket, f"{folder}/{rel}", data)

        params = {
            "serviceAccountKey": json.dumps(key),
            "serviceUrl": endpoint or gcs.endpoint,
            "bucketName": bucket,
            "folderPath": folder,
        }
        bad = dict(params, serviceAccountKey=json.dumps(service_account_key(client_email="intruder@example.com")))
        # NOTE: the emulator never checks Authorization, so wrong keys cannot fail against it.
        return Backend(
            kind,
            GCS_SPEC_ID,
            "Service Account Authentication for google-cloud",
            params,
            bad,
            put_gcs,
            checks_credentials=False,
            secrets=(key["private_key"].splitlines()[1],),
        )
    assert sftp is not None and sftp_folder is not None
    rel_folder, local = sftp_folder
    host, port = ("127.0.0.1", sftp.port)
    if endpoint:
        host, _, p = endpoint.rpartition(":")
        host, port = host.removeprefix("http://"), int(p)

    def put_sftp(rel: str, data: bytes) -> None:
        target = local / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def set_mtime(rel: str, stamp: float) -> None:
        os.utime(local / rel, (stamp, stamp))

    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "userName": sftp.user,
        "folderPath": "/" + rel_folder,
        "knownHostKey": sftp.host_key_openssh,
    }
    if kind == "sftp_password":
        params = dict(common, password=sftp.password)
        bad = dict(common, password="wrong-" + sftp.password)
        return Backend(
            kind,
            SFTP_SPEC_ID,
            "Basic Authentication for sftp",
            params,
            bad,
            put_sftp,
            set_mtime,
            secrets=(sftp.password,),
        )
    encoded = base64.b64encode(sftp.client_key_pem_encrypted.encode()).decode()
    params = dict(common, privateKeyContent=encoded, passPhrase=sftp.client_key_passphrase)
    other = base64.b64encode(_other_key().encode()).decode()
    bad = dict(common, privateKeyContent=other)
    return Backend(
        kind,
        SFTP_SPEC_ID,
        "SSH PublicKey Authentication for sftp",
        params,
        bad,
        put_sftp,
        set_mtime,
        secrets=(sftp.client_key_passphrase, encoded[:40]),
    )


def _other_key() -> str:
    import asyncssh

    return str(asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode())
