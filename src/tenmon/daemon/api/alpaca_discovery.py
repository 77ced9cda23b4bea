"""Alpaca discovery: answer the UDP broadcast ``alpacadiscovery1`` with ``{"AlpacaPort": N}``.

The Alpaca API reference's discovery protocol (version 1, IPv4): a client broadcasts the 16
bytes ``alpacadiscovery1`` to UDP port 32227; every Alpaca server answers the sender with
``{"AlpacaPort": <its HTTP port>}``, and the client takes the address from the answer's source.
The socket is bound to every address (broadcasts arrive there) with ``SO_REUSEADDR``, so several
Alpaca servers on one machine each get the broadcast. A server bound to loopback answers only
loopback clients: a LAN client could not reach its port anyway. IPv6 (multicast ff12::a1:9aca)
is not served. Runs on the event loop: a datagram is answered at once, nothing waits.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket

log = logging.getLogger(__name__)

DISCOVERY_MESSAGE = b"alpacadiscovery1"


class DiscoveryResponder(asyncio.DatagramProtocol):
    """Answers discovery datagrams with the Alpaca HTTP port."""

    def __init__(self, alpaca_port: int, *, loopback_only: bool):
        self.reply = json.dumps({"AlpacaPort": alpaca_port}).encode()
        self.loopback_only = loopback_only
        self.transport: asyncio.DatagramTransport | None = None
        self.answered = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        # version 1 asks with exactly "alpacadiscovery1"; later versions add characters after it
        if not data.startswith(DISCOVERY_MESSAGE) or self.transport is None:
            return
        if self.loopback_only:
            try:
                if not ipaddress.ip_address(addr[0]).is_loopback:
                    return
            except ValueError:
                return
        try:
            self.transport.sendto(self.reply, addr)
            self.answered += 1
        except OSError as exc:  # an unreachable sender must not stop the responder
            log.debug("discovery answer to %s failed: %s", addr, exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def start_discovery(alpaca_port: int, discovery_port: int = 32227, *,
                          loopback_only: bool = False) -> DiscoveryResponder:
    """Listen for discovery on UDP ``discovery_port`` (all IPv4 addresses).

    Raises:
        OSError: the port cannot be bound.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("", discovery_port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    responder = DiscoveryResponder(alpaca_port, loopback_only=loopback_only)
    await loop.create_datagram_endpoint(lambda: responder, sock=sock)
    return responder


__all__ = ["DiscoveryResponder", "start_discovery", "DISCOVERY_MESSAGE"]
