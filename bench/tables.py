"""What the side-by-side benchmark measured, and its two printed tables: phases, then targets."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from watcher_proc import STOP_TIMEOUT_S

KB = 1024
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Bare:
    """The bare aiohttp loop."""

    requests_s: float
    cpu_ms: float


@dataclass(frozen=True, slots=True)
class Load:
    """``watcher run`` with ``n`` watches at 1 s; ``stop_s`` is infinite if it was killed."""

    n: int
    ready_s: float
    polls_s: float
    cpu_ms: float
    rss_bytes: int
    stop_s: float


@dataclass(frozen=True, slots=True)
class Idle:
    """RSS of 1 and of ``n`` watches waiting out a 1 h interval."""

    n: int
    one_bytes: int
    n_bytes: int
    first_polls: int

    @property
    def per_watch_kb(self) -> float:
        return (self.n_bytes - self.one_bytes) / max(self.n - 1, 1) / KB


@dataclass(frozen=True, slots=True)
class Overload:
    """``n`` watches at 100 ms for ``seconds``; ``ready_s`` is ``None`` if it never got ready."""

    n: int
    seconds: float
    ready_s: float | None
    polls_s: float
    levels: dict[str, int]
    stop_s: float


@dataclass(frozen=True, slots=True)
class Restart:
    """``watcher run`` started again on a state file holding ``n`` watches."""

    n: int
    first_poll_s: float
    ready_s: float
    stop_s: float


@dataclass(frozen=True, slots=True)
class Once:
    """Median walls of ``watcher run --once`` on one finished run and of ``watcher --version``.

    ``run_s`` with watcher's default interval, ``fast_s`` with ``interval = "100ms"`` (the first
    poll waits a random part of ``min(5 s, interval)``, so this is mostly start-up and exit).
    """

    run_s: float
    fast_s: float
    version_s: float
    codes: list[int]


@dataclass
class Results:
    """Everything measured; ``None`` where a phase got no number."""

    bare: Bare | None = None
    loads: list[Load] = field(default_factory=list)
    saturated: list[Load] = field(default_factory=list)
    """The same at an interval that keeps every watch due (10 ms)."""
    idle: Idle | None = None
    overload: Overload | None = None
    restart: Restart | None = None
    once: Once | None = None
    notes: list[str] = field(default_factory=list)


OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
}


@dataclass(frozen=True, slots=True)
class Target:
    """One goal: ``value`` against ``limit`` by ``sign`` (a key of OPS); ``None``: no data."""

    what: str
    at: str
    value: float | None
    unit: str
    sign: str
    limit: float
    digits: int = 2

    def row(self) -> list[str]:
        limit = f"{self.sign} {self.limit:g}{self.unit}"
        if self.value is None:
            return [self.what, self.at, "-", limit, "NO DATA"]
        verdict = "PASS" if OPS[self.sign](self.value, self.limit) else "FAIL"
        unit = "" if math.isinf(self.value) else self.unit
        return [self.what, self.at, seconds(self.value, self.digits) + unit, limit, verdict]


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to width: the first left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) for c, w in zip(cells, widths, strict=True)]
        return "  ".join([cells[0].ljust(widths[0]), *padded[1:]]).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def seconds(value: float, digits: int = 2) -> str:
    return "killed" if math.isinf(value) else f"{value:.{digits}f}"


def ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "-"


def phase_rows(r: Results) -> list[list[str]]:
    rows = []
    if r.bare is not None:
        b = r.bare
        rows.append(["bare aiohttp loop", "-", "-", f"{b.requests_s:,.0f}", "1.00x"])
        rows[-1] += [f"{b.cpu_ms:.3f}", "1.00x", "-", "-"]
    bare_rps, bare_cpu = (r.bare.requests_s, r.bare.cpu_ms) if r.bare else (None, None)
    runs = [("1s", x) for x in r.loads] + [("10ms", x) for x in r.saturated]
    for interval, x in runs:
        rows.append([f"watcher run, interval {interval}", f"{x.n:,}", f"{x.ready_s:.1f}"])
        rows[-1] += [f"{x.polls_s:,.0f}", ratio(x.polls_s, bare_rps), f"{x.cpu_ms:.3f}"]
        rows[-1] += [ratio(x.cpu_ms, bare_cpu), f"{x.rss_bytes / MB:.0f}", seconds(x.stop_s)]
    return rows


def nearest(loads: Sequence[Load], n: int) -> Load | None:
    return min(loads, key=lambda x: abs(x.n - n), default=None)


def load_targets(r: Results) -> list[Target]:
    at10k = nearest(r.loads, 10_000)
    small = min(r.loads, key=lambda x: x.n, default=None)
    large = max(r.loads, key=lambda x: x.n, default=None)
    at = f"{at10k.n:,}" if at10k else "10,000"
    cpu = at10k.cpu_ms / r.bare.cpu_ms if at10k and r.bare else None
    rate = at10k.polls_s / r.bare.requests_s if at10k and r.bare else None
    scale = large.cpu_ms / small.cpu_ms if large and small and large is not small else None
    span = f"{large.n:,} / {small.n:,}" if large and small else "50,000 / 1,000"
    return [
        Target("CPU per poll / bare CPU per request", at, cpu, "x", "<=", 2),
        Target("polls/s / bare requests/s", at, rate, "x", ">=", 0.5),
        Target("CPU per poll, large N / small N", span, scale, "x", "<=", 1.3),
        saturated_target(r.saturated),
    ]


def saturated_target(loads: Sequence[Load]) -> Target:
    """CPU per poll of the largest N against the smallest, both with every watch always due."""
    small = min(loads, key=lambda x: x.n, default=None)
    large = max(loads, key=lambda x: x.n, default=None)
    scale = large.cpu_ms / small.cpu_ms if large and small and large is not small else None
    span = f"{large.n:,} / {small.n:,}" if large and small else "50,000 / 1,000"
    return Target("CPU per poll, large N / small N, all due", span, scale, "x", "<=", 1.3)


def other_targets(r: Results) -> list[Target]:
    idle, over, once = r.idle, r.overload, r.once
    at = f"{idle.n:,}" if idle else "50,000"
    per_watch = idle.per_watch_kb if idle else None
    out = [Target("RSS per idle watch (1h interval)", at, per_watch, " KB", "<=", 2)]
    if over is not None:
        at, warnings = f"{over.n:,} @100ms", float(over.levels["WARNING"])
        out.append(Target(f"WARNING lines in {over.seconds:g} s", at, warnings, "", "<=", 20, 0))
        out.append(Target("SIGTERM -> exit", at, over.stop_s, " s", "<", 5))
    if (restart := r.restart) is not None:
        at = f"{restart.n:,} watches"
        out.append(Target("restart -> first poll", at, restart.first_poll_s, " s", "<", 3))
    if once is not None:
        out.append(
            Target("run --once, one finished run (median)", "defaults", once.run_s, " s", "<", 0.5)
        )
    return out


def details(r: Results) -> list[str]:
    lines = []
    if r.idle is not None:
        i = r.idle
        lines.append(
            f"idle RSS: 1 watch {i.one_bytes / MB:.1f} MB, {i.n:,} watches {i.n_bytes / MB:.1f} MB"
            f" ({i.first_polls:,} first polls done)"
        )
    if (o := r.overload) is not None:
        ready = "never ready" if o.ready_s is None else f"ready after {o.ready_s:.1f} s"
        lines.append(
            f"overload: {o.n:,} watches, {ready}, {o.polls_s:,.0f} polls/s; log lines: "
            + ", ".join(f"{level} {count}" for level, count in o.levels.items())
        )
    if (s := r.restart) is not None:
        lines.append(
            f"restart: {s.n:,} watches in the state file, first poll after {s.first_poll_s:.2f} s,"
            f" READY=1 after {s.ready_s:.2f} s, SIGTERM -> exit {seconds(s.stop_s)} s"
        )
    if (once := r.once) is not None:
        bad = [c for c in once.codes if c != 0]
        lines.append(
            f"run --once with interval 100ms median {once.fast_s:.2f} s; "
            f"watcher --version median {once.version_s:.2f} s; exit codes "
            + (f"not all 0: {sorted(set(bad))}" if bad else "all 0")
        )
    stops = [x.stop_s for x in r.loads] + ([r.overload.stop_s] if r.overload else [])
    stops += [r.restart.stop_s] if r.restart else []
    if any(map(math.isinf, stops)):
        lines.append(f"killed: still running {STOP_TIMEOUT_S:g} s after SIGTERM, so SIGKILLed")
    return lines + [f"no number: {note}" for note in r.notes]


def render(r: Results) -> str:
    """The phase table, the target table and the details under them."""
    head = ["phase", "watches", "ready s", "polls/s", "x bare", "CPU ms/poll", "x bare"]
    head += ["RSS MB", "SIGTERM->exit s"]
    targets = [t.row() for t in load_targets(r) + other_targets(r)]
    return "\n\n".join(
        [
            table(head, phase_rows(r)),
            table(["target", "at", "measured", "target", "verdict"], targets),
            "\n".join(details(r)),
        ]
    )
