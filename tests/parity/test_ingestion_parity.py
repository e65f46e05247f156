"""External-audience ingestion runs on DuckDB and on Spark over the same files give the same results.

Each scenario uploads the same CSV to both apps, runs the same audience, and compares what the run
says (status, counts, failure message), its errors file (rows and reasons), the dataset batch (rows and
Arrow types, read from Parquet) and the members the profile store ends up with.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.support import csv_bytes, members
from tests.conftest import EA, create_audience, seed_audience, upload, wait_for
from tests.parity.conftest import App
from tests.parity.support import table, written_by

FIELDS: list[dict[str, Any]] = [
    {"name": "email", "type": "string", "identityNs": "email"},
    {"name": "phone", "type": "string", "identityNs": "phone"},
    {"name": "score", "type": "number"},
    {"name": "visits", "type": "integer"},
    {"name": "lifetime", "type": "long"},
    {"name": "born", "type": "date"},
    {"name": "seen", "type": "datetime"},
    {"name": "vip", "type": "boolean"},
    {"name": "note", "type": "string"},
    {"name": "delete", "type": "number"},
]
HEADER = b"email,phone,score,visits,lifetime,born,seen,vip,note,delete\n"
TYPED = HEADER + (
    b"a@example.com,+1 (555) 010-0001,1.5,3,9000000000,1990-01-31,2025-05-23T20:19:00+02:00,yes,plain,0\n"
    b'  B@Example.COM ,,2e3,+7,-5,2000-02-29,2025-05-23 10:00:00,N,"quoted, with comma",0\n'
    b"not-an-email,,1,1,1,2001-01-01,2025-01-01T00:00:00Z,true,bad email,0\n"
    b",,1,1,1,2001-01-01,2025-01-01,true,no identity,0\n"
    b"c@example.com,,1d,1,1,2001-01-01,2025-01-01,true,java double,0\n"
    b"d@example.com,,NaN,1,1,2001-01-01,2025-01-01,true,nan,0\n"
    b"e@example.com,,1,1.5,1,2001-01-01,2025-01-01,true,fraction,0\n"
    b"f@example.com,,1,3000000000,1,2001-01-01,2025-01-01,true,int overflow,0\n"
    b"g@example.com,,1,1,0x10,2001-01-01,2025-01-01,true,hex long,0\n"
    b"h@example.com,,1,1,1,2001-02-30,2025-01-01,true,no such day,0\n"
    b"i@example.com,,1,1,1,2001,2025-01-01,true,year only,0\n"
    b"j@example.com,,1,1,1,2001-01-01,2025-13-01T00:00:00Z,true,bad month,0\n"
    b"k@example.com,,1,1,1,2001-01-01,2025,true,year only,0\n"
    b"l@example.com,,1,1,1,2001-01-01,2025-01-01,maybe,bad boolean,0\n"
    b"m@example.com,not a phone,1,1,1,2001-01-01,2025-01-01,1,bad phone,0\n"
    b"n@example.com,,1,1,1,2001-01-01,2025-01-01,0,too many,0,surplus\n"
    b"o@example.com,,1,1\n"
    b'"p@example.com",,1,1,1,2001-01-01,2025-01-01,t,"two\nlines",0\n'
    b"q@example.com,,1,1,1,2001-01-01,2025-01-01,t,bad utf-8 \xff,0\n"
    b'"r@example.com"x,,1,1,1,2001-01-01,2025-01-01,t,quote then text,0\n'
    b"s@example.com,,,,,,,,,1\n"
    b"t@example.com,,-0.0,-2147483648,9223372036854775807,0001-01-01,2025-01-01T23:59:59.123456Z,F,edges,0\n"
)


def run_and_wait(client: TestClient, headers: dict[str, str], audience_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Starts a run and waits for its end (Spark's jobs on a busy 2-core machine take some seconds)."""
    resp = client.post(f"{EA}/{audience_id}/runs", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["runId"]

    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = client.get(f"{EA}/{audience_id}/runs/{run_id}", headers=headers).json()
        return run if run["status"] != "PROCESSING" else None

    return wait_for(done, timeout=180, interval=0.2, what="ingestion run")


def _outcome(app: App, path: str, content: bytes, fields: list[dict[str, Any]], **run: Any) -> dict[str, Any]:
    """Uploads, creates an audience over ``path``, runs it once; what the run left behind."""
    upload(app.client, app.headers, path, content)
    audience_id = create_audience(
        app.client, app.headers, seed_audience(path=path, name=f"parity {path}", fields=fields)
    )
    result = run_and_wait(app.client, app.headers, audience_id, {"dataFilterStartTime": 0, **run})
    return {"audience": audience_id, **_describe(app, audience_id, result)}


def _describe(app: App, audience_id: str, run: dict[str, Any]) -> dict[str, Any]:
    metrics = {k: v for k, v in run.get("metrics", {}).items() if "time" not in k.lower() and "duration" not in k}
    error = (run.get("error") or {}).get("message")
    out: dict[str, Any] = {"status": run["status"], "metrics": metrics, "error": error}
    resp = app.client.get(f"{EA}/{audience_id}/runs/{run['runId']}/errors", headers=app.headers)
    out["errors"] = _errors(resp.text) if resp.status_code == 200 else resp.status_code
    dataset_id = app.client.get(f"{EA}/{audience_id}", headers=app.headers).json()["datasetId"]
    parts = sorted((app.settings.home / "lake" / app.org / "prod" / dataset_id).glob("*/part-*.parquet"))
    out["writers"] = sorted({written_by(p) for p in parts})
    out["batch"] = table(parts)
    found = members(app.client, app.headers, audience_id)
    out["members"] = {k: (m["status"], m.get("payload")) for k, m in found.items()}
    return out


def _errors(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        # DuckDB lists the columns a short record lacks in hash order (string_agg DISTINCT): compare them as a set.
        if row["reason"].startswith("MISSING COLUMNS"):
            row["column"] = ",".join(sorted(row["column"].split(",")))
    return rows


def _both(apps: tuple[App, App], path: str, content: bytes, fields: list[dict[str, Any]], **run: Any) -> dict[str, Any]:
    duck, spark = (_outcome(app, path, content, fields, **run) for app in apps)
    # Each engine wrote its own app's batch: the comparison is between two engines, not one engine twice.
    assert duck["writers"] == (["duckdb"] if duck["batch"][1] else [])
    assert spark["writers"] == (["spark"] if spark["batch"][1] else [])
    for key in ("status", "error", "metrics", "errors", "batch", "members"):
        assert spark[key] == duck[key], f"{key} differs:\nduckdb: {duck[key]}\nspark:  {spark[key]}"
    return duck


def test_typed_values_rejected_rows_and_their_reasons(apps: tuple[App, App]) -> None:
    got = _both(apps, "parity/typed.csv", TYPED, FIELDS, errorThresholdPercent=100)
    assert got["status"] == "SUCCESS"
    assert got["metrics"]["recordsRead"] == 22
    reasons = {e["reason"].split(":")[0] for e in got["errors"]}
    # Every kind of rejection is in the comparison, so none can go unnoticed on one engine.
    assert {"TOO MANY COLUMNS", "MISSING COLUMNS", "INVALID ENCODING", "UNQUOTED VALUE"} <= reasons, reasons
    assert {"is not a number", "is not an integer (32-bit)", "is not a valid email address"} <= reasons, reasons
    assert len(got["batch"][1]) == got["metrics"]["recordsIngested"] > 3


def test_seed_audience_runs_with_delete_rows_and_a_differential_rerun(apps: tuple[App, App]) -> None:
    seed = seed_audience()["fields"]
    first = csv_bytes(
        ["ppid", "list_id", "delete", "process_consent"],
        [["a@example.com", "L1", 0, "y"], ["b@example.com", "L2", 0, "n"], ["c@example.com", "L3", 0, "y"]],
    )
    outcomes = []
    for app in apps:
        got = _outcome(app, "parity/seed.csv", first, seed)
        upload(
            app.client,
            app.headers,
            "parity/seed.csv",
            csv_bytes(
                ["ppid", "list_id", "delete", "process_consent"],
                [["a@example.com", "L1", 1, "y"], ["z@example.com", "L9", 1, "y"], ["d@example.com", "L4", 0, "y"]],
            ),
        )
        rerun = run_and_wait(app.client, app.headers, got["audience"], {"dataFilterStartTime": 0})
        outcomes.append((got, _describe(app, got["audience"], rerun)))
    (duck_first, duck_rerun), (spark_first, spark_rerun) = outcomes
    for key in ("status", "metrics", "errors", "batch", "members"):
        assert spark_first[key] == duck_first[key], key
        assert spark_rerun[key] == duck_rerun[key], key
    assert duck_rerun["members"]["a@example.com"][0] == "exited"
    assert duck_rerun["members"]["b@example.com"][0] == "realized"  # differential: absent rows stay


@pytest.mark.parametrize(
    "content",
    [
        HEADER + b"a@example.com,,1,1,1,2001-01-01,2025-01-01,t,x,0\n"
        b'"eve@example.com,,1,1,1,2001-01-01,2025-01-01,t,x,0\nb@example.com,,1,1,1,2001-01-01,2025-01-01,t,x,0\n',
        HEADER + b"a@example.com,,1,1,1,2001-01-01,2025-01-01,t,x,0\n"
        b'"eve@example.com,,1,1,1,2001-01-01,2025-01-01,t,x,0\nb@example.com,,1,1,1,2001-01-01,2025-01-01,t,x,0\n'
        b'"c@example.com",,1,1,1,2001-01-01,2025-01-01,t,x,0\n',
    ],
    ids=["never-closed", "closed-lines-later"],
)
def test_a_quote_left_open_fails_the_run_on_the_same_line(apps: tuple[App, App], content: bytes) -> None:
    got = _both(apps, f"parity/unclosed-{len(content)}.csv", content, FIELDS, errorThresholdPercent=100)
    assert got["status"] == "FAILED"
    assert "line 3 opens a quoted value that is never closed" in got["error"]


def test_a_folder_of_files_one_gzipped(apps: tuple[App, App], tmp_path: Path) -> None:
    one = HEADER + b"a@example.com,,1,1,1,2001-01-01,2025-01-01,t,first,0\nbad,,1,1,1,2001-01-01,2025-01-01,t,x,0\n"
    two = gzip.compress(HEADER + b"b@example.com,,2,2,2,2002-02-02,2025-02-02,f,second,0\n,,,,,,,,,0\n")
    for app in apps:
        upload(app.client, app.headers, "parity/folder/one.csv", one)
        upload(app.client, app.headers, "parity/folder/two.csv.gz", two)
    spec = seed_audience(name="parity folder", fields=FIELDS)
    spec["sourceSpec"]["params"].update({"path": "parity/folder", "type": "folder"})
    described = []
    for app in apps:
        audience_id = create_audience(app.client, app.headers, spec)
        run = run_and_wait(
            app.client, app.headers, audience_id, {"dataFilterStartTime": 0, "errorThresholdPercent": 60}
        )
        described.append(_describe(app, audience_id, run))
    duck, spark = described
    for key in ("status", "error", "metrics", "errors", "batch", "members"):
        assert spark[key] == duck[key], f"{key} differs:\nduckdb: {duck[key]}\nspark:  {spark[key]}"
    assert duck["metrics"]["recordsRead"] == 4 and duck["status"] == "SUCCESS", duck
