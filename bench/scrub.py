"""What masking secrets in remote text costs a poll, with few and with many secrets.

Every poll's answer goes through :func:`watcher.engine.poll.masked_observation` (one
:func:`watcher.redact.scrub` of its texts joined); every log line through ``scrub`` too. This
prints microseconds per call for 10, 100 and 1,000 registered secrets, for a state name and a
160-character detail, each seen for the first time (every text new) and seen again (a state
repeated poll after poll), next to one regular expression of all the secrets (the other way to
do it), and for a poll's whole answer with a detail new on every poll::

    python bench/scrub.py

A poll of the side-by-side benchmark costs some hundreds of microseconds of CPU; the numbers
here should stay a small part of that.
"""

from __future__ import annotations

import functools
import re
import secrets
import timeit
from collections.abc import Callable

from watcher import redact
from watcher.engine.poll import masked_observation
from watcher.models import Observation, Phase

CALLS = 2000
DETAIL = "worker 12 of 40 has processed 3,512 rows of the nightly import; no errors so far " * 2


def per_call_us(work: Callable[[], object]) -> float:
    return min(timeit.repeat(work, number=CALLS, repeat=3)) / CALLS * 1e6


def fresh(texts: list[str], work: Callable[[str], object]) -> Callable[[], object]:
    """``work`` on a text not seen before on every call (nothing remembered helps)."""
    pending = iter(texts)
    return lambda: work(next(pending))


def polls(count: int) -> Callable[[], object]:
    """Mask one poll's answer, its detail new on every poll (a progress count, say)."""
    answers = iter([Observation("Running", Phase.RUNNING, f"{i} {DETAIL}") for i in range(count)])
    return lambda: masked_observation(next(answers), "bench")


def rows(count: int) -> list[str]:
    """The lines for ``count`` registered secrets."""
    redact._secrets.clear()  # a clean registry of `count` secrets
    for _ in range(count):
        redact.register(secrets.token_urlsafe(24))  # no common prefix a regex could use
    pattern = re.compile("|".join(map(re.escape, redact._ordered)))
    poll = per_call_us(polls(CALLS * 3 + 1))
    lines = []
    for text in ("Running", DETAIL):
        texts = [f"{i}{text}" for i in range(CALLS * 3 + 1)]
        new = per_call_us(fresh(texts, redact.scrub))
        again = per_call_us(functools.partial(redact.scrub, text))
        regex = per_call_us(fresh(texts, functools.partial(pattern.sub, redact.MASK)))
        lines.append(
            f"{count:>8} {len(text):>6} {new:>8.2f} {again:>8.2f} {regex:>8.2f} {poll:>8.2f}"
        )
    return lines


def main() -> None:
    print(f"{'secrets':>8} {'text':>6} {'new':>8} {'again':>8} {'regex':>8} {'poll':>8}  (us)")
    for count in (10, 100, 1000):
        print("\n".join(rows(count)))


if __name__ == "__main__":
    main()
