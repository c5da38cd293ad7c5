"""Which redirects watcher follows: within one origin only, at most five, never losing a body.

An HTTP library that follows redirects by itself re-sends the request's headers to wherever
``Location`` points (aiohttp drops only ``Authorization``): a token in ``X-Esri-Authorization``
or ``X-Api-Key``, a configured ``headers`` entry or a login's ``ClientSecret`` would reach
another host, and that host's answer would be read as the run's status. So
:class:`~watcher.remote.client.ServerClient` sends every request with redirects off and asks
:func:`next_url` what to do with each answer:

* 301, 302, 303, 307 and 308 with a ``Location`` are redirects; any other answer, a 3xx without
  ``Location`` too, is the answer;
* the target must have the scheme, host and port of the request that was redirected; a redirect
  anywhere else is a :class:`~watcher.errors.PermanentError` naming the target as
  ``scheme://host:port/path`` (never its query string), and nothing is sent there;
* 307 and 308 repeat the request as it was, method, headers and body; 301, 302 and 303 are
  followed by GET and HEAD only. Clients turn a redirected POST into a GET without its body,
  which for a login would drop the credentials and read whatever page comes back as its
  answer, so a POST redirected that way is a :class:`~watcher.errors.PermanentError`;
* a request is redirected at most :data:`MAX_REDIRECTS` times; a loop (a URL already visited)
  or one more redirect is a :class:`~watcher.errors.PermanentError`, not a retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from yarl import URL

from watcher.errors import PermanentError
from watcher.redact import scrub

MAX_REDIRECTS: Final = 5
REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
KEEP_METHOD: Final = frozenset({307, 308})
SAFE_METHODS: Final = frozenset({"GET", "HEAD"})


def describe(url: URL) -> str:
    """``scheme://host:port/path`` of ``url``: always the port, never the query or fragment."""
    port = f":{url.port}" if url.port is not None else ""
    return scrub(f"{url.scheme}://{url.host_subcomponent or ''}{port}{url.path}")


def same_origin(a: URL, b: URL) -> bool:
    """Whether two absolute URLs have the same scheme, host and port (default ports filled in)."""
    return (a.scheme, a.raw_host, a.port) == (b.scheme, b.raw_host, b.port)


def next_url(method: str, visited: Sequence[URL], status: int, location: str | None) -> URL | None:
    """Where to send the request next, or ``None`` when this answer is the answer.

    Args:
        method: the request's method (kept on every redirect watcher follows).
        visited: every URL requested so far, the one that gave this answer last.
        status: the answer's HTTP status.
        location: its ``Location`` header, if any.

    Raises:
        PermanentError: a redirect watcher does not follow; the message says why.
    """
    if status not in REDIRECTS or not location:
        return None
    here = visited[-1]
    target = _resolve(here, location)
    said = f"{method} {describe(here)} redirected (HTTP {status}) to {describe(target)}"
    if not same_origin(here, target):
        msg = (
            f"{said}, another origin; redirects are followed only to the same scheme, host and port"
        )
        raise PermanentError(msg, status)
    if status not in KEEP_METHOD and method.upper() not in SAFE_METHODS:
        msg = f"{said}; a {method} is followed only through 307 or 308, which keep its body"
        raise PermanentError(msg, status)
    if target in visited:
        raise PermanentError(f"{said}: a redirect loop", status)
    if len(visited) > MAX_REDIRECTS:
        raise PermanentError(f"{said}: more than {MAX_REDIRECTS} redirects", status)
    return target


def _resolve(here: URL, location: str) -> URL:
    """The absolute target, without a fragment or credentials in the URL (never sent on)."""
    try:
        return here.join(URL(location)).with_fragment(None).with_user(None)
    except ValueError:
        msg = f"{describe(here)} redirected to a Location that is not a URL"
        raise PermanentError(msg) from None
