"""The Identity Service namespace API: standard and custom namespaces, and custom ones in external audiences."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.domain.namespaces import CUSTOM_ID_START, STANDARD_NAMESPACES, IdType, Rule
from audiencehub.metadata.store import Scope
from tests.api.support import assert_problem, csv_bytes, members, run_errors
from tests.conftest import EA, create_audience, run_and_wait, seed_audience, upload

NS = "/data/core/idnamespace/identities"
SEED_000 = {
    "name": "Acme DMP segments",
    "code": "AcmeSegments",
    "description": "Segments imported from the Acme DMP",
    "idType": "NON_PEOPLE",
}
ANSWER_KEYS = {
    "id",
    "code",
    "name",
    "description",
    "idType",
    "status",
    "custom",
    "namespaceType",
    "createTime",
    "updateTime",
}


def create_ns(client: TestClient, headers: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = client.post(NS, json=body or SEED_000, headers=headers)
    assert resp.status_code == 200, resp.text
    created: dict[str, Any] = resp.json()
    return created


def listed(client: TestClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    resp = client.get(NS, headers=headers)
    assert resp.status_code == 200, resp.text
    return {ns["code"]: ns for ns in resp.json()}


# -- standard namespaces ---------------------------------------------------------------------------


def test_the_list_holds_the_standard_namespaces_with_aep_ids(
    shared_client: TestClient, shared_headers: dict[str, str]
) -> None:
    found = listed(shared_client, shared_headers)
    expected_ids = {"CORE": 0, "ECID": 4, "Email": 6, "Phone": 7, "WAID": 8, "TNTID": 9, "AdCloud": 411}
    expected_ids |= {"GAID": 20914, "IDFA": 20915}
    for code, ns_id in expected_ids.items():
        assert found[code]["id"] == ns_id, found[code]
    for ns in STANDARD_NAMESPACES:
        body = found[ns.code]
        assert set(body) == ANSWER_KEYS, body
        assert body["custom"] is False and body["namespaceType"] == "Standard" and body["status"] == "ACTIVE"
        assert body["idType"] == ns.id_type.value
        assert isinstance(body["createTime"], int) and body["createTime"] > 10**12, "epoch milliseconds"
    assert found["Email"]["idType"] == "EMAIL" and found["ECID"]["idType"] == "COOKIE"
    assert found["ECID"]["createTime"] == 1495153678000, "AEP's documented answer"


def test_standard_ids_and_codes_are_unique() -> None:
    assert len({ns.id for ns in STANDARD_NAMESPACES}) == len(STANDARD_NAMESPACES)
    assert len({ns.code.lower() for ns in STANDARD_NAMESPACES}) == len(STANDARD_NAMESPACES)
    assert all(ns.id < CUSTOM_ID_START for ns in STANDARD_NAMESPACES)


def test_get_a_standard_namespace_by_its_id(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    resp = shared_client.get(f"{NS}/6", headers=shared_headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["code"] == "Email" and resp.json()["custom"] is False


@pytest.mark.parametrize("given", ["Email", "6a", "-6", " ", "6.0"])
def test_the_id_in_the_path_must_be_numeric(
    shared_client: TestClient, shared_headers: dict[str, str], given: str
) -> None:
    resp = shared_client.get(f"{NS}/{given}", headers=shared_headers)
    assert_problem(resp, 400, "100910-400", "ID", repr(given))


def test_an_unknown_id_is_404(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    resp = shared_client.get(f"{NS}/{CUSTOM_ID_START + 999}", headers=shared_headers)
    assert_problem(resp, 404, "100940-404", str(CUSTOM_ID_START + 999), "'prod'")


def test_the_list_needs_credentials(shared_client: TestClient) -> None:
    assert_problem(shared_client.get(NS), 401, "100920-401")


# -- custom namespaces -----------------------------------------------------------------------------


def test_create_a_non_people_namespace_as_seed_000_does(client: TestClient, headers: dict[str, str]) -> None:
    before = int(time.time() * 1000)
    created = create_ns(client, headers)
    after = int(time.time() * 1000)
    assert set(created) == ANSWER_KEYS
    assert created["id"] == CUSTOM_ID_START
    assert {k: created[k] for k in ("code", "name", "description", "idType")} == SEED_000
    assert created["custom"] is True and created["namespaceType"] == "Custom" and created["status"] == "ACTIVE"
    assert before <= created["createTime"] == created["updateTime"] <= after
    assert listed(client, headers)["AcmeSegments"] == created
    got = client.get(f"{NS}/{created['id']}", headers=headers)
    assert got.status_code == 200 and got.json() == created


def test_ids_count_up_and_id_type_is_answered_in_capitals(client: TestClient, headers: dict[str, str]) -> None:
    first = create_ns(client, headers)
    second = create_ns(client, headers, {"name": "Loyalty Member", "code": "Loyalty", "idType": "Cross_device"})
    assert second["id"] == first["id"] + 1
    assert second["idType"] == "CROSS_DEVICE"
    assert second["description"] == ""


@pytest.mark.parametrize("code", ["Acmesegments", "ACMESEGMENTS", "AcmeSegments"])
def test_a_code_taken_in_any_case_is_409(client: TestClient, headers: dict[str, str], code: str) -> None:
    first = create_ns(client, headers)
    resp = client.post(NS, json=dict(SEED_000, code=code, name="again"), headers=headers)
    assert_problem(resp, 409, "100950-409", "code", repr(code), "'AcmeSegments'", str(first["id"]))
    assert [c for c in listed(client, headers) if c.lower() == "acmesegments"] == ["AcmeSegments"]


@pytest.mark.parametrize(("code", "standard"), [("EMAIL", "Email"), ("ecid", "ECID"), ("phone_e.164", "Phone_E.164")])
def test_a_standard_code_in_other_case_is_409(
    shared_client: TestClient, shared_headers: dict[str, str], code: str, standard: str
) -> None:
    resp = shared_client.post(NS, json=dict(SEED_000, code=code), headers=shared_headers)
    assert_problem(resp, 409, "100950-409", "code", repr(code), repr(standard))
    assert not [ns for ns in listed(shared_client, shared_headers).values() if ns["custom"]]


@pytest.mark.parametrize("id_type", ["FAX", "people", "", 3, None])
def test_a_bad_id_type_is_400_naming_it(
    shared_client: TestClient, shared_headers: dict[str, str], id_type: object
) -> None:
    resp = shared_client.post(NS, json=dict(SEED_000, idType=id_type), headers=shared_headers)
    body = assert_problem(resp, 400, "100910-400", "idType", "NON_PEOPLE")
    if id_type is not None:
        assert repr(id_type) in body["detail"]
    assert "AcmeSegments" not in listed(shared_client, shared_headers)


@pytest.mark.parametrize("code", ["", "1abc", "has space", "Émile", "a/b", "x" * 129, 7])
def test_a_bad_code_is_400_naming_it(shared_client: TestClient, shared_headers: dict[str, str], code: object) -> None:
    resp = shared_client.post(NS, json=dict(SEED_000, code=code), headers=shared_headers)
    body = assert_problem(resp, 400, "100910-400", "code:", "ASCII letter")
    assert repr(code)[:40] in body["detail"]


@pytest.mark.parametrize("code", ["Loyalty_ID", "crm.id", "Seg-2", "A"])
def test_codes_may_hold_underscores_dots_and_hyphens(client: TestClient, headers: dict[str, str], code: str) -> None:
    assert create_ns(client, headers, dict(SEED_000, code=code))["code"] == code


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"name": None}, "name"),
        ({"name": "  "}, "name"),
        ({"name": "n" * 257}, "name"),
        ({"code": None}, "code"),
        ({"description": 5}, "description"),
        ({"colour": "red"}, "colour"),
    ],
    ids=["no-name", "blank-name", "long-name", "no-code", "description-number", "unknown-key"],
)
def test_other_bad_bodies_are_400_naming_the_field(
    shared_client: TestClient, shared_headers: dict[str, str], change: dict[str, Any], needle: str
) -> None:
    body = {k: v for k, v in dict(SEED_000, **change).items() if v is not None}
    assert_problem(shared_client.post(NS, json=body, headers=shared_headers), 400, "100910-400", needle)


def test_a_body_that_is_not_an_object_is_400(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    assert_problem(shared_client.post(NS, json=[SEED_000], headers=shared_headers), 400, "100910-400", "body")
    assert_problem(shared_client.post(NS, content=b"{", headers=shared_headers), 400, "100910-400", "JSON")


# -- update ----------------------------------------------------------------------------------------


def test_put_replaces_name_and_description(client: TestClient, headers: dict[str, str]) -> None:
    created = create_ns(client, headers)
    body = {"name": "Acme segments (v2)", "code": "acmesegments", "idType": "Non_people", "description": "v2"}
    resp = client.put(f"{NS}/{created['id']}", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    [updated] = resp.json()  # the spec answers PUT with an array
    assert updated["name"] == "Acme segments (v2)" and updated["description"] == "v2"
    assert updated["code"] == "AcmeSegments" and updated["idType"] == "NON_PEOPLE"
    assert updated["createTime"] == created["createTime"] <= updated["updateTime"]
    assert client.get(f"{NS}/{created['id']}", headers=headers).json() == updated


def test_put_takes_back_what_get_answered(client: TestClient, headers: dict[str, str]) -> None:
    created = create_ns(client, headers)
    body = dict(client.get(f"{NS}/{created['id']}", headers=headers).json(), name="renamed")
    resp = client.put(f"{NS}/{created['id']}", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()[0]["name"] == "renamed" and resp.json()[0]["description"] == SEED_000["description"]


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"code": "Other"}, ["code", "'AcmeSegments'", "'Other'"]),
        ({"idType": "COOKIE"}, ["idType", "NON_PEOPLE", "'COOKIE'"]),
        ({"idType": "FAX"}, ["idType", "'FAX'"]),
        ({"name": ""}, ["name"]),
    ],
    ids=["code", "idType", "bad-idType", "blank-name"],
)
def test_put_cannot_change_code_or_id_type(
    client: TestClient, headers: dict[str, str], change: dict[str, Any], needles: list[str]
) -> None:
    created = create_ns(client, headers)
    resp = client.put(f"{NS}/{created['id']}", json=dict(SEED_000, **change), headers=headers)
    assert_problem(resp, 400, "100910-400", *needles)
    assert client.get(f"{NS}/{created['id']}", headers=headers).json() == created


def test_put_on_a_standard_namespace_is_400(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    body = {"name": "Mine now", "code": "Email", "idType": "EMAIL"}
    assert_problem(shared_client.put(f"{NS}/6", json=body, headers=shared_headers), 400, "100910-400", "6", "'Email'")
    assert listed(shared_client, shared_headers)["Email"]["name"] == "Email"


def test_put_on_an_unknown_id_is_404(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    resp = shared_client.put(f"{NS}/{CUSTOM_ID_START + 77}", json=SEED_000, headers=shared_headers)
    assert_problem(resp, 404, "100940-404", str(CUSTOM_ID_START + 77))


# -- isolation -------------------------------------------------------------------------------------


@pytest.fixture(params=["other_org", "other_sandbox"])
def outsider(request: pytest.FixtureRequest) -> dict[str, str]:
    name = "other_org_headers" if request.param == "other_org" else "dev_headers"
    found: dict[str, str] = request.getfixturevalue(name)
    return found


def test_another_sandbox_neither_sees_nor_changes_a_custom_namespace(
    client: TestClient, headers: dict[str, str], outsider: dict[str, str]
) -> None:
    created = create_ns(client, headers)
    assert_problem(client.get(f"{NS}/{created['id']}", headers=outsider), 404, "100940-404")
    body = dict(SEED_000, name="hijacked")
    assert_problem(client.put(f"{NS}/{created['id']}", json=body, headers=outsider), 404, "100940-404")
    assert "AcmeSegments" not in listed(client, outsider)
    assert "Email" in listed(client, outsider)
    assert client.get(f"{NS}/{created['id']}", headers=headers).json() == created
    # Codes and ids are the sandbox's own: the outsider may take the same code.
    theirs = create_ns(client, outsider, dict(SEED_000, idType="CROSS_DEVICE"))
    assert theirs["idType"] == "CROSS_DEVICE" and listed(client, headers)["AcmeSegments"]["idType"] == "NON_PEOPLE"


def test_resolve_and_list_are_per_sandbox(client: TestClient, headers: dict[str, str], creds: dict[str, str]) -> None:
    create_ns(client, headers)
    service = client.app.state.container.namespaces  # type: ignore[attr-defined]
    prod, dev = Scope(creds["org_id"], "prod"), Scope(creds["org_id"], "dev")
    found = service.resolve(prod, " acmesegments ")
    assert (found.code, found.id, found.id_type, found.rule, found.custom) == (
        "AcmeSegments",
        CUSTOM_ID_START,
        IdType.NON_PEOPLE,
        Rule.TEXT,
        True,
    )
    assert service.resolve(prod, "EMAIL").code == "Email"
    assert service.resolve(dev, "AcmeSegments") is None
    assert service.resolve(prod, "Nope") is None
    assert [ns.code for ns in service.list(prod)][-1] == "AcmeSegments"
    assert "AcmeSegments" not in [ns.code for ns in service.list(dev)]


# -- external audiences with a custom namespace --------------------------------------------------


def _audience_with(client: TestClient, headers: dict[str, str], identity_ns: str, path: str) -> str:
    fields = [{"name": "id", "type": "string", "identityNs": identity_ns}, {"name": "note", "type": "string"}]
    return create_audience(client, headers, seed_audience(path=path, name=f"with {identity_ns}", fields=fields))


def test_an_email_namespace_of_the_sandbox_checks_and_lower_cases_emails(
    client: TestClient, headers: dict[str, str]
) -> None:
    create_ns(client, headers, {"name": "Loyalty email", "code": "LoyaltyEmail", "idType": "EMAIL"})
    path = "custom/loyalty.csv"
    upload(client, headers, path, csv_bytes(["id", "note"], [[" Alice@Example.COM ", "a"], ["not-an-email", "b"]]))
    audience_id = _audience_with(client, headers, "loyaltyemail", path)
    audience = client.get(f"{EA}/{audience_id}", headers=headers).json()
    assert audience["fields"][0] == {"name": "id", "type": "string", "identityNs": "LoyaltyEmail"}
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, "errorThresholdPercent": 100})
    assert run["status"] == "SUCCESS", run
    found = members(client, headers, audience_id)
    assert list(found) == ["alice@example.com"]
    assert found["alice@example.com"]["identities"] == [{"namespace": "LoyaltyEmail", "id": "alice@example.com"}]
    [error] = run_errors(client, headers, audience_id, run["runId"])
    assert (error["value"], error["reason"]) == ("not-an-email", "is not a valid email address")


def test_a_non_people_namespace_keeps_values_as_text(client: TestClient, headers: dict[str, str]) -> None:
    create_ns(client, headers)
    path = "custom/segments.csv"
    upload(client, headers, path, csv_bytes(["id", "note"], [["  Seg-ABC ", "a"], ["seg-abc", "b"], ["", "c"]]))
    audience_id = _audience_with(client, headers, "AcmeSegments", path)
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 0, "errorThresholdPercent": 100})
    assert run["status"] == "SUCCESS", run
    assert sorted(members(client, headers, audience_id)) == ["Seg-ABC", "seg-abc"], "trimmed, case kept"
    [error] = run_errors(client, headers, audience_id, run["runId"])
    assert error["record"] == "3" and "empty" in error["reason"], error


def test_the_create_answer_echoes_the_canonical_code_and_nothing_internal(
    client: TestClient, headers: dict[str, str]
) -> None:
    create_ns(client, headers)
    fields = [{"name": "id", "type": "string", "identityNs": "acmeSEGMENTS"}]
    resp = client.post(EA + "/", json=seed_audience(fields=fields), headers=headers)
    assert resp.status_code == 202, resp.text
    assert resp.json()["operationDetails"]["fields"] == [{"name": "id", "type": "string", "identityNs": "AcmeSegments"}]
    assert "__ah" not in resp.text


def test_another_sandboxs_namespace_is_unknown_to_external_audiences(
    client: TestClient, headers: dict[str, str], dev_headers: dict[str, str]
) -> None:
    create_ns(client, dev_headers)
    fields = [{"name": "id", "type": "string", "identityNs": "AcmeSegments"}, {"name": "x", "type": "string"}]
    resp = client.post(EA + "/", json=seed_audience(fields=fields), headers=headers)
    body = assert_problem(resp, 400, "100910-400")
    assert body["detail"] == "fields[0].identityNs: identityNs 'AcmeSegments' is not a known identity namespace"


def test_the_stored_namespace_key_cannot_be_sent(client: TestClient, headers: dict[str, str]) -> None:
    created = create_ns(client, headers, dict(SEED_000, idType="EMAIL"))
    for value in ({"id": created["id"], "idType": "EMAIL"}, "x"):
        field = {"name": "id", "type": "string", "identityNs": "AcmeSegments", "__ah_namespace": value}
        resp = client.post(EA + "/", json=seed_audience(fields=[field]), headers=headers)
        assert_problem(resp, 400, "100910-400", "fields[0]", "__ah_namespace", "not a field that can be sent here")
