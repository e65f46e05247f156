"""Ingestion runs end to end through the API: files in the landing zone → dataset batch and members."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import audiencehub.services.ingestion as ingestion_module
from audiencehub.config import Settings
from tests.api.support import (
    csv_bytes,
    dataset_dir,
    dataset_rows,
    landing_root,
    member_counts,
    members,
    run_errors,
    seed_csv,
)
from tests.conftest import EA, create_audience, run_and_wait, seed_audience, upload

FILE = "activation/sample-source/example.csv"
DAY = 86400


def _seed_run(
    client: TestClient, headers: dict[str, str], content: bytes, path: str = FILE, **run: Any
) -> tuple[str, dict[str, Any]]:
    upload(client, headers, path, content)
    audience_id = create_audience(client, headers, seed_audience(path=path))
    return audience_id, run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, **run})


def _typed_run(
    client: TestClient, headers: dict[str, str], fields: list[dict[str, Any]], content: bytes, **run: Any
) -> tuple[str, dict[str, Any]]:
    path = "typed/list.csv"
    upload(client, headers, path, content)
    audience_id = create_audience(client, headers, seed_audience(path=path, name="typed", fields=fields))
    return audience_id, run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, **run})


def _rerun(client: TestClient, headers: dict[str, str], audience_id: str, content: bytes, **run: Any) -> dict[str, Any]:
    upload(client, headers, FILE, content)
    return run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, **run})


def _batches(client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str], aid: str) -> list:
    dataset_id = client.get(f"{EA}/{aid}", headers=headers).json()["datasetId"]
    return list(dataset_dir(settings, creds, dataset_id).glob("*/part-*.parquet"))


# -- file formats ------------------------------------------------------------------------------


def test_utf8_bom_is_not_part_of_the_first_column(client: TestClient, headers: dict[str, str]) -> None:
    content = b"\xef\xbb\xbf" + seed_csv(["a@example.com", "L1", 0, "y"], ["b@example.com", "L2", 0, "n"])
    audience_id, run = _seed_run(client, headers, content)
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["recordsIngested"] == 2
    assert set(members(client, headers, audience_id)) == {"a@example.com", "b@example.com"}


def test_gzip_file_is_read(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    content = gzip.compress(seed_csv(["a@example.com", "L1", 0, "y"], ["b@example.com", "L2", 0, "n"]))
    audience_id, run = _seed_run(client, headers, content, path="activation/list.csv.gz")
    assert run["status"] == "SUCCESS", run
    assert set(members(client, headers, audience_id)) == {"a@example.com", "b@example.com"}
    rows = dataset_rows(client, headers, settings, creds, audience_id)
    assert sorted(r["list_id"] for r in rows) == ["L1", "L2"]


def test_quoted_fields_keep_their_commas_and_quotes(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    content = b'ppid,list_id,delete,process_consent\n"a@example.com","L1, L2",0,"say ""yes"""\n'
    audience_id, run = _seed_run(client, headers, content)
    assert run["status"] == "SUCCESS", run
    assert members(client, headers, audience_id)["a@example.com"]["payload"] == {
        "list_id": "L1, L2",
        "process_consent": 'say "yes"',
    }
    (row,) = dataset_rows(client, headers, settings, creds, audience_id)
    assert row["list_id"] == "L1, L2"


def test_header_columns_in_another_order_and_case(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    content = csv_bytes(["PROCESS_CONSENT", "Delete", "List_Id", " PPID "], [["yes", 0, "L9", "a@example.com"]])
    audience_id, run = _seed_run(client, headers, content)
    assert run["status"] == "SUCCESS", run
    assert members(client, headers, audience_id)["a@example.com"]["payload"] == {
        "list_id": "L9",
        "process_consent": "yes",
    }
    assert dataset_rows(client, headers, settings, creds, audience_id) == [
        {"ppid": "a@example.com", "list_id": "L9", "delete": 0.0, "process_consent": "yes"}
    ]


def test_extra_columns_are_ignored(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    content = csv_bytes(
        ["ppid", "extra", "list_id", "delete", "process_consent"], [["a@example.com", "x", "L", 0, "y"]]
    )
    audience_id, run = _seed_run(client, headers, content)
    assert run["status"] == "SUCCESS", run
    assert set(dataset_rows(client, headers, settings, creds, audience_id)[0]) == {
        "ppid",
        "list_id",
        "delete",
        "process_consent",
    }


def test_missing_declared_column_fails_the_run_and_commits_nothing(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    content = csv_bytes(["ppid", "list_id", "delete"], [["a@example.com", "L1", 0]])
    audience_id, run = _seed_run(client, headers, content)
    assert run["status"] == "FAILED", run
    message = run["error"]["message"]
    assert "process_consent" in message
    assert FILE in message
    assert members(client, headers, audience_id) == {}
    assert _batches(client, headers, settings, creds, audience_id) == []
    assert run["metrics"]["recordsIngested"] == 0


def test_empty_file_fails_the_run(client: TestClient, headers: dict[str, str]) -> None:
    _, run = _seed_run(client, headers, b"")
    assert run["status"] == "FAILED"
    assert "empty" in run["error"]["message"]


def test_header_only_file_succeeds_with_no_records(client: TestClient, headers: dict[str, str]) -> None:
    audience_id, run = _seed_run(client, headers, seed_csv())
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["recordsRead"] == 0
    assert members(client, headers, audience_id) == {}


def test_duplicate_header_column_fails_the_run(client: TestClient, headers: dict[str, str]) -> None:
    content = csv_bytes(["ppid", "list_id", "delete", "process_consent", "PPID"], [["a@example.com", "L", 0, "y", "b"]])
    _, run = _seed_run(client, headers, content)
    assert run["status"] == "FAILED"
    assert "PPID" in run["error"]["message"]


def test_missing_file_fails_the_run_naming_the_path(client: TestClient, headers: dict[str, str]) -> None:
    audience_id = create_audience(client, headers, seed_audience(path="activation/nothing.csv"))
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "FAILED"
    assert "activation/nothing.csv" in run["error"]["message"]


def test_source_path_with_the_container_prefix_reads_the_same_file(client: TestClient, headers: dict[str, str]) -> None:
    upload(client, headers, FILE, seed_csv(["a@example.com", "L1", 0, "y"]))
    audience_id = create_audience(client, headers, seed_audience(path="dlz-user-container/" + FILE))
    assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"
    assert set(members(client, headers, audience_id)) == {"a@example.com"}


# -- the errors file --------------------------------------------------------------------------

ERR_FIELDS = [
    {"name": "email", "type": "string", "identityNs": "Email"},
    {"name": "n", "type": "number"},
    {"name": "d", "type": "date"},
]


def test_error_file_lists_every_rejected_row_with_line_numbers(client: TestClient, headers: dict[str, str]) -> None:
    rows = [
        ["a@example.com", "1", "2025-01-01"],
        ["b@example.com", "x", "2025-01-01"],
        ["c@example.com", "1", "2025-01-01"],
        ["not-an-email", "1", "2025-01-01"],
        ["", "1", "2025-01-01"],
        ["f@example.com", "1", "2025-02-30"],
    ]
    content = csv_bytes(["email", "n", "d"], rows)
    audience_id, run = _typed_run(client, headers, ERR_FIELDS, content, errorThresholdPercent=80)
    assert run["status"] == "SUCCESS", run
    assert (run["metrics"]["recordsRead"], run["metrics"]["recordsFailed"], run["metrics"]["recordsIngested"]) == (
        6,
        4,
        2,
    )
    errors = run_errors(client, headers, audience_id, run["runId"])
    assert [(e["file"], e["record"], e["line"], e["column"], e["value"]) for e in errors] == [
        ("typed/list.csv", "2", "3", "n", "x"),
        ("typed/list.csv", "4", "5", "email", "not-an-email"),
        ("typed/list.csv", "5", "6", "email", ""),
        ("typed/list.csv", "6", "7", "d", "2025-02-30"),
    ]
    assert [e["reason"] for e in errors] == [
        "is not a number",
        "is not a valid email address",
        "no identity: every identity field is empty",
        "is not a date (YYYY-MM-DD)",
    ]
    assert set(members(client, headers, audience_id)) == {"a@example.com", "c@example.com"}


def test_malformed_line_is_rejected_and_later_lines_keep_their_numbers(
    client: TestClient, headers: dict[str, str]
) -> None:
    content = seed_csv(["a@example.com", "L1", 0, "y"]) + (
        b"b@example.com,L2,0,n,surplus\nnot-an-email,L3,0,y\nd@example.com,L4,0,y\n"
    )
    audience_id, run = _seed_run(client, headers, content, errorThresholdPercent=60)
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["recordsRead"] == 4
    assert run["metrics"]["recordsFailed"] == 2
    assert set(members(client, headers, audience_id)) == {"a@example.com", "d@example.com"}
    malformed, bad_email = run_errors(client, headers, audience_id, run["runId"])
    assert malformed["line"] == "3"
    assert "surplus" in malformed["value"]
    assert (bad_email["line"], bad_email["value"]) == ("4", "not-an-email")


# -- errorThresholdPercent ---------------------------------------------------------------------

QUARTER_BAD = seed_csv(
    ["a@example.com", "L", 0, "y"],
    ["b@example.com", "L", 0, "y"],
    ["c@example.com", "L", 0, "y"],
    ["not-an-email", "L", 0, "y"],
)


def test_default_threshold_fails_a_file_with_a_quarter_bad_rows(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    audience_id, run = _seed_run(client, headers, QUARTER_BAD)
    assert run["status"] == "FAILED", run
    assert "25.00%" in run["error"]["message"]
    assert "errorThresholdPercent 5" in run["error"]["message"]
    assert members(client, headers, audience_id) == {}
    assert _batches(client, headers, settings, creds, audience_id) == []
    (error,) = run_errors(client, headers, audience_id, run["runId"])
    assert error["value"] == "not-an-email"


def test_threshold_50_lets_a_quarter_bad_rows_through(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    audience_id, run = _seed_run(client, headers, QUARTER_BAD, errorThresholdPercent=50)
    assert run["status"] == "SUCCESS", run
    assert set(members(client, headers, audience_id)) == {"a@example.com", "b@example.com", "c@example.com"}
    assert len(dataset_rows(client, headers, settings, creds, audience_id)) == 3
    assert run["metrics"]["recordsFailed"] == 1


def test_threshold_exactly_reached_passes(client: TestClient, headers: dict[str, str]) -> None:
    _, run = _seed_run(client, headers, QUARTER_BAD, errorThresholdPercent=25)
    assert run["status"] == "SUCCESS", run


def test_threshold_zero_fails_on_one_bad_row(client: TestClient, headers: dict[str, str]) -> None:
    _, run = _seed_run(client, headers, QUARTER_BAD, errorThresholdPercent=0)
    assert run["status"] == "FAILED", run


# -- memberships across runs -------------------------------------------------------------------

TWO = seed_csv(["a@example.com", "L1", 0, "y"], ["b@example.com", "L2", 0, "y"])


def test_delete_row_exits_an_existing_member(client: TestClient, headers: dict[str, str]) -> None:
    audience_id, _ = _seed_run(client, headers, TWO)
    run = _rerun(client, headers, audience_id, seed_csv(["a@example.com", "L1", 1, "y"]))
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["membersExited"] == 1
    found = members(client, headers, audience_id)
    assert found["a@example.com"]["status"] == "exited"
    assert found["b@example.com"]["status"] == "realized"
    assert member_counts(client, headers, audience_id) == {"realized": 1, "exited": 1}


def test_delete_row_for_an_unknown_identity_creates_nothing(client: TestClient, headers: dict[str, str]) -> None:
    audience_id, _ = _seed_run(client, headers, TWO)
    run = _rerun(client, headers, audience_id, seed_csv(["z@example.com", "L", 1, "y"]))
    assert run["metrics"]["membersExited"] == 0
    assert run["metrics"]["profilesCreated"] == 0
    assert "z@example.com" not in members(client, headers, audience_id)


def test_differential_run_keeps_members_absent_from_the_file(client: TestClient, headers: dict[str, str]) -> None:
    audience_id, _ = _seed_run(client, headers, TWO)
    run = _rerun(client, headers, audience_id, seed_csv(["c@example.com", "L3", 0, "y"]))
    assert run["differentialIngestion"] is True
    assert run["metrics"]["membersExited"] == 0
    assert {k: m["status"] for k, m in members(client, headers, audience_id).items()} == {
        "a@example.com": "realized",
        "b@example.com": "realized",
        "c@example.com": "realized",
    }


def test_full_run_exits_members_absent_from_the_file(client: TestClient, headers: dict[str, str]) -> None:
    audience_id, _ = _seed_run(client, headers, TWO)
    run = _rerun(client, headers, audience_id, seed_csv(["b@example.com", "L2", 0, "y"]), differentialIngestion=False)
    assert run["status"] == "SUCCESS", run
    assert run["differentialIngestion"] is False
    assert run["metrics"]["membersExited"] == 1
    assert {k: m["status"] for k, m in members(client, headers, audience_id).items()} == {
        "a@example.com": "exited",
        "b@example.com": "realized",
    }


def test_exited_member_is_realized_again_by_a_later_row(client: TestClient, headers: dict[str, str]) -> None:
    audience_id, _ = _seed_run(client, headers, TWO)
    _rerun(client, headers, audience_id, seed_csv(["a@example.com", "L1", 1, "y"]))
    run = _rerun(client, headers, audience_id, seed_csv(["a@example.com", "L7", 0, "y"]))
    assert run["metrics"]["membersRealized"] == 1
    member = members(client, headers, audience_id)["a@example.com"]
    assert member["status"] == "realized"
    assert member["payload"]["list_id"] == "L7"


def test_same_identity_twice_in_a_file_last_row_wins(client: TestClient, headers: dict[str, str]) -> None:
    content = seed_csv(
        ["a@example.com", "first", 0, "y"], ["b@example.com", "L", 0, "y"], ["A@example.com", "last", 0, "n"]
    )
    audience_id, run = _seed_run(client, headers, content)
    assert run["metrics"]["profilesCreated"] == 2
    assert members(client, headers, audience_id)["a@example.com"]["payload"] == {
        "list_id": "last",
        "process_consent": "n",
    }


def test_last_row_wins_even_when_it_deletes(client: TestClient, headers: dict[str, str]) -> None:
    audience_id, _ = _seed_run(client, headers, TWO)
    run = _rerun(
        client, headers, audience_id, seed_csv(["a@example.com", "L1", 0, "y"], ["a@example.com", "L1", 1, "y"])
    )
    assert run["metrics"]["membersExited"] == 1
    assert members(client, headers, audience_id)["a@example.com"]["status"] == "exited"


def test_last_qualification_time_is_the_run_time(client: TestClient, headers: dict[str, str]) -> None:
    before = int(time.time())
    audience_id, _ = _seed_run(client, headers, TWO)
    stamp = members(client, headers, audience_id)["a@example.com"]["lastQualificationTime"]
    assert before <= stamp <= int(time.time())


def test_members_page(client: TestClient, headers: dict[str, str]) -> None:
    content = seed_csv(*[[f"u{n}@example.com", "L", 0, "y"] for n in range(5)])
    audience_id, _ = _seed_run(client, headers, content)
    pages = [
        client.get(f"{EA}/{audience_id}/members", params={"limit": 2, "start": s}, headers=headers).json()
        for s in (0, 2, 4)
    ]
    ids = [m["identities"][0]["id"] for p in pages for m in p["members"]]
    assert sorted(ids) == [f"u{n}@example.com" for n in range(5)]
    assert pages[0]["_page"]["totalCount"] == 5


# -- folders and the time window ---------------------------------------------------------------


def _drop(client: TestClient, headers: dict[str, str], root: Path, name: str, content: bytes, mtime: int) -> None:
    upload(client, headers, f"drops/{name}", content)
    os.utime(root / "drops" / name, (mtime, mtime))


@pytest.fixture
def folder_audience(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> tuple[str, int]:
    """A folder audience over drops/ holding old.csv, mid.csv and new.csv, a minute apart; returns (id, mid time)."""
    root, mid = landing_root(settings, creds), int(time.time()) - 3600
    _drop(client, headers, root, "old.csv", seed_csv(["old@example.com", "L", 0, "y"]), mid - 60)
    _drop(client, headers, root, "mid.csv", seed_csv(["mid@example.com", "L", 0, "y"]), mid)
    _drop(client, headers, root, "new.csv.gz", gzip.compress(seed_csv(["new@example.com", "L", 0, "y"])), mid + 60)
    _drop(client, headers, root, "notes.txt", b"not a csv", mid)
    body = seed_audience(path="drops")
    body["sourceSpec"]["params"]["type"] = "folder"
    return create_audience(client, headers, body), mid


def test_folder_run_reads_every_csv_in_the_window(
    client: TestClient, headers: dict[str, str], folder_audience: tuple[str, int]
) -> None:
    audience_id, _ = folder_audience
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0})
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["filesProcessed"] == 3
    assert set(members(client, headers, audience_id)) == {"old@example.com", "mid@example.com", "new@example.com"}


def test_folder_run_picks_only_files_modified_in_the_window(
    client: TestClient, headers: dict[str, str], folder_audience: tuple[str, int]
) -> None:
    audience_id, mid = folder_audience
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": mid - 30, "dataFilterEndTime": mid + 30})
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["filesProcessed"] == 1
    assert set(members(client, headers, audience_id)) == {"mid@example.com"}


def test_folder_window_bounds_are_inclusive(
    client: TestClient, headers: dict[str, str], folder_audience: tuple[str, int]
) -> None:
    audience_id, mid = folder_audience
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": mid, "dataFilterEndTime": mid + 60})
    assert run["metrics"]["filesProcessed"] == 2
    assert set(members(client, headers, audience_id)) == {"mid@example.com", "new@example.com"}


def test_folder_files_apply_oldest_first_so_the_newest_row_wins(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    root, t0 = landing_root(settings, creds), int(time.time()) - 600
    _drop(client, headers, root, "b-older.csv", seed_csv(["a@example.com", "newest", 0, "y"]), t0 + 10)
    _drop(client, headers, root, "a-newer.csv", seed_csv(["a@example.com", "oldest", 0, "y"]), t0)
    body = seed_audience(path="drops")
    body["sourceSpec"]["params"]["type"] = "folder"
    audience_id = create_audience(client, headers, body)
    run_and_wait(client, headers, audience_id)
    assert members(client, headers, audience_id)["a@example.com"]["payload"]["list_id"] == "newest"


def test_run_with_no_file_in_the_window_fails_clearly(
    client: TestClient, headers: dict[str, str], folder_audience: tuple[str, int]
) -> None:
    audience_id, mid = folder_audience
    start, end = mid - 600, mid - 300
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": start, "dataFilterEndTime": end})
    assert run["status"] == "FAILED", run
    message = run["error"]["message"]
    assert "no file under 'drops'" in message
    assert str(start) in message and str(end) in message
    assert members(client, headers, audience_id) == {}


def test_file_run_outside_the_window_fails(client: TestClient, headers: dict[str, str]) -> None:
    upload(client, headers, FILE, TWO)
    audience_id = create_audience(client, headers, seed_audience())
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, "dataFilterEndTime": 1000})
    assert run["status"] == "FAILED", run
    assert "dataFilterEndTime 1000" in run["error"]["message"]


def test_file_modified_within_the_last_second_of_the_window_is_in_it(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    """The window is in whole seconds: a file modified at 1700000000.5 is in [1700000000, 1700000000]."""
    upload(client, headers, FILE, TWO)
    os.utime(landing_root(settings, creds) / FILE, (1_700_000_000.5, 1_700_000_000.5))
    audience_id = create_audience(client, headers, seed_audience())
    body = {"dataFilterStartTime": 1_700_000_000, "dataFilterEndTime": 1_700_000_000}
    run = run_and_wait(client, headers, audience_id, body)
    assert run["status"] == "SUCCESS", run


# -- ttl ---------------------------------------------------------------------------------------


@pytest.fixture
def qualified_35_days_ago(client: TestClient, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The seed audience (ttl 40) with a.example.com's membership written by a run 35 days ago."""
    upload(client, headers, FILE, seed_csv(["a@example.com", "L1", 0, "y"]))
    audience_id = create_audience(client, headers, seed_audience())
    real_now = ingestion_module.now
    with monkeypatch.context() as m:
        m.setattr(ingestion_module, "now", lambda: real_now() - 35 * DAY)
        assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"
    return audience_id


def _patch_ttl(client: TestClient, headers: dict[str, str], audience_id: str, ttl: int) -> None:
    resp = client.patch(f"{EA}/{audience_id}", json={"ttlInDays": ttl}, headers=headers)
    assert resp.status_code == 200, resp.text


def test_membership_younger_than_ttl_is_realized(
    client: TestClient, headers: dict[str, str], qualified_35_days_ago: str
) -> None:
    member = members(client, headers, qualified_35_days_ago)["a@example.com"]
    assert member["status"] == "realized"
    assert abs(member["lastQualificationTime"] - (time.time() - 35 * DAY)) < 120


def test_membership_older_than_ttl_reads_as_exited(
    client: TestClient, headers: dict[str, str], qualified_35_days_ago: str
) -> None:
    _patch_ttl(client, headers, qualified_35_days_ago, 30)
    member = members(client, headers, qualified_35_days_ago)["a@example.com"]
    assert member["status"] == "exited"
    assert abs(member["lastQualificationTime"] - (time.time() - 5 * DAY)) < 120, "exited when the ttl ran out"
    assert member_counts(client, headers, qualified_35_days_ago) == {"realized": 0, "exited": 1}


def test_longer_ttl_makes_the_membership_realized_again(
    client: TestClient, headers: dict[str, str], qualified_35_days_ago: str
) -> None:
    _patch_ttl(client, headers, qualified_35_days_ago, 30)
    _patch_ttl(client, headers, qualified_35_days_ago, 90)
    assert members(client, headers, qualified_35_days_ago)["a@example.com"]["status"] == "realized"


def test_a_new_run_requalifies_an_expired_membership(
    client: TestClient, headers: dict[str, str], qualified_35_days_ago: str
) -> None:
    _patch_ttl(client, headers, qualified_35_days_ago, 30)
    run = run_and_wait(client, headers, qualified_35_days_ago)
    assert run["status"] == "SUCCESS", run
    member = members(client, headers, qualified_35_days_ago)["a@example.com"]
    assert member["status"] == "realized"
    assert member["lastQualificationTime"] >= int(time.time()) - 60
