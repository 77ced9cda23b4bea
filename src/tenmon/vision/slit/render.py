"""Synthetic IR renderer: the fisheye view of the dome's interior from near its centre.

One ray per pixel is cast from the camera (offset from the dome's centre, tilted, rolled, any of
four fisheye projections) into a simple world: a hemispherical dome of radius 1 on a cylindrical
wall, with ribs, panel seams, stains, a base ring, the slit (rails along its edges, the shutter
panel over its covered part, sky through its open part), and the telescope tube with a finder
between the camera and the dome. Surfaces are lit by the IR illuminator beside the camera (hot
spot, fall-off) and, by day and at twilight, by daylight through the slit. The sky has stars,
clouds, moonlight, twilight and daylight. The sensor adds vignetting, blur, auto-exposure, shot
and read noise, hot pixels, gamma, the colour tint of IR-sensitive cameras and JPEG artefacts;
the image circle can be clipped by the sensor. Occlusion scenes draw the failure cases the
encoder must answer ``unknown`` to: the tube across the slit, lights off, a covered lens, a
camera blinded by a bright light.

Everything is seeded: the same parameters and seed give the same image. :func:`random_params`
randomises all of it widely; the simulated IR camera and the training data both come from here.
Pure numpy/OpenCV.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import cv2
import numpy as np

from tenmon.vision.slit.polar import radius_to_theta, theta_to_radius
from tenmon.vision.slit.reading import PROJECTIONS, Calibration, state_for_fraction

log = logging.getLogger(__name__)

SCENES = ("night", "twilight", "day")
OCCLUSIONS = ("none", "tube_across", "lights_off", "lens_covered", "blinded")

#: Common sensor sizes (width, height) the renderer draws.
RESOLUTIONS = ((480, 480), (640, 480), (800, 600), (960, 960), (1024, 768), (1280, 720),
               (1280, 960), (1296, 972), (1600, 1200), (1920, 1080))

#: Visibility (fraction of the lower slit that can be seen) from which the slit counts as visible.
VISIBLE_THRESHOLD = 0.5


@dataclass(frozen=True)
class RenderParams:
    """Everything that shapes one rendered frame except the slit's azimuth and opening.

    Lengths are in dome radii (the dome is a unit hemisphere centred on the origin, x east,
    y north, z up), angles in degrees, radiances relative to a dome lit by the illuminator (~1).
    """

    # -- sensor and lens
    width: int = 640
    height: int = 480
    projection: str = "equidistant"
    horizon_radius_px: float = 220.0
    fov_deg: float = 185.0
    optical_cx: float = 320.0
    optical_cy: float = 240.0
    north_angle_deg: float = 0.0
    azimuth_sense: int = -1
    tilt_deg: float = 0.0
    tilt_dir_deg: float = 0.0
    camera_offset: tuple[float, float, float] = (0.0, 0.0, -0.05)
    # -- dome
    slit_width_frac: float = 0.10
    slit_overshoot_deg: float = 10.0
    rail_width: float = 0.018
    rail_albedo: float = 0.9
    n_ribs: int = 16
    rib_phase_deg: float = 11.25
    rib_width: float = 0.012
    rib_albedo: float = 0.45
    ring_elevations_deg: tuple[float, ...] = (22.0, 45.0, 68.0)
    seam_albedo: float = 0.35
    seam_width: float = 0.004
    top_ring_deg: float = 80.0
    dome_albedo: float = 0.65
    stain_strength: float = 0.15
    base_ring_albedo: float = 0.3
    base_ring_height_deg: float = 3.0
    wall_albedo: float = 0.35
    wall_clutter: int = 6
    shutter_albedo: float = 0.55
    shutter_rib_spacing_deg: float = 12.0
    shutter_rib_albedo: float = 0.35
    shutter_lip_albedo: float = 0.15
    # -- telescope
    tube: bool = True
    tube_alt_deg: float = 50.0
    tube_az_deg: float = 0.0
    tube_radius: float = 0.11
    tube_front: float = 0.45
    tube_back: float = 0.15
    tube_pivot: tuple[float, float, float] = (0.0, 0.0, 0.08)
    tube_albedo: float = 0.12
    finder: bool = True
    # -- scene
    scene: str = "night"
    sky_level: float = 0.03
    sky_gradient: float = 0.5
    sun_az_deg: float = 270.0
    cloud_cover: float = 0.0
    cloud_level: float = 0.1
    cloud_scale: float = 1.0
    n_stars: int = 300
    star_level: float = 1.5
    moon_alt_deg: float = -10.0
    moon_az_deg: float = 0.0
    moon_level: float = 0.0
    # -- lighting
    illuminator: bool = True
    illum_strength: float = 1.0
    illum_alt_deg: float = 80.0
    illum_az_deg: float = 0.0
    illum_width_deg: float = 45.0
    ambient: float = 0.02
    daylight: float = 0.0
    vignetting: float = 0.3
    # -- sensor effects
    exposure_target: float = 0.35
    exposure_jitter: float = 1.0
    gamma: float = 1.0 / 2.2
    blur_sigma: float = 0.0
    read_noise: float = 0.01
    shot_noise: float = 0.01
    hot_pixels: int = 20
    jpeg_quality: int = 0
    tint_bgr: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # -- the site's fixed textures (dome stains, wall clutter, star field); frames differ by seed only
    texture_seed: int = 0
    # -- occlusions
    occlusion: str = "none"
    glare_xy: tuple[float, float] = (0.5, 0.5)
    glare_radius_frac: float = 0.5
    cover_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection {self.projection!r} not in {PROJECTIONS}")
        if self.scene not in SCENES:
            raise ValueError(f"scene {self.scene!r} not in {SCENES}")
        if self.occlusion not in OCCLUSIONS:
            raise ValueError(f"occlusion {self.occlusion!r} not in {OCCLUSIONS}")
        if self.azimuth_sense not in (1, -1):
            raise ValueError("azimuth_sense must be +1 or -1")
        if self.width < 32 or self.height < 32:
            raise ValueError("frames smaller than 32x32 are not rendered")

    @property
    def slit_length_deg(self) -> float:
        """Arc of the slit from the horizon over the zenith to its far end, degrees."""
        return 90.0 + self.slit_overshoot_deg

    def scaled_to(self, width: int, height: int) -> "RenderParams":
        """The same camera on a sensor of another size (pixel quantities scale with width)."""
        f = width / self.width
        return replace(self, width=width, height=height, horizon_radius_px=self.horizon_radius_px * f,
                       optical_cx=self.optical_cx * f, optical_cy=self.optical_cy * height / self.height)


@dataclass(frozen=True)
class RenderTruth:
    """What a rendered frame shows: the answer an encoder should give, and how to read it."""

    calibration: Calibration
    azimuth_deg: float
    open_fraction: float
    state: str
    visibility: float
    slit_visible: bool
    scene: str
    occlusion: str
    slit_width_frac: float
    slit_length_deg: float
    #: The first renderer's visibility (a lit sample needed 4 sigma of read noise + 0.02 per pixel,
    #: which called plainly visible slits "hidden"); kept so old figures can be reproduced.
    visibility_strict: float | None = None
    #: Share of the part of the slit that decides its state in view (lens, sensor, telescope):
    #: the first 5 degrees of arc of a closed slit, the last 5 of an open one, +-4 around the
    #: edge of a partly open one. Below 0.5 no image can tell the state apart.
    state_visibility: float | None = None

    def to_dict(self) -> dict:
        """Plain JSON values."""
        return {"calibration": self.calibration.to_dict(), "azimuth_deg": self.azimuth_deg,
                "open_fraction": self.open_fraction, "state": self.state,
                "visibility": self.visibility, "slit_visible": self.slit_visible,
                "scene": self.scene, "occlusion": self.occlusion,
                "slit_width_frac": self.slit_width_frac, "slit_length_deg": self.slit_length_deg,
                "visibility_strict": self.visibility_strict,
                "state_visibility": self.state_visibility}


@dataclass
class RenderResult:
    """A rendered frame (uint8 BGR, ``height x width x 3``) and its truth."""

    image: np.ndarray
    truth: RenderTruth
    extras: dict = field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------- small helpers


def _altaz_vec(alt_deg: float, az_deg: float) -> np.ndarray:
    a, z = math.radians(alt_deg), math.radians(az_deg)
    return np.array([math.cos(a) * math.sin(z), math.cos(a) * math.cos(z), math.sin(a)])


def _tilt_matrix(tilt_deg: float, tilt_dir_deg: float) -> np.ndarray:
    """Rotation taking camera-frame vectors (camera up = +z) to world vectors."""
    axis = _altaz_vec(90.0 - tilt_deg, tilt_dir_deg)
    z = np.array([0.0, 0.0, 1.0])
    k = np.cross(z, axis)
    s = np.linalg.norm(k)
    if s < 1e-12:
        return np.eye(3)
    k /= s
    c = float(np.dot(z, axis))
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def _fractal_noise(rng: np.random.Generator, size: int, octaves: int = 4, base: int = 4) -> np.ndarray:
    """Smooth value noise in [0, 1], ``size x size`` float32."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = base * 2 ** o
        grid = rng.random((n + 1, n + 1)).astype(np.float32)
        out += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = np.percentile(out, [1, 99])
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _sample(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample texture ``tex`` at fractional coordinates ``u, v`` in [0, 1] (wrapping in u)."""
    h, w = tex.shape
    mx = (np.mod(u, 1.0) * (w - 1)).astype(np.float32)
    my = (np.clip(v, 0.0, 1.0) * (h - 1)).astype(np.float32)
    shape = mx.shape
    n = mx.size
    cols = 4096  # cv2.remap wants both sides below 32767
    rows = -(-n // cols)
    pad = rows * cols - n
    mx = np.pad(mx.ravel(), (0, pad)).reshape(rows, cols)
    my = np.pad(my.ravel(), (0, pad)).reshape(rows, cols)
    out = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out.ravel()[:n].reshape(shape)


def _dot3(v: np.ndarray, d) -> np.ndarray:
    """Row-wise dot product of (..., 3) vectors with one 3-vector (faster than ``@`` here)."""
    return v[..., 0] * d[0] + v[..., 1] * d[1] + v[..., 2] * d[2]


def _wrap180(a: np.ndarray) -> np.ndarray:
    return (a + 180.0) % 360.0 - 180.0


# --------------------------------------------------------------------------- camera model


class _Camera:
    """The true camera: pixel <-> world direction, with tilt (unlike the 5-key calibration)."""

    def __init__(self, p: RenderParams):
        self.p = p
        self.R = _tilt_matrix(p.tilt_deg, p.tilt_dir_deg)
        self.theta_max = p.fov_deg / 2.0
        if p.projection == "orthographic":
            self.theta_max = min(self.theta_max, 90.0)

    def pixel_dirs(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World unit directions (…, 3) of pixels, and the in-lens mask."""
        p = self.p
        dx = xs - p.optical_cx
        dy = ys - p.optical_cy
        r = np.hypot(dx, dy)
        theta = radius_to_theta(r, p.horizon_radius_px, p.projection)
        inlens = theta <= self.theta_max
        alpha = np.degrees(np.arctan2(dx, -dy))
        azc = np.radians(p.azimuth_sense * (alpha - p.north_angle_deg))
        th = np.radians(np.minimum(theta, self.theta_max)).astype(np.float32)
        azc = azc.astype(np.float32)
        st = np.sin(th)
        cam = (st * np.sin(azc), st * np.cos(azc), np.cos(th))
        R = self.R.astype(np.float32)
        # explicit 3x3 product: numpy's matmul is slow on (N, 3) operands
        world = np.stack([R[i, 0] * cam[0] + R[i, 1] * cam[1] + R[i, 2] * cam[2] for i in range(3)], -1)
        return world, inlens

    def project(self, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel x, y of world directions (…, 3), and the in-lens mask."""
        p = self.p
        cam = dirs @ self.R  # world -> camera (R orthonormal)
        theta = np.degrees(np.arctan2(np.hypot(cam[..., 0], cam[..., 1]), cam[..., 2]))
        azc = np.degrees(np.arctan2(cam[..., 0], cam[..., 1]))
        r = theta_to_radius(theta, p.horizon_radius_px, p.projection)
        alpha = np.radians(p.north_angle_deg + p.azimuth_sense * azc)
        return p.optical_cx + r * np.sin(alpha), p.optical_cy - r * np.cos(alpha), theta <= self.theta_max

    def calibration(self) -> Calibration:
        """The best five-key calibration of this camera (plus projection and offset)."""
        p = self.p
        zx, zy, _ = self.project(np.array([0.0, 0.0, 1.0]))
        az = np.arange(0.0, 360.0, 5.0)
        horiz = np.stack([np.sin(np.radians(az)), np.cos(np.radians(az)), np.zeros_like(az)], -1)
        hx, hy, _ = self.project(horiz)
        hr = float(np.mean(np.hypot(hx - zx, hy - zy)))
        mid = np.stack([np.sin(np.radians(az)), np.cos(np.radians(az)), np.ones_like(az)], -1)
        mx, my, _ = self.project(mid / np.sqrt(2.0))
        alpha = np.degrees(np.arctan2(mx - zx, -(my - zy)))
        d = np.radians(alpha - p.azimuth_sense * az)
        north = math.degrees(math.atan2(np.mean(np.sin(d)), np.mean(np.cos(d)))) % 360.0
        e, n, u = p.camera_offset
        return Calibration(center_x=float(zx), center_y=float(zy), horizon_radius=hr,
                           north_angle_deg=round(north, 6), azimuth_sense=p.azimuth_sense,
                           projection=p.projection, camera_offset_east=float(e),
                           camera_offset_north=float(n), camera_offset_up=float(u))


# --------------------------------------------------------------------------- ray casting


def _ray_cylinder(o: np.ndarray, v: np.ndarray, p0: np.ndarray, d: np.ndarray, rho: float,
                  h_lo: float, h_hi: float) -> np.ndarray:
    """Distance along rays ``o + s v`` to a finite closed cylinder (inf where missed)."""
    w = o - p0
    vd = _dot3(v, d)
    wd = float(w @ d)
    a = v - vd[..., None] * d
    b = w - wd * d
    A = np.einsum("...i,...i->...", a, a)
    B = 2.0 * _dot3(a, b)
    C = float(b @ b) - rho * rho
    disc = B * B - 4 * A * C
    s = np.full(v.shape[:-1], np.inf, np.float32)
    ok = (disc >= 0) & (A > 1e-12)
    sq = np.sqrt(np.where(ok, disc, 0.0))
    s1 = (-B - sq) / np.where(ok, 2 * A, 1.0)
    h1 = wd + s1 * vd
    hit = ok & (s1 > 1e-6) & (h1 >= h_lo) & (h1 <= h_hi)
    s = np.where(hit, s1, s)
    # end caps
    for hc in (h_lo, h_hi):
        with np.errstate(divide="ignore", invalid="ignore"):
            sc = (hc - wd) / vd
        q = w + sc[..., None] * v - hc * d
        capped = (sc > 1e-6) & (np.einsum("...i,...i->...", q, q) <= rho * rho) & (sc < s)
        s = np.where(capped, sc, s)
    return s.astype(np.float32)


def _cast_dome(c: np.ndarray, v: np.ndarray, wall_depth: float = 0.8
               ) -> tuple[np.ndarray, np.ndarray]:
    """First hit of rays from ``c`` along ``v`` on dome (kind 0), wall (1) or floor (2)."""
    b = _dot3(v, c)
    cc = float(c @ c) - 1.0
    s = -b + np.sqrt(np.maximum(b * b - cc, 0.0))
    pts = c + s[..., None] * v
    kind = np.zeros(v.shape[:-1], np.int8)
    below = pts[..., 2] < 0
    if below.any():
        vb = v[below]
        A = vb[:, 0] ** 2 + vb[:, 1] ** 2
        B = 2 * (vb[:, 0] * c[0] + vb[:, 1] * c[1])
        C = c[0] ** 2 + c[1] ** 2 - 1.0
        sw = (-B + np.sqrt(np.maximum(B * B - 4 * A * C, 0.0))) / np.maximum(2 * A, 1e-9)
        pw = c + sw[:, None] * vb
        floor = pw[:, 2] < -wall_depth
        sf = (-wall_depth - c[2]) / np.minimum(vb[:, 2], -1e-6)
        pf = c + sf[:, None] * vb
        pw[floor] = pf[floor]
        pts[below] = pw
        kb = np.where(floor, 2, 1).astype(np.int8)
        kind[below] = kb
    return pts.astype(np.float32), kind


# --------------------------------------------------------------------------- the renderer


def _dome_geometry(p: RenderParams, pts: np.ndarray, az_slit: float, frac: float) -> dict:
    """Slit-frame coordinates and region masks of dome points (all float32/bool arrays)."""
    A = math.radians(az_slit)
    ua = np.array([math.sin(A), math.cos(A), 0.0], np.float32)
    na = np.array([math.cos(A), -math.sin(A), 0.0], np.float32)
    perp = _dot3(pts, na)
    along = _dot3(pts, ua)
    z = pts[..., 2]
    t = np.degrees(np.arctan2(z, along))
    L = p.slit_length_deg
    a = frac * L
    hw = p.slit_width_frac
    aperp = np.abs(perp)
    in_band = (aperp <= hw) & (t <= L)
    rail = (aperp > hw) & (aperp <= hw + p.rail_width) & (t <= L + 1.5)
    end_frame = (aperp <= hw + p.rail_width) & (t > L) & (t <= L + 1.5)
    opening = in_band & (t < a)
    shutter = in_band & (t >= a)
    return {"perp": perp, "t": t, "in_band": in_band, "rail": rail | end_frame,
            "opening": opening, "shutter": shutter, "a": a, "L": L}


def _dome_albedo(p: RenderParams, pts: np.ndarray, geo: dict, az_slit: float,
                 tex: np.ndarray) -> np.ndarray:
    """Albedo of dome points (ribs, seams, stains, base ring, rails, shutter panel)."""
    e, n, z = pts[..., 0], pts[..., 1], pts[..., 2]
    el = np.degrees(np.arcsin(np.clip(z, -1, 1)))
    az = np.degrees(np.arctan2(e, n))
    psi = _wrap180(az - az_slit)  # azimuth in the dome's own (rotating) frame
    cos_el = np.cos(np.radians(el))
    alb = p.dome_albedo * (1.0 + p.stain_strength * (_sample(tex, (psi + 180) / 360.0, el / 90.0) - 0.5) * 2)
    # ribs: meridians every 360/n_ribs degrees, constant physical width
    spacing = 360.0 / max(p.n_ribs, 1)
    d_rib = np.abs(_wrap180((psi - p.rib_phase_deg + spacing / 2) % spacing - spacing / 2))
    d_rib = np.radians(np.minimum(d_rib, spacing - d_rib)) * cos_el
    rib = (d_rib <= p.rib_width) & (el < p.top_ring_deg) & (p.n_ribs > 0)
    alb = np.where(rib, p.rib_albedo, alb)
    # panel seams: horizontal rings, and vertical seams halfway between ribs
    seam = np.zeros(el.shape, bool)
    for er in p.ring_elevations_deg:
        seam |= np.abs(np.radians(el - er)) <= p.seam_width
    d_mid = np.radians(np.abs(_wrap180((psi - p.rib_phase_deg) % spacing - spacing / 2))) * cos_el
    seam |= (d_mid <= p.seam_width) & (el < p.top_ring_deg)
    seam |= np.abs(el - p.top_ring_deg) <= 0.6
    alb = np.where(seam, p.seam_albedo, alb)
    base = el < p.base_ring_height_deg
    alb = np.where(base, p.base_ring_albedo, alb)
    # slit: rails, then the shutter panel and its cross ribs and lower lip
    alb = np.where(geo["rail"], p.rail_albedo, alb)
    t = geo["t"]
    a = geo["a"]
    sh = geo["shutter"]
    sh_alb = np.full(t.shape, p.shutter_albedo, np.float32)
    k = np.mod(t - a, p.shutter_rib_spacing_deg)
    sh_alb = np.where((k < 1.2) & (t - a > 2.0), p.shutter_rib_albedo, sh_alb)
    sh_alb = np.where(t - a < 1.5, p.shutter_lip_albedo, sh_alb)
    alb = np.where(sh, sh_alb, alb)
    return alb.astype(np.float32)


def _wall_albedo(p: RenderParams, pts: np.ndarray, kind: np.ndarray, rng_seed: int) -> np.ndarray:
    """Albedo of the fixed wall and floor: plain paint with a few static boxes (cabinets, door)."""
    rng = np.random.default_rng(rng_seed)
    az = np.degrees(np.arctan2(pts[..., 0], pts[..., 1]))
    z = pts[..., 2]
    alb = np.full(z.shape, p.wall_albedo, np.float32)
    for _ in range(p.wall_clutter):
        c = rng.uniform(-180, 180)
        w = rng.uniform(5, 40)
        top = rng.uniform(-0.6, -0.05)
        box = (np.abs(_wrap180(az - c)) < w / 2) & (z < top)
        alb = np.where(box, rng.uniform(0.05, 0.9), alb)
    alb = np.where(kind == 2, p.wall_albedo * 0.5, alb)
    return alb


def _sky_radiance(p: RenderParams, v: np.ndarray, clouds: np.ndarray, time_rot: float) -> np.ndarray:
    """Radiance of the sky (at infinity) along world directions ``v``."""
    vz = np.clip(v[..., 2], 0.02, 1.0)
    az = np.degrees(np.arctan2(v[..., 0], v[..., 1]))
    el = np.degrees(np.arcsin(vz))
    sky = np.full(vz.shape, p.sky_level, np.float32)
    if p.sky_gradient:
        toward_sun = 0.5 * (1 + np.cos(np.radians(az - p.sun_az_deg)))
        sky = sky * (1.0 + p.sky_gradient * (1 - el / 90.0) * (0.5 + toward_sun))
    if p.cloud_cover > 0:
        s = 0.12 / p.cloud_scale
        u = v[..., 0] / vz * s + 0.5 + time_rot * 0.01
        w = v[..., 1] / vz * s + 0.5
        c = _sample(clouds, u, w)
        m = np.clip((c - (1 - p.cloud_cover)) / 0.15, 0, 1)
        sky = sky * (1 - m) + p.cloud_level * (0.6 + 0.4 * c) * m
    if p.moon_level > 0 and p.moon_alt_deg > -5:
        mv = _altaz_vec(p.moon_alt_deg, p.moon_az_deg).astype(np.float32)
        ang = np.degrees(np.arccos(np.clip(v @ mv, -1, 1)))
        sky = sky + p.moon_level * (0.05 * np.exp(-ang / 25.0) + np.where(ang < 0.3, 50.0, 0.0))
    return sky.astype(np.float32)


def _irradiance(p: RenderParams, pts: np.ndarray, normals: np.ndarray, c: np.ndarray,
                frac: float) -> np.ndarray:
    """Light falling on surface points: illuminator beam (hot spot) plus ambient and daylight."""
    e = np.full(pts.shape[:-1], p.ambient, np.float32)
    if p.illuminator and p.occlusion != "lights_off":
        q = c + np.array([0.02, 0.0, 0.01], np.float32)
        lv = pts - q
        dist = np.linalg.norm(lv, axis=-1) + 1e-6
        ld = lv / dist[..., None]
        b = _altaz_vec(p.illum_alt_deg, p.illum_az_deg).astype(np.float32)
        gam = np.degrees(np.arccos(np.clip(ld @ b, -1, 1)))
        beam = np.exp(-0.5 * (gam / p.illum_width_deg) ** 2) + 0.03
        cosi = np.clip(-np.einsum("...i,...i->...", ld, normals), 0.0, 1.0)
        e = e + p.illum_strength * beam * cosi / np.maximum(dist, 0.3) ** 2
    if p.daylight > 0 and p.occlusion != "lights_off":
        e = e + p.daylight * (0.35 + 0.65 * frac) * (0.6 + 0.4 * np.clip(pts[..., 2], 0, 1))
    return e


def render(azimuth_deg: float, open_fraction: float, params: RenderParams, *, seed: int,
           time: datetime | None = None) -> RenderResult:
    """Render the IR camera's frame of the dome with the slit at ``azimuth_deg`` open by ``open_fraction``.

    Args:
        azimuth_deg: azimuth of the slit's centre line (north 0, east 90), degrees.
        open_fraction: uncovered fraction of the slit's length from the horizon end, 0..1.
        params: camera, dome, scene and sensor (see :class:`RenderParams`).
        seed: seeds the noise, stars, clouds and textures; the same inputs give the same image.
        time: optional UTC time; turns the star field and drifts the clouds (for a live view).

    Returns:
        :class:`RenderResult` with a uint8 BGR image and the truth (calibration, azimuth,
        opening, state, visibility of the slit).
    """
    p = params
    az_slit = float(azimuth_deg) % 360.0
    frac = float(np.clip(open_fraction, 0.0, 1.0))
    rng = np.random.default_rng(seed)
    time_rot = 0.0
    if time is not None:
        secs = (time.astimezone(timezone.utc) - datetime(2000, 1, 1, tzinfo=timezone.utc)).total_seconds()
        time_rot = (secs / 86164.0905 * 360.0) % 360.0
    cam = _Camera(p)
    h, w = p.height, p.width
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = radius_to_theta(np.hypot(xs - p.optical_cx, ys - p.optical_cy), p.horizon_radius_px,
                            p.projection)
    inlens = theta <= cam.theta_max
    # Rays are cast for the pixels inside the image circle only (flat arrays), then scattered.
    flat = np.flatnonzero(inlens)
    dirs, _ = cam.pixel_dirs(xs.ravel()[flat], ys.ravel()[flat])
    c = np.array(p.camera_offset, np.float32)

    pts, kind = _cast_dome(c, dirs)
    geo = _dome_geometry(p, pts, az_slit, frac)
    site_rng = np.random.default_rng(p.texture_seed)
    tex_stain = _fractal_noise(site_rng, 256, 5, 3)
    tex_cloud = _fractal_noise(rng, 512, 6, 3)
    dome = kind == 0
    alb = np.empty(kind.shape, np.float32)
    alb[dome] = _dome_albedo(p, pts[dome], {k: (v[dome] if isinstance(v, np.ndarray) else v)
                                            for k, v in geo.items()}, az_slit, tex_stain)
    alb[~dome] = _wall_albedo(p, pts[~dome], kind[~dome], p.texture_seed + 17)
    normals = np.where((kind == 0)[..., None], -pts,
                       np.where((kind == 1)[..., None],
                                -pts * np.array([1, 1, 0], np.float32),
                                np.array([0, 0, 1], np.float32)))
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True) + 1e-9
    rad_l = alb * _irradiance(p, pts, normals, c, frac)
    sky_l = dome & geo["opening"]
    if sky_l.any():
        rad_l[sky_l] = _sky_radiance(p, dirs[sky_l], tex_cloud, time_rot)

    # telescope tube (and its finder) between the camera and the dome
    tube_l = np.zeros(kind.shape, bool)
    if p.tube:
        d = _altaz_vec(p.tube_alt_deg, p.tube_az_deg).astype(np.float32)
        p0 = np.array(p.tube_pivot, np.float32)
        s_tube = _ray_cylinder(c, dirs, p0, d, p.tube_radius, -p.tube_back, p.tube_front)
        if p.finder:
            side = np.cross(d, np.array([0, 0, 1.0], np.float32))
            if np.linalg.norm(side) < 1e-3:
                side = np.array([1.0, 0, 0], np.float32)
            side /= np.linalg.norm(side)
            pf = p0 + side * (p.tube_radius + 0.035)
            s_f = _ray_cylinder(c, dirs, pf.astype(np.float32), d, 0.025, 0.0, p.tube_front * 0.6)
            s_tube = np.minimum(s_tube, s_f)
        s_dome = np.linalg.norm(pts - c, axis=-1)
        tube_l = np.isfinite(s_tube) & (s_tube < s_dome)
        if tube_l.any():
            tp = c + s_tube[tube_l][:, None] * dirs[tube_l]
            axis_pt = p0 + ((tp - p0) @ d)[:, None] * d
            nrm = tp - axis_pt
            nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True) + 1e-9
            shade = _irradiance(p, tp, nrm, c, frac)
            stripes = 1.0 + 0.3 * (np.mod(((tp - p0) @ d) * 12.0, 1.0) < 0.1)
            rad_l[tube_l] = p.tube_albedo * shade * stripes

    rad = np.zeros(h * w, np.float32)
    rad[flat] = rad_l
    rad = rad.reshape(h, w)
    sky_px = np.zeros(h * w, bool)
    sky_px[flat] = sky_l
    sky_px = sky_px.reshape(h, w)
    tube_hit = np.zeros(h * w, bool)
    tube_hit[flat] = tube_l
    tube_hit = tube_hit.reshape(h, w)

    # stars: point sources through the open slit
    star_layer = np.zeros((h, w), np.float32)
    if p.n_stars > 0 and p.scene != "day" and sky_px.any():
        srng = np.random.default_rng(p.texture_seed + 1)
        sv = srng.normal(size=(p.n_stars, 3))
        sv[:, 2] = np.abs(sv[:, 2])
        sv /= np.linalg.norm(sv, axis=1, keepdims=True)
        rot = math.radians(time_rot)
        cr, sr = math.cos(rot), math.sin(rot)
        sv = sv @ np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]]).T
        mags = srng.exponential(1.0, p.n_stars) * p.star_level * (1 - 0.8 * p.cloud_cover)
        sx, sy, sin_ = cam.project(sv)
        ix, iy = np.round(sx).astype(int), np.round(sy).astype(int)
        ok = sin_ & (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        ix, iy, mags = ix[ok], iy[ok], mags[ok]
        keep = sky_px[iy, ix] & ~tube_hit[iy, ix]
        np.add.at(star_layer, (iy[keep], ix[keep]), mags[keep].astype(np.float32))
        star_layer = cv2.GaussianBlur(star_layer, (0, 0), 0.8) * 6.0

    # lens: vignetting, image circle
    vig = 1.0 - p.vignetting * np.clip(theta / 90.0, 0, 1.2) ** 2
    rad = (rad + star_layer) * vig
    rad = np.where(inlens, rad, 0.0).astype(np.float32)

    # occluders on the lens itself
    glare = np.zeros((h, w), np.float32)
    if p.occlusion == "blinded":
        gx, gy = p.glare_xy[0] * w, p.glare_xy[1] * h
        gr = p.glare_radius_frac * min(h, w)
        dist = np.hypot(xs - gx, ys - gy)
        glare = (60.0 * np.exp(-(dist / gr) ** 2) + 2.0 * np.exp(-dist / (2 * gr))).astype(np.float32)
        ang = np.arctan2(ys - gy, xs - gx)
        glare += (3.0 * np.exp(-dist / (3 * gr)) * np.abs(np.cos(3 * ang)) ** 40).astype(np.float32)
        rad = rad + glare * np.where(inlens, 1.0, 0.3)
    cover = np.zeros((h, w), bool)
    if p.occlusion == "lens_covered":
        # a cap, a hand or a cloth over the lens: a dark, featureless region with a soft edge
        ang = rng.uniform(0, 2 * np.pi)
        off = (1.0 - 2.0 * p.cover_fraction) * p.horizon_radius_px
        proj = (xs - p.optical_cx) * math.cos(ang) + (ys - p.optical_cy) * math.sin(ang)
        cover = proj > off
        level = rng.uniform(0.0, 0.05)
        soft = np.clip((proj - off) / 25.0, 0, 1)
        rad = rad * (1 - soft) + level * soft

    # sensor: auto exposure, blur, noise, gamma, hot pixels, tint, JPEG
    valid = inlens & ~cover
    ref = float(np.percentile(rad[valid], 70)) if valid.sum() > 100 else 1.0
    exposure = p.exposure_target / max(ref, 1e-4) * p.exposure_jitter
    if p.occlusion == "lights_off":
        exposure = min(exposure, 2.0)  # auto exposure tops out in the dark
    img = rad * exposure
    if p.blur_sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), p.blur_sigma)
    img = np.clip(img, 0, 4.0)
    img = img + rng.normal(0, 1, img.shape).astype(np.float32) * np.sqrt(
        p.read_noise ** 2 + p.shot_noise ** 2 * np.clip(img, 0, 1))
    img = np.clip(img, 0, 1) ** p.gamma
    if p.hot_pixels:
        hx = rng.integers(0, w, p.hot_pixels)
        hy = rng.integers(0, h, p.hot_pixels)
        img[hy, hx] = rng.uniform(0.6, 1.0, p.hot_pixels)
    g8 = np.clip(img * 255.0 + 0.5, 0, 255)
    tint = np.array(p.tint_bgr, np.float32)
    bgr = g8[..., None] * tint[None, None, :]
    if np.ptp(tint) > 0.01:
        bgr = bgr + rng.normal(0, 2.0, bgr.shape).astype(np.float32)
    image = np.clip(bgr + 0.5, 0, 255).astype(np.uint8)
    if p.jpeg_quality:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(p.jpeg_quality)])
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)

    visibility, strict = _visibility(p, cam, c, az_slit, frac, exposure, glare, cover)
    truth = RenderTruth(calibration=cam.calibration(), azimuth_deg=az_slit, open_fraction=frac,
                        state=state_for_fraction(frac), visibility=round(visibility, 4),
                        slit_visible=visibility >= VISIBLE_THRESHOLD, scene=p.scene,
                        occlusion=p.occlusion, slit_width_frac=p.slit_width_frac,
                        slit_length_deg=p.slit_length_deg, visibility_strict=round(strict, 4),
                        state_visibility=round(state_region_visibility(p, az_slit, frac), 4))
    return RenderResult(image=image, truth=truth, extras={"exposure": exposure})


def _visibility(p: RenderParams, cam: _Camera, c: np.ndarray, az_slit: float, frac: float,
                exposure: float, glare: np.ndarray, cover: np.ndarray) -> tuple[float, float]:
    """Fraction of the slit's lower part (arc 0..75 deg, full width) an observer could make out.

    Returns the visibility and the first renderer's stricter figure (see below).

    A sample of the slit and its rails counts when it is inside the lens and on the sensor, not
    behind the tube, not under a lens cover, not drowned by glare, and lit well enough for its
    edges to stand out of the noise.
    """
    t = np.linspace(1.0, 75.0, 30)
    u = np.linspace(-1.0, 1.0, 5) * (p.slit_width_frac + p.rail_width)
    tt, uu = np.meshgrid(t, u)
    A = math.radians(az_slit)
    ua = np.array([math.sin(A), math.cos(A), 0.0])
    na = np.array([math.cos(A), -math.sin(A), 0.0])
    ct = np.cos(np.radians(tt))
    st = np.sin(np.radians(tt))
    # a point on the sphere at perpendicular offset u, arc t
    rr = np.sqrt(np.maximum(1 - uu ** 2, 0))
    pts = (uu[..., None] * na + (rr * ct)[..., None] * ua + (rr * st)[..., None] * np.array([0, 0, 1.0]))
    pts = pts.reshape(-1, 3)
    v = pts - c
    dist = np.linalg.norm(v, axis=1)
    v = v / dist[:, None]
    x, y, inlens = cam.project(v)
    h, w = p.height, p.width
    ok = inlens & (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    if p.occlusion in ("lights_off",) and p.scene == "night":
        return 0.0, 0.0
    if p.tube:
        d = _altaz_vec(p.tube_alt_deg, p.tube_az_deg)
        s = _ray_cylinder(c.astype(np.float64), v, np.array(p.tube_pivot), d, p.tube_radius,
                          -p.tube_back, p.tube_front)
        ok &= ~(np.isfinite(s) & (s < dist))
    ix = np.clip(np.round(x).astype(int), 0, w - 1)
    iy = np.clip(np.round(y).astype(int), 0, h - 1)
    ok &= ~cover[iy, ix]
    glare_px = glare[iy, ix] * exposure
    # Lit enough: the slit's edges (lit rails and dome against the sky or the shutter) must stand
    # out of the noise. An edge is seen along its length (tens of pixels on any sensor the
    # renderer draws), so a per-pixel signal-to-noise ratio of 1 already makes it a >= 4-sigma
    # line; the first renderer asked 4 sigma + 0.02 of every pixel, which labelled frames with a
    # plainly visible slit "hidden" (kept as the strict figure).
    normals = -pts
    light = _irradiance(p, pts.astype(np.float32), normals.astype(np.float32), c, frac)
    signal = light * min(p.dome_albedo, max(p.rail_albedo, p.shutter_albedo)) * exposure
    noise = np.sqrt(p.read_noise ** 2 + p.shot_noise ** 2 * np.clip(signal, 0.0, 1.0))
    ok &= glare_px < 0.5
    strict = ok & (signal > 4 * p.read_noise + 0.02)
    ok &= signal > noise + 0.005
    return float(ok.mean()), float(strict.mean())


def slit_line_visibility(p: RenderParams, az_slit: float, t_deg: np.ndarray,
                         half_width_frac: float = 0.8) -> np.ndarray:
    """Share of the slit's interior seen at each arc ``t_deg`` along it (0..1 per value).

    Five samples across the slit (within ``half_width_frac`` of its half-width) per arc value
    count when they are inside the lens, on the sensor and not behind the telescope tube or its
    finder. Lighting is not considered (see :func:`_visibility` for that). Used to label which
    rows of the unwrapped strip show the slit (training the opening reader).
    """
    ts = np.asarray(t_deg, dtype=np.float64)
    cam = _Camera(p)
    c = np.array(p.camera_offset, np.float64)
    u = np.linspace(-1.0, 1.0, 5) * p.slit_width_frac * half_width_frac
    tt, uu = np.meshgrid(ts, u)
    A = math.radians(az_slit)
    ua = np.array([math.sin(A), math.cos(A), 0.0])
    na = np.array([math.cos(A), -math.sin(A), 0.0])
    rr = np.sqrt(np.maximum(1 - uu ** 2, 0))
    pts = (uu[..., None] * na + (rr * np.cos(np.radians(tt)))[..., None] * ua
           + (rr * np.sin(np.radians(tt)))[..., None] * np.array([0, 0, 1.0]))
    pts = pts.reshape(-1, 3)
    v = pts - c
    dist = np.linalg.norm(v, axis=1)
    v = v / dist[:, None]
    x, y, inlens = cam.project(v)
    ok = inlens & (x >= 0) & (x <= p.width - 1) & (y >= 0) & (y <= p.height - 1)
    if p.tube:
        d = _altaz_vec(p.tube_alt_deg, p.tube_az_deg)
        p0 = np.array(p.tube_pivot, np.float64)
        s = _ray_cylinder(c, v, p0, d, p.tube_radius, -p.tube_back, p.tube_front)
        ok &= ~(np.isfinite(s) & (s < dist))
        if p.finder:
            side = np.cross(d, [0.0, 0.0, 1.0])
            if np.linalg.norm(side) < 1e-3:
                side = np.array([1.0, 0.0, 0.0])
            side /= np.linalg.norm(side)
            pf = p0 + side * (p.tube_radius + 0.035)
            s2 = _ray_cylinder(c, v, pf, d, 0.025, 0.0, p.tube_front * 0.6)
            ok &= ~(np.isfinite(s2) & (s2 < dist))
    return ok.reshape(tt.shape).mean(axis=0)


def state_region_visibility(p: RenderParams, az_slit: float, open_fraction: float) -> float:
    """Share of the part of the slit that decides its state in view (see :class:`RenderTruth`)."""
    L = p.slit_length_deg
    state = state_for_fraction(open_fraction)
    if state == "closed":
        lo, hi = 0.5, 5.0
    elif state == "open":
        lo, hi = L - 5.0, L - 0.5
    else:
        a = open_fraction * L
        lo, hi = a - 4.0, a + 4.0
    return float(np.mean(slit_line_visibility(p, az_slit, np.linspace(lo, hi, 9))))


def random_frame_params(seed: int, **kwargs) -> tuple[float, float, RenderParams]:
    """The slit azimuth, opening and parameters :func:`render_random` draws for ``seed``."""
    rng = np.random.default_rng(seed)
    az, frac = random_slit(rng)
    return az, frac, random_params(rng, slit_azimuth_deg=az, **kwargs)


# --------------------------------------------------------------------------- randomisation


def random_slit(rng: np.random.Generator) -> tuple[float, float]:
    """A random slit azimuth (uniform) and opening: 1/3 closed, 1/3 open, 1/3 partial (0.05..0.95)."""
    az = float(rng.uniform(0.0, 360.0))
    k = rng.random()
    if k < 1 / 3:
        frac = 0.0
    elif k < 2 / 3:
        frac = 1.0
    else:
        frac = float(rng.uniform(0.05, 0.95))
    return az, frac


def random_params(rng: np.random.Generator, *, scene: str | None = None,
                  occlusion: str | None = None, resolution: tuple[int, int] | None = None,
                  slit_azimuth_deg: float | None = None) -> RenderParams:
    """Draw render parameters from wide distributions (camera, dome, scene, sensor, occlusion).

    Args:
        rng: the random generator (seeded by the caller).
        scene: force ``night``, ``twilight`` or ``day``; random (60/20/20 %) when None.
        occlusion: force one of :data:`OCCLUSIONS`; random (80 % none) when None.
        resolution: force a sensor size (width, height); random from :data:`RESOLUTIONS` when None.
        slit_azimuth_deg: where the slit will be, so the telescope can point through it as it
            does while observing; random when None.
    """
    if scene is None:
        scene = str(rng.choice(SCENES, p=[0.6, 0.2, 0.2]))
    if occlusion is None:
        occlusion = str(rng.choice(OCCLUSIONS, p=[0.8, 0.06, 0.05, 0.045, 0.045]))
    if occlusion == "lights_off":
        scene = "night"
    if resolution is None:
        resolution = RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
    w, h = resolution
    projection = str(rng.choice(PROJECTIONS, p=[0.4, 0.3, 0.15, 0.15]))
    fov = float(rng.uniform(180.0, 200.0)) if projection != "orthographic" else 180.0
    # image circle: from well inside the sensor to clipped by it (top and bottom cut)
    hr = float(rng.uniform(0.6, 1.2)) * min(w, h) / 2.0
    if projection == "orthographic":
        hr = float(rng.uniform(0.7, 1.1)) * min(w, h) / 2.0
    ocx = w / 2 + float(rng.normal(0, 0.03)) * w
    ocy = h / 2 + float(rng.normal(0, 0.03)) * h
    slit_az = float(rng.uniform(0, 360)) if slit_azimuth_deg is None else float(slit_azimuth_deg)

    cam_off = (float(rng.normal(0, 0.03)), float(rng.normal(0, 0.03)), float(rng.uniform(-0.25, 0.05)))
    # telescope: observing through the slit, parked, or anywhere
    mode = rng.random()
    if occlusion == "tube_across":
        tube_az = slit_az + float(rng.normal(0, 4))
        tube_alt = float(rng.uniform(25, 70))
    elif mode < 0.55:
        tube_az = slit_az + float(rng.normal(0, 3))
        tube_alt = float(rng.uniform(12, 88))
    elif mode < 0.8:
        tube_az = float(rng.uniform(0, 360))
        tube_alt = float(rng.uniform(0, 90))
    else:
        tube_az = float(rng.uniform(0, 360))
        tube_alt = float(rng.choice([0.0, 90.0])) + float(rng.normal(0, 3))
    tube_radius = float(rng.uniform(0.07, 0.14))
    pivot = (float(rng.normal(0, 0.03)), float(rng.normal(0, 0.03)), float(rng.uniform(0.0, 0.12)))
    if occlusion == "tube_across":
        # the camera right under the tube: the tube fills much of the view along the slit
        tube_radius = float(rng.uniform(0.13, 0.18))
        d = _altaz_vec(tube_alt, tube_az)
        pivot_v = np.array(cam_off) + d * float(rng.uniform(-0.05, 0.05))
        side = np.cross(d, [0, 0, 1.0])
        side = side / (np.linalg.norm(side) + 1e-9)
        pivot_v = pivot_v + np.cross(side, d) * (tube_radius + float(rng.uniform(0.01, 0.03)))
        pivot = tuple(float(x) for x in pivot_v)
    # keep the camera outside the tube, at a clearance typical of a pier-mounted camera
    d = _altaz_vec(tube_alt, tube_az)
    clearance = 0.02 if occlusion == "tube_across" else float(rng.uniform(0.08, 0.3))
    rel = np.array(cam_off) - np.array(pivot)
    perp = rel - (rel @ d) * d
    dist_axis = float(np.linalg.norm(perp))
    if dist_axis < tube_radius + clearance:
        away = perp / dist_axis if dist_axis > 1e-6 else np.cross(d, [1.0, 0, 0])
        away = away / np.linalg.norm(away)
        shift = (tube_radius + clearance - dist_axis) * away
        pivot = tuple(float(x) for x in np.array(pivot) - shift)

    day = scene == "day"
    twi = scene == "twilight"
    if day:
        sky_level = float(rng.uniform(1.0, 6.0))
        daylight = float(rng.uniform(0.15, 0.8))
        cloud_level = sky_level * float(rng.uniform(0.8, 1.5))
    elif twi:
        sky_level = float(rng.uniform(0.1, 1.5))
        daylight = float(rng.uniform(0.0, 0.2))
        cloud_level = sky_level * float(rng.uniform(0.3, 1.5))
    else:
        sky_level = float(rng.uniform(0.0, 0.08))
        daylight = 0.0
        cloud_level = float(rng.uniform(0.0, 0.3))
    illuminator = (not day and rng.random() < 0.97) or (day and rng.random() < 0.3)
    ambient = float(rng.uniform(0.0, 0.05)) if not day else float(rng.uniform(0.05, 0.2))
    if occlusion == "lights_off":
        # nothing lights the dome; the sky is as dark as a moonless night gets
        illuminator = False
        ambient = float(rng.uniform(0.0, 0.002))
        sky_level = float(rng.uniform(0.0, 0.0005))
        cloud_level = float(rng.uniform(0.0, 0.0005))
    moon = scene == "night" and rng.random() < 0.3

    gray = rng.random() < 0.4
    if gray:
        tint = (1.0, 1.0, 1.0)
    else:
        # IR-sensitive colour cameras: pink/purple casts of varying strength
        base = np.array([rng.uniform(0.75, 1.0), rng.uniform(0.55, 0.95), rng.uniform(0.8, 1.0)])
        tint = tuple(float(x) for x in base / base.max())

    rib_albedo = float(rng.uniform(0.1, 1.0))
    dome_albedo = float(rng.uniform(0.35, 0.9))
    return RenderParams(
        width=w, height=h, projection=projection, horizon_radius_px=hr, fov_deg=fov,
        optical_cx=ocx, optical_cy=ocy, north_angle_deg=float(rng.uniform(0, 360)),
        azimuth_sense=int(rng.choice([-1, 1])), tilt_deg=float(abs(rng.normal(0, 1.0))),
        tilt_dir_deg=float(rng.uniform(0, 360)), camera_offset=cam_off,
        slit_width_frac=float(rng.uniform(0.08, 0.13)),
        slit_overshoot_deg=float(rng.uniform(8.0, 12.0)),
        rail_width=float(rng.uniform(0.008, 0.03)),
        rail_albedo=float(rng.choice([rng.uniform(0.05, 0.3), rng.uniform(0.7, 1.3)])),
        n_ribs=int(rng.choice([0, 8, 10, 12, 16, 18, 20, 24, 32])),
        rib_phase_deg=float(rng.uniform(0, 360)),
        rib_width=float(rng.uniform(0.006, 0.03)),
        rib_albedo=rib_albedo,
        ring_elevations_deg=tuple(float(x) for x in np.sort(rng.uniform(8, 78, int(rng.integers(0, 5))))),
        seam_albedo=float(rng.uniform(0.1, 1.0)),
        seam_width=float(rng.uniform(0.002, 0.008)),
        top_ring_deg=float(rng.uniform(70, 86)),
        dome_albedo=dome_albedo,
        stain_strength=float(rng.uniform(0.0, 0.35)),
        base_ring_albedo=float(rng.uniform(0.05, 1.0)),
        base_ring_height_deg=float(rng.uniform(1.0, 6.0)),
        wall_albedo=float(rng.uniform(0.1, 0.8)),
        wall_clutter=int(rng.integers(0, 12)),
        shutter_albedo=float(np.clip(dome_albedo * rng.uniform(0.6, 1.4), 0.1, 1.2)),
        shutter_rib_spacing_deg=float(rng.uniform(6, 20)),
        shutter_rib_albedo=float(rng.uniform(0.1, 1.0)),
        shutter_lip_albedo=float(rng.uniform(0.02, 1.2)),
        tube=bool(rng.random() < 0.9 or occlusion == "tube_across"),
        tube_alt_deg=tube_alt, tube_az_deg=tube_az, tube_radius=tube_radius,
        tube_front=float(rng.uniform(0.3, 0.55)), tube_back=float(rng.uniform(0.08, 0.2)),
        tube_pivot=pivot, tube_albedo=float(rng.choice([rng.uniform(0.02, 0.15), rng.uniform(0.5, 0.9)])),
        finder=bool(rng.random() < 0.6),
        scene=scene, sky_level=sky_level, sky_gradient=float(rng.uniform(0, 1.5)),
        sun_az_deg=float(rng.uniform(0, 360)),
        cloud_cover=float(rng.choice([0.0, rng.uniform(0.1, 1.0)])),
        cloud_level=cloud_level, cloud_scale=float(rng.uniform(0.5, 2.0)),
        n_stars=int(rng.integers(0, 800)) if not day else 0,
        star_level=float(rng.uniform(0.2, 3.0)) * (0.02 if occlusion == "lights_off" else 1.0),
        moon_alt_deg=float(rng.uniform(5, 80)) if moon else -10.0,
        moon_az_deg=float(rng.uniform(0, 360)),
        moon_level=float(rng.uniform(0.5, 3.0)) if moon and occlusion != "lights_off" else 0.0,
        illuminator=illuminator, illum_strength=float(rng.uniform(0.5, 2.0)),
        illum_alt_deg=float(rng.uniform(50, 90)), illum_az_deg=float(rng.uniform(0, 360)),
        illum_width_deg=float(rng.uniform(25, 90)),
        ambient=ambient,
        daylight=daylight, vignetting=float(rng.uniform(0.0, 0.6)),
        exposure_target=float(rng.uniform(0.2, 0.55)),
        exposure_jitter=float(np.exp(rng.normal(0, 0.25))),
        gamma=float(rng.uniform(0.35, 0.8)),
        blur_sigma=float(rng.choice([0.0, rng.uniform(0.3, 1.8)])),
        read_noise=float(rng.uniform(0.003, 0.04)),
        shot_noise=float(rng.uniform(0.0, 0.04)),
        hot_pixels=int(rng.integers(0, 200)),
        jpeg_quality=int(rng.choice([0, int(rng.integers(30, 96))])),
        tint_bgr=tint,
        occlusion=occlusion,
        glare_xy=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))),
        glare_radius_frac=float(rng.uniform(0.35, 0.8)),
        cover_fraction=float(rng.uniform(0.75, 1.0)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def render_random(seed: int, **kwargs) -> RenderResult:
    """Render one frame with everything drawn from :func:`random_params` and :func:`random_slit`.

    ``kwargs`` are passed to :func:`random_params` (``scene``, ``occlusion``, ``resolution``).
    """
    az, frac, params = random_frame_params(seed, **kwargs)
    return render(az, frac, params, seed=seed)


def render_world_view(azimuth_deg: float, open_fraction: float, params: RenderParams, seed: int,
                      time: datetime | None = None) -> np.ndarray:
    """The simulated IR camera's frame: what a camera with ``params`` sees of the simulated dome.

    A thin wrapper of :func:`render` for the simulated world (``drivers/sim``). Returns a uint8
    BGR image. ``time`` (UTC) turns the stars; ``seed`` should change per frame for fresh noise.
    """
    return render(azimuth_deg, open_fraction, params, seed=seed, time=time).image


def site_params(width: int = 640, height: int = 480, **overrides) -> RenderParams:
    """Plain, fixed parameters for a simulated site's camera (night, no occlusion).

    Any :class:`RenderParams` field can be overridden by keyword.
    """
    base = RenderParams(width=width, height=height, horizon_radius_px=0.46 * min(width, height),
                        optical_cx=width / 2, optical_cy=height / 2, north_angle_deg=0.0,
                        azimuth_sense=-1, camera_offset=(0.0, 0.0, -0.1),
                        tube_pivot=(0.0, 0.0, 0.1), tube_alt_deg=60.0)
    return replace(base, **overrides)
