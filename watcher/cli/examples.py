"""The EXAMPLES section of each subcommand's ``--help``: what a newcomer types first."""

from __future__ import annotations

from typing import Final

EXAMPLES: Final[dict[str, str]] = {
    "run": """\
  watcher run                          # the daemon: watch until stopped (systemd runs this)
  watcher run --once                   # a CI step: exit when every watch has ended
  watcher run --once --json > out.json # the results as one JSON document
  watcher -c ci.toml run --once --state ci.db --settle 10s""",
    "wait": """\
  watcher wait gov 4711                # wait for run 4711 on server gov
  watcher wait gov 4711 4712 --timeout 2h --notify team
  watcher wait gis --task Export       # ArcGIS: the task's next run
  watcher wait --url https://watcher.example.com:9477 --token-file ci.token KEY""",
    "submit": """\
  watcher submit gov 4711              # hand the run to the running daemon and return
  watcher submit gov 4711 --name "nightly import" --timeout 4h --notify oncall
  WATCHER_URL=https://watcher.example.com:9477 WATCHER_TOKEN=... watcher submit gov 4711""",
    "cancel": """\
  watcher cancel gov//4711             # the key `watcher submit` printed
  watcher cancel gov//4711 --url https://watcher.example.com:9477 --token-file ci.token""",
    "token": """\
  watcher token new > ci.token                  # the token; its [[api.tokens]] entry on stderr
  watcher token new --name page --scope read --toml >> watches.toml""",
    "silence": """\
  watcher silence gov --for 2h --comment "maintenance window"
  watcher silence 'nightly-*' --for 30m""",
    "silences": """\
  watcher silences
  watcher silences --json | jq '.silences[].id'""",
    "unsilence": """\
  watcher unsilence 3                  # the number `watcher silences` shows""",
    "ack": """\
  watcher ack gov --comment "on it"    # stop the reminders of server gov being down""",
    "acks": """\
  watcher acks
  watcher acks --json""",
    "check": """\
  watcher check
  watcher -c /etc/watcher/watches.toml check""",
    "status": """\
  watcher status                       # who runs, and every watch, trouble first
  watcher status --status failed       # only the failed watches
  watcher status gov//4711             # one watch whole
  watcher status --json | jq '.watches[] | select(.outcome == "failed")'""",
    "notify-test": """\
  watcher notify-test team             # a plain test message
  watcher notify-test oncall --event failed""",
    "init": """\
  watcher init                         # ./watches.toml, then: watcher check
  watcher init ci/watches.toml --force""",
    "demo": """\
  watcher demo
  watcher demo --speed 5
  watcher demo --serve                 # the page and the API up until Ctrl-C""",
    "schema": """\
  watcher schema > watches.schema.json # beside watches.toml, whose first line is then:
  #:schema ./watches.schema.json""",
    "completion": """\
  source <(watcher completion bash)    # in ~/.bashrc
  watcher completion zsh > "${fpath[1]}/_watcher"
  watcher completion fish > ~/.config/fish/completions/watcher.fish""",
    "help": """\
  watcher help
  watcher help wait""",
}


def epilog(command: str, *more: str | None) -> str | None:
    """``command``'s EXAMPLES, then ``more`` (its exit codes, say); ``None`` if nothing."""
    parts = [f"examples:\n{EXAMPLES[command]}\n"] if command in EXAMPLES else []
    parts += [part for part in more if part]
    return "\n".join(parts) or None
