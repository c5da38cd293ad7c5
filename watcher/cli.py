"""The command line: argument parsing and exit codes, nothing else.

Exit codes of ``run --once`` and ``wait``: 0 every watch succeeded; 1 any failed or was cancelled;
3 any timed out or ended in error (and none failed); 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from watcher import logs
from watcher.errors import EXIT_INTERNAL, EXIT_USAGE, ConfigError

DESCRIPTION = "Watch long-running remote runs until they finish, then notify."
CONFIG_PLACES = ("watches.toml", "/etc/watcher/watches.toml")


def default_config() -> str:
    """``$WATCHER_CONFIG``, ./watches.toml, ``$CONFIGURATION_DIRECTORY``, /etc/watcher."""
    if env := os.environ.get("WATCHER_CONFIG"):
        return env
    places = list(CONFIG_PLACES)
    if conf_dir := os.environ.get("CONFIGURATION_DIRECTORY"):
        places.insert(1, str(Path(conf_dir.split(":")[0]) / "watches.toml"))
    return next((p for p in places if Path(p).is_file()), places[0])


def _duration(text: str) -> float:
    from watcher.schema import check_duration, parse_duration

    try:
        return check_duration(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _grace(text: str) -> float:
    """A duration that may also be zero (``--settle 0``: do not wait)."""
    from watcher.schema import check_duration, parse_duration

    try:
        seconds = parse_duration(text)
        return seconds if seconds == 0 else check_duration(seconds)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Version(argparse.Action):
    """``--version``: reads the installed version only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from watcher import __version__

        print(f"watcher {__version__}")
        parser.exit()


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=None, help="watches.toml to use")
    common.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    common.add_argument(
        "--log-format",
        choices=["auto", "text", "journal", "json"],
        default="auto",
        help="auto: journal under systemd, else text",
    )
    top = argparse.ArgumentParser(prog="watcher", description=DESCRIPTION)
    top.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", parents=[common], help="watch until stopped (or --once: until done)")
    p.add_argument("--once", action="store_true", help="exit when every watch has ended")
    _once_options(p)
    p = sub.add_parser("wait", parents=[common], help="wait for one run (for a CI step)")
    p.add_argument("server", help="a server name from the config")
    p.add_argument("id", nargs="?", help="the run id (optional with --task for ArcGIS)")
    p.add_argument("--task", help="the task (ArcGIS)")
    p.add_argument("--timeout", type=_duration, help="give up after this long (e.g. 2h)")
    p.add_argument("--interval", type=_duration, help="first delay between polls")
    p.add_argument("--notify", nargs="*", default=None, metavar="CHANNEL", help="channels to tell")
    _once_options(p)
    p = sub.add_parser(
        "submit", parents=[common], help="hand one run to the running deployment and return"
    )
    p.add_argument("server", help="a server name from the config")
    p.add_argument("id", nargs="?", help="the run id (optional with --task for ArcGIS)")
    p.add_argument("--task", help="the task (ArcGIS)")
    p.add_argument("--name", help="what notifications call it (default: run ID on SERVER)")
    p.add_argument("--timeout", type=_duration, help="give up after this long (e.g. 4h)")
    p.add_argument("--interval", type=_duration, help="first delay between polls")
    p.add_argument("--notify", nargs="*", default=None, metavar="CHANNEL", help="channels to tell")
    p = sub.add_parser("cancel", parents=[common], help="stop watching a watch (by its key)")
    p.add_argument("key", help="as `watcher status` or `watcher submit` shows it")
    sub.add_parser("check", parents=[common], help="validate the config and channel URLs")
    p = sub.add_parser("status", parents=[common], help="show watches and their state")
    p.add_argument("--state", help="read this state file (no config, no secrets needed)")
    p = sub.add_parser("notify-test", parents=[common], help="send a test notification")
    p.add_argument("channel")
    p.add_argument("--event", help="send what the templates make of a sample run at this event")
    p = sub.add_parser("demo", help="watch simulated runs on four systems, no accounts needed")
    p.add_argument("--speed", type=float, default=1.0, help="poll faster (2 = twice as fast)")
    return top


def _once_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--summary-every",
        type=_duration,
        default=60.0,
        metavar="D",
        help="print a one-line summary this often (default 60s)",
    )
    p.add_argument(
        "--settle",
        type=_grace,
        default=60.0,
        metavar="D",
        help="wait this long for notifications to be delivered (default 60s)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(getattr(args, "log_format", "auto"), getattr(args, "verbose", False))
    try:
        from watcher.commands import dispatch

        return dispatch(args)
    except ConfigError as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so plainly, and not with a code that means "failed"
        logging.getLogger("watcher").exception("internal error")
        print(f"watcher: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
