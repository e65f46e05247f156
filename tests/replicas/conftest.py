"""Several ``audiencehub serve`` replicas on one home (issue 7): PostgreSQL metadata, the lake profile store, no
job threads in the replicas, one ``audiencehub worker``. Every process a test starts is ended by the fixture's
finalizer, pass or fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.workers.conftest import ApiServer, Cluster

# Streaming batches every second on a replica that keeps up; never by time on one whose open log a test needs.
QUICK = {"AUDIENCEHUB_STREAMING_FLUSH_SECONDS": "1"}
NEVER = {"AUDIENCEHUB_STREAMING_FLUSH_SECONDS": "3600"}


class Replicas(Cluster):
    """API replicas started with :meth:`replica` (none at first), and workers started with :meth:`worker`."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        super().__init__(tmp_path, database_url)
        self.env = {**self.env, "AUDIENCEHUB_PROFILE_STORE": "lake"}
        self.replicas: list[ApiServer] = []

    def replica(self, **env: str) -> ApiServer:
        n = len(self.replicas) + 1
        made = ApiServer(
            self.home, self.tmp_path / f"replica-{n}-logs", {**self.env, "AUDIENCEHUB_WORKERS": "0", **env}
        )
        self.replicas.append(made)
        made.start()
        return made

    def close(self) -> None:
        for made in self.replicas:
            made.stop()
        super().close()


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[Replicas]:
    made = Replicas(tmp_path, postgres_url)
    try:
        yield made
    finally:
        made.close()
