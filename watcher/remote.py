"""``watcher submit --url`` and ``watcher cancel --url``: the same commands through a daemon's
HTTP API, so a CI runner needs a token, not the database's credentials or the config.

The token comes from ``--token-file`` or ``$WATCHER_TOKEN`` and is sent only as
``Authorization: Bearer``; it is masked in everything watcher prints. An answer the user can act
on (401, 403, 404, 409, 422) is a ConfigError (exit 2) carrying the API's own words; a daemon
that cannot be reached, or answers 5xx, is exit 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from watcher import redact
from watcher.client import Http, Reply
from watcher.errors import EXIT_FAILED, EXIT_OK, ConfigError, PollError

TIMEOUT_S = 30.0


def token_from(token_file: str | None, env: Mapping[str, str]) -> str:
    """The API token: the content of ``token_file``, else ``$WATCHER_TOKEN``."""
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
    return token


async def submit(url: str, token: str, settings: Mapping[str, Any]) -> int:
    """POST the run to ``url``'s API and print its key, as the local ``submit`` does."""
    given = {key: value for key, value in settings.items() if value is not None}
    reply = await _call(url, token, "POST", "/api/v1/watches", given)
    watch = reply.json()["watch"]
    said = "submitted" if reply.status == 201 else "already watched"
    print(f"{watch['key']}  {said}: {watch['name']}")
    return EXIT_OK


async def cancel(url: str, token: str, key: str) -> int:
    """DELETE the watch ``key`` through ``url``'s API."""
    await _call(url, token, "DELETE", f"/api/v1/watches/{quote(key, safe='')}")
    print(f"{key}: cancelled")
    return EXIT_OK


async def _call(
    url: str, token: str, method: str, path: str, body: Mapping[str, Any] | None = None
) -> Reply:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body)
    try:
        async with Http(connections=1) as http:
            client = http.server(max_concurrency=1, timeout_s=TIMEOUT_S)
            reply = await client.request(method, url.rstrip("/") + path, headers=headers, data=data)
    except PollError as exc:
        raise _Unreachable(f"watcher: cannot reach the API at {url}: {exc}") from None
    if reply.ok:
        return reply
    try:
        said = str(reply.json().get("error", reply.text))
    except (PollError, AttributeError):
        said = reply.text[:200]
    if reply.status >= 500:
        raise _Unreachable(f"watcher: the API at {url} answered {reply.status}: {said}")
    raise ConfigError(f"the API at {url} refused ({reply.status}): {redact.scrub(said)}")


class _Unreachable(Exception):
    """Exit 1: not the user's input, but the daemon (down, or failing)."""


def run(call: Coroutine[Any, Any, int]) -> int:
    """Run a coroutine of this module; exit 1 (with the reason on stderr) if unreachable."""
    try:
        return asyncio.run(call)
    except _Unreachable as exc:
        print(redact.scrub(str(exc)), file=sys.stderr)
        return EXIT_FAILED
