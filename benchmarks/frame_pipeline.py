"""Frame pipeline acceptance benchmark: accuracy on synthetic 2048x2048 frames with truth, and speed.

For every frame (seeds from 10000 up; the tests use seeds below 1000) a random star field with
an injected compact cluster is rendered (tenmon.vision.render.sky: Moffat or Gaussian seeing,
sky, noise, cosmic rays, hot pixels, a bad column, saturation, bias 1000 ADU with a 32-column
overscan) and written as FITS with its true WCS. Then, in the same process and alternating the
order frame by frame:

* astroscrappy alone (``detect_cosmics`` with the pipeline's parameters) on the calibrated image;
* ``process_frame`` end to end (read, calibrate, LA Cosmic + star protection, sources, clusters,
  all products).

Figures (see docs/bench/frame_pipeline.md for definitions):
cosmic-ray pixel recall (truth: deposited charge > 3 and > 5 sigma of the pixel noise), fraction
of star pixels flagged (star light > 1 sigma and no cosmic-ray charge above 1 sigma), completeness
of unsaturated stars above truth SNR 10 (CCD equation, aperture radius 1 FWHM), position rms
(radial and per axis; all matched; isolated and unflagged) with the Cramer-Rao bound of the
same stars (the photon-noise limit of any unbiased estimator), cluster recovery (centre within 10 arcsec) and false
candidates, and time end to end / astroscrappy alone. With --compare-photutils N, photutils'
DAOStarFinder, segmentation and PSFPhotometry (from tenmon's sources) on the first N frames.

Run:  .venv/bin/python benchmarks/frame_pipeline.py [--frames 20] [--size 2048] [--json out.json]
      [--compare-photutils N] [--skip-speed] [--astroscrappy-every K] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from tenmon.core import offline

offline.configure()

import astroscrappy  # noqa: E402

from tenmon.vision.frames import calibration, cosmics, pipeline, sources  # noqa: E402
from tenmon.vision.render import sky as skyrender

PIXEL_SCALE = 0.32  # arcsec/px: an 11' field on 2048 px (the 60 cm telescope's CCD)
SEED0 = 10_000


def make_frame(i: int, size: int, workdir: Path):
    rng = np.random.default_rng(SEED0 + i)
    ra0, dec0 = float(rng.uniform(0, 360)), float(rng.uniform(-20, 60))
    radius = size * PIXEL_SCALE / 3600 * 0.75
    density = float(rng.uniform(15000, 35000))  # stars per deg^2 to mag 21
    cat = skyrender.random_star_catalog((ra0, dec0), radius, density_per_deg2=density, seed=SEED0 + 100 + i)
    # Cluster: 50-90 members within 1', its centre at least 1.5' from the frame edge.
    half = size / 2 - 1.5 * 60 / PIXEL_SCALE
    dx, dy = rng.uniform(-half, half, 2)
    wcs = skyrender.simple_wcs((ra0, dec0), shape=(size, size), pixel_scale_arcsec=PIXEL_SCALE,
                               rotation_deg=float(rng.uniform(0, 360)))
    cra, cdec = wcs.all_pix2world([[size / 2 - 0.5 + dx, size / 2 - 0.5 + dy]], 0)[0]
    n_mem = int(rng.integers(50, 91))
    cat, truth = skyrender.inject_cluster(cat, center=(float(cra), float(cdec)), n_members=n_mem,
                                          radius_deg=1 / 60, half_number_radius_deg=float(rng.uniform(0.3, 0.5)) / 60,
                                          mag_bright=14.0, mag_faint=19.5, seed=SEED0 + 200 + i)
    psf = "moffat" if rng.uniform() < 0.7 else "gaussian"
    exposure = float(rng.uniform(60, 300))
    frame = skyrender.render_star_field(
        wcs=wcs, stars=cat, shape=(size, size), fwhm_px=float(rng.uniform(2.2, 3.2)), psf=psf,
        moffat_beta=float(rng.uniform(3.0, 4.8)), sky_adu=float(rng.uniform(300, 2000)), exposure_s=exposure,
        gain=1.5, read_noise_e=8.0, zero_point_mag=22.5,
        n_cosmic_rays=int(rng.integers(150, 400) * (size / 2048) ** 2), n_hot_pixels=int(50 * (size / 2048) ** 2),
        bias_adu=1000.0, overscan_px=32, seed=SEED0 + 300 + i)
    path = workdir / f"bench_{SEED0 + i}.fits"
    skyrender.write_frame_fits(frame, path, date_obs=datetime(2026, 11, 21, 13, 0, tzinfo=timezone.utc) + timedelta(minutes=5 * i),
                               mount_ra_deg=ra0 + 0.01, mount_dec_deg=dec0 - 0.01, include_wcs=True)
    return frame, truth, path, psf


def isolated(frame, tr) -> np.ndarray:
    """Truth stars with no other star within 3 FWHM brighter than 5 % of their flux."""
    allxy = np.column_stack([frame.stars["x"], frame.stars["y"]])
    flux = np.asarray(frame.stars["flux_adu"])
    tree = cKDTree(allxy)
    out = np.ones(len(tr), bool)
    for k, (x, y, f) in enumerate(zip(tr["x"], tr["y"], tr["flux_adu"])):
        for j in tree.query_ball_point([x, y], 3 * frame.fwhm_px):
            d = math.hypot(allxy[j, 0] - x, allxy[j, 1] - y)
            if d > 1e-6 and flux[j] > 0.05 * f:
                out[k] = False
                break
    return out


def crlb_per_axis(frame, stars, h: int = 12) -> np.ndarray:
    """Cramer-Rao bound [px] of one coordinate of each star: 1/sqrt(sum (dmu/dx)^2 / var), with
    mu the star's pixel-integrated PSF as the renderer draws it and var the true pixel variance
    (sky, dark, read noise, all stars' photon noise). Position is nearly orthogonal to flux and
    sky for a symmetric PSF, so the x bound stands for both axes."""
    noise = frame.noise_adu
    ny, nx = noise.shape
    beta = frame.extra["moffat_beta"]
    psf = frame.extra["psf"]
    out = np.full(len(stars), np.nan)
    for k, (x, y, f) in enumerate(zip(stars["x"], stars["y"], stars["flux_adu"])):
        cx, cy = int(round(x)), int(round(y))
        if cx - h < 0 or cy - h < 0 or cx + h + 1 > nx or cy + h + 1 > ny:
            continue
        st = []
        for ddx in (-0.01, 0.01):
            img = np.zeros((2 * h + 1, 2 * h + 1))
            skyrender._add_stars(img, np.array([x - cx + h + ddx]), np.array([y - cy + h]), np.array([f]),
                                 frame.fwhm_px, psf, beta)
            st.append(img)
        der = (st[1] - st[0]) / 0.02
        var = noise[cy - h : cy + h + 1, cx - h : cx + h + 1].astype(np.float64) ** 2
        out[k] = 1.0 / math.sqrt(np.sum(der**2 / var))
    return out


def evaluate(frame, truth, result, clean_mask, size):
    m = {}
    cm3, cm5 = frame.cosmic_mask, frame.cosmic_adu > 5 * frame.noise_adu
    bad = np.zeros_like(cm3)
    bad[:, list(frame.bad_columns)] = True
    cm3, cm5 = cm3 & ~bad, cm5 & ~bad
    m["cr_pixels_3sigma"] = int(cm3.sum())
    m["cr_recall_3sigma"] = float((clean_mask & cm3).sum() / max(cm3.sum(), 1))
    m["cr_recall_5sigma"] = float((clean_mask & cm5).sum() / max(cm5.sum(), 1))
    starpix = frame.star_mask(1.0) & ~(frame.cosmic_adu > frame.noise_adu) & ~bad
    m["star_pixels"] = int(starpix.sum())
    m["star_pixels_flagged"] = int((clean_mask & starpix).sum())
    src = result.sources
    tr = frame.stars[frame.stars["in_frame"]]
    tree = cKDTree(np.column_stack([src["x"], src["y"]]))
    d, i = tree.query(np.column_stack([tr["x"], tr["y"]]))
    match = d < 1.5
    sel = (np.asarray(tr["snr"]) >= 10) & ~np.asarray(tr["saturated"])
    m["n_snr10"] = int(sel.sum())
    m["n_snr10_found"] = int((sel & match).sum())
    dx = np.asarray(src["x"])[i] - np.asarray(tr["x"])
    dy = np.asarray(src["y"])[i] - np.asarray(tr["y"])
    flags = np.asarray(src["flags"])[i]
    iso = isolated(frame, tr)
    all_m = sel & match
    clean = all_m & iso & (flags == 0)
    m["pos_sq_all"] = [float(np.sum(dx[all_m] ** 2)), float(np.sum(dy[all_m] ** 2)), int(all_m.sum())]
    m["pos_sq_iso"] = [float(np.sum(dx[clean] ** 2)), float(np.sum(dy[clean] ** 2)), int(clean.sum())]
    # Cramer-Rao bound: the smallest per-axis variance any unbiased estimator can reach for each
    # star, from the true pixel-integrated PSF and the true per-pixel noise.
    crlb = np.full(len(tr), np.nan)
    crlb[all_m] = crlb_per_axis(frame, tr[all_m])
    m["crlb_sq_all"] = float(np.nansum(crlb[all_m] ** 2))
    m["crlb_sq_iso"] = float(np.nansum(crlb[clean] ** 2))
    # Clusters: the injected one, and anything else.
    cx, cy = frame.wcs.all_world2pix([[truth.ra, truth.dec]], 0)[0]
    members_in = truth.n_members
    found, false = None, 0
    for c in result.clusters:
        sep_arcsec = math.hypot(c.x - cx, c.y - cy) * PIXEL_SCALE
        if sep_arcsec <= 60 and found is None:
            found = (sep_arcsec, c.n_members, c.significance)
        else:
            false += 1
    m["cluster_members"] = members_in
    m["cluster_found"] = found is not None and found[0] <= 10.0
    m["cluster_offset_arcsec"] = None if found is None else round(found[0], 2)
    m["cluster_significance"] = None if found is None else round(found[2], 2)
    m["false_candidates"] = false
    return m


def psf_photometry_compare(clean_img, bad, frame, res, m):
    """photutils PSFPhotometry started from tenmon's sources, on the same background-subtracted
    image, with the frame's TRUE PSF shape (CircularGaussianPRF, or MoffatPSF with the true
    beta) and tenmon's measured FWHM: the library alternative to tenmon's own PSF fit."""
    from astropy.table import Table
    from photutils.psf import CircularGaussianPRF, MoffatPSF, PSFPhotometry

    src = res.sources
    bkg = sources.measure_background(clean_img, mask=bad)
    sub = clean_img - bkg.level
    fw = float(src.meta["fwhm_px"])
    if frame.extra["psf"] == "gaussian":
        model = CircularGaussianPRF(fwhm=fw)
    else:
        beta = frame.extra["moffat_beta"]
        model = MoffatPSF(alpha=fw / (2 * math.sqrt(2 ** (1 / beta) - 1)), beta=beta)
    fs = 2 * int(math.ceil(fw)) + 1
    phot = PSFPhotometry(model, (fs, fs), aperture_radius=fw)
    t = time.perf_counter()
    out = phot(sub, error=bkg.rms, mask=bad, init_params=Table({"x": src["x"], "y": src["y"], "flux": src["flux"]}))
    dt = time.perf_counter() - t
    x, y = np.asarray(out["x_fit"], float), np.asarray(out["y_fit"], float)
    tr = frame.stars[frame.stars["in_frame"]]
    sel = (np.asarray(tr["snr"]) >= 10) & ~np.asarray(tr["saturated"])
    d, i = cKDTree(np.column_stack([src["x"], src["y"]])).query(np.column_stack([tr["x"], tr["y"]]))
    ok = sel & (d < 1.5) & np.isfinite(x[i])
    iso = ok & isolated(frame, tr) & (np.asarray(src["flags"])[i] == 0)
    r2 = (x[i] - tr["x"]) ** 2 + (y[i] - tr["y"]) ** 2
    return {"seconds": round(dt, 3), "completeness_snr10": round(m["n_snr10_found"] / max(m["n_snr10"], 1), 4),
            "pos_rms_radial_px": round(float(np.sqrt(np.mean(r2[ok]))), 4),
            "pos_rms_radial_isolated_px": round(float(np.sqrt(np.mean(r2[iso]))), 4)}


def photutils_compare(clean_img, bad, frame, gain):
    """photutils DAOStarFinder and image segmentation on the same cleaned image.

    Segmentation runs without deblending: photutils' deblender needs scikit-image, which tenmon
    does not depend on (DESIGN.md measured it at ~2.7 s on 2048x2048, deblending included).
    """
    from photutils.background import Background2D, MedianBackground
    from photutils.detection import DAOStarFinder
    from photutils.segmentation import SourceCatalog, detect_sources
    from astropy.convolution import convolve
    from photutils.segmentation import make_2dgaussian_kernel

    tr = frame.stars[frame.stars["in_frame"]]
    sel = (np.asarray(tr["snr"]) >= 10) & ~np.asarray(tr["saturated"])
    out = {}
    t = time.perf_counter()
    bkg = Background2D(clean_img, (64, 64), filter_size=(3, 3), bkg_estimator=MedianBackground(), mask=bad)
    t_bkg = time.perf_counter() - t
    sub = clean_img - bkg.background
    t = time.perf_counter()
    dao = DAOStarFinder(fwhm=frame.fwhm_px, threshold=5.0 * bkg.background_rms_median)
    tab = dao(sub, mask=bad)
    t_dao = time.perf_counter() - t
    t = time.perf_counter()
    kernel = make_2dgaussian_kernel(frame.fwhm_px, size=5)
    conv = convolve(sub, kernel)
    seg = detect_sources(conv, 2.0 * bkg.background_rms, n_pixels=5, mask=bad)
    cat = SourceCatalog(sub, seg, convolved_data=conv)
    xs, ys = cat.x_centroid, cat.y_centroid
    t_seg = time.perf_counter() - t
    for name, (x, y, dt) in {"DAOStarFinder": (np.asarray(tab["x_centroid"] if "x_centroid" in tab.colnames else tab["xcentroid"]),
                                               np.asarray(tab["y_centroid"] if "y_centroid" in tab.colnames else tab["ycentroid"]), t_dao),
                             "segmentation (no deblending)": (np.asarray(xs), np.asarray(ys), t_seg)}.items():
        ok = np.isfinite(x) & np.isfinite(y)
        d, i = cKDTree(np.column_stack([x[ok], y[ok]])).query(np.column_stack([tr["x"], tr["y"]]))
        match = d < 1.5
        dd = d[sel & match]
        out[name] = {"seconds": round(dt + t_bkg, 3), "completeness_snr10": round(float((sel & match).sum() / sel.sum()), 4),
                     "pos_rms_radial_px": round(float(np.sqrt(np.mean(dd**2))), 4)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--json", type=Path, help="write all figures here")
    ap.add_argument("--compare-photutils", type=int, default=0, metavar="N", help="also run photutils on N frames")
    ap.add_argument("--skip-speed", action="store_true", help="do not time astroscrappy alone")
    ap.add_argument("--astroscrappy-every", type=int, default=5, metavar="K",
                    help="also run the pipeline with astroscrappy itself on every K-th frame (0: never)")
    ap.add_argument("--keep", type=Path, help="keep frames and products in this directory")
    ap.add_argument("--threads", type=int, default=0,
                    help="limit OpenMP/BLAS threads (1 = like a frame worker with threads_per_process 1); 0: default")
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        import cv2

        cv2.setNumThreads(args.threads)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tenmon-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = pipeline.PipelineSettings()
    rows, speed, photo = [], [], []
    # Warm up: import everything and run each code path once on a small frame, as a daemon's
    # worker process has done before its first real frame; the timings below are steady state.
    wf, _, wpath, _ = make_frame(-1, 768, work)
    pipeline.process_frame(wpath, out_dir=work / "warmup", settings=settings)
    wraw, wh = pipeline.read_frame(wpath)
    wcal = calibration.calibrate(wraw, wh)
    astroscrappy.detect_cosmics(wcal.image, gain=1.5, readnoise=8.0)
    cosmics.lacosmic_fast(wcal.image, gain=1.5, read_noise_e=8.0)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for i in range(args.frames):
        t0 = time.perf_counter()
        frame, truth, path, psf = make_frame(i, args.size, work)
        t_render = time.perf_counter() - t0
        raw, header = pipeline.read_frame(path)
        cal = calibration.calibrate(raw, header, saturation_adu=65535.0)
        s = settings.cosmics

        # The pipeline masks saturated areas before LA Cosmic; give astroscrappy alone the same
        # input so that the two LA Cosmic implementations can be compared pixel for pixel.
        sat_zone = cosmics.saturation_zone(cal.image, cal.saturation_adu, saturated=cal.saturated)
        inmask = cal.bad | sat_zone
        lac = {}

        def alone():
            t = time.perf_counter()
            lac["astroscrappy"] = astroscrappy.detect_cosmics(
                cal.image, inmask=inmask, sigclip=s.sigclip, sigfrac=s.sigfrac, objlim=s.objlim, gain=1.5,
                readnoise=8.0, satlevel=cal.saturation_adu * 1.5, niter=s.niter, sepmed=True,
                cleantype="meanmask", fsmode="median")
            return time.perf_counter() - t

        def fast_alone():
            t = time.perf_counter()
            lac["fast"] = cosmics.lacosmic_fast(cal.image, gain=1.5, read_noise_e=8.0, saturation_adu=cal.saturation_adu,
                                                inmask=inmask, sigclip=s.sigclip, sigfrac=s.sigfrac, objlim=s.objlim,
                                                niter=s.niter)
            return time.perf_counter() - t

        def full(st=settings):
            t = time.perf_counter()
            r = pipeline.process_frame(path, out_dir=work / "products", settings=st)
            return time.perf_counter() - t, r

        t_alone = t_fast = t_full_as = float("nan")
        if args.skip_speed:
            t_full, res = full()
        elif i % 2 == 0:
            t_alone = alone()
            t_fast = fast_alone()
            t_full, res = full()
        else:
            t_full, res = full()
            t_fast = fast_alone()
            t_alone = alone()
        same = None
        if lac.get("astroscrappy") is not None and lac.get("fast") is not None:
            same = bool(np.array_equal(lac["astroscrappy"][0], lac["fast"][0])
                        and np.array_equal(lac["astroscrappy"][1], lac["fast"][1]))
        if not args.skip_speed and args.astroscrappy_every and i % args.astroscrappy_every == 0:
            st = settings.model_copy(deep=True)
            st.cosmics.implementation = "astroscrappy"
            t_full_as, _ = full(st)
        mask = np.zeros(frame.data_shape, bool)
        from astropy.io import fits

        with fits.open(res.products["mask"]) as h:
            mask = (h[1].data & 1).astype(bool)
        m = evaluate(frame, truth, res, mask, args.size)
        m.update({"frame": path.name, "psf": psf, "fwhm_true": round(frame.fwhm_px, 2), "fwhm_measured": res.fwhm_px,
                  "n_sources": res.n_sources, "t_render_s": round(t_render, 2), "t_full_s": round(t_full, 3),
                  "t_astroscrappy_s": round(t_alone, 3), "t_lacosmic_fast_s": round(t_fast, 3),
                  "lacosmic_fast_identical": same, "t_full_with_astroscrappy_s": round(t_full_as, 3),
                  "timings_ms": res.timings_ms})
        rows.append(m)
        speed.append((t_full, t_alone, t_fast, t_full_as))
        print(f"{path.name} {psf:8s} fwhm {frame.fwhm_px:.2f}/{(res.fwhm_px or 0):.2f} src {res.n_sources:5d} "
              f"CR recall {m['cr_recall_3sigma']:.3f}/{m['cr_recall_5sigma']:.3f} starflag "
              f"{m['star_pixels_flagged']}/{m['star_pixels']} complete {m['n_snr10_found']}/{m['n_snr10']} "
              f"pos radial rms all/iso {math.sqrt(sum(m['pos_sq_all'][:2]) / max(m['pos_sq_all'][2], 1)):.3f}/"
              f"{math.sqrt(sum(m['pos_sq_iso'][:2]) / max(m['pos_sq_iso'][2], 1)):.3f} px (bound "
              f"{math.sqrt(2 * m['crlb_sq_iso'] / max(m['pos_sq_iso'][2], 1)):.3f}) "
              f"cluster {m['cluster_found']} ({m['cluster_offset_arcsec']}\", {m['cluster_significance']} sig, "
              f"{truth.n_members} mem) false {m['false_candidates']} | full {t_full:.2f}s astroscrappy {t_alone:.2f}s "
              f"fast {t_fast:.2f}s (identical {same}) ratio {t_full / t_alone:.2f}"
              + (f" | full with astroscrappy {t_full_as:.2f}s" if t_full_as == t_full_as else ""), flush=True)
        if i < args.compare_photutils:
            clean_img = fits.getdata(res.products["clean"]).astype(np.float32)
            pc = photutils_compare(clean_img, cal.bad, frame, 1.5)
            pc["tenmon (sep + PSF fit)"] = {"seconds": round((res.timings_ms["background"] + res.timings_ms["sources"]) / 1000, 3),
                                  "completeness_snr10": round(m["n_snr10_found"] / max(m["n_snr10"], 1), 4),
                                  "pos_rms_radial_px": round(math.sqrt(sum(m["pos_sq_all"][:2]) / max(m["pos_sq_all"][2], 1)), 4),
                                  "pos_rms_radial_isolated_px": round(math.sqrt(sum(m["pos_sq_iso"][:2]) / max(m["pos_sq_iso"][2], 1)), 4)}
            pc["PSFPhotometry (photutils, from tenmon's sources)"] = psf_photometry_compare(clean_img, cal.bad, frame, res, m)
            photo.append(pc)
            print("   photutils comparison:", json.dumps(pc), flush=True)

    n = len(rows)
    cr3 = float(np.mean([r["cr_recall_3sigma"] for r in rows]))
    cr5 = float(np.mean([r["cr_recall_5sigma"] for r in rows]))
    sp = sum(r["star_pixels"] for r in rows)
    spf = sum(r["star_pixels_flagged"] for r in rows)
    c10 = sum(r["n_snr10_found"] for r in rows) / max(1, sum(r["n_snr10"] for r in rows))
    a = np.array([r["pos_sq_all"] for r in rows]).sum(axis=0)
    b = np.array([r["pos_sq_iso"] for r in rows]).sum(axis=0)
    found = sum(r["cluster_found"] for r in rows)
    false = sum(r["false_candidates"] for r in rows)
    ratios = [f / a_ for f, a_, _, _ in speed if a_ == a_]
    ratios_as = [fa / a_ for _, a_, _, fa in speed if a_ == a_ and fa == fa]
    fast_ratio = [fa / a_ for _, a_, fa, _ in speed if a_ == a_ and fa == fa]
    summary = {
        "frames": n,
        "size": args.size,
        "cr_recall_3sigma_mean": round(cr3, 4),
        "cr_recall_5sigma_mean": round(cr5, 4),
        "cr_recall_3sigma_min": round(min(r["cr_recall_3sigma"] for r in rows), 4),
        "star_pixels_flagged_fraction": spf / max(sp, 1),
        "completeness_snr10": round(c10, 4),
        "pos_rms_all_per_axis_px": [round(math.sqrt(a[0] / a[2]), 4), round(math.sqrt(a[1] / a[2]), 4)],
        "pos_rms_all_radial_px": round(math.sqrt((a[0] + a[1]) / a[2]), 4),
        "pos_rms_isolated_per_axis_px": [round(math.sqrt(b[0] / b[2]), 4), round(math.sqrt(b[1] / b[2]), 4)],
        "pos_rms_isolated_radial_px": round(math.sqrt((b[0] + b[1]) / b[2]), 4),
        "crlb_all_radial_px": round(math.sqrt(2 * sum(r["crlb_sq_all"] for r in rows) / a[2]), 4),
        "crlb_isolated_radial_px": round(math.sqrt(2 * sum(r["crlb_sq_iso"] for r in rows) / b[2]), 4),
        "n_pos_all": int(a[2]),
        "n_pos_isolated": int(b[2]),
        "pos_rms_over_crlb_all": round(math.sqrt((a[0] + a[1]) / (2 * sum(r["crlb_sq_all"] for r in rows))), 3),
        "pos_rms_over_crlb_isolated": round(math.sqrt((b[0] + b[1]) / (2 * sum(r["crlb_sq_iso"] for r in rows))), 3),
        "pos_rms_radial_per_frame_all_iso": [
            (round(math.sqrt(sum(r["pos_sq_all"][:2]) / r["pos_sq_all"][2]), 4),
             round(math.sqrt(sum(r["pos_sq_iso"][:2]) / r["pos_sq_iso"][2]), 4)) for r in rows],
        "clusters_found": f"{found}/{n}",
        "false_candidates": false,
        "false_per_10_frames": round(10 * false / n, 2),
        "t_full_median_s": round(float(np.median([s_[0] for s_ in speed])), 3),
        "t_lacosmic_fast_median_s": round(float(np.nanmedian([s_[2] for s_ in speed])), 3) if ratios else None,
        "t_astroscrappy_median_s": round(float(np.median([s_[1] for s_ in speed])), 3) if ratios else None,
        "ratio_median": round(float(np.median(ratios)), 3) if ratios else None,
        "ratio_max": round(float(np.max(ratios)), 3) if ratios else None,
        "lacosmic_fast_over_astroscrappy_median": round(float(np.median(fast_ratio)), 3) if fast_ratio else None,
        "lacosmic_fast_identical_frames": f"{sum(1 for r in rows if r['lacosmic_fast_identical'])}/"
                                          f"{sum(1 for r in rows if r['lacosmic_fast_identical'] is not None)}",
        "ratio_with_astroscrappy_in_pipeline": [round(x, 3) for x in ratios_as],
        "stage_median_ms": {k: round(float(np.median([r["timings_ms"].get(k, 0.0) for r in rows])), 1)
                            for k in rows[0]["timings_ms"]},
        "load_average_end": os.getloadavg(),
        "threads": args.threads or "default",
    }
    print(json.dumps(summary, indent=1))
    if photo:
        agg = {}
        for name in photo[0]:
            agg[name] = {k: round(float(np.mean([p[name][k] for p in photo])), 4) for k in photo[0][name]}
        print("photutils comparison (mean over frames):", json.dumps(agg, indent=1))
        summary["photutils_comparison"] = agg
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "frames": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
