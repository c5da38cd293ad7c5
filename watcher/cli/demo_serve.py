"""``watcher demo --serve``: the demo left up, its API and status page too, until Ctrl-C.

The demo's configuration gains an ``[api]`` table listening on loopback and one read token made
for this run alone; the daemon runs as ``watcher run`` does (not ``--once``), so the page keeps
showing the watches after they end. Once the listener answers, the addresses, the token and the
configuration's path are printed; SIGINT or SIGTERM stop the daemon and then the simulators.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from watcher.address import parse_address, try_bind
from watcher.config.api import loopback, new_token
from watcher.config.load import load
from watcher.errors import ConfigError
from watcher.service.daemon import Options, run

_UP_WITHIN_S: Final = 30.0
_RETRY_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class Listener:
    """Where the demo's API listens, and the read token made for it."""

    host: str
    port: int
    token: str
    token_hash: str

    @property
    def address(self) -> str:
        """``host:port`` as ``[api] listen`` takes it (``[v6]:port`` for IPv6)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The status page's address."""
        return f"http://{self.address}/"

    def api_table(self) -> str:
        """The ``[api]`` table the demo's configuration gains."""
        return (
            f'\n[api]\nlisten = "{self.address}"\n\n'
            f'[[api.tokens]]\nname = "demo"\nscope = "read"\nhash = "{self.token_hash}"\n'
        )


def listener(listen: str) -> Listener:
    """A listener at ``listen`` (port 0: a free one), with a new read token.

    Raises:
        ConfigError: ``listen`` is no address, not loopback, or cannot be listened on (in
            use, say).
    """
    try:
        host, port = parse_address(listen)
        try_bind(listen)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"demo --serve: cannot listen on {listen}: {exc}") from None
    if not loopback(host):  # the demo has no certificate: its token would cross the network
        raise ConfigError(f"demo --serve: {listen} is not loopback (127.0.0.1, [::1])")
    if port == 0:
        port = _free_port(host)
    token, hashed = new_token()
    return Listener(host, port, token, hashed)


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def serve(path: Path, where: Listener, simulators: dict[str, str]) -> int:
    """Run the daemon on ``path`` until a signal; print where everything is once it answers."""
    stop = asyncio.Event()
    daemon = asyncio.create_task(run(load(path), Options(config_path=path), stop=stop))
    try:
        await _answering(where, daemon)
        if not daemon.done():
            print(_banner(path, where, simulators), flush=True)
        return await daemon
    finally:
        stop.set()  # an error or a cancel here must not leave the daemon running
        if not daemon.done():
            await daemon


async def _answering(where: Listener, daemon: asyncio.Task[int]) -> None:
    """Wait until the listener accepts a connection, the daemon ends or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _UP_WITHIN_S
    while not daemon.done() and loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection(where.host, where.port)
        except OSError:
            await asyncio.sleep(_RETRY_S)
            continue
        writer.close()
        await writer.wait_closed()
        return


def _banner(path: Path, where: Listener, simulators: dict[str, str]) -> str:
    systems = "\n".join(f"  {name:<12}  {url}" for name, url in simulators.items())
    return f"""
watcher demo --serve: up until Ctrl-C.
  status page   {where.url}   (sign in with the read token)
  API           {where.url}api/v1/watches
  read token    {where.token}   (made for this demo; it ends with it)
  config        {path}
simulated systems:
{systems}

Try:
  curl -H 'Authorization: Bearer {where.token}' {where.url}api/v1/watches
  watcher status -c {path}
"""
