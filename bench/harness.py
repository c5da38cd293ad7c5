"""What the benchmarks share: a run's set-up and clean-up, its phases, and the machine it ran on.

A run (:func:`session`) has a temp dir and the loopback status server; when it ends, however it
ends, every child process is stopped and the temp dir removed (unless kept). A phase
(:func:`attempt`) that cannot measure what it came for becomes a note, and the others go on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import NoReturn, TypeVar

from loopback import Loopback
from watcher_proc import CHILDREN, kill_all

from watcher import DISTRIBUTION

T = TypeVar("T")


class PhaseError(Exception):
    """A phase could not measure what it came for (its process stalled, died or timed out)."""


def attempt(
    notes: list[str],
    name: str,
    phase: Callable[[], T],
    errors: tuple[type[Exception], ...] = (PhaseError,),
) -> T | None:
    """Run one phase; one of ``errors`` becomes a note in ``notes`` and ``None``."""
    print(f"... {name}", file=sys.stderr, flush=True)
    try:
        return phase()
    except errors as exc:
        notes.append(f"{name}: {exc}")
        return None


@contextlib.contextmanager
def session(name: str, *, keep: bool, prefer_nginx: bool = True) -> Iterator[tuple[Path, Loopback]]:
    """A benchmark's temp dir and loopback server, its machine lines printed.

    Ctrl-C exits 130 and SIGTERM 143, each with every process stopped. A server that does not
    come up (a ``RuntimeError`` or a failed command) is one line and exit 1.
    """
    signal.signal(signal.SIGTERM, _terminated)
    tmp = Path(tempfile.mkdtemp(prefix=f"watcher-{name}-"))
    server = None
    try:
        server = Loopback(tmp, prefer_nginx=prefer_nginx)
        CHILDREN.append(server.process)
        yield tmp, server
    except KeyboardInterrupt:
        print("interrupted; every process stopped", file=sys.stderr)
        raise SystemExit(130) from None
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        kill_all()
        if server is not None:
            server.stop()
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _terminated(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine(server: Loopback) -> list[str]:
    """The lines every benchmark starts with: the machine, its load, and the software."""
    load = Path("/proc/loadavg").read_text().split()[:3]
    return [
        f"machine   nproc {len(os.sched_getaffinity(0))}, {cpu_model()}, "
        f"load average {' '.join(load)} at start",
        f"software  Python {platform.python_version()}, aiohttp {version('aiohttp')}, "
        f"watcher {version(DISTRIBUTION)}; server: {server.name}",
    ]


def counts(text: str) -> list[int]:
    """``--watches 1000,10_000``: the numbers, sorted, each at least 1."""
    try:
        watches = sorted({int(n) for n in text.replace("_", "").split(",") if n.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not watches or watches[0] < 1:
        raise argparse.ArgumentTypeError("give at least one number of watches, each >= 1")
    return watches


def ids(n: int) -> list[str]:
    """The run ids of ``n`` watches."""
    return [f"q{i:05d}" for i in range(n)]
