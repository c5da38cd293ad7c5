"""Listening addresses: ``host:port``, ``[v6]:port`` or a port alone, checked and test-bound."""

from __future__ import annotations

import re
import socket
from typing import Final

DEFAULT_HOST: Final = "127.0.0.1"
_ADDRESS: Final = re.compile(
    r"(?:(?:\[(?P<v6>[^\s\[\]/]+)\]|(?P<host>[^\s:\[\]/]+)):)?(?P<port>\d{1,5})", re.ASCII
)


def parse_address(text: str) -> tuple[str, int]:
    """Split ``"host:port"``, ``"[v6]:port"`` or ``"port"`` (host 127.0.0.1) into its parts.

    Any host is accepted; whether a non-loopback one is wise is the caller's decision.

    Raises:
        ValueError: ``text`` is not one of those forms, or the port is not 0 to 65535.
    """
    found = _ADDRESS.fullmatch(text.strip())
    if found is None:
        msg = f"metrics address {text!r}: expected host:port, [IPv6]:port or a port alone"
        raise ValueError(msg)
    port = int(found["port"])
    if port > 65535:
        msg = f"metrics address {text!r}: the port must be from 0 to 65535"
        raise ValueError(msg)
    return found["v6"] or found["host"] or DEFAULT_HOST, port


def try_bind(address: str) -> None:
    """Bind every socket the metrics endpoint would bind for ``address``, and let go at once.

    Raises:
        ValueError: ``address`` is not an address (see :func:`parse_address`).
        OSError: it cannot be bound: in use (``errno.EADDRINUSE``), not an address of this
            host, a privileged port, a host name that does not resolve.
    """
    host, port = parse_address(address)
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, kind, proto, _, sockaddr in dict.fromkeys(found):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
