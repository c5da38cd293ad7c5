"""How watcher is installed and says what it is: its distribution name, ``--version``."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

import watcher
from watcher.cli.version import commit, describe
from watcher.stores.registry import POSTGRES

ROOT = Path(__file__).resolve().parent.parent


def test_the_distribution_name_is_the_one_pyproject_installs_and_messages_name() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == watcher.DISTRIBUTION != "watcher"  # the registry's is another's
    assert project["scripts"] == {"watcher": "watcher.cli.main:main"}
    assert importlib.metadata.version(watcher.DISTRIBUTION) == watcher.__version__
    absent = replace(POSTGRES, driver="watcher_no_such_driver")
    assert f"pip install '{watcher.DISTRIBUTION}[postgres]'" in (absent.missing() or "")
    assert "postgres" in project["optional-dependencies"]


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_version_names_the_commit_of_a_checkout_and_nothing_elsewhere(tmp_path: Path) -> None:
    assert commit(tmp_path) is None  # no checkout
    repo = tmp_path / "repo"
    repo.mkdir()
    _git("init", "-q", cwd=repo)
    assert commit(repo) is None  # a checkout with no commit yet
    (repo / "f").write_text("x", encoding="utf-8")
    _git("add", "f", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "f", cwd=repo)
    assert commit(repo) == _git("rev-parse", "--short", "HEAD", cwd=repo)
    (repo / "inner").mkdir()
    assert commit(repo / "inner") is None  # inside a checkout, but not its top folder


def test_version_without_git_is_the_version_alone() -> None:
    env = {**os.environ, "PATH": os.devnull}  # no git to be found
    argv = [sys.executable, "-m", "watcher", "--version"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    alone = f"watcher {watcher.__version__}\n"
    assert (done.returncode, done.stdout, done.stderr) == (0, alone, "")
    assert describe().startswith(f"watcher {watcher.__version__}")


def test_every_file_the_package_reads_is_package_data_in_the_wheel() -> None:
    # the wheel takes the .py files and only the data pyproject.toml names: a template or asset
    # left out works from the checkout and fails once installed (.ci/run builds and runs one)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["watcher"]
    package = ROOT / "watcher"
    data = [
        path.relative_to(package)
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    ]
    assert data, "the status page's templates and stylesheet are package data"
    assert [path for path in data if not any(path.match(glob) for glob in globs)] == []
