"""Telescope mounts: the LX200 serial driver, and :func:`make_mount`, which builds a mount of a
config ``type`` through the drivers registry (:mod:`tenmon.drivers.registry`)."""

from __future__ import annotations

from typing import Any

from tenmon.core.clock import Clock
from tenmon.config.models import MountConfig
from tenmon.drivers import registry
from tenmon.drivers.base import Mount
from tenmon.drivers.mount.lx200 import (
    Lx200Mount,
    MountRefused,
    NotConnected,
    TargetBelowHorizon,
)
from tenmon.core.errors import ConfigError

__all__ = ["Lx200Mount", "MountRefused", "NotConnected", "TargetBelowHorizon", "make_mount"]


def make_mount(config: MountConfig, clock: Clock, *, world: Any | None = None) -> Mount:
    """Build the mount that ``[mount]`` describes (not connected yet: call ``connect()``).

    ``type = "lx200"`` gives an :class:`Lx200Mount` on ``config.port``. ``type = "simulated"``
    is a view of the simulated world and needs it: without ``world`` this raises ConfigError
    (a site never falls back to a simulator). Raises ConfigError for an unknown type.
    """
    kind = getattr(config, "type", type(config).__name__)
    entry = registry.DRIVERS.get(("mount", kind))
    if entry is None or entry.network:  # network mounts: daemon/device_factory.py
        raise ConfigError(f"unknown mount type {kind!r}",
                          [("mount.type", None, f"unknown: {kind!r}")])
    if entry.simulated and world is None:
        raise ConfigError(
            f"mount.type = {kind!r} needs the simulated world (mode = 'simulated'); "
            "none was given, and a site never falls back to a simulator",
            [("mount.type", None, f"{kind} mount without a simulated world")])
    cls = entry.load()
    return cls(config, world, clock) if entry.simulated else cls(config, clock)
