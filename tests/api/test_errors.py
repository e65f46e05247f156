"""One error shape everywhere: problem+json with exactly type, title, status, errorCode and detail."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from audiencehub.api.errors import error_response
from audiencehub.app import create_app
from audiencehub.config import Settings
from audiencehub.errors import ALL_ERRORS, AudiencehubError
from tests.api.support import all_files, assert_problem, headers_for, landing_root
from tests.conftest import EA, LZ, create_audience, seed_audience, upload

SEED_CODES = {
    "100910-400",
    "100911-400",
    "100920-401",
    "100921-401",
    "100922-401",
    "100940-404",
    "100950-409",
    "100960-422",
    "100970-500",
    "100970-502",
}


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda e: e.__name__)
def test_every_error_code_ends_with_its_status(error: type[AudiencehubError]) -> None:
    prefix, _, status = error.code.partition("-")
    assert status == str(error.status)
    assert prefix.isdigit() and len(prefix) == 6
    assert error.title and error.title == error.title.upper()


def test_every_seed_error_code_has_a_class() -> None:
    assert {e.code for e in ALL_ERRORS} >= SEED_CODES


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda e: e.__name__)
def test_every_error_renders_as_problem_json(error: type[AudiencehubError]) -> None:
    resp = error_response(error("what went wrong: 'x'"))
    assert resp.status_code == error.status
    assert resp.media_type == "application/problem+json"
    body = json.loads(bytes(resp.body))
    assert body == {
        "type": f"https://ns.adobe.com/aep/errors/{error.code}",
        "title": error.title,
        "status": error.status,
        "errorCode": error.code,
        "detail": "what went wrong: 'x'",
    }


def test_unknown_endpoint_is_problem_json_404(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    resp = shared_client.get("/data/core/ais/nothing-here", headers=shared_headers)
    assert_problem(resp, 404, "100940-404", "/data/core/ais/nothing-here")


def test_wrong_method_is_problem_json_405(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    resp = shared_client.put(EA + "/operations/abc", headers=shared_headers, json={})
    assert_problem(resp, 405, "100910-405", "PUT")


def test_query_validation_error_is_problem_json_400(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    resp = shared_client.get(EA + "/", params={"limit": "many"}, headers=shared_headers)
    assert_problem(resp, 400, "100910-400", "limit", "many")


def test_unknown_audience_is_problem_json_404(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    assert_problem(shared_client.get(f"{EA}/nope", headers=shared_headers), 404, "100940-404", "nope")


def test_duplicate_is_problem_json_409(client: TestClient, headers: dict[str, str]) -> None:
    create_audience(client, headers, seed_audience())
    resp = client.post(EA + "/", json=seed_audience(), headers=headers)
    assert_problem(resp, 409, "100950-409", "Sample external audience")


def test_unprocessable_is_problem_json_422(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    body = seed_audience()
    body["sourceSpec"]["params"].update(cloudType="S3", baseConnectionId="1d1d4bc5-b527-46a3-9863-530246a61b2b")
    assert_problem(
        shared_client.post(EA + "/", json=body, headers=shared_headers), 422, "100960-422", "baseConnectionId"
    )


def test_payload_too_large_is_problem_json_413(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = Settings(home=tmp_path_factory.mktemp("small") / "home", workers=1, max_upload_bytes=10)
    with TestClient(create_app(settings)) as client:
        headers = headers_for(client, settings.home)
        resp = client.put(f"{LZ}/big.csv", content=b"x" * 11, headers=headers)
        assert_problem(resp, 413, "100910-413", "10 bytes")
        creds = {"org_id": headers["x-gw-ims-org-id"]}
        assert all_files(landing_root(settings, creds)) == set(), "a refused upload must leave no file"
        upload(client, headers, "small.csv", b"x" * 10)
