"""Schema Registry and Catalog steps as AEP users call them, shared by the data tests."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient

from tests.conftest import wait_for

SR = "/data/foundation/schemaregistry"
CATALOG = "/data/foundation/catalog"
IMPORT = "/data/foundation/import"
PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"
SEGMENT_CLASS = "https://ns.adobe.com/xdm/context/segmentdefinition"
IDENTITY_MAP_FG = "https://ns.adobe.com/xdm/context/identitymap"
PERSON_FG = "https://ns.adobe.com/xdm/context/profile-person-details"


def tenant(client: TestClient, headers: dict[str, str]) -> str:
    resp = client.get(f"{SR}/stats", headers=headers)
    assert resp.status_code == 200, resp.text
    tenant_id: str = resp.json()["tenantId"]
    return tenant_id


def field_group(client: TestClient, headers: dict[str, str], title: str, fields: dict[str, Any]) -> str:
    """A tenant field group for profiles whose ``fields`` sit under ``_{TENANT}``."""
    t = tenant(client, headers)
    body = {
        "title": title,
        "description": title,
        "type": "object",
        "meta:intendedToExtend": [PROFILE_CLASS],
        "definitions": {"custom": {"properties": {f"_{t}": {"type": "object", "properties": fields}}}},
        "allOf": [{"$ref": "#/definitions/custom"}],
    }
    resp = client.post(f"{SR}/tenant/fieldgroups", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    fg_id: str = resp.json()["$id"]
    return fg_id


def schema(client: TestClient, headers: dict[str, str], title: str, class_id: str, *refs: str) -> str:
    body = {"title": title, "type": "object", "allOf": [{"$ref": class_id}, *({"$ref": r} for r in refs)]}
    resp = client.post(f"{SR}/tenant/schemas", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    schema_id: str = resp.json()["$id"]
    return schema_id


def identity(
    client: TestClient, headers: dict[str, str], schema_id: str, pointer: str, namespace: str, primary: bool
) -> None:
    body = {
        "@type": "xdm:descriptorIdentity",
        "xdm:sourceSchema": schema_id,
        "xdm:sourceVersion": 1,
        "xdm:sourceProperty": pointer,
        "xdm:namespace": namespace,
        "xdm:property": "xdm:code",
        "xdm:isPrimary": primary,
    }
    resp = client.post(f"{SR}/tenant/descriptors", json=body, headers=headers)
    assert resp.status_code == 201, resp.text


def enable_profile(client: TestClient, headers: dict[str, str], schema_id: str) -> None:
    patch = [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
    resp = client.patch(f"{SR}/tenant/schemas/{quote(schema_id, safe='')}", json=patch, headers=headers)
    assert resp.status_code == 200, resp.text


def dataset(client: TestClient, headers: dict[str, str], name: str, schema_id: str, profile: bool = False) -> str:
    body: dict[str, Any] = {
        "name": name,
        "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed+json;version=1"},
    }
    if profile:
        body["tags"] = {"unifiedProfile": ["enabled:true"], "unifiedIdentity": ["enabled:true"]}
    resp = client.post(f"{CATALOG}/dataSets", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    (ref,) = resp.json()
    return str(ref).removeprefix("@/dataSets/")


def ingest(
    client: TestClient,
    headers: dict[str, str],
    dataset_id: str,
    content: bytes,
    *,
    fmt: str = "json",
    name: str = "records.json",
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Create a batch, upload one file, complete it, and wait (``timeout`` s at most) until it succeeded or failed."""
    resp = client.post(
        f"{IMPORT}/batches", json={"datasetId": dataset_id, "inputFormat": {"format": fmt}}, headers=headers
    )
    assert resp.status_code == 201, resp.text
    batch_id = resp.json()["id"]
    resp = client.put(
        f"{IMPORT}/batches/{batch_id}/datasets/{dataset_id}/files/{name}",
        content=content,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert resp.status_code == 200, resp.text
    resp = client.post(f"{IMPORT}/batches/{batch_id}?action=COMPLETE", headers=headers)
    assert resp.status_code == 200, resp.text

    def finished() -> dict[str, Any] | None:
        body = client.get(f"{CATALOG}/batches/{batch_id}", headers=headers).json()[batch_id]
        return body if body["status"] in ("success", "failed") else None

    return wait_for(finished, timeout=timeout, what="batch ingestion")


def json_lines(*records: dict[str, Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()
