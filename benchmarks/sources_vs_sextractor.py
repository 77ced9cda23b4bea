"""tenmon's sources against SExtractor itself, on real frames of several telescopes.

For every real frame in tests/data/sources/ (provenance in tests/data/PROVENANCE.md): Debian's
``source-extractor`` (SExtractor 2.25) with its default configuration plus the frame's gain and
saturation (header GAIN / SATURATE where present), then ``tenmon.vision.frames.sources.extract_sources``
with the same gain and saturation and default settings. Agreement: the fraction of SExtractor's
objects with SNR >= 10 (FLUX_AUTO / FLUXERR_AUTO) that have a tenmon source within 1 px
(SExtractor's X_IMAGE/Y_IMAGE minus 1 against tenmon's 0-based x, y). Time: tenmon's extraction,
best of 3 (the process is warm), and SExtractor's run (including writing the frame and reading
its catalogue).

Frames are split in two: the "tuning" frames are the ones whose misses were looked at while
choosing tenmon's settings; the "reporting" frames were not looked at and only measured.

Run:  .venv/bin/python benchmarks/sources_vs_sextractor.py [--markdown docs/bench/sources.md]
      [--json out.json] [--speed-frame-size 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tenmon.vision.frames import sources as src  # noqa: E402
from tenmon.vision.frames.sextractor import agreement, find_program, run_sextractor  # noqa: E402

DATA = ROOT / "tests" / "data" / "sources"

#: (file, telescope / camera, role)
FRAMES = [
    ("c4d_170316_062107_ooi_z_ls9.N2.fits", "CTIO Blanco 4 m / DECam, z", "tuning"),
    ("c4d_171113_060340_ooi_r_ls9.N6.fits", "CTIO Blanco 4 m / DECam, r", "tuning"),
    ("k4m_160319_075112_ooi_zd_ls9.CCD3.fits", "KPNO Mayall 4 m / Mosaic-3, z", "tuning"),
    ("ksb_170430_055945_ooi_r_ls9.CCD4.fits", "Steward Bok 2.3 m / 90Prime, r", "tuning"),
    ("monet_small.fits", "MONET 1.2 m", "tuning"),
    ("hsc_crs.fits", "Subaru / Hyper Suprime-Cam (cosmic rays left in)", "tuning"),
    ("NGC3344.Mono.16.fits", "amateur telescope, NGC 3344 (processed)", "tuning"),
    ("M51.16.Mono.fits", "amateur telescope, M51 luminance (processed)", "tuning"),
    ("HSC-0908120-056-small.fits", "Subaru / Hyper Suprime-Cam, visit 908120 CCD 56", "reporting"),
    ("ksb_180313_081856_ooi_g_ls9.CCD4.fits", "Steward Bok 2.3 m / 90Prime, g", "reporting"),
    ("k4m_160311_103249_ooi_zd_v2-ccd3.fits", "KPNO Mayall 4 m / Mosaic-3, z", "reporting"),
    ("k4m_160313_102424_ooi_zd_v2-ccd3.fits", "KPNO Mayall 4 m / Mosaic-3, z", "reporting"),
    ("c4d_150411_035242_ooi_z_v1-N10.fits", "CTIO Blanco 4 m / DECam, z", "reporting"),
    ("c4d_131122_030338_ooi_z_ls9.S21.fits", "CTIO Blanco 4 m / DECam, z", "tuning"),
    ("c4d_141029_043225_ooi_g_ls9.N26.fits", "CTIO Blanco 4 m / DECam, g", "reporting"),
    ("c4d_141029_043420_ooi_r_ls9.N26.fits", "CTIO Blanco 4 m / DECam, r", "reporting"),
]

#: Reporting frames added in the second round (issue 16), chosen before they were first measured.
ADDED = [
    ("ystar-saao-long.fits", "YSTAR telescope, SAAO / Apogee CCD, R (M5 field, satellite trail)", "reporting"),
    ("c4d_150110_053718_ooi_z_ls9.S4.fits", "CTIO Blanco 4 m / DECam, z", "reporting"),
    ("c4d_150110_053718_ooi_z_ls9.S11.fits", "CTIO Blanco 4 m / DECam, z", "reporting"),
    ("c4d_171113_061941_ooi_r_ls9.S4.fits", "CTIO Blanco 4 m / DECam, r", "reporting"),
    ("c4d_170916_045042_ooi_r_ls9.N15.fits", "CTIO Blanco 4 m / DECam, r", "reporting"),
    ("c4d_181104_072440_ooi_g_ls9.S4.fits", "CTIO Blanco 4 m / DECam, g", "reporting"),
    ("c4d_181214_050844_ooi_g_ls9.S9.fits", "CTIO Blanco 4 m / DECam, g", "reporting"),
    ("c4d_181215_045000_ooi_z_ls9.S9.fits", "CTIO Blanco 4 m / DECam, z", "reporting"),
    ("c4d_181215_051332_ooi_r_ls9.S9.fits", "CTIO Blanco 4 m / DECam, r", "reporting"),
]
FRAMES += ADDED
ADDED_NAMES = {name for name, _, _ in ADDED}


def read(path: Path) -> tuple[np.ndarray, fits.Header]:
    with fits.open(path) as h:
        hdu = next(x for x in h if x.data is not None and x.data.ndim == 2)
        return np.asarray(hdu.data, dtype=np.float32), hdu.header


def header_value(header: fits.Header, keys: tuple[str, ...]) -> float | None:
    for k in keys:
        v = header.get(k)
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return None


def measure(name: str) -> dict:
    img, hdr = read(DATA / name)
    gain = header_value(hdr, ("GAIN", "EGAIN"))
    sat = header_value(hdr, ("SATURATE", "SATLEVEL"))
    t0 = time.perf_counter()
    ref = run_sextractor(img, gain=gain, saturation_adu=sat)
    t_sex = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        ours = src.extract_sources(img, gain=gain, saturation_adu=sat)
        times.append(time.perf_counter() - t0)
    a = agreement(ref, ours, min_snr=10.0, radius_px=1.0)
    misses = []
    for i in a["missed"]:
        d = np.hypot(np.asarray(ours["x"]) - ref["x"][i], np.asarray(ours["y"]) - ref["y"][i])
        misses.append({"x": float(ref["x"][i]), "y": float(ref["y"][i]), "snr": float(ref["snr"][i]),
                       "flags": int(ref["flags"][i]), "isoarea": int(ref["isoarea"][i]),
                       "nearest_tenmon_px": float(d.min()) if len(d) else None})
    return {"misses": misses, "frame": name, "shape": list(img.shape), "gain": gain, "saturation": sat, "n_sextractor": len(ref),
            "n_tenmon": len(ours), "n_ref_snr10": a["n_ref"], "n_matched": a["n_matched"],
            "agreement": a["fraction"], "median_sep_px": a["median_sep_px"], "fwhm_px": ours.meta.get("fwhm_px"),
            "t_tenmon_s": min(times), "t_sextractor_s": t_sex, "version": ref.meta.get("version")}


def speed(size: int) -> dict:
    """tenmon's extraction on a size x size frame tiled from the real MONET frame (real PSF and
    noise, ~ 74 stars per 512^2 tile), against SExtractor on the same pixels."""
    tile, _ = read(DATA / "monet_small.fits")
    reps = int(np.ceil(size / tile.shape[0]))
    img = np.ascontiguousarray(np.tile(tile, (reps, reps))[:size, :size])
    times, t_bkg, t_det = [], [], []
    for _ in range(3):
        t0 = time.perf_counter()
        ours = src.extract_sources(img)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bkg = src.measure_background(img)
        t_bkg.append(time.perf_counter() - t0)
        sub = np.ascontiguousarray(img - bkg.level, dtype=np.float32)
        t0 = time.perf_counter()
        src._detect(sub, bkg.global_rms, None, src.SourceSettings())
        t_det.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ref = run_sextractor(img)
    t_sex = time.perf_counter() - t0
    return {"size": size, "n_tenmon": len(ours), "n_sextractor": len(ref), "t_tenmon_s": min(times),
            "t_background_s": min(t_bkg), "t_detect_s": min(t_det), "t_sextractor_s": t_sex}


def rendered_speed(size: int) -> dict:
    """tenmon's extraction on a rendered size x size frame (tenmon.vision.render.sky: Moffat PSF of
    FWHM 2.5 px, sky, noise, cosmic rays and hot pixels left in, as `tenmon solve` sees a frame)."""
    from tenmon.vision.render.sky import render_star_field, simple_wcs
    from tenmon.vision.solve.catalogs import SimulatedSky

    sky = SimulatedSky(seed=11)
    shape = (size, size)
    wcs = simple_wcs((210.0, 54.0), shape=shape, pixel_scale_arcsec=0.32, rotation_deg=30.0)
    fr = render_star_field(wcs=wcs, stars=sky.stars_for_wcs(wcs, shape), shape=shape, fwhm_px=2.5, seed=5)
    img = np.ascontiguousarray(fr.image, dtype=np.float32)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        ours = src.extract_sources(img, gain=1.5, saturation_adu=60000.0)
        times.append(time.perf_counter() - t0)
    return {"size": size, "n_tenmon": len(ours), "fwhm_px": ours.meta.get("fwhm_px"), "true_fwhm_px": 2.5,
            "t_tenmon_s": min(times)}


def pooled(rows: list[dict], role: str) -> tuple[int, int]:
    """Matched and reference counts over the frames of ``role``: "tuning", "reporting" (the
    first round's reporting frames), "added" (the reporting frames added in the second round)."""
    if role == "added":
        sel = [r for r in rows if r["frame"] in ADDED_NAMES]
    elif role == "reporting":
        sel = [r for r in rows if r["role"] == "reporting" and r["frame"] not in ADDED_NAMES]
    else:
        sel = [r for r in rows if r["role"] == role]
    return sum(r["n_matched"] for r in sel), sum(r["n_ref_snr10"] for r in sel)


POOLED = (("tuning", "tuning frames"), ("reporting", "reporting frames of the first round"),
          ("added", "reporting frames added in the second round (chosen before measuring)"))


def added_counts(rows: list[dict]) -> str:
    """Where the added reporting frames' SNR >= 10 objects are (most are on one frame)."""
    sel = [r for r in rows if r["frame"] in ADDED_NAMES]
    big = max(sel, key=lambda r: r["n_ref_snr10"])
    rest = [r["n_ref_snr10"] for r in sel if r is not big]
    return (f"Of their {sum(r['n_ref_snr10'] for r in sel)} SNR >= 10 objects, {big['n_ref_snr10']} are on "
            f"{big['frame']}; the other {len(rest)} frames hold {min(rest)}-{max(rest)} each, so their "
            "per-frame figures say little alone.")


def markdown(rows: list[dict], sp: dict | None, cmd: str, rs: dict | None = None) -> str:
    out = ["# Sources against SExtractor on real frames", "",
           f"Rerun: `{cmd}` (about a minute on 2 shared cores).", "",
           f"Reference: {rows[0]['version']} (Debian's `source-extractor`), default configuration "
           "(`-dd`: 1.5 sigma, minimum area 5, default.conv 3x3 pyramid filter, 32 deblending "
           "thresholds, contrast 0.005, cleaning 1.0, background mesh 64 / filter 3) plus the frame's "
           "GAIN and SATURATE where its header has them. tenmon: `extract_sources` with its defaults "
           "(the same choices through sep), same gain and saturation.", "",
           "Agreement: SExtractor's objects with SNR >= 10 (FLUX_AUTO / FLUXERR_AUTO) that have a tenmon "
           "source within 1 px. Frames in tests/data/sources/ (provenance in tests/data/PROVENANCE.md). "
           "*Tuning* frames are those whose misses were inspected while choosing the settings; "
           "*reporting* frames were only measured.", "",
           "| frame | telescope | role | size | SExtractor objects | SNR >= 10 | matched within 1 px | agreement "
           "| median sep. [px] | tenmon FWHM [px] | tenmon [s] | SExtractor [s] |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ag = "n/a" if r["agreement"] is None else f"{100 * r['agreement']:.1f} %"
        ms = "" if r["median_sep_px"] is None else f"{r['median_sep_px']:.3f}"
        fw = "" if r["fwhm_px"] is None else f"{r['fwhm_px']:.2f}"
        role = "reporting (added)" if r["frame"] in ADDED_NAMES else r["role"]
        out.append(f"| {r['frame']} | {r['telescope']} | {role} | {r['shape'][1]}x{r['shape'][0]} | "
                   f"{r['n_sextractor']} | {r['n_ref_snr10']} | {r['n_matched']} | {ag} | {ms} | {fw} | "
                   f"{r['t_tenmon_s']:.3f} | {r['t_sextractor_s']:.3f} |")
    out.append("")
    for role, label in POOLED:
        m, n = pooled(rows, role)
        if n:
            out.append(f"- {label} pooled: {m}/{n} = {100 * m / n:.1f} %")
    m = sum(r["n_matched"] for r in rows)
    n = sum(r["n_ref_snr10"] for r in rows)
    out.append(f"- all frames pooled: {m}/{n} = {100 * m / max(n, 1):.1f} %")
    out += ["", "Every miss (SExtractor's SNR >= 10 objects without a tenmon source within 1 px; 0-based "
            "pixel positions, SExtractor's FLAGS: 1 neighbours, 2 blended, 4 saturated, 8 truncated at the "
            "border, 16 incomplete aperture data):", "",
            "| frame | role | x | y | SExtractor SNR | FLAGS | ISOAREA | nearest tenmon source [px] |",
            "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        role = "reporting (added)" if r["frame"] in ADDED_NAMES else r["role"]
        for ms in r["misses"]:
            near = "none" if ms["nearest_tenmon_px"] is None else f"{ms['nearest_tenmon_px']:.2f}"
            out.append(f"| {r['frame']} | {role} | {ms['x']:.2f} | {ms['y']:.2f} | {ms['snr']:.1f} | "
                       f"{ms['flags']} | {ms['isoarea']} | {near} |")
    out += ["", "## What made tenmon's catalogue differ from SExtractor's, and what was changed", "",
            "Before this comparison tenmon agreed with SExtractor on 85 % of SNR >= 10 objects of a real "
            "ESO frame (the issue's figure); a first attempt with SExtractor's detection choices reached "
            "97 % on most frames but 94 % on DECam/Mosaic-3 cut-outs. With SExtractor's misses listed "
            "one by one (the tuning frames), four causes remained, each fixed at its root:", "",
            "1. **Threshold noise.** SExtractor without a weight map thresholds at DETECT_THRESH times the "
            "*global* sky rms; tenmon thresholded on the per-pixel rms map, so near bright galaxies, "
            "nebulae and bright stars (where the mesh rms is inflated) it found fewer objects and "
            "deblended differently. With the global rms, sep's detection gives SExtractor's object count "
            "on every frame here to within 3 (M51: 1002 against 999).",
            "2. **Filter, deblending, cleaning.** SExtractor's default.conv (3x3 pyramid), "
            "DEBLEND_MINCONT 0.005 replace the Gaussian of the guessed FWHM and 0.001; cleaning "
            "(CLEAN_PARAM 1.0, already sep's default) is now an explicit setting.",
            "3. **Positions of objects that are not point sources.** tenmon refined every position with "
            "a PSF-sized window and a PSF fit; on extended, elongated, saturated or border objects that "
            "moves the position by 1-3 px from the isophotal barycentre (SExtractor's X_IMAGE). These "
            "now keep the barycentre; round compact sources (deblended ones judged by their own "
            "isophotal size) keep the windowed centroid and PSF fit, whose accuracy on stars is "
            "unchanged (tests/vision/test_sources_positions.py).",
            "4. **SNR definition.** tenmon dropped detections whose aperture SNR, with the *local* rms, "
            "was below 5; SExtractor's SNR (FLUX_AUTO / FLUXERR_AUTO) uses the global rms, so inside a "
            "galaxy's disc it counts objects at SNR 10-20 that the local noise puts at 1-4. A detection "
            "is now kept when either its aperture SNR or `snr_auto` (FLUX_AUTO / FLUXERR_AUTO computed "
            "as SExtractor does) reaches min_snr; `flux_err` keeps the local noise.", "",
            "And the frame's FWHM: on a frame whose cosmic rays and hot pixels were not cleaned (what "
            "`tenmon solve` is given) the brightest \"stars\" were cosmic rays and the FWHM came out at "
            "the fit's floor, 0.50 px (\"that FWHM is doubtful\"); sharp objects are now left out of the "
            "FWHM fit (hsc_crs.fits: 0.72 -> 2.90 px), and `tenmon solve` uses the frame pipeline's "
            "extraction with the header's GAIN and SATURATE.", "",
            "Second round (issue 16, scope 4). The first round left four misses on the tuning frames and "
            "one on a reporting frame (c4d S21, whose misses were then inspected: it is a tuning frame "
            "now). Each was looked at (position, SExtractor's flags and SNR, what tenmon found near it), "
            "and three causes were changed, each one a documented SExtractor behaviour checked on the "
            "tuning frames:",
            "",
            "5. **No PSF refinement without a measured PSF.** hsc_crs.fits (a cosmic-ray worm, not a star; "
            "SExtractor SNR 315) and c4d S21 (a blended object beside a 100x100 cut-out's border) were both "
            "found by sep at SExtractor's position to 0.01 px, then moved 1.2 and 2.5 px by the windowed "
            "centroid and PSF fit. On both frames fewer than 3 stars could be fitted for the frame's PSF, "
            "so its FWHM was a guess (S21: ~13 px from 3 blended objects, a 5.5 px centroid window). "
            "Without a measured PSF, objects now keep the isophotal barycentre, X_IMAGE. (A first attempt, "
            "giving every refined position more than 0.5 px from the barycentre back to it, was dropped: "
            "on a rendered raw frame it put stars hit by cosmic rays or hot pixels back on the biased "
            "barycentre, the 100 brightest sources' rms error against the truth went from 0.15 to 0.29 px "
            "and tests/vision/test_solve_hinted.py failed.)",
            "6. **Neighbours in the Kron aperture.** SExtractor's FLUX_AUTO leaves the pixels of other "
            "detected objects out of the Kron radius and flux (MASK_TYPE CORRECT, its default: each "
            "replaced by its mirror pixel); tenmon summed them. sep's segmentation map now masks them, "
            "and the flux is scaled by the aperture's area over its unmasked area (at most 2: a mirror "
            "can replace each pixel only once).",
            "7. **SExtractor's AUTO aperture for snr_auto.** M51's miss (SExtractor SNR 11.4 inside the "
            "galaxy) lies where the mesh background sits ~3000 ADU above the local sky: its Kron radius "
            "cannot be measured (first moment <= 0), tenmon fell back to a 2-FWHM circle whose sum was "
            "negative, and the SNR cut dropped it. SExtractor then uses its minimum aperture, 3.5 "
            "isophotal a and b (PHOT_AUTOPARAMS 2.5, 3.5). `snr_auto` now uses exactly that aperture; "
            "`flux` keeps the 2-FWHM floor for a star's whole light.",
            "",
            "Not changed: k4m_160319 CCD3's miss (SExtractor SNR 11, blended). With cleaning off, sep and "
            "SExtractor find the same five objects there, at the same positions; SExtractor's cleaning "
            "keeps this one, sep's removes it. SExtractor cleans object by object in scan order (an object "
            "already eaten can no longer eat, and the eater gains its flux); matching that would mean "
            "reimplementing SExtractor's cleaning outside sep, with thresholds sep does not return. "
            "Left as a known difference.",
            "",
            "These changes leave the frame pipeline's rendered frames as they were: `PYTHONPATH=src python "
            "benchmarks/frame_pipeline.py --frames 2 --skip-speed`, run by hand on main and on this "
            "change, gives the same completeness above SNR 10 (98.01 %) and the same position rms "
            "(0.1198 px radial) to the last digit; tests/vision/test_solve_hinted.py and "
            "test_sources_positions.py pass. Cost: on the 2048x2048 frame tiled from the MONET frame, "
            "`extract_sources` took 0.80-1.19 s of CPU time on main and 0.79-1.28 s with this change "
            "(4 runs each, alternating, by hand, under load average ~19): no difference the load lets "
            "one see.",
            "",
            "New reporting frames (chosen before any of them was measured, provenance in "
            "tests/data/PROVENANCE.md): a 512x512 frame of the YSTAR telescope at SAAO (M5 field with a "
            "satellite trail, no GAIN/SATURATE in its header), and every ~100x100 DECam test image of "
            "legacysurvey/legacypipe not already here (8 frames; the 41x51 and 60x60 ones are smaller "
            "than one background mesh and were left out). Public repositories hold few real frames of "
            "other telescopes under permissive licences that are small enough; the frames looked at and "
            "not taken were simulator frames (INDI CCD simulator), tables, or of unclear origin. " + added_counts(rows)]
    if sp:
        out += ["", f"Speed: a {sp['size']}x{sp['size']} frame tiled from the MONET frame: tenmon "
                f"{sp['t_tenmon_s']:.2f} s end to end ({sp['n_tenmon']} sources; of which background "
                f"{sp['t_background_s']:.2f} s and sep's detection with SExtractor's choices {sp['t_detect_s']:.2f} s; "
                f"the rest is FWHM, windowed centroids, PSF fit, photometry), SExtractor "
                f"{sp['t_sextractor_s']:.2f} s ({sp['n_sextractor']} objects, including writing and reading files)."]
    if rs:
        out += ["", f"A rendered {rs['size']}x{rs['size']} frame with its cosmic rays and hot pixels left in "
                f"(true FWHM {rs['true_fwhm_px']} px): {rs['n_tenmon']} sources, frame FWHM "
                f"{rs['fwhm_px']:.2f} px, {rs['t_tenmon_s']:.2f} s. (The code before the first round measured "
                "0.50 px there, found 247 sources and took 0.9-1.2 s on the same loaded machine, measured "
                "by hand with the commit of sources.py before the first round; not rerun by this script.)"]
    out += ["", "On the frame pipeline's rendered frames with truth (`PYTHONPATH=src python "
            "benchmarks/frame_pipeline.py --frames 4 --skip-speed`, seeds 10000-10003, measured by hand before "
            "and after the first round's change; not rerun by this script): completeness above SNR 10 98.46 -> 98.32 % "
            "(1407 -> 1405 of 1429 stars), radial position rms of isolated stars 0.1126 -> 0.1123 px "
            "(1.019x the Cramer-Rao bound both), of all matched stars 0.1254 -> 0.1271 px; 10 % more "
            "sources per frame (the global-rms threshold); the sources step 430-590 ms before, 300-990 ms "
            "after, on the loaded machine."]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    out += ["", f"Timings are from a shared 2-core machine under load (load average {load} over 1, 5, 15 min "
            "when this report was written); they vary by tens of per cent between runs, several-fold under "
            "heavy load."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--markdown", type=Path, help="write the markdown report here")
    p.add_argument("--json", type=Path, help="write the figures as JSON here")
    p.add_argument("--speed-frame-size", type=int, default=2048, help="0 skips the speed run")
    args = p.parse_args(argv)
    if find_program() is None:
        print("source-extractor is not installed (apt-get install source-extractor)", file=sys.stderr)
        return 1
    warnings.simplefilter("ignore")
    rows = []
    for name, telescope, role in FRAMES:
        r = measure(name)
        r.update(telescope=telescope, role=role)
        rows.append(r)
        ag = "n/a" if r["agreement"] is None else f"{100 * r['agreement']:.1f} %"
        print(f"{name:42s} {role:9s} SNR>=10 {r['n_ref_snr10']:4d} matched {r['n_matched']:4d} {ag:>8s}  "
              f"tenmon {r['t_tenmon_s']:.3f} s  SExtractor {r['t_sextractor_s']:.3f} s", flush=True)
    for role, label in POOLED:
        m, n = pooled(rows, role)
        print(f"{label} pooled: {m}/{n} = {100 * m / max(n, 1):.1f} %")
    sp = speed(args.speed_frame_size) if args.speed_frame_size else None
    rs = rendered_speed(args.speed_frame_size) if args.speed_frame_size else None
    if rs:
        print(f"rendered {rs['size']}^2: {rs['n_tenmon']} sources, FWHM {rs['fwhm_px']:.2f} px, {rs['t_tenmon_s']:.3f} s")
    if sp:
        print(f"speed {sp['size']}^2: tenmon {sp['t_tenmon_s']:.3f} s, SExtractor {sp['t_sextractor_s']:.3f} s")
    cmd = ".venv/bin/python benchmarks/sources_vs_sextractor.py --markdown docs/bench/sources.md"
    if args.markdown:
        args.markdown.write_text(markdown(rows, sp, cmd, rs))
    if args.json:
        args.json.write_text(json.dumps({"frames": rows, "speed": sp, "rendered": rs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
