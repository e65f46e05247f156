"""Values through ingestion: type coercion and identity normalization, each case a row of one file.

Each fixture here ingests one file into the module's shared app (see tests/api/conftest.py) with
errorThresholdPercent 100, and every test checks what became of its own rows: in the dataset,
in the members and in the run's errors file.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import csv_bytes, dataset_rows, members, run_errors
from tests.conftest import create_audience, run_and_wait, seed_audience, upload


@dataclass
class Ingested:
    audience_id: str
    run: dict[str, Any]
    members: dict[str, dict[str, Any]]
    errors: list[dict[str, str]]
    rows: list[dict[str, Any]]
    """The dataset's rows, in file order."""

    def error_for(self, value: str) -> dict[str, str]:
        (found,) = [e for e in self.errors if e["value"] == value]
        return found


def _ingest(
    client: TestClient,
    headers: dict[str, str],
    settings: Settings,
    name: str,
    fields: list[dict[str, Any]],
    content: bytes,
) -> Ingested:
    path = f"values/{name}.csv"
    upload(client, headers, path, content)
    audience_id = create_audience(client, headers, seed_audience(path=path, name=name, fields=fields))
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, "errorThresholdPercent": 100})
    assert run["status"] == "SUCCESS", run
    creds = {"org_id": headers["x-gw-ims-org-id"]}
    return Ingested(
        audience_id,
        run,
        members(client, headers, audience_id),
        run_errors(client, headers, audience_id, run["runId"]),
        dataset_rows(client, headers, settings, creds, audience_id),
    )


# -- types -------------------------------------------------------------------------------------

TYPED_FIELDS = [
    {"name": "email", "type": "string", "identityNs": "Email"},
    {"name": "n", "type": "number"},
    {"name": "l", "type": "long"},
    {"name": "i", "type": "integer"},
    {"name": "d", "type": "date"},
    {"name": "ts", "type": "datetime"},
    {"name": "b", "type": "boolean"},
]
TYPED_HEADER = ["email", "n", "l", "i", "d", "ts", "b"]
GOOD = ["good@example.com", "1.5", "9007199254740993", "42", "2025-05-13", "2025-05-23T20:19:00+00:00", "yes"]
BAD = [
    ("n", "abc", "is not a number"),
    ("n", "1,5", "is not a number"),
    ("n", "NaN", "is not a number"),
    ("n", "Infinity", "is not a number"),
    ("l", "12.5", "is not a long"),
    ("l", "99999999999999999999", "is not a long"),
    ("l", "0x10", "is not a long"),
    ("i", "3000000000", "is not an integer"),
    ("i", "4.2", "is not an integer"),
    ("d", "2025-13-01", "is not a date"),
    ("d", "13/05/2025", "is not a date"),
    ("ts", "yesterday", "is not a datetime"),
    ("b", "maybe", "is not a boolean"),
]
BOOLEANS = [("true", True), ("FALSE", False), ("y", True), ("N", False), ("1", True), ("0", False), (" yes ", True)]


def _row(email: str, **values: str) -> list[str]:
    row = list(GOOD)
    row[0] = email
    for column, value in values.items():
        row[TYPED_HEADER.index(column)] = value
    return row


@pytest.fixture(scope="module")
def typed(shared_client: TestClient, shared_headers: dict[str, str], shared_settings: Settings) -> Ingested:
    """Row 1 good, then one row per BAD case (bad{n}@), one per BOOLEANS word (bool{n}@), then empties."""
    rows = [GOOD]
    rows += [_row(f"bad{n}@example.com", **{column: value}) for n, (column, value, _) in enumerate(BAD)]
    rows += [_row(f"bool{n}@example.com", b=word) for n, (word, _) in enumerate(BOOLEANS)]
    rows += [["empty@example.com", "", "", " ", "", "", ""]]
    return _ingest(shared_client, shared_headers, shared_settings, "typed", TYPED_FIELDS, csv_bytes(TYPED_HEADER, rows))


def test_typed_values_are_coerced_into_the_dataset(typed: Ingested) -> None:
    assert typed.rows[0] == {
        "email": "good@example.com",
        "n": 1.5,
        "l": 9007199254740993,
        "i": 42,
        "d": dt.date(2025, 5, 13),
        "ts": dt.datetime(2025, 5, 23, 20, 19, tzinfo=dt.UTC),
        "b": True,
    }


def test_typed_values_travel_in_the_member_payload(typed: Ingested) -> None:
    assert typed.members["good@example.com"]["payload"] == {
        "n": 1.5,
        "l": 9007199254740993,
        "i": 42,
        "d": "2025-05-13",
        "ts": typed.members["good@example.com"]["payload"]["ts"],
        "b": True,
    }
    assert typed.members["good@example.com"]["payload"]["ts"].startswith("2025-05-23")


def test_typed_run_counts_only_the_bad_rows_as_failed(typed: Ingested) -> None:
    metrics = typed.run["metrics"]
    assert metrics["recordsRead"] == 1 + len(BAD) + len(BOOLEANS) + 1
    assert metrics["recordsFailed"] == len(BAD)
    assert metrics["recordsIngested"] == 1 + len(BOOLEANS) + 1
    assert len(typed.errors) == len(BAD)


@pytest.mark.parametrize("n,column,value,reason", [(n, *case) for n, case in enumerate(BAD)], ids=lambda v: str(v))
def test_bad_typed_value_is_rejected_with_its_line_and_reason(
    typed: Ingested, n: int, column: str, value: str, reason: str
) -> None:
    error = typed.error_for(value)
    record = n + 2  # after the good row
    assert error == {
        "file": "values/typed.csv",
        "record": str(record),
        "line": str(record + 1),
        "column": column,
        "value": value,
        "reason": error["reason"],
    }
    assert error["reason"].startswith(reason)
    assert f"bad{n}@example.com" not in typed.members
    assert all(r["email"] != f"bad{n}@example.com" for r in typed.rows)


@pytest.mark.parametrize("n,word,expected", [(n, *case) for n, case in enumerate(BOOLEANS)], ids=lambda v: str(v))
def test_boolean_word(typed: Ingested, n: int, word: str, expected: bool) -> None:
    assert typed.members[f"bool{n}@example.com"]["payload"]["b"] is expected
    (row,) = [r for r in typed.rows if r["email"] == f"bool{n}@example.com"]
    assert row["b"] is expected


def test_empty_optional_values_are_null_not_errors(typed: Ingested) -> None:
    assert typed.rows[-1] == {
        "email": "empty@example.com",
        "n": None,
        "l": None,
        "i": None,
        "d": None,
        "ts": None,
        "b": None,
    }


# -- identities --------------------------------------------------------------------------------


def _identities(
    client: TestClient, headers: dict[str, str], settings: Settings, namespace: str, values: list[str]
) -> Ingested:
    fields = [{"name": "id", "type": "string", "identityNs": namespace}, {"name": "note", "type": "string"}]
    content = csv_bytes(["id", "note"], [[v, f"row{n}"] for n, v in enumerate(values)])
    return _ingest(client, headers, settings, namespace.lower(), fields, content)


INVALID_EMAILS = ["not-an-email", "a@b", "two@@example.com", "a b@example.com"]


@pytest.fixture(scope="module")
def emails(shared_client: TestClient, shared_headers: dict[str, str], shared_settings: Settings) -> Ingested:
    values = ["  Alice.Smith@Example.COM ", "Bob@Example.com", "bob@example.com ", *INVALID_EMAILS]
    return _identities(shared_client, shared_headers, shared_settings, "Email", values)


def test_email_is_trimmed_and_lower_cased(emails: Ingested) -> None:
    member = emails.members["alice.smith@example.com"]
    assert member["identities"] == [{"namespace": "Email", "id": "alice.smith@example.com"}]
    assert emails.rows[0]["id"] == "alice.smith@example.com"


def test_same_email_in_other_case_is_one_member(emails: Ingested) -> None:
    assert sorted(emails.members) == ["alice.smith@example.com", "bob@example.com"]
    assert emails.run["metrics"]["profilesCreated"] == 2
    assert emails.members["bob@example.com"]["payload"] == {"note": "row2"}, "the last row wins"


@pytest.mark.parametrize("value", INVALID_EMAILS)
def test_invalid_email_is_rejected(emails: Ingested, value: str) -> None:
    assert emails.error_for(value)["reason"] == "is not a valid email address"
    assert emails.error_for(value)["column"] == "id"


PHONES = [
    ("+1 (415) 555-0100", "+14155550100"),
    ("+44 20.7946.0958", "+442079460958"),
    ("+33612345678", "+33612345678"),
]
INVALID_PHONES = ["4155550100", "+0123456789", "+1 415", "+1234567890123456"]


@pytest.fixture(scope="module")
def phones(shared_client: TestClient, shared_headers: dict[str, str], shared_settings: Settings) -> Ingested:
    values = [raw for raw, _ in PHONES] + INVALID_PHONES
    return _identities(shared_client, shared_headers, shared_settings, "Phone", values)


@pytest.mark.parametrize("value,normalized", PHONES)
def test_phone_is_normalized_to_e164(phones: Ingested, value: str, normalized: str) -> None:
    assert phones.members[normalized]["identities"] == [{"namespace": "Phone", "id": normalized}]


@pytest.mark.parametrize("value", INVALID_PHONES)
def test_invalid_phone_is_rejected(phones: Ingested, value: str) -> None:
    assert phones.error_for(value)["reason"].startswith("is not an E.164 phone number")


def test_only_valid_phones_are_members(phones: Ingested) -> None:
    assert sorted(phones.members) == sorted(normalized for _, normalized in PHONES)


ECID_GOOD, ECID_SHORT, ECID_LETTER = "1" * 38, "1" * 37, "1" * 37 + "x"


@pytest.fixture(scope="module")
def ecids(shared_client: TestClient, shared_headers: dict[str, str], shared_settings: Settings) -> Ingested:
    values = [ECID_GOOD, ECID_SHORT, ECID_LETTER, " " + "2" * 38 + " "]
    return _identities(shared_client, shared_headers, shared_settings, "ECID", values)


def test_ecid_of_38_digits_is_a_member(ecids: Ingested) -> None:
    assert sorted(ecids.members) == [ECID_GOOD, "2" * 38]


@pytest.mark.parametrize("value", [ECID_SHORT, ECID_LETTER])
def test_ecid_not_38_digits_is_rejected(ecids: Ingested, value: str) -> None:
    assert ecids.error_for(value)["reason"] == "is not an ECID (38 digits)"


DIGEST = "AB" * 32


@pytest.fixture(scope="module")
def digests(shared_client: TestClient, shared_headers: dict[str, str], shared_settings: Settings) -> Ingested:
    return _identities(
        shared_client, shared_headers, shared_settings, "Email_LC_SHA256", [DIGEST, "ab" * 31, "zz" * 32]
    )


def test_sha256_digest_is_lower_cased(digests: Ingested) -> None:
    assert list(digests.members) == [DIGEST.lower()]
    assert digests.members[DIGEST.lower()]["identities"] == [{"namespace": "Email_LC_SHA256", "id": DIGEST.lower()}]


@pytest.mark.parametrize("value", ["ab" * 31, "zz" * 32])
def test_sha256_not_64_hex_is_rejected(digests: Ingested, value: str) -> None:
    assert digests.error_for(value)["reason"].startswith("is not a SHA-256 digest")


@pytest.fixture(scope="module")
def two_identities(shared_client: TestClient, shared_headers: dict[str, str], shared_settings: Settings) -> Ingested:
    """Identities of its own: the sandbox's profiles are shared by every audience of this module."""
    fields = [
        {"name": "email", "type": "string", "identityNs": "Email"},
        {"name": "phone", "type": "string", "identityNs": "Phone"},
    ]
    content = csv_bytes(["email", "phone"], [["a@example.com", "+1 415 555 0177"], ["", "+14155550199"], ["", ""]])
    return _ingest(shared_client, shared_headers, shared_settings, "two_identities", fields, content)


def test_second_identity_joins_the_profile_of_the_first(two_identities: Ingested) -> None:
    assert two_identities.members["a@example.com"]["identities"] == [
        {"namespace": "Email", "id": "a@example.com"},
        {"namespace": "Phone", "id": "+14155550177"},
    ]


def test_row_with_only_its_second_identity_resolves_by_it(two_identities: Ingested) -> None:
    assert two_identities.members["+14155550199"]["identities"] == [{"namespace": "Phone", "id": "+14155550199"}]


def test_row_without_any_identity_is_rejected(two_identities: Ingested) -> None:
    (error,) = two_identities.errors
    assert (error["line"], error["column"]) == ("4", "email,phone")
    assert error["reason"] == "no identity: every identity field is empty"
