"""``watcher --version``: the version and, run from a git checkout, the commit checked out.

An installed wheel says its version alone. Git is asked only when the package sits in the top
folder of a checkout, so a venv inside some other repository never borrows that one's commit;
a missing or failing git leaves the version alone too.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Final

import watcher

_SHA: Final = re.compile(r"[0-9a-f]{4,40}")
_GIT_TIMEOUT_S: Final = 5.0


def describe() -> str:
    """``watcher 0.1.0 (commit abc1234)`` in a checkout, else ``watcher 0.1.0``."""
    sha = commit(Path(watcher.__file__).resolve().parent.parent)
    return f"watcher {watcher.__version__}" + (f" (commit {sha})" if sha else "")


def commit(root: Path) -> str | None:
    """The short commit checked out in ``root``, or ``None``: not a checkout, or no git."""
    if not (root / ".git").exists():  # a folder, or a file in a worktree
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and _SHA.fullmatch(sha) else None
