"""Registration of slit-viewer sources into a 60 cm frame (similarity by triangle voting).

Part of :mod:`tenmon.vision.nayuta` (see its docstring for the conventions).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree
from scipy.stats import poisson

from tenmon.vision.nayuta._common import ms, xyflux
from tenmon.vision.nayuta.settings import NayutaError
from tenmon.config.vision import RegistrationSettings
from tenmon.vision.nayuta.slit import SlitGeometry
from tenmon.vision.solve.hinted import (
    Triangles,
    apply_similarity,
    fit_similarity,
    unique_pairs,
)


@dataclass(frozen=True)
class Registration:
    """A similarity transform of slit-viewer pixels into 60 cm frame pixels.

    ``frame = a * z + b`` with ``z = x + i y`` (its complex conjugate when ``flipped``);
    ``scale`` = |a| [frame px per slit-viewer px], ``rotation_deg`` = arg a. ``n_matched``
    stars agree within ``rms_px`` (frame pixels); ``p_chance`` is the probability that this
    many matches happen by chance. ``ok`` False (with ``reason``) when no verified match.
    """

    ok: bool
    a_re: float = 1.0
    a_im: float = 0.0
    b_re: float = 0.0
    b_im: float = 0.0
    flipped: bool = False
    n_matched: int = 0
    n_sv: int = 0
    rms_px: float = math.nan
    p_chance: float = 1.0
    elapsed_ms: float = 0.0
    reason: str | None = None

    @classmethod
    def failure(cls, reason: str, **kw: Any) -> Registration:
        return cls(ok=False, reason=reason, **kw)

    @property
    def scale(self) -> float:
        return math.hypot(self.a_re, self.a_im)

    @property
    def rotation_deg(self) -> float:
        return math.degrees(math.atan2(self.a_im, self.a_re)) % 360.0

    def apply(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Slit-viewer pixels -> 60 cm frame pixels."""
        w = apply_similarity(complex(self.a_re, self.a_im), complex(self.b_re, self.b_im),
                             self.flipped, np.atleast_1d(np.asarray(x, float)),
                             np.atleast_1d(np.asarray(y, float)))
        return w[:, 0], w[:, 1]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "scale": round(self.scale, 6), "rotation_deg": round(self.rotation_deg, 4),
                "flipped": self.flipped, "offset_px": [round(self.b_re, 3), round(self.b_im, 3)],
                "n_matched": self.n_matched, "n_sv": self.n_sv,
                "rms_px": round(self.rms_px, 4) if math.isfinite(self.rms_px) else None,
                "p_chance": self.p_chance, "elapsed_ms": round(self.elapsed_ms, 1), "reason": self.reason}


def register_in_frame(
    sv_sources: Table,
    frame_sources: Table,
    scale_ratio: float,
    *,
    scale_tolerance: float = 0.03,
    frame_shape: tuple[int, int] | None = None,
    settings: RegistrationSettings | None = None,
) -> Registration:
    """Register slit-viewer sources inside a (larger) 60 cm frame: rotation, offset, parity, scale.

    The slit-viewer positions are first scaled by ``scale_ratio`` (60 cm pixels per slit-viewer
    pixel, i.e. slit-viewer scale / 60 cm scale), so both sets are in 60 cm pixels and a
    triangle's size is an invariant as well as its shape (the known scale is what makes this
    robust against the 60 cm frame's larger field). Triangles of each star with pairs of its
    nearest neighbours (``tenmon.vision.solve.hinted``'s triangle code) are matched by
    (side ratios, log size), each match gives a similarity transform (mirror when the
    triangles' orientations differ), the transforms vote in (parity, rotation, offset) bins,
    the best bins are verified by counting slit-viewer sources that land on 60 cm sources
    against the number expected by chance (Poisson), and the winner is refined by least squares
    with outlier clipping. Sources the slit hides simply do not match; the spurious halves of a
    star cut by the slit should be removed by the caller (:func:`sources_off_slit`).

    Args:
        sv_sources, frame_sources: Tables with ``x``, ``y`` [px] and ``flux`` (brighter larger).
        scale_ratio: 60 cm px per slit-viewer px (> 0).
        scale_tolerance: fractional uncertainty of ``scale_ratio``.
        frame_shape: ``(ny, nx)`` of the 60 cm frame (for the chance estimate); default the
            sources' bounding box.
        settings: :class:`RegistrationSettings`.

    Returns:
        :class:`Registration` (``ok=False`` with a reason when not verified).

    Raises:
        NayutaError: when a table lacks ``x``/``y`` or ``scale_ratio`` is not positive.
    """
    t0 = time.perf_counter()
    s = settings or RegistrationSettings()
    if not scale_ratio > 0:
        raise NayutaError(f"scale_ratio must be positive, got {scale_ratio}")
    sx, sy, _ = xyflux(sv_sources, "slit-viewer")
    fx, fy, _ = xyflux(frame_sources, "60 cm")
    if len(sx) < s.min_matches or len(fx) < s.min_matches:
        return Registration.failure(f"too few sources: {len(sx)} on the slit viewer, {len(fx)} on the 60 cm frame "
                                    f"(need {s.min_matches} each)", n_sv=len(sx), elapsed_ms=ms(t0))
    if frame_shape is None:
        frame_area = max(1.0, float(np.ptp(fx) * np.ptp(fy)))
    else:
        frame_area = float(frame_shape[0] * frame_shape[1])
    sv = np.column_stack([sx, sy]) * scale_ratio
    fr = np.column_stack([fx, fy])
    sv_area = max(1.0, float(np.ptp(sv[:, 0]) * np.ptp(sv[:, 1])))
    tol = scale_tolerance
    ni = min(len(sv), s.n_sv_stars)
    # as many 60 cm stars as cover the same brightness range over the larger field, with room
    nf = int(min(len(fr), s.max_frame_stars, max(3 * ni, math.ceil(2.0 * ni * frame_area / sv_area))))
    diag = math.hypot(np.ptp(sv[:ni, 0]), np.ptp(sv[:ni, 1]))
    min_side = max(8.0, 0.03 * diag)
    k_f = int(min(15, math.ceil(s.neighbours * math.sqrt(max(1.0, (nf / frame_area) / (ni / sv_area)))) + 2))
    tri_s = Triangles(sv[:ni], k=s.neighbours, min_side=min_side, max_side=diag)
    tri_f = Triangles(fr[:nf], k=k_f, min_side=min_side * (1 - tol), max_side=diag * (1 + tol))
    if len(tri_s.keys) == 0 or len(tri_f.keys) == 0:
        return Registration.failure("too few usable star triangles", n_sv=len(sx), elapsed_ms=ms(t0))
    eps = 0.012
    wlog = eps / math.log(1.0 + tol + 0.01)
    kf = tri_f.keys * np.array([1.0, 1.0, wlog])
    ks = tri_s.keys * np.array([1.0, 1.0, wlog])
    pairs = cKDTree(kf).query_ball_point(ks, r=eps * math.sqrt(3.0), return_sorted=False)
    ii = np.repeat(np.arange(len(pairs)), [len(p) for p in pairs])
    jj = np.fromiter((j for p in pairs for j in p), dtype=np.int64, count=len(ii))
    if len(ii) == 0:
        return Registration.failure("no star triangle of the slit viewer matches one in the 60 cm frame",
                                    n_sv=len(sx), elapsed_ms=ms(t0))
    flip = tri_s.orient[ii] != tri_f.orient[jj]
    a, b = fit_similarity(sv[:ni][tri_s.verts[ii]], fr[:nf][tri_f.verts[jj]], flip)
    ok = np.abs(np.abs(a) - 1.0) < tol + 0.01
    a, b, flip = a[ok], b[ok], flip[ok]
    if len(a) == 0:
        return Registration.failure("no triangle match at the known scale ratio", n_sv=len(sx), elapsed_ms=ms(t0))
    rot = np.degrees(np.angle(a)) % 360.0
    keys = np.column_stack([flip.astype(np.int64), np.floor(rot / 2.0).astype(np.int64),
                            np.floor(b.real / 10.0).astype(np.int64), np.floor(b.imag / 10.0).astype(np.int64)])
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    tree = cKDTree(fr)
    r_m = s.match_radius_px
    lam = len(sv) * (len(fr) / frame_area) * math.pi * r_m**2
    best = None
    n_tested = 0
    for bin_idx in np.argsort(-counts)[:15]:
        n_tested += 1
        mem = np.flatnonzero(inv == bin_idx)
        am = complex(np.median(a[mem].real), np.median(a[mem].imag))
        bm = complex(np.median(b[mem].real), np.median(b[mem].imag))
        fl = bool(flip[mem[0]])
        dist, _ = tree.query(apply_similarity(am, bm, fl, sv[:, 0], sv[:, 1]), distance_upper_bound=r_m)
        n_hit = int(np.isfinite(dist).sum())
        if best is None or n_hit > best[0]:
            best = (n_hit, am, bm, fl)
    n_hit, am, bm, fl = best
    # refine: least squares on matched pairs, shrinking radius, clipping
    radius = r_m
    src_i = cat_i = np.zeros(0, int)
    rms = math.nan
    for _ in range(4):
        dist, idx = tree.query(apply_similarity(am, bm, fl, sv[:, 0], sv[:, 1]), distance_upper_bound=radius)
        src_i, cat_i = unique_pairs(dist, idx)
        if len(src_i) < 3:
            break
        aa, bb = fit_similarity(sv[src_i][None], fr[cat_i][None], np.array([fl]))
        am, bm = complex(aa[0]), complex(bb[0])
        res = np.hypot(*(apply_similarity(am, bm, fl, sv[src_i, 0], sv[src_i, 1]) - fr[cat_i]).T)
        rms = float(np.sqrt(np.mean(res**2)))
        radius = float(np.clip(4.0 * rms, 1.0, r_m))
    n = len(src_i)
    p = min(1.0, n_tested * float(poisson.sf(n - 2 - 1, lam))) if n > 2 else 1.0
    scale = abs(am)
    kw = dict(a_re=am.real * scale_ratio, a_im=am.imag * scale_ratio, b_re=bm.real, b_im=bm.imag, flipped=fl,
              n_matched=n, n_sv=len(sx), rms_px=rms, p_chance=p)
    problems = []
    if n < s.min_matches:
        problems.append(f"only {n} stars matched (need {s.min_matches})")
    if p > s.false_alarm:
        problems.append(f"{n} matches could be chance ({lam:.2f} expected, p={p:.1e})")
    if abs(scale - 1.0) > tol + 0.01:
        problems.append(f"scale off by {abs(scale - 1.0):.1%} (tolerance {tol:.0%})")
    if problems:
        return Registration.failure("not registered: " + "; ".join(problems), elapsed_ms=ms(t0), **kw)
    return Registration(ok=True, elapsed_ms=ms(t0), **kw)


def sources_off_slit(sources: Table, slit: SlitGeometry, *, fwhm_px: float,
                     target_xy: tuple[float, float] | None = None) -> Table:
    """Sources not cut by the slit: drop those within ``fwhm_px`` of the slit band or near the target.

    A star on the slit shows as two halves either side (spurious positions); the target's
    wings are such halves too. Returns a new table (the input is not modified).
    """
    if len(sources) == 0 or not slit.found:
        return sources.copy()
    x = np.asarray(sources["x"], float)
    y = np.asarray(sources["y"], float)
    s, t = slit.to_slit(x, y)
    near = np.abs(t) <= slit.width_px / 2.0 + 1.5 * fwhm_px
    if math.isfinite(slit.length_px):
        near &= np.abs(s) <= slit.length_px / 2.0 + fwhm_px
    if target_xy is not None:
        near |= np.hypot(x - target_xy[0], y - target_xy[1]) < 3.0 * fwhm_px
    out = sources[~near]
    out.meta.update(sources.meta)
    return out
