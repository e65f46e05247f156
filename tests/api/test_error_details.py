"""Validation details name the field and the value once: no pasted request body, no repeated or doubled value."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.api.errors import describe_validation
from tests.api.support import assert_problem
from tests.conftest import EA, seed_audience


def _detail(client: TestClient, headers: dict[str, str], body: Any) -> str:
    resp = client.post(EA + "/", json=body, headers=headers)
    detail: str = assert_problem(resp, 400, "100910-400")["detail"]
    return detail


def test_a_model_level_error_does_not_paste_the_body(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    body = seed_audience(name="Pasted body")
    for field in body["fields"]:
        field.pop("identityNs", None)
    detail = _detail(shared_client, shared_headers, body)
    assert detail == "body: fields: at least one field must name an identityNs (e.g. Email, ECID, CRMID)"


def test_a_nested_model_level_error_does_not_paste_the_object(
    shared_client: TestClient, shared_headers: dict[str, str]
) -> None:
    body = seed_audience()
    body["sourceSpec"]["params"]["cloudType"] = "S3"
    detail = _detail(shared_client, shared_headers, body)
    assert detail == "sourceSpec.params: baseConnectionId is required when cloudType is S3"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("x y", "sourceSpec.params.path: path 'x y' must not contain spaces"),
        ("a\\b", "sourceSpec.params.path: path 'a\\b' must not contain backslashes or control characters"),
        ("a\tb", "sourceSpec.params.path: path 'a\\tb' must not contain spaces"),
        ("../x", "sourceSpec.params.path: path '../x' must not contain '.' or '..' segments"),
    ],
    ids=["space", "backslash", "tab", "dot-dot"],
)
def test_a_path_error_names_the_path_once(
    shared_client: TestClient, shared_headers: dict[str, str], path: str, expected: str
) -> None:
    assert _detail(shared_client, shared_headers, seed_audience(path=path)) == expected


def test_a_message_that_quotes_the_value_is_not_followed_by_it(
    shared_client: TestClient, shared_headers: dict[str, str]
) -> None:
    body = seed_audience()
    body["fields"][0]["identityNs"] = "nope"
    detail = _detail(shared_client, shared_headers, body)
    assert detail == "fields[0].identityNs: identityNs 'nope' is not a known identity namespace"
    detail = _detail(shared_client, shared_headers, seed_audience(ttlInDays="abc"))
    assert detail.count("abc") == 1 and "(got" not in detail


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (seed_audience(originName="UPLOAD"), "originName: Input should be 'CUSTOM_UPLOAD' (got 'UPLOAD')"),
        (seed_audience(name="   "), "name: name must not be blank (got '   ')"),
        (seed_audience(ttlInDays=0), "ttlInDays: Input should be greater than or equal to 1 (got 0)"),
        (seed_audience(fields="x"), "fields: Input should be a valid list (got 'x')"),
    ],
    ids=["enum", "blank", "number", "type"],
)
def test_a_value_the_message_does_not_show_is_still_given(
    shared_client: TestClient, shared_headers: dict[str, str], body: dict[str, Any], expected: str
) -> None:
    assert _detail(shared_client, shared_headers, body) == expected


def test_a_query_value_is_given(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    resp = shared_client.get(EA + "/", params={"limit": "many"}, headers=shared_headers)
    assert_problem(resp, 400, "100910-400", "limit: ", "(got 'many')")


# -- describe_validation on its own ------------------------------------------------------------------


def _one(**err: Any) -> str:
    return describe_validation([{"type": "value_error", **err}])


def test_the_body_itself_is_never_pasted() -> None:
    assert _one(loc=("body",), msg="Value error, broken", input={"a": 1}) == "body: broken"
    assert _one(loc=("body",), msg="Input should be a valid dictionary", input=[1, 2]) == (
        "body: Input should be a valid dictionary"
    )


@pytest.mark.parametrize(
    ("msg", "value", "expected"),
    [
        ("path 'x y' is bad", "x y", "p: path 'x y' is bad"),
        ('path "it\'s" is bad', "it's", 'p: path "it\'s" is bad'),
        ("namespace email2 is unknown", "email2", "p: namespace email2 is unknown"),
        ("must be at most 10, got 11", 11, "p: must be at most 10, got 11"),
        ("must be at most 110", 11, "p: must be at most 110 (got 11)"),
        ("must be at least 1.5", 1, "p: must be at least 1.5 (got 1)"),
        ("Input should be a valid integer", "a", "p: Input should be a valid integer (got 'a')"),
        ("is too short", "", "p: is too short (got '')"),
        ("bad", "a\\b", "p: bad (got 'a\\b')"),
        ("bad", "a\nb", "p: bad (got 'a\\nb')"),
        ("bad", {"nested": "object"}, "p: bad"),
        ("bad", ["x"], "p: bad (got ['x'])"),
    ],
)
def test_the_value_is_given_once(msg: str, value: Any, expected: str) -> None:
    assert _one(loc=("body", "p"), msg=msg, input=value) == expected


def test_missing_and_extra_fields() -> None:
    errors = [
        {"type": "missing", "loc": ("body", "name"), "msg": "Field required", "input": {}},
        {"type": "extra_forbidden", "loc": ("body", "nme"), "msg": "Extra inputs", "input": "x"},
    ]
    assert describe_validation(errors) == "name: is required; nme: is not a field that can be sent here"
