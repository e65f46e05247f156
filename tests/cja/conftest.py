"""The API tests' fixtures for a second org and a second sandbox."""

from tests.api.conftest import dev_headers, other_org_headers

__all__ = ["dev_headers", "other_org_headers"]
