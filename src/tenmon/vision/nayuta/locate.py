"""All of it on one slit-viewer frame (and a 60 cm frame): what `tenmon nayuta locate` calls.

Part of :mod:`tenmon.vision.nayuta` (see its docstring for the conventions).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from tenmon.vision.nayuta._common import as_image, ms
from tenmon.vision.nayuta.register import (
    Registration,
    register_in_frame,
    sources_off_slit,
)
from tenmon.config.vision import NayutaSettings
from tenmon.vision.nayuta.sky import sky_by_registration, sky_by_solving, solve_with
from tenmon.vision.nayuta.slit import SlitGeometry, find_slit
from tenmon.vision.nayuta.target import (
    Photometry,
    TargetOnSlit,
    aperture_photometry_at,
    find_target,
    measure_fwhm,
)
from tenmon.vision.solve.base import SolveHint, SolveResult
from tenmon.core.astro import separation_deg


@dataclass(frozen=True)
class Frame60:
    """A 60 cm frame for :func:`locate_target`: the image, its WCS if solved, its pixel scale,
    the mount's position (hint) and the exposure."""

    image: np.ndarray
    scale_arcsec: float
    wcs: WCS | None = None
    hint: SolveHint | None = None
    exposure_s: float | None = None
    gain: float | None = None
    saturation_adu: float | None = None


@dataclass(frozen=True)
class NayutaLocation:
    """Where Nayuta's target is, and how bright, from a slit-viewer frame (and a 60 cm frame).

    ``located`` True when the target was found on the slit *and* placed on the sky. ``method``
    is the route of the reported position (``solve`` or ``register``; ``none``).
    ``ra_by_route`` holds every route's answer ``{route: (ra, dec)}``;
    ``route_disagreement_arcsec`` their separation when both ran. ``target_xy`` is the slit-viewer
    pixel; ``target_xy_60cm`` the 60 cm pixel (when a 60 cm frame was given).
    ``mag_slit_viewer`` is from the wings (a faint limit: the star is at least this bright),
    ``mag_slit_viewer_model`` slit-loss corrected; ``mag_60cm`` aperture photometry in the 60 cm
    frame; ``mag_difference`` = ``mag_60cm - mag_slit_viewer``. Instrumental magnitudes, per
    second when the exposures are known.
    """

    located: bool
    target_ra_deg: float | None
    target_dec_deg: float | None
    method: str
    slit: SlitGeometry
    target: TargetOnSlit
    target_xy: tuple[float, float] | None
    target_xy_60cm: tuple[float, float] | None = None
    mag_slit_viewer: float | None = None
    mag_slit_viewer_model: float | None = None
    mag_60cm: float | None = None
    mag_difference: float | None = None
    photometry_60cm: Photometry | None = None
    ra_by_route: dict[str, tuple[float, float]] = field(default_factory=dict)
    route_disagreement_arcsec: float | None = None
    sv_solve: SolveResult | None = None
    frame_solve: SolveResult | None = None
    registration: Registration | None = None
    n_sv_sources: int = 0
    elapsed_ms: float = 0.0
    reason: str | None = None
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: the CLI's fields first, then details."""

        def r(v, nd=4):
            return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), nd)

        out: dict[str, Any] = {
            "located": self.located,
            "target_ra_deg": r(self.target_ra_deg, 7),
            "target_dec_deg": r(self.target_dec_deg, 7),
            "method": self.method,
            "slit_angle_deg": r(self.slit.angle_deg, 3) if self.slit.found else None,
            "target_xy": [r(v, 2) for v in self.target_xy] if self.target_xy else None,
            "mag_slit_viewer": r(self.mag_slit_viewer),
            "mag_slit_viewer_is_limit": True,
            "mag_slit_viewer_model": r(self.mag_slit_viewer_model),
            "mag_60cm": r(self.mag_60cm),
            "mag_difference": r(self.mag_difference),
            "saturated": {"slit_viewer": bool(self.target.wings.saturated) if self.target.wings else None,
                          "60cm": bool(self.photometry_60cm.saturated) if self.photometry_60cm else None},
            "photometry_60cm": self.photometry_60cm.to_json() if self.photometry_60cm is not None else None,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "reason": self.reason,
            "target_xy_60cm": [r(v, 2) for v in self.target_xy_60cm] if self.target_xy_60cm else None,
            "routes": {k: {"ra_deg": r(v[0], 7), "dec_deg": r(v[1], 7)} for k, v in self.ra_by_route.items()},
            "route_disagreement_arcsec": r(self.route_disagreement_arcsec, 3),
            "slit": self.slit.to_json(),
            "target": self.target.to_json(),
            "registration": self.registration.to_json() if self.registration is not None else None,
            "sv_solve": self.sv_solve.to_json(include_wcs=False) if self.sv_solve is not None else None,
            "frame_solve": self.frame_solve.to_json(include_wcs=False) if self.frame_solve is not None else None,
            "n_sv_sources": self.n_sv_sources,
            "warnings": list(self.warnings),
        }
        return out


def extract(image: np.ndarray, *, mask: np.ndarray | None = None) -> Table:
    """Sources (``x``, ``y``, ``flux``, ``fwhm``; brightest first) with the frame pipeline's extractor.

    ``mask`` (True = ignore) keeps the slit band out of the background and the detections.
    Uses ``tenmon.vision.frames.sources.extract_sources``; plain sep when that module is absent.
    """
    img = as_image(image)
    try:
        from tenmon.vision.frames.sources import extract_sources
    except ImportError:  # the frame pipeline is not in this build
        extract_sources = None
    if extract_sources is not None:
        t = extract_sources(img, mask=mask)
        return t
    import sep

    data = np.ascontiguousarray(np.where(np.isfinite(img), img, np.nanmedian(img)), dtype=np.float32)
    m = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    bkg = sep.Background(data, mask=m)
    objs = sep.extract(data - bkg.back(), 5.0, err=bkg.globalrms, mask=m, minarea=5)
    t = Table({"x": objs["x"].astype(float), "y": objs["y"].astype(float), "flux": objs["flux"].astype(float),
               "fwhm": 2.0 * np.sqrt(np.log(2.0) * (objs["a"] ** 2 + objs["b"] ** 2)).astype(float)})
    t.sort("flux", reverse=True)
    return t


def locate_target(
    sv_image: np.ndarray,
    *,
    sv_hint: SolveHint | None = None,
    sv_exposure_s: float | None = None,
    sv_gain: float | None = None,
    sv_saturation_adu: float | None = None,
    solver: Any = None,
    frame60: Frame60 | None = None,
    frame_solver: Any = None,
    settings: NayutaSettings | None = None,
) -> NayutaLocation:
    """Find Nayuta's target on a slit-viewer frame and place it on the sky; photometry in both frames.

    Steps: :func:`find_slit`; sources of the slit viewer with the slit band masked;
    :func:`find_target`; then the sky position by ``settings.route``: ``solve`` plate-solves the
    slit viewer (``solver``, ``sv_hint`` with Nayuta's position and the slit viewer's scale);
    ``register`` registers the slit viewer in ``frame60`` (:func:`register_in_frame`) and maps
    the target through the 60 cm frame's WCS (``frame60.wcs``, else solved with ``solver`` from
    ``frame60.hint``); ``auto`` does what it can and reports the solve route's position first.
    With a 60 cm frame the target is also measured there (aperture photometry at its mapped
    pixel, recentred).

    Args:
        sv_image: the slit-viewer frame [ADU].
        sv_hint: Nayuta's reported position and the slit-viewer scale (for solving).
        sv_exposure_s, sv_gain, sv_saturation_adu: of the slit-viewer frame, for magnitudes per
            second, errors and the saturation flag.
        solver: a ``SolverChain`` (or ``Solver``) with a catalogue for the slit viewer (see
            :func:`slit_viewer_chain`); ``None``: register only.
        frame60: the 60 cm frame, optional.
        frame_solver: the solver for the 60 cm frame when it has no WCS; default ``solver``.
        settings: :class:`NayutaSettings`.

    Returns:
        :class:`NayutaLocation`; ``located=False`` with a reason when the slit, the target or
        the sky position was not found (never raises for that).

    Raises:
        NayutaError: for an image that is not 2-D or has no finite pixels.
    """
    t0 = time.perf_counter()
    st = settings or NayutaSettings()
    img = as_image(sv_image)
    warnings: list[str] = []
    slit = find_slit(img, settings=st.slit)
    if not slit.found or slit.confidence < st.min_slit_confidence:
        why = slit.reason if not slit.found else f"slit found with confidence {slit.confidence:.2f} only"
        return NayutaLocation(located=False, target_ra_deg=None, target_dec_deg=None, method="none", slit=slit,
                              target=TargetOnSlit.not_found("no slit"), target_xy=None, elapsed_ms=ms(t0),
                              reason=f"slit not found: {why}")
    band = slit.band_mask(img.shape, pad_px=2 * slit.edge_sigma_px + 1.0)
    sources = extract(img, mask=band)
    fwhm = measure_fwhm(img, sources_off_slit(sources, slit, fwhm_px=max(2.0, 2.0 * slit.width_px)), mask=band)
    target = find_target(img, slit, fwhm_guess_px=fwhm, exposure_s=sv_exposure_s, gain=sv_gain,
                         saturation_adu=sv_saturation_adu,
                         reference_xy=st.target_reference_xy, settings=st.target)
    if not target.found:
        return NayutaLocation(located=False, target_ra_deg=None, target_dec_deg=None, method="none", slit=slit,
                              target=target, target_xy=None, n_sv_sources=len(sources), elapsed_ms=ms(t0),
                              reason=f"target not found: {target.reason}")
    txy = (target.x, target.y)
    clean = sources_off_slit(sources, slit, fwhm_px=target.fwhm_px, target_xy=txy)
    routes: dict[str, tuple[float, float]] = {}
    reasons: list[str] = []
    sv_solve = frame_solve = None
    registration = None
    frame_xy = None
    if st.route in ("auto", "solve"):
        if solver is not None and sv_hint is not None:
            sky, sv_solve = sky_by_solving(txy, clean, img.shape, sv_hint, solver)
            if sky.ok:
                routes["solve"] = (sky.ra_deg, sky.dec_deg)
            else:
                reasons.append(f"solve: {sky.reason}")
        else:
            reasons.append("solve: no solver or no position hint for the slit viewer")
    frame_wcs = None
    fr_img = None
    if frame60 is not None:
        fr_img = as_image(frame60.image)
        fr_sources = extract(fr_img)
        frame_wcs = frame60.wcs
        fsolver = frame_solver if frame_solver is not None else solver
        if frame_wcs is None and fsolver is not None and frame60.hint is not None:
            frame_solve = solve_with(fsolver, fr_sources, fr_img.shape, frame60.hint)
            if frame_solve.solved:
                frame_wcs = frame_solve.wcs
            else:
                warnings.append(f"60 cm frame not solved: {frame_solve.reason}")
        if st.route in ("auto", "register"):
            sv_scale = sv_hint.scale_arcsec if sv_hint is not None and sv_hint.scale_arcsec else st.sv_scale_arcsec
            registration = register_in_frame(clean, fr_sources, sv_scale / frame60.scale_arcsec,
                                              scale_tolerance=st.scale_tolerance, frame_shape=fr_img.shape,
                                              settings=st.registration)
            if registration.ok:
                fx, fy = registration.apply(txy[0], txy[1])
                frame_xy = (float(fx[0]), float(fy[0]))
                if frame_wcs is not None:
                    sky = sky_by_registration(txy, registration, frame_wcs)
                    routes["register"] = (sky.ra_deg, sky.dec_deg)
                else:
                    reasons.append("register: the 60 cm frame has no WCS and could not be solved")
            else:
                reasons.append(f"register: {registration.reason}")
    elif st.route == "register":
        reasons.append("register: no 60 cm frame given")
    method = "solve" if "solve" in routes else ("register" if "register" in routes else "none")
    ra = dec = None
    if method != "none":
        ra, dec = routes[method]
    disagree = None
    if len(routes) == 2:
        (r1, d1), (r2, d2) = routes["solve"], routes["register"]
        disagree = float(separation_deg(np.array([r1]), np.array([d1]), r2, d2)[0] * 3600.0)
        if disagree > st.max_route_disagreement_arcsec:
            warnings.append(f"the two routes disagree by {disagree:.1f}\"")
    # photometry in the 60 cm frame at the target's pixel there
    phot60 = None
    if fr_img is not None:
        if frame_xy is None and frame_wcs is not None and ra is not None:
            px = frame_wcs.all_world2pix(np.array([[ra, dec]]), 0)[0]
            frame_xy = (float(px[0]), float(px[1]))
        if frame_xy is not None:
            phot60 = _photometry_60cm(fr_img, frame_xy, frame60, st, measure_fwhm(fr_img, fr_sources))
            if phot60 is not None:
                frame_xy = (phot60.x, phot60.y)
    mag_sv = target.wings.mag if target.wings is not None else None
    mag60 = phot60.mag if phot60 is not None else None
    located = method != "none"
    return NayutaLocation(
        located=located, target_ra_deg=ra, target_dec_deg=dec, method=method, slit=slit, target=target,
        target_xy=txy, target_xy_60cm=frame_xy, mag_slit_viewer=mag_sv, mag_slit_viewer_model=target.mag_model,
        mag_60cm=mag60, mag_difference=(mag60 - mag_sv) if (mag60 is not None and mag_sv is not None) else None,
        photometry_60cm=phot60, ra_by_route=routes, route_disagreement_arcsec=disagree, sv_solve=sv_solve,
        frame_solve=frame_solve, registration=registration, n_sv_sources=len(sources), elapsed_ms=ms(t0),
        reason=None if located else "no sky position: " + "; ".join(reasons), warnings=tuple(warnings),
    )


def slit_viewer_chain(solver_settings: Any, *, catalog: Any, sv_scale_arcsec: float,
                      max_rms_arcsec: float = 0.5) -> Any:
    """The site's solver chain, with its rms limit widened for the slit viewer's small pixels.

    The solvers' limits are in pixels (1 px suits the 60 cm's ~3 px FWHM); the slit viewer
    samples the seeing with ~10 px at 0.2"/px, where faint stars' centroids scatter by ~1 px
    (0.2"). The limit becomes ``max(site limit, max_rms_arcsec / sv_scale_arcsec)`` pixels.
    ``solver_settings`` is a ``SolverSettings``; ``catalog`` a catalogue provider (or ``None``:
    the configured one).
    """
    from tenmon.vision.solve.chain import build_chain

    px = max(solver_settings.max_rms_px, max_rms_arcsec / sv_scale_arcsec)
    s = solver_settings.model_copy(update={
        "max_rms_px": px,
        "hinted": solver_settings.hinted.model_copy(update={"max_rms_px": max(solver_settings.hinted.max_rms_px, px)}),
    })
    return build_chain(s, catalog=catalog) if catalog is not None else build_chain(s)


def _photometry_60cm(img: np.ndarray, xy: tuple[float, float], frame60: Frame60, st: NayutaSettings,
                     fwhm_px: float | None) -> Photometry | None:
    """Recentre on the star near ``xy`` (photutils centroid) and measure it; None when off the frame.

    ``fwhm_px`` is the frame's (from all its sources); 2" is assumed without it.
    """
    from photutils.centroids import centroid_2dg

    ny, nx = img.shape
    x, y = xy
    if not (0 <= x <= nx - 1 and 0 <= y <= ny - 1):
        return None
    fw = fwhm_px if fwhm_px and fwhm_px > 0 else 2.0 / frame60.scale_arcsec
    h = int(max(3, math.ceil(1.5 * fw)))
    x0, y0 = int(round(x)), int(round(y))
    ya, yb, xa, xb = max(0, y0 - h), min(ny, y0 + h + 1), max(0, x0 - h), min(nx, x0 + h + 1)
    cut = img[ya:yb, xa:xb].astype(float)
    if cut.size >= 9:
        cut = cut - np.median(img[max(0, y0 - 4 * h) : y0 + 4 * h + 1, max(0, x0 - 4 * h) : x0 + 4 * h + 1])
        try:
            import warnings as _w

            with _w.catch_warnings():
                _w.simplefilter("ignore")
                cx, cy = centroid_2dg(cut)
            if np.isfinite(cx) and np.isfinite(cy) and math.hypot(xa + cx - x, ya + cy - y) < 1.5 * fw:
                x, y = xa + float(cx), ya + float(cy)
        except (ValueError, RuntimeError):
            pass
    return aperture_photometry_at(img, x, y, fwhm_px=fw, exposure_s=frame60.exposure_s, gain=frame60.gain,
                                  saturation_adu=frame60.saturation_adu, aperture_fwhm=st.target.aperture_fwhm, annulus_fwhm=st.target.annulus_fwhm)
