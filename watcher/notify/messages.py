"""Messages and their delivery: pure rendering, one apprise object per channel.

Rendering is pure: :func:`render` turns a :class:`Context` into a title and a body, from the
channel's ``title``/``body`` templates or from :data:`DEFAULT_TITLE`/:data:`DEFAULT_BODY`.
Templates are Jinja2 (sandboxed) or ``str.format`` text (:mod:`watcher.notify.templates`); either
way a name not in :data:`PLACEHOLDERS` is a configuration error, caught by :func:`check_template`
when the config loads.

Delivery goes through ``Apprise.async_notify``, which runs apprise's blocking plugins in its own
threads, so the event loop never waits on a slow SMTP server. Each channel has its own apprise
object, so each channel's success is known and only failed channels are retried. Bodies are
sent as text, so an email keeps its line breaks, with the apprise notification type of the
event (:data:`NOTIFY_TYPES`), by which chat services colour messages.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass, replace
from datetime import tzinfo
from functools import cache
from typing import Any

from watcher import clock
from watcher.models import Event, WatchRecord
from watcher.notify import templates
from watcher.notify.quiet import Quiet
from watcher.notify.sending import delivering
from watcher.redact import scrub
from watcher.schema import format_duration

log = logging.getLogger(__name__)

PLACEHOLDERS: dict[str, str] = {
    "name": "the watch's name (configured, or derived from its target)",
    "headline": "one line: name and what happened, e.g. 'nightly import failed'",
    "event": (
        "what happened: an outcome, or unreachable, recovered, changed, attention, overdue,"
        " suspiciously_fast"
    ),
    "outcome": "the outcome once the watch has ended, else empty",
    "state": "the remote state verbatim, e.g. 'Aborted'",
    "phase": "pending, running, succeeded, failed, cancelled, or 'unknown'",
    "detail": "the remote system's own words: error text, result message",
    "server": "the server's name in watches.toml",
    "system": "the kind of remote system, e.g. 'RSA Governance & Lifecycle'",
    "url": "the server's base URL",
    "target": "what is watched, e.g. 'run 5733' or 'task CleanGPJobs, run 42'",
    "id": "the run id (empty for a task watch that has not found its run yet)",
    "task": "the task (ArcGIS), else empty",
    "link": "a URL to the run where the system has one, else empty",
    "started": "when watching began, with its zone ([daemon] timezone, else the machine's)",
    "finished": "when the watch ended, with its zone, else empty",
    "duration": "how long it has been watched, e.g. '1h02m'",
    "polls": "how many polls it took",
    "cause": "what the server did when it could not be polled, e.g. 'answered HTTP 503'",
    "since": "a server outage: when its first failed poll was (else empty)",
    "count": "a server outage: how many watches wait on the server (else 1)",
    "names": "a server outage: the names of the watches waiting (up to 10, 'and N more')",
    "usual": "how long its family's earlier runs usually took (their median), e.g. '40m'",
}

_HEADLINES = {
    Event.SUCCEEDED: "succeeded",
    Event.FAILED: "failed",
    Event.CANCELLED: "was cancelled",
    Event.TIMEOUT: "timed out",
    Event.ERROR: "could not be watched",
    Event.UNREACHABLE: "cannot be polled: {why}",
    Event.RECOVERED: "can be polled again",
    Event.CHANGED: "is now {state}",
    Event.ATTENTION: "needs attention",
    Event.OVERDUE: "is overdue: still {state} after {duration}",
    Event.SUSPICIOUSLY_FAST: "succeeded suspiciously fast: in {duration}, usually {usual}",
}

#: apprise's notification type per event: chat services colour messages by it
NOTIFY_TYPES: dict[Event, str] = {
    Event.SUCCEEDED: "success",
    Event.RECOVERED: "success",
    Event.FAILED: "failure",
    Event.CANCELLED: "failure",
    Event.ERROR: "failure",
    Event.TIMEOUT: "failure",
    Event.UNREACHABLE: "warning",
    Event.ATTENTION: "warning",
    Event.OVERDUE: "warning",
    Event.SUSPICIOUSLY_FAST: "warning",
    Event.CHANGED: "info",
}

DEFAULT_TITLE = "{{ headline }}"
#: the body of a channel without ``body``; a line whose value is empty is left out
DEFAULT_BODY = """\
{{ headline }}.
What: {{ target }} on {{ server }} ({{ system }}, {{ url }})
Remote state: {% if state %}{{ state }} ({{ phase }}){% else %}none yet{% endif %}
{% if detail %}Detail: {{ detail }}{% endif %}
Watched for {{ duration }} since {{ started }}, {{ polls }} polls
{% if finished %}Finished: {{ finished }}{% endif %}
{% if link %}Link: {{ link }}{% endif %}
"""


@cache
def _apprise() -> Any:
    """apprise, imported only by the commands that deliver or check channel URLs, with
    watcher's ``console://`` scheme registered."""
    import apprise
    from apprise.decorators import notify as apprise_scheme

    apprise_scheme(on="console", name="watcher console")(_console)
    return apprise


def _console(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
    """``console://``: print the notification to standard output (demo, CI logs)."""
    print(f"\n>>> {title}\n{body}\n", file=sys.stdout, flush=True)
    return True


def check_template(template: str) -> None:
    """Raise ``ValueError`` for a template that does not parse or names a placeholder not in
    :data:`PLACEHOLDERS` (see :mod:`watcher.notify.templates` for both syntaxes)."""
    templates.check(template, PLACEHOLDERS)


def url_problem(url: str) -> str | None:
    """Why apprise cannot use ``url``, or ``None``; the answer never quotes the URL."""
    service = _apprise().Apprise.instantiate(url)
    if service is None:
        return "not a URL apprise understands"
    port = getattr(service, "port", None)
    if isinstance(port, int) and not 1 <= port <= 65535:
        return f"the port must be a number from 1 to 65535, not {port}"
    return None


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a message may say about one event of one watch."""

    name: str
    event: Event
    state: str
    phase: str
    detail: str
    server: str
    system: str
    url: str
    target: str
    id: str
    task: str
    link: str
    started: str
    finished: str
    duration: str
    polls: int
    outcome: str = ""
    cause: str = ""
    since: str = ""
    count: int = 1
    names: str = ""
    lead: str = ""
    """The headline, when it is not the watch's (a server outage's)."""
    usual: str = ""

    @property
    def headline(self) -> str:
        if self.lead:
            return self.lead
        said = _HEADLINES[self.event].format(
            state=self.state or "?",
            duration=self.duration,
            why=f"{self.server} {self.cause}" if self.cause else "its server is unreachable",
            usual=self.usual or "?",
        )
        return f"{self.name} {said}"

    def fields(self) -> dict[str, Any]:
        return {**asdict(self), "event": str(self.event), "headline": self.headline}


def shown(timestamp: float | None, tz: tzinfo | None = None) -> str:
    """A time as messages show it (:func:`watcher.clock.shown`), in ``[daemon] timezone``;
    empty for none."""
    return clock.shown(timestamp, tz) if timestamp else ""


def describe_target(record: WatchRecord) -> str:
    """``run 5733``, ``task CleanGPJobs, run 42`` or ``task CleanGPJobs``."""
    run = record.id or record.run_id
    parts = ([f"task {record.task}"] if record.task else []) + ([f"run {run}"] if run else [])
    return ", ".join(parts)


def context_for(
    record: WatchRecord,
    event: Event,
    system: str,
    url: str,
    now: float,
    tz: tzinfo | None = None,
    cause: str = "",
    *,
    usual_s: float | None = None,
) -> Context:
    """What a message about ``event`` of this watch may say (times shown in ``tz``);
    ``cause``: what its server did, when it could not be polled; ``usual_s``: how long its
    family's runs usually take, where known."""
    return Context(
        name=record.name,
        event=event,
        state=record.state or "",
        phase=record.phase or "",
        detail=record.detail,
        server=record.server,
        system=system,
        url=url,
        target=describe_target(record),
        id=record.id or record.run_id or "",
        task=record.task or "",
        link=record.link or "",
        started=shown(record.started, tz),
        finished=shown(record.finished, tz),
        duration=format_duration(max(0.0, (record.finished or now) - record.started)),
        polls=record.polls,
        outcome=str(record.outcome or ""),
        cause=cause,
        names=record.name,
        usual="" if usual_s is None else format_duration(usual_s),
    )


#: Typical values of every field, for examples and tests.
SAMPLE = Context(
    name="nightly import",
    event=Event.FAILED,
    state="Aborted",
    phase="failed",
    detail="crashed",
    server="gov",
    system="RSA Governance & Lifecycle",
    url="https://rsa.example.com/aveksa",
    target="run 5733",
    id="5733",
    task="",
    link="",
    started="2026-01-01 00:00:00 UTC",
    finished="2026-01-01 01:02:00 UTC",
    duration="1h02m",
    polls=12,
    outcome="failed",
    names="nightly import",
)


#: remote state, phase and detail of :func:`sample` runs
_SAMPLE_STATES: dict[Event, tuple[str, str, str]] = {
    Event.SUCCEEDED: ("Completed", "succeeded", "1204 identities collected"),
    Event.FAILED: ("Aborted", "failed", "collector crashed"),
    Event.CANCELLED: ("Cancelled", "cancelled", "cancelled by an administrator"),
    Event.TIMEOUT: ("Running", "running", ""),
    Event.ERROR: ("", "", "HTTP 404: no run 5733"),
    Event.UNREACHABLE: ("Running", "running", "connection refused"),
    Event.RECOVERED: ("Running", "running", ""),
    Event.CHANGED: ("Running", "running", ""),
    Event.ATTENTION: ("Held", "pending", "waiting for an approval"),
    Event.OVERDUE: ("Running", "running", ""),
    Event.SUSPICIOUSLY_FAST: ("Completed", "succeeded", "0 identities collected"),
}


def sample(event: Event) -> Context:
    """A sample run at ``event``, every field with a typical value (``notify-test --event``)."""
    state, phase, detail = _SAMPLE_STATES[event]
    fast = event is Event.SUSPICIOUSLY_FAST  # a success, in minutes where hours are usual
    ended = event.is_outcome or fast
    return replace(
        SAMPLE,
        event=event,
        state=state,
        phase=phase,
        detail=detail,
        link="https://rsa.example.com/aveksa/runs/5733",
        finished=SAMPLE.finished if ended else "",
        outcome=("succeeded" if fast else event.value) if ended else "",
        cause="refused the connection" if event is Event.UNREACHABLE else "",
        duration="4m" if fast else SAMPLE.duration,
        usual="1h02m" if fast else "",
    )


def render(context: Context, title: str | None = None, body: str | None = None) -> tuple[str, str]:
    """Title and body for ``context``, from templates or the defaults; secrets masked.

    Templates are checked when the config loads; should one still fail on real values, the
    default text is used (logged once per template), because a message must never keep a
    watch from ending.
    """
    fields = context.fields()
    rendered_title = _fill(title, fields) or _fill(DEFAULT_TITLE, fields) or context.headline
    rendered_body = _fill(body, fields) or _fill(DEFAULT_BODY, fields) or context.headline
    return scrub(rendered_title), scrub(rendered_body)


_failed: set[str] = set()  # templates that failed on real values: each is logged once


def _fill(template: str | None, fields: dict[str, Any]) -> str | None:
    if not template:
        return None
    try:
        return templates.fill(template, fields)
    except Exception as exc:  # whatever a template raises: the sandbox, a filter, a value
        if template not in _failed:
            _failed.add(template)
            log.warning("template %r failed (%s); using the default text", template, exc)
        return None


class Channel:
    """One configured channel: its apprise object, its event filter and its templates."""

    def __init__(
        self,
        name: str,
        urls: list[str],
        events: frozenset[Event],
        title: str | None = None,
        body: str | None = None,
        quiet: Quiet | None = None,
        urgent: frozenset[Event] = frozenset(),
        repeat_s: float | None = None,
        group_s: float | None = None,
        *,
        repeat_factor: float = 1.0,
        repeat_max_s: float = 0.0,
        after_s: float | None = None,
    ) -> None:
        self.name = name
        self.events = events
        self.title = title
        self.body = body
        self._quiet, self._urgent = quiet, urgent
        self.repeat_s = repeat_s  # remind of a condition that lasts this often
        self.group_s = group_s  # gather what comes within this into one message
        # reminders wait longer each time, up to a cap (watcher.notify.escalation)
        self.repeat_factor, self.repeat_max_s = repeat_factor, repeat_max_s
        self.after_s = after_s  # hear of a lasting condition only once it lasted this long
        templates.prepare(title or DEFAULT_TITLE, body or DEFAULT_BODY)
        apprise = _apprise()
        self._apprise = apprise.Apprise(asset=apprise.AppriseAsset(app_id="watcher"))
        for index, url in enumerate(urls):
            if not self._apprise.add(url):
                msg = f"channels.{name}: url #{index + 1} is not a URL apprise understands"
                raise ValueError(scrub(msg))

    def wants(self, event: Event) -> bool:
        return event in self.events

    def groups(self, event: Event) -> bool:
        """Whether ``event`` waits to go out in a digest (``urgent`` events never do)."""
        return self.group_s is not None and event not in self._urgent

    def quiet_until(self, event: Event, now: float) -> float | None:
        """When quiet hours that hold back ``event`` at ``now`` end; ``None``: send now."""
        if self._quiet is None or event in self._urgent:
            return None
        return self._quiet.until(now)

    def describe(self) -> str:
        """The channel's URLs with their secrets masked by apprise."""
        return ", ".join(service.url(privacy=True).split("?")[0] for service in self._apprise)

    async def send(self, title: str, body: str, event: Event | None = None) -> str | None:
        """Deliver once, as text, with the notification type of ``event`` (info without one);
        ``None`` on success, else what went wrong (secrets masked)."""
        notify_type = NOTIFY_TYPES[event] if event is not None else "info"
        with delivering():
            result = await self._apprise.async_notify(
                body=body, title=title, notify_type=notify_type, body_format="text"
            )
        if result:
            return None
        problems = [
            f"{service.name}: {entry.message}"
            for service in result
            if not service
            for entry in service.logs()
            if entry.level in ("WARNING", "ERROR")
        ]
        return scrub("; ".join(problems) or f"delivery {result.status.name.lower()}")
