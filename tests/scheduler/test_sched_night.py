"""Night boundaries: dusk/dawn at each twilight, checked against astropy's sun altitude."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, EarthLocation, get_sun
from astropy.time import Time

from tenmon.scheduler.errors import NoNightError
from tenmon.scheduler.night import (
    local_night_date,
    next_sun_crossing,
    night_for_date,
    twilight_altitude,
)

SITE = EarthLocation.from_geodetic(134.3356 * u.deg, 35.0253 * u.deg, 449 * u.m)


def _sun_alt(when: datetime, site=SITE) -> float:
    t = Time(when)
    return float(get_sun(t).transform_to(AltAz(obstime=t, location=site)).alt.deg)


@pytest.mark.parametrize("twilight", ["civil", "nautical", "astronomical"])
def test_night_edges_sit_on_the_twilight_altitude(twilight):
    night = night_for_date(date(2026, 11, 21), SITE, twilight)
    alt = twilight_altitude(twilight)
    # Sun altitude changes ~0.2 deg/min here: 0.01 deg is ~3 s.
    assert _sun_alt(night.start) == pytest.approx(alt, abs=0.01)
    assert _sun_alt(night.end) == pytest.approx(alt, abs=0.01)
    assert _sun_alt(night.start + timedelta(minutes=2)) < alt < _sun_alt(
        night.start - timedelta(minutes=2))
    mid = night.start + (night.end - night.start) / 2
    assert _sun_alt(mid) < alt
    # Local (JST = UTC+9) evening and morning of the right dates.
    jst = timezone(timedelta(hours=9))
    assert night.start.astimezone(jst).date() == date(2026, 11, 21)
    assert 17 <= night.start.astimezone(jst).hour <= 19
    assert night.end.astimezone(jst).date() == date(2026, 11, 22)
    assert 4 <= night.end.astimezone(jst).hour <= 6


def test_twilights_nest():
    nights = [night_for_date(date(2026, 6, 21), SITE, tw)
              for tw in ("sunset", "civil", "nautical", "astronomical")]
    for outer, inner in zip(nights, nights[1:]):
        assert outer.start < inner.start and inner.end < outer.end
    assert nights[-1].duration_s < 9 * 3600  # short June night at 35 N


def test_polar_summer_has_no_night():
    svalbard = EarthLocation.from_geodetic(15.6 * u.deg, 78.2 * u.deg, 0 * u.m)
    with pytest.raises(NoNightError, match="does not go below"):
        night_for_date(date(2026, 6, 21), svalbard, "civil")


def test_next_crossing_and_local_date():
    after = datetime(2026, 11, 21, 0, tzinfo=timezone.utc)  # 09:00 JST
    dusk = next_sun_crossing(after, SITE, -12.0, rising=False)
    dawn = next_sun_crossing(after, SITE, -12.0, rising=True)
    assert dusk is not None and dawn is not None and after < dusk < dawn
    assert _sun_alt(dusk) == pytest.approx(-12.0, abs=0.01)
    assert _sun_alt(dawn) == pytest.approx(-12.0, abs=0.01)
    assert _sun_alt(dawn + timedelta(minutes=5)) > -12.0  # rising
    # 03:00 JST on the 22nd belongs to the night of the 21st; 15:00 JST to the coming night.
    assert local_night_date(datetime(2026, 11, 21, 18, tzinfo=timezone.utc), SITE) == \
        date(2026, 11, 21)
    assert local_night_date(datetime(2026, 11, 22, 6, tzinfo=timezone.utc), SITE) == \
        date(2026, 11, 22)
    with pytest.raises(ValueError, match="no timezone"):
        local_night_date(datetime(2026, 11, 22, 6), SITE)
    with pytest.raises(ValueError, match="unknown twilight"):
        twilight_altitude("dusky")
    assert np.isclose(twilight_altitude(-9.5), -9.5)
