"""A request waiting on a busy store must not stop the server from answering others."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from audiencehub.metadata.store import Scope
from tests.conftest import EA, create_audience, seed_audience


def test_health_answers_while_a_patch_waits_for_the_profile_store(
    client: TestClient, headers: dict[str, str], creds: dict[str, str]
) -> None:
    audience_id = create_audience(client, headers, seed_audience())
    profiles = client.app.state.container.profiles  # type: ignore[attr-defined]
    lock = profiles._files.write_locks[Scope(creds["org_id"], "prod")]
    patched: list[int] = []
    health: list[int] = []
    lock.acquire()  # what a long profile stage of another audience holds
    try:
        patch = threading.Thread(
            target=lambda: patched.append(
                client.patch(f"{EA}/{audience_id}", json={"ttlInDays": 7}, headers=headers).status_code
            ),
            daemon=True,
        )
        patch.start()
        probe = threading.Thread(target=lambda: health.append(client.get("/health").status_code), daemon=True)
        probe.start()
        probe.join(timeout=5)
        assert health == [200], "the event loop was blocked by the PATCH waiting for the profile store"
        assert patched == [], "the PATCH cannot have finished while the store is busy"
    finally:
        lock.release()
    patch.join(timeout=10)
    assert patched == [200]
