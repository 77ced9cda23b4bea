"""The operator page's pictures: the latest IR frame and the latest CCD frame, as small JPEGs,
with the geometry of what is drawn over them.

IR: the IR-camera encoder's newest frame (``encoder.latest_frame``), or, in simulation with the
simulated encoder (which has no camera), the simulated world rendered as the simulated IR camera
would see it (``drivers.sim.ir_camera``). Beside it, the encoder's reading (slit azimuth, open
fraction, state, confidence) and, in image pixels, the overlay the page draws: the zenith, the
slit's band at the read azimuth (its outline and the part read open) and the north point. The
geometry comes from the camera's calibration (``vision.polar``), so the band lands where the
encoder looked.

CCD: the frame service's newest processed frame (a frame listener): the pipeline's stretched
preview with its detected sources (``vision.products.preview_png``), scaled down, and the solve
(solver, RA/Dec, rms, stars matched) with the pointing offset (solved minus where the mount said
it pointed, arcseconds).

Nothing here runs on the event loop but bookkeeping: reading a camera frame reference, the
world's state and the encoder's reading. Rendering, drawing and JPEG encoding run on one worker
thread, at most one job at a time, at most once per ``ir_period_s`` (wall) and only while a page
is watching (the push asks, :meth:`PageMedia.refresh`); a CCD preview is made once per frame.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tenmon.core.timefmt import utc_iso

log = logging.getLogger(__name__)

#: Longest side of the JPEGs served (pixels).
MAX_SIDE_PX = 800
JPEG_QUALITY = 80
#: Slit geometry drawn on the IR frame: half-width (dome radii) and length (degrees of arc from
#: the horizon, over the zenith), as the simulated dome has them (``RenderParams``).
SLIT_HALF_WIDTH = 0.05
SLIT_LENGTH_DEG = 100.0


def _jpeg(image: np.ndarray, max_side: int = MAX_SIDE_PX) -> tuple[bytes, float]:
    """JPEG bytes of ``image`` (grey or BGR uint8), scaled so its longest side is at most
    ``max_side``; and the scale applied."""
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8:
        finite = img[np.isfinite(img)] if img.size else img
        lo, hi = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
        img = np.clip((img - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes(), scale


def _points(x: np.ndarray, y: np.ndarray, scale: float) -> list[list[float]]:
    return [[round(float(a) * scale, 1), round(float(b) * scale, 1)]
            for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b)]


def ir_overlay(calibration, azimuth_deg: float | None, open_fraction: float | None,
               scale: float = 1.0) -> dict[str, Any]:
    """Pixels (after ``scale``) of what the page draws on an IR frame: ``zenith``, ``north``
    (azimuth 0 on the horizon), ``east``, and for a known azimuth the slit's ``band`` outline
    and its ``open`` part (polygons, ``[[x, y], ...]``)."""
    from tenmon.vision.slit.polar import directions_to_pixels

    c = calibration

    def px(e, n, u):
        return directions_to_pixels(c, np.asarray(e) - c.camera_offset_east,
                                    np.asarray(n) - c.camera_offset_north,
                                    np.asarray(u) - c.camera_offset_up)

    zx, zy = px([0.0], [0.0], [1.0])
    nx, ny = px([0.0], [1.0], [0.0])
    ex, ey = px([1.0], [0.0], [0.0])
    out: dict[str, Any] = {"zenith": _points(zx, zy, scale)[0],
                           "north": _points(nx, ny, scale)[0], "east": _points(ex, ey, scale)[0],
                           "band": [], "open": []}
    if azimuth_deg is None or not math.isfinite(azimuth_deg):
        return out

    def strip(t_end: float) -> list[list[float]]:
        t = np.radians(np.linspace(0.0, t_end, 24))
        a = math.radians(azimuth_deg)
        ua = np.array([math.sin(a), math.cos(a)])       # towards the slit's horizon end
        na = np.array([math.cos(a), -math.sin(a)])      # across the slit
        sides = []
        for u in (-SLIT_HALF_WIDTH, SLIT_HALF_WIDTH):
            r = math.sqrt(1.0 - u * u)
            e = u * na[0] + r * np.cos(t) * ua[0]
            n = u * na[1] + r * np.cos(t) * ua[1]
            x, y = px(e, n, r * np.sin(t))
            sides.append(_points(x, y, scale))
        return sides[0] + sides[1][::-1]

    out["band"] = strip(SLIT_LENGTH_DEG)
    frac = open_fraction if open_fraction is not None and math.isfinite(open_fraction) else 0.0
    if frac > 0.01:
        out["open"] = strip(SLIT_LENGTH_DEG * min(1.0, frac))
    return out


def pointing_offset(solve: dict[str, Any]) -> dict[str, float] | None:
    """Solved minus where the mount pointed: ``east_arcsec`` (dRA cos Dec), ``north_arcsec``,
    ``total_arcsec``; ``None`` without both positions."""
    keys = ("ra_deg", "dec_deg", "mount_ra_deg", "mount_dec_deg")
    vals = [solve.get(k) for k in keys]
    if not solve.get("solved") or any(not isinstance(v, (int, float)) or not math.isfinite(v)
                                      for v in vals):
        return None
    ra, dec, mra, mdec = (float(v) for v in vals)
    dra = (ra - mra + 180.0) % 360.0 - 180.0
    east = dra * math.cos(math.radians(dec)) * 3600.0
    north = (dec - mdec) * 3600.0
    return {"east_arcsec": round(east, 1), "north_arcsec": round(north, 1),
            "total_arcsec": round(math.hypot(east, north), 1)}


class PageMedia:
    """The latest IR and CCD pictures of ``obs`` for the page (see the module docstring)."""

    def __init__(self, obs, *, ir_period_s: float = 3.0):
        self.obs = obs
        self.ir_period_s = float(ir_period_s)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenmon-page-media")
        self._lock = threading.Lock()
        self._ir_job: Future | None = None
        self._ir_at = -1e9
        self.ir: dict[str, Any] | None = None
        self._ir_jpeg: bytes | None = None
        self.ccd: dict[str, Any] | None = None
        self._ccd_job: Future | None = None
        self._ccd_jpeg: bytes | None = None
        self._ccd_seq = 0
        self._sim_camera = None
        self.closed = False
        self.error: str | None = None

    # ------------------------------------------------------------------ IR

    def _ir_source(self):
        """``(kind, frame image or render job, calibration)`` on the loop thread, or None."""
        enc = self.obs.encoder
        frame = getattr(enc, "latest_frame", None)
        if frame is not None and getattr(enc, "calibration", None) is not None:
            return "camera", frame.image, frame.time, enc.calibration, getattr(frame, "source",
                                                                               "IR camera")
        world = getattr(self.obs, "world", None)
        if world is None:
            return None
        from tenmon.drivers.sim.ir_camera import SimulatedIrCamera

        if self._sim_camera is None:
            self._sim_camera = SimulatedIrCamera(world, self.obs.clock)
        cam = self._sim_camera
        st = world.state
        job = (float(st.dome_az_deg), float(st.slit_fraction), cam._frame_params(), cam.seed)
        return "render", job, self.obs.clock.now(), None, "simulated IR view (rendered world)"

    def refresh(self) -> None:
        """From the loop: start making a new IR picture when one is due (never waits)."""
        if self.closed:
            return
        now = time.monotonic()
        if self._ir_job is not None and not self._ir_job.done():
            return
        if now - self._ir_at < self.ir_period_s:
            return
        try:
            src = self._ir_source()
        except Exception as exc:  # noqa: BLE001 - the page must never break the loop
            log.exception("page: no IR frame")
            self.error = f"IR frame: {exc}"
            return
        if src is None:
            return
        r = self.obs.encoder.reading()
        reading = {"azimuth_deg": _num(r.azimuth_deg), "open_fraction": _num(r.open_fraction),
                   "state": r.state, "confidence": _num(r.confidence)}
        self._ir_at = now
        self._ir_job = self._pool.submit(self._make_ir, src, reading)

    def _make_ir(self, src, reading) -> None:
        kind, data, t, calibration, source = src
        try:
            if kind == "render":
                from tenmon.vision.slit.render import render_world_view

                az, frac, params, seed = data
                image = render_world_view(az, frac, params, seed=seed, time=t)
                if calibration is None:  # the renderer's truth, computed once per camera
                    calibration = self._sim_camera.calibration
            else:
                image = data
            h, w = image.shape[:2]
            jpeg, scale = _jpeg(image)
            overlay = ir_overlay(calibration, reading["azimuth_deg"], reading["open_fraction"],
                                 scale)
            with self._lock:
                seq = (self.ir or {}).get("seq", 0) + 1
                self._ir_jpeg = jpeg
                self.ir = {"seq": seq, "time_utc": utc_iso(t), "source": source,
                           "width": round(w * scale), "height": round(h * scale),
                           "reading": reading, "overlay": overlay}
            self.error = None
        except Exception as exc:  # noqa: BLE001 - shown on the page; the loop goes on
            log.exception("page: IR picture failed")
            self.error = f"IR picture: {exc}"

    def ir_jpeg(self) -> bytes | None:
        with self._lock:
            return self._ir_jpeg

    # ------------------------------------------------------------------ CCD

    def on_frame(self, record) -> None:
        """A frame listener (loop thread): remember the newest frame and start its preview."""
        if self.closed:
            return
        res = record.result or {}
        solve = {k: v for k, v in (record.solve or {}).items() if k not in ("wcs", "hint")}
        products = res.get("products") or {}
        self._ccd_seq += 1
        info = {"seq": self._ccd_seq, "path": record.path, "name": Path(record.path).name,
                "ok": bool(record.ok), "error": record.error,
                "target": (record.context or {}).get("target"),
                "time_utc": utc_iso(self.obs.clock.now()),
                "date_obs": (res.get("header") or {}).get("date_obs"),
                "exptime_s": (res.get("header") or {}).get("exptime_s"),
                "n_sources": res.get("n_sources"), "fwhm_px": _num(res.get("fwhm_px")),
                "solve": {k: solve.get(k) for k in ("solved", "solver", "reason", "ra_deg",
                                                    "dec_deg", "rms_arcsec", "n_matched",
                                                    "scale_arcsec", "rotation_deg",
                                                    "mount_ra_deg", "mount_dec_deg")},
                "offset": pointing_offset(solve), "ready": False}
        preview = products.get("preview")
        clean = products.get("clean")
        sources = products.get("sources")
        self.ccd = info
        self._ccd_job = self._pool.submit(self._make_ccd, info, preview, clean or record.path,
                                          sources)

    def _make_ccd(self, info, preview, frame_path, sources_path) -> None:
        try:
            if preview and Path(preview).is_file():
                import cv2

                image = cv2.imread(str(preview), cv2.IMREAD_COLOR)
                if image is None:
                    raise ValueError(f"cannot read {preview}")
            else:  # no preview product: make one from the frame and its sources
                import cv2
                from astropy.table import Table

                from tenmon.vision.frames.pipeline import read_frame
                from tenmon.vision.frames.products import preview_png

                data, _ = read_frame(frame_path)
                srcs = Table.read(sources_path, format="ascii.ecsv") \
                    if sources_path and Path(sources_path).is_file() else None
                png = preview_png(data, sources=srcs, max_px=MAX_SIDE_PX)
                image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
            jpeg, scale = _jpeg(image)
            h, w = image.shape[:2]
            with self._lock:
                if self.ccd is not info:
                    return  # a newer frame came meanwhile
                self._ccd_jpeg = jpeg
                info.update(width=round(w * scale), height=round(h * scale), ready=True)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            log.exception("page: CCD preview failed")
            info["error"] = info.get("error") or f"preview: {exc}"

    def ccd_jpeg(self) -> bytes | None:
        with self._lock:
            return self._ccd_jpeg if self.ccd and self.ccd.get("ready") else None

    # ------------------------------------------------------------------ all

    def meta(self) -> dict[str, Any]:
        """What the page needs to know of the pictures (cheap; for every push)."""
        with self._lock:
            return {"ir": self.ir, "ccd": dict(self.ccd) if self.ccd else None,
                    "error": self.error}

    def close(self) -> None:
        self.closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return round(f, 3) if math.isfinite(f) else None


__all__ = ["PageMedia", "ir_overlay", "pointing_offset", "MAX_SIDE_PX"]
