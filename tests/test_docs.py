"""README and ARCHITECTURE.md say what the code does: state tables, test command, the map."""

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


ARCHITECTURE = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
_PACKAGES = sorted(
    p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("watcher/**/__init__.py")
)
_TOP_MODULES = sorted(
    p.relative_to(ROOT).as_posix() for p in ROOT.glob("watcher/*.py") if p.name != "__init__.py"
)
#: a path in backticks: with a slash (not a URL, not an HTTP path), or a file name
_PATH = re.compile(r"`((?!/)[\w.<>-]*/[\w./<>-]*|[\w<>-]+\.(?:py|md|toml|service|html|css))`")
#: a section of the code map about one package: bare file names in it are that package's
_SECTION = re.compile(r"^#+ `(watcher/[\w/]+/)`$")


@pytest.mark.parametrize("name", [*_PACKAGES, *_TOP_MODULES])
def test_architecture_maps_every_package_and_top_level_module(name: str) -> None:
    shown = f"`{name}/`" if (ROOT / name).is_dir() else f"`{name}`"
    assert shown in ARCHITECTURE


def _named_paths() -> list[tuple[str, str]]:
    """Each path ARCHITECTURE.md names in backticks, with the package directory it is in."""
    named, package = [], ""
    for line in ARCHITECTURE.splitlines():
        if line.startswith("#"):
            package = match[1] if (match := _SECTION.match(line)) else ""
        named += [(package, path) for path in _PATH.findall(line)]
    return named


@pytest.mark.parametrize(("package", "path"), sorted(set(_named_paths())))
def test_every_path_architecture_names_exists(package: str, path: str) -> None:
    pattern = re.sub(r"<[^>]*>", "*", path.rstrip("/"))
    if "/" in path:  # from the top of the repository
        found = list(ROOT.glob(pattern))
    elif package:  # a file of the package whose section this is (or the top's)
        found = [*(ROOT / package).rglob(pattern), *ROOT.glob(pattern)]
    else:  # a file named alone: the top's, or a module's of watcher
        found = [*ROOT.glob(pattern), *ROOT.glob(f"watcher/**/{pattern}")]
    assert found, f"ARCHITECTURE.md names `{path}`, which is not in the tree"
