"""``[channels.<name>]``: where notifications go, which events each wants, and when.

Every URL is masked in all output from the moment it is read, and checked with apprise as the
file loads (except within :meth:`ChannelConfig.urls_unchecked`); templates and quiet hours are
checked by :mod:`watcher.notify`, which owns them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from watcher import redact
from watcher.models import DEFAULT_EVENTS, Event
from watcher.notify import quiet
from watcher.notify.messages import check_template, url_problem
from watcher.notify.reminders import LASTING
from watcher.schema import Duration, Model

_check_channel_urls: ContextVar[bool] = ContextVar("check_channel_urls", default=True)


def _channel_url(url: SecretStr) -> SecretStr:
    redact.register_url(url.get_secret_value())  # masked in all output from the moment it is known
    if _check_channel_urls.get() and (problem := url_problem(url.get_secret_value())):
        raise ValueError(problem)
    return url


ChannelUrl = Annotated[SecretStr, AfterValidator(_channel_url)]


class ChannelConfig(Model):
    """``[channels.<name>]``: where notifications go and which events each one wants.

    Apprise checks every URL as the config loads, except within :meth:`urls_unchecked`.
    """

    url: ChannelUrl | None = None
    """An apprise URL; one that apprise cannot parse, or with a port outside 1 to 65535, is a
    config error. A channel needs ``url`` or ``urls``.
    """
    urls: list[ChannelUrl] = Field(default_factory=list)
    """More apprise URLs, checked as ``url`` is."""
    on: frozenset[Event] = DEFAULT_EVENTS
    """Which events this channel receives; by default every event except ``changed``."""
    title: str | None = None
    """The message's title template: Jinja2, or text with ``{placeholder}`` fields; unset: the
    default title.
    """
    body: str | None = None
    """The message's body template, as ``title``; unset: the default body."""
    quiet: str | None = None
    """Quiet hours, ``"22:00-07:00"`` in ``[daemon] timezone``: messages wait for the end of the
    window.
    """
    urgent: frozenset[Event] = frozenset()
    """Events that go out during quiet hours all the same, e.g. ``["failed", "error"]``."""
    repeat: Duration | None = None
    """Remind this channel of ``unreachable``, ``attention`` and ``overdue`` (and a server outage)
    this often while they last, e.g. ``"1h"``.
    """
    repeat_factor: float | None = None
    """Each reminder waits this many times longer than the last (``repeat``, then x2, x4 ...; 1 to
    10); needs ``repeat``; unset: 1.
    """
    repeat_max: Duration | None = None
    """The longest wait between reminders when ``repeat_factor`` grows it; at least ``repeat``;
    needs ``repeat``; unset: ``24h``.
    """
    after: Duration | None = None
    """Escalation: hear of a lasting condition only once it has lasted this long and nobody
    acknowledged it, e.g. ``"30m"``; ``on`` must name a lasting condition.
    """
    group: Duration | None = None
    """Gather what reaches the channel within this window (e.g. ``"2m"``) into one message;
    ``urgent`` events do not wait.
    """

    @field_validator("repeat_factor")
    @classmethod
    def _a_factor(cls, value: float | None) -> float | None:
        if value is not None and not 1 <= value <= 10:
            raise ValueError("must be a number from 1 (reminders as often) to 10")
        return value

    @model_validator(mode="after")
    def _escalation(self) -> ChannelConfig:
        for key in ("repeat_factor", "repeat_max"):
            if getattr(self, key) is not None and self.repeat is None:
                msg = f"'{key}' needs 'repeat' (how long before the first reminder)"
                raise ValueError(msg)
        if self.repeat and self.repeat_max and self.repeat_max < self.repeat:
            raise ValueError("'repeat_max' must be at least 'repeat'")
        if self.after is not None and not self.on & LASTING:
            names = ", ".join(sorted(LASTING))
            msg = f"'after' delays lasting conditions ({names}), and 'on' names none of them"
            raise ValueError(msg)
        return self

    @field_validator("quiet")
    @classmethod
    def _a_window(cls, value: str | None) -> str | None:
        if value is not None:
            quiet.window(value)
        return value

    @staticmethod
    @contextmanager
    def urls_unchecked() -> Iterator[None]:
        """Load channels without asking apprise about their URLs (``notify-test`` of one
        channel checks only that one's, with :meth:`url_problems`)."""
        token = _check_channel_urls.set(False)
        try:
            yield
        finally:
            _check_channel_urls.reset(token)

    def url_problems(self) -> list[str]:
        """``url: why`` or ``urls[i]: why`` for each URL apprise cannot use."""
        keyed = ([("url", self.url)] if self.url else []) + [
            (f"urls[{index}]", url) for index, url in enumerate(self.urls)
        ]
        return [
            f"{key}: {problem}"
            for key, url in keyed
            if (problem := url_problem(url.get_secret_value()))
        ]

    @field_validator("title", "body")
    @classmethod
    def _known_placeholders(cls, value: str | None) -> str | None:
        if value is not None:
            check_template(value)
        return value

    @model_validator(mode="after")
    def _has_urls(self) -> ChannelConfig:
        if not self.all_urls:
            raise ValueError("needs 'url' or 'urls'")
        return self

    @property
    def all_urls(self) -> list[str]:
        return [u.get_secret_value() for u in ([self.url] if self.url else []) + self.urls]
