"""The messages of a whole server's outage: ``server unreachable`` and ``server recovered``.

They are rendered like a watch's (:func:`~watcher.notify.messages.render`, with a channel's own
``title``/``body`` templates when it has them), from a :class:`~watcher.notify.messages.Context`
whose fields say what they can of a server:

* ``name`` is ``server <name>``, ``headline`` the alert's one line, ``event`` ``unreachable`` or
  ``recovered``, ``server``/``system``/``url`` the server's;
* ``cause`` what it did (``answered HTTP 503``), ``detail`` the last failed poll's whole error;
* ``since`` and ``started`` when its first failed poll was, ``finished`` when it answered again,
  ``duration`` how long the outage has lasted;
* ``count`` how many watches wait on it, ``names`` their names (up to :data:`NAMED`, then
  ``and N more``), ``target`` the same count in words (``30 watches``);
* ``state``, ``phase``, ``id``, ``task``, ``link``, ``outcome`` are empty and ``polls`` 0.

Without a ``body`` template a channel gets :data:`DEFAULT_BODY`. All of it is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo

from watcher.models import Event
from watcher.notify.messages import Context, render, shown
from watcher.schema import format_duration

NAMED = 10
"""How many waiting watches a message names before it says ``and N more``."""

DEFAULT_BODY = """\
{{ headline }}.
Server: {{ server }} ({{ system }}, {{ url }})
Since: {{ since }}{% if finished %}, answering again since {{ finished }}{% endif %}
{% if duration %}Outage: {{ duration }}{% endif %}
{% if detail %}Last error: {{ detail }}{% endif %}
Waiting: {{ target }}: {{ names }}
"""


def named(names: Sequence[str]) -> str:
    """``a, b, c`` for up to :data:`NAMED` names, then ``and N more``."""
    shown_names = ", ".join(names[:NAMED])
    more = len(names) - NAMED
    return f"{shown_names} and {more} more" if more > 0 else shown_names


def counted(count: int) -> str:
    """``1 watch``, ``30 watches``."""
    return f"{count} watch" + ("" if count == 1 else "es")


def headline(event: Event, server: str, cause: str, count: int, duration: str) -> str:
    """``server gov unreachable: it answered HTTP 503, 30 watches wait`` or ``server gov
    recovered after 41s, 30 watches waited``."""
    if event is Event.RECOVERED:
        return f"server {server} recovered after {duration}, {counted(count)} waited"
    return f"server {server} unreachable: it {cause}, {counted(count)} wait"


def context(
    event: Event,
    server: str,
    *,
    where: tuple[str, str],
    said: tuple[str, str],
    times: tuple[float, float | None],
    names: Sequence[str],
    tz: tzinfo | None = None,
) -> Context:
    """What a message about ``server``'s outage may say.

    Args:
        where: the server's system and URL.
        said: what it did in a few words, and the last error's whole text.
        times: its first failed poll, and when it answered again (``None``: not yet).
        names: the watches waiting on it.
    """
    since, ended = times
    duration = format_duration(max(0.0, (ended or since) - since)) if ended else ""
    cause, detail = said
    return Context(
        name=f"server {server}",
        event=event,
        state="",
        phase="",
        detail=detail,
        server=server,
        system=where[0],
        url=where[1],
        target=counted(len(names)),
        id="",
        task="",
        link="",
        started=shown(since, tz),
        finished=shown(ended, tz),
        duration=duration,
        polls=0,
        cause=cause,
        since=shown(since, tz),
        count=len(names),
        names=named(names),
        lead=headline(event, server, cause, len(names), duration),
    )


def rendered(context: Context, title: str | None, body: str | None) -> tuple[str, str]:
    """Title and body of an outage's message, from a channel's templates or the defaults."""
    return render(context, title, body or DEFAULT_BODY)
