"""One process per home: the container holds $AUDIENCEHUB_HOME/.lock until it is closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiencehub.config import Settings
from audiencehub.services.home import LOCK_NAME, HomeInUse, lock_home
from audiencehub.services.tenancy import TenancyService
from audiencehub.wiring import build


def test_a_second_lock_on_a_home_is_refused_until_the_first_is_released(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = lock_home(home)
    assert (home / LOCK_NAME).is_file()
    with pytest.raises(HomeInUse, match=f"another audiencehub process is using {home}"):
        lock_home(home)
    first.release()
    first.release()  # twice is harmless
    assert not first.held
    second = lock_home(home)
    assert second.held
    second.release()


def test_other_homes_are_independent(tmp_path: Path) -> None:
    a, b = lock_home(tmp_path / "a"), lock_home(tmp_path / "b")
    a.release()
    b.release()


def test_a_container_holds_the_lock_until_closed(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", workers=1, engine_threads=1)
    container = build(settings)
    try:
        with pytest.raises(HomeInUse, match="another audiencehub process is using"):
            build(settings)
        # What the CLI's org commands do while a server runs: the metadata store alone, no lock.
        assert TenancyService(container.store).create_org("LIVE@AdobeOrg") == "LIVE@AdobeOrg"
    finally:
        container.close()
    again = build(settings)
    again.close()
