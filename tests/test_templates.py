"""Message templates: Jinja2 in its sandbox and the older ``{name}`` syntax, by table, and their
mistakes reported when the config loads."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from watcher.cli.main import main
from watcher.models import Event
from watcher.notify.messages import SAMPLE, Context, check_template, render
from watcher.notify.templates import is_jinja

BARE = replace(SAMPLE, detail="", link="", finished="")
"""A run still going, with no detail and no link: the values a message must not show empty."""


def body(template: str, context: Context = SAMPLE) -> str:
    return render(context, body=template)[1]


def test_the_default_body_leaves_out_lines_whose_value_is_empty() -> None:
    text = render(BARE)[1]
    assert text == (
        "nightly import failed.\n"
        "What: run 5733 on gov (RSA Governance & Lifecycle, https://rsa.example.com/aveksa)\n"
        "Remote state: Aborted (failed)\n"
        "Watched for 1h02m since 2026-01-01 00:00:00 UTC, 12 polls"
    )


def test_the_default_body_shows_detail_finish_and_link_when_there_are_some() -> None:
    text = render(replace(SAMPLE, link="https://rsa/run/5733"))[1]
    assert text.splitlines()[-3:] == [
        "Watched for 1h02m since 2026-01-01 00:00:00 UTC, 12 polls",
        "Finished: 2026-01-01 01:02:00 UTC",
        "Link: https://rsa/run/5733",
    ]
    assert "Detail: crashed" in text


@pytest.mark.parametrize(
    ("template", "with_values", "without"),
    [
        ("A\n{% if link %}Link: {{ link }}{% endif %}\nB", "A\nLink: L\nB", "A\nB"),
        ("A\n{% if link %}\nLink: {{ link }}\n{% endif %}\nB", "A\nLink: L\nB", "A\nB"),
        ("A\n  {% if link %}Link: {{ link }}{% endif %}\nB", "A\nLink: L\nB", "A\nB"),
        ("A\n{{ link }}\nB", "A\nL\nB", "A\nB"),
        ("A\n\nB {{ link }}", "A\n\nB L", "A\n\nB "),  # blank lines of the template stay
        ("{# a note #}\nA {{ link }}", "A L", "A "),
    ],
)
def test_a_template_line_whose_values_are_all_empty_is_left_out(
    template: str, with_values: str, without: str
) -> None:
    assert body(template, replace(BARE, link="L")) == with_values
    assert body(template, BARE) == without


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (Event.FAILED, "nightly import failed: crashed. Call the on-call DBA."),
        (Event.SUCCEEDED, "nightly import succeeded after 1h02m."),
        (Event.TIMEOUT, "nightly import: timeout"),
    ],
)
def test_a_template_can_say_something_different_per_event(event: Event, text: str) -> None:
    template = (
        '{% if event == "failed" %}\n'
        "{{ name }} failed: {{ detail }}. Call the on-call DBA.\n"
        '{% elif event == "succeeded" %}\n'
        "{{ name }} succeeded after {{ duration }}.\n"
        "{% else %}\n"
        "{{ name }}: {{ event }}\n"
        "{% endif %}\n"
    )
    assert body(template, replace(SAMPLE, event=event)) == text


def test_templates_in_the_older_syntax_still_fill_their_fields() -> None:
    title, text = render(SAMPLE, title="[watcher] {headline}", body="{name}: {state}\nLink: {link}")
    assert title == "[watcher] nightly import failed"
    assert text == "nightly import: Aborted\nLink: "  # as before: no line is left out
    assert not is_jinja("[watcher] {headline}")
    assert is_jinja("{{ headline }}") and is_jinja("{% if link %}x{% endif %}")


def test_jinja_templates_have_filters_and_its_own_names() -> None:
    template = "{{ name | upper }} {% for i in range(2) %}{{ i }}{% endfor %} {{ polls * 2 }}"
    check_template(template)
    assert body(template) == "NIGHTLY IMPORT 01 24"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ nope }}", "unknown placeholder 'nope'"),
        ("{% if nope %}x{% endif %}", "unknown placeholder 'nope'"),
        ("{name} {nope}", "unknown placeholder 'nope'"),
        ("{{literal}} {{ name }}", "unknown placeholder 'literal'"),  # {{ now means Jinja2
        ("{% if name %}x", r"bad template: .*'endif'.* \(line 1\)"),
        ("{{ name | nofilter }}", "bad template: No filter named 'nofilter'"),
        ("{name:>99999999}", "bad template: {name:>99999999} is not a plain placeholder"),
        ("{name", "bad template"),
    ],
)
def test_template_mistakes_are_config_errors(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_template(template)


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("{{ name.__class__.__mro__ }}", "an attribute of Python's internals"),
        ("{{ polls + name }}", "a type error on real values"),
        ("{{ polls / (polls - 12) }}", "a division by zero with these values"),
    ],
)
def test_a_template_failing_on_real_values_sends_the_default_and_is_logged_once(
    template: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    check_template(template)  # nothing at load time says it will fail
    with caplog.at_level(logging.WARNING, logger="watcher.notify.messages"):
        first, again = body(template), body(template)
    assert first == again == render(SAMPLE)[1], why
    assert [r.getMessage().split(" failed")[0] for r in caplog.records] == [
        f"template {template!r}"
    ]


CONFIG = """\
[channels.team]
url = "json://127.0.0.1:9/hook"
{template}

[servers.gov]
kind = "rsa_governance"
url = "http://127.0.0.1:9/aveksa"
token = "t0ken-value"
"""


@pytest.mark.parametrize(
    "template",
    [
        'body = """\nRun {{ name }}\n{% if nope %}x{% endif %}\n"""',
        'body = "{name} {nope}"',
    ],
)
def test_an_unknown_placeholder_is_exit_2_naming_the_channel_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], template: str
) -> None:
    path = tmp_path / "watches.toml"
    config = CONFIG.format(template=template)
    path.write_text(f'[daemon]\nstate = "{(tmp_path / "s.db").as_posix()}"\n{config}', "utf-8")
    assert main(["check", "-c", str(path)]) == 2
    assert f"{path}: channels.team.body: unknown placeholder 'nope'" in capsys.readouterr().err
