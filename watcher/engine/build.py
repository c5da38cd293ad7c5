"""From configuration to running parts: the specs of the watches, their servers and channels,
and the watches `watcher submit` adds."""

from __future__ import annotations

import functools
import logging
import re
import ssl
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from watcher.backoff import Policy
from watcher.config import shapes
from watcher.config.load import Config, WatchConfig, explain
from watcher.engine.spec import Server, Spec
from watcher.engine.specs import Specs
from watcher.errors import ConfigError
from watcher.models import Target, WatchRecord, describe_target, target_key
from watcher.notify.messages import Channel
from watcher.notify.quiet import Quiet, window, zone
from watcher.remote.client import Http
from watcher.remote.providers import KINDS, ServerConfig
from watcher.schema import ServerBase
from watcher.stores import Requests

log = logging.getLogger(__name__)


def build_specs(config: Config) -> list[Spec]:
    """The watches of a configuration as the engine runs them."""
    return [spec for watch in config.watches for spec in _specs(watch, config)]


Copy = tuple[WatchConfig, str | None, str | None]
"""What the engine keeps of a watch that is a copy of another (:mod:`watcher.config.shapes`)
until it runs it: that other watch, and the copy's id and name (a watch's model is 1.3 KB; a
million of them are not kept for as long as the daemon runs)."""


def lazy_specs(config: Config) -> Specs[Copy]:
    """:func:`build_specs`, the spec of each copy of another watch (one that sets only its id
    and name) built when the engine first asks for it (see :mod:`watcher.engine.specs`); the
    specs of the others (few: written one by one) at once."""
    entries: dict[str, Spec | Copy] = {}
    servers = config.servers
    # a server whose ids may name several runs (RSA) is asked for each watch's
    splits = {name: type(s).split_ids is not ServerBase.split_ids for name, s in servers.items()}
    prefixes: dict[int, tuple[str, str]] = {}  # a template's key around the id, by id()
    template_of = shapes.template_of
    for watch in config.watches:
        template = template_of(watch)
        several = splits[watch.server] and servers[watch.server].split_ids(watch.id) != [watch.id]
        if template is None or several:
            entries.update((spec.key, spec) for spec in _specs(watch, config))
            continue
        if (around := prefixes.get(id(template))) is None:
            server = servers[template.server]
            around = prefixes[id(template)] = _around_id(template, server)
        entries[f"{around[0]}{watch.id or ''}{around[1]}"] = (template, watch.id, watch.name)
    bare = config.model_copy(update={"watches": []})
    return Specs(entries, functools.partial(_one_spec, config=bare), _identity)


def _around_id(template: WatchConfig, server: ServerConfig) -> tuple[str, str]:
    """What the key of each copy of ``template`` has before and after its id."""
    key = target_key(template.server, "\0", template.task) + template.key_suffix(server)
    before, after = key.split("\0")
    return before, after


def _one_spec(copy: Copy, config: Config) -> Spec:
    return _specs(shapes.copy_of(*copy), config)[0]


def _identity(key: str, copy: Copy) -> tuple[str, str, float]:
    """What the digest takes of a copy's spec, without building it."""
    template, id, name = copy
    return key, name or describe_target(template.server, id, template.task), template.timeout


def _specs(watch: WatchConfig, config: Config) -> list[Spec]:
    server = config.servers[watch.server]
    auto = watch.expect == "auto"
    expect_s = None if auto or watch.expect is None else float(watch.expect)
    policy = _policy(
        watch.interval, watch.backoff, watch.max_interval, watch.unreachable_after, expect_s
    )
    notify = _channel_names(tuple(watch.notify))
    suffix = watch.key_suffix(server)
    ids = server.split_ids(watch.id)
    specs = []
    for run_id in ids:
        each = run_id is None and server.discovers(run_id, watch.task, watch.each)
        target = Target(watch.server, run_id, watch.task, each=each)
        if len(ids) == 1:
            name = watch.name or target.describe()
        else:
            name = f"{watch.name} (run {run_id})" if watch.name else target.describe()
        discovers = watch.filters is not None or each
        specs.append(
            Spec(
                target.key + suffix,
                name,
                target,
                policy,
                watch.timeout,
                notify,
                watch.filters,
                None,
                discovers,
                expect_auto=auto,
            )
        )
    return specs


def impatient(specs: list[Spec]) -> list[Spec]:
    """``specs`` ending, each, once its server has failed it ``unreachable_after`` times
    without ever answering (``wait`` and ``run --once``: a wrong URL fails CI at once)."""
    return [replace(spec, policy=_impatient(spec.policy)) for spec in specs]


@functools.cache
def _impatient(policy: Policy) -> Policy:
    return replace(policy, give_up_unanswered=True)


#: what `watcher submit` may set; everything else comes from the configuration's [defaults]
SUBMITTED_KEYS = ("server", "id", "task", "name", "notify", "timeout", "interval")


def differing(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """The settings a run submitted again gives otherwise than it was first submitted with
    (a retried step gives the same: it is already watched; else it is refused, locally and
    through the API alike)."""
    keys = ("name", "notify", "timeout", "interval")
    return [key for key in keys if key in given and stored.get(key) != given[key]]


def adhoc_watch(config: Config, settings: Mapping[str, Any], where: str) -> WatchConfig:
    """One watch given outside the watches list (``watcher wait``, ``watcher submit``): the
    configuration's ``[defaults]`` under ``settings``; ConfigError (prefixed ``where``) if it
    is not one this configuration can run."""
    given = config.defaults.model_dump(exclude_unset=True)
    given.update((k, v) for k, v in settings.items() if k in SUBMITTED_KEYS and v is not None)
    given.setdefault("max_interval", max(given.get("interval", 15.0), 300.0))
    try:
        watch = WatchConfig.model_validate(given)
    except ValueError as exc:
        raise ConfigError(f"{where}: {explain(exc)}") from None
    if problems := config.watch_problems(0, watch):
        stripped = (re.sub(r"^watches\[0\]( \(.*?\))?[.:]? ?", "", p) for p in problems)
        raise ConfigError(f"{where}: " + "; ".join(stripped))
    return watch


async def submit(
    config: Config, store: Requests, settings: Mapping[str, Any], now: float
) -> list[tuple[WatchRecord, bool]]:
    """Add the run ``settings`` names (the keys of :data:`SUBMITTED_KEYS`) to ``store``, for a
    daemon to claim; each watch's record and whether it is new (``False``: already watched,
    so a retried submission watches once). ConfigError if this configuration cannot run it."""
    watch = adhoc_watch(config, settings, "submit")
    given = {key: value for key, value in settings.items() if value is not None}
    added = []
    for spec in build_specs(config.model_copy(update={"watches": [watch]})):
        record = spec.new_record(now, now)
        added.append((record, await store.submit(record, {**given, "id": spec.target.id})))
    return added


def submitted_spec(config: Config, key: str, settings: Mapping[str, Any]) -> Spec | None:
    """The spec of a watch `watcher submit` added, from the settings stored with it; ``None``
    (said once) if this configuration cannot run it (its server is not configured here)."""
    try:
        watch = adhoc_watch(config, settings, f"submitted watch {key}")
    except ConfigError as exc:
        if key not in _UNRUNNABLE:
            _UNRUNNABLE.add(key)
            log.warning("%s; another instance may run it", exc)
        return None
    found = [spec for spec in _specs(watch, config) if spec.key == key]
    return replace(found[0], origin="submitted") if found else None


_UNRUNNABLE: set[str] = set()


@functools.cache
def _policy(
    interval_s: float,
    backoff: float,
    max_interval_s: float,
    unreachable_after: int = 5,
    expect_s: float | None = None,
) -> Policy:
    """One value per distinct pacing: thousands of watches with the same settings share it."""
    return Policy(
        interval_s,
        backoff,
        max_interval_s,
        unreachable_after=unreachable_after,
        expect_s=expect_s,
    )


@functools.cache
def _channel_names(names: tuple[str, ...]) -> tuple[str, ...]:
    return names


def build_channels(config: Config) -> dict[str, Channel]:
    """One apprise-backed channel per ``[channels.<name>]``; ValueError for a bad URL."""
    tz = zone(config.daemon.timezone)
    return {
        name: Channel(
            name,
            ch.all_urls,
            ch.on,
            ch.title,
            ch.body,
            Quiet(*window(ch.quiet), tz) if ch.quiet else None,
            ch.urgent,
            ch.repeat,
            ch.group,
            repeat_factor=ch.repeat_factor or 1.0,
            repeat_max_s=ch.repeat_max or 0.0,
            after_s=ch.after,
        )
        for name, ch in config.channels.items()
    }


def build_servers(
    config: Config, http: Http, previous: Mapping[str, tuple[ServerConfig, Server]] | None = None
) -> dict[str, tuple[ServerConfig, Server]]:
    """A provider per server; an unchanged server of ``previous`` keeps its own (and its token)."""
    servers = {}
    for name, server in config.servers.items():
        if previous and name in previous and previous[name][0] == server:
            servers[name] = previous[name]
            continue
        kind = KINDS[server.kind]
        try:
            client = http.server(
                max_concurrency=server.max_concurrency,
                timeout_s=server.request_timeout,
                verify_tls=server.verify_tls,
                ca_file=server.ca_file,
                headers=server.headers,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"servers.{name}.ca_file: cannot use {server.ca_file}: {exc}"
            ) from None
        provider = kind.build(server, client)
        servers[name] = (
            server,
            Server(name, kind.title, server.url, provider, server.max_concurrency),
        )
    return servers
