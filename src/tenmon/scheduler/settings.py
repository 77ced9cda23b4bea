"""The scheduler's twilight altitudes. Its settings (``[scheduler]``: planning constraints,
overheads, night jobs) are :class:`tenmon.config.services.SchedulerSettings`."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


#: Altitude of the sun's centre (degrees) that defines each twilight. "sunset" includes the
#: standard 34' of refraction and 16' of semi-diameter (astropy computes airless altitudes).
TWILIGHT_SUN_ALT_DEG: dict[str, float] = {
    "sunset": -0.833,
    "civil": -6.0,
    "nautical": -12.0,
    "astronomical": -18.0,
}
