"""SchedulerSettings: defaults, validation, and the constraint set it builds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tenmon.scheduler.constraints import (
    AirmassConstraint,
    HourAngleConstraint,
    MoonIlluminationConstraint,
    MoonSeparationConstraint,
    constraints_from_settings,
)
from tenmon.config.services import SchedulerSettings


def test_validation_names_the_bad_key():
    with pytest.raises(ValidationError, match="horizon_mask azimuth 400"):
        SchedulerSettings(horizon_mask=[(400.0, 10.0)])
    with pytest.raises(ValidationError, match="twice"):
        SchedulerSettings(horizon_mask=[(10.0, 10.0), (10.0, 20.0)])
    with pytest.raises(ValidationError, match="min_hour_angle_deg"):
        SchedulerSettings(min_hour_angle_deg=20, max_hour_angle_deg=-20)
    with pytest.raises(ValidationError, match="bogus"):
        SchedulerSettings(bogus=1)
    with pytest.raises(ValidationError, match="open_twilight"):
        SchedulerSettings(open_twilight="dusky")
    with pytest.raises(ValidationError, match="open_misfire_grace_s"):
        SchedulerSettings(jobs={"open_misfire_grace_s": 0})


def test_mask_is_sorted_and_constraints_follow_settings():
    s = SchedulerSettings(horizon_mask=[(200.0, 10.0), (20.0, 30.0)])
    assert s.horizon_mask == [(20.0, 30.0), (200.0, 10.0)]
    kinds = {type(c) for c in constraints_from_settings(s)}
    assert {AirmassConstraint, HourAngleConstraint, MoonSeparationConstraint} <= kinds
    assert MoonIlluminationConstraint not in kinds
    loose = SchedulerSettings(max_airmass=None, min_moon_separation_deg=None,
                              min_hour_angle_deg=-180, max_hour_angle_deg=180,
                              max_moon_illumination=0.3)
    kinds = {type(c) for c in constraints_from_settings(loose)}
    assert not kinds & {AirmassConstraint, HourAngleConstraint, MoonSeparationConstraint}
    assert MoonIlluminationConstraint in kinds
