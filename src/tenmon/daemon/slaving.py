"""Dome slaving for the services that point the telescope: keep the slit in front of a target.

One :class:`DomeSlaver` per service (the night's sequencer, the centring service). Every
``period_s`` of the daemon's clock, :meth:`DomeSlaver.slave` computes the dome azimuth for the
target (``dome_geometry.dome_azimuth_radec``) and sends ``dome_goto`` when the dome is neither
already heading there (within the slaving tolerance) nor standing within half the tolerance of
it. Refusals (unsafe, emergency) are logged, not raised: the supervisor owns the dome then.

Two ways to ask at once, both kept from the services this replaced:

- ``now=True`` checks at once, not waiting for the period (a new target);
- ``resend=True`` also sends the goto when the dome stands within half the tolerance (the
  sequencer at the start of a block: it re-aims the dome at each new block).
"""

from __future__ import annotations

import logging
from typing import Protocol

from tenmon.config.services import DomeGeometry
from tenmon.core.astro import lst_deg
from tenmon.core.clock import Clock
from tenmon.core.errors import CommandRefused
from tenmon.daemon.dome_geometry import azimuth_error_deg, dome_azimuth_radec

log = logging.getLogger(__name__)


class DomeView(Protocol):
    """What slaving reads of the dome."""

    azimuth_deg: float | None
    target_deg: float | None
    slewing: bool


class DomeCommand(Protocol):
    """What slaving needs of the observatory: the dome to read and its goto command (which
    refuses, with ``CommandRefused``, what is unsafe)."""

    @property
    def dome(self) -> DomeView: ...

    def dome_goto(self, azimuth_deg: float) -> None: ...


class Site(Protocol):
    latitude_deg: float
    longitude_deg: float


class DomeSlaver:
    """See the module docstring.

    Args:
        commands: the dome and its goto (the observatory).
        clock: the daemon's clock (``now()`` for the sidereal time, ``monotonic()`` for periods).
        site: latitude and longitude.
        geometry: the dome geometry (``slave_tolerance_deg`` too).
        period_s: the slaving check period (daemon clock seconds).
        name: who slaves (in log lines).
    """

    def __init__(self, commands: DomeCommand, *, clock: Clock, site: Site,
                 geometry: DomeGeometry, period_s: float, name: str = "dome slaving"):
        self.commands = commands
        self.clock = clock
        self.site = site
        self.geometry = geometry
        self.period_s = period_s
        self.name = name
        self._next = -1e9

    def target_deg(self, ra_deg: float, dec_deg: float) -> float:
        """The dome azimuth for (ra, dec) now (degrees)."""
        lst = lst_deg(self.clock.now(), self.site.longitude_deg)
        return dome_azimuth_radec(ra_deg, dec_deg, lst, self.site.latitude_deg,
                                  self.geometry).azimuth_deg

    def on_target(self, ra_deg: float, dec_deg: float) -> bool:
        """The dome stands (not slewing) within the slaving tolerance of (ra, dec)'s azimuth."""
        dome = self.commands.dome
        az = dome.azimuth_deg
        if az is None or dome.slewing:
            return False
        return abs(azimuth_error_deg(az, self.target_deg(ra_deg, dec_deg))) <= \
            self.geometry.slave_tolerance_deg

    def slave(self, ra_deg: float, dec_deg: float, now_m: float, *, now: bool = False,
              resend: bool = False) -> None:
        """Re-target the dome when it drifts (see the module docstring); cheap between periods."""
        if not now and now_m < self._next:
            return
        self._next = now_m + self.period_s
        dome = self.commands.dome
        target = self.target_deg(ra_deg, dec_deg)
        tol = self.geometry.slave_tolerance_deg
        if dome.slewing:
            if dome.target_deg is not None and abs(azimuth_error_deg(dome.target_deg,
                                                                     target)) <= tol:
                return
        elif not resend and dome.azimuth_deg is not None and \
                abs(azimuth_error_deg(dome.azimuth_deg, target)) <= tol / 2:
            return
        try:
            self.commands.dome_goto(round(target, 2) % 360.0)
        except CommandRefused as exc:
            log.warning("%s: %s", self.name, exc)


__all__ = ["DomeCommand", "DomeSlaver", "DomeView"]
