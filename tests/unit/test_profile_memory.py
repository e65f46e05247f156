"""The embedded profile store's memory limit: its own setting, sized to the machine by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from audiencehub.config import Settings
from audiencehub.metadata.store import Scope
from audiencehub.wiring import build


def test_the_default_is_a_quarter_of_the_machine_at_least_1gb() -> None:
    total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    assert Settings().profile_memory() == f"{max(1024, total_mib // 4)}MB"


def test_the_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIENCEHUB_PROFILE_MEMORY_LIMIT", "3GB")
    assert Settings().profile_memory() == "3GB"


def test_the_profile_store_opens_its_files_with_it(tmp_path: Path) -> None:
    container = build(Settings(home=tmp_path, profile_memory_limit="1500MB", engine_memory_limit="1GB"))
    try:
        scope = Scope("org@AdobeOrg", "prod")
        assert container.profiles.lookup(scope, "Email", "nobody@example.com") is None  # opens the sandbox's file
        limit = container.profiles._connection(scope).execute("SELECT current_setting('memory_limit')").fetchone()
        assert limit is not None and limit[0] in ("1.3 GiB", "1.4 GiB", "1.5 GiB", "1500.0 MB")
    finally:
        container.close()
