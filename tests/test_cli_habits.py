"""The command line's habits: help when run bare, `help`, no abbreviations, EXAMPLES in every
--help, --json on every listing, and completion scripts for bash, zsh and fish."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.systems import config_text, server_table
from watcher.cli.main import main, parser

ROOT = Path(__file__).parent.parent
WATCHER = [sys.executable, "-m", "watcher"]


def commands() -> dict[str, argparse.ArgumentParser]:
    """The listed subcommands (the hidden `names` is left out)."""
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    listed = {action.dest for action in sub._get_subactions()}
    return {name: p for name, p in sub.choices.items() if name in listed}


def test_bare_watcher_prints_the_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main([])
    assert ended.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: watcher") and "wait" in out and "completion" in out


@pytest.mark.parametrize(
    ("argv", "start"), [(["help"], "usage: watcher "), (["help", "wait"], "usage: watcher wait")]
)
def test_help_shows_the_help_of_watcher_or_of_a_command(
    capsys: pytest.CaptureFixture[str], argv: list[str], start: str
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    assert ended.value.code == 0
    assert capsys.readouterr().out.startswith(start)


def test_help_of_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["help", "nope"])
    assert ended.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["run", "--onc"], ["status", "--js"], ["--verb", "check"], ["silences", "--js"]]
)
def test_an_abbreviated_option_is_refused(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    assert ended.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_every_parser_refuses_abbreviations() -> None:
    assert parser().allow_abbrev is False
    assert [name for name, p in commands().items() if p.allow_abbrev] == []


def test_every_command_has_examples_and_keeps_its_exit_codes() -> None:
    helps = {name: p.format_help() for name, p in commands().items()}
    assert [name for name, text in helps.items() if "\nexamples:\n  " not in text] == []
    assert "exit codes of `status`" in helps["status"]
    assert "exit codes of `run --once` and `wait`" in helps["wait"]
    assert "exit codes of `run --once` and `wait`" in helps["run"]


@pytest.fixture
def config(tmp_path: Path) -> list[str]:
    server = server_table("rsa_governance", "gov", "http://127.0.0.1:9/aveksa")
    text = config_text(tmp_path / "s.db", "json://127.0.0.1:9/h", server, "")
    (tmp_path / "w.toml").write_text(text, "utf-8")
    return ["-c", str(tmp_path / "w.toml")]


def test_silences_and_acks_take_json_as_the_api_answers(
    config: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["silences", "--json", *config]) == 0
    assert json.loads(capsys.readouterr().out) == {"version": 1, "silences": []}
    assert main(["silence", "gov", "--for", "2h", "--comment", "window", *config]) == 0
    capsys.readouterr()
    assert main(["silences", "--json", *config]) == 0
    [silence] = json.loads(capsys.readouterr().out)["silences"]
    assert silence["id"] == 1 and silence["match"] == "gov" and silence["comment"] == "window"
    assert set(silence) >= {"until", "created"}
    assert main(["acks", "--json", *config]) == 0
    assert json.loads(capsys.readouterr().out) == {"version": 1, "acks": []}


def test_the_bash_completion_registers_its_function() -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = 'source <("$@" completion bash); complete -p watcher'
    done = subprocess.run(
        ["bash", "-c", script, "bash", *WATCHER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "complete -o bashdefault -F _shtab_watcher watcher"


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_the_zsh_and_fish_scripts_name_the_subcommands(
    capsys: pytest.CaptureFixture[str], shell: str
) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert all(name in script for name in ("run", "wait", "status", "silences", "notify-test"))
    assert "fail-fast" in script and "watcher names servers" in script


def test_names_lists_the_servers_and_channels_of_the_config(
    config: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["names", "servers", *config]) == 0
    assert capsys.readouterr().out == "gov\n"
    assert main(["names", "channels", *config]) == 0
    assert capsys.readouterr().out == "hook\n"
    assert main(["names", "servers", "-c", str(tmp_path / "none.toml")]) == 0  # quietly none
    assert capsys.readouterr().out == ""
