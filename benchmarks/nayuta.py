"""Following Nayuta on seeded simulated cases: slit, target, sky position by both routes, photometry, centring.

Each case: a target of random magnitude (11-17.5) at a random place (Dec -30..80) added to the
simulated sky (seed 2000, never used by the tests); Nayuta's slit viewer (7' x 4', 0.2"/px
unbinned by default) with random rotation, parity, slit angle, seeing (1.0-2.5"), sky (19.5-21.2
mag/arcsec^2), the target off the slit centre by up to 5" along it and 0.15" rms across it, its
header position off by 20" rms; the 60 cm frame (1024 x 1024 binned, 0.64"/px, 11') pointed up
to 5' away (uniform over the disc) at a random rotation. ``locate_target`` runs both routes:
solving the slit viewer with the hinted solver (hint: Nayuta's header position, 0.05 deg), and
registering it in the 60 cm frame, whose WCS comes from solving it (hint: the mount's position,
0.1 deg). Then a centring step as the daemon would do it: sync the 60 cm on its solved frame,
goto the located target, with a mount that repeats to 2" rms; the next frame's true centre is
compared with the true target.

    .venv/bin/python benchmarks/nayuta.py > docs/bench/nayuta.md          (about 5 minutes)
    .venv/bin/python benchmarks/nayuta.py --sv-scale 0.4 --cases 50 --section >> docs/bench/nayuta.md
                                                   (the simulated feed's 2x2-binned read-out, ~3 minutes)
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from astropy.table import Table
from tqdm import tqdm

from tenmon.vision import nayuta as N
from tenmon.vision.render.sky import render_star_field, simple_wcs
from tenmon.vision.solve.base import SolveHint
from tenmon.core.astro import separation_deg as angular_distance_deg
from tenmon.vision.solve.catalogs import SimulatedSky
from tenmon.vision.solve.centering import centering_step
from tenmon.vision.solve.chain import SolverSettings, build_chain

SKY_SEED = 2000
CASE_SEED0 = 20_000
F60_SHAPE = (1024, 1024)
F60_SCALE = 0.64
F60_FWHM_ARCSEC = 2.0
REPEAT_ARCSEC = 2.0  # the 60 cm mount's repeatability after a sync (rms per axis), assumed


def sep(ra1, dec1, ra2, dec2) -> float:
    return float(angular_distance_deg(np.array([ra1]), np.array([dec1]), ra2, dec2)[0] * 3600.0)


def offset(ra, dec, east_arcsec, north_arcsec):
    return ((ra + east_arcsec / 3600.0 / math.cos(math.radians(dec))) % 360.0, dec + north_arcsec / 3600.0)


def render60(sky, ra, dec, rot, seed):
    w = simple_wcs((ra, dec), shape=F60_SHAPE, pixel_scale_arcsec=F60_SCALE, rotation_deg=rot)
    fr = render_star_field(wcs=w, stars=sky.stars_for_wcs(w, F60_SHAPE), shape=F60_SHAPE,
                           fwhm_px=F60_FWHM_ARCSEC / F60_SCALE, sky_adu=300.0, exposure_s=30.0, seed=seed)
    return fr


def run_case(k: int, rng: np.random.Generator, base: SimulatedSky, sv_scale: float) -> dict:
    ra, dec = rng.uniform(0, 360), rng.uniform(-30, 80)
    mag = rng.uniform(11.0, 17.5)
    sky = N.SkyWithExtraStars(base, Table({"ra": [ra], "dec": [dec], "mag": [mag]}))
    chain = build_chain(SolverSettings(order=["hinted"]), catalog=sky)
    sv_chain = N.slit_viewer_chain(SolverSettings(order=["hinted"]), catalog=sky, sv_scale_arcsec=sv_scale)
    shape = (int(round(240 / sv_scale)), int(round(420 / sv_scale)))
    rot, parity = rng.uniform(0, 360), ("normal", "flipped")[int(rng.integers(2))]
    slit_angle, seeing, sky_mag = rng.uniform(0, 180), rng.uniform(1.0, 2.5), rng.uniform(19.5, 21.2)
    along, across = rng.uniform(-5, 5), rng.normal(0, 0.15)
    t0 = time.perf_counter()
    img, truth = N.render_slit_viewer(target_ra_deg=ra, target_dec_deg=dec, sky=sky, scale_arcsec_px=sv_scale,
                                      shape=shape, rotation_deg=rot, parity=parity, slit_angle_deg=slit_angle,
                                      seeing_arcsec=seeing, sky_mag_arcsec2=sky_mag, target_mag=None,
                                      target_offset_arcsec=(along, across), seed=CASE_SEED0 + k)
    t_render = time.perf_counter() - t0
    nay_ra, nay_dec = offset(ra, dec, *rng.normal(0, 20.0, 2))  # Nayuta's header position
    # the 60 cm: commanded to Nayuta's position, off by its pointing error (up to 5')
    r = 300.0 * math.sqrt(rng.uniform(0, 1))
    pa = rng.uniform(0, 2 * math.pi)
    err_e, err_n = r * math.sin(pa), r * math.cos(pa)
    true60 = offset(nay_ra, nay_dec, err_e, err_n)
    rot60 = rng.uniform(0, 360)
    fr = render60(sky, *true60, rot60, CASE_SEED0 + 500 + k)
    hint_sv = SolveHint(ra_deg=nay_ra, dec_deg=nay_dec, radius_deg=0.05, scale_arcsec=sv_scale)
    hint60 = SolveHint(ra_deg=nay_ra, dec_deg=nay_dec, radius_deg=0.1, scale_arcsec=F60_SCALE)
    t0 = time.perf_counter()
    loc = N.locate_target(img, sv_hint=hint_sv, sv_exposure_s=truth.exposure_s, sv_gain=truth.gain,
                          sv_saturation_adu=65535.0, solver=sv_chain, frame_solver=chain,
                          frame60=N.Frame60(image=fr.image, scale_arcsec=F60_SCALE, hint=hint60, exposure_s=30.0,
                                            gain=1.5, saturation_adu=65535.0),
                          settings=N.NayutaSettings(sv_scale_arcsec=sv_scale))
    t_locate = time.perf_counter() - t0
    row = {"k": k, "mag": mag, "seeing": seeing, "sky_mag": sky_mag, "off60_arcmin": r / 60.0,
           "t_render": t_render, "t_locate": t_locate, "t_slit": loc.slit.elapsed_ms / 1000,
           "t_target": loc.target.elapsed_ms / 1000, "slit": loc.slit.found, "located": loc.located,
           "method": loc.method, "reason": loc.reason}
    if loc.slit.found:
        row["slit_angle_err"] = abs((loc.slit.angle_deg - slit_angle + 90) % 180 - 90)
        row["slit_width_err"] = loc.slit.width_px / truth.slit_width_px - 1.0
    t = loc.target
    row["target"] = t.found and math.hypot(t.x - truth.target_xy[0], t.y - truth.target_xy[1]) * sv_scale < 1.0
    row["target_found_elsewhere"] = t.found and not row["target"]
    if t.found:
        row["target_err_arcsec"] = math.hypot(t.x - truth.target_xy[0], t.y - truth.target_xy[1]) * sv_scale
    if t.found and not t.wings.saturated:  # the jaws reflect 0.9 of the light
        row["wings_ratio"] = t.wings.flux_adu / truth.target_flux_outside_adu
        if math.isfinite(t.flux_model_adu):
            row["model_dmag"] = -2.5 * math.log10(t.flux_model_adu / (0.9 * truth.target_flux_adu))
    for route, (r_ra, r_dec) in loc.ra_by_route.items():
        row[f"err_{route}"] = sep(r_ra, r_dec, ra, dec)
    row["sat60"] = loc.photometry_60cm is not None and loc.photometry_60cm.saturated
    row["sat_sv"] = t.found and t.wings.saturated
    if loc.mag_60cm is not None and not row["sat60"]:
        true_mag60 = -2.5 * math.log10(10 ** (-0.4 * (mag - 22.5)) / 1.5)  # ADU/s: zero point 22.5, gain 1.5
        row["mag60_err"] = loc.mag_60cm - true_mag60
    # centring: sync the mount on the solved first frame, goto the located target
    if loc.located and loc.frame_solve is not None and loc.frame_solve.solved:
        step = centering_step(target_ra_deg=loc.target_ra_deg, target_dec_deg=loc.target_dec_deg,
                              solved_ra_deg=loc.frame_solve.ra_deg, solved_dec_deg=loc.frame_solve.dec_deg,
                              mount_ra_deg=nay_ra, mount_dec_deg=nay_dec, try_number=1)
        # after the sync the mount's model is right where it was solved; the goto lands within its repeatability
        goto_ra = step.goto_ra_deg if step.goto_ra_deg is not None else nay_ra
        goto_dec = step.goto_dec_deg if step.goto_dec_deg is not None else nay_dec
        landed = offset(goto_ra, goto_dec, *rng.normal(0, REPEAT_ARCSEC, 2))
        fr2 = render60(sky, *landed, rot60, CASE_SEED0 + 900 + k)
        s2 = chain.solve(N.extract(fr2.image), F60_SHAPE,
                         SolveHint(ra_deg=goto_ra, dec_deg=goto_dec, radius_deg=0.05, scale_arcsec=F60_SCALE))
        row["centred_true_arcsec"] = sep(*landed, ra, dec)
        row["centred_solved_arcsec"] = sep(s2.ra_deg, s2.dec_deg, ra, dec) if s2.solved else math.nan
    return row


def pct(v, q):
    v = [x for x in v if x is not None and math.isfinite(x)]
    return float(np.percentile(v, q)) if v else math.nan


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--sv-scale", type=float, default=N.SV_SCALE_ARCSEC, help="slit-viewer scale, arcsec/px")
    ap.add_argument("--section", action="store_true", help="print a section to append, not a page")
    args = ap.parse_args()
    base = SimulatedSky(seed=SKY_SEED)
    rng = np.random.default_rng(CASE_SEED0)
    rows = []
    for k in tqdm(range(args.cases), desc="cases", file=sys.stderr, disable=not sys.stderr.isatty()):
        rows.append(run_case(k, rng, base, args.sv_scale))
    n = len(rows)
    shape = (int(round(240 / args.sv_scale)), int(round(420 / args.sv_scale)))
    col = lambda key: [r[key] for r in rows if key in r]  # noqa: E731
    out = sys.stdout
    if args.section:
        print(f"\n## Slit viewer at {args.sv_scale}\"/px\n", file=out)
        print(f"Rerun: `.venv/bin/python benchmarks/nayuta.py --cases {args.cases} --sv-scale {args.sv_scale} "
              "--section >> docs/bench/nayuta.md`.\n", file=out)
    else:
        print("# Following Nayuta: slit, target, sky position, brightness\n", file=out)
        print(f"Rerun: `.venv/bin/python benchmarks/nayuta.py --cases {args.cases} --sv-scale {args.sv_scale} > "
              "docs/bench/nayuta.md` (about 5 minutes on 2 shared cores; rendering is a third of it).\n", file=out)
    print(f"{n} seeded cases (simulated sky seed {SKY_SEED}, case seed {CASE_SEED0}). Slit viewer: 7' x 4' at "
          f"{args.sv_scale}\"/px ({shape[1]} x {shape[0]} px), 1.2\" slit, 10 s, zero point 24.5; random rotation, "
          "parity, slit angle, seeing 1.0-2.5\", sky 19.5-21.2 mag/arcsec^2, target mag 11-17.5 placed up to 5\" "
          "along and 0.15\" rms across the slit centre; Nayuta's header position 20\" rms off. 60 cm frame: "
          f"{F60_SHAPE[1]} x {F60_SHAPE[0]} px at {F60_SCALE}\"/px (2x2 binned 0.32\"/px), 2\" seeing, 30 s, "
          "pointed 0-5' away from Nayuta's position, random rotation.\n", file=out)
    n_slit = sum(r["slit"] for r in rows)
    n_tgt = sum(r["target"] for r in rows)
    n_else = sum(r["target_found_elsewhere"] for r in rows)
    print("| figure | value | target |\n|---|---|---|", file=out)
    print(f"| slit found | {n_slit}/{n} | |", file=out)
    print(f"| slit angle error, median / max | {pct(col('slit_angle_err'), 50):.3f} / "
          f"{pct(col('slit_angle_err'), 100):.3f} deg | |", file=out)
    print(f"| slit width error, median abs / max abs | {pct(np.abs(col('slit_width_err')), 50):.1%} / "
          f"{pct(np.abs(col('slit_width_err')), 100):.1%} | |", file=out)
    print(f"| target found (within 1\" of the truth) | {n_tgt}/{n} ({n_tgt / n:.0%}) | |", file=out)
    print(f"| another star taken for the target | {n_else}/{n} | 0 |", file=out)
    print(f"| target position on the slit viewer, median / max | {pct(col('target_err_arcsec'), 50):.3f} / "
          f"{pct(col('target_err_arcsec'), 100):.3f}\" | |", file=out)
    for route in ("solve", "register"):
        e = col(f"err_{route}")
        within = sum(1 for x in e if x <= 10.0)
        print(f"| sky position by {route}: placed / within 10\" | {len(e)}/{n} / {within}/{n} | within 10\" |",
              file=out)
        print(f"| sky position error by {route}, median / 90 % / max | {pct(e, 50):.3f} / {pct(e, 90):.3f} / "
              f"{pct(e, 100):.3f}\" | median well under 10\" |", file=out)
    n_loc = sum(r["located"] for r in rows)
    print(f"| located (reported position), by solve / register | {n_loc}/{n}, "
          f"{sum(r['method'] == 'solve' for r in rows)} / {sum(r['method'] == 'register' for r in rows)} | |",
          file=out)
    c = col("centred_true_arcsec")
    print(f"| 60 cm centred on the target after one sync + goto (true), median / max | {pct(c, 50):.2f} / "
          f"{pct(c, 100):.2f}\" ({sum(1 for x in c if x <= 10)}/{len(c)} within 10\") | within 10\" |", file=out)
    c2 = col("centred_solved_arcsec")
    print(f"| same, as the next frame's solve sees it, median / max | {pct(c2, 50):.2f} / {pct(c2, 100):.2f}\" | |",
          file=out)
    print(f"| target saturated: slit viewer (wings) / 60 cm | {sum(r['sat_sv'] for r in rows)} / "
          f"{sum(r['sat60'] for r in rows)} of {n} (flagged; left out of the magnitude rows) | |", file=out)
    print(f"| wings flux / true light on the jaws, median (5-95 %), min-max | {pct(col('wings_ratio'), 50):.3f} "
          f"({pct(col('wings_ratio'), 5):.3f}-{pct(col('wings_ratio'), 95):.3f}), {pct(col('wings_ratio'), 0):.3f}-"
          f"{pct(col('wings_ratio'), 100):.3f} | ~1: the jaws' light, a lower bound of the star's |", file=out)
    print(f"| slit-corrected model mag - truth, median (5-95 %), max abs | {pct(col('model_dmag'), 50):+.3f} "
          f"({pct(col('model_dmag'), 5):+.3f} to {pct(col('model_dmag'), 95):+.3f}), "
          f"{pct(np.abs(col('model_dmag')), 100):.3f} | |", file=out)
    print(f"| 60 cm aperture mag - truth, median (5-95 %), max abs | {pct(col('mag60_err'), 50):+.3f} "
          f"({pct(col('mag60_err'), 5):+.3f} to {pct(col('mag60_err'), 95):+.3f}), "
          f"{pct(np.abs(col('mag60_err')), 100):.3f} | |", file=out)
    print(f"| time: find_slit / find_target, median | {pct(col('t_slit'), 50) * 1000:.0f} / "
          f"{pct(col('t_target'), 50) * 1000:.0f} ms | |", file=out)
    print(f"| time: locate_target (both routes, both frames' sources), median / max | {pct(col('t_locate'), 50):.2f} / "
          f"{pct(col('t_locate'), 100):.2f} s | |", file=out)
    print(f"| time: rendering the slit viewer, median | {pct(col('t_render'), 50):.2f} s | |", file=out)
    misses = [r for r in rows if not r["target"] or not r["located"]]
    if misses:
        print("\nCases not found or not located (target mag, seeing, sky, 60 cm offset, reason):\n", file=out)
        for r in misses:
            print(f"- case {r['k']}: mag {r['mag']:.2f}, seeing {r['seeing']:.2f}\", sky {r['sky_mag']:.2f}, "
                  f"60 cm {r['off60_arcmin']:.2f}' off: "
                  + ("another star taken for the target; " if r["target_found_elsewhere"] else "")
                  + (r["reason"] or f"located by {r['method']}"), file=out)
    worst = sorted((r for r in rows if "err_solve" in r), key=lambda r: -r["err_solve"])[:3]
    if worst:
        print("\nLargest solve-route errors: " + "; ".join(
            f"case {r['k']} {r['err_solve']:.3f}\" (mag {r['mag']:.1f})" for r in worst), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
