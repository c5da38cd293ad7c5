"""What each command does, once the command line is parsed (see :mod:`watcher.cli.main`).

Imported only when a command runs, so ``watcher --version`` and ``--help`` load none of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import getpass
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from watcher import clock
from watcher.address import try_bind
from watcher.api.documents import JSON_VERSION, ack_entry, silence_entry
from watcher.cli.status import Look
from watcher.cli.status import show as show_status
from watcher.cli.table import coloured, width
from watcher.config.api import ApiConfig
from watcher.config.load import (
    ChannelConfig,
    Config,
    WatchConfig,
    default_config,
    load,
    state_of,
    zone_of,
)
from watcher.engine.build import (
    SUBMITTED_KEYS,
    adhoc_watch,
    build_channels,
    build_specs,
    differing,
    impatient,
    lazy_specs,
    submit,
)
from watcher.engine.spec import Spec
from watcher.engine.specs import Specs
from watcher.errors import EXIT_FAILED, EXIT_OK, ConfigError, StoreError
from watcher.models import Event
from watcher.notify.acks import acknowledge, acknowledged
from watcher.notify.messages import Channel, render, sample
from watcher.notify.quiet import zone
from watcher.notify.silences import matches
from watcher.redact import scrub
from watcher.service.daemon import Options, run
from watcher.service.reports import junit
from watcher.stores import Store, is_database, open_store, registry, statefile


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command; ConfigError for anything the user can fix."""
    if args.command == "demo":
        from watcher.cli.demo import demo

        return asyncio.run(demo(speed=args.speed, serve=args.serve))
    if args.command == "init":
        from watcher.cli.init import init

        return init(args.path, force=args.force)
    if args.command == "token":
        return _new_token(args.name, args.scope, toml=args.toml)
    if args.command == "schema":
        from watcher.config import toml_schema

        print(toml_schema.text(), end="")
        return EXIT_OK
    remote = args.command in ("submit", "cancel", "wait")
    if remote and (url := args.url or os.environ.get("WATCHER_URL")):
        return _remote(args, url)  # through a daemon's API: no config, no database needed
    if args.command == "status":  # it reads the state only: no secrets, no servers needed
        return _status(args)
    # Start-up builds what lives on (thousands of watch models, specs, records): collecting
    # while they are built only scans them again and again. The daemon collects once, then
    # turns the collector back on (Daemon._settle_memory).
    gc.disable()
    try:
        return _configured(args)
    finally:
        gc.enable()


def _status(args: argparse.Namespace) -> int:
    path = args.config or default_config()
    state = args.state or state_of(path)
    if missing := registry.missing_driver(state):
        raise ConfigError(f"{'--state' if args.state else 'daemon.state'}: {missing}")
    clock.use(zone(zone_of(path)))
    look = Look(width(), coloured(), args.server, args.only)
    return show_status(state, as_json=args.json, look=look, key=args.watch)


def _remote(args: argparse.Namespace, url: str) -> int:
    from watcher.cli import api_client as remote
    from watcher.cli.progress import Progress

    url = remote.api_url(url, "--url" if args.url else "$WATCHER_URL")
    token = remote.token_from(args.token_file, os.environ)
    if args.command == "cancel":
        return remote.run(remote.cancel(url, token, args.key))
    if args.command == "wait":  # the keys `submit` printed
        if args.junit is not None:
            junit.check(args.junit)
        keys = [args.server, *args.ids]
        live = not args.json and _terminal(args)
        rows = shutil.get_terminal_size().lines - 2
        progress = Progress(sys.stderr, live=live, summary_every_s=args.summary_every, rows=rows)
        waited = remote.wait(
            url,
            token,
            keys,
            timeout_s=args.timeout,
            settle_s=args.settle,
            as_json=args.json,
            fail_fast=args.fail_fast,
            progress=progress,
            junit=args.junit,
        )
        return remote.run(waited)
    if (runs := _bulk(args)) is not None:
        from watcher.cli import bulk

        return remote.run(bulk.remote(url, token, runs))
    settings = {key: getattr(args, key, None) for key in SUBMITTED_KEYS}
    return remote.run(remote.submit(url, token, settings))


def _bulk(args: argparse.Namespace) -> list[tuple[int, Any]] | None:
    """``submit --file``'s runs (``None`` without it); SERVER and ID are given, or the file."""
    if args.command != "submit":
        return None
    if args.file is None:
        if args.server is None:
            raise ConfigError("submit: give SERVER (and ID), or --file with the runs")
        return None
    if args.server is not None or args.id is not None:
        raise ConfigError("submit: --file gives the runs: no SERVER or ID beside it")
    from watcher.cli import bulk

    return bulk.read_runs(args.file)


def _new_token(name: str, scope: str, *, toml: bool = False) -> int:
    """A new token alone on stdout (``watcher token new > ci.token`` makes a token file), its
    ``[[api.tokens]]`` entry and the advice on stderr; with ``toml`` the other way round (the
    entry alone on stdout, for ``>> watches.toml``; the token on stderr)."""
    from watcher.config.api import new_token

    token, hashed = new_token()
    quoted = json.dumps(name, ensure_ascii=False)  # a TOML string too: the name is printable
    entry = f'[[api.tokens]]\nname = {quoted}\nscope = "{scope}"\nhash = "{hashed}"'
    if toml:
        print(entry, flush=True)
        advice = f"The token of this entry (give it to its client; it is shown only now):\n{token}"
    else:
        print(token, flush=True)
        advice = (
            "Give the token above to its client (it is shown only now); watches.toml keeps "
            f"its hash:\n\n{entry}"
        )
    print(advice, file=sys.stderr)
    return EXIT_OK


def _configured(args: argparse.Namespace) -> int:
    path = args.config or default_config()
    if args.command == "notify-test":
        return asyncio.run(_notify_test(path, args.channel, args.event))
    if args.command in ("run", "wait"):
        # loads the config itself: no frame here may keep its watches alive while it runs
        return _watch(path, args, once=args.command == "wait" or args.once)
    config = _load(path, args)
    if args.command == "check":
        return _check(config, path)
    if args.command == "submit":
        return asyncio.run(_submit(config, args))
    if args.command == "cancel":
        return asyncio.run(_cancel(config, args.key))
    if args.command in ("ack", "acks"):
        return asyncio.run(_acks(config, args))
    return asyncio.run(_silences(config, args))  # silence, silences, unsilence


def _load(path: str, args: argparse.Namespace) -> Config:
    """The config at ``path``, with the state ``--state`` names, if any."""
    state = getattr(args, "state", None)
    config = load(path, state_writable=state is None)
    clock.use(zone(config.daemon.timezone))
    if state is not None:  # a CI run's own, beside a daemon's
        config = _with_state(config, state)
    return config


def _watch(path: str, args: argparse.Namespace, *, once: bool) -> int:
    """``run``, ``run --once`` and ``wait``. The configuration's watches become specs, then
    only the specs are kept: 50,000 watch models would cost 1.3 KB each for the whole run."""
    if args.junit is not None:
        if not once:
            raise ConfigError("--junit: only with --once (a daemon does not end)")
        junit.check(args.junit)
    config = _load(path, args)
    if once and is_database(config.daemon.state):
        command = "wait" if args.command == "wait" else "run --once"
        raise ConfigError(
            f"{path}: daemon.state: `{command}` keeps a state file of its own (--state FILE); "
            "a database is shared by running instances: hand a run to them with "
            "`watcher submit`"
        )
    metrics = not once or args.metrics  # a CI run beside a daemon leaves the daemon's port be
    options = Options(
        config_path=path,
        once=once,
        summary_every_s=args.summary_every if once else 60.0,
        settle_s=args.settle if once else 60.0,
        metrics=metrics,
        json=once and args.json,
        live=once and not args.json and _terminal(args),
        fail_fast=once and args.fail_fast,
        junit=args.junit,
    )
    if metrics:
        _address_note(path, "daemon.metrics", config.daemon.metrics, in_use_ok=False)
    if config.api is not None and not once and config.api.listen != config.daemon.metrics:
        _address_note(path, "api.listen", config.api.listen, in_use_ok=False)
    if args.command == "wait":
        config = config.model_copy(update={"watches": _adhoc(config, args)})
    _something_to_watch(config, path, options.once)
    _channels(config)
    specs: list[Spec] | Specs[Any] = lazy_specs(config)  # each built when first claimed
    if once and not args.keep_waiting:
        specs = impatient(build_specs(config))
    config = config.model_copy(update={"watches": []})  # the specs say it all, in less memory
    return asyncio.run(run(config, options, specs))


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


def _adhoc(config: Config, args: argparse.Namespace) -> list[WatchConfig]:
    """The watches `wait SERVER ID ...` names: one per id (one without an id for a task)."""
    keys = ("server", "task", "timeout", "interval", "notify")
    given = {key: getattr(args, key) for key in keys}
    return [adhoc_watch(config, {**given, "id": run_id}, "wait") for run_id in args.ids or [None]]


def _with_state(config: Config, state: str) -> Config:
    """``config`` with ``--state`` as its state (checked as ``daemon.state`` would be)."""
    problem = statefile.problem(state) or statefile.unwritable(state)
    if problem:
        raise ConfigError(f"--state: {problem}")
    return config.model_copy(update={"daemon": config.daemon.model_copy(update={"state": state})})


def _terminal(args: argparse.Namespace) -> bool:
    """Whether a person watches: a live view on stderr instead of a line per state change."""
    return sys.stderr.isatty() and args.log_format in ("auto", "text") and not args.verbose


async def _submit(config: Config, args: argparse.Namespace) -> int:
    """Add the run to the store a deployment polls from, and return: the running daemon (or
    one of the instances sharing the database) claims it within a second."""
    if (runs := _bulk(args)) is not None:
        from watcher.cli import bulk

        async with _client(config) as store:
            return await bulk.local(config, store, runs)
    settings = {key: getattr(args, key, None) for key in SUBMITTED_KEYS}
    adhoc_watch(config, settings, "submit")  # a refused one is refused before the store opens
    given = {key: value for key, value in settings.items() if value is not None}
    async with _client(config) as store:
        for record, added in await submit(config, store, settings, time.time()):
            stored = None if added else (await store.submitted([record.key])).get(record.key)
            if stored is not None and (differ := differing(stored, given)):  # as the API's 409
                raise ConfigError(
                    f"{record.key}: already watched with other settings: {', '.join(differ)}"
                )
            print(f"{record.key}  {'submitted' if added else 'already watched'}: {record.name}")
    return EXIT_OK


async def _cancel(config: Config, key: str) -> int:
    """As the API's cancel: 0 for a submitted watch, stopped now or before (a retried step);
    1 for no such watch, a run a watch found, or a watch of watches.toml."""
    async with _client(config) as store:
        if await store.cancel(key) or await _stopped_before(config, store, key):
            print(f"{key}: cancelled")
            return EXIT_OK
    print(
        f"watcher: {key} is not a submitted watch that is still watched (see `watcher status`);"
        " a watch of the configuration stops when it leaves watches.toml",
        file=sys.stderr,
    )
    return EXIT_FAILED


async def _stopped_before(config: Config, store: Store, key: str) -> bool:
    """Whether ``key`` is a watch that was submitted and no longer runs."""
    record = (await store.load([key])).get(key)
    if record is None or record.parent:
        return False
    return all(spec.key != key for spec in build_specs(config))


async def _silences(config: Config, args: argparse.Namespace) -> int:
    """``silence``, ``silences`` and ``unsilence``: kept in the store, so every instance (and
    the next run) honours them."""
    now = time.time()
    async with _client(config) as store:
        if args.command == "silence":
            until = now + args.duration
            made = await store.silence(args.match, until, args.comment, now, _user())
            records, _ = await store.snapshot()
            matching = [r for r in records if matches(args.match, r.key, r.name, r.server)]
            print(f"silence #{made}: {args.match} until {_local(until)}", end="")
            print(f", matching {len(matching)} watches" if matching else ", matching no watch yet")
            return EXIT_OK
        if args.command == "unsilence":
            if await store.unsilence(args.id):
                print(f"silence #{args.id} ended")
                return EXIT_OK
            print(f"watcher: no silence #{args.id}", file=sys.stderr)
            return EXIT_FAILED
        silences = await store.silences(now)
    if args.json:  # as the API's GET /api/v1/silences
        print(
            json.dumps({"version": JSON_VERSION, "silences": [silence_entry(s) for s in silences]})
        )
        return EXIT_OK
    for s in silences:
        said = f" ({s.comment})" if s.comment else ""
        by = f" by {s.by}" if s.by else ""
        print(f"#{s.id}  {s.match}  until {_local(s.until)}{by}{said}")
    if not silences:
        print("no silences in force")
    return EXIT_OK


async def _acks(config: Config, args: argparse.Namespace) -> int:
    """``ack`` (as the user running it) and ``acks``: kept in the store, as silences are."""
    async with _client(config) as store:
        if args.command == "acks":
            acked = await acknowledged(store)
        else:
            acked = await acknowledge(store, args.match, _user(), args.comment, time.time())
        if args.command == "ack" and not acked:
            print(
                f"watcher: nothing lasts now that {args.match!r} names (unreachable, attention"
                " or overdue; see `watcher status`)",
                file=sys.stderr,
            )
            return EXIT_FAILED
    if getattr(args, "json", False):  # as the API's GET /api/v1/acks
        print(json.dumps({"version": JSON_VERSION, "acks": [ack_entry(a) for a in acked]}))
        return EXIT_OK
    for ack in acked:
        said = f" ({ack.comment})" if ack.comment else ""
        print(f"{ack.watch}  {ack.event}  acknowledged by {ack.by} at {_local(ack.at)}{said}")
    if not acked:
        print("no acknowledged condition lasts")
    return EXIT_OK


def _user() -> str:
    """Who runs the command, as the machine knows them."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return f"uid {os.getuid()}"


def _local(timestamp: float) -> str:
    return clock.shown(timestamp, seconds=False)


@contextlib.asynccontextmanager
async def _client(config: Config) -> AsyncIterator[Store]:
    """The store of the deployment, opened beside its running daemons (no lock, no lease)."""
    daemon = config.daemon
    try:
        store = await open_store(
            daemon.state, instance=daemon.instance, lease_s=daemon.lease, client=True
        )
    except (OSError, StoreError) as exc:
        raise ConfigError(f"daemon.state: cannot open {daemon.state}: {exc}") from None
    try:
        yield store
    finally:
        await store.close()


def _check(config: Config, path: str) -> int:
    """What the configuration holds, secrets masked as the logs mask them: apprise's privacy
    form of a channel URL still shows the tokens some services keep in the path."""
    _something_to_watch(config, path, once=False)
    channels = _channels(config)
    metrics = _address_note(path, "daemon.metrics", config.daemon.metrics)
    lines = [f"{path}: OK", f"  state: {statefile.describe(config.daemon.state)}"]
    if metrics:
        lines.append(f"  metrics: {metrics}")
    if config.api is not None:
        lines.append(f"  api: {_api_note(config.api, path)}")
    for name, server in config.servers.items():
        lines.append(f"  server {name}: {server.kind} at {server.url}")
    for name, channel in channels.items():
        lines.append(
            f"  channel {name}: {channel.describe()} on {', '.join(sorted(channel.events))}"
        )
    for spec in build_specs(config):
        notify = ", ".join(spec.notify) or "no channels"
        lines.append(f"  watch {spec.name!r}: {spec.target.key} -> {notify}")
    if not config.watches:
        lines.append(
            "  no watches yet: 'run' waits for some (add them, then reload); 'run --once' exits 2"
        )
    print(scrub("\n".join(lines)))
    return 0


def _address_note(
    path: str, key: str, address: str | None, *, in_use_ok: bool = True
) -> str | None:
    """What to say of a listening address (``key`` names it), once it was bound and let go.

    ``check`` accepts an address in use (most likely by the daemon this config is for);
    ``run`` and ``wait`` need it free.
    """
    if address is None:
        return None
    try:
        try_bind(address)
    except OSError as exc:
        if in_use_ok and exc.errno == errno.EADDRINUSE:
            return f"{address}, in use now (by a running watcher?); 'run' needs it free"
        msg = f"{path}: {key}: cannot listen on {address}: {exc.strerror or exc}"
        raise ConfigError(msg) from None
    return address


def _api_note(api: ApiConfig, path: str) -> str:
    """``https://0.0.0.0:9477 (tokens: ci submit, wall read; anonymous read off), for
    localhost``: the host names it answers to, beside IP addresses."""
    scheme = "https" if api.cert_file else "http"
    where = _address_note(path, "api.listen", api.listen) if api.listen else api.listen
    tokens = ", ".join(f"{t.name} {t.scope}" for t in api.tokens) or "none"
    reads = "on" if api.anonymous_read else "off"
    hosts = ", ".join(api.hosts) or "IP addresses only"
    return f"{scheme}://{where} (tokens: {tokens}; anonymous read {reads}), for {hosts}"


async def _notify_test(path: str, name: str, event_name: str | None) -> int:
    """Send one channel the plain test message or, with an event, what its templates make of a
    sample run at that event. The other channels' URLs are not checked: one broken channel
    does not keep the others from being tested."""
    events = {event.value: event for event in Event}
    if event_name is not None and event_name not in events:
        raise ConfigError(f"--event: no event named {event_name!r} (known: {', '.join(events)})")
    with ChannelConfig.urls_unchecked():
        config = load(path)
    clock.use(zone(config.daemon.timezone))
    settings = config.channels.get(name)
    if settings is None:
        raise ConfigError(f"no channel named {name!r} (known: {', '.join(config.channels)})")
    if problems := settings.url_problems():
        raise ConfigError(f"{path}: channels.{name}.{problems[0]}")
    channel = Channel(name, settings.all_urls, settings.on, settings.title, settings.body)
    event = events[event_name] if event_name is not None else None
    if event is None:
        stamp = clock.shown(time.time())
        title, body = "watcher test notification", f"Sent by 'watcher notify-test' at {stamp}."
    else:
        title, body = render(sample(event), channel.title, channel.body)
    error = await channel.send(title, body, event)
    if error:
        print(f"channel {name}: delivery failed: {error}", file=sys.stderr)
        return 1
    print(scrub(f"channel {name}: delivered to {channel.describe()}"))
    return 0
