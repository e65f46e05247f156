"""The Profile API's merge policies: the default every sandbox has, create, read, update, delete, bulk-get."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audiencehub.errors import NotFound
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import Scope, insert_row
from tests.api.support import assert_problem

MP = "/data/core/ups/config/mergePolicies"
PROFILE = "_xdm.context.profile"


def body(name: str = "Loyalty members", **overrides: Any) -> dict[str, Any]:
    """AEP's create example: a timestamp-ordered policy over no identity graph."""
    data: dict[str, Any] = {
        "name": name,
        "identityGraph": {"type": "none"},
        "attributeMerge": {"type": "timestampOrdered"},
        "schema": {"name": PROFILE},
    }
    data.update(overrides)
    return data


def precedence(*dataset_ids: str) -> dict[str, Any]:
    return {"type": "dataSetPrecedence", "order": list(dataset_ids)}


def add_dataset(client: TestClient, org_id: str, sandbox: str = "prod", name: str = "loyalty") -> str:
    """A row in the datasets table, as the Catalog API or an audience's creation would leave it."""
    dataset_id = uuid.uuid4().hex[:24]
    now = int(time.time() * 1000)
    with client.app.state.container.store.tx() as conn:  # type: ignore[attr-defined]
        insert_row(
            conn,
            t.datasets,
            {
                "id": dataset_id,
                "org_id": org_id,
                "sandbox": sandbox,
                "name": f"{name} {dataset_id}",
                "schema_id": "https://ns.adobe.com/test/schemas/profile",
                "kind": "profile",
                "tags": {},
                "created_at": now,
                "updated_at": now,
            },
        )
    return dataset_id


def create(client: TestClient, headers: dict[str, str], data: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(MP, json=data, headers=headers)
    assert resp.status_code == 200, resp.text
    created: dict[str, Any] = resp.json()
    return created


def get(client: TestClient, headers: dict[str, str], policy_id: str) -> dict[str, Any]:
    resp = client.get(f"{MP}/{policy_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def listing(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    resp = client.get(MP, params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def default_of(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    [policy] = listing(client, headers, default="true")["children"]
    return policy


# -- the default policy ----------------------------------------------------------------------------


def test_a_new_sandbox_lists_its_default_policy(client: TestClient, headers: dict[str, str], creds: dict) -> None:
    before = int(time.time())
    answer = listing(client, headers)
    assert answer["_page"]["totalCount"] == 1 and answer["_page"]["pageSize"] == 1
    [policy] = answer["children"]
    assert uuid.UUID(policy["id"]).version == 4
    assert policy["default"] is True
    assert policy["identityGraph"] == {"type": "pdg"}
    assert policy["attributeMerge"] == {"type": "timestampOrdered"}
    assert policy["schema"] == {"name": PROFILE}
    assert policy["isActiveOnEdge"] is False
    assert policy["version"] == 1
    assert policy["imsOrgId"] == creds["org_id"]
    assert policy["sandbox"]["sandboxName"] == "prod" and policy["sandbox"]["type"] == "production"
    # Epoch seconds, as AEP answers updateEpoch (not milliseconds).
    assert before <= policy["updateEpoch"] <= int(time.time())
    assert answer["_links"]["next"]["href"] == ""
    # Listing again finds the same policy: the default is made once.
    assert listing(client, headers)["children"] == [policy]
    assert get(client, headers, policy["id"]) == policy


def test_resolve_without_an_id_is_the_default_and_unknown_ids_are_named(
    client: TestClient, headers: dict[str, str], creds: dict
) -> None:
    service = client.app.state.container.merge_policies  # type: ignore[attr-defined]
    scope = Scope(creds["org_id"], "prod")
    resolved = service.resolve(scope, None)
    listed = default_of(client, headers)
    assert resolved.id == listed["id"] and resolved.default is True
    assert (resolved.identity_graph, resolved.attribute_merge, resolved.dataset_order) == (
        "pdg",
        "timestampOrdered",
        (),
    )
    assert service.resolve(scope, listed["id"]) == resolved
    with pytest.raises(NotFound, match="no-such-policy"):
        service.resolve(scope, "no-such-policy")


def test_concurrent_first_uses_make_one_default(client: TestClient, headers: dict[str, str], creds: dict) -> None:
    service = client.app.state.container.merge_policies  # type: ignore[attr-defined]
    scope = Scope(creds["org_id"], "prod")
    with ThreadPoolExecutor(8) as pool:
        resolved = list(pool.map(lambda _: service.resolve(scope, None), range(16)))
    assert len({p.id for p in resolved}) == 1
    answer = listing(client, headers)
    assert answer["_page"]["totalCount"] == 1
    assert answer["children"][0]["id"] == resolved[0].id


# -- create ------------------------------------------------------------------------------------------


def test_create_a_timestamp_ordered_policy(client: TestClient, headers: dict[str, str], creds: dict) -> None:
    created = create(client, headers, body(isActiveOnEdge=True))
    assert uuid.UUID(created["id"]).version == 4
    assert created["name"] == "Loyalty members"
    assert created["identityGraph"] == {"type": "none"}
    assert created["attributeMerge"] == {"type": "timestampOrdered"}
    assert created["default"] is False and created["isActiveOnEdge"] is True
    assert created["version"] == 1 and created["imsOrgId"] == creds["org_id"]
    assert get(client, headers, created["id"]) == created
    # The sandbox's default is still the one it started with.
    assert default_of(client, headers)["name"] == "Default Timebased"


def test_create_a_dataset_precedence_policy(client: TestClient, headers: dict[str, str], creds: dict) -> None:
    first, second = add_dataset(client, creds["org_id"]), add_dataset(client, creds["org_id"])
    created = create(client, headers, body(identityGraph={"type": "pdg"}, attributeMerge=precedence(second, first)))
    assert created["attributeMerge"] == {"type": "dataSetPrecedence", "order": [second, first]}
    resolved = client.app.state.container.merge_policies.resolve(  # type: ignore[attr-defined]
        Scope(creds["org_id"], "prod"), created["id"]
    )
    assert resolved.dataset_order == (second, first)
    assert resolved.attribute_merge == "dataSetPrecedence" and resolved.default is False


def test_an_unknown_dataset_in_the_order_is_named(client: TestClient, headers: dict[str, str], creds: dict) -> None:
    known = add_dataset(client, creds["org_id"])
    resp = client.post(MP, json=body(attributeMerge=precedence(known, "5b76f8d787a6af01e2ceda18")), headers=headers)
    assert_problem(resp, 400, "100910-400", "attributeMerge.order[1]", "5b76f8d787a6af01e2ceda18")
    assert listing(client, headers)["_page"]["totalCount"] == 1


def test_a_dataset_of_another_sandbox_is_unknown(
    client: TestClient, headers: dict[str, str], creds: dict, dev_headers: dict[str, str]
) -> None:
    elsewhere = add_dataset(client, creds["org_id"], sandbox="dev")
    resp = client.post(MP, json=body(attributeMerge=precedence(elsewhere)), headers=headers)
    assert_problem(resp, 400, "100910-400", "attributeMerge.order[0]", elsewhere)
    assert create(client, dev_headers, body(attributeMerge=precedence(elsewhere)))["attributeMerge"]["order"] == [
        elsewhere
    ]


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (lambda b: b.pop("identityGraph"), ["identityGraph", "required"]),
        (lambda b: b.pop("name"), ["name", "required"]),
        (lambda b: b.update(name="  "), ["name"]),
        (lambda b: b.update(identityGraph={"type": "cdg"}), ["identityGraph.type", "cdg"]),
        (lambda b: b.update(identityGraph="pdg"), ["identityGraph", "'pdg'"]),
        (lambda b: b.update(attributeMerge={"type": "newest"}), ["attributeMerge.type", "newest"]),
        (lambda b: b.update(attributeMerge={"type": "dataSetPrecedence"}), ["attributeMerge.order", "None"]),
        (lambda b: b.update(attributeMerge={"type": "dataSetPrecedence", "order": []}), ["attributeMerge.order"]),
        (lambda b: b.update(attributeMerge={"type": "dataSetPrecedence", "order": ["a", "a"]}), ["order[1]", "'a'"]),
        (lambda b: b.update(attributeMerge={"type": "dataSetPrecedence", "order": [7]}), ["order[0]", "7"]),
        (lambda b: b.update(attributeMerge={"type": "timestampOrdered", "order": ["a"]}), ["attributeMerge.order"]),
        (lambda b: b.update(schema={"name": "_xdm.context.experienceevent"}), ["schema.name", "experienceevent"]),
        (lambda b: b.update(default="yes"), ["default", "'yes'"]),
        (lambda b: b.update(isActiveOnEdge=1), ["isActiveOnEdge", "1"]),
        (lambda b: b.update(owner="me"), ["owner", "not a field"]),
    ],
    ids=[
        "no-identityGraph",
        "no-name",
        "blank-name",
        "unknown-graph",
        "graph-not-object",
        "unknown-merge",
        "precedence-without-order",
        "precedence-empty-order",
        "dataset-twice",
        "dataset-not-string",
        "timestamp-with-order",
        "unknown-schema",
        "default-not-boolean",
        "edge-not-boolean",
        "unknown-field",
    ],
)
def test_invalid_create_bodies_are_400_naming_the_field(
    shared_client: TestClient, shared_headers: dict[str, str], change: Any, needles: list[str]
) -> None:
    data = body()
    change(data)
    assert_problem(shared_client.post(MP, json=data, headers=shared_headers), 400, "100910-400", *needles)


def test_a_body_that_is_not_an_object_is_400(shared_client: TestClient, shared_headers: dict[str, str]) -> None:
    assert_problem(shared_client.post(MP, json=[body()], headers=shared_headers), 400, "100910-400", "body")
    assert_problem(shared_client.post(MP, content=b"{", headers=shared_headers), 400, "100910-400", "JSON")


# -- one default at a time ------------------------------------------------------------------------


def test_creating_a_default_undefaults_the_previous_one(client: TestClient, headers: dict[str, str]) -> None:
    original = default_of(client, headers)
    created = create(client, headers, body(default=True))
    assert created["default"] is True
    previous = get(client, headers, original["id"])
    assert previous["default"] is False
    assert previous["version"] == original["version"] + 1
    assert [p["id"] for p in listing(client, headers, default="true")["children"]] == [created["id"]]
    assert {p["id"] for p in listing(client, headers, default="false")["children"]} == {original["id"]}


def test_patching_default_moves_it(client: TestClient, headers: dict[str, str], creds: dict) -> None:
    original = default_of(client, headers)
    created = create(client, headers, body())
    # AEP's guide sends one operation, not an array, and the boolean as a string.
    resp = client.patch(
        f"{MP}/{created['id']}", json={"op": "add", "path": "/default", "value": "true"}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["default"] is True and resp.json()["version"] == 2
    assert get(client, headers, original["id"])["default"] is False
    service = client.app.state.container.merge_policies  # type: ignore[attr-defined]
    assert service.resolve(Scope(creds["org_id"], "prod"), None).id == created["id"]


def test_the_default_cannot_be_undefaulted(client: TestClient, headers: dict[str, str]) -> None:
    original = default_of(client, headers)
    resp = client.patch(
        f"{MP}/{original['id']}", json=[{"op": "add", "path": "/default", "value": False}], headers=headers
    )
    assert_problem(resp, 422, "100960-422", original["id"], "default", "make another policy the default")
    put = dict(original, default=False)
    assert_problem(client.put(f"{MP}/{original['id']}", json=put, headers=headers), 422, "100960-422", "default")
    assert get(client, headers, original["id"]) == original


def test_concurrent_defaults_leave_exactly_one(client: TestClient, headers: dict[str, str], creds: dict) -> None:
    service = client.app.state.container.merge_policies  # type: ignore[attr-defined]
    scope = Scope(creds["org_id"], "prod")
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda i: service.create(scope, body(f"default {i}", default=True)), range(8)))
    defaults = listing(client, headers, default="true")["children"]
    assert len(defaults) == 1 and defaults[0]["id"] in {p["id"] for p in made}
    assert listing(client, headers)["_page"]["totalCount"] == 9


# -- PATCH and PUT ---------------------------------------------------------------------------------


def test_patch_changes_the_fields_it_names(client: TestClient, headers: dict[str, str], creds: dict) -> None:
    dataset = add_dataset(client, creds["org_id"])
    created = create(client, headers, body())
    ops = [
        {"op": "add", "path": "/name", "value": "renamed"},
        {"op": "replace", "path": "/identityGraph.type", "value": "pdg"},
        {"op": "add", "path": "/attributeMerge", "value": precedence(dataset)},
        {"op": "add", "path": "/isActiveOnEdge", "value": True},
    ]
    resp = client.patch(f"{MP}/{created['id']}", json=ops, headers=headers)
    assert resp.status_code == 200, resp.text
    patched = resp.json()
    assert patched["name"] == "renamed"
    assert patched["identityGraph"] == {"type": "pdg"}
    assert patched["attributeMerge"] == precedence(dataset)
    assert patched["isActiveOnEdge"] is True
    assert patched["version"] == 2 and patched["updateEpoch"] >= created["updateEpoch"]
    assert get(client, headers, created["id"]) == patched
    # Back to timestamp ordered: the order it no longer uses goes with it.
    resp = client.patch(
        f"{MP}/{created['id']}",
        json=[{"op": "add", "path": "/attributeMerge.type", "value": "timestampOrdered"}],
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["attributeMerge"] == {"type": "timestampOrdered"} and resp.json()["version"] == 3


def test_concurrent_patches_lose_nothing(client: TestClient, headers: dict[str, str], creds: dict) -> None:
    service = client.app.state.container.merge_policies  # type: ignore[attr-defined]
    scope = Scope(creds["org_id"], "prod")
    created = create(client, headers, body())
    ops = [[{"op": "add", "path": "/name", "value": f"name {i}"}] for i in range(6)]
    ops += [[{"op": "add", "path": "/identityGraph.type", "value": "pdg"}]]
    with ThreadPoolExecutor(7) as pool:
        list(pool.map(lambda o: service.patch(scope, created["id"], o), ops))
    final = get(client, headers, created["id"])
    assert final["version"] == 1 + len(ops)
    assert final["identityGraph"] == {"type": "pdg"} and final["name"].startswith("name ")


@pytest.mark.parametrize(
    ("ops", "needles"),
    [
        ([{"op": "add", "path": "/attributeMerge.type", "value": "dataSetPrecedence"}], ["attributeMerge.order"]),
        ([{"op": "remove", "path": "/name"}], ["[0].op", "'remove'"]),
        ([{"op": "add", "path": "/owner", "value": "x"}], ["[0].path", "'/owner'"]),
        ([{"op": "add", "path": "/name"}], ["[0].value", "required"]),
        ([{"op": "add", "path": "/default", "value": "maybe"}], ["default", "'maybe'"]),
        ([{"op": "add", "path": "/identityGraph.type", "value": "cdg"}], ["identityGraph.type", "cdg"]),
        ([{"op": "add", "path": "/schema.name", "value": "_xdm.context.account"}], ["schema.name"]),
        ([], ["body"]),
        (["add"], ["[0]"]),
    ],
    ids=[
        "precedence-without-order",
        "remove",
        "unknown-path",
        "no-value",
        "default-not-boolean",
        "unknown-graph",
        "unknown-schema",
        "empty",
        "not-an-object",
    ],
)
def test_invalid_patches_are_400_and_change_nothing(
    client: TestClient, headers: dict[str, str], ops: Any, needles: list[str]
) -> None:
    created = create(client, headers, body())
    assert_problem(client.patch(f"{MP}/{created['id']}", json=ops, headers=headers), 400, "100910-400", *needles)
    assert get(client, headers, created["id"]) == created


def test_put_replaces_the_policy_from_an_echoed_answer(
    client: TestClient, headers: dict[str, str], creds: dict
) -> None:
    dataset = add_dataset(client, creds["org_id"])
    created = create(client, headers, body())
    sent = dict(created, name="replaced", attributeMerge=precedence(dataset), version=1, updateEpoch=1551898378)
    resp = client.put(f"{MP}/{created['id']}", json=sent, headers=headers)
    assert resp.status_code == 200, resp.text
    replaced = resp.json()
    assert replaced["name"] == "replaced" and replaced["attributeMerge"] == precedence(dataset)
    assert replaced["version"] == 2 and replaced["updateEpoch"] != 1551898378
    assert get(client, headers, created["id"]) == replaced
    # A PUT is the whole policy: what it leaves out is required, not kept.
    partial = {"name": "x", "schema": {"name": PROFILE}, "attributeMerge": {"type": "timestampOrdered"}}
    assert_problem(
        client.put(f"{MP}/{created['id']}", json=partial, headers=headers), 400, "100910-400", "identityGraph"
    )
    other = dict(body(), id=str(uuid.uuid4()))
    assert_problem(
        client.put(f"{MP}/{created['id']}", json=other, headers=headers), 400, "100910-400", "id", other["id"]
    )


def test_one_policy_is_active_on_edge(client: TestClient, headers: dict[str, str]) -> None:
    edge = create(client, headers, body("edge", isActiveOnEdge=True))
    resp = client.post(MP, json=body("second edge", isActiveOnEdge=True), headers=headers)
    assert_problem(resp, 422, "100960-422", "isActiveOnEdge", edge["id"])
    other = create(client, headers, body("other"))
    op = [{"op": "add", "path": "/isActiveOnEdge", "value": True}]
    assert_problem(client.patch(f"{MP}/{other['id']}", json=op, headers=headers), 422, "100960-422", edge["id"])
    assert listing(client, headers, isActiveOnEdge="true")["children"] == [edge]


# -- DELETE --------------------------------------------------------------------------------------------


def test_delete_a_policy(client: TestClient, headers: dict[str, str]) -> None:
    created = create(client, headers, body())
    resp = client.delete(f"{MP}/{created['id']}", headers=headers)
    assert resp.status_code == 200 and resp.content == b""
    assert_problem(client.get(f"{MP}/{created['id']}", headers=headers), 404, "100940-404", created["id"])
    assert_problem(client.delete(f"{MP}/{created['id']}", headers=headers), 404, "100940-404", created["id"])


def test_the_default_policy_cannot_be_deleted(client: TestClient, headers: dict[str, str]) -> None:
    original = default_of(client, headers)
    resp = client.delete(f"{MP}/{original['id']}", headers=headers)
    assert_problem(resp, 422, "100960-422", original["id"], "default", "cannot be deleted")
    assert get(client, headers, original["id"]) == original
    # Once another policy is the default, the first one may go.
    create(client, headers, body(default=True))
    assert client.delete(f"{MP}/{original['id']}", headers=headers).status_code == 200


def test_a_policy_active_on_edge_cannot_be_deleted(client: TestClient, headers: dict[str, str]) -> None:
    edge = create(client, headers, body(isActiveOnEdge=True))
    assert_problem(client.delete(f"{MP}/{edge['id']}", headers=headers), 422, "100960-422", "isActiveOnEdge")
    op = [{"op": "add", "path": "/isActiveOnEdge", "value": False}]
    assert client.patch(f"{MP}/{edge['id']}", json=op, headers=headers).status_code == 200
    assert client.delete(f"{MP}/{edge['id']}", headers=headers).status_code == 200


# -- list --------------------------------------------------------------------------------------------


def test_list_pages_orders_and_filters(client: TestClient, headers: dict[str, str], creds: dict) -> None:
    dataset = add_dataset(client, creds["org_id"])
    create(client, headers, body("b graphless"))
    create(client, headers, body("a precedence", identityGraph={"type": "pdg"}, attributeMerge=precedence(dataset)))
    create(client, headers, body("c graphless"))
    names = [p["name"] for p in listing(client, headers)["children"]]
    assert names == ["Default Timebased", "a precedence", "b graphless", "c graphless"]  # by name, ascending
    assert [p["name"] for p in listing(client, headers, orderBy="-name")["children"]] == names[::-1]
    assert [p["name"] for p in listing(client, headers, orderby="-name")["children"]] == names[::-1]
    first = listing(client, headers, limit=3)
    assert [p["name"] for p in first["children"]] == names[:3]
    assert first["_page"] == {"totalCount": 4, "pageSize": 3, "count": 3, "next": "3"}
    href = first["_links"]["next"]["href"]
    assert href.startswith("@/mergePolicies?") and "start=3" in href and "limit=3" in href
    rest = client.get(MP + href.removeprefix("@/mergePolicies"), headers=headers).json()
    assert [p["name"] for p in rest["children"]] == names[3:] and rest["_links"]["next"]["href"] == ""
    graphless = listing(client, headers, **{"identityGraph.type": "none"})["children"]
    assert [p["name"] for p in graphless] == ["b graphless", "c graphless"]
    ordered = listing(client, headers, **{"attributeMerge.type": "dataSetPrecedence"})["children"]
    assert [p["name"] for p in ordered] == ["a precedence"]
    assert listing(client, headers, **{"schema.name": PROFILE})["_page"]["totalCount"] == 4


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"limit": 0}, ["limit", "0"]),
        ({"limit": 101}, ["limit", "101"]),
        ({"orderBy": "createdBy"}, ["orderBy", "createdBy"]),
        ({"start": "abc"}, ["start", "abc"]),
        ({"identityGraph.type": "cdg"}, ["identityGraph.type", "cdg"]),
        ({"attributeMerge.type": "x"}, ["attributeMerge.type"]),
        ({"schema.name": "_xdm.context.account"}, ["schema.name"]),
        ({"limit": "ten"}, ["limit", "ten"]),
        ({"default": "maybe"}, ["default", "maybe"]),
    ],
    ids=["limit-0", "limit-101", "orderBy", "start", "graph", "merge", "schema", "limit-text", "default-text"],
)
def test_invalid_list_parameters_are_400(
    shared_client: TestClient, shared_headers: dict[str, str], params: dict[str, Any], needles: list[str]
) -> None:
    assert_problem(shared_client.get(MP, params=params, headers=shared_headers), 400, "100910-400", *needles)


# -- bulk-get ---------------------------------------------------------------------------------------


def test_bulk_get_answers_each_id(client: TestClient, headers: dict[str, str]) -> None:
    original = default_of(client, headers)
    created = create(client, headers, body())
    missing = str(uuid.uuid4())
    ids = [{"id": original["id"]}, {"id": created["id"]}, {"id": missing}]
    resp = client.post(f"{MP}/bulk-get", json={"ids": ids}, headers=headers)
    assert resp.status_code == 207, resp.text
    results = resp.json()["results"]
    assert list(results) == [original["id"], created["id"], missing]
    assert results[original["id"]] == original and results[created["id"]] == created
    assert results[missing]["status"] == 404 and results[missing]["errorCode"] == "100940-404"
    assert missing in results[missing]["detail"]


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        ({}, ["ids"]),
        ({"ids": []}, ["ids"]),
        ({"ids": ["a"]}, ["ids[0]"]),
        ({"ids": [{"id": 5}]}, ["ids[0]"]),
        ({"ids": [{"id": "a"}], "more": 1}, ["more"]),
        ({"ids": [{"id": str(i)} for i in range(101)]}, ["ids", "101"]),
    ],
    ids=["no-ids", "empty", "string-item", "number-id", "extra-field", "too-many"],
)
def test_invalid_bulk_get_bodies_are_400(
    shared_client: TestClient, shared_headers: dict[str, str], data: dict[str, Any], needles: list[str]
) -> None:
    resp = shared_client.post(f"{MP}/bulk-get", json=data, headers=shared_headers)
    assert_problem(resp, 400, "100910-400", *needles)


# -- isolation -----------------------------------------------------------------------------------------


def test_another_org_sees_none_of_these_policies(
    client: TestClient, headers: dict[str, str], other_org_headers: dict[str, str]
) -> None:
    created = create(client, headers, body(default=True))
    theirs = listing(client, other_org_headers)
    assert [p["name"] for p in theirs["children"]] == ["Default Timebased"]
    assert theirs["children"][0]["default"] is True and theirs["children"][0]["id"] != created["id"]
    url = f"{MP}/{created['id']}"
    assert_problem(client.get(url, headers=other_org_headers), 404, "100940-404", created["id"])
    assert_problem(client.put(url, json=body(), headers=other_org_headers), 404, "100940-404", created["id"])
    patch = [{"op": "add", "path": "/name", "value": "taken"}]
    assert_problem(client.patch(url, json=patch, headers=other_org_headers), 404, "100940-404", created["id"])
    assert_problem(client.delete(url, headers=other_org_headers), 404, "100940-404", created["id"])
    bulk = client.post(f"{MP}/bulk-get", json={"ids": [{"id": created["id"]}]}, headers=other_org_headers).json()
    assert bulk["results"][created["id"]]["status"] == 404
    assert get(client, headers, created["id"]) == created


def test_each_sandbox_has_its_own_default(
    client: TestClient, headers: dict[str, str], dev_headers: dict[str, str]
) -> None:
    prod_default = create(client, headers, body("prod default", default=True))
    dev_default = default_of(client, dev_headers)
    assert dev_default["name"] == "Default Timebased" and dev_default["id"] != prod_default["id"]
    assert dev_default["sandbox"]["sandboxName"] == "dev" and dev_default["sandbox"]["default"] is False
    assert default_of(client, headers)["id"] == prod_default["id"]
    assert_problem(client.get(f"{MP}/{prod_default['id']}", headers=dev_headers), 404, "100940-404")


def test_requests_without_credentials_are_401(shared_client: TestClient) -> None:
    assert_problem(shared_client.get(MP), 401, "100920-401")
    assert_problem(shared_client.post(MP, json=body()), 401, "100920-401")
