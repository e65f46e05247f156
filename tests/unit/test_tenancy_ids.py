"""Org ids and sandbox names name folders (landing/{org}/{sandbox}, lake/{org}/{sandbox}): none may leave its parent."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiencehub.errors import BadRequest
from audiencehub.metadata.store import MetadataStore, Scope
from audiencehub.services.landing_zone import LandingZoneService
from audiencehub.services.tenancy import TenancyService, check_org_id

BAD_ORG_IDS = [
    ".",
    "..",
    "...",
    ".hidden",
    "-org",
    "_org",
    "@AdobeOrg",
    "a/b",
    "a\\b",
    "../x",
    "a b",
    "a\n",
    "x" * 129,
]
GOOD_ORG_IDS = ["0123456789ABCDEF01234567@AdobeOrg", "a", "A.b", "org-1_x@y.z", "x" * 128]
BAD_SANDBOXES = ["", ".", "..", "-dev", "Dev", "a.b", "a/b", "a_b", "x" * 129]


@pytest.fixture
def tenancy(tmp_path: Path) -> TenancyService:
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    store.create_all()
    return TenancyService(store)


@pytest.mark.parametrize("org_id", BAD_ORG_IDS, ids=repr)
def test_org_ids_that_could_name_a_folder_outside_are_refused(tenancy: TenancyService, org_id: str) -> None:
    with pytest.raises(BadRequest, match="must start with a letter or digit"):
        tenancy.create_org(org_id)
    assert tenancy.list_orgs() == []


@pytest.mark.parametrize("org_id", GOOD_ORG_IDS)
def test_org_ids_like_aep_ones_are_accepted(tenancy: TenancyService, org_id: str) -> None:
    assert tenancy.create_org(org_id) == org_id
    assert [o["id"] for o in tenancy.list_orgs()] == [org_id]


def test_a_generated_org_id_is_valid(tenancy: TenancyService) -> None:
    org_id = tenancy.create_org()
    assert org_id.endswith("@AdobeOrg") and check_org_id(org_id) == org_id


def test_an_empty_org_id_is_not_an_id() -> None:
    with pytest.raises(BadRequest):
        check_org_id("")


@pytest.mark.parametrize("name", BAD_SANDBOXES, ids=repr)
def test_sandbox_names_that_could_name_a_folder_outside_are_refused(tenancy: TenancyService, name: str) -> None:
    org_id = tenancy.create_org("ORG@AdobeOrg")
    with pytest.raises(BadRequest, match="sandbox name"):
        tenancy.create_sandbox(org_id, name)
    assert tenancy.list_orgs()[0]["sandboxes"] == ["prod"]


@pytest.mark.parametrize("org_id", ["..", ".", "a/b"])
def test_bootstrap_refuses_a_dot_org_id(tenancy: TenancyService, tmp_path: Path, org_id: str) -> None:
    with pytest.raises(BadRequest):
        tenancy.bootstrap(
            credentials_path=tmp_path / "credentials.json", org_id=org_id, client_id="c", client_secret="s"
        )
    assert tenancy.list_orgs() == []


@pytest.mark.parametrize(("org_id", "sandbox"), [("..", "prod"), (".", "prod"), ("ORG@AdobeOrg", ".."), ("a/b", "x")])
def test_the_landing_zone_never_makes_a_folder_for_a_dot_scope(tmp_path: Path, org_id: str, sandbox: str) -> None:
    """Defence in depth, for a store written before these rules."""
    root = tmp_path / "home" / "landing"
    service = LandingZoneService(root, 1 << 20)
    with pytest.raises(BadRequest):
        service.source(Scope(org_id, sandbox))
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*"))
