"""``watcher submit --url``, ``cancel --url`` and ``wait --url``: the same commands through a
daemon's HTTP API, so a CI runner needs a token, not the database's credentials or the config.

``wait --url URL KEY...`` is the other half of a hand-over: a later CI step (or another
pipeline) waits for runs that ``submit`` handed to the daemons, shows them meanwhile
(:mod:`~watcher.cli.progress`) and exits as ``wait`` does.

The token comes from ``--token-file`` or ``$WATCHER_TOKEN`` and is sent only as
``Authorization: Bearer``; it is masked in everything watcher prints. An answer the user can act
on (401, 403, 404, 409, 422) is a ConfigError (exit 2) carrying the API's own words (a 403
names the scope needed), but for ``cancel``'s 404 and 409: exit 1, no such watch still watched,
as the local ``cancel`` says; a daemon that cannot be reached, or answers 5xx, is exit 1 for
``submit`` and ``cancel``. A 429 or 503
with ``Retry-After`` (a quota, a flood of readers) is waited out for up to :data:`BUSY_FOR_S`,
then counts as no answer. ``wait`` asks
again for up to :data:`UNREACHABLE_S` (a daemon restarting or being deployed), then gives up
with 3: the runs could not be watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from yarl import URL

from watcher import redact
from watcher.cli.progress import Progress, record_of
from watcher.errors import (
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_UNDELIVERED,
    ConfigError,
    PollError,
)
from watcher.remote.client import Http, Reply, retry_after
from watcher.service.once import plural
from watcher.service.reports.publish import Reports

TIMEOUT_S = 30.0
POLL_EVERY_S = 5.0
"""How often ``wait --url`` asks; the daemon polls the remote system at its own pace."""
UNREACHABLE_S = 300.0
"""How long ``wait --url`` goes on asking a daemon that does not answer before it gives up."""
BUSY_FOR_S = 120.0
"""How long one request waits out a daemon that asks it to come back later (429 or 503 with
``Retry-After``: a quota, a flood of readers) before that counts as no answer."""


def api_url(text: str, where: str) -> str:
    """``text`` if it is the base URL of an API (``http(s)://host[:port][/path]``), else a
    ConfigError naming ``where`` (``--url`` or ``$WATCHER_URL``)."""
    try:  # not repeated in the messages, nor yarl's words: a broken URL may hold a password
        url = URL(text)
        scheme, host, port = url.scheme, url.host, url.port
    except ValueError:  # a port out of range, a broken [IPv6] address, a bad IDNA name
        raise ConfigError(f"{where}: not a URL") from None
    if scheme not in ("http", "https") or not host or port == 0:
        raise ConfigError(f"{where}: not an http:// or https:// URL with a host name")
    if url.user is not None or url.password is not None:
        raise ConfigError(f"{where}: holds a user name or password; the API takes a token only")
    return text


def token_from(token_file: str | None, env: Mapping[str, str]) -> str:
    """The API token: the content of ``token_file``, else ``$WATCHER_TOKEN``.

    A token is one line: surrounding whitespace and a CR (a file saved with CRLF) are dropped;
    anything else (a second line, an inner space or control character) is a ConfigError naming
    the file, never showing the token (an HTTP header cannot carry it as it is)."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"--token-file: cannot read {token_file}: {reason}") from None
        where = f"--token-file {token_file}"
    else:
        token, where = env.get("WATCHER_TOKEN", "").strip(), "$WATCHER_TOKEN"
    if not token:
        raise ConfigError(f"--url needs a token: {where} is empty (or give --token-file)")
    redact.register(token)
    if len(token.splitlines()) > 1:
        raise ConfigError(f"{where}: holds more than one line; give the token alone on one line")
    if not token.isprintable() or any(char.isspace() for char in token):
        raise ConfigError(f"{where}: holds a space or a control character inside the token")
    return token


async def submit(url: str, token: str, settings: Mapping[str, Any]) -> int:
    """POST the run to ``url``'s API and print its key, as the local ``submit`` does."""
    given = {key: value for key, value in settings.items() if value is not None}
    reply = await _call(url, token, "POST", "/api/v1/watches", given)
    watch = reply.json()["watch"]
    said = "submitted" if reply.status == 201 else "already watched"
    print(f"{watch['key']}  {said}: {watch['name']}")
    return EXIT_OK


async def post(url: str, token: str, path: str, body: Sequence[Any]) -> Any:
    """POST ``body`` to ``path`` of ``url``'s API; the JSON answered (errors as for ``submit``)."""
    return (await _call(url, token, "POST", path, body)).json()


async def cancel(url: str, token: str, key: str) -> int:
    """DELETE the watch ``key`` through ``url``'s API; exit 1 (as the local ``cancel``) if it
    is no submitted watch still watched (the API's 404 or 409)."""
    try:
        await _call(url, token, "DELETE", f"/api/v1/watches/{quote(key, safe='')}")
    except _Refused as exc:
        if exc.status not in (404, 409):
            raise
        print(
            f"watcher: {key} is not a submitted watch that is still watched: {exc}", file=sys.stderr
        )
        return EXIT_FAILED
    print(f"{key}: cancelled")
    return EXIT_OK


async def wait(
    url: str,
    token: str,
    keys: Sequence[str],
    *,
    timeout_s: float | None = None,
    settle_s: float = 60.0,
    as_json: bool = False,
    fail_fast: bool = False,
    progress: Progress | None = None,
    junit: str | None = None,
) -> int:
    """Ask ``url``'s API about ``keys`` until every one has ended and its notifications are
    out (or ``settle_s`` more has passed); print a line per watch (or the JSON document) and
    return ``wait``'s exit code. ``timeout_s``: give up waiting (exit 3, not finished). A watch
    no longer watched (cancelled, or left out of watches.toml) will not end: exit 3 at once.
    ``fail_fast``: stop at the first that ended other than succeeded. ``progress``: shown
    the watches at every ask (the live view, or the state lines and summaries). ``junit``:
    a JUnit file to write; under GitHub Actions the annotations and the job summary too
    (:mod:`~watcher.service.reports`)."""
    deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
    try:
        watches = await _asked(url, token, keys, deadline, settle_s, fail_fast, progress)
    finally:
        if progress is not None:
            progress.close()
    code = _exit_code(watches)
    records, now = [record_of(watch) for watch in watches], time.time()
    reports = Reports.asked(junit, os.environ)
    if not reports.write(records, now) and code == EXIT_OK:
        code = EXIT_INCOMPLETE
    if as_json:
        print(json.dumps({"version": 1, "exit_code": code, "watches": watches}, indent=2))
    else:
        print("\n".join(_line(w) for w in watches))
    reports.annotate(records, now, sys.stderr if as_json else sys.stdout)
    return code


async def _asked(
    url: str,
    token: str,
    keys: Sequence[str],
    deadline: float,
    settle_s: float,
    fail_fast: bool,
    progress: Progress | None,
) -> list[dict[str, Any]]:
    """The documents of ``keys`` once ``wait`` is done asking (see :func:`wait`)."""
    ended_at: float | None = None
    async with Http(connections=1) as http:
        while True:
            until = deadline if ended_at is None else min(deadline, ended_at + settle_s)
            try:
                watches = await _documents(http, url, token, keys, until)
            except _Unreachable as exc:
                if ended_at is None:
                    raise
                print(redact.scrub(str(exc)), file=sys.stderr)  # the ends are known already
                break
            if progress is not None:
                progress.show(watches, time.time())
            now = time.monotonic()
            ended = [w for w in watches if w["outcome"] or not w["watched"]]
            failed = any(w["outcome"] != "succeeded" for w in ended)
            if ended_at is None and (len(ended) == len(watches) or fail_fast and failed):
                ended_at = now
            out = not any(w["undelivered"] for w in ended)  # the notifications of their ends
            if ended_at is not None and (out or now - ended_at >= settle_s):
                break
            if ended_at is None and now >= deadline:
                break
            await asyncio.sleep(POLL_EVERY_S)
    return watches


def _exit_code(watches: Sequence[Mapping[str, Any]]) -> int:
    """As ``wait``: 1 failed or cancelled, 3 any other end or not ended, 4 undelivered, else 0."""
    outcomes = {w["outcome"] for w in watches}
    if outcomes & {"failed", "cancelled"}:
        return EXIT_FAILED
    if outcomes != {"succeeded"}:
        return EXIT_INCOMPLETE
    return EXIT_UNDELIVERED if any(w["undelivered"] for w in watches) else EXIT_OK


def _line(watch: Mapping[str, Any]) -> str:
    """``nightly import: failed (remote state Aborted, 31 polls): disk full``."""
    head = watch["outcome"] or ("not finished" if watch["watched"] else "no longer watched")
    state = f"remote state {watch['state']}" if watch["state"] else "no remote state"
    line = f"{watch['name']}: {head} ({state}, {plural(watch['polls'], 'poll')})"
    if watch["undelivered"]:
        line += f", {plural(len(watch['undelivered']), 'notification')} not delivered"
    return redact.escape(f"{line}: {watch['detail']}" if watch["detail"] else line)


async def _documents(
    http: Http, url: str, token: str, keys: Sequence[str], deadline: float
) -> list[dict[str, Any]]:
    """The documents of ``keys``. A daemon that does not answer may be restarting: it is asked
    again every :data:`POLL_EVERY_S` for up to :data:`UNREACHABLE_S`, or until ``deadline``
    (then :class:`_Unreachable`, exit 3: the runs could not be watched)."""
    down_since: float | None = None
    while True:
        try:
            watches = [await _watch(http, url, token, key) for key in keys]
        except _Unreachable as exc:
            now = time.monotonic()
            if down_since is None:
                down_since = now
                print(redact.scrub(f"{exc}; asking again every {POLL_EVERY_S:g}s"), file=sys.stderr)
            if now - down_since >= UNREACHABLE_S or now >= deadline:
                raise _Unreachable(f"{exc}; gave up", EXIT_INCOMPLETE) from None
            await asyncio.sleep(POLL_EVERY_S)
            continue
        if down_since is not None:
            print(f"watcher: the API at {url} answers again", file=sys.stderr)
        return watches


async def _watch(http: Http, url: str, token: str, key: str) -> dict[str, Any]:
    path = f"/api/v1/watches/{quote(key, safe='')}"
    watch: dict[str, Any] = (await _call(url, token, "GET", path, http=http)).json()["watch"]
    return watch


async def _call(
    url: str,
    token: str,
    method: str,
    path: str,
    body: Mapping[str, Any] | Sequence[Any] | None = None,
    http: Http | None = None,
) -> Reply:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body)
    waited_s = 0.0
    try:
        async with contextlib.AsyncExitStack() as stack:
            if http is None:
                http = await stack.enter_async_context(Http(connections=1))
            client = http.server(max_concurrency=1, timeout_s=TIMEOUT_S)
            while True:
                reply = await client.request(
                    method, url.rstrip("/") + path, headers=headers, data=data
                )
                if (after_s := _come_back_in(reply, waited_s)) is None:
                    break
                if not waited_s:
                    busy = f"watcher: the API at {url} answered {reply.status}: {_said(reply)}"
                    print(f"{busy}; asking again in {after_s:g}s", file=sys.stderr)
                await asyncio.sleep(after_s)
                waited_s += after_s
    except PollError as exc:
        raise _Unreachable(f"watcher: cannot reach the API at {url}: {exc}") from None
    if reply.ok:
        return reply
    said = _said(reply)
    if reply.status >= 500 or reply.status == 429:  # a limit of the daemon's, not the input
        raise _Unreachable(f"watcher: the API at {url} answered {reply.status}: {said}")
    raise _Refused(f"the API at {url} refused ({reply.status}): {said}", reply.status)


def _come_back_in(reply: Reply, waited_s: float) -> float | None:
    """Seconds to wait before asking again, when the daemon said so (429 or 503 with
    ``Retry-After``: a limit, a flood) and the wait stays within :data:`BUSY_FOR_S`."""
    if reply.status not in (429, 503) or (after_s := retry_after(reply.headers)) is None:
        return None
    after_s = max(after_s, 1.0)
    return after_s if waited_s + after_s <= BUSY_FOR_S else None


def _said(reply: Reply) -> str:
    """The API's ``error`` text (a proxy's page shortened), secrets masked."""
    try:
        said = str(reply.json().get("error", reply.text))
    except (PollError, AttributeError):
        said = reply.text[:200]
    return redact.escape(redact.scrub(said))  # whatever answered: a proxy's page, say


class _Refused(ConfigError):
    """The API refused the request (4xx): what it said, and its ``status``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Unreachable(Exception):
    """Not the user's input, but the daemon (down, or failing): exit ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def run(call: Coroutine[Any, Any, int]) -> int:
    """Run a coroutine of this module; the reason on stderr and its code if unreachable."""
    try:
        return asyncio.run(call)
    except _Unreachable as exc:
        print(redact.scrub(str(exc)), file=sys.stderr)
        return exc.code
