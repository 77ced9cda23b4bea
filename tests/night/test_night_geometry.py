"""Dome slaving geometry: a centred fork follows the telescope; offsets and a German mount's
declination axis move the slit where the optical axis really meets the dome."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenmon.core.astro import radec_to_altaz
from tenmon.daemon.dome_geometry import (azimuth_error_deg, dome_azimuth, dome_azimuth_radec,
                                         pier_side_for)
from tenmon.config.services import DomeGeometry

LAT = 35.0253


def _vec(alt, az):
    a, z = math.radians(alt), math.radians(az)
    return (math.cos(a) * math.sin(z), math.cos(a) * math.cos(z), math.sin(a))


@given(alt=st.floats(0, 90), az=st.floats(0, 359.999))
@settings(max_examples=200, deadline=None)
def test_centred_fork_follows_the_telescope(alt, az):
    t = dome_azimuth(alt, az, LAT, DomeGeometry())
    if alt < 89.9:  # at the zenith the azimuth is undefined
        assert abs(azimuth_error_deg(t.azimuth_deg, az)) < 1e-6
    assert abs(t.elevation_deg - alt) < 1e-6
    assert t.pier_side is None


def test_offset_mount_by_hand():
    # mount 1 m east of the centre, looking at the north horizon: the ray leaves the dome at
    # (1, sqrt(R^2 - 1), 0), east of north
    g = DomeGeometry(radius_m=2.5, mount_east_m=1.0)
    t = dome_azimuth(0.0, 0.0, LAT, g)
    assert t.azimuth_deg == pytest.approx(math.degrees(math.atan2(1.0, math.sqrt(2.5 ** 2 - 1))))
    # looking east along the offset changes nothing; looking west neither
    assert dome_azimuth(0.0, 90.0, LAT, g).azimuth_deg == pytest.approx(90.0)
    assert dome_azimuth(0.0, 270.0, LAT, g).azimuth_deg == pytest.approx(270.0)
    # at the zenith from an off-centre mount the slit's point is east of the zenith
    z = dome_azimuth(90.0, 0.0, LAT, g)
    assert z.azimuth_deg == pytest.approx(90.0) and z.elevation_deg == pytest.approx(
        math.degrees(math.acos(1.0 / 2.5)))


def test_german_mount_tube_side_by_hand():
    g = DomeGeometry(radius_m=2.5, mount_type="german", dec_axis_offset_m=0.5)
    # meridian, pier east: the declination axis points east, the tube sits 0.5 m east; pointing
    # due south at the horizon... use the celestial equator on the meridian
    alt = 90.0 - LAT
    t = dome_azimuth(alt, 180.0, LAT, g, pier_side="east")
    # the tube is 0.5 m east of the centre, looking south: the slit is east of south
    d = _vec(alt, 180.0)
    o = (0.5, 0.0, 0.0)
    od = sum(a * b for a, b in zip(o, d))
    tt = -od + math.sqrt(od * od - (0.25 - 2.5 ** 2))
    p = [o[i] + tt * d[i] for i in range(3)]
    assert t.azimuth_deg == pytest.approx(math.degrees(math.atan2(p[0], p[1])) % 360)
    assert t.azimuth_deg < 180.0  # east of south
    w = dome_azimuth(alt, 180.0, LAT, g, pier_side="west")
    assert w.azimuth_deg > 180.0  # the tube on the other side: west of south
    assert azimuth_error_deg(t.azimuth_deg, 180.0) == pytest.approx(
        -azimuth_error_deg(w.azimuth_deg, 180.0))
    # hour angle +6 h, Dec 0 (west horizon), pier east: the declination axis is perpendicular to
    # the polar axis in the meridian, pointing up and south, so the tube rides above the axes
    # (counterweight down): the slit's point is a little south of west and above the horizon
    h6 = dome_azimuth(0.0, 270.0, LAT, g, pier_side="east")
    sl, cl = math.sin(math.radians(LAT)), math.cos(math.radians(LAT))
    far = math.sqrt(2.5 ** 2 - 0.25)  # the offset is perpendicular to the ray
    assert h6.azimuth_deg == pytest.approx(math.degrees(math.atan2(-far, -0.5 * sl)) % 360)
    assert 260.0 < h6.azimuth_deg < 270.0
    assert h6.elevation_deg == pytest.approx(math.degrees(math.asin(0.5 * cl / 2.5)))


@given(alt=st.floats(5, 85), az=st.floats(0, 359.9), e=st.floats(-0.6, 0.6),
       n=st.floats(-0.6, 0.6), u=st.floats(-0.3, 0.6), r=st.floats(0.0, 0.6),
       side=st.sampled_from(["east", "west"]))
@settings(max_examples=200, deadline=None)
def test_slit_point_is_on_the_optical_axis_and_the_dome(alt, az, e, n, u, r, side):
    g = DomeGeometry(radius_m=2.5, mount_east_m=e, mount_north_m=n, mount_up_m=u,
                     mount_type="german", dec_axis_offset_m=r)
    t = dome_azimuth(alt, az, LAT, g, pier_side=side)
    # rebuild the tube's centre independently and check the slit point lies on its ray
    p_ax = (0.0, math.cos(math.radians(LAT)), math.sin(math.radians(LAT)))
    d = _vec(alt, az)
    a = (p_ax[1] * d[2] - p_ax[2] * d[1], p_ax[2] * d[0] - p_ax[0] * d[2],
         p_ax[0] * d[1] - p_ax[1] * d[0])
    na = math.sqrt(sum(c * c for c in a))
    k = (1 if side == "east" else -1) * r / na
    o = (e + k * a[0], n + k * a[1], u + k * a[2])
    s = _vec(t.elevation_deg, t.azimuth_deg)
    s = tuple(2.5 * c for c in s)
    v = tuple(s[i] - o[i] for i in range(3))
    nv = math.sqrt(sum(c * c for c in v))
    cos = sum(v[i] * d[i] for i in range(3)) / nv
    assert cos == pytest.approx(1.0, abs=1e-9)


def test_pier_side_and_radec_wrapper():
    g = DomeGeometry(mount_type="german", dec_axis_offset_m=0.4)
    assert pier_side_for(30.0, g) == "east" and pier_side_for(-30.0, g) == "west"
    assert pier_side_for(30.0, DomeGeometry()) is None
    assert pier_side_for(30.0, g.model_copy(update={"pier_side": "west"})) == "west"
    lst = 100.0
    ra, dec = 80.0, 20.0  # hour angle +20 deg: pier east
    alt, az = radec_to_altaz(ra, dec, lst, LAT)
    assert dome_azimuth_radec(ra, dec, lst, LAT, g) == dome_azimuth(alt, az, LAT, g,
                                                                    pier_side="east")


def test_geometry_must_fit_in_the_dome():
    with pytest.raises(ValueError, match="inside the dome"):
        DomeGeometry(radius_m=1.0, mount_east_m=0.8, dec_axis_offset_m=0.3)
    with pytest.raises(ValueError):
        dome_azimuth(95.0, 0.0, LAT, DomeGeometry())
    assert DomeGeometry(radius_m=2.5, slit_width_m=1.0).slit_half_width_deg() == pytest.approx(
        math.degrees(math.asin(0.2)))


def test_slit_lets_light_through_only_where_it_is():
    from tenmon.daemon.dome_geometry import slit_transmission

    g = DomeGeometry(radius_m=2.5, slit_width_m=1.0)
    # on the slit's centre line, from the horizon to past the zenith
    for el in (5.0, 45.0, 89.0):
        assert slit_transmission(120.0, el, 120.0, g) == 1.0
    # near the zenith any dome azimuth works: the slit runs over the zenith
    assert slit_transmission(300.0, 89.5, 120.0, g) == 1.0
    # at the horizon, 0.5 m to the side is the slit's edge (half-width 11.5 deg)
    half = g.slit_half_width_deg()
    assert slit_transmission(120.0 + 0.5 * half, 0.0, 120.0, g) == 1.0
    assert 0.0 < slit_transmission(120.0 + 0.9 * half, 0.0, 120.0, g) < 1.0
    assert slit_transmission(120.0 + 1.05 * half, 0.0, 120.0, g) == 0.0
    # the dome turned away: blocked
    assert slit_transmission(300.0, 30.0, 120.0, g) == 0.0
    # higher up, the same azimuth offset is a smaller distance on the dome
    assert slit_transmission(130.0, 70.0, 120.0, g) == 1.0
    assert slit_transmission(130.0, 10.0, 120.0, g) < 1.0
