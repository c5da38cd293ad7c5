"""The command line: argument parsing and exit codes, nothing else.

Exit codes of ``run --once`` and ``wait``: 0 every watch succeeded; 1 any failed or was cancelled;
3 any timed out or ended in error (and none failed); 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from watcher import __version__, logs
from watcher.config import Config, WatchConfig, load
from watcher.daemon import Options, run
from watcher.errors import ConfigError
from watcher.metrics import try_bind
from watcher.notify import Channel
from watcher.runner import EXIT_INTERNAL, EXIT_USAGE, build_channels, build_specs
from watcher.schema import check_duration, parse_duration
from watcher.status import show as show_status

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
    try:
        return check_duration(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _grace(text: str) -> float:
    """A duration that may also be zero (``--settle 0``: do not wait)."""
    try:
        seconds = parse_duration(text)
        return seconds if seconds == 0 else check_duration(seconds)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    top.add_argument("--version", action="version", version=f"watcher {__version__}")
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
    sub.add_parser("check", parents=[common], help="validate the config and channel URLs")
    p = sub.add_parser("status", parents=[common], help="show watches and their state")
    p.add_argument("--state", help="read this state file (no config, no secrets needed)")
    p = sub.add_parser("notify-test", parents=[common], help="send a test notification")
    p.add_argument("channel")
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
        return _dispatch(args)
    except ConfigError as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so plainly, and not with a code that means "failed"
        logging.getLogger("watcher").exception("internal error")
        print(f"watcher: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from watcher.demo import demo

        return asyncio.run(demo(speed=args.speed))
    if args.command == "status" and args.state:
        return show_status(args.state)
    path = args.config or default_config()
    config = load(path, state_writable=args.command != "status")
    if args.command == "check":
        return _check(config, path)
    if args.command == "status":
        return show_status(config.daemon.state)
    if args.command == "notify-test":
        return asyncio.run(_notify_test(config, args.channel))
    options = Options(
        config_path=path,
        once=args.command == "wait" or args.once,
        summary_every_s=args.summary_every,
        settle_s=args.settle,
    )
    if args.command == "wait":
        specs = build_specs(config.model_copy(update={"watches": [_adhoc(config, args)]}))
        _metrics_note(config, path, in_use_ok=False)
        return asyncio.run(run(config, options, specs))
    _something_to_watch(config, path, options.once)
    _channels(config)
    _metrics_note(config, path, in_use_ok=False)
    return asyncio.run(run(config, options))


def _something_to_watch(config: Config, path: str, once: bool) -> None:
    """``run --once`` needs watches; ``run`` and ``check`` need at least servers to watch on.

    A daemon with servers but no watches yet is fine: watches are added by reloading.
    """
    if not config.watches and not config.servers:
        raise ConfigError(f"nothing to watch: {path} has no [servers] and no [[watches]]")
    if once and not config.watches:
        raise ConfigError(f"nothing to watch: {path} has no [[watches]]")


def _channels(config: Config) -> dict[str, Channel]:
    try:
        return build_channels(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _adhoc(config: Config, args: argparse.Namespace) -> WatchConfig:
    given = config.defaults.model_dump(exclude_unset=True)
    given.update(server=args.server, id=args.id, task=args.task)
    for key in ("timeout", "interval", "notify"):
        if getattr(args, key) is not None:
            given[key] = getattr(args, key)
    given.setdefault("max_interval", max(given.get("interval", 15.0), 300.0))
    try:
        watch = WatchConfig.model_validate(given)
    except ValueError as exc:
        raise ConfigError(f"wait: {exc}") from None
    if problems := config.watch_problems(0, watch):
        raise ConfigError(
            "wait: " + "; ".join(p.removeprefix("watches[0]").lstrip(".:") for p in problems)
        )
    return watch


def _check(config: Config, path: str) -> int:
    _something_to_watch(config, path, once=False)
    channels = _channels(config)
    metrics = _metrics_note(config, path)
    print(f"{path}: OK")
    print(f"  state file: {config.daemon.state}")
    if metrics:
        print(f"  metrics: {metrics}")
    for name, server in config.servers.items():
        print(f"  server {name}: {server.kind} at {server.url}")
    for name, channel in channels.items():
        print(f"  channel {name}: {channel.describe()} on {', '.join(sorted(channel.events))}")
    for spec in build_specs(config):
        print(
            f"  watch {spec.name!r}: {spec.target.key} -> {', '.join(spec.notify) or 'no channels'}"
        )
    if not config.watches:
        print(
            "  no watches yet: 'run' waits for some (add them, then reload); 'run --once' exits 2"
        )
    return 0


def _metrics_note(config: Config, path: str, *, in_use_ok: bool = True) -> str | None:
    """What to say of the metrics address, once it has been bound and let go.

    ``check`` accepts an address in use (most likely by the daemon this config is for);
    ``run`` and ``wait`` need it free.
    """
    address = config.daemon.metrics
    if address is None:
        return None
    try:
        try_bind(address)
    except OSError as exc:
        if in_use_ok and exc.errno == errno.EADDRINUSE:
            return f"{address}, in use now (by a running watcher?); 'run' needs it free"
        msg = f"{path}: daemon.metrics: cannot listen on {address}: {exc.strerror or exc}"
        raise ConfigError(msg) from None
    return address


async def _notify_test(config: Config, name: str) -> int:
    channel = _channels(config).get(name)
    if channel is None:
        raise ConfigError(f"no channel named {name!r} (known: {', '.join(config.channels)})")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    error = await channel.send(
        "watcher test notification", f"Sent by 'watcher notify-test' at {stamp}."
    )
    if error:
        print(f"channel {name}: delivery failed: {error}", file=sys.stderr)
        return 1
    print(f"channel {name}: delivered to {channel.describe()}")
    return 0
