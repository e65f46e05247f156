"""Refused POST/GET /external-audience/{id}/runs: the status, the code, the field and the value.

Every request here is refused, so the module shares one app and one audience (see
tests/api/conftest.py); no run may have been created after each test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.support import assert_problem
from tests.conftest import EA


@pytest.fixture
def client(shared_client: TestClient) -> TestClient:
    return shared_client


@pytest.fixture
def headers(shared_headers: dict[str, str]) -> dict[str, str]:
    return shared_headers


@pytest.fixture
def audience_id(shared_client: TestClient, shared_headers: dict[str, str], shared_audience: str) -> Iterator[str]:
    yield shared_audience
    runs = shared_client.get(f"{EA}/{shared_audience}/runs", headers=shared_headers).json()
    assert runs["_page"]["totalCount"] == 0, "a refused request started a run"


def _start(client: TestClient, headers: dict[str, str], audience_id: str, body: Any) -> Any:
    return client.post(f"{EA}/{audience_id}/runs", json=body, headers=headers)


def test_start_without_start_time_is_400(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    resp = _start(client, headers, audience_id, {"dataFilterEndTime": 5})
    assert_problem(resp, 400, "100910-400", "dataFilterStartTime", "required")


def test_start_with_end_before_start_is_400(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    resp = _start(client, headers, audience_id, {"dataFilterStartTime": 2000, "dataFilterEndTime": 1000})
    assert_problem(resp, 400, "100910-400", "dataFilterEndTime", "1000", "2000")


def test_start_after_now_without_end_is_400(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    future = int(time.time()) + 86400
    resp = _start(client, headers, audience_id, {"dataFilterStartTime": future})
    assert_problem(resp, 400, "100910-400", "dataFilterStartTime", str(future))


@pytest.mark.parametrize("value", ["yesterday", -1, 1.5])
def test_start_with_bad_start_time_is_400(
    client: TestClient, headers: dict[str, str], audience_id: str, value: Any
) -> None:
    resp = _start(client, headers, audience_id, {"dataFilterStartTime": value})
    assert_problem(resp, 400, "100910-400", "dataFilterStartTime", str(value))


def test_start_with_unknown_key_is_400(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    resp = _start(client, headers, audience_id, {"dataFilterStartTime": 0, "priority": "high"})
    assert_problem(resp, 400, "100910-400", "priority")


def test_start_without_body_is_400(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    resp = client.post(f"{EA}/{audience_id}/runs", headers=headers)
    assert_problem(resp, 400, "100910-400", "body")


@pytest.mark.parametrize("percent", [-1, 101])
def test_error_threshold_out_of_range_is_400(
    client: TestClient, headers: dict[str, str], audience_id: str, percent: int
) -> None:
    resp = _start(client, headers, audience_id, {"dataFilterStartTime": 0, "errorThresholdPercent": percent})
    assert_problem(resp, 400, "100910-400", "errorThresholdPercent", str(percent))


def test_run_of_unknown_audience_is_404(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(_start(client, headers, "nope", {"dataFilterStartTime": 0}), 404, "100940-404", "nope")


def test_unknown_run_is_404(client: TestClient, headers: dict[str, str], audience_id: str) -> None:
    resp = client.get(f"{EA}/{audience_id}/runs/no-such-run", headers=headers)
    assert_problem(resp, 404, "100940-404", "no-such-run")


@pytest.mark.parametrize("limit", [0, 101])
def test_runs_list_limit_out_of_range_is_400(
    client: TestClient, headers: dict[str, str], audience_id: str, limit: int
) -> None:
    resp = client.get(f"{EA}/{audience_id}/runs", params={"limit": limit}, headers=headers)
    assert_problem(resp, 400, "100910-400", "limit", str(limit))
