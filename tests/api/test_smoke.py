from fastapi.testclient import TestClient

from tests.conftest import EA, create_audience, run_and_wait, seed_audience, upload


def test_seed_flow_ingests_rows_into_dataset_and_profile_store(client: TestClient, headers: dict[str, str]) -> None:
    csv = b"ppid,list_id,delete,process_consent\nalice@example.com,L1,0,yes\nBOB@Example.com ,L2,0,no\n"
    upload(client, headers, "activation/sample-source/example.csv", csv)
    audience_id = create_audience(client, headers, seed_audience())
    run = run_and_wait(client, headers, audience_id, {"dataFilterStartTime": 764245635})
    assert run["status"] == "SUCCESS", run
    assert run["metrics"]["recordsIngested"] == 2
    members = client.get(f"{EA}/{audience_id}/members", headers=headers).json()
    ids = sorted(m["identities"][0]["id"] for m in members["members"])
    assert ids == ["alice@example.com", "bob@example.com"]
