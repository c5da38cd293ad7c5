"""README says what the code does: state tables, test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from watcher.remote.providers import KINDS

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", sorted(k for k in KINDS if KINDS[k].states))
def test_readme_state_table_matches_the_code(kind: str) -> None:
    section = README.split(f'(`kind = "{kind}"`)', 1)[1].split("\n### ", 1)[0]
    found = re.findall(r"^\| `([^`]+)` \| (\w+)", section, flags=re.MULTILINE)
    rows = {state: phase for state, phase in found if phase != "phase"}  # not the header
    assert rows == {state: str(phase) for state, phase in KINDS[kind].states.items()}


def test_ci_runs_exactly_the_readme_test_command() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, flags=re.DOTALL)
    test_command = next(b for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci


def test_readme_gives_the_demo_command() -> None:
    assert "pip install . && watcher demo" in README
