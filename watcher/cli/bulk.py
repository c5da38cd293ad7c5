"""``watcher submit --file runs.ndjson``: many runs handed over at once, one JSON object a line
with the fields of ``POST /api/v1/watches`` (``-`` reads standard input; blank lines are
skipped).

With ``--url`` the runs go to the API's batch form (:mod:`watcher.api.batch`) in requests of
at most :data:`~watcher.api.batch.MAX_BATCH` runs and :data:`MAX_BYTES`; without, into the store
in one transaction. Each run is answered as ``submit`` answers one: its key and ``submitted`` or
``already watched`` on stdout; a run refused is named by its line on stderr. The exit code is 0
when every run is watched, 2 when any was refused (the others are handed over all the same).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from watcher.api.batch import MAX_BATCH, Handed, checked, hand_over
from watcher.config.load import Config
from watcher.errors import EXIT_OK, EXIT_USAGE, ConfigError
from watcher.stores import Store

MAX_BYTES: Final = 48 * 1024
"""The most body one request carries (the API takes 64 KiB)."""
SAID: Final = {201: "submitted", 200: "already watched"}


def read_runs(path: str) -> list[tuple[int, Any]]:
    """The runs of the file at ``path`` (``-``: stdin) with their line numbers; a line that
    is not JSON is kept as a 422 of its own."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"--file: cannot read {path}: {reason}") from None
    runs: list[tuple[int, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                runs.append((number, json.loads(line)))
            except (ValueError, RecursionError):
                runs.append((number, Handed(422, error="not a JSON object")))
    if not runs:
        raise ConfigError(f"--file: {path} holds no run")
    return runs


async def local(config: Config, store: Store, runs: list[tuple[int, Any]]) -> int:
    """Hand ``runs`` to the store (one transaction); print each; the exit code."""
    given = [item if isinstance(item, Handed) else checked(item) for _, item in runs]
    handed = await hand_over(config, store, given, None)
    return _report([n for n, _ in runs], [_as_result(h) for h in handed])


async def remote(url: str, token: str, runs: list[tuple[int, Any]]) -> int:
    """Hand ``runs`` to the API at ``url``, a request per chunk; print each; the exit code."""
    from watcher.cli import api_client

    numbers, results = [], []
    for chunk in _chunks([(n, item) for n, item in runs if not isinstance(item, Handed)]):
        answer = await api_client.post(url, token, "/api/v1/watches", [item for _, item in chunk])
        numbers += [n for n, _ in chunk]
        results += answer["results"]
    for n, item in runs:
        if isinstance(item, Handed):
            numbers.append(n)
            results.append(_as_result(item))
    return _report(numbers, results)


def _chunks(runs: Sequence[tuple[int, Any]]) -> list[list[tuple[int, Any]]]:
    chunks: list[list[tuple[int, Any]]] = [[]]
    size = 0
    for run in runs:
        length = len(json.dumps(run[1])) + 2
        if len(chunks[-1]) >= MAX_BATCH or (chunks[-1] and size + length > MAX_BYTES):
            chunks.append([])
            size = 0
        chunks[-1].append(run)
        size += length
    return [chunk for chunk in chunks if chunk]


def _as_result(handed: Handed) -> dict[str, Any]:
    result: dict[str, Any] = {"status": handed.status, "error": handed.error}
    if handed.record is not None:
        result["watch"] = {"key": handed.record.key, "name": handed.record.name}
    return result


def _report(numbers: Sequence[int], results: Sequence[dict[str, Any]]) -> int:
    refused = 0
    for number, result in sorted(zip(numbers, results, strict=True), key=lambda nr: nr[0]):
        if (said := SAID.get(result["status"])) is not None:
            print(f"{result['watch']['key']}  {said}: {result['watch']['name']}")
        else:
            refused += 1
            print(f"watcher: line {number}: {result.get('error', '')}", file=sys.stderr)
    if refused:
        print(f"watcher: {refused} of {len(results)} runs refused", file=sys.stderr)
    return EXIT_USAGE if refused else EXIT_OK
