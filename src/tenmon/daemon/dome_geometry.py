"""Dome slaving geometry: the dome azimuth that puts the slit in front of the telescope (pure).

The telescope's optical axis does not start at the dome's centre: the mount sits off-centre
(``mount_east_m``, ``mount_north_m``, ``mount_up_m`` from the dome centre to the intersection of
the mount's axes), and on a German equatorial mount the tube hangs ``dec_axis_offset_m`` along the
declination axis from that intersection, on one side of the pier or the other. The slit must be
where the optical axis meets the dome, not at the telescope's azimuth.

Frame: origin at the centre of the dome's hemisphere; x east, y north, z up (metres). The polar
axis points at the north celestial pole, ``P = (0, cos lat, sin lat)``. For a pointing direction
``D`` (unit vector from alt/az), the declination axis is along ``P x D``; the tube's centre is at
``mount + s * dec_axis_offset_m * unit(P x D)``, with ``s = +1`` for pier side ``east`` (ASCOM's
pierEast: the tube east of the pier, looking west, the normal side for a target west of the
meridian) and ``s = -1`` for ``west``. (At hour angle 0 ``P x D`` points due east; at hour angle
+6 h and Dec 0 it points up, which is the tube riding above the mount with the counterweight down.)
The dome azimuth is the azimuth of the point where the ray from the tube's centre along ``D``
leaves the dome sphere of radius ``radius_m``.

The same approach as ASCOM's POTH and INDI's dome slaving (a vector model of the mount and a
ray-sphere intersection); written out here because it is a dozen lines and needs no library.
A centred fork mount (all offsets zero) gives dome azimuth = telescope azimuth.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

from tenmon.core.astro import radec_to_altaz, wrap180
from tenmon.config.services import DomeGeometry

log = logging.getLogger(__name__)

PierSide = Literal["east", "west"]


@dataclass(frozen=True)
class DomeTarget:
    """Where the dome must point: ``azimuth_deg`` (north 0, east 90) and ``elevation_deg`` of the
    point where the optical axis leaves the dome (seen from the dome centre); ``pier_side`` used
    (``None`` for a fork)."""

    azimuth_deg: float
    elevation_deg: float
    pier_side: PierSide | None


def pier_side_for(hour_angle_deg: float, geometry: DomeGeometry) -> PierSide | None:
    """The pier side of a German mount for a target at ``hour_angle_deg`` (``None`` for a fork).

    ``auto`` is the usual choice: ``east`` (tube east of the pier, looking west) for a target at
    hour angle >= 0, else ``west``.
    """
    if geometry.mount_type == "fork":
        return None
    if geometry.pier_side != "auto":
        return geometry.pier_side
    return "east" if wrap180(hour_angle_deg) >= 0.0 else "west"


def dome_azimuth(alt_deg: float, az_deg: float, latitude_deg: float, geometry: DomeGeometry,
                 *, pier_side: PierSide | None = None) -> DomeTarget:
    """The dome position for a telescope pointing at (``alt_deg``, ``az_deg``) at a site.

    Args:
        alt_deg, az_deg: where the telescope points (degrees; azimuth north 0, east 90).
        latitude_deg: the site's latitude (sets the polar axis).
        geometry: the dome and mount.
        pier_side: for a German mount; ``None`` takes :func:`pier_side_for` from the hour angle.

    Returns:
        A :class:`DomeTarget`.

    Raises:
        ValueError: altitude outside -90..90.
    """
    if not -90.0 <= alt_deg <= 90.0:
        raise ValueError(f"altitude {alt_deg} is outside -90..90 deg")
    alt, az, lat = math.radians(alt_deg), math.radians(az_deg), math.radians(latitude_deg)
    d = (math.cos(alt) * math.sin(az), math.cos(alt) * math.cos(az), math.sin(alt))
    o = [geometry.mount_east_m, geometry.mount_north_m, geometry.mount_up_m]
    side: PierSide | None = None
    if geometry.mount_type == "german":
        p = (0.0, math.cos(lat), math.sin(lat))
        a = _cross(p, d)
        norm = math.sqrt(sum(c * c for c in a))
        if pier_side is None:
            ha = _hour_angle(d, lat)
            side = pier_side_for(ha, geometry)
        else:
            side = pier_side
        if norm > 1e-9 and geometry.dec_axis_offset_m > 0:
            sign = 1.0 if side == "east" else -1.0
            k = sign * geometry.dec_axis_offset_m / norm
            o = [o[i] + k * a[i] for i in range(3)]
        # pointing along the polar axis the declination axis is undefined (the tube's centre is
        # anywhere on a circle around it): the offset is left out in that edge case
    od = sum(o[i] * d[i] for i in range(3))
    oo = sum(c * c for c in o)
    r = geometry.radius_m
    t = -od + math.sqrt(max(0.0, od * od - (oo - r * r)))
    s = [o[i] + t * d[i] for i in range(3)]
    dome_az = math.degrees(math.atan2(s[0], s[1])) % 360.0
    dome_el = math.degrees(math.asin(max(-1.0, min(1.0, s[2] / r))))
    return DomeTarget(azimuth_deg=dome_az, elevation_deg=dome_el, pier_side=side)


def dome_azimuth_radec(ra_deg: float, dec_deg: float, lst_deg: float, latitude_deg: float,
                       geometry: DomeGeometry) -> DomeTarget:
    """:func:`dome_azimuth` for a telescope at (``ra_deg``, ``dec_deg``) at local sidereal time
    ``lst_deg`` (degrees); the pier side follows :func:`pier_side_for` of the hour angle."""
    alt, az = radec_to_altaz(ra_deg, dec_deg, lst_deg, latitude_deg)
    return dome_azimuth(alt, az, latitude_deg, geometry,
                        pier_side=pier_side_for(lst_deg - ra_deg, geometry))


def slit_transmission(point_az_deg: float, point_el_deg: float, dome_az_deg: float,
                      geometry: DomeGeometry, *, beyond_zenith_deg: float = 15.0) -> float:
    """Fraction (0..1) of a beam that passes the slit, for the point where the optical axis
    meets the dome (``point_az_deg``, ``point_el_deg``, from :func:`dome_azimuth`) and the dome
    turned to ``dome_az_deg``. The slit is a band ``slit_width_m`` wide along the dome's
    meridian through ``dome_az_deg``, from the horizon to ``beyond_zenith_deg`` past the zenith;
    the beam (taken as wide as the slit's edge zone, a fifth of the slit) is vignetted linearly
    at the edges. Used by the simulator; pure."""
    el, daz = math.radians(point_el_deg), math.radians(point_az_deg - dome_az_deg)
    along = math.cos(el) * math.cos(daz)   # towards the slit's horizon end
    across = math.cos(el) * math.sin(daz)  # perpendicular to the slit's plane
    up = math.sin(el)
    off_m = abs(across) * geometry.radius_m
    theta = math.degrees(math.atan2(up, along))  # 0 at the slit's horizon, 90 at the zenith
    if theta > 90.0 + beyond_zenith_deg or theta < -5.0:
        return 0.0
    half = geometry.slit_width_m / 2.0
    edge = 0.2 * geometry.slit_width_m
    if off_m <= half - edge:
        return 1.0
    if off_m >= half:
        return 0.0
    return (half - off_m) / edge


def azimuth_error_deg(dome_az_deg: float, target_az_deg: float) -> float:
    """Signed smallest difference ``dome - target`` in degrees (-180..180)."""
    return wrap180(dome_az_deg - target_az_deg)


def _cross(a: tuple[float, float, float], b: tuple[float, float, float]
           ) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _hour_angle(d: tuple[float, float, float], lat: float) -> float:
    """Hour angle (deg, west positive) of the direction ``d`` (east, north, up)."""
    # equatorial frame: z to the pole, x to the meridian's equator point (south-up), y west
    sl, cl = math.sin(lat), math.cos(lat)
    x = -d[1] * sl + d[2] * cl   # towards (HA 0, Dec 0)
    y = -d[0]                    # towards HA +6h (west)
    return math.degrees(math.atan2(y, x))
