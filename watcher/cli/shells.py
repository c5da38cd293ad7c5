"""``watcher completion bash|zsh|fish``: completion scripts made by shtab from the parser.

Subcommands and options come from the parser itself, so they cannot drift from it. Server and
channel names are completed by the shell running ``watcher names servers`` (or ``channels``), a
hidden command that reads the names of ``[servers.*]`` or ``[channels.*]`` from the
configuration ``$WATCHER_CONFIG`` or the default places name: the TOML alone, no secrets, no
validation, nothing printed for a file that cannot be read (``-c`` on the command line being
completed is not seen). Neither command loads the rest of watcher, so a shell starts quickly.
"""

from __future__ import annotations

import argparse
from typing import Final

from watcher.errors import EXIT_OK

SHELLS: Final = ("bash", "zsh", "fish")
NAMES: Final = ("servers", "channels")


def complete_names(action: argparse.Action, kind: str) -> argparse.Action:
    """Have the shells complete ``action`` with the configuration's ``kind`` (``servers`` or
    ``channels``) names."""
    import shtab

    setattr(action, "complete", shtab.cmd(f"watcher names {kind} 2>/dev/null"))  # noqa: B010
    return action


def complete_files(action: argparse.Action) -> argparse.Action:
    """Have the shells complete ``action`` with a file name (``-c``, ``--state``)."""
    import shtab

    setattr(action, "complete", shtab.FILE)  # noqa: B010
    return action


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``completion SHELL`` (the script on stdout) or ``names KIND`` (one name a line)."""
    if args.command == "completion":
        import shtab

        print(shtab.complete(parser, shell=args.shell), end="")
    else:
        for name in names(args.config, args.kind):
            print(name)
    return EXIT_OK


def names(config: str | None, kind: str) -> list[str]:
    """The table names under ``[servers]`` or ``[channels]``; none if the file is unreadable."""
    import tomllib

    from watcher.config.places import default_config

    try:
        with open(config or default_config(), "rb") as file:
            tables = tomllib.load(file).get(kind, {})
    except (OSError, ValueError):
        return []
    return sorted(tables) if isinstance(tables, dict) else []
