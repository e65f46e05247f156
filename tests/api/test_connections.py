"""Flow Service base connections: create, read, list, update, delete and test, with secrets never shown.

Every secret here is a distinctive string, so that a leak into an answer, a header, a log line or the
metadata database on disk is found by a plain search. No storage server is needed: tests of the
``/test`` endpoint point connections at a local port that refuses connections.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest
from fastapi.testclient import TestClient

from audiencehub.app import create_app
from audiencehub.config import Settings
from audiencehub.metadata.store import Scope
from tests.api.support import assert_problem, headers_for
from tests.conftest import EA, create_audience, seed_audience, test_settings
from tests.sources.backends import rsa_pem
from tests.sources.backends import service_account_key as shared_service_account_key

BASE = "/data/foundation/flowservice"
C = BASE + "/connections"
MASK = "********"
S3_ID = "ecadc60c-7455-4d87-84dc-2a0e293d997b"
GCS_ID = "32e8f412-cdf7-464c-9885-78184cb113fd"
SFTP_ID = "b7bf2577-4520-42c9-bae9-cad01560f7bc"
SECRET_PARAMS = frozenset(
    {
        "s3AccessKey",
        "s3SecretKey",
        "s3SessionToken",
        "accessKeyId",
        "secretAccessKey",
        "serviceAccountKey",
        "password",
        "privateKeyContent",
        "passPhrase",
    }
)

# Distinctive secrets: none is a substring of anything the server could say on its own.
S3_ACCESS = "AKIALEAKCHECKS3ACCESS7F3E"
S3_SECRET = "leakcheck-s3-secret-Zq8wRt"
S3_TOKEN = "leakcheck-s3-session-Hn4vKp"
GCS_ACCESS = "GOOGLEAKCHECKHMACID0Q1W2E"
GCS_SECRET = "leakcheck-gcs-hmac-secret-Pw2rYx"
SA_EMAIL = "leakcheck-sa-9c1d@leakcheck-project.iam.gserviceaccount.com"
SFTP_PASSWORD = "leakcheck-sftp-password-Xy7uBn"
PASSPHRASE = "leakcheck-passphrase-Ju3kLm"


# -- keys ----------------------------------------------------------------------------------------


@cache
def host_key() -> str:
    """A server's public host key as one OpenSSH line."""
    line: str = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    return line


@cache
def encrypted_client_key() -> str:
    """A client key in OpenSSH format, encrypted with :data:`PASSPHRASE` (PEM text)."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    # One bcrypt round: the default 128 cost a second per load, and every create, update and test loads it.
    text: str = key.export_private_key("openssh", passphrase=PASSPHRASE, rounds=1, ignore_few_rounds=True).decode()
    return text


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def service_account_key(**overrides: Any) -> dict[str, Any]:
    leak_check = {"project_id": "leakcheck-project", "client_email": SA_EMAIL, "client_id": "100000000000000000001"}
    return shared_service_account_key(**{**leak_check, **overrides})


def pem_lines(pem: str) -> list[str]:
    """The body lines of a PEM text (each one is a distinctive piece of the key)."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")][1:4]


# -- bodies --------------------------------------------------------------------------------------


def body(name: str, spec_id: str, spec_name: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "auth": {"specName": spec_name, "params": params},
        "connectionSpec": {"id": spec_id, "version": "1.0"},
    }
    out.update(extra)
    return out


def s3_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "s3AccessKey": S3_ACCESS,
        "s3SecretKey": S3_SECRET,
        "s3SessionToken": S3_TOKEN,
        "serviceUrl": "http://127.0.0.1:1",
        "region": "eu-west-1",
        "bucketName": "audience-files",
        "folderPath": "exports/daily",
    }
    params.update(overrides)
    return params


def s3_body(name: str = "S3 exports", **overrides: Any) -> dict[str, Any]:
    return body(name, S3_ID, "Access Key", s3_params(**overrides), description="Daily exports from S3")


def gcs_hmac_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "accessKeyId": GCS_ACCESS,
        "secretAccessKey": GCS_SECRET,
        "serviceUrl": "http://127.0.0.1:1",
        "bucketName": "gcs-audiences",
        "folderPath": "lists",
    }
    params.update(overrides)
    return params


def gcs_sa_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "serviceAccountKey": service_account_key(),
        "serviceUrl": "http://127.0.0.1:1",
        "bucketName": "gcs-audiences",
        "folderPath": "lists",
    }
    params.update(overrides)
    return params


def sftp_password_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 1,
        "userName": "audiences",
        "password": SFTP_PASSWORD,
        "folderPath": "/srv/audiences",
        "knownHostKey": host_key(),
    }
    params.update(overrides)
    return params


def sftp_key_params(**overrides: Any) -> dict[str, Any]:
    params = sftp_password_params(**overrides)
    del params["password"]
    params.setdefault("privateKeyContent", b64(encrypted_client_key()))
    params.setdefault("passPhrase", PASSPHRASE)
    params.update(overrides)
    return params


@dataclass(frozen=True)
class Kind:
    """One connection spec and authentication, with a builder of its params and the secrets in them."""

    id: str
    spec_id: str
    spec_name: str
    params: Callable[..., dict[str, Any]]
    secrets: Callable[[], list[str]]
    """Every secret string (and distinctive pieces of secret keys) that must never be shown or stored."""
    target: tuple[str, str] = ("serviceUrl", "http")
    """The param that points at the server, and how: a URL (``http``) or a host and a port (``host``)."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Params the server adds when they are not sent, with their default value."""

    def body(self, name: str | None = None, **overrides: Any) -> dict[str, Any]:
        return body(name or f"{self.id} connection", self.spec_id, self.spec_name, self.params(**overrides))

    def aimed_at(self, port: int) -> dict[str, Any]:
        """Params overrides that point the connection at 127.0.0.1:``port``."""
        if self.target[1] == "host":
            return {"host": "127.0.0.1", "port": port}
        return {self.target[0]: f"http://127.0.0.1:{port}"}


KINDS = [
    Kind("s3", S3_ID, "Access Key", s3_params, lambda: [S3_ACCESS, S3_SECRET, S3_TOKEN]),
    Kind(
        "gcs-hmac", GCS_ID, "Basic Authentication for google-cloud", gcs_hmac_params, lambda: [GCS_ACCESS, GCS_SECRET]
    ),
    Kind(
        "gcs-service-account",
        GCS_ID,
        "Service Account Authentication for google-cloud",
        gcs_sa_params,
        lambda: [SA_EMAIL, *pem_lines(rsa_pem())],
    ),
    Kind(
        "sftp-password",
        SFTP_ID,
        "Basic Authentication for sftp",
        sftp_password_params,
        lambda: [SFTP_PASSWORD],
        target=("host", "host"),
        defaults={"disableHostKeyChecking": False},
    ),
    Kind(
        "sftp-key",
        SFTP_ID,
        "SSH PublicKey Authentication for sftp",
        sftp_key_params,
        lambda: [PASSPHRASE, b64(encrypted_client_key())[200:260], *pem_lines(encrypted_client_key())],
        target=("host", "host"),
        defaults={"disableHostKeyChecking": False},
    ),
]
KIND_IDS = [k.id for k in KINDS]


# -- helpers -------------------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def create(client: TestClient, headers: dict[str, str], data: dict[str, Any]) -> tuple[str, str]:
    """Creates a connection; returns its id and etag."""
    resp = client.post(C, json=data, headers=headers)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert set(created) == {"id", "etag"}, created
    return str(created["id"]), str(created["etag"])


def get_item(client: TestClient, headers: dict[str, str], connection_id: str) -> dict[str, Any]:
    resp = client.get(f"{C}/{connection_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert len(items) == 1, items
    item: dict[str, Any] = items[0]
    return item


def patch(
    client: TestClient, headers: dict[str, str], connection_id: str, etag: str | None, ops: Any
) -> httpx.Response:
    extra = {"if-match": etag} if etag is not None else {}
    return client.patch(f"{C}/{connection_id}", json=ops, headers={**headers, **extra})


def listed_ids(client: TestClient, headers: dict[str, str]) -> list[str]:
    resp = client.get(C, params={"limit": 100}, headers=headers)
    assert resp.status_code == 200, resp.text
    return [item["id"] for item in resp.json()["items"]]


def stored_params(client: TestClient, creds: dict[str, str], connection_id: str) -> dict[str, Any]:
    """The params as the server keeps them, secrets included (what the source backends are given)."""
    service = client.app.state.container.connections  # type: ignore[attr-defined]
    stored = service.resolve(Scope(creds["org_id"], "prod"), connection_id, None)
    params: dict[str, Any] = stored.params
    return params


def secret_values(data: Any) -> list[str]:
    """Every string under a secret param of a create body or of patch operations."""
    found: list[str] = []

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k in SECRET_PARAMS:
                    found.extend(s for s in strings(v) if len(s) >= 8)
                else:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(data)
    return found


# -- 1. create and read, for every spec and authentication ---------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_create_then_get_answers_the_connection_with_secrets_masked(
    client: TestClient, headers: dict[str, str], creds: dict[str, str], kind: Kind
) -> None:
    data = kind.body(f"My {kind.id}")
    data["description"] = f"The {kind.id} of the audience team"
    before = now_ms()
    resp = client.post(C, json=data, headers=headers)
    after = now_ms()
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert set(created) == {"id", "etag"}, created
    connection_id, etag = created["id"], created["etag"]
    uuid.UUID(connection_id)
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2, etag
    assert resp.headers["ETag"] == etag
    assert resp.headers["Location"] == f"{C}/{connection_id}"

    by_location = client.get(resp.headers["Location"], headers=headers)
    assert by_location.status_code == 200, by_location.text
    assert set(by_location.json()) == {"items"}
    item = get_item(client, headers, connection_id)
    assert by_location.json()["items"] == [item]

    assert item["id"] == connection_id
    # Epoch milliseconds (not seconds, not nanoseconds), taken while the request was served.
    assert isinstance(item["createdAt"], int) and isinstance(item["updatedAt"], int), item
    assert before <= item["createdAt"] <= after, (before, item["createdAt"], after)
    assert item["updatedAt"] == item["createdAt"]
    assert item["createdClient"] == item["updatedClient"] == creds["client_id"]
    assert isinstance(item["createdBy"], str) and item["createdBy"], item
    assert item["updatedBy"] == item["createdBy"]
    assert item["sandboxName"] == "prod"
    assert item["imsOrgId"] == creds["org_id"]
    assert item["name"] == f"My {kind.id}"
    assert item["description"] == f"The {kind.id} of the audience team"
    assert item["connectionSpec"] == {"id": kind.spec_id, "version": "1.0"}
    assert item["state"] == "enabled"
    assert item["etag"] == item["version"] == etag
    assert item["auth"]["specName"] == kind.spec_name

    sent = data["auth"]["params"]
    expected = {k: (MASK if k in SECRET_PARAMS else v) for k, v in sent.items()}
    expected.update({k: v for k, v in kind.defaults.items() if k not in sent})
    assert item["auth"]["params"] == expected


def test_create_without_description_omits_it(client: TestClient, headers: dict[str, str]) -> None:
    data = s3_body()
    del data["description"]
    connection_id, _ = create(client, headers, data)
    assert "description" not in get_item(client, headers, connection_id)


@pytest.mark.parametrize(
    ("make", "sent", "expected"),
    [
        (lambda folder: s3_body(folderPath=folder), "/exports//daily/", "exports/daily"),
        (lambda folder: _sftp(sftp_password_params(folderPath=folder)), "/srv//audiences/", "/srv/audiences"),
    ],
    ids=["s3", "sftp"],
)
def test_folder_path_is_stored_and_answered_normalized(
    client: TestClient,
    headers: dict[str, str],
    creds: dict[str, str],
    make: Callable[[str], dict[str, Any]],
    sent: str,
    expected: str,
) -> None:
    """S3 keys "exports//daily/f" and "exports/daily/f" are two objects: the folder must be the one validated."""
    connection_id, _ = create(client, headers, make(sent))
    assert stored_params(client, creds, connection_id)["folderPath"] == expected
    assert get_item(client, headers, connection_id)["auth"]["params"]["folderPath"] == expected


def test_create_accepts_spec_name_and_id_case_insensitively_and_answers_canonical_names(
    client: TestClient, headers: dict[str, str]
) -> None:
    data = body("sftp", SFTP_ID.upper(), "basic authentication for SFTP", sftp_password_params())
    data["auth"]["params"]["username"] = data["auth"]["params"].pop("userName")
    connection_id, _ = create(client, headers, data)
    item = get_item(client, headers, connection_id)
    assert item["connectionSpec"]["id"] == SFTP_ID
    assert item["auth"]["specName"] == "Basic Authentication for sftp"
    assert item["auth"]["params"]["userName"] == "audiences"
    assert "username" not in item["auth"]["params"]


def test_sftp_without_host_key_is_accepted_when_checking_is_disabled(
    client: TestClient, headers: dict[str, str]
) -> None:
    params = sftp_password_params(disableHostKeyChecking=True)
    del params["knownHostKey"]
    connection_id, _ = create(client, headers, body("no host key", SFTP_ID, "Basic Authentication for sftp", params))
    shown = get_item(client, headers, connection_id)["auth"]["params"]
    assert shown["disableHostKeyChecking"] is True
    assert "knownHostKey" not in shown


def test_service_account_key_as_json_text_is_accepted(client: TestClient, headers: dict[str, str]) -> None:
    params = gcs_sa_params(serviceAccountKey=json.dumps(service_account_key()))
    connection_id, _ = create(client, headers, body("sa text", GCS_ID, "Service Account Key", params))
    item = get_item(client, headers, connection_id)
    assert item["auth"]["specName"] == "Service Account Authentication for google-cloud"
    assert item["auth"]["params"]["serviceAccountKey"] == MASK


# -- 2. secrets are never shown, logged or stored in the clear -----------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_secrets_never_leave_the_server_nor_reach_the_disk_in_the_clear(
    settings: Settings, kind: Kind, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = kind.secrets()
    assert all(len(s) >= 16 for s in secrets), secrets
    answers: list[httpx.Response] = []

    def seen(resp: httpx.Response) -> httpx.Response:
        answers.append(resp)
        return resp

    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        data = kind.body("leak check", **kind.aimed_at(closed_port))
        created = seen(client.post(C, json=data, headers=headers))
        assert created.status_code == 201, created.text
        connection_id, etag = created.json()["id"], created.json()["etag"]
        url = f"{C}/{connection_id}"
        # A second connection with the same secrets: its sealed blob must differ (a fresh nonce).
        twin = seen(client.post(C, json=kind.body("leak check twin"), headers=headers))
        assert twin.status_code == 201, twin.text

        item = seen(client.get(url, headers=headers)).json()["items"][0]
        seen(client.get(C, headers=headers))
        seen(client.get(C + "/", params={"limit": 1}, headers=headers))
        for method in ("GET", "POST"):
            tested = seen(client.request(method, url + "/test", headers=headers))
            assert tested.status_code == 200 and tested.json()["result"] is False, tested.text

        renamed = seen(patch(client, headers, connection_id, etag, [{"op": "replace", "path": "/name", "value": "x"}]))
        assert renamed.status_code == 200, renamed.text
        etag = renamed.json()["etag"]
        whole = [{"op": "replace", "path": "/auth/params", "value": item["auth"]["params"]}]
        kept = seen(patch(client, headers, connection_id, etag, whole))
        assert kept.status_code == 200, kept.text
        etag = kept.json()["etag"]

        resent = [{"op": "replace", "path": "/auth/params", "value": data["auth"]["params"]}]
        refusals = [
            # Updates that are refused, each carrying the secrets.
            patch(client, headers, connection_id, '"stale"', resent),
            patch(client, headers, connection_id, None, resent),
            patch(client, headers, str(uuid.uuid4()), etag, resent),
            patch(
                client,
                headers,
                connection_id,
                etag,
                [{"op": "replace", "path": "/auth/params", "value": {**data["auth"]["params"], "bogusParam": 1}}],
            ),
            patch(
                client,
                headers,
                connection_id,
                etag,
                [{"op": "replace", "path": "/auth/params", "value": {**data["auth"]["params"], "bucketName": "B!"}}],
            ),
            patch(client, headers, connection_id, etag, [{"op": "move", "path": "/auth/params", "value": resent}]),
            patch(client, headers, connection_id, etag, {"secrets": data["auth"]["params"]}),
            # Creates that are refused, each carrying the secrets.
            client.post(C, json={**data, "connectionSpec": {"id": str(uuid.uuid4())}}, headers=headers),
            client.post(C, json={**data, "auth": {**data["auth"], "specName": "Nope"}}, headers=headers),
            client.post(C, json={**data, "name": ""}, headers=headers),
            client.post(C, json={**data, "extra": data["auth"]["params"]}, headers=headers),
            client.post(C, content=json.dumps(data)[:-7].encode(), headers=headers),
            client.post(C, json=[data], headers=headers),
            client.post(C, json=kind.body("bad", bucketName="NOT_A_BUCKET!"), headers=headers),
            client.post(C, json=kind.body("bad", unknownParam=secrets[0]), headers=headers),
        ]
        for refused in refusals:
            seen(refused)
            assert refused.status_code in (400, 404, 412), refused.text

        seen(client.get(f"{url}/test", headers=headers))
        assert seen(client.delete(f"{C}/{twin.json()['id']}", headers=headers)).status_code == 204

        on_disk_running = _files_with(settings.home, secrets)
        rows = _sealed_rows(settings.home)
    on_disk_stopped = _files_with(settings.home, secrets)

    for resp in answers:
        shown = resp.text + json.dumps(dict(resp.headers))
        for secret in secrets:
            assert secret not in shown, f"{secret!r} shown by {resp.request.method} {resp.request.url}: {shown}"
    # Our own log lines at every level; other libraries' from INFO up (botocore's DEBUG lines print request
    # headers, session token included: a server run at DEBUG level logs them, which is the operator's choice).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("audiencehub") or r.levelno >= 20)
    assert any(r.name.startswith("audiencehub") for r in caplog.records), "nothing of ours was captured"
    for secret in secrets:
        assert secret not in logged, f"{secret!r} logged"
    assert on_disk_running == {}, on_disk_running
    assert on_disk_stopped == {}, on_disk_stopped
    sealed = [r["sealed"] for r in rows]
    assert len(sealed) == 1, rows  # the twin was deleted
    raw = base64.urlsafe_b64decode(sealed[0] + "=" * (-len(sealed[0]) % 4))
    for secret in secrets:
        assert secret.encode() not in raw
        assert b64(secret) not in sealed[0]
    for row in rows:
        for secret in secrets:
            assert secret not in (row["params"] or ""), row


def test_the_same_secrets_seal_differently(client: TestClient, headers: dict[str, str], settings: Settings) -> None:
    create(client, headers, s3_body("one"))
    create(client, headers, s3_body("two"))
    sealed = [r["sealed"] for r in _sealed_rows(settings.home)]
    assert len(sealed) == 2 and sealed[0] != sealed[1], sealed


def _files_with(root: Path, secrets: list[str]) -> dict[str, list[str]]:
    """Files under ``root`` whose raw bytes hold any of ``secrets`` (as UTF-8 or as JSON's escaped form)."""
    found: dict[str, list[str]] = {}
    needles = {s: {s.encode(), json.dumps(s)[1:-1].encode()} for s in secrets}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        hits = [s for s, forms in needles.items() if any(f in raw for f in forms)]
        if hits:
            found[str(path.relative_to(root))] = hits
    assert (root / "metadata.db").is_file()
    return found


def _sealed_rows(home: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(home / "metadata.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT id, params, sealed, secret_names FROM connections")]


# -- 3. validation: 400 naming the field, never echoing a secret ---------------------------------


@pytest.fixture
def vclient(shared_client: TestClient, shared_headers: dict[str, str]) -> Iterator[TestClient]:
    """The module's shared app: every request sent through it is refused, so nothing may be created."""
    yield shared_client
    assert listed_ids(shared_client, shared_headers) == [], "a refused request created a connection"


def _with(data: dict[str, Any], **params: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    out["auth"]["params"].update(params)
    return out


def _without(data: dict[str, Any], *names: str) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    for name in names:
        del out["auth"]["params"][name]
    return out


def _sftp(params: dict[str, Any]) -> dict[str, Any]:
    return body("sftp", SFTP_ID, "Basic Authentication for sftp", params)


def _sftp_key(params: dict[str, Any]) -> dict[str, Any]:
    return body("sftp key", SFTP_ID, "SSH PublicKey Authentication for sftp", params)


def _gcs_sa(key: Any) -> dict[str, Any]:
    return body("sa", GCS_ID, "Service Account Authentication for google-cloud", gcs_sa_params(serviceAccountKey=key))


def _not_key_text() -> str:
    return b64("leakcheck-not-a-key-but-base64-Vb6n")


INVALID: list[tuple[str, Callable[[], dict[str, Any]], tuple[str, ...]]] = [
    (
        "unknown connection spec",
        lambda: {**s3_body(), "connectionSpec": {"id": "00000000-0000-4000-8000-000000000000"}},
        ("connectionSpec.id", "00000000-0000-4000-8000-000000000000", S3_ID, GCS_ID, SFTP_ID),
    ),
    ("no connection spec", lambda: {k: v for k, v in s3_body().items() if k != "connectionSpec"}, ("connectionSpec",)),
    ("unknown spec version", lambda: {**s3_body(), "connectionSpec": {"id": S3_ID, "version": "9.9"}}, ("9.9",)),
    (
        "unknown spec name",
        lambda: {**s3_body(), "auth": {"specName": "OAuth 2 Refresh Code", "params": s3_params()}},
        ("auth.specName", "OAuth 2 Refresh Code", "Access Key"),
    ),
    ("no auth", lambda: {k: v for k, v in s3_body().items() if k != "auth"}, ("auth.specName",)),
    ("params not an object", lambda: {**s3_body(), "auth": {"specName": "Access Key", "params": []}}, ("auth.params",)),
    ("missing secret param", lambda: _without(s3_body(), "s3SecretKey"), ("auth.params.s3SecretKey", "required")),
    ("missing plain param", lambda: _without(_sftp(sftp_password_params()), "host"), ("auth.params.host", "required")),
    ("unknown param", lambda: _with(s3_body(), s3Bucket="b"), ("auth.params.s3Bucket", "s3SecretKey", "bucketName")),
    ("port not an integer", lambda: _sftp(sftp_password_params(port="twenty-two")), ("auth.params.port",)),
    ("port a fraction", lambda: _sftp(sftp_password_params(port=22.5)), ("auth.params.port",)),
    ("port a boolean", lambda: _sftp(sftp_password_params(port=True)), ("auth.params.port",)),
    ("port zero", lambda: _sftp(sftp_password_params(port=0)), ("auth.params.port", "65535")),
    ("port too high", lambda: _sftp(sftp_password_params(port=65536)), ("auth.params.port", "65536")),
    ("port negative", lambda: _sftp(sftp_password_params(port=-22)), ("auth.params.port",)),
    ("serviceUrl ftp", lambda: s3_body(serviceUrl="ftp://files.example.com"), ("auth.params.serviceUrl", "ftp://")),
    ("serviceUrl no scheme", lambda: s3_body(serviceUrl="s3.example.com"), ("auth.params.serviceUrl",)),
    ("serviceUrl no host", lambda: gcs_body_with(serviceUrl="https://"), ("auth.params.serviceUrl",)),
    ("bucket uppercase", lambda: s3_body(bucketName="Audience_Files"), ("auth.params.bucketName", "Audience_Files")),
    ("bucket too short", lambda: s3_body(bucketName="ab"), ("auth.params.bucketName", "'ab'")),
    ("bucket not a string", lambda: s3_body(bucketName=7), ("auth.params.bucketName",)),
    ("folderPath dot-dot", lambda: s3_body(folderPath="in/../../etc"), ("auth.params.folderPath", "..")),
    ("sftp folderPath dot-dot", lambda: _sftp(sftp_password_params(folderPath="/srv/../etc")), ("folderPath", "..")),
    ("host invalid", lambda: _sftp(sftp_password_params(host="bad host!")), ("auth.params.host", "bad host!")),
    (
        "no host key, checking on",
        lambda: _without(_sftp(sftp_password_params()), "knownHostKey"),
        ("auth.params.knownHostKey", "disableHostKeyChecking"),
    ),
    (
        "no host key, checking explicitly on",
        lambda: _without(_sftp(sftp_password_params(disableHostKeyChecking="false")), "knownHostKey"),
        ("auth.params.knownHostKey",),
    ),
    (
        "disableHostKeyChecking not a boolean",
        lambda: _sftp(sftp_password_params(disableHostKeyChecking="maybe")),
        ("auth.params.disableHostKeyChecking", "maybe"),
    ),
    (
        "host key not a key",
        lambda: _sftp(sftp_password_params(knownHostKey="not a key")),
        ("auth.params.knownHostKey",),
    ),
    (
        "host key truncated",
        lambda: _sftp(sftp_password_params(knownHostKey=host_key()[:30])),
        ("auth.params.knownHostKey",),
    ),
    (
        "private key garbage",
        lambda: _sftp_key(sftp_key_params(privateKeyContent="leakcheck-garbage-key-%%%-Qm5t")),
        ("auth.params.privateKeyContent",),
    ),
    (
        "private key Base64 of no key",
        lambda: _sftp_key(sftp_key_params(privateKeyContent=_not_key_text())),
        ("auth.params.privateKeyContent",),
    ),
    (
        "encrypted key without passPhrase",
        lambda: _without(_sftp_key(sftp_key_params()), "passPhrase"),
        ("auth.params.privateKeyContent",),
    ),
    (
        "encrypted key with the wrong passPhrase",
        lambda: _sftp_key(sftp_key_params(passPhrase="leakcheck-wrong-passphrase-Tt9z")),
        ("auth.params.privateKeyContent", "passPhrase"),
    ),
    (
        "service account key without private_key",
        lambda: _gcs_sa({k: v for k, v in service_account_key().items() if k != "private_key"}),
        ("auth.params.serviceAccountKey", "private_key"),
    ),
    (
        "service account key without client_email",
        lambda: _gcs_sa({k: v for k, v in service_account_key().items() if k != "client_email"}),
        ("auth.params.serviceAccountKey", "client_email"),
    ),
    (
        "service account private_key not RSA",
        lambda: _gcs_sa(service_account_key(private_key="-----BEGIN PRIVATE KEY-----\nleakcheckQQQQ\n-----END")),
        ("auth.params.serviceAccountKey", "private_key"),
    ),
    (
        "service account key text not JSON",
        lambda: _gcs_sa('{"client_email": "' + SA_EMAIL + '", '),
        ("auth.params.serviceAccountKey",),
    ),
    ("service account key a number", lambda: _gcs_sa(12345), ("auth.params.serviceAccountKey",)),
    ("secret not a string", lambda: s3_body(s3SecretKey=[S3_SECRET]), ("auth.params.s3SecretKey",)),
    ("secret empty", lambda: s3_body(s3SecretKey="   "), ("auth.params.s3SecretKey",)),
    ("param given twice", lambda: _sftp(sftp_password_params(username="other")), ("username", "userName")),
    ("missing name", lambda: {k: v for k, v in s3_body().items() if k != "name"}, ("name",)),
    ("blank name", lambda: s3_body(name="   "), ("name",)),
    ("name too long", lambda: s3_body(name="n" * 257), ("name", "256")),
    ("description not a string", lambda: {**s3_body(), "description": 5}, ("description",)),
    ("unknown field", lambda: {**s3_body(), "flowSpec": {"id": "x"}}, ("flowSpec",)),
]


def gcs_body_with(**overrides: Any) -> dict[str, Any]:
    return body("gcs", GCS_ID, "Basic Authentication for google-cloud", gcs_hmac_params(**overrides))


@pytest.mark.parametrize(("make", "needles"), [(m, n) for _, m, n in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_create_is_400_naming_the_field_and_never_a_secret(
    vclient: TestClient,
    shared_headers: dict[str, str],
    make: Callable[[], dict[str, Any]],
    needles: tuple[str, ...],
) -> None:
    data = make()
    resp = vclient.post(C, json=data, headers=shared_headers)
    assert_problem(resp, 400, "100910-400", *needles)
    for secret in secret_values(data):
        assert secret not in resp.text, f"the secret {secret!r} is repeated: {resp.text}"


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (
            b'{"name": "x", "auth": {"specName": "Access Key", "params": {"s3SecretKey": "leakcheck-trunc-9QxZ',
            ("body",),
        ),
        (b"", ("body",)),
        (b"not json at all", ("body", "JSON")),
        (b"\xff\xfe\x00", ("body",)),
        (json.dumps([s3_body()]).encode(), ("body", "list")),
        (b'"just a string"', ("body", "str")),
        (b"null", ("body",)),
    ],
    ids=["truncated", "empty", "not-json", "not-utf8", "array", "string", "null"],
)
def test_body_that_is_not_a_json_object_is_400(
    vclient: TestClient, shared_headers: dict[str, str], content: bytes, needles: tuple[str, ...]
) -> None:
    resp = vclient.post(C, content=content, headers={**shared_headers, "content-type": "application/json"})
    body_ = assert_problem(resp, 400, "100910-400", *needles)
    assert "leakcheck" not in body_["detail"]
    assert S3_SECRET not in resp.text


def test_port_of_unicode_digits_is_400_naming_port(vclient: TestClient, shared_headers: dict[str, str]) -> None:
    resp = vclient.post(C, json=_sftp(sftp_password_params(port="²")), headers=shared_headers)
    assert_problem(resp, 400, "100910-400", "auth.params.port")


def test_invalid_region_is_400_naming_region(vclient: TestClient, shared_headers: dict[str, str]) -> None:
    resp = vclient.post(C, json=s3_body(region="eu west 1"), headers=shared_headers)
    assert_problem(resp, 400, "100910-400", "auth.params.region")


def test_malformed_service_url_is_400_naming_service_url(vclient: TestClient, shared_headers: dict[str, str]) -> None:
    resp = vclient.post(C, json=s3_body(serviceUrl="http://[::1"), headers=shared_headers)
    assert_problem(resp, 400, "100910-400", "auth.params.serviceUrl")


def test_encrypted_key_without_pass_phrase_says_a_pass_phrase_is_needed(
    vclient: TestClient, shared_headers: dict[str, str]
) -> None:
    resp = vclient.post(C, json=_without(_sftp_key(sftp_key_params()), "passPhrase"), headers=shared_headers)
    assert_problem(resp, 400, "100910-400", "auth.params.privateKeyContent", "passPhrase")


def test_pem_private_key_and_base64_private_key_are_both_accepted(client: TestClient, headers: dict[str, str]) -> None:
    for content in (encrypted_client_key(), b64(encrypted_client_key())):
        create(client, headers, _sftp_key(sftp_key_params(privateKeyContent=content)))
    assert len(listed_ids(client, headers)) == 2


# -- 4. isolation between orgs and sandboxes -----------------------------------------------------


@pytest.fixture(params=["other_org", "other_sandbox"])
def outsider(request: pytest.FixtureRequest) -> dict[str, str]:
    name = "other_org_headers" if request.param == "other_org" else "dev_headers"
    found: dict[str, str] = request.getfixturevalue(name)
    return found


def test_outsiders_get_404_for_every_operation_and_change_nothing(
    client: TestClient, headers: dict[str, str], outsider: dict[str, str]
) -> None:
    connection_id, etag = create(client, headers, s3_body())
    url = f"{C}/{connection_id}"
    before = get_item(client, headers, connection_id)
    rename = [{"op": "replace", "path": "/name", "value": "hijacked"}]
    answers = [
        client.get(url, headers=outsider),
        client.get(url + "/", headers=outsider),
        client.patch(url, json=rename, headers={**outsider, "if-match": etag}),
        client.delete(url, headers=outsider),
        client.get(url + "/test", headers=outsider),
        client.post(url + "/test", headers=outsider),
    ]
    for resp in answers:
        assert_problem(resp, 404, "100940-404", connection_id)
    listed = client.get(C, headers=outsider)
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == [] and listed.json()["count"] == 0
    assert get_item(client, headers, connection_id) == before


def test_outsiders_connections_do_not_show_in_the_owners_list(
    client: TestClient, headers: dict[str, str], outsider: dict[str, str]
) -> None:
    mine, _ = create(client, headers, s3_body("mine"))
    theirs, _ = create(client, outsider, s3_body("theirs"))
    assert listed_ids(client, headers) == [mine]
    assert listed_ids(client, outsider) == [theirs]
    assert get_item(client, outsider, theirs)["sandboxName"] == outsider["x-sandbox-name"]
    assert get_item(client, outsider, theirs)["imsOrgId"] == outsider["x-gw-ims-org-id"]


def test_an_audience_cannot_use_a_connection_of_another_sandbox(
    client: TestClient, headers: dict[str, str], dev_headers: dict[str, str]
) -> None:
    connection_id, _ = create(client, headers, s3_body())
    resp = client.post(EA + "/", json=_audience_on(connection_id, "S3"), headers=dev_headers)
    assert_problem(resp, 422, "100960-422", "baseConnectionId", connection_id)


# -- 5. listing ----------------------------------------------------------------------------------

NAMES = ["delta", "alpha", "echo", "charlie", "bravo"]


@pytest.fixture
def five(client: TestClient, headers: dict[str, str]) -> list[str]:
    """Five connections created in the order of :data:`NAMES`; their ids in that order."""
    return [create(client, headers, s3_body(name))[0] for name in NAMES]


def _pages(client: TestClient, headers: dict[str, str], first: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page from the first, following ``_links.next.href`` as given (relative to the service's base)."""
    pages = []
    resp = client.get(C, params=first, headers=headers)
    while True:
        assert resp.status_code == 200, resp.text
        page = resp.json()
        pages.append(page)
        if "_links" not in page:
            return pages
        href = page["_links"]["next"]["href"]
        assert href.startswith("/connections?"), href
        assert len(pages) < 10, "paging does not end"
        resp = client.get(BASE + href, headers=headers)


def test_paging_by_continuation_token_visits_each_connection_once(
    client: TestClient, headers: dict[str, str], five: list[str]
) -> None:
    pages = _pages(client, headers, {"limit": 2})
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert all(p["count"] == 5 for p in pages), [p["count"] for p in pages]
    ids = [item["id"] for p in pages for item in p["items"]]
    # The default order is the newest first.
    assert ids == list(reversed(five))
    assert "_links" not in pages[-1]


def test_paging_with_an_explicit_token_and_order(client: TestClient, headers: dict[str, str], five: list[str]) -> None:
    names: list[str] = []
    params: dict[str, Any] = {"limit": 2, "orderby": "name"}
    for _ in range(5):
        page = client.get(C, params=params, headers=headers).json()
        names += [item["name"] for item in page["items"]]
        if "_links" not in page:
            break
        params["continuationToken"] = httpx.URL(page["_links"]["next"]["href"]).params["continuationToken"]
    assert names == sorted(NAMES)


def test_next_link_keeps_the_order(client: TestClient, headers: dict[str, str], five: list[str]) -> None:
    pages = _pages(client, headers, {"limit": 2, "orderby": "name"})
    assert [item["name"] for p in pages for item in p["items"]] == sorted(NAMES)


def test_limit_larger_than_the_list_answers_all_without_a_next_link(
    client: TestClient, headers: dict[str, str], five: list[str]
) -> None:
    page = client.get(C, params={"limit": 5}, headers=headers).json()
    assert len(page["items"]) == 5 and page["count"] == 5
    assert "_links" not in page
    default = client.get(C, headers=headers).json()
    assert len(default["items"]) == 5 and "_links" not in default


@pytest.mark.parametrize(
    ("orderby", "expected"),
    [
        ("name", sorted(NAMES)),
        ("-name", sorted(NAMES, reverse=True)),
        ("createdAt", NAMES),
        ("-createdAt", list(reversed(NAMES))),
    ],
)
def test_orderby(
    client: TestClient, headers: dict[str, str], five: list[str], orderby: str, expected: list[str]
) -> None:
    resp = client.get(C, params={"orderby": orderby}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert [item["name"] for item in resp.json()["items"]] == expected


def test_orderby_updated_at_is_accepted(client: TestClient, headers: dict[str, str], five: list[str]) -> None:
    for orderby in ("updatedAt", "-updatedAt"):
        resp = client.get(C, params={"orderby": orderby}, headers=headers)
        assert resp.status_code == 200, resp.text
        assert sorted(i["id"] for i in resp.json()["items"]) == sorted(five)


def _token(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"limit": 0}, ("limit",)),
        ({"limit": 101}, ("limit", "101")),
        ({"limit": -1}, ("limit",)),
        ({"limit": "ten"}, ("limit", "ten")),
        ({"continuationToken": "%%%not-a-token"}, ("continuationToken",)),
        ({"continuationToken": _token({"start": -2})}, ("continuationToken",)),
        ({"continuationToken": _token({"offset": 2})}, ("continuationToken",)),
        ({"continuationToken": _token(["start", 2])}, ("continuationToken",)),
        ({"continuationToken": _token({"start": "2"})}, ("continuationToken",)),
        ({"orderby": "size"}, ("orderby", "size")),
        ({"orderby": "-password"}, ("orderby",)),
    ],
)
def test_bad_list_parameters_are_400(
    vclient: TestClient, shared_headers: dict[str, str], params: dict[str, Any], needles: tuple[str, ...]
) -> None:
    assert_problem(vclient.get(C, params=params, headers=shared_headers), 400, "100910-400", *needles)


# -- 6. PATCH ------------------------------------------------------------------------------------


def test_patch_renames_and_describes(client: TestClient, headers: dict[str, str]) -> None:
    connection_id, etag = create(client, headers, s3_body("before"))
    created = get_item(client, headers, connection_id)
    ops = [
        {"op": "replace", "path": "/name", "value": "  after  "},
        {"op": "add", "path": "/description", "value": "now described"},
    ]
    before = now_ms()
    resp = patch(client, headers, connection_id, etag, ops)
    assert resp.status_code == 200, resp.text
    answered = resp.json()
    assert set(answered) == {"id", "etag"} and answered["id"] == connection_id
    assert answered["etag"] != etag
    assert resp.headers["ETag"] == answered["etag"]
    item = get_item(client, headers, connection_id)
    assert item["name"] == "after"
    assert item["description"] == "now described"
    assert item["etag"] == item["version"] == answered["etag"]
    assert item["createdAt"] == created["createdAt"]
    assert before <= item["updatedAt"] <= now_ms()
    assert item["auth"] == created["auth"]

    removed = patch(client, headers, connection_id, answered["etag"], [{"op": "remove", "path": "/description"}])
    assert removed.status_code == 200, removed.text
    assert "description" not in get_item(client, headers, connection_id)


def test_patch_replaces_one_secret(client: TestClient, headers: dict[str, str], creds: dict[str, str]) -> None:
    connection_id, etag = create(client, headers, s3_body())
    ops = [{"op": "replace", "path": "/auth/params/s3SecretKey", "value": "leakcheck-rotated-secret-Wq1e"}]
    resp = patch(client, headers, connection_id, etag, ops)
    assert resp.status_code == 200, resp.text
    assert "leakcheck-rotated" not in resp.text
    item = get_item(client, headers, connection_id)
    assert item["auth"]["params"]["s3SecretKey"] == MASK
    assert "leakcheck-rotated" not in json.dumps(item)
    kept = stored_params(client, creds, connection_id)
    assert kept["s3SecretKey"] == "leakcheck-rotated-secret-Wq1e"
    assert kept["s3AccessKey"] == S3_ACCESS and kept["s3SessionToken"] == S3_TOKEN


def test_patch_adds_and_removes_single_params(client: TestClient, headers: dict[str, str]) -> None:
    data = s3_body()
    del data["auth"]["params"]["s3SessionToken"]
    connection_id, etag = create(client, headers, data)
    resp = patch(
        client,
        headers,
        connection_id,
        etag,
        [
            {"op": "add", "path": "/auth/params/s3SessionToken", "value": S3_TOKEN},
            {"op": "remove", "path": "/auth/params/region"},
            {"op": "add", "path": "/auth/params", "value": {"folderPath": "imports"}},
        ],
    )
    assert resp.status_code == 200, resp.text
    shown = get_item(client, headers, connection_id)["auth"]["params"]
    assert shown["s3SessionToken"] == MASK
    assert "region" not in shown
    assert shown["folderPath"] == "imports"
    assert shown["bucketName"] == "audience-files"


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_secrets_sent_back_masked_keep_their_stored_values(
    client: TestClient, headers: dict[str, str], creds: dict[str, str], kind: Kind
) -> None:
    data = kind.body()
    connection_id, etag = create(client, headers, data)
    original = stored_params(client, creds, connection_id)
    shown = get_item(client, headers, connection_id)["auth"]["params"]
    assert any(v == MASK for v in shown.values()), shown
    # The whole params object as GET shows it, with one plain param changed.
    changed = {**shown, "folderPath": "elsewhere"}
    resp = patch(client, headers, connection_id, etag, [{"op": "replace", "path": "/auth/params", "value": changed}])
    assert resp.status_code == 200, resp.text
    assert resp.json()["etag"] != etag
    after = stored_params(client, creds, connection_id)
    for name in SECRET_PARAMS & set(original):
        assert after[name] == original[name], name
        assert after[name] != MASK
    assert after["folderPath"] == "elsewhere"
    # A single secret sent back masked keeps it too.
    name = sorted(SECRET_PARAMS & set(original))[0]
    ops = [{"op": "replace", "path": f"/auth/params/{name}", "value": MASK}]
    again = patch(client, headers, connection_id, resp.json()["etag"], ops)
    assert again.status_code == 200, again.text
    assert stored_params(client, creds, connection_id)[name] == original[name]


def test_patch_replacing_params_without_a_secret_is_400(client: TestClient, headers: dict[str, str]) -> None:
    connection_id, etag = create(client, headers, s3_body())
    shown = get_item(client, headers, connection_id)["auth"]["params"]
    del shown["s3SecretKey"]
    resp = patch(client, headers, connection_id, etag, [{"op": "replace", "path": "/auth/params", "value": shown}])
    assert_problem(resp, 400, "100910-400", "auth.params.s3SecretKey", "required")
    assert get_item(client, headers, connection_id)["etag"] == etag


def test_patch_without_if_match_is_400(client: TestClient, headers: dict[str, str]) -> None:
    connection_id, etag = create(client, headers, s3_body())
    rename = [{"op": "replace", "path": "/name", "value": "renamed"}]
    assert_problem(patch(client, headers, connection_id, None, rename), 400, "100910-400", "if-match")
    assert_problem(patch(client, headers, connection_id, "  ", rename), 400, "100910-400", "if-match")
    item = get_item(client, headers, connection_id)
    assert item["name"] == "S3 exports" and item["etag"] == etag


def test_patch_with_a_stale_etag_is_412(client: TestClient, headers: dict[str, str]) -> None:
    connection_id, etag = create(client, headers, s3_body())
    rename = [{"op": "replace", "path": "/name", "value": "first"}]
    fresh = patch(client, headers, connection_id, etag, rename)
    assert fresh.status_code == 200, fresh.text
    stale = patch(client, headers, connection_id, etag, [{"op": "replace", "path": "/name", "value": "second"}])
    assert_problem(stale, 412, "100930-412", "if-match")
    wrong = patch(client, headers, connection_id, f'"{uuid.uuid4()}"', rename)
    assert_problem(wrong, 412, "100930-412")
    item = get_item(client, headers, connection_id)
    assert item["name"] == "first" and item["etag"] == fresh.json()["etag"]


@pytest.mark.parametrize(
    ("ops", "needles"),
    [
        (
            [
                {"op": "replace", "path": "/name", "value": "ok"},
                {"op": "replace", "path": "/auth/params/port", "value": 1},
            ],
            ("auth.params.port",),
        ),
        (
            [
                {"op": "replace", "path": "/name", "value": "ok"},
                {"op": "replace", "path": "/auth/params/bucketName", "value": "BAD!"},
            ],
            ("auth.params.bucketName",),
        ),
        ([{"op": "replace", "path": "/auth/params/folderPath", "value": "../up"}], ("auth.params.folderPath",)),
        ([{"op": "remove", "path": "/auth/params/s3AccessKey"}], ("auth.params.s3AccessKey", "required")),
        ([{"op": "replace", "path": "/auth/params/serviceUrl", "value": "file:///etc"}], ("auth.params.serviceUrl",)),
        ([{"op": "replace", "path": "/name", "value": ""}], ("/name",)),
        ([{"op": "remove", "path": "/name"}], ("/name",)),
        ([{"op": "replace", "path": "/description", "value": 3}], ("/description",)),
        ([{"op": "replace", "path": "/auth/params", "value": "x"}], ("/auth/params",)),
        ([{"op": "remove", "path": "/auth/params"}], ("/auth/params",)),
        ([{"op": "move", "path": "/name", "value": "x"}], ("op", "move")),
        ([{"op": "replace", "path": "/connectionSpec/id", "value": GCS_ID}], ("/connectionSpec/id",)),
        ([{"op": "replace", "path": "/auth/specName", "value": "x"}], ("/auth/specName",)),
        ([{"op": "replace", "value": "x"}], ("path",)),
        (["replace"], ("[0]",)),
        ([], ("body",)),
        ({"op": "replace", "path": "/name", "value": "x"}, ("body",)),
    ],
    ids=[
        "port-not-s3",
        "bad-bucket-after-rename",
        "folder-dotdot",
        "remove-required-secret",
        "service-url-file",
        "blank-name",
        "remove-name",
        "description-number",
        "params-string",
        "remove-params",
        "unknown-op",
        "spec-id",
        "spec-name",
        "no-path",
        "op-not-object",
        "empty-array",
        "object-not-array",
    ],
)
def test_invalid_patch_is_400_and_changes_nothing(
    client: TestClient, headers: dict[str, str], creds: dict[str, str], ops: Any, needles: tuple[str, ...]
) -> None:
    connection_id, etag = create(client, headers, s3_body())
    before = get_item(client, headers, connection_id)
    before_stored = stored_params(client, creds, connection_id)
    assert_problem(patch(client, headers, connection_id, etag, ops), 400, "100910-400", *needles)
    assert get_item(client, headers, connection_id) == before
    assert stored_params(client, creds, connection_id) == before_stored


def test_patch_accepts_the_spec_upper_case_ops(client: TestClient, headers: dict[str, str]) -> None:
    connection_id, etag = create(client, headers, s3_body())
    resp = patch(client, headers, connection_id, etag, [{"op": "REPLACE", "path": "/name", "value": "upper"}])
    assert resp.status_code == 200, resp.text
    assert get_item(client, headers, connection_id)["name"] == "upper"


def test_patch_by_a_param_alias_replaces_the_param(client: TestClient, headers: dict[str, str]) -> None:
    connection_id, etag = create(client, headers, _sftp(sftp_password_params()))
    ops = [{"op": "replace", "path": "/auth/params/username", "value": "renamed-user"}]
    resp = patch(client, headers, connection_id, etag, ops)
    assert resp.status_code == 200, resp.text
    assert get_item(client, headers, connection_id)["auth"]["params"]["userName"] == "renamed-user"


def test_patch_of_an_unknown_connection_is_404(client: TestClient, headers: dict[str, str]) -> None:
    missing = str(uuid.uuid4())
    resp = patch(client, headers, missing, '"x"', [{"op": "replace", "path": "/name", "value": "x"}])
    assert_problem(resp, 404, "100940-404", missing)


# -- 7. DELETE and the audiences that use a connection -------------------------------------------


def _audience_on(connection_id: str, cloud_type: str | None, name: str = "From a connection") -> dict[str, Any]:
    params: dict[str, Any] = {
        "path": "x/y.csv",
        "type": "file",
        "sourceType": "Cloud Storage",
        "baseConnectionId": connection_id,
    }
    if cloud_type is not None:
        params["cloudType"] = cloud_type
    return seed_audience(name=name, sourceSpec={"params": params})


def test_delete_answers_204_then_404(client: TestClient, headers: dict[str, str]) -> None:
    connection_id, etag = create(client, headers, s3_body())
    other, _ = create(client, headers, s3_body("kept"))
    url = f"{C}/{connection_id}"
    resp = client.delete(url, headers=headers)
    assert resp.status_code == 204, resp.text
    assert resp.content == b""
    assert_problem(client.get(url, headers=headers), 404, "100940-404", connection_id)
    assert_problem(client.delete(url, headers=headers), 404, "100940-404", connection_id)
    assert_problem(client.get(url + "/test", headers=headers), 404, "100940-404")
    rename = [{"op": "replace", "path": "/name", "value": "x"}]
    assert_problem(patch(client, headers, connection_id, etag, rename), 404, "100940-404")
    assert listed_ids(client, headers) == [other]


def test_delete_of_a_connection_an_audience_uses_is_409(client: TestClient, headers: dict[str, str]) -> None:
    connection_id, _ = create(client, headers, s3_body())
    audience_id = create_audience(client, headers, _audience_on(connection_id, "S3"))
    resp = client.delete(f"{C}/{connection_id}", headers=headers)
    assert_problem(resp, 409, "100950-409", connection_id, audience_id)
    assert get_item(client, headers, connection_id)["id"] == connection_id
    # Once the audience is gone, so may the connection be.
    assert client.delete(f"{EA}/{audience_id}", headers=headers).status_code in (200, 202, 204)
    assert client.delete(f"{C}/{connection_id}", headers=headers).status_code == 204


def test_audience_without_cloud_type_uses_the_connections(client: TestClient, headers: dict[str, str]) -> None:
    connection_id, _ = create(client, headers, _sftp(sftp_password_params()))
    audience_id = create_audience(client, headers, _audience_on(connection_id, None))
    assert_problem(client.delete(f"{C}/{connection_id}/", headers=headers), 409, "100950-409", audience_id)


def test_audience_whose_cloud_type_differs_from_the_connection_is_422(
    client: TestClient, headers: dict[str, str]
) -> None:
    connection_id, _ = create(client, headers, s3_body())
    resp = client.post(EA + "/", json=_audience_on(connection_id, "GCS"), headers=headers)
    assert_problem(resp, 422, "100960-422", "cloudType", "GCS", connection_id)
    assert client.delete(f"{C}/{connection_id}", headers=headers).status_code == 204


def test_audience_on_an_unknown_connection_is_422(client: TestClient, headers: dict[str, str]) -> None:
    missing = str(uuid.uuid4())
    resp = client.post(EA + "/", json=_audience_on(missing, "S3"), headers=headers)
    assert_problem(resp, 422, "100960-422", "baseConnectionId", missing)


# -- 8. the test endpoint -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_s3_test_of_an_unreachable_endpoint_answers_false(
    client: TestClient, headers: dict[str, str], closed_port: int, method: str
) -> None:
    connection_id, _ = create(client, headers, s3_body("unreachable s3", serviceUrl=f"http://127.0.0.1:{closed_port}"))
    started = time.monotonic()
    resp = client.request(method, f"{C}/{connection_id}/test", headers=headers)
    waited_ms = (time.monotonic() - started) * 1000
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert set(answer) == {"result", "reason", "elapsedMs"}, answer
    assert answer["result"] is False
    assert "unreachable s3" in answer["reason"] and connection_id in answer["reason"]
    assert f"127.0.0.1:{closed_port}" in answer["reason"]
    assert isinstance(answer["elapsedMs"], int) and 0 <= answer["elapsedMs"] <= waited_ms + 1


def test_s3_test_of_an_unreachable_endpoint_says_the_connection_failed(
    client: TestClient, headers: dict[str, str], closed_port: int
) -> None:
    connection_id, _ = create(client, headers, s3_body(serviceUrl=f"http://127.0.0.1:{closed_port}"))
    answer = client.get(f"{C}/{connection_id}/test", headers=headers).json()
    assert answer["result"] is False
    assert "the connection failed" in answer["reason"], answer


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_sftp_test_of_a_closed_port_answers_cannot_reach(
    client: TestClient, headers: dict[str, str], closed_port: int, method: str
) -> None:
    data = _sftp(sftp_password_params(port=closed_port))
    data["name"] = "unreachable sftp"
    connection_id, _ = create(client, headers, data)
    resp = client.request(method, f"{C}/{connection_id}/test/", headers=headers)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["result"] is False
    assert "unreachable sftp" in answer["reason"] and connection_id in answer["reason"]
    assert "cannot reach" in answer["reason"] and f"127.0.0.1:{closed_port}" in answer["reason"]
    assert isinstance(answer["elapsedMs"], int) and answer["elapsedMs"] >= 0


@pytest.mark.parametrize("kind", [k for k in KINDS if k.id.startswith("gcs")], ids=lambda k: k.id)
def test_gcs_test_of_an_unreachable_endpoint_answers_false(
    client: TestClient, headers: dict[str, str], closed_port: int, kind: Kind
) -> None:
    connection_id, _ = create(client, headers, kind.body("unreachable gcs", **kind.aimed_at(closed_port)))
    answer = client.post(f"{C}/{connection_id}/test", headers=headers).json()
    assert answer["result"] is False, answer
    assert "unreachable gcs" in answer["reason"] and connection_id in answer["reason"]


def test_the_test_endpoint_does_not_retry(tmp_path: Path, closed_port: int) -> None:
    """With a long retry delay configured for runs, a test still answers at once (one attempt)."""
    slow = test_settings(tmp_path / "slow", source_retry_attempts=5, source_retry_delay_seconds=5.0)
    with TestClient(create_app(slow)) as client:
        headers = headers_for(client, slow.home)
        connection_id, _ = create(client, headers, _sftp(sftp_password_params(port=closed_port)))
        started = time.monotonic()
        answer = client.get(f"{C}/{connection_id}/test", headers=headers).json()
        assert time.monotonic() - started < 4.0
    assert answer["result"] is False


# -- 9. with and without a trailing slash ----------------------------------------------------------


def test_every_route_answers_with_a_trailing_slash(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.post(C + "/", json=s3_body("slashed"), headers=headers)
    assert resp.status_code == 201, resp.text
    connection_id, etag = resp.json()["id"], resp.json()["etag"]
    url = f"{C}/{connection_id}/"
    listed = client.get(C + "/", headers=headers)
    assert listed.status_code == 200 and [i["id"] for i in listed.json()["items"]] == [connection_id]
    assert client.get(url, headers=headers).json()["items"][0]["name"] == "slashed"
    patched = client.patch(
        url, json=[{"op": "replace", "path": "/name", "value": "s"}], headers={**headers, "if-match": etag}
    )
    assert patched.status_code == 200, patched.text
    for method in ("GET", "POST"):
        tested = client.request(method, url + "test/", headers=headers)
        assert tested.status_code == 200 and "result" in tested.json(), tested.text
    assert client.delete(url, headers=headers).status_code == 204
    assert_problem(client.get(url, headers=headers), 404, "100940-404")


def test_unsupported_methods_are_405(vclient: TestClient, shared_headers: dict[str, str]) -> None:
    missing = str(uuid.uuid4())
    assert vclient.put(f"{C}/{missing}", json={}, headers=shared_headers).status_code == 405
    assert vclient.delete(C, headers=shared_headers).status_code == 405


def test_requests_without_credentials_are_refused(vclient: TestClient) -> None:
    resp = vclient.post(C, json=s3_body())
    assert resp.status_code in (401, 403), resp.text
    assert S3_SECRET not in resp.text
