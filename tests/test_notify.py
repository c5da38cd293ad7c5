"""Messages: rendering by table, and real delivery to a local webhook and a local SMTP server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import html
import logging
import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import Mailbox, Receiver
from watcher.models import DEFAULT_EVENTS, Event, Outcome, WatchRecord
from watcher.notify.messages import (
    NOTIFY_TYPES,
    PLACEHOLDERS,
    Channel,
    check_template,
    context_for,
    render,
)
from watcher.service import logs

ROOT = Path(__file__).parent.parent

RECORD = WatchRecord(
    key="gov//5733",
    name="nightly identity collection",
    server="gov",
    id="5733",
    state="Aborted",
    phase="failed",
    outcome=Outcome.FAILED,
    detail="collector crashed",
    started=1_700_000_000.0,
    finished=1_700_003_720.0,
    polls=12,
    link="https://rsa/run/5733",
)


def context(event: Event = Event.FAILED, record: WatchRecord = RECORD):  # type: ignore[no-untyped-def]
    return context_for(record, event, "RSA Governance & Lifecycle", "https://rsa/aveksa", 0.0)


def test_default_message_says_what_where_outcome_state_duration_and_link() -> None:
    title, body = render(context())
    assert title == "nightly identity collection failed"
    assert "run 5733 on gov (RSA Governance & Lifecycle, https://rsa/aveksa)" in body
    assert "Remote state: Aborted (failed)" in body
    assert "Detail: collector crashed" in body
    assert "Watched for 1h02m since 2023-11-14 22:13:20 UTC, 12 polls" in body
    assert "Link: https://rsa/run/5733" in body


@pytest.mark.parametrize(
    ("event", "title"),
    [
        (Event.SUCCEEDED, "nightly identity collection succeeded"),
        (Event.CANCELLED, "nightly identity collection was cancelled"),
        (Event.TIMEOUT, "nightly identity collection timed out"),
        (Event.ERROR, "nightly identity collection could not be watched"),
        (
            Event.UNREACHABLE,
            "nightly identity collection cannot be polled: its server is unreachable",
        ),
        (Event.RECOVERED, "nightly identity collection can be polled again"),
        (Event.CHANGED, "nightly identity collection is now Aborted"),
        (Event.ATTENTION, "nightly identity collection needs attention"),
    ],
)
def test_every_event_has_a_readable_default_title(event: Event, title: str) -> None:
    assert render(context(event))[0] == title


def test_templates_fill_every_documented_placeholder() -> None:
    template = " ".join(f"{{{name}}}" for name in PLACEHOLDERS)
    title, _ = render(context(), title=template)
    assert "{" not in title and "5733" in title and "Aborted" in title


def test_template_mistakes_are_caught_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="unknown placeholder 'staus'"):
        check_template("{name} {staus}")
    with pytest.raises(ValueError, match="bad template"):
        check_template("{name")
    check_template("{literal} {{ name }}")  # in Jinja2 a single brace is literal


def test_every_placeholder_is_documented_in_the_notifications_page() -> None:
    page = (ROOT / "docs" / "notifications.md").read_text(encoding="utf-8")
    missing = [name for name in PLACEHOLDERS if f"`{{{name}}}`" not in page]
    assert missing == []


def test_changed_is_off_unless_asked_for() -> None:
    assert Event.CHANGED not in DEFAULT_EVENTS
    assert Event.FAILED in DEFAULT_EVENTS


def test_an_url_apprise_cannot_parse_is_rejected_naming_the_channel() -> None:
    with pytest.raises(ValueError, match="channels.team: url #2 is not a URL apprise understands"):
        Channel("team", ["json://127.0.0.1/x", "slack://not-valid"], DEFAULT_EVENTS)


async def test_delivery_to_a_webhook_carries_title_and_body(receiver: Receiver) -> None:
    channel = Channel("hook", [receiver.url], DEFAULT_EVENTS)
    title, body = render(context())
    assert await channel.send(title, body) is None
    assert receiver.posts[0]["title"] == "nightly identity collection failed"
    assert "collector crashed" in receiver.posts[0]["message"]


async def test_a_refused_delivery_reports_why(receiver: Receiver) -> None:
    receiver.fail_first = 1
    error = await Channel("hook", [receiver.url], DEFAULT_EVENTS).send("t", "b")
    assert error is not None and "500" in error


async def test_apprise_says_nothing_of_a_delivery_watcher_reports(
    receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.fail_first = 1
    logs.setup("text")
    error = await Channel("hook", [receiver.url], DEFAULT_EVENTS).send("t", "b")
    assert error is not None and "500" in error  # the failure's own line quotes it
    logging.getLogger("apprise").warning("apprise speaking of something else")
    err = capsys.readouterr().err
    assert err.count("WARNING") == 1 and "apprise speaking of something else" in err


async def test_delivery_by_email_reaches_the_smtp_server(smtp: tuple[Mailbox, str]) -> None:
    box, url = smtp
    channel = Channel("mail", [url], DEFAULT_EVENTS)
    title, body = render(context())
    assert await channel.send(title, body) is None
    mail_from, recipients, content = box.messages[0]
    assert mail_from == "watcher@example.com"
    assert recipients == ["oncall@example.com"]
    assert "nightly identity collection failed" in content


def parsed(content: str) -> EmailMessage:
    message = email.message_from_string(content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, kind: str) -> str:
    found = message.get_body((kind,))
    assert found is not None, f"no text/{kind} part"
    return str(found.get_content()).replace("\r\n", "\n").strip()


async def test_an_email_keeps_the_line_breaks_of_the_body(smtp: tuple[Mailbox, str]) -> None:
    box, url = smtp
    title, body = render(context())
    assert await Channel("mail", [url], DEFAULT_EVENTS).send(title, body, Event.FAILED) is None
    assert part(parsed(box.messages[0][2]), "plain") == body


async def test_an_html_email_shows_each_line_of_the_body_as_a_line(
    smtp: tuple[Mailbox, str],
) -> None:
    box, url = smtp
    title, body = render(context())
    channel = Channel("mail", [f"{url}&format=html"], DEFAULT_EVENTS)
    assert await channel.send(title, body, Event.FAILED) is None
    message = parsed(box.messages[0][2])
    assert part(message, "plain") == body
    shown = [
        html.unescape(line).replace("\xa0", " ") for line in part(message, "html").split("<br/>")
    ]
    assert shown == body.split("\n")


@pytest.mark.parametrize(
    ("event", "notify_type"),
    [
        (Event.FAILED, "failure"),
        (Event.CANCELLED, "failure"),
        (Event.ERROR, "failure"),
        (Event.TIMEOUT, "failure"),
        (Event.UNREACHABLE, "warning"),
        (Event.ATTENTION, "warning"),
        (Event.SUCCEEDED, "success"),
        (Event.RECOVERED, "success"),
        (Event.CHANGED, "info"),
    ],
)
async def test_every_event_reaches_a_webhook_with_its_notification_type(
    receiver: Receiver, event: Event, notify_type: str
) -> None:
    title, body = render(context(event))
    assert await Channel("hook", [receiver.url], DEFAULT_EVENTS).send(title, body, event) is None
    assert receiver.posts[0]["type"] == notify_type


def test_every_event_has_a_notification_type() -> None:
    assert set(NOTIFY_TYPES) == set(Event)


async def test_one_channel_per_apprise_object_so_failures_are_per_channel(
    receiver: Receiver, unused_tcp_port: int
) -> None:
    good = Channel("good", [receiver.url], DEFAULT_EVENTS)
    bad = Channel("bad", [f"json://127.0.0.1:{unused_tcp_port}/x"], DEFAULT_EVENTS)
    results = await asyncio.gather(good.send("t", "b"), bad.send("t", "b"))
    assert results[0] is None and results[1] is not None


def test_console_channel_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert asyncio.run(Channel("c", ["console://"], DEFAULT_EVENTS).send("T", "B")) is None
    assert re.search(r">>> T\nB", capsys.readouterr().out)
