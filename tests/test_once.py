"""Exit codes and the one-line summary: what a CI pipeline and its log see."""

from __future__ import annotations

from dataclasses import replace

import pytest

from watcher.models import Outcome, WatchRecord
from watcher.service.once import exit_code, summary


def record(name: str, outcome: Outcome | None = None, state: str | None = None) -> WatchRecord:
    return WatchRecord(
        key=name,
        name=name,
        server="s",
        state=state,
        outcome=outcome,
        started=1000.0,
        deadline=9999.0,
    )


@pytest.mark.parametrize(
    ("outcomes", "code"),
    [
        ([Outcome.SUCCEEDED], 0),
        ([Outcome.SUCCEEDED, Outcome.SUCCEEDED], 0),
        ([Outcome.SUCCEEDED, Outcome.FAILED], 1),
        ([Outcome.CANCELLED], 1),
        ([Outcome.FAILED, Outcome.TIMEOUT, Outcome.ERROR], 1),
        ([Outcome.SUCCEEDED, Outcome.TIMEOUT], 3),
        ([Outcome.ERROR], 3),
        ([Outcome.SUCCEEDED, None], 3),
    ],
)
def test_exit_code_puts_failures_first_then_anything_unfinished(
    outcomes: list[Outcome | None], code: int
) -> None:
    assert exit_code(record(f"w{i}", o) for i, o in enumerate(outcomes)) == code


def test_summary_says_what_is_done_and_what_is_pending_for_how_long() -> None:
    records = [
        record("nightly", Outcome.SUCCEEDED),
        record("weekly", Outcome.FAILED),
        record("import", None, "Running"),
        record("export", None, None),
    ]
    assert summary(records, now=1000.0 + 312) == (
        "2/4 done (1 failed, 1 succeeded); waiting for import (Running, 5m12s); "
        "export (not polled yet, 5m12s)"
    )


def test_wait_url_draws_the_live_view_from_the_apis_documents() -> None:
    import io

    from watcher.api.documents import watch_entry
    from watcher.cli.progress import Progress, record_of

    running = replace(record("nightly", None, "Running"), id="77", polls=3, started=1000.0)
    entry = watch_entry(running)
    assert record_of(entry) == replace(running, deadline=0.0, next_poll=None)
    out = io.StringIO()
    progress = Progress(out, live=True, summary_every_s=60.0)
    progress.show([entry], now=1000.0 + 75)
    assert "* nightly [run 77]: Running, 1m15s\x1b[K\n0/1 done" in out.getvalue()
    progress.close()
    assert out.getvalue().endswith("\x1b[2F\x1b[J")
