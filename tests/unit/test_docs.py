"""The README cannot drift from the code: every setting and every CLI command is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from audiencehub.cli import app
from audiencehub.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme(name: str) -> None:
    assert f"AUDIENCEHUB_{name.upper()}" in README, f"README lacks AUDIENCEHUB_{name.upper()}"


def _commands() -> list[str]:
    group = typer.main.get_command(app)
    out = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        out += [f"{name} {sub}" for sub in subs] if subs else [name]
    return sorted(out)


@pytest.mark.parametrize("command", _commands())
def test_every_cli_command_is_in_the_readme(command: str) -> None:
    assert f"audiencehub {command}" in README, f"README lacks 'audiencehub {command}'"


def test_the_readme_starts_with_the_two_commands() -> None:
    head = README[: README.index("## ")]
    assert "make run" in head and "make test" in head
