"""Settings of the scheduler (planning constraints, overheads, night jobs) as pydantic models."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

log = logging.getLogger(__name__)

#: Twilight names accepted wherever a twilight is configured.
Twilight = Literal["sunset", "civil", "nautical", "astronomical"]

#: Altitude of the sun's centre (degrees) that defines each twilight. "sunset" includes the
#: standard 34' of refraction and 16' of semi-diameter (astropy computes airless altitudes).
TWILIGHT_SUN_ALT_DEG: dict[str, float] = {
    "sunset": -0.833,
    "civil": -6.0,
    "nautical": -12.0,
    "astronomical": -18.0,
}


class JobSettings(BaseModel):
    """How the night's apscheduler jobs fire and how late a missed run may still run.

    ``*_misfire_grace_s`` is apscheduler's ``misfire_grace_time``: a run that is later than this
    (a daemon that was down at dusk) is dropped, not replayed. ``None`` means "run however late",
    which is right only for closing.
    """

    model_config = ConfigDict(extra="forbid")

    # Whole seconds: apscheduler takes misfire_grace_time as an int.
    open_misfire_grace_s: int = Field(default=1800, gt=0)
    plan_misfire_grace_s: int = Field(default=1800, gt=0)
    # Closing at dawn is always safe, so a daemon restarted after dawn still closes (once).
    close_misfire_grace_s: int | None = Field(default=None, gt=0)
    health_interval_s: float = Field(default=60.0, gt=0)
    weather_interval_s: float = Field(default=60.0, gt=0)
    check_misfire_grace_s: int = Field(default=30, gt=0)


class SchedulerSettings(BaseModel):
    """Everything the planner and the night jobs need, with the site's defaults.

    Angles in degrees, times in seconds. ``horizon_mask`` lists ``[azimuth_deg, min_altitude_deg]``
    points (azimuth north 0, east 90); the minimum altitude between points is interpolated
    linearly in azimuth (wrapping at 360) and combined with ``min_altitude_deg`` (the higher wins).
    Hour angles are negative east of the meridian.
    """

    model_config = ConfigDict(extra="forbid")

    open_twilight: Twilight = Field(
        default="nautical", description="dusk at which the open job fires (then: if safe)")
    close_twilight: Twilight = Field(default="nautical", description="dawn at which to close")
    observe_twilight: Twilight = Field(
        default="astronomical", description="sun altitude bounding the planned science night")
    min_altitude_deg: float = Field(default=30.0, ge=0.0, lt=90.0)
    horizon_mask: list[tuple[float, float]] = Field(
        default_factory=list, description="[azimuth_deg, min_altitude_deg] points")
    max_airmass: float | None = Field(default=2.0, ge=1.0, description="sec z; None: no limit")
    min_moon_separation_deg: float | None = Field(default=20.0, ge=0.0, le=180.0)
    max_moon_illumination: float | None = Field(
        default=None, ge=0.0, le=1.0, description="lit fraction allowed while the moon is up")
    min_hour_angle_deg: float = Field(default=-90.0, ge=-180.0, le=180.0)
    max_hour_angle_deg: float = Field(default=90.0, ge=-180.0, le=180.0)
    slew_rate_deg_s: float = Field(default=2.0, gt=0, description="mount, great-circle")
    dome_rate_deg_s: float = Field(default=3.0, gt=0, description="dome rotation")
    settle_s: float = Field(default=10.0, ge=0, description="after every slew")
    readout_s: float = Field(default=5.0, ge=0, description="per exposure")
    filter_change_s: float = Field(default=10.0, ge=0, description="overlaps the slew")
    park_alt_deg: float = Field(default=35.0, ge=-5.0, le=90.0,
                                description="where the first slew of the night starts")
    park_az_deg: float = Field(default=0.0, ge=0.0, lt=360.0)
    pack_slack_deg: float = Field(
        default=5.0, ge=0.0, le=90.0,
        description="mean altitude a block may give up to sit right against a neighbour")
    time_step_s: float = Field(default=60.0, ge=10.0, le=600.0,
                               description="constraint grid: every block minute is checked")
    jobs: JobSettings = Field(default_factory=JobSettings)

    @field_validator("horizon_mask")
    @classmethod
    def _check_mask(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        seen: set[float] = set()
        for az, alt in points:
            if not 0.0 <= az < 360.0:
                raise ValueError(f"horizon_mask azimuth {az} is outside 0..360 deg")
            if not -5.0 <= alt < 90.0:
                raise ValueError(f"horizon_mask minimum altitude {alt} is outside -5..90 deg")
            if az in seen:
                raise ValueError(f"horizon_mask lists azimuth {az} twice")
            seen.add(az)
        return sorted(points)

    @model_validator(mode="after")
    def _check_ha(self) -> SchedulerSettings:
        if self.min_hour_angle_deg >= self.max_hour_angle_deg:
            raise ValueError(
                f"min_hour_angle_deg ({self.min_hour_angle_deg}) must be below "
                f"max_hour_angle_deg ({self.max_hour_angle_deg})"
            )
        return self
