"""Settings of the scheduler (planning constraints, overheads, night jobs) as pydantic models."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tenmon.config.services import Twilight, JobSettings, SchedulerSettings

log = logging.getLogger(__name__)


#: Altitude of the sun's centre (degrees) that defines each twilight. "sunset" includes the
#: standard 34' of refraction and 16' of semi-diameter (astropy computes airless altitudes).
TWILIGHT_SUN_ALT_DEG: dict[str, float] = {
    "sunset": -0.833,
    "civil": -6.0,
    "nautical": -12.0,
    "astronomical": -18.0,
}


