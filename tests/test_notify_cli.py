"""Notifications from the command line: ``notify-test`` of one channel, and the notification
type of each outcome reaching a real webhook from ``run --once``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import Receiver
from tests.systems import server_table, watch_table
from watcher.cli.main import main
from watcher.simulators.rsa_governance import RsaSimulator

PER_EVENT = '''"""
{% if event == "failed" %}
{{ name }} FAILED on {{ server }}: {{ detail }} (remote state {{ state }})
{% else %}
{{ name }}: {{ event }}
{% endif %}
Finished: {{ finished }}
{% if link %}Link: {{ link }}{% endif %}
"""'''


def write(tmp_path: Path, channels: str, servers: str = "", watches: str = "") -> Path:
    path = tmp_path / "watches.toml"
    state = (tmp_path / "state.db").as_posix()
    path.write_text(f'[daemon]\nstate = "{state}"\n\n{channels}\n{servers}\n{watches}', "utf-8")
    return path


def channel(name: str, url: str, *lines: str) -> str:
    return f'[channels.{name}]\nurl = "{url}"\n' + "".join(f"{line}\n" for line in lines)


async def cli(*args: str | Path) -> int:
    return await asyncio.to_thread(main, [str(a) for a in args])


async def test_notify_test_of_an_event_sends_what_the_templates_make_of_a_sample_run(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = write(
        tmp_path,
        channel("team", receiver.url, 'title = "[watcher] {headline}"', f"body = {PER_EVENT}"),
    )
    assert await cli("notify-test", "team", "--event", "failed", "-c", path) == 0
    assert await cli("notify-test", "team", "--event", "succeeded", "-c", path) == 0
    failed, succeeded = receiver.posts
    assert failed["title"] == "[watcher] nightly import failed"
    assert failed["message"] == (
        "nightly import FAILED on gov: collector crashed (remote state Aborted)\n"
        "Finished: 2026-01-01 01:02:00 UTC\n"
        "Link: https://rsa.example.com/aveksa/runs/5733"
    )
    assert failed["type"] == "failure"
    assert succeeded["message"].startswith("nightly import: succeeded\nFinished: 2026")
    assert succeeded["type"] == "success"


async def test_notify_test_without_an_event_sends_the_plain_test_message(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = write(tmp_path, channel("team", receiver.url, f"body = {PER_EVENT}"))
    assert await cli("notify-test", "team", "-c", path) == 0
    assert receiver.titles == ["watcher test notification"]
    assert receiver.posts[0]["message"].startswith("Sent by 'watcher notify-test' at ")
    assert receiver.posts[0]["type"] == "info"


async def test_a_broken_channel_does_not_keep_another_from_being_tested(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        channel("team", receiver.url) + "\n" + channel("pager", "slack://not-valid"),
    )
    assert await cli("notify-test", "team", "--event", "failed", "-c", path) == 0
    assert receiver.titles == ["nightly import failed"]
    assert await cli("notify-test", "pager", "-c", path) == 2
    assert f"{path}: channels.pager.url: not a URL apprise understands" in capsys.readouterr().err
    assert await cli("check", "-c", path) == 2  # every other command still checks them all
    assert f"{path}: channels.pager.url: not a URL apprise understands" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("urls", "key"),
    [
        ('urls = ["json://127.0.0.1:9/a", "json://127.0.0.1:0/b"]', "urls[1]: the port must"),
        ('url = "json://127.0.0.1:9/a"\nurls = ["nope://x"]', "urls[0]: not a URL"),
    ],
)
async def test_notify_test_of_a_bad_url_names_the_file_and_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], urls: str, key: str
) -> None:
    path = write(tmp_path, f"[channels.team]\n{urls}\n")
    assert await cli("notify-test", "team", "-c", path) == 2
    assert f"{path}: channels.team.{key}" in capsys.readouterr().err


async def test_notify_test_of_an_unknown_event_or_channel_is_a_usage_error(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, channel("team", receiver.url))
    assert await cli("notify-test", "team", "--event", "exploded", "-c", path) == 2
    assert (
        "--event: no event named 'exploded' (known: succeeded, failed," in capsys.readouterr().err
    )
    assert await cli("notify-test", "pager", "-c", path) == 2
    assert "no channel named 'pager' (known: team)" in capsys.readouterr().err
    assert receiver.posts == []


async def test_each_outcome_reaches_the_webhook_with_its_notification_type(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = RsaSimulator({"1": ["Running", "Completed"], "2": ["Running", "Aborted"]})
    await sim.start()
    try:
        watches = "".join(
            watch_table(
                "rsa_governance", "gov", run, name=f"run {run}", interval=0.02, notify=["team"]
            )
            for run in ("1", "2")
        )
        path = write(
            tmp_path,
            channel("team", receiver.url),
            server_table("rsa_governance", "gov", sim.url),
            watches,
        )
        assert await cli("run", "--once", "-c", path) == 1
    finally:
        await sim.stop()
    types = {post["title"]: post["type"] for post in receiver.posts}
    assert types == {"run 1 succeeded": "success", "run 2 failed": "failure"}
