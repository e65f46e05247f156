"""The integration tests' real servers (a real ``audiencehub serve`` process per test)."""

from tests.integration.conftest import creds, headers, server, servers

__all__ = ["creds", "headers", "server", "servers"]
