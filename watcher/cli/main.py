"""The command line: argument parsing and exit codes, nothing else.

The exit codes of ``run --once`` and ``wait`` are :data:`EXIT_CODES` (also in ``--help``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from watcher.cli import shells
from watcher.cli.examples import epilog
from watcher.errors import EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, ConfigError
from watcher.service import logs

DESCRIPTION = "Watch long-running remote runs until they finish, then notify."
#: what `status --status` takes: where a watch stands, or its phase (the API's `state` filter)
STANDINGS = (
    *("failed", "error", "timeout", "unreachable", "overdue", "running", "waiting"),
    *("cancelled", "succeeded", "pending", "unknown"),
)


def _duration(text: str) -> float:
    from watcher.schema import check_duration, parse_duration

    try:
        return check_duration(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _token_name(text: str) -> str:
    """As ``[[api.tokens]] name`` takes it: 1 to 100 printable characters."""
    if not 0 < len(text) <= 100 or not text.isprintable():
        raise argparse.ArgumentTypeError("1 to 100 printable characters")
    return text


def _grace(text: str) -> float:
    """A duration that may also be zero (``--settle 0``: do not wait)."""
    from watcher.schema import check_duration, parse_duration

    try:
        seconds = parse_duration(text)
        return seconds if seconds == 0 else check_duration(seconds)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Version(argparse.Action):
    """``--version``: the version (and a checkout's commit), looked up only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from watcher.cli.version import describe

        print(describe())
        parser.exit()


EXIT_CODES = """\
exit codes of `run --once` and `wait`:
  0  every watch succeeded
  1  a watch failed or was cancelled
  2  bad configuration or usage (nothing was watched)
  3  a watch timed out, ended in error or was not finished; or results could not be saved
  4  every watch succeeded, but notifications were still undelivered when --settle ran out
 70  a bug in watcher (please report it)
141  stdout was closed early (`watcher status | head`)
"""

STATUS_CODES = """\
exit codes of `status`:
  0  an instance is running
  1  the state cannot be read (or there is none yet)
  2  bad configuration or usage
  3  no instance is running: nothing is being polled (said on the first line)
"""


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``-c``, ``-v`` and ``--log-format``, before or after the subcommand: a subcommand's copy
    leaves what was given before it alone (its default is argparse.SUPPRESS)."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    config = parser.add_argument(
        "-c", "--config", default=default(None), help="watches.toml to use"
    )
    shells.complete_files(config)
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="log debug details"
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "text", "journal", "json"],
        default=default("auto"),
        help="auto: journal under systemd, else text",
    )


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _common(common, top=False)
    top = argparse.ArgumentParser(
        prog="watcher",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    top.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    _common(top, top=True)
    sub = top.add_subparsers(dest="command", metavar="COMMAND")  # bare: the help, exit 0

    def command(name: str, help: str, *, codes: bool = False) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            help=help,
            epilog=epilog(name, EXIT_CODES if codes else None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )

    p = command("run", "watch until stopped (or --once: until done)", codes=True)
    p.add_argument("--once", action="store_true", help="exit when every watch has ended")
    _once_options(p)
    p = command("wait", "wait for runs (for a CI step)", codes=True)
    _server_argument(p)
    p.add_argument("ids", nargs="*", metavar="ID", help="run ids (optional with --task for ArcGIS)")
    p.add_argument("--task", help="the task (ArcGIS)")
    p.add_argument("--timeout", type=_duration, help="give up after this long (e.g. 2h)")
    p.add_argument("--interval", type=_duration, help="first delay between polls")
    _notify_option(p)
    _once_options(p)
    _remote_options(p, waits=True)
    p = command("submit", "hand one run to the running deployment and return")
    _server_argument(p, optional=True)
    p.add_argument("id", nargs="?", help="the run id (optional with --task for ArcGIS)")
    p.add_argument(
        "--file",
        help="hand over many runs: one JSON object a line, as the API's POST /api/v1/watches "
        "takes it (- reads stdin); no SERVER then",
    )
    p.add_argument("--task", help="the task (ArcGIS)")
    p.add_argument("--name", help="what notifications call it (default: run ID on SERVER)")
    p.add_argument("--timeout", type=_duration, help="give up after this long (e.g. 4h)")
    p.add_argument("--interval", type=_duration, help="first delay between polls")
    _notify_option(p)
    _remote_options(p)
    p = command("cancel", "stop watching a watch (by its key)")
    p.add_argument("key", help="as `watcher status` or `watcher submit` shows it")
    _remote_options(p)
    p = command(
        "token", "make an API token: `watcher token new` prints it (stdout) and its entry (stderr)"
    )
    p.add_argument("action", choices=["new"])
    p.add_argument("--name", type=_token_name, default="ci", help="who uses it (default: ci)")
    p.add_argument("--scope", choices=["read", "submit", "admin"], default="submit")
    p.add_argument(
        "--toml", action="store_true", help="print the [[api.tokens]] entry alone on stdout"
    )
    p = command("silence", "hold back the notifications of matching watches for a while")
    p.add_argument("match", help="a server's name, or a glob of watch names or keys")
    p.add_argument("--for", dest="duration", type=_duration, required=True, metavar="D")
    p.add_argument("--comment", default="", help="why (shown by `watcher silences`)")
    _json_option(command("silences", "list the silences in force"))
    p = command("unsilence", "end a silence now")
    p.add_argument("id", type=int, help="as `watcher silences` shows it")
    p = command("ack", "stop the reminders of what lasts now (unreachable, attention, overdue)")
    p.add_argument("match", help="a server's name, or a glob of watch names or keys")
    p.add_argument("--comment", default="", help="why, or who is on it (shown by `watcher acks`)")
    _json_option(command("acks", "list the acknowledged conditions that still last"))
    command("check", "validate the config and channel URLs")
    p = command("status", "show instances, watches and their state (or one watch whole)")
    p.add_argument("watch", nargs="?", metavar="KEY", help="show this watch whole (key or name)")
    p.epilog = epilog("status", STATUS_CODES)
    _state_option(p, "read this state file or database (no config needed)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--server", help="only the watches of this server")
    p.add_argument(
        "--status",
        dest="only",
        choices=STANDINGS,
        metavar="STATUS",
        help=f"only the watches that stand so: {', '.join(STANDINGS)}",
    )
    p = command("notify-test", "send a test notification")
    shells.complete_names(p.add_argument("channel"), "channels")
    p.add_argument("--event", help="send what the templates make of a sample run at this event")
    p = sub.add_parser(
        "init",
        help="write a commented watches.toml to start from",
        epilog=epilog("init"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument(
        "path", nargs="?", default="watches.toml", metavar="PATH", help="default: ./watches.toml"
    )
    p.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    p = sub.add_parser(
        "demo",
        help="watch simulated runs on four systems, no accounts needed",
        epilog=epilog("demo"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("--speed", type=float, default=1.0, help="poll faster (2 = twice as fast)")
    p.add_argument(
        "--serve",
        nargs="?",
        const="127.0.0.1:9477",
        metavar="ADDRESS",
        help="stay up with the API and status page until Ctrl-C (default 127.0.0.1:9477; "
        "port 0: a free one)",
    )
    _editor_and_shell_commands(command, sub)
    return top


def _editor_and_shell_commands(
    command: Callable[[str, str], argparse.ArgumentParser],
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """``schema``, ``completion``, the hidden ``names`` they use, and ``help`` (last: it
    offers every command before it)."""
    command("schema", "print the JSON Schema of watches.toml (for editors)")
    p = command("completion", "print a completion script for bash, zsh or fish")
    p.add_argument("shell", choices=shells.SHELLS)
    p = sub.add_parser("names", allow_abbrev=False)  # no help: not listed
    _common(p, top=False)
    p.add_argument("kind", choices=shells.NAMES)
    p = command("help", "show the help of watcher or of one command")
    public = [action.dest for action in sub._get_subactions()]  # `names` is not listed
    p.add_argument("topic", nargs="?", choices=public, metavar="COMMAND")


def _server_argument(p: argparse.ArgumentParser, *, optional: bool = False) -> None:
    server = p.add_argument(
        "server", nargs="?" if optional else None, help="a server name from the config"
    )
    shells.complete_names(server, "servers")


def _json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON document on stdout (as the API)")


def _state_option(p: argparse.ArgumentParser, help: str) -> None:
    shells.complete_files(p.add_argument("--state", help=help))


def _remote_options(p: argparse.ArgumentParser, *, waits: bool = False) -> None:
    also = "; then the ids are the keys `submit` printed" if waits else ""
    p.add_argument(
        "--url", help=f"a daemon's API (default $WATCHER_URL); without it, the local store{also}"
    )
    token_file = p.add_argument(
        "--token-file", help="the API token's file (default: $WATCHER_TOKEN)"
    )
    shells.complete_files(token_file)


def _notify_option(p: argparse.ArgumentParser) -> None:
    notify = p.add_argument(
        "--notify",
        action="append",
        default=None,
        metavar="CHANNEL",
        help="a channel to tell (repeat for more; default: the config's [defaults] notify)",
    )
    shells.complete_names(notify, "channels")


def _once_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="the results as one JSON document on stdout")
    p.add_argument(
        "--junit",
        metavar="FILE",
        help="also write the results as a JUnit XML report (GitLab, Jenkins) to FILE",
    )
    p.add_argument(
        "--fail-fast",
        action="store_true",
        help="end as soon as a watch ends other than succeeded (the others are not waited for)",
    )
    _state_option(p, "a state file of this run's own (default: [daemon] state)")
    p.add_argument(
        "--metrics", action="store_true", help="serve [daemon] metrics (wait and --once do not)"
    )
    p.add_argument(
        "--keep-waiting",
        action="store_true",
        help="a watch whose server never answered waits for its timeout (default: it ends in "
        "error, exit 3, after unreachable_after tries)",
    )
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


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; `wait`'s ids may also come after its options (``wait gov --notify
    team 1 2``), which argparse alone would refuse."""
    top = parser()
    args, extra = top.parse_known_args(argv)
    if extra and args.command == "wait" and not any(e.startswith("-") for e in extra):
        args.ids = [*args.ids, *extra]
    elif extra:
        top.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:  # as gh and kubectl: the help on stdout, exit 0
        top.print_help()
        top.exit(EXIT_OK)
    if args.command == "help":
        top.parse_args([args.topic, "--help"] if args.topic else ["--help"])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.command in ("completion", "names"):  # at every shell's start: nothing else loaded
        return shells.run(args, parser())
    logs.setup(getattr(args, "log_format", "auto"), getattr(args, "verbose", False))
    try:
        from watcher.cli.commands import dispatch

        return dispatch(args)
    except ConfigError as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `watcher status | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush does not fail again
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # a bug: say so plainly, and not with a code that means "failed"
        logging.getLogger("watcher").exception("internal error")
        print(f"watcher: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
