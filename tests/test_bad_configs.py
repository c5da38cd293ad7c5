"""No config value that ``check`` accepts but ``run`` cannot survive.

Every bad config here is exit 2 from both ``watcher check`` and ``watcher run --once``, with a
message naming the file and the key (or what is wrong with the file), and never a traceback.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from watcher.cli.main import main, parser
from watcher.config.load import load

STATE = "@STATE@"

GOOD = f"""
[daemon]
state = "{STATE}"

[channels.team]
url = "json://127.0.0.1:9/hook"

[servers.gov]
kind = "rsa_governance"
url = "http://127.0.0.1:9/aveksa"
token = "t0ken-value"

[[watches]]
server = "gov"
id = "1"
interval = 0.05
max_interval = 0.1
timeout = 0.3
notify = ["team"]
"""


def swap(old: str, new: str) -> Callable[[Path], str]:
    """A config that differs from GOOD in one place."""
    assert old in GOOD
    return lambda tmp_path: GOOD.replace(old, new)


def watch_key(line: str) -> Callable[[Path], str]:
    return swap('notify = ["team"]', f'notify = ["team"]\n{line}')


def server_key(line: str) -> Callable[[Path], str]:
    return swap('token = "t0ken-value"', f'token = "t0ken-value"\n{line}')


def channel_key(line: str) -> Callable[[Path], str]:
    return swap('url = "json://127.0.0.1:9/hook"', f'url = "json://127.0.0.1:9/hook"\n{line}')


def state(value: str) -> Callable[[Path], str]:
    return lambda tmp_path: GOOD.replace(STATE, value.replace("@TMP@", tmp_path.as_posix()))


def a_ca_file_without_certificates(tmp_path: Path) -> str:
    (tmp_path / "ca.pem").write_text("not a certificate\n", encoding="utf-8")
    return server_key(f'ca_file = "{(tmp_path / "ca.pem").as_posix()}"')(tmp_path)


# (case id, config text from tmp_path, what stderr must say besides the file: key and why;
# "*" stands for anything)
CASES: list[tuple[str, Callable[[Path], str], str]] = [
    (
        "nesting 100k deep",
        lambda _: "a = " + "[" * 100_000 + "]" * 100_000,
        "not valid TOML: nested",
    ),
    ("a number of 5000 digits", lambda _: "a = " + "9" * 5000, "more than 4300 digits"),
    (
        "max_interval inf",
        swap("max_interval = 0.1", "max_interval = inf"),
        "watches[0].max_interval: must be at most 365 days",
    ),
    (
        "max_interval 1e308",
        swap("max_interval = 0.1", "max_interval = 1e308"),
        "watches[0].max_interval: must be at most 365 days",
    ),
    (
        "max_interval '99999999999d'",
        swap("max_interval = 0.1", 'max_interval = "99999999999d"'),
        "watches[0].max_interval: must be at most 365 days",
    ),
    (
        "max_interval of 400 digits",
        swap("max_interval = 0.1", "max_interval = " + "9" * 400),
        "watches[0].max_interval: must be at most 365 days",
    ),
    ("timeout nan", swap("timeout = 0.3", "timeout = nan"), "watches[0].timeout: must be"),
    ("interval nan", swap("interval = 0.05", "interval = nan"), "watches[0].interval: must be"),
    (
        "expect neither a duration nor auto",  # one plain line, not pydantic's union members
        swap("interval = 0.05", 'interval = 0.05\nexpect = "twenty"'),
        "watches[0].expect: 'twenty' is not a duration such as '90s'* or seconds (or 'auto')\n",
    ),
    (
        "expect below zero",
        swap("interval = 0.05", "interval = 0.05\nexpect = -5"),
        "watches[0].expect: must be a duration greater than zero (or 'auto')\n",
    ),
    ("interval -inf", swap("interval = 0.05", "interval = -inf"), "watches[0].interval: must be"),
    (
        "request_timeout inf",
        server_key("request_timeout = inf"),
        "servers.gov.request_timeout: must",
    ),
    ("backoff nan", watch_key("backoff = nan"), "watches[0].backoff: Input should be a finite"),
    (
        "a default of 400 days",
        swap("[[watches]]", '[defaults]\ntimeout = "400d"\n[[watches]]'),
        "defaults.timeout: must be at most 365 days",
    ),
    (
        "url without a host",
        swap("http://127.0.0.1:9/aveksa", "http://"),
        "servers.gov.url: has no host",
    ),
    (
        "url port 99999",
        swap(":9/aveksa", ":99999/aveksa"),
        "servers.gov.url: the port must be a number from 1 to 65535",
    ),
    ("url port 0", swap(":9/aveksa", ":0/aveksa"), "servers.gov.url: the port"),
    (
        "url with a space",
        swap("127.0.0.1:9/aveksa", "rsa example/aveksa"),
        "servers.gov.url: must not contain spaces",
    ),
    (
        "url with a NUL",
        swap("127.0.0.1:9/aveksa", "rsa\\u0000x/aveksa"),
        "servers.gov.url: must not contain",
    ),
    (
        "url with an open [",
        swap("http://127.0.0.1:9", "http://[::1"),
        "servers.gov.url: not a valid URL",
    ),
    (
        "url with a password in it",
        swap("http://127.0.0.1:9", "http://svc:hunter2@127.0.0.1:9"),
        "servers.gov.url: must not hold a user name or password",
    ),
    (
        "url with a bad host",
        swap("127.0.0.1:9/aveksa", "a<b/aveksa"),
        "servers.gov.url: 'a<b' is not a host",
    ),
    (
        "url with an empty label",
        swap("127.0.0.1:9/aveksa", "rsa..example/aveksa"),
        "servers.gov.url: 'rsa..example'",
    ),
    (
        "token_url without a host",
        swap(
            'kind = "rsa_governance"\nurl = "http://127.0.0.1:9/aveksa"',
            'kind = "gardin"\ntoken_url = "https://"',
        ),
        "servers.gov.token_url: has no host",
    ),
    ("state /", state("/"), "daemon.state: / is a directory"),
    ("state .", state("."), "daemon.state: . is a directory"),
    ("state empty", state(""), "daemon.state: must name a file"),
    ("state a directory", state("@TMP@"), "is a directory; name a file in it"),
    ("state under a file", state("@TMP@/watches.toml/s.db"), "watches.toml is not a directory"),
    ("state under /proc", state("/proc/watcher/state.db"), "daemon.state: cannot create /proc/"),
    ("state a device", state("/dev/null"), "daemon.state: /dev/null is not a regular file"),
    (
        "ca_file without certificates",
        a_ca_file_without_certificates,
        "servers.gov.ca_file: */ca.pem holds no certificate",
    ),
    (
        "metrics address not here",
        swap("[daemon]", '[daemon]\nmetrics = "192.0.2.1:9464"'),
        "daemon.metrics: cannot listen",
    ),
    (
        "json:// port 99999999",
        swap(":9/hook", ":99999999/hook"),
        "channels.team.url: the port must",
    ),
    (
        "not an apprise url",
        swap("json://127.0.0.1:9/hook", "nope://x"),
        "channels.team.url: not a URL apprise understands",
    ),
    (
        "one bad urls entry",
        channel_key('urls = ["json://h/a", "json://h:0/b"]'),
        "channels.team.urls[1]: the port",
    ),
    (
        "title format spec",
        channel_key('title = "{name:>99999999}"'),
        "channels.team.title: bad template",
    ),
    ("body conversion", channel_key('body = "{name!r}"'), "channels.team.body: bad template"),
    (
        "nested format spec",
        channel_key('title = "{name:{polls}}"'),
        "channels.team.title: bad template",
    ),
    ("an empty file", lambda _: "", "has no [servers] and no [[watches]]"),
    (
        "only a [daemon]",
        lambda _: "# nothing yet\n[daemon]\n",
        "has no [servers] and no [[watches]]",
    ),
]


@pytest.fixture(autouse=True)
def no_state_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHER_STATE", raising=False)
    monkeypatch.delenv("WATCHER_METRICS", raising=False)


@pytest.mark.parametrize("command", [["check"], ["run", "--once", "--metrics", "--settle", "0"]])
@pytest.mark.parametrize(("make", "named"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_config_is_exit_2_naming_file_and_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    make: Callable[[Path], str],
    named: str,
) -> None:
    path = tmp_path / "watches.toml"
    path.write_text(make(tmp_path).replace(STATE, (tmp_path / "s.db").as_posix()), "utf-8")
    code = main([*command, "-c", str(path)])
    err = capsys.readouterr().err
    assert (code, "Traceback" in err) == (2, False), err
    assert str(path) in err, err
    assert re.search(".*".join(map(re.escape, named.split("*"))), err), err


@pytest.mark.parametrize("command", [["check"], ["run", "--once"], ["run"]])
def test_a_fifo_as_config_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    fifo = tmp_path / "watches.toml"
    os.mkfifo(fifo)
    assert main([*command, "-c", str(fifo)]) == 2
    assert f"{fifo}: not a regular file" in capsys.readouterr().err


def test_an_empty_config_is_exit_2_for_the_daemon_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "watches.toml"
    path.write_text("", "utf-8")
    assert main(["run", "-c", str(path)]) == 2
    assert f"nothing to watch: {path} has no [servers]" in capsys.readouterr().err


def test_servers_without_watches_pass_check_with_a_note_but_not_run_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "watches.toml"
    text = GOOD.replace(STATE, (tmp_path / "s.db").as_posix())
    path.write_text(text.split("[[watches]]")[0], "utf-8")
    assert main(["check", "-c", str(path)]) == 0
    assert "no watches yet" in capsys.readouterr().out
    assert main(["run", "--once", "-c", str(path)]) == 2
    assert f"nothing to watch: {path} has no [[watches]]" in capsys.readouterr().err


def test_check_accepts_a_metrics_port_in_use_but_run_does_not_and_ci_runs_leave_it_be(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    path = tmp_path / "watches.toml"
    text = GOOD.replace(STATE, (tmp_path / "s.db").as_posix())
    path.write_text(text.replace("[daemon]", f'[daemon]\nmetrics = "{unused_tcp_port}"'), "utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", unused_tcp_port))
        taken.listen()
        assert main(["check", "-c", str(path)]) == 0
        assert "in use now" in capsys.readouterr().out
        assert main(["run", "--once", "--metrics", "-c", str(path)]) == 2
        assert f"{path}: daemon.metrics: cannot listen" in capsys.readouterr().err
        # a CI run beside the daemon that has the port: it does not serve metrics
        assert main(["run", "--once", "--settle", "0", "-c", str(path)]) != 2
        assert "daemon.metrics" not in capsys.readouterr().err
    assert main(["check", "-c", str(path)]) == 0
    assert f"metrics: 127.0.0.1:{unused_tcp_port}\n" in capsys.readouterr().out


def test_a_database_url_is_the_state_and_its_password_is_never_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://watcher:pa55-w0rd@db.example.com:6543/watcher"
    (tmp_path / "watches.toml").write_text(GOOD.replace(STATE, url), "utf-8")
    assert load(tmp_path / "watches.toml", environ={}).daemon.state == url
    assert list(tmp_path.iterdir()) == [tmp_path / "watches.toml"]  # no local file made
    assert main(["check", "-c", str(tmp_path / "watches.toml")]) == 0
    out = capsys.readouterr().out
    assert "state: PostgreSQL at db.example.com:6543/watcher" in out
    assert "pa55-w0rd" not in out


@pytest.mark.parametrize("command", [["run", "--once"], ["wait", "gov", "1"]])
def test_ci_commands_refuse_a_shared_database_and_point_to_submit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    url = "postgresql://watcher@db.example.com/watcher"
    (tmp_path / "watches.toml").write_text(GOOD.replace(STATE, url), "utf-8")
    assert main([*command, "-c", str(tmp_path / "watches.toml")]) == 2
    assert "watcher submit" in capsys.readouterr().err


def test_the_longest_durations_are_accepted(tmp_path: Path) -> None:
    text = GOOD.replace("timeout = 0.3", 'timeout = "365d"').replace(
        "max_interval = 0.1", "max_interval = 31536000"
    )
    (tmp_path / "watches.toml").write_text(text.replace(STATE, "s.db"), "utf-8")
    watch = load(tmp_path / "watches.toml", environ={}).watches[0]
    assert (watch.timeout, watch.max_interval) == (365 * 86400.0, 365 * 86400.0)


@pytest.mark.parametrize(
    "flags", [["--settle", "400d"], ["--summary-every", "0"], ["--summary-every", "1e400"]]
)
def test_duration_flags_have_the_bounds_of_the_config(flags: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["run", "--once", *flags])
    assert exited.value.code == 2


def test_settle_0_means_do_not_wait() -> None:
    assert parser().parse_args(["run", "--once", "--settle", "0"]).settle == 0.0


def test_submit_checks_the_run_against_the_configuration_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = (tmp_path / "s.db").as_posix()
    (tmp_path / "watches.toml").write_text(GOOD.replace(STATE, state), "utf-8")
    assert main(["submit", "nosuch", "1", "-c", str(tmp_path / "watches.toml")]) == 2
    assert "submit: server: no server named 'nosuch'" in capsys.readouterr().err
    assert (
        main(["submit", "gov", "1", "--notify", "pager", "-c", str(tmp_path / "watches.toml")]) == 2
    )
    assert "submit: notify: no channel named 'pager'" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()  # nothing was added anywhere
