"""A second site for the slit encoder: another dome and camera, drawn by code that shares nothing
with tenmon's own renderer (``tenmon.vision.slit.render``) and was never used to train or tune it.

What differs from the project's renderer, on purpose:

- the lens: a polynomial fisheye ``r = f (theta + k3 theta^3 + k5 theta^5)`` (none of the four
  laws the encoder knows), its optical axis tilted 4 degrees and rolled, the principal point off
  the image centre, the image mirrored (azimuth counter-clockwise as displayed);
- the camera 0.2 dome radii off the dome's centre (east, south) and 0.08 below it;
- the dome: a sphere on a low cylindrical wall, 24 dark ribs and two rings, warm plaster with
  stains, a lamp on one side; the slit 0.11 radii wide between bright rails, a shutter of
  horizontal slats with a dark lip, running 105 degrees from the horizon;
- the sky: a graded glow, stars, thin clouds; the telescope: a thick tube on a pier, usually
  pointing out through the slit;
- the camera: gain and black level vary, read and shot noise, a soft focus, some frames in the
  dark (lamp off) or glared.

The calibration a site would have (:func:`site_calibration`) is the best fit of the encoder's
lens laws to this camera (as ``tenmon encoder calibrate`` would find with perfect frames): close,
not exact. The labels a daemon would have (:func:`daemon_label`) are noisy and partial.

Pure numpy and OpenCV (resizing and blurring only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

W, H = 480, 360
SLIT_HALF = 0.055       # dome radii
RAIL = 0.014            # rail width, dome radii
SLIT_LEN = 105.0        # degrees from the horizon
WALL = 0.35             # cylinder wall height below the springline, dome radii


@dataclass(frozen=True)
class Camera:
    cx: float = W / 2 + 9.0
    cy: float = H / 2 - 6.0
    f: float = 112.0             # pixels per radian near the axis
    k3: float = -0.045
    k5: float = 0.004
    tilt_deg: float = 4.0        # optical axis from the zenith
    tilt_dir_deg: float = 130.0  # azimuth the axis leans towards
    roll_deg: float = 57.0       # image angle of azimuth 0 (before the tilt)
    mirror: bool = True          # azimuth grows counter-clockwise as displayed
    pos: tuple[float, float, float] = (0.14, -0.15, -0.08)  # east, north, up (dome radii)


CAM = Camera()


def _rot_tilt(c: Camera) -> np.ndarray:
    """Rotation from the camera frame (x right, y up as displayed, z axis) to east/north/up."""
    t, d = math.radians(c.tilt_deg), math.radians(c.tilt_dir_deg)
    axis = np.array([math.cos(d), -math.sin(d), 0.0])  # horizontal, perpendicular to the lean
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


def _lens_r(theta: np.ndarray, c: Camera) -> np.ndarray:
    return c.f * (theta + c.k3 * theta ** 3 + c.k5 * theta ** 5)


_THETA = np.linspace(0, math.radians(125), 4000)


def _lens_theta(r: np.ndarray, c: Camera) -> np.ndarray:
    return np.interp(r, _lens_r(_THETA, c), _THETA, right=np.nan)


def pixel_rays(c: Camera = CAM, w: int = W, h: int = H) -> np.ndarray:
    """Unit ray (east, north, up) of every pixel, NaN outside the lens's field."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = xs - c.cx, ys - c.cy
    r = np.hypot(dx, dy)
    theta = _lens_theta(r, c)
    ang = np.arctan2(dx, -dy)  # image angle clockwise from up
    az = (ang - math.radians(c.roll_deg)) * (-1 if c.mirror else 1)
    v = np.stack([np.sin(theta) * np.sin(az), np.sin(theta) * np.cos(az), np.cos(theta)], -1)
    return v @ _rot_tilt(c).T


def project(p: np.ndarray, c: Camera = CAM) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (x, y) of world points ``p`` (..., 3)."""
    v = p - np.array(c.pos)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    v = v @ _rot_tilt(c)  # inverse rotation
    theta = np.arccos(np.clip(v[..., 2], -1, 1))
    az = np.arctan2(v[..., 0], v[..., 1])
    ang = az * (-1 if c.mirror else 1) + math.radians(c.roll_deg)
    r = _lens_r(theta, c)
    return c.cx + r * np.sin(ang), c.cy - r * np.cos(ang)


def _hit_dome(o: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where rays from ``o`` along ``v`` meet the dome (sphere above z=0, cylinder below)."""
    b = v @ o
    cc = o @ o - 1.0
    s = -b + np.sqrt(np.maximum(b * b - cc, 0))
    p = o + s[..., None] * v
    below = p[..., 2] < 0
    # the cylinder x^2 + y^2 = 1
    a2 = v[..., 0] ** 2 + v[..., 1] ** 2
    b2 = o[0] * v[..., 0] + o[1] * v[..., 1]
    c2 = o[0] ** 2 + o[1] ** 2 - 1.0
    s2 = (-b2 + np.sqrt(np.maximum(b2 * b2 - a2 * c2, 0))) / np.maximum(a2, 1e-9)
    p2 = o + s2[..., None] * v
    return np.where(below[..., None], p2, p)


def _tube_hit(o: np.ndarray, v: np.ndarray, tube) -> np.ndarray:
    """Rays that hit the telescope (a capped cylinder of radius tube.radius)."""
    if tube is None:
        return np.zeros(v.shape[:-1], bool)
    p0, d, length, rad = tube
    w0 = o - p0
    a = np.einsum("...i,...i", v, v)
    b = v @ d
    c = d @ d
    dd = v @ w0
    e = w0 @ d
    den = np.maximum(a * c - b * b, 1e-9)
    sc = (b * e - c * dd) / den
    tc = np.clip((a * e - b * dd) / den, 0, length)
    ok = sc > 0.02
    diff = o + sc[..., None] * v - (p0 + tc[..., None] * d)
    return ok & (np.linalg.norm(diff, axis=-1) < rad)


@dataclass
class Scene:
    azimuth_deg: float
    open_fraction: float
    tube_alt: float
    tube_az: float
    lamp: float           # 0: lights off
    gain: float
    clouds: float
    glare: float
    seed: int


def random_scene(seed: int, *, moving: bool = False) -> Scene:
    rng = np.random.default_rng(seed)
    az = float(rng.uniform(0, 360))
    u = rng.random()
    frac = 0.0 if u < 0.33 else 1.0 if u < 0.72 else float(rng.uniform(0.08, 0.92))
    if moving:
        frac = float(rng.uniform(0.03, 0.97))
    if rng.random() < 0.65:  # observing through the slit
        talt, taz = float(rng.uniform(20, 85)), az + float(rng.normal(0, 4))
    elif rng.random() < 0.5:
        talt, taz = 90.0, 0.0  # parked at the zenith
    else:
        talt, taz = float(rng.uniform(10, 90)), float(rng.uniform(0, 360))
    lamp = 0.0 if rng.random() < 0.04 else float(rng.uniform(0.5, 1.3))
    return Scene(az, frac, talt, taz, lamp, float(rng.uniform(0.7, 1.4)),
                 float(rng.uniform(0, 1)) if rng.random() < 0.4 else 0.0,
                 float(rng.uniform(0.3, 1.0)) if rng.random() < 0.03 else 0.0, seed)


_RAYS = None


def _rays():
    global _RAYS
    if _RAYS is None:
        _RAYS = pixel_rays()
    return _RAYS


def _noise_field(rng, h, w, scale):
    small = rng.normal(0, 1, (max(2, h // scale), max(2, w // scale)))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def tube_of(scene: Scene):
    a, z = math.radians(scene.tube_az), math.radians(scene.tube_alt)
    d = np.array([math.sin(a) * math.cos(z), math.cos(a) * math.cos(z), math.sin(z)])
    pivot = np.array([0.0, 0.0, 0.02])
    return (pivot - 0.12 * d, d, 0.62, 0.075)


def slit_coords(p: np.ndarray, az_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Across-slit offset u (dome radii) and along-slit arc t (degrees from the horizon)."""
    a = math.radians(az_deg)
    ua = np.array([math.sin(a), math.cos(a), 0.0])
    na = np.array([math.cos(a), -math.sin(a), 0.0])
    u = p @ na
    t = np.degrees(np.arctan2(p[..., 2], p @ ua))
    return u, t


def render(scene: Scene) -> np.ndarray:
    """The BGR frame (uint8) of a scene."""
    rng = np.random.default_rng(scene.seed + 12345)
    v = _rays()
    o = np.array(CAM.pos)
    inside = np.isfinite(v[..., 0])
    vv = np.where(inside[..., None], v, np.array([0, 0, 1.0]))
    p = _hit_dome(o, vv)
    u, t = slit_coords(p, scene.azimuth_deg)
    az_p = np.degrees(np.arctan2(p[..., 0], p[..., 1])) % 360
    el_p = np.degrees(np.arcsin(np.clip(p[..., 2], -1, 1)))
    # --- dome plaster, ribs, rings, stains, wall
    stain = _noise_field(np.random.default_rng(777), H, W, 24) * 0.06
    base = 0.62 + stain
    rib = np.abs(((az_p + 7.5) % 15.0) - 7.5) < 0.9
    ring = (np.abs(el_p - 32) < 1.1) | (np.abs(el_p - 64) < 1.0)
    col = np.stack([base * 0.85, base * 0.95, base * 1.05], -1)  # B, G, R: warm
    col[rib] *= 0.45
    col[ring] *= 0.55
    wall = p[..., 2] < 0
    col[wall] = np.array([0.30, 0.33, 0.36]) * (1 + stain[wall, None])
    floor = p[..., 2] < -WALL
    col[floor] = 0.12
    # lamp: a light low on the east-south side
    lamp_dir = np.array([0.7, -0.55, 0.2])
    lamp_dir /= np.linalg.norm(lamp_dir)
    light = 0.35 + 0.65 * np.clip(-(p @ lamp_dir) * 0.5 + 0.6, 0, 1.2)
    shade = col * light[..., None] * scene.lamp
    # --- slit: rails, shutter slats, sky
    in_len = (t >= -1.0) & (t <= SLIT_LEN)
    rail = in_len & (np.abs(u) >= SLIT_HALF) & (np.abs(u) < SLIT_HALF + RAIL)
    shade[rail] = np.array([0.85, 0.88, 0.9]) * scene.lamp * light[rail, None]
    slit = in_len & (np.abs(u) < SLIT_HALF)
    opened = slit & (t < scene.open_fraction * SLIT_LEN)
    shutter = slit & ~opened
    slat = (np.floor(t / 4.0) % 2 == 0)
    sh = np.where(slat, 0.30, 0.24)
    lip = np.abs(t - scene.open_fraction * SLIT_LEN) < 1.6
    sh = np.where(lip, 0.1, sh)
    shade[shutter] = (sh[shutter, None] * np.array([1.0, 1.0, 1.05])) * scene.lamp * light[shutter, None]
    # sky through the opening (seen along the ray)
    sky_el = np.degrees(np.arcsin(np.clip(vv[..., 2], -1, 1)))
    glow = 0.05 + 0.07 * np.exp(-np.clip(sky_el, 0, 90) / 25.0)
    if scene.clouds:
        glow = glow + scene.clouds * 0.08 * np.clip(_noise_field(rng, H, W, 30) + 0.3, 0, None)
    stars = (rng.random((H, W)) < 0.004) * rng.uniform(0.1, 0.5, (H, W))
    sky = glow + stars
    shade[opened] = sky[opened, None] * np.array([1.1, 1.0, 0.9])
    # --- telescope
    tube = _tube_hit(o, vv, tube_of(scene))
    tube_shade = (0.16 + 0.1 * np.clip(vv[..., 0], -1, 1)) * max(scene.lamp, 0.05)
    shade[tube] = tube_shade[tube, None] * np.array([0.9, 0.95, 1.0])
    shade[~inside] = 0.0
    # --- camera
    img = shade * scene.gain * 255.0
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.8)
    vign = np.clip(1.0 - 0.35 * (np.hypot(*np.mgrid[0:H, 0:W][::-1].astype(np.float32)
                                          - np.array([CAM.cx, CAM.cy], np.float32)[:, None, None]) / 260.0) ** 2,
                   0.2, 1)
    img *= vign[..., None]
    if scene.glare:
        gy, gx = rng.uniform(0, H), rng.uniform(0, W)
        yy, xx = np.mgrid[0:H, 0:W]
        img += (scene.glare * 255 * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * 90.0 ** 2)))[..., None]
    img += rng.normal(0, 1, img.shape).astype(np.float32) * np.sqrt(np.maximum(img, 0) * 0.6 + 9.0)
    img += 6.0  # black level
    img[~inside] = rng.normal(4, 1.5, (int((~inside).sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def slit_visibility(scene: Scene) -> float:
    """Share of the slit's centre line (horizon to its end) seen by the camera (on sensor, lit,
    not behind the telescope)."""
    if scene.lamp == 0.0 or scene.glare > 0.5:
        return 0.0
    a = math.radians(scene.azimuth_deg)
    ts = np.radians(np.linspace(0.5, 100.0, 120))
    pts = np.stack([np.cos(ts) * math.sin(a), np.cos(ts) * math.cos(a), np.sin(ts)], -1)
    x, y = project(pts)
    on = (x >= 0) & (x < W) & (y >= 0) & (y < H)
    o = np.array(CAM.pos)
    v = pts - o
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    hidden = _tube_hit(o, v, tube_of(scene))
    return float(np.mean(on & ~hidden))


def true_state(frac: float) -> str:
    return "closed" if frac <= 0.02 else "open" if frac >= 0.98 else "partial"


def site_calibration() -> dict:
    """The calibration a site would have: the encoder's best-fitting lens law (least squares on
    dome points from the horizon to the zenith), the camera offset as measured (to 0.02 radii)."""
    from scipy.optimize import least_squares

    from tenmon.vision.slit.polar import directions_to_pixels
    from tenmon.vision.slit.reading import Calibration

    azs, els = np.meshgrid(np.arange(0, 360, 5.0), np.arange(0, 90, 5.0))
    a, e = np.radians(azs.ravel()), np.radians(els.ravel())
    pts = np.stack([np.sin(a) * np.cos(e), np.cos(a) * np.cos(e), np.sin(e)], -1)
    x, y = project(pts)
    off = (round(CAM.pos[0] + 0.02, 2), round(CAM.pos[1] - 0.015, 2), round(CAM.pos[2] + 0.02, 2))
    best = None
    for proj in ("equidistant", "equisolid", "stereographic", "orthographic"):
        def res(q):
            cal = Calibration(q[0], q[1], q[2], q[3], -1, proj, *off)
            px, py = directions_to_pixels(cal, pts[:, 0] - off[0], pts[:, 1] - off[1], pts[:, 2] - off[2])
            return np.concatenate([px - x, py - y])
        r = least_squares(res, [CAM.cx, CAM.cy, 180.0, CAM.roll_deg])
        rms = float(np.sqrt(np.mean(r.fun ** 2)))
        if best is None or rms < best[0]:
            best = (rms, proj, r.x)
    rms, proj, q = best
    cal = Calibration(float(q[0]), float(q[1]), float(q[2]), float(q[3]) % 360, -1, proj, *off)
    d = cal.to_dict()
    d["_fit_rms_px"] = round(rms, 3)
    return d


def daemon_label(scene: Scene, rng: np.random.Generator, *, moving: bool) -> dict:
    """The label a daemon would have for this frame: noisy, partial (nulls)."""
    lab: dict = {"state": None, "open_fraction": None, "azimuth_deg": None}
    if moving:
        lab["state"] = "moving"
        if rng.random() < 0.7:  # the motion began at a known end: timed fraction
            lab["open_fraction"] = float(np.clip(scene.open_fraction + rng.normal(0, 0.03), 0, 1))
    else:
        s = true_state(scene.open_fraction)
        u = rng.random()
        if s in ("open", "closed") and u < 0.85:
            lab["state"], lab["open_fraction"] = s, 1.0 if s == "open" else 0.0
        elif s == "partial" and u < 0.7:  # a timed partial move from a known end
            f = float(np.clip(scene.open_fraction + rng.normal(0, 0.025), 0.03, 0.97))
            lab["state"], lab["open_fraction"] = "partial", f
    if rng.random() < 0.75:  # after homing or a timed rotation, with its uncertainty
        sd = float(rng.uniform(0.1, 0.8))
        lab["azimuth_deg"] = float((scene.azimuth_deg + rng.normal(0, sd)) % 360)
    return lab
