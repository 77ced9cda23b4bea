"""Telescope mounts: the LX200 serial driver and the registry that builds a mount from config."""

from __future__ import annotations

from typing import Any

from tenmon.clock import Clock
from tenmon.config.models import Lx200MountConfig, MountConfig, SimulatedMountConfig
from tenmon.drivers.base import Mount
from tenmon.drivers.mount.lx200 import (
    Lx200Mount,
    MountRefused,
    NotConnected,
    TargetBelowHorizon,
)
from tenmon.errors import ConfigError

__all__ = ["Lx200Mount", "MountRefused", "NotConnected", "TargetBelowHorizon", "make_mount"]


def make_mount(config: MountConfig, clock: Clock, *, world: Any | None = None) -> Mount:
    """Build the mount that ``[mount]`` describes (not connected yet: call ``connect()``).

    ``type = "lx200"`` gives an :class:`Lx200Mount` on ``config.port``. ``type = "simulated"``
    is a view of the simulated world and needs it: without ``world`` this raises ConfigError
    (a site never falls back to a simulator). Raises ConfigError for an unknown type.
    """
    if isinstance(config, Lx200MountConfig):
        return Lx200Mount(config, clock)
    if isinstance(config, SimulatedMountConfig):
        if world is None:
            raise ConfigError(
                "mount.type = 'simulated' needs the simulated world (mode = 'simulated'); "
                "none was given, and a site never falls back to a simulator",
                [("mount.type", None, "simulated mount without a simulated world")])
        from tenmon.drivers.sim.devices import SimulatedMount

        return SimulatedMount(config, world, clock)
    kind = getattr(config, "type", type(config).__name__)
    raise ConfigError(f"unknown mount type {kind!r}", [("mount.type", None, f"unknown: {kind!r}")])
