"""tenmon's sources against SExtractor itself, on real frames of several telescopes.

For every real frame in tests/data/sources/ (provenance in tests/data/PROVENANCE.md): Debian's
``source-extractor`` (SExtractor 2.25) with its default configuration plus the frame's gain and
saturation (header GAIN / SATURATE where present), then ``tenmon.vision.sources.extract_sources``
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
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tenmon.vision import sources as src  # noqa: E402
from tenmon.vision.sextractor import agreement, find_program, run_sextractor  # noqa: E402

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
    return {"frame": name, "shape": list(img.shape), "gain": gain, "saturation": sat, "n_sextractor": len(ref),
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
    """tenmon's extraction on a rendered size x size frame (tenmon.vision.skyrender: Moffat PSF of
    FWHM 2.5 px, sky, noise, cosmic rays and hot pixels left in, as `tenmon solve` sees a frame)."""
    from tenmon.vision.skyrender import render_star_field, simple_wcs
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
    sel = [r for r in rows if r["role"] == role]
    return sum(r["n_matched"] for r in sel), sum(r["n_ref_snr10"] for r in sel)


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
        out.append(f"| {r['frame']} | {r['telescope']} | {r['role']} | {r['shape'][1]}x{r['shape'][0]} | "
                   f"{r['n_sextractor']} | {r['n_ref_snr10']} | {r['n_matched']} | {ag} | {ms} | {fw} | "
                   f"{r['t_tenmon_s']:.3f} | {r['t_sextractor_s']:.3f} |")
    out.append("")
    for role in ("tuning", "reporting"):
        m, n = pooled(rows, role)
        if n:
            out.append(f"- {role} frames pooled: {m}/{n} = {100 * m / n:.1f} %")
    m, n = pooled(rows, "tuning")
    m2, n2 = pooled(rows, "reporting")
    out.append(f"- all frames pooled: {m + m2}/{n + n2} = {100 * (m + m2) / max(n + n2, 1):.1f} %")
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
            "Remaining misses: hsc_crs.fits, a cosmic-ray track deblended from a star and PSF-fitted "
            "(1.2 px off); k4m_160319 CCD3, an SNR 11 object that SExtractor deblends and sep does not "
            "(same algorithm and settings; not understood); c4d S21, a blended object at the border of "
            "a 100x100 cut-out whose 3 sources give no reliable frame FWHM; M51, one object inside the "
            "galaxy whose Kron flux comes out negative in tenmon (kept out by the SNR cut)."]
    if sp:
        out += ["", f"Speed: a {sp['size']}x{sp['size']} frame tiled from the MONET frame: tenmon "
                f"{sp['t_tenmon_s']:.2f} s end to end ({sp['n_tenmon']} sources; of which background "
                f"{sp['t_background_s']:.2f} s and sep's detection with SExtractor's choices {sp['t_detect_s']:.2f} s; "
                f"the rest is FWHM, windowed centroids, PSF fit, photometry), SExtractor "
                f"{sp['t_sextractor_s']:.2f} s ({sp['n_sextractor']} objects, including writing and reading files)."]
    if rs:
        out += ["", f"A rendered {rs['size']}x{rs['size']} frame with its cosmic rays and hot pixels left in "
                f"(true FWHM {rs['true_fwhm_px']} px): {rs['n_tenmon']} sources, frame FWHM "
                f"{rs['fwhm_px']:.2f} px, {rs['t_tenmon_s']:.2f} s. (The code before this change measured "
                "0.50 px there, found 247 sources and took 0.9-1.2 s on the same loaded machine, measured "
                "by hand with the previous commit of sources.py; not rerun by this script.)"]
    out += ["", "On the frame pipeline's rendered frames with truth (`PYTHONPATH=src python "
            "benchmarks/frame_pipeline.py --frames 4 --skip-speed`, seeds 10000-10003, measured by hand before "
            "and after this change; not rerun by this script): completeness above SNR 10 98.46 -> 98.32 % "
            "(1407 -> 1405 of 1429 stars), radial position rms of isolated stars 0.1126 -> 0.1123 px "
            "(1.019x the Cramer-Rao bound both), of all matched stars 0.1254 -> 0.1271 px; 10 % more "
            "sources per frame (the global-rms threshold); the sources step 430-590 ms before, 300-990 ms "
            "after, on the loaded machine."]
    out += ["", "Timings are from a shared 2-core machine under load (load average 6-9 during the run); "
            "they vary by tens of per cent between runs."]
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
    for role in ("tuning", "reporting"):
        m, n = pooled(rows, role)
        print(f"{role} pooled: {m}/{n} = {100 * m / max(n, 1):.1f} %")
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
