"""The Catalog, batch ingestion and Profile Access as an AEP user meets them at the edges.

Compressed and odd-shaped files, CSV headers, empty batches, several files in one batch, signals sent twice,
dataset paging and ordering, PATCH, every XDM scalar type and its ranges, ExperienceEvent's required fields,
identity normalization, merge policies on lookups, deleting a dataset under a running batch, and ids of
another sandbox. Each test asserts the exact answer; where audiencehub is wrong the test is
``xfail(strict=True)`` and its reason says what happens and what should.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
from collections.abc import Callable
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import assert_problem, dataset_dir
from tests.api.xdm_support import (
    CATALOG,
    IDENTITY_MAP_FG,
    IMPORT,
    PERSON_FG,
    PROFILE_CLASS,
    dataset,
    enable_profile,
    field_group,
    identity,
    ingest,
    json_lines,
    schema,
    tenant,
)
from tests.conftest import wait_for

EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"
EXPORT = "/data/foundation/export"
ACCESS = "/data/core/ups/access/entities"
MP = "/data/core/ups/config/mergePolicies"
INVALID = "XDM-1001-400"
MALFORMED = "XDM-1000-400"

# Every XDM scalar type, an array and a map, under the tenant's namespace.
TYPED_FIELDS: dict[str, Any] = {
    "day": {"type": "string", "format": "date"},
    "at": {"type": "string", "format": "date-time"},
    "count": {"type": "integer"},
    "big": {"type": "integer", "meta:xdmType": "long"},
    "score": {"type": "number"},
    "vip": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "points": {"type": "object", "additionalProperties": {"type": "integer"}},
    "percent": {"type": "integer", "minimum": 0, "maximum": 100},
    "ratio": {"type": "number", "minimum": 0, "maximum": 1},
}


# -- helpers -------------------------------------------------------------------------------------


class Plain:
    """A dataset (not profile-enabled) on a Profile schema with the typed tenant fields."""

    def __init__(self, client: TestClient, headers: dict[str, str], name: str = "typed") -> None:
        self.client, self.headers = client, headers
        self.t = f"_{tenant(client, headers)}"
        fg = field_group(client, headers, f"{name} fields", TYPED_FIELDS)
        self.schema_id = schema(client, headers, f"{name} schema", PROFILE_CLASS, fg, PERSON_FG)
        self.id = dataset(client, headers, name, self.schema_id)

    def rec(self, n: int, **fields: Any) -> dict[str, Any]:
        return {"_id": str(n), self.t: fields} if fields else {"_id": str(n)}


def create_batch(
    client: TestClient, headers: dict[str, str], dataset_id: str, fmt: str = "json", **input_format: Any
) -> str:
    resp = client.post(
        f"{IMPORT}/batches",
        json={"datasetId": dataset_id, "inputFormat": {"format": fmt, **input_format}},
        headers=headers,
    )
    assert resp.status_code == 201, resp.text
    batch_id: str = resp.json()["id"]
    return batch_id


def put(client: TestClient, headers: dict[str, str], batch_id: str, dataset_id: str, name: str, body: bytes) -> Any:
    return client.put(
        f"{IMPORT}/batches/{batch_id}/datasets/{dataset_id}/files/{name}",
        content=body,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )


def finished(client: TestClient, headers: dict[str, str], batch_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]
        return body if body["status"] in ("success", "failed") else None

    return wait_for(probe, what="batch ingestion")


def run_batch(
    client: TestClient,
    headers: dict[str, str],
    dataset_id: str,
    files: list[tuple[str, bytes]],
    fmt: str = "json",
    **input_format: Any,
) -> dict[str, Any]:
    """Create a batch, upload ``files``, complete it and wait until it succeeded or failed."""
    batch_id = create_batch(client, headers, dataset_id, fmt, **input_format)
    for name, body in files:
        resp = put(client, headers, batch_id, dataset_id, name, body)
        assert resp.status_code == 200, resp.text
    resp = client.post(f"{IMPORT}/batches/{batch_id}?action=COMPLETE", headers=headers)
    assert resp.status_code == 200, resp.text
    return finished(client, headers, batch_id)


def failed_records(client: TestClient, headers: dict[str, str], batch_id: str) -> list[dict[str, Any]]:
    listing = client.get(f"{EXPORT}/batches/{batch_id}/failed", headers=headers)
    assert listing.status_code == 200, listing.text
    out: list[dict[str, Any]] = []
    for entry in listing.json()["data"]:
        text = client.get(f"{EXPORT}/batches/{batch_id}/failed", params={"path": entry["name"]}, headers=headers).text
        out += [json.loads(line) for line in text.splitlines()]
    return out


def reasons(client: TestClient, headers: dict[str, str], batch_id: str) -> dict[int, list[str]]:
    """Record number → its failure messages (one file in the batch)."""
    return {f["_record"]: [e["message"] for e in f["_errors"]] for f in failed_records(client, headers, batch_id)}


def stored(settings: Settings, creds: dict[str, str], dataset_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for part in sorted(dataset_dir(settings, creds, dataset_id).glob("*/part-*.parquet")):
        rows.extend(pq.read_table(part).to_pylist())
    return rows


def lookup(client: TestClient, headers: dict[str, str], ns: str, value: str, **extra: str) -> Any:
    return client.get(ACCESS, params={"entityId": value, "entityIdNS": ns, **extra}, headers=headers)


def entity_of(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    [found] = resp.json().values()
    entity: dict[str, Any] = found
    return entity


# -- compressed and odd-shaped files -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "make"),
    [
        ("records.json.gz", "json", lambda d: gzip.compress(json_lines(d.rec(1, count=7), d.rec(2, count=8)))),
        (
            "records.json.gz",
            "json",
            lambda d: gzip.compress(json.dumps([d.rec(1, count=7), d.rec(2, count=8)]).encode()),
        ),
        ("records.csv.gz", "csv", lambda d: gzip.compress(f"_id,{d.t}.count\n1,7\n2,8\n".encode())),
    ],
    ids=["json-lines", "json-array", "csv"],
)
def test_a_gzipped_file_named_gz_is_read(
    client: TestClient,
    headers: dict[str, str],
    settings: Settings,
    creds: dict[str, str],
    name: str,
    fmt: str,
    make: Callable[[Plain], bytes],
) -> None:
    d = Plain(client, headers)
    batch = run_batch(client, headers, d.id, [(name, make(d))], fmt)
    assert batch["status"] == "success" and batch["recordCount"] == 2, batch
    assert [(r["_id"], r[d.t]["count"]) for r in stored(settings, creds, d.id)] == [("1", 7), ("2", 8)]


def test_a_gzipped_file_is_read_whatever_its_name(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    """Compression is told by the file's first bytes (gzip's magic number), not by a ``.gz`` name."""
    d = Plain(client, headers)
    batch = run_batch(client, headers, d.id, [("records.json", gzip.compress(json_lines(d.rec(1), d.rec(2))))])
    assert batch["status"] == "success" and batch["recordCount"] == 2, batch
    assert sorted(r["_id"] for r in stored(settings, creds, d.id)) == ["1", "2"]


@pytest.mark.parametrize(("name", "content"), [("empty.json", b""), ("array.json", b"[]"), ("blank.json", b"\n\n")])
def test_a_file_without_records_makes_an_empty_successful_batch(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str], name: str, content: bytes
) -> None:
    d = Plain(client, headers)
    batch = run_batch(client, headers, d.id, [(name, content)])
    assert (batch["status"], batch["recordCount"], batch["failedRecordCount"]) == ("success", 0, 0)
    assert batch["metrics"] == {"recordsRead": 0, "recordsWritten": 0, "failedRecordCount": 0}
    assert stored(settings, creds, d.id) == []
    ds = client.get(f"{CATALOG}/dataSets/{d.id}", headers=headers).json()[d.id]
    assert ds["lastSuccessfulBatch"] == batch["id"]


def test_a_csv_file_with_only_its_header_makes_an_empty_successful_batch(
    client: TestClient, headers: dict[str, str]
) -> None:
    d = Plain(client, headers)
    batch = run_batch(client, headers, d.id, [("h.csv", f"_id,{d.t}.count\n".encode())], "csv")
    assert (batch["status"], batch["recordCount"]) == ("success", 0)


def test_a_json_array_after_leading_whitespace_is_read(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    d = Plain(client, headers)
    body = b" \r\n\t\n  " + json.dumps([d.rec(1, vip=True), d.rec(2, vip=False)], indent=2).encode()
    batch = run_batch(client, headers, d.id, [("array.json", body)])
    assert (batch["status"], batch["recordCount"]) == ("success", 2), batch
    assert [r[d.t]["vip"] for r in stored(settings, creds, d.id)] == [True, False]


def test_json_lines_after_a_byte_order_mark_are_read(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    batch = run_batch(client, headers, d.id, [("bom.json", b"\xef\xbb\xbf" + json_lines(d.rec(1), d.rec(2)))])
    assert (batch["status"], batch["recordCount"]) == ("success", 2), batch


def test_a_json_array_after_a_byte_order_mark_is_read(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    body = b"\xef\xbb\xbf" + json.dumps([d.rec(1), d.rec(2)]).encode()
    batch = run_batch(client, headers, d.id, [("bom.json", body)])
    assert (batch["status"], batch["recordCount"]) == ("success", 2), batch


def test_pretty_printed_objects_need_is_multi_line_json(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    body = (json.dumps(d.rec(1, count=1), indent=2) + "\n" + json.dumps(d.rec(2, count=2), indent=4)).encode()
    batch = run_batch(client, headers, d.id, [("pretty.json", body)], isMultiLineJson=True)
    assert (batch["status"], batch["recordCount"]) == ("success", 2), batch
    assert batch["inputFormat"] == {"format": "json", "isMultiLineJson": True}
    # Without the flag every line is a record of its own, and none of them is JSON.
    lines = body.count(b"\n") + 1
    batch = run_batch(client, headers, d.id, [("pretty.json", body)])
    assert batch["status"] == "failed" and batch["recordCount"] == batch["failedRecordCount"] == lines
    got = reasons(client, headers, batch["id"])
    assert got == {n: ["the record is not valid JSON"] for n in range(1, lines + 1)}


def test_a_csv_header_that_names_no_field_fails_every_record_that_fills_it(
    client: TestClient, headers: dict[str, str]
) -> None:
    d = Plain(client, headers)
    body = f"_id,{d.t}.count,{d.t}.nickname\n1,5,Al\n2,6,\n".encode()
    batch = run_batch(client, headers, d.id, [("extra.csv", body)], "csv")
    assert batch["status"] == "failed" and (batch["recordCount"], batch["failedRecordCount"]) == (2, 2)
    # An empty cell is still the unknown field (null), so record 2 fails too.
    assert reasons(client, headers, batch["id"]) == {
        1: [f"{d.t}.nickname: is not a field of the schema"],
        2: [f"{d.t}.nickname: is not a field of the schema"],
    }
    failed = failed_records(client, headers, batch["id"])
    assert failed[0][d.t] == {"count": "5", "nickname": "Al"} and failed[0]["_file"] == "extra.csv"


def test_a_csv_header_that_is_not_a_field_path_fails_the_batch(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    batch = run_batch(client, headers, d.id, [("bad.csv", f"_id,{d.t}..count\n1,5\n".encode())], "csv")
    assert batch["status"] == "failed" and batch["failedRecordCount"] == 0
    [error] = batch["errors"]
    assert error["code"] == INVALID and f"header '{d.t}..count' is not a field path" in error["description"]


def test_two_files_in_one_batch_number_their_records_per_file(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    first = json_lines(d.rec(1), d.rec(2, count="two"))
    second = json_lines(d.rec(3, count="three"), d.rec(4), d.rec(5, vip="yes"))
    batch = run_batch(client, headers, d.id, [("a.json", first), ("b.json", second)])
    assert batch["status"] == "failed" and (batch["recordCount"], batch["failedRecordCount"]) == (5, 3)
    got = [
        (f["_file"], f["_record"], f["_id"], [e["message"] for e in f["_errors"]])
        for f in failed_records(client, headers, batch["id"])
    ]
    assert got == [
        ("a.json", 2, "2", [f"{d.t}.count: expected an integer"]),
        ("b.json", 1, "3", [f"{d.t}.count: expected an integer"]),
        ("b.json", 3, "5", [f"{d.t}.vip: expected a boolean"]),
    ]
    assert batch["errors"][0]["recordCount"] == 3


def test_files_of_one_name_in_two_folders_are_told_apart(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    files = [("d1/part.json", json_lines(d.rec(1, count="x"))), ("d2/part.json", json_lines(d.rec(2, count="y")))]
    batch = run_batch(client, headers, d.id, files)
    assert batch["status"] == "failed"
    assert [f["_file"] for f in failed_records(client, headers, batch["id"])] == ["d1/part.json", "d2/part.json"]


def test_signals_after_complete_are_refused_and_change_nothing(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    batch_id = create_batch(client, headers, d.id)
    assert put(client, headers, batch_id, d.id, "one.json", json_lines(d.rec(1))).status_code == 200
    assert client.post(f"{IMPORT}/batches/{batch_id}?action=COMPLETE", headers=headers).status_code == 200
    again = client.post(f"{IMPORT}/batches/{batch_id}?action=COMPLETE", headers=headers)
    assert_problem(again, 409, "100950-409", batch_id, "is already")
    done = finished(client, headers, batch_id)
    assert (done["status"], done["recordCount"]) == ("success", 1)
    assert_problem(
        client.post(f"{IMPORT}/batches/{batch_id}?action=COMPLETE", headers=headers),
        409,
        "100950-409",
        f"batch {batch_id!r} is already success",
    )
    assert_problem(
        client.post(f"{IMPORT}/batches/{batch_id}?action=ABORT", headers=headers),
        409,
        "100950-409",
        "only a loading batch can be aborted",
    )
    late = put(client, headers, batch_id, d.id, "two.json", json_lines(d.rec(2)))
    assert_problem(late, 400, "100910-400", "is success", "only while it is loading")
    assert_problem(client.post(f"{IMPORT}/batches/{batch_id}", headers=headers), 400, "100910-400", "action")
    assert finished(client, headers, batch_id)["recordCount"] == 1


def test_a_file_for_another_dataset_of_the_batch_is_404(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    other = dataset(client, headers, "other", d.schema_id)
    batch_id = create_batch(client, headers, d.id)
    assert_problem(put(client, headers, batch_id, other, "x.json", b"{}"), 404, "100940-404", other)


# -- datasets: paging, ordering, PATCH ------------------------------------------------------------


def test_dataset_pages_with_start_and_limit(client: TestClient, headers: dict[str, str]) -> None:
    sid = schema(client, headers, "Paging", PROFILE_CLASS, PERSON_FG)
    names = [f"paging {n}" for n in "edcba"]
    ids = {dataset(client, headers, name, sid): name for name in names}

    def page(**params: Any) -> list[str]:
        resp = client.get(f"{CATALOG}/dataSets", params={"orderBy": "asc:name", **params}, headers=headers)
        assert resp.status_code == 200, resp.text
        return [ids[i] for i in resp.json() if i in ids]

    assert page(limit=2) == ["paging a", "paging b"]
    assert page(limit=2, start=2) == ["paging c", "paging d"]
    assert page(limit=2, start=4) == ["paging e"]
    assert page(limit=2, start=5) == []
    assert page(orderBy="desc:name", limit=3) == ["paging e", "paging d", "paging c"]
    one = client.get(f"{CATALOG}/dataSets", params={"name": "paging c"}, headers=headers).json()
    assert [ids[i] for i in one] == ["paging c"]
    for params, needle in [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "between 1 and 100"),
        ({"start": -1}, "start"),
        ({"orderBy": "desc:size"}, "'desc:size'"),
        ({"orderBy": "sideways:name"}, "orderBy"),
    ]:
        assert_problem(client.get(f"{CATALOG}/dataSets", params=params, headers=headers), 400, "100910-400", needle)


def test_order_by_desc_created_lists_the_newest_first(client: TestClient, headers: dict[str, str]) -> None:
    sid = schema(client, headers, "Ordering", PROFILE_CLASS, PERSON_FG)
    made = [dataset(client, headers, f"ordered {n}", sid) for n in range(4)]
    listing = client.get(f"{CATALOG}/dataSets", params={"orderBy": "desc:created"}, headers=headers).json()
    assert len({listing[i]["created"] for i in made}) == len(made), [listing[i]["created"] for i in made]
    assert list(listing) == made[::-1]


def test_patch_of_a_field_that_cannot_change_is_400_and_changes_nothing(
    client: TestClient, headers: dict[str, str]
) -> None:
    d = Plain(client, headers)
    before = client.get(f"{CATALOG}/dataSets/{d.id}", headers=headers).json()[d.id]
    for body, field in [
        ({"color": "blue"}, "color"),
        ({"schemaRef": {"id": "x"}}, "schemaRef"),
        ({"imsOrg": "x"}, "imsOrg"),
    ]:
        resp = client.patch(f"{CATALOG}/dataSets/{d.id}", json={"description": "changed", **body}, headers=headers)
        assert_problem(resp, 400, "100910-400", f"{field}: cannot be changed", "patchable: description")
    assert client.get(f"{CATALOG}/dataSets/{d.id}", headers=headers).json()[d.id] == before


def test_patch_merges_tags_and_keeps_what_it_does_not_name(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    for tags in ({"team": ["crm"]}, {"owner": ["ann"]}, {"team": ["loyalty", "crm"]}):
        resp = client.patch(f"{CATALOG}/dataSets/{d.id}", json={"tags": tags}, headers=headers)
        assert resp.status_code == 200 and resp.json() == [f"@/dataSets/{d.id}"], resp.text
    ds = client.get(f"{CATALOG}/dataSets/{d.id}", headers=headers).json()[d.id]
    assert ds["tags"] == {"team": ["loyalty", "crm"], "owner": ["ann"]}
    assert ds["name"] == "typed" and ds["updated"] >= ds["created"]
    assert_problem(
        client.patch(f"{CATALOG}/dataSets/{d.id}", json={"tags": {"team": "crm"}}, headers=headers),
        400,
        "100910-400",
        "tags.team",
    )


def test_enable_error_diagnostics_must_be_a_boolean(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    resp = client.patch(f"{CATALOG}/dataSets/{d.id}", json={"enableErrorDiagnostics": "false"}, headers=headers)
    assert client.get(f"{CATALOG}/dataSets/{d.id}", headers=headers).json()[d.id]["enableErrorDiagnostics"] is False
    assert_problem(resp, 400, "100910-400", "enableErrorDiagnostics")


def test_batches_filter_by_creation_time(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    batch = ingest(client, headers, d.id, json_lines(d.rec(1)))
    created = batch["created"]
    assert client.get(f"{CATALOG}/batches", params={"createdBefore": created - 1}, headers=headers).json() == {}
    assert client.get(f"{CATALOG}/batches", params={"createdAfter": created + 10**6}, headers=headers).json() == {}


# -- XDM types and ranges ------------------------------------------------------------------------


def test_every_type_is_stored_typed(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    d = Plain(client, headers)
    values = {
        "day": "2024-02-29",
        "at": "2025-05-23T20:19:00.250-02:00",
        "count": 2**31 - 1,
        "big": -(2**63),
        "score": 0.5,
        "vip": True,
        "tags": ["a", "b"],
        "points": {"web": 3, "store": -(2**31)},
        "percent": 100,
        "ratio": 1,
    }
    batch = ingest(client, headers, d.id, json_lines(d.rec(1, **values), d.rec(2)))
    assert (batch["status"], batch["recordCount"]) == ("success", 2), batch
    first, second = stored(settings, creds, d.id)
    assert first[d.t] == {
        **values,
        "day": dt.date(2024, 2, 29),
        "at": dt.datetime(2025, 5, 23, 22, 19, 0, 250000, tzinfo=dt.UTC),
        "score": 0.5,
        "ratio": 1.0,
        "points": [("web", 3), ("store", -(2**31))],
    }
    assert second[d.t] is None


def test_values_out_of_type_or_range_are_named(client: TestClient, headers: dict[str, str]) -> None:
    """Values that no conversion makes fit (text that is a number converts, as AEP documents: see below)."""
    d = Plain(client, headers)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"day": "2025-02-29"}, "day: is not a date (YYYY-MM-DD)"),
        ({"day": "29/02/2024"}, "day: is not a date (YYYY-MM-DD)"),
        ({"at": "2025-13-05T10:00:00Z"}, "at: is not a date-time (ISO 8601: 2025-05-23T20:19:00Z)"),
        ({"count": 2**31}, "count: is out of range for integer"),
        ({"count": -(2**31) - 1}, "count: is out of range for integer"),
        ({"count": 1.5}, "count: expected an integer"),
        ({"big": 2**63}, "big: is out of range for bigint"),
        ({"vip": 1}, "vip: expected a boolean"),
        ({"tags": "a"}, "tags: expected an array"),
        ({"tags": ["a", 1]}, "tags[1]: expected a string"),
        ({"points": [3]}, "points: expected an object (a map)"),
    ]
    batch = ingest(client, headers, d.id, json_lines(*(d.rec(n, **v) for n, (v, _) in enumerate(cases, 1))))
    assert batch["status"] == "failed" and batch["failedRecordCount"] == len(cases)
    got = reasons(client, headers, batch["id"])
    assert got == {n: [f"{d.t}.{message}"] for n, (_, message) in enumerate(cases, 1)}


def test_declared_minimum_and_maximum_are_enforced(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    batch = ingest(client, headers, d.id, json_lines(d.rec(1, percent=101), d.rec(2, percent=-1), d.rec(3, ratio=2)))
    assert batch["status"] == "failed" and batch["failedRecordCount"] == 3, batch


def test_a_csv_fraction_for_an_integer_is_refused_not_rounded(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    d = Plain(client, headers)
    batch = run_batch(client, headers, d.id, [("n.csv", f"_id,{d.t}.count\n1,1.5\n2,2.5\n".encode())], "csv")
    assert [r[d.t]["count"] for r in stored(settings, creds, d.id)] == []
    assert batch["status"] == "failed" and batch["failedRecordCount"] == 2, batch


def test_words_are_not_dates(client: TestClient, headers: dict[str, str]) -> None:
    d = Plain(client, headers)
    batch = ingest(client, headers, d.id, json_lines(d.rec(1, day="infinity"), d.rec(2, at="epoch")))
    assert batch["status"] == "failed" and batch["failedRecordCount"] == 2, batch


def test_csv_text_converts_to_each_scalar_type(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    d = Plain(client, headers)
    body = (
        f"_id,{d.t}.day,{d.t}.at,{d.t}.count,{d.t}.big,{d.t}.score,{d.t}.vip\n"
        "1,2024-02-29,2025-05-23T20:19:00Z,-7,9223372036854775807,1e3,TRUE\n"
        "2,,,,,,\n"
    ).encode()
    batch = run_batch(client, headers, d.id, [("types.csv", body)], "csv")
    assert (batch["status"], batch["recordCount"]) == ("success", 2), batch
    first, second = (r[d.t] for r in stored(settings, creds, d.id))
    assert (first["day"], first["at"], first["count"], first["big"], first["score"], first["vip"]) == (
        dt.date(2024, 2, 29),
        dt.datetime(2025, 5, 23, 20, 19, tzinfo=dt.UTC),
        -7,
        2**63 - 1,
        1000.0,
        True,
    )
    assert {k: v for k, v in second.items() if v is not None} == {}
    bad = run_batch(client, headers, d.id, [("bad.csv", f"_id,{d.t}.vip,{d.t}.score\n1,yes,nan\n".encode())], "csv")
    assert reasons(client, headers, bad["id"]) == {
        1: [f"{d.t}.score: expected a number", f"{d.t}.vip: expected a boolean"]
    }


def test_json_values_convert_to_the_schema_type_as_aep_documents(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    d = Plain(client, headers)
    batch = ingest(client, headers, d.id, json_lines(d.rec(1, count="42", at=1531263959000)))
    assert batch["status"] == "success", batch
    [row] = stored(settings, creds, d.id)
    assert row[d.t]["count"] == 42 and row[d.t]["at"] == dt.datetime(2018, 7, 10, 23, 5, 59, tzinfo=dt.UTC)


def test_a_number_keeps_its_precision(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    d = Plain(client, headers)
    batch = ingest(
        client, headers, d.id, b'{"_id": "1", "%s": {"score": 0.1, "big": 9007199254740993}}\n' % d.t.encode()
    )
    assert batch["status"] == "success", batch
    [row] = stored(settings, creds, d.id)
    assert row[d.t]["score"] == 0.1 and row[d.t]["big"] == 9007199254740993


# -- ExperienceEvent -----------------------------------------------------------------------------


def test_experience_events_need_id_and_timestamp(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    sid = schema(client, headers, "Web events", EVENT_CLASS)
    ds = dataset(client, headers, "web events", sid)
    records = json_lines(
        {"_id": "e1"},
        {"timestamp": "2025-01-01T00:00:00Z"},
        {"_id": "e3", "timestamp": None},
        {"_id": "e4", "timestamp": "2025-01-01T00:00:00Z"},
    )
    batch = ingest(client, headers, ds, records)
    assert batch["status"] == "failed" and (batch["recordCount"], batch["failedRecordCount"]) == (4, 3)
    assert reasons(client, headers, batch["id"]) == {
        1: ["timestamp: is required"],
        2: ["_id: is required"],
        3: ["timestamp: is required"],
    }
    ok = ingest(client, headers, ds, json_lines({"_id": "e5", "timestamp": "2025-01-01T00:00:00+01:00"}))
    assert ok["status"] == "success", ok
    [row] = stored(settings, creds, ds)
    assert row["timestamp"] == dt.datetime(2024, 12, 31, 23, tzinfo=dt.UTC)


# -- identities and the profile ------------------------------------------------------------------


def profile_dataset(client: TestClient, headers: dict[str, str], name: str) -> tuple[str, str]:
    """A profile-enabled dataset whose primary identity is ``_{tenant}.email`` (Email) beside an identityMap."""
    t = f"_{tenant(client, headers)}"
    fg = field_group(client, headers, f"{name} fields", {"email": {"type": "string"}, "tier": {"type": "string"}})
    sid = schema(client, headers, f"{name} schema", PROFILE_CLASS, fg, IDENTITY_MAP_FG, PERSON_FG)
    identity(client, headers, sid, f"/{t}/email", "Email", True)
    enable_profile(client, headers, sid)
    return dataset(client, headers, name, sid, profile=True), t


def test_identities_are_normalized_per_namespace(client: TestClient, headers: dict[str, str]) -> None:
    ds, t = profile_dataset(client, headers, "people")
    record = {
        "_id": "1",
        t: {"email": "  Ann.Lee@Example.COM "},
        "identityMap": {"ECID": [{"id": "12345678901234567890123456789012345678"}], "crmid": [{"id": " C-1 "}]},
    }
    assert ingest(client, headers, ds, json_lines(record))["status"] == "success"
    for ns, value in [("Email", "ann.lee@example.com"), ("email", "ANN.LEE@EXAMPLE.COM"), ("CRMID", "C-1")]:
        entity = entity_of(lookup(client, headers, ns, value))
        assert entity["entity"]["identityMap"] == {
            "CRMID": [{"id": "C-1"}],
            "ECID": [{"id": "12345678901234567890123456789012345678"}],
            "Email": [{"id": "ann.lee@example.com"}],
        }
    # The record's own field keeps what was sent; only the identity graph is normalized.
    assert entity["entity"][t]["email"] == "  Ann.Lee@Example.COM "


def test_an_invalid_identity_fails_its_record_and_its_lookup(client: TestClient, headers: dict[str, str]) -> None:
    ds, t = profile_dataset(client, headers, "people")
    records = json_lines(
        {"_id": "1", t: {"email": "ok@example.com"}, "identityMap": {"ECID": [{"id": "1234"}]}},
        {"_id": "2", t: {"email": "not-an-email"}},
        {"_id": "3", t: {"email": "x@example.com"}, "identityMap": {"Loyalty": [{"id": "L-1"}]}},
        {"_id": "4"},
    )
    batch = ingest(client, headers, ds, records)
    assert batch["status"] == "failed" and batch["failedRecordCount"] == 4
    assert reasons(client, headers, batch["id"]) == {
        1: ["identityMap.ECID: 1234 is not an ECID (38 digits) (namespace ECID)"],
        2: [f"{t}.email: not-an-email is not a valid email address (namespace Email)"],
        3: ["identityMap.Loyalty: is not an identity namespace"],
        4: ["the record has no identity (a profile-enabled dataset needs one)"],
    }
    assert_problem(lookup(client, headers, "ECID", "1234"), 400, "100910-400", "entityId", "'1234'", "ECID")
    assert_problem(lookup(client, headers, "Email", "ok@example.com"), 404, "100940-404", "ok@example.com")


def test_a_dataset_precedence_policy_picks_the_value_of_the_first_dataset(
    client: TestClient, headers: dict[str, str]
) -> None:
    crm, t = profile_dataset(client, headers, "crm")
    schema_id = client.get(f"{CATALOG}/dataSets/{crm}", headers=headers).json()[crm]["schemaRef"]["id"]
    loyalty = dataset(client, headers, "loyalty", schema_id, profile=True)

    def rec(n: int, tier: str) -> bytes:
        return json_lines({"_id": str(n), t: {"email": "kim@example.com", "tier": tier}})

    assert ingest(client, headers, loyalty, rec(1, "gold"))["status"] == "success"
    assert ingest(client, headers, crm, rec(2, "bronze"))["status"] == "success"
    for order, tier, record_id in [([loyalty, crm], "gold", "1"), ([crm, loyalty], "bronze", "2")]:
        policy = client.post(
            MP,
            json={
                "name": f"{tier} first",
                "identityGraph": {"type": "pdg"},
                "attributeMerge": {"type": "dataSetPrecedence", "order": order},
                "schema": {"name": "_xdm.context.profile"},
            },
            headers=headers,
        )
        assert policy.status_code == 200, policy.text
        got = entity_of(lookup(client, headers, "Email", "kim@example.com", mergePolicyId=policy.json()["id"]))
        assert (got["entity"][t]["tier"], got["entity"]["_id"]) == (tier, record_id)
        assert got["mergePolicy"] == {"id": policy.json()["id"]}
        assert got["sources"] == sorted([crm, loyalty])
    assert_problem(
        lookup(client, headers, "Email", "kim@example.com", mergePolicyId="nope"), 404, "100940-404", "'nope'"
    )


def test_the_newest_batch_wins_under_timestamp_ordering(
    client: TestClient, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ds, t = profile_dataset(client, headers, "crm")
    # Two batches in the same second (frozen), the older one with the larger id.
    newer, older = sorted([create_batch(client, headers, ds), create_batch(client, headers, ds)])
    frozen = int(dt.datetime.now(dt.UTC).timestamp())
    monkeypatch.setattr("audiencehub.services.batch_ingestion.now", lambda: frozen)
    for batch_id, tier in [(older, "gold"), (newer, "silver")]:
        body = json_lines({"_id": tier, t: {"email": "kim@example.com", "tier": tier}})
        assert put(client, headers, batch_id, ds, "a.json", body).status_code == 200
        assert client.post(f"{IMPORT}/batches/{batch_id}?action=COMPLETE", headers=headers).status_code == 200
        assert finished(client, headers, batch_id)["status"] == "success"
    got = entity_of(lookup(client, headers, "Email", "kim@example.com"))
    assert got["entity"][t]["tier"] == "silver"


def test_fields_keeps_the_named_top_level_fields(client: TestClient, headers: dict[str, str]) -> None:
    ds, t = profile_dataset(client, headers, "people")
    record = {"_id": "1", t: {"email": "lee@example.com", "tier": "gold"}, "person": {"name": {"firstName": "Lee"}}}
    assert ingest(client, headers, ds, json_lines(record))["status"] == "success"
    entity = entity_of(lookup(client, headers, "Email", "lee@example.com", fields=f"person, {t}"))
    assert entity["entity"] == {
        "person": {"name": {"firstName": "Lee"}},
        t: {"email": "lee@example.com", "tier": "gold"},
    }


def test_fields_takes_dotted_paths_as_aep_documents(client: TestClient, headers: dict[str, str]) -> None:
    ds, t = profile_dataset(client, headers, "people")
    record = {
        "_id": "1",
        t: {"email": "lee@example.com", "tier": "gold"},
        "person": {"name": {"firstName": "Lee"}, "gender": "female"},
    }
    assert ingest(client, headers, ds, json_lines(record))["status"] == "success"
    entity = entity_of(lookup(client, headers, "Email", "lee@example.com", fields=f"person.name,{t}.tier"))
    assert entity["entity"] == {"person": {"name": {"firstName": "Lee"}}, t: {"tier": "gold"}}


def test_deleting_a_dataset_while_its_batch_processes_leaves_nothing(
    client: TestClient,
    headers: dict[str, str],
    settings: Settings,
    creds: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ds, t = profile_dataset(client, headers, "doomed")
    container = client.app.state.container  # type: ignore[attr-defined]
    batches, profiles = container.batches, container.batches._profiles
    done = threading.Event()

    class DeleteFirst:
        """The profile store, except that the dataset is deleted (over HTTP's service) just before the write."""

        def __getattr__(self, name: str) -> Any:
            return getattr(profiles, name)

        def apply_fragments(self, scope: Any, batch: Any) -> Any:
            container.catalog.delete_dataset(scope, ds)
            return profiles.apply_fragments(scope, batch)

    real_finish = batches._finish

    def finish(*args: Any, **kwargs: Any) -> None:
        try:
            real_finish(*args, **kwargs)
        finally:
            done.set()

    monkeypatch.setattr(batches, "_profiles", DeleteFirst())
    monkeypatch.setattr(batches, "_finish", finish)
    batch_id = create_batch(client, headers, ds)
    assert (
        put(client, headers, batch_id, ds, "a.json", json_lines({"_id": "1", t: {"email": "z@x.com"}})).status_code
        == 200
    )
    assert client.post(f"{IMPORT}/batches/{batch_id}?action=COMPLETE", headers=headers).status_code == 200
    assert done.wait(30), "the batch job never finished"
    assert_problem(client.get(f"{CATALOG}/dataSets/{ds}", headers=headers), 404, "100940-404")
    assert_problem(client.get(f"{CATALOG}/batches/{batch_id}", headers=headers), 404, "100940-404")
    assert not dataset_dir(settings, creds, ds).exists()
    assert_problem(lookup(client, headers, "Email", "z@x.com"), 404, "100940-404")


# -- another sandbox -----------------------------------------------------------------------------


def test_batch_ids_of_another_sandbox_answer_404_everywhere(
    client: TestClient, headers: dict[str, str], dev_headers: dict[str, str]
) -> None:
    d = Plain(client, headers)
    loading = create_batch(client, headers, d.id)
    failed = ingest(client, headers, d.id, json_lines(d.rec(1, count="x")))
    assert failed["status"] == "failed"
    other = dev_headers
    for batch_id in (loading, failed["id"]):
        assert_problem(client.get(f"{CATALOG}/batches/{batch_id}", headers=other), 404, "100940-404", batch_id)
        assert_problem(put(client, other, batch_id, d.id, "x.json", b"{}"), 404, "100940-404", batch_id)
        for action in ("COMPLETE", "ABORT"):
            resp = client.post(f"{IMPORT}/batches/{batch_id}?action={action}", headers=other)
            assert_problem(resp, 404, "100940-404", batch_id)
        assert_problem(client.get(f"{EXPORT}/batches/{batch_id}/failed", headers=other), 404, "100940-404")
        assert_problem(
            client.get(f"{EXPORT}/batches/{batch_id}/failed", params={"path": "failed_records_0.json"}, headers=other),
            404,
            "100940-404",
        )
    assert client.get(f"{CATALOG}/batches", params={"dataSet": d.id}, headers=other).json() == {}
    assert client.get(f"{CATALOG}/batches", headers=other).json() == {}
    # Nothing changed for the owner.
    assert client.get(f"{CATALOG}/batches/{loading}", headers=headers).json()[loading]["status"] == "loading"
    assert len(failed_records(client, headers, failed["id"])) == 1
