"""Helpers shared by the HTTP-level tests: problem+json checks, audiences, members, the lake on disk."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.conftest import EA, token_for

PROBLEM_KEYS = {"type", "title", "status", "errorCode", "detail"}


class ResponseLike(Protocol):
    status_code: int

    @property
    def headers(self) -> Any: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def assert_problem(resp: ResponseLike, status: int, code: str, *needles: str) -> dict[str, Any]:
    """The response is problem+json with ``status`` and ``code``, and its detail names every needle."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].split(";")[0].strip() == "application/problem+json", resp.headers
    body: dict[str, Any] = resp.json()
    assert set(body) == PROBLEM_KEYS, body
    assert body["status"] == status, body
    assert body["errorCode"] == code, body
    assert body["type"].endswith(code), body
    for needle in needles:
        assert needle in body["detail"], f"{needle!r} not in detail {body['detail']!r}"
    return body


def headers_for(client: TestClient, home: Path, sandbox: str = "prod") -> dict[str, str]:
    """Authenticated AEP headers for the dev credentials of the app whose home is ``home``."""
    creds = json.loads((home / "credentials.json").read_text())
    return {
        "Authorization": f"Bearer {token_for(client, creds['client_id'], creds['client_secret'])}",
        "x-api-key": creds["client_id"],
        "x-gw-ims-org-id": creds["org_id"],
        "x-sandbox-name": sandbox,
    }


def csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


SEED_HEADER = ["ppid", "list_id", "delete", "process_consent"]


def seed_csv(*rows: list[Any]) -> bytes:
    """A CSV in the seed audience's shape (ppid, list_id, delete, process_consent)."""
    return csv_bytes(SEED_HEADER, [list(r) for r in rows])


def members(client: TestClient, headers: dict[str, str], audience_id: str) -> dict[str, dict[str, Any]]:
    """The audience's members by their first identity value."""
    resp = client.get(f"{EA}/{audience_id}/members", params={"limit": 100}, headers=headers)
    assert resp.status_code == 200, resp.text
    return {m["identities"][0]["id"]: m for m in resp.json()["members"]}


def member_counts(client: TestClient, headers: dict[str, str], audience_id: str) -> dict[str, int]:
    resp = client.get(f"{EA}/{audience_id}/members", headers=headers)
    assert resp.status_code == 200, resp.text
    counts: dict[str, int] = resp.json()["counts"]
    return counts


def dataset_dir(settings: Settings, creds: dict[str, str], dataset_id: str, sandbox: str = "prod") -> Path:
    return settings.home / "lake" / creds["org_id"] / sandbox / dataset_id


def dataset_rows(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str], audience_id: str
) -> list[dict[str, Any]]:
    """Every row of every committed batch of the audience's dataset, read back from Parquet."""
    dataset_id = client.get(f"{EA}/{audience_id}", headers=headers).json()["datasetId"]
    folder = dataset_dir(settings, creds, dataset_id)
    rows: list[dict[str, Any]] = []
    for part in sorted(folder.glob("*/part-*.parquet")):
        rows.extend(pq.read_table(part).to_pylist())
    return rows


def run_errors(client: TestClient, headers: dict[str, str], audience_id: str, run_id: str) -> list[dict[str, str]]:
    resp = client.get(f"{EA}/{audience_id}/runs/{run_id}/errors", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(resp.text))
    assert reader.fieldnames == ["file", "record", "line", "column", "value", "reason"]
    return list(reader)


def landing_root(settings: Settings, creds: dict[str, str], sandbox: str = "prod") -> Path:
    return settings.home / "landing" / creds["org_id"] / sandbox


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def get_audience(client: TestClient, headers: dict[str, str], audience_id: str) -> dict[str, Any]:
    resp = client.get(f"{EA}/{audience_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def patch_audience(client: TestClient, headers: dict[str, str], audience_id: str, body: Any) -> Any:
    return client.patch(f"{EA}/{audience_id}", json=body, headers=headers)
