"""Broken CSV input: malformed records are rejected one by one; a quote never closed or a file that
cannot be read fails the run cleanly.

A run never reports an engine's internals: no server path, no SQL, no "internal error".
"""

from __future__ import annotations

import gzip
from typing import Any

from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import member_counts, run_errors, seed_csv
from tests.conftest import create_audience, run_and_wait, seed_audience, upload

FILE = "broken/list.csv"
HEADER = b"ppid,list_id,delete,process_consent\n"


def _run(
    client: TestClient, headers: dict[str, str], content: bytes, path: str = FILE, **run: Any
) -> tuple[str, dict[str, Any]]:
    upload(client, headers, path, content)
    audience_id = create_audience(client, headers, seed_audience(path=path))
    return audience_id, run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, **run})


def _assert_clean(message: str, settings: Settings) -> None:
    assert "internal error" not in message, message
    assert str(settings.home) not in message and "/landing/" not in message, message
    assert "SELECT" not in message and "read_csv" not in message and "LINE 1" not in message, message


def _assert_unclosed_quote_fails(
    client: TestClient, headers: dict[str, str], settings: Settings, content: bytes, line: int
) -> None:
    audience_id, run = _run(client, headers, content, errorThresholdPercent=100)
    assert run["status"] == "FAILED", run
    message = run["error"]["message"]
    assert f"{FILE}: line {line} opens a quoted value that is never closed" in message, message
    assert "Nothing was committed" in message
    _assert_clean(message, settings)
    assert member_counts(client, headers, audience_id) == {"realized": 0, "exited": 0}


def test_a_quote_closed_lines_later_fails_the_run_naming_the_line(
    client: TestClient, headers: dict[str, str], settings: Settings
) -> None:
    # Line 3 opens a quote that the first quote of line 5 closes: lines 4 and 5 would vanish inside
    # that one malformed record, uncounted, so the run fails instead of succeeding without them.
    content = HEADER + (
        b"a@example.com,L1,0,y\n"
        b'"eve@example.com,L5,0,yes\n'
        b"b@example.com,L2,0,n\n"
        b'"c@example.com",L3,0,y\n'
        b"d@example.com,L4,0,y\n"
    )
    _assert_unclosed_quote_fails(client, headers, settings, content, line=3)


def test_a_quote_never_closed_fails_the_run_naming_the_line(
    client: TestClient, headers: dict[str, str], settings: Settings
) -> None:
    content = HEADER + b'a@example.com,L1,0,y\n"eve@example.com,L5,0,yes\nb@example.com,L2,0,n\n'
    _assert_unclosed_quote_fails(client, headers, settings, content, line=3)


def test_invalid_utf8_in_a_row_near_the_top_rejects_that_row(client: TestClient, headers: dict[str, str]) -> None:
    content = HEADER + b"a@example.com,L1,0,y\nb@example.com,L\xff\xfe2,0,n\nc@example.com,L3,0,y\n"
    audience_id, run = _run(client, headers, content, errorThresholdPercent=50)
    assert run["status"] == "SUCCESS", run
    (error,) = run_errors(client, headers, audience_id, run["runId"])
    assert (error["record"], error["line"]) == ("", "3")


def test_invalid_utf8_in_a_row_rejects_that_row(client: TestClient, headers: dict[str, str]) -> None:
    good = [[f"user{i}@example.com", f"L{i}", 0, "y"] for i in range(400)]  # past the header reader's first read
    content = seed_csv(*good) + b"bad@example.com,L\xff\xfe9,0,n\nlast@example.com,L9,0,y\n"
    audience_id, run = _run(client, headers, content)
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["recordsRead"] == 402
    assert run["metrics"]["recordsFailed"] == 1
    assert member_counts(client, headers, audience_id) == {"realized": 401, "exited": 0}
    (error,) = run_errors(client, headers, audience_id, run["runId"])
    assert (error["record"], error["line"]) == ("", "402")
    assert "INVALID ENCODING" in error["reason"]
    assert error["value"].startswith("bad@example.com,L")


def test_a_file_the_engine_cannot_read_fails_naming_it_without_server_paths(
    client: TestClient, headers: dict[str, str], settings: Settings
) -> None:
    rows = [[f"user{i}@example.com", f"L{i}", 0, "y"] for i in range(20000)]
    packed = gzip.compress(seed_csv(*rows))
    path = "broken/list.csv.gz"
    _, run = _run(client, headers, packed[: len(packed) // 2], path=path)  # cut in the middle
    assert run["status"] == "FAILED", run
    message = run["error"]["message"]
    _assert_clean(message, settings)
    assert "list.csv.gz" in message and "GZIP" in message, message


def test_a_closed_multi_line_value_in_a_rejected_record_rejects_only_that_record(
    client: TestClient, headers: dict[str, str]
) -> None:
    good = [[f"user{i}@example.com", f"L{i}", 0, "y"] for i in range(40)]
    # A properly closed quoted value spanning two lines, in a record with one column too many.
    content = seed_csv(*good) + b'"x@example.com","two\nlines",0,y,extra\n'
    audience_id, run = _run(client, headers, content)
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["recordsFailed"] == 1
    (error,) = run_errors(client, headers, audience_id, run["runId"])
    assert "TOO MANY COLUMNS" in error["reason"]


def test_a_header_longer_than_the_limit_fails_the_run_saying_so(client: TestClient, headers: dict[str, str]) -> None:
    wide = b",".join(b"col_%06d" % i for i in range(120_000))  # ~1.3 MB, past the 1 MiB header limit
    content = b"ppid,list_id,delete,process_consent," + wide + b"\na@example.com,L1,0,y\n"
    _, run = _run(client, headers, content)
    assert run["status"] == "FAILED", run
    assert "the header row is longer than" in run["error"]["message"]
