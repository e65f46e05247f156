"""Authentication of /data/** (the four AEP headers) and the IMS token endpoint."""

from __future__ import annotations

import time

import jwt
import pytest
from fastapi.testclient import TestClient

from audiencehub.metadata import tables as t
from tests.api.support import assert_problem
from tests.conftest import EA, LZ, token_for

HEADER_NAMES = ["Authorization", "x-api-key", "x-gw-ims-org-id", "x-sandbox-name"]
TOKEN_URL = "/ims/token/v3"


@pytest.fixture
def client(shared_client: TestClient) -> TestClient:
    """Every test here only reads or is refused: the module shares one app."""
    return shared_client


@pytest.fixture
def headers(shared_headers: dict[str, str]) -> dict[str, str]:
    return shared_headers


@pytest.fixture
def creds(shared_creds: dict[str, str]) -> dict[str, str]:
    return shared_creds


def _claims(creds: dict[str, str], **overrides: object) -> dict[str, object]:
    issued = int(time.time())
    claims: dict[str, object] = {
        "sub": creds["client_id"],
        "client_id": creds["client_id"],
        "org": creds["org_id"],
        "iat": issued,
        "exp": issued + 3600,
    }
    claims.update(overrides)
    return claims


def _signing_key(client: TestClient) -> bytes:
    key: bytes = client.app.state.container.keyring.derive("access-token")
    return key


# -- missing headers ---------------------------------------------------------------------------


@pytest.mark.parametrize("missing", HEADER_NAMES)
def test_each_missing_header_is_401_100920_naming_it(client: TestClient, headers: dict[str, str], missing: str) -> None:
    sent = {k: v for k, v in headers.items() if k != missing}
    resp = client.get(EA + "/", headers=sent)
    assert_problem(resp, 401, "100920-401", missing.lower())


@pytest.mark.parametrize("missing", HEADER_NAMES)
def test_missing_header_on_landing_zone_is_401(client: TestClient, headers: dict[str, str], missing: str) -> None:
    sent = {k: v for k, v in headers.items() if k != missing}
    assert_problem(client.get(LZ, headers=sent), 401, "100920-401", missing.lower())


def test_blank_header_counts_as_missing(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.get(EA + "/", headers=dict(headers, **{"x-api-key": "   "}))
    assert_problem(resp, 401, "100920-401", "x-api-key")


def test_authorization_without_bearer_scheme_is_401(client: TestClient, headers: dict[str, str]) -> None:
    token = headers["Authorization"].removeprefix("Bearer ")
    resp = client.get(EA + "/", headers=dict(headers, Authorization=f"Basic {token}"))
    assert_problem(resp, 401, "100920-401", "Bearer")


def test_no_headers_at_all_lists_every_missing_one(client: TestClient) -> None:
    body = assert_problem(client.get(EA + "/"), 401, "100920-401")
    for name in HEADER_NAMES:
        assert name.lower() in body["detail"]


# -- bad tokens --------------------------------------------------------------------------------


def test_garbage_token_is_400_100911(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.get(EA + "/", headers=dict(headers, Authorization="Bearer not.a.jwt"))
    assert_problem(resp, 400, "100911-400", "not valid")


def test_token_signed_by_another_key_is_400_100911(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    forged = jwt.encode(_claims(creds), b"k" * 32, algorithm="HS256")
    resp = client.get(EA + "/", headers=dict(headers, Authorization=f"Bearer {forged}"))
    assert_problem(resp, 400, "100911-400", "not valid")


def test_expired_token_signed_by_the_right_key_is_400_100911(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    past = int(time.time()) - 7200
    expired = jwt.encode(_claims(creds, iat=past, exp=past + 60), _signing_key(client), algorithm="HS256")
    resp = client.get(EA + "/", headers=dict(headers, Authorization=f"Bearer {expired}"))
    assert_problem(resp, 400, "100911-400", "expired")


def test_token_with_alg_none_is_refused(client: TestClient, headers: dict[str, str], creds: dict[str, str]) -> None:
    unsigned = jwt.encode(_claims(creds), None, algorithm="none")
    resp = client.get(EA + "/", headers=dict(headers, Authorization=f"Bearer {unsigned}"))
    assert_problem(resp, 400, "100911-400")


def test_right_key_forged_token_is_accepted(client: TestClient, headers: dict[str, str], creds: dict[str, str]) -> None:
    """The control for the two tests above: the claims they forge are the ones the server checks."""
    good = jwt.encode(_claims(creds), _signing_key(client), algorithm="HS256")
    resp = client.get(EA + "/", headers=dict(headers, Authorization=f"Bearer {good}"))
    assert resp.status_code == 200, resp.text


def test_token_without_exp_is_refused(client: TestClient, headers: dict[str, str], creds: dict[str, str]) -> None:
    claims = _claims(creds)
    del claims["exp"]
    token = jwt.encode(claims, _signing_key(client), algorithm="HS256")
    resp = client.get(EA + "/", headers=dict(headers, Authorization=f"Bearer {token}"))
    assert_problem(resp, 400, "100911-400")


# -- org, client, sandbox ----------------------------------------------------------------------


def test_org_header_not_the_tokens_org_is_401_100921(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.get(EA + "/", headers=dict(headers, **{"x-gw-ims-org-id": "SOMEONEELSE@AdobeOrg"}))
    assert_problem(resp, 401, "100921-401", "SOMEONEELSE@AdobeOrg")


def test_api_key_not_the_tokens_client_is_401_100922(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.get(EA + "/", headers=dict(headers, **{"x-api-key": "another-client"}))
    assert_problem(resp, 401, "100922-401", "another-client")


def test_unknown_sandbox_is_404_naming_it(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.get(EA + "/", headers=dict(headers, **{"x-sandbox-name": "nosuchbox"}))
    body = assert_problem(resp, 404, "100910-404", "nosuchbox")
    assert 400 <= body["status"] < 500


def test_token_of_a_disabled_client_is_refused(client: TestClient, creds: dict[str, str]) -> None:
    other = client.app.state.container.tenancy.create_client(creds["org_id"], name="soon disabled")
    headers = {
        "Authorization": f"Bearer {token_for(client, other.client_id, other.client_secret)}",
        "x-api-key": other.client_id,
        "x-gw-ims-org-id": creds["org_id"],
        "x-sandbox-name": "prod",
    }
    assert client.get(EA + "/", headers=headers).status_code == 200
    with client.app.state.container.store.tx() as conn:
        conn.execute(t.clients.update().where(t.clients.c.client_id == other.client_id).values(enabled=False))
    assert_problem(client.get(EA + "/", headers=headers), 401, "100922-401", other.client_id)


# -- the token endpoint ------------------------------------------------------------------------


def test_token_endpoint_issues_a_bearer_token(client: TestClient, creds: dict[str, str]) -> None:
    resp = client.post(
        TOKEN_URL,
        data={
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86400
    claims = jwt.decode(body["access_token"], _signing_key(client), algorithms=["HS256"])
    assert claims["org"] == creds["org_id"]
    assert claims["client_id"] == creds["client_id"]
    assert claims["exp"] - claims["iat"] == 86400
    assert resp.headers["cache-control"] == "no-store"


def test_issued_token_authenticates_data_calls(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.get(EA + "/", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["audiences"] == []


def test_token_endpoint_wrong_secret_is_401_invalid_client(client: TestClient, creds: dict[str, str]) -> None:
    resp = client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "client_id": creds["client_id"], "client_secret": "wrong"},
    )
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"] == "invalid_client"


def test_token_endpoint_unknown_client_is_401_invalid_client(client: TestClient, creds: dict[str, str]) -> None:
    resp = client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": creds["client_secret"]},
    )
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"] == "invalid_client"


def test_token_endpoint_wrong_grant_type_is_400(client: TestClient, creds: dict[str, str]) -> None:
    resp = client.post(
        TOKEN_URL,
        data={"grant_type": "password", "client_id": creds["client_id"], "client_secret": creds["client_secret"]},
    )
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["error"] == "unsupported_grant_type"
    assert "password" in body["error_description"]


def test_token_endpoint_without_grant_type_is_400(client: TestClient, creds: dict[str, str]) -> None:
    resp = client.post(TOKEN_URL, data={"client_id": creds["client_id"], "client_secret": creds["client_secret"]})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "invalid_request"


def test_token_endpoint_without_secret_is_400(client: TestClient, creds: dict[str, str]) -> None:
    resp = client.post(TOKEN_URL, data={"grant_type": "client_credentials", "client_id": creds["client_id"]})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "invalid_request"
