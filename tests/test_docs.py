"""README, the docs site and ARCHITECTURE.md say what the code does: state tables, the test
command, the configuration reference, the walk-through, the map."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from watcher.config import reference
from watcher.remote.providers import KINDS

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
SYSTEMS = (DOCS / "systems.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", sorted(k for k in KINDS if KINDS[k].states))
def test_systems_page_state_table_matches_the_code(kind: str) -> None:
    section = SYSTEMS.split(f'(`kind = "{kind}"`)', 1)[1].split("\n#", 1)[0]
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


def test_ci_builds_the_docs_strictly() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^mkdocs build --strict", ci, flags=re.MULTILINE)


def test_configuration_reference_is_what_the_models_say() -> None:
    committed = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    assert committed == reference.markdown(), (
        f"docs/reference/configuration.md is out of date; write it again: {reference.COMMAND}"
    )


def _section(text: str, heading: str) -> str:
    """From ``heading`` to the next heading of its level or higher."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    rest = text[start + len(heading) :]
    same_or_higher = re.compile(rf"^#{{1,{len(level)}}} ", re.MULTILINE)
    ends = [m.start() for m in same_or_higher.finditer(rest)]
    return rest[: ends[0]] if ends else rest


def test_readme_walk_through_is_the_getting_started_page() -> None:
    in_readme = _section(README, "## Your first real watch").replace("](docs/", "](")
    page = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    assert in_readme.strip() == _section(page, "# Your first real watch").strip(), (
        "README's walk-through and docs/getting-started.md differ: change both"
    )


@pytest.mark.parametrize("target", sorted(set(re.findall(r"\]\((docs/[^)#]+)", README))))
def test_readme_links_into_the_docs_reach_a_page(target: str) -> None:
    assert (ROOT / target).is_file()


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
