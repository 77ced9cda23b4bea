"""Finding Alpaca servers and their devices: the discovery protocol and the management API.

Discovery (Alpaca API, section 4): a UDP datagram ``alpacadiscovery1`` broadcast to port 32227;
every Alpaca server answers ``{"AlpacaPort": N}`` from its own address. Then each server's
management API (``/management/v1/configureddevices``) lists its devices. A server without a
management API (alpaca-simulators has none) is probed instead: ``/api/v1/<type>/<n>/name`` for
each device type tenmon uses, numbers 0.. until one does not answer.

:func:`config_lines` turns a device into the site-file lines that use it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
from dataclasses import asdict, dataclass

import requests

log = logging.getLogger(__name__)

DISCOVERY_PORT = 32227
DISCOVERY_MESSAGE = b"alpacadiscovery1"

#: ASCOM device type (lower case) -> the tenmon section that uses it.
SECTIONS = {"camera": "ccd", "telescope": "mount", "focuser": "focuser",
            "filterwheel": "filter_wheel", "observingconditions": "weather",
            "safetymonitor": "weather"}


@dataclass(frozen=True)
class AlpacaDeviceInfo:
    """One device of one server."""

    address: str          # host:port
    device_type: str      # ASCOM type, lower case (camera, telescope, ...)
    device_number: int
    name: str
    unique_id: str = ""
    source: str = "management"   # or "probe" (a server without a management API)

    @property
    def section(self) -> str | None:
        return SECTIONS.get(self.device_type)

    def to_json(self) -> dict:
        return {**asdict(self), "section": self.section, "config": config_lines(self)}


def broadcast_addresses() -> list[str]:
    """The IPv4 broadcast address of every local interface (APIPA ones left out), and the
    limited broadcast when none is found."""
    out: list[str] = []
    try:
        import ifaddr

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                if not ip.is_IPv4 or str(ip.ip).startswith("169.254."):
                    continue
                net = ipaddress.IPv4Network(f"{ip.ip}/{ip.network_prefix}", strict=False)
                out.append(str(net.broadcast_address))
    except Exception as exc:  # noqa: BLE001 - no interface list: the limited broadcast
        log.debug("interfaces not listed: %s", exc)
    return sorted(set(out)) or ["255.255.255.255"]


def discover_servers(*, targets: list[str] | None = None, port: int = DISCOVERY_PORT,
                     timeout_s: float = 2.0, tries: int = 2) -> list[str]:
    """Alpaca servers that answer discovery, as ``host:port`` (sorted, once each).

    ``targets``: addresses to send the query to (default: every interface's broadcast).
    Blocking for about ``tries * timeout_s``.
    """
    found: set[str] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("0.0.0.0", 0))
        for _ in range(max(1, tries)):
            for target in targets or broadcast_addresses():
                try:
                    sock.sendto(DISCOVERY_MESSAGE, (target, port))
                except OSError as exc:
                    log.debug("discovery to %s failed: %s", target, exc)
            deadline = time.monotonic() + timeout_s
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, (host, _) = sock.recvfrom(1024)
                except (socket.timeout, TimeoutError):
                    break
                except OSError:
                    break
                try:
                    alpaca_port = int(json.loads(data.decode())["AlpacaPort"])
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    continue  # not an Alpaca answer
                found.add(f"{host}:{alpaca_port}")
    return sorted(found)


def server_devices(address: str, *, timeout_s: float = 3.0, probe_numbers: int = 4
                   ) -> tuple[str | None, list[AlpacaDeviceInfo]]:
    """(server description or ``None``, its devices). Raises OSError-like
    ``requests.RequestException`` when the server does not answer at all."""
    base = f"http://{address}"
    try:
        r = requests.get(f"{base}/management/v1/configureddevices", timeout=timeout_s)
        if r.status_code == 200:
            devs = r.json().get("Value") or []
            desc = None
            try:
                d = requests.get(f"{base}/management/v1/description", timeout=timeout_s)
                desc = (d.json().get("Value") or {}).get("ServerName") if d.ok else None
            except (requests.RequestException, ValueError):
                pass
            return desc, [AlpacaDeviceInfo(address=address,
                                           device_type=str(x.get("DeviceType", "")).lower(),
                                           device_number=int(x.get("DeviceNumber", 0)),
                                           name=str(x.get("DeviceName", "")),
                                           unique_id=str(x.get("UniqueID", "")))
                          for x in devs]
    except ValueError:
        pass
    out: list[AlpacaDeviceInfo] = []
    for kind in SECTIONS:
        for n in range(probe_numbers):
            try:
                r = requests.get(f"{base}/api/v1/{kind}/{n}/name", timeout=timeout_s)
                j = r.json() if r.status_code == 200 else None
            except ValueError:
                j = None
            if not j or j.get("ErrorNumber", 0) != 0:
                break
            out.append(AlpacaDeviceInfo(address=address, device_type=kind, device_number=n,
                                        name=str(j.get("Value", "")), source="probe"))
    return None, out


def config_lines(dev: AlpacaDeviceInfo) -> str:
    """The site-file lines that use ``dev`` (empty for a kind tenmon does not use)."""
    section = dev.section
    if section is None:
        return ""
    if dev.device_type == "safetymonitor":
        return (f'[weather]\ntype = "alpaca"\naddress = "{dev.address}"\n'
                f"observing_conditions = false   # or the ObservingConditions device number\n"
                f"safety_monitor = {dev.device_number}")
    return (f'[{section}]\ntype = "alpaca"\naddress = "{dev.address}"\n'
            f"device_number = {dev.device_number}")


__all__ = ["AlpacaDeviceInfo", "DISCOVERY_PORT", "broadcast_addresses", "config_lines",
           "discover_servers", "server_devices"]
