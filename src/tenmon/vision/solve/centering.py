"""Centring arithmetic: from a target, where the frame really points and where the mount thinks it
points, decide the next move (pure; the daemon runs the goto -> frame -> solve -> move loop).

Two ways to correct, chosen in settings:

* ``sync``: tell the mount it is at the solved position (its reported position becomes the true
  one there), then goto the target again;
* ``offset``: goto the mount's own coordinates shifted by (target - solved), leaving the mount's
  model alone.

Done when the solved centre is within ``tolerance_arcsec`` of the target; a failure after
``max_tries``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from tenmon.core.astro import separation_arcsec
from tenmon.config.vision import CenteringSettings


@dataclass(frozen=True)
class CenteringStep:
    """One try's outcome. ``action`` is ``done``, ``sync_and_goto``, ``goto`` or ``give_up``.

    For ``sync_and_goto``: sync the mount to (``sync_ra_deg``, ``sync_dec_deg``), then goto
    (``goto_ra_deg``, ``goto_dec_deg``). For ``goto``: goto those coordinates. Offsets are
    target minus solved: ``east_arcsec`` (on the sky) and ``north_arcsec``.
    """

    try_number: int
    action: Literal["done", "sync_and_goto", "goto", "give_up"]
    separation_arcsec: float
    east_arcsec: float
    north_arcsec: float
    goto_ra_deg: float | None = None
    goto_dec_deg: float | None = None
    sync_ra_deg: float | None = None
    sync_dec_deg: float | None = None

    def to_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def centering_step(
    *,
    target_ra_deg: float,
    target_dec_deg: float,
    solved_ra_deg: float,
    solved_dec_deg: float,
    mount_ra_deg: float,
    mount_dec_deg: float,
    try_number: int,
    settings: CenteringSettings | None = None,
) -> CenteringStep:
    """Decide what to do after try ``try_number`` (1-based) was solved.

    ``mount_*`` is what the mount reported while the frame was taken. Raises ``ValueError`` for
    ``try_number < 1`` or a declination outside -90..90.
    """
    s = settings or CenteringSettings()
    if try_number < 1:
        raise ValueError("try_number is 1-based")
    for d in (target_dec_deg, solved_dec_deg, mount_dec_deg):
        if not -90.0 <= d <= 90.0:
            raise ValueError(f"declination {d} out of range")
    sep = separation_arcsec(target_ra_deg, target_dec_deg, solved_ra_deg, solved_dec_deg)
    dra = (target_ra_deg - solved_ra_deg + 180.0) % 360.0 - 180.0
    east = dra * math.cos(math.radians(target_dec_deg)) * 3600.0
    north = (target_dec_deg - solved_dec_deg) * 3600.0
    common = dict(try_number=try_number, separation_arcsec=sep, east_arcsec=east, north_arcsec=north)
    if sep <= s.tolerance_arcsec:
        return CenteringStep(action="done", **common)
    if try_number >= s.max_tries:
        return CenteringStep(action="give_up", **common)
    if s.method == "sync":
        return CenteringStep(action="sync_and_goto", goto_ra_deg=target_ra_deg % 360.0, goto_dec_deg=target_dec_deg,
                             sync_ra_deg=solved_ra_deg % 360.0, sync_dec_deg=solved_dec_deg, **common)
    ra = (mount_ra_deg + dra) % 360.0
    dec = max(-90.0, min(90.0, mount_dec_deg + (target_dec_deg - solved_dec_deg)))
    return CenteringStep(action="goto", goto_ra_deg=ra, goto_dec_deg=dec, **common)
