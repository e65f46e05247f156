"""Field names that are also the names of internal columns are ordinary fields; ``__`` names are refused.

The validated files, the profile store's temp tables and its membership tables all have columns of
their own (a check index, namespace, identity, profile id, status, ...). Those carry the prefix
``__ah_``, which field names cannot have, so that a field called ``status`` or ``id`` keeps its values.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from audiencehub.config import Settings
from tests.api.support import assert_problem, csv_bytes, dataset_rows, members
from tests.conftest import EA, create_audience, run_and_wait, seed_audience, upload

PATH = "names/list.csv"

# Every name an internal column had, or has without its prefix, plus the delete flag field.
FIELDS: list[dict[str, Any]] = [
    {"name": "email", "type": "string", "identityNs": "Email"},
    {"name": "status", "type": "string"},
    {"name": "id", "type": "string"},
    {"name": "ns", "type": "string"},
    {"name": "profile_id", "type": "long"},
    {"name": "run_id", "type": "string"},
    {"name": "qualified_at", "type": "datetime"},
    {"name": "rn", "type": "integer"},
    {"name": "file_index", "type": "number"},
    {"name": "is_delete", "type": "boolean"},
    {"name": "i0", "type": "string"},
    {"name": "u0", "type": "date"},
    {"name": "is_new", "type": "boolean"},
    {"name": "_check", "type": "string"},
    {"name": "_value", "type": "string"},
    {"name": "file_row_number", "type": "long"},
    {"name": "delete", "type": "number"},
]
HEADER = [f["name"] for f in FIELDS]


def _row(email: str, n: int, *, delete: int = 0) -> list[Any]:
    return [
        email,
        f"status-{n}",
        f"id-{n}",
        f"ns-{n}",
        1000 + n,
        f"run-{n}",
        f"2025-05-2{n}T20:19:00+00:00",
        n,
        n + 0.5,
        "true",  # a field called is_delete is not the delete flag
        f"i0-{n}",
        f"2025-01-0{n}",
        "no",
        f"check-{n}",
        f"value-{n}",
        2000 + n,
        delete,
    ]


def _payload(n: int) -> dict[str, Any]:
    """What the member shows: every field but the identity and the delete flag, with the CSV's values."""
    return {
        "status": f"status-{n}",
        "id": f"id-{n}",
        "ns": f"ns-{n}",
        "profile_id": 1000 + n,
        "run_id": f"run-{n}",
        "qualified_at": f"2025-05-2{n}T20:19:00+00:00",
        "rn": n,
        "file_index": n + 0.5,
        "is_delete": True,
        "i0": f"i0-{n}",
        "u0": f"2025-01-0{n}",
        "is_new": False,
        "_check": f"check-{n}",
        "_value": f"value-{n}",
        "file_row_number": 2000 + n,
    }


def test_fields_named_like_internal_columns_keep_their_values(
    client: TestClient, headers: dict[str, str], settings: Settings, creds: dict[str, str]
) -> None:
    upload(client, headers, PATH, csv_bytes(HEADER, [_row("a@example.com", 1), _row("b@example.com", 2)]))
    audience_id = create_audience(client, headers, seed_audience(path=PATH, name="names", fields=FIELDS))
    run = run_and_wait(client, headers, audience_id)
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["recordsIngested"] == 2
    assert run["metrics"]["membersRealized"] == 2

    found = members(client, headers, audience_id)
    assert set(found) == {"a@example.com", "b@example.com"}
    for email, n in (("a@example.com", 1), ("b@example.com", 2)):
        member = found[email]
        assert member["status"] == "realized"
        assert member["identities"] == [{"namespace": "Email", "id": email}]
        assert member["payload"] == _payload(n)

    rows = sorted(dataset_rows(client, headers, settings, creds, audience_id), key=lambda r: r["email"])
    assert [list(r) for r in rows] == [HEADER, HEADER], "the dataset keeps the field names, in field order"
    assert [(r["email"], r["status"], r["id"], r["ns"], r["profile_id"], r["rn"]) for r in rows] == [
        ("a@example.com", "status-1", "id-1", "ns-1", 1001, 1),
        ("b@example.com", "status-2", "id-2", "ns-2", 1002, 2),
    ]
    assert [(r["_check"], r["_value"], r["file_row_number"], r["is_delete"], r["delete"]) for r in rows] == [
        ("check-1", "value-1", 2001, True, 0.0),
        ("check-2", "value-2", 2002, True, 0.0),
    ]


def test_a_second_run_updates_exits_and_replaces_members_with_such_fields(
    client: TestClient, headers: dict[str, str]
) -> None:
    """The second run of an audience takes the paths that read and rewrite existing memberships."""
    upload(client, headers, PATH, csv_bytes(HEADER, [_row("a@example.com", 1), _row("b@example.com", 2)]))
    audience_id = create_audience(client, headers, seed_audience(path=PATH, name="names", fields=FIELDS))
    assert run_and_wait(client, headers, audience_id)["status"] == "SUCCESS"

    # a changes its payload, b asks to exit (delete = 1), c is new.
    upload(
        client,
        headers,
        PATH,
        csv_bytes(HEADER, [_row("a@example.com", 3), _row("b@example.com", 2, delete=1), _row("c@example.com", 4)]),
    )
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, "differentialIngestion": False})
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["membersExited"] == 1

    found = members(client, headers, audience_id)
    assert {email: m["status"] for email, m in found.items()} == {
        "a@example.com": "realized",
        "b@example.com": "exited",
        "c@example.com": "realized",
    }
    assert found["a@example.com"]["payload"] == _payload(3)
    assert found["c@example.com"]["payload"] == _payload(4)


def test_a_field_name_starting_with_two_underscores_is_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["fields"][1]["name"] = "__x"
    assert_problem(client.post(EA + "/", json=body, headers=headers), 400, "100910-400", "fields[1].name", "'__x'")
    assert client.get(EA + "/", headers=headers).json()["_page"]["totalCount"] == 0


def test_a_field_name_starting_with_the_internal_prefix_is_400(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["fields"].append({"name": "__ah_status", "type": "string"})
    assert_problem(client.post(EA + "/", json=body, headers=headers), 400, "100910-400", "__ah_status", "reserved")


def test_one_leading_underscore_is_still_a_field_name(client: TestClient, headers: dict[str, str]) -> None:
    body = seed_audience()
    body["fields"].append({"name": "_private", "type": "string"})
    assert client.post(EA + "/", json=body, headers=headers).status_code == 202
