"""The API tests' fixtures: an app shared by a module, a second org and a second sandbox."""

from tests.api.conftest import dev_headers, other_org_headers, shared_client, shared_headers, shared_settings

__all__ = ["dev_headers", "other_org_headers", "shared_client", "shared_headers", "shared_settings"]
