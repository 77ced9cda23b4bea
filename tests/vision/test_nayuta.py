"""Following Nayuta, the pure parts: the simulated slit viewer, the slit, the target, registration, the sky."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import Table

from tenmon.vision import nayuta as N
from tenmon.vision.render.sky import render_star_field, simple_wcs
from tenmon.vision.solve.base import SolveHint, describe_wcs
from tenmon.core.astro import separation_deg
from tenmon.vision.solve.catalogs import SimulatedSky
from tenmon.vision.solve.chain import build_chain
from tenmon.config.vision import SolverSettings

SV_SCALE = 0.4  # the simulated feed's 2x2-binned read-out: 7' x 4' in 1050 x 600 px
SV_SHAPE = (600, 1050)
F60_SCALE = 0.64  # the 60 cm's 2k x 2k at 0.32"/px read out 2x2 binned: 11' in 1024 px
F60_SHAPE = (1024, 1024)
SKY_SEED = 4242


def angle_diff(a: float, b: float, period: float = 180.0) -> float:
    return abs((a - b + period / 2) % period - period / 2)


def sep_arcsec(ra1, dec1, ra2, dec2) -> float:
    return float(separation_deg(np.array([ra1]), np.array([dec1]), ra2, dec2)[0] * 3600.0)


@pytest.fixture(scope="module")
def sky():
    return SimulatedSky(seed=SKY_SEED)


def render(sky, **kw):
    args = dict(target_ra_deg=133.3, target_dec_deg=21.7, sky=sky, scale_arcsec_px=SV_SCALE, shape=SV_SHAPE,
                target_mag=15.0, seed=1)
    args.update(kw)
    return N.render_slit_viewer(**args)


def frame60(sky, ra, dec, *, offset_arcmin=(2.0, -3.0), rotation=0.0, seed=3):
    """A 60 cm frame pointed ``offset_arcmin`` (east, north) away from (ra, dec)."""
    c_ra = ra + offset_arcmin[0] / 60.0 / math.cos(math.radians(dec))
    c_dec = dec + offset_arcmin[1] / 60.0
    w = simple_wcs((c_ra, c_dec), shape=F60_SHAPE, pixel_scale_arcsec=F60_SCALE, rotation_deg=rotation)
    fr = render_star_field(wcs=w, stars=sky.stars_for_wcs(w, F60_SHAPE), shape=F60_SHAPE, fwhm_px=2.0 / F60_SCALE,
                           sky_adu=300.0, exposure_s=30.0, seed=seed)
    return fr, (c_ra, c_dec)


# ------------------------------------------------------------------------------------ rendering


@pytest.mark.parametrize("rotation, parity", [(0.0, "normal"), (123.0, "flipped"), (300.0, "normal")])
def test_rendered_wcs_has_the_rotation_and_parity_asked_for(sky, rotation, parity):
    img, truth = render(sky, rotation_deg=rotation, parity=parity, seed=2)
    geo = describe_wcs(truth.wcs, SV_SHAPE)
    assert geo["parity"] == parity
    assert angle_diff(geo["rotation_deg"], rotation, 360.0) < 1e-6
    assert geo["scale_arcsec"] == pytest.approx(SV_SCALE, rel=1e-6)
    ra, dec = truth.wcs.all_pix2world(np.array([truth.target_xy]), 0)[0]
    assert sep_arcsec(ra, dec, 133.3, 21.7) < 1e-4
    assert img.shape == SV_SHAPE and img.dtype == np.float32


def test_slit_is_dark_and_the_target_loses_light_into_it(sky):
    img, truth = render(sky, slit_angle_deg=0.0, seed=3)
    cy = int(round(truth.slit_center_xy[1]))
    slit_rows = img[cy - 1 : cy + 1, 50:400]  # slit 3 px wide, along x; away from the target
    jaw_rows = img[cy + 20 : cy + 40, 50:400]
    assert np.median(slit_rows) == pytest.approx(truth.bias_adu, abs=3.0)
    assert np.median(jaw_rows) - np.median(slit_rows) == pytest.approx(truth.sky_adu, rel=0.1)
    # about half of a 1.6" star falls into a 1.2" slit
    assert 0.3 < truth.target_flux_outside_adu / (0.9 * truth.target_flux_adu) < 0.7


def test_rendering_is_seeded(sky):
    a, _ = render(sky, seed=7)
    b, _ = render(sky, seed=7)
    c, _ = render(sky, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_rendering_rejects_bad_arguments(sky):
    with pytest.raises(ValueError, match="parity"):
        render(sky, parity="mirror")
    with pytest.raises(ValueError, match="no star"):
        render(sky, target_mag=None, target_ra_deg=10.0, target_dec_deg=10.0)


def test_target_can_be_a_star_of_the_sky(sky):
    cone = sky.cone(133.3, 21.7, 0.05)
    pick = cone[(cone["mag"] > 13) & (cone["mag"] < 16)][0]
    _, truth = render(sky, target_ra_deg=float(pick["ra"]), target_dec_deg=float(pick["dec"]), target_mag=None)
    assert truth.target_mag == pytest.approx(float(pick["mag"]))


# ------------------------------------------------------------------------------------ the slit


@pytest.mark.parametrize("angle, rotation, parity", [(0.0, 0.0, "normal"), (33.3, 120.0, "flipped"),
                                                     (90.0, 250.0, "normal"), (147.2, 10.0, "flipped")])
def test_find_slit_angle_position_width(sky, angle, rotation, parity):
    img, truth = render(sky, slit_angle_deg=angle, rotation_deg=rotation, parity=parity, seed=11)
    g = N.find_slit(img)
    assert g.found and g.confidence > 0.8
    assert angle_diff(g.angle_deg, angle) < 0.05
    # the true slit centre lies on the found centre line
    _, t = g.to_slit(*truth.slit_center_xy)
    assert abs(float(t)) < 0.2
    assert g.width_px == pytest.approx(truth.slit_width_px, rel=0.08)
    assert g.depth_adu == pytest.approx(truth.sky_adu, rel=0.05)


def test_find_slit_of_finite_length(sky):
    img, truth = render(sky, slit_angle_deg=20.0, slit_length_arcsec=120.0, seed=12)
    g = N.find_slit(img)
    assert g.found
    assert g.length_px == pytest.approx(truth.slit_length_px, rel=0.1)
    assert math.hypot(g.center_x - truth.slit_center_xy[0], g.center_y - truth.slit_center_xy[1]) < 10.0


def test_no_slit_is_not_found(sky):
    img, _ = render(sky, slit_width_arcsec=1e-4, seed=13)
    g = N.find_slit(img)
    assert not g.found and g.confidence == 0.0 and "no dark band" in g.reason
    assert not g.band_mask(img.shape).any()


def test_find_slit_survives_a_sky_gradient(sky):
    img, truth = render(sky, slit_angle_deg=60.0, seed=14)
    yy, xx = np.mgrid[0 : SV_SHAPE[0], 0 : SV_SHAPE[1]]
    g = N.find_slit(img + (xx / SV_SHAPE[1] * 0.8 * truth.sky_adu).astype(np.float32))
    assert g.found and angle_diff(g.angle_deg, 60.0) < 0.05


def test_a_dead_column_is_not_taken_for_the_slit(sky):
    img, truth = render(sky, slit_width_arcsec=1e-4, seed=15)
    img[:, 300] = truth.bias_adu  # a column that reads no light
    g = N.find_slit(img)
    assert not g.found and "dead column" in g.reason


def test_find_slit_rejects_non_images():
    with pytest.raises(N.NayutaError, match="2-D"):
        N.find_slit(np.zeros(10))
    with pytest.raises(N.NayutaError, match="finite"):
        N.find_slit(np.full((50, 50), np.nan))


# ------------------------------------------------------------------------------------ the target


@pytest.mark.parametrize("mag, offset", [(13.0, (0.0, 0.0)), (15.5, (6.0, 0.2)), (17.0, (-8.0, -0.15))])
def test_find_target_position_and_brightness(sky, mag, offset):
    img, truth = render(sky, slit_angle_deg=75.0, target_mag=mag, target_offset_arcsec=offset, seed=21)
    g = N.find_slit(img)
    t = N.find_target(img, g, exposure_s=truth.exposure_s, gain=truth.gain)
    assert t.found, t.reason
    assert math.hypot(t.x - truth.target_xy[0], t.y - truth.target_xy[1]) < 0.3
    assert t.fwhm_px == pytest.approx(truth.fwhm_px, rel=0.1)
    # the wings are the light on the jaws: a lower bound of the star, close to what truly fell there
    wings = t.wings.flux_adu
    tol = 3 * t.wings.flux_err_adu + 0.03 * truth.target_flux_outside_adu
    assert abs(wings - truth.target_flux_outside_adu) < tol
    assert t.brightness_is_lower_bound and wings < t.flux_model_adu
    # the model fit recovers the whole star (times the jaws' reflectivity, 0.9)
    assert t.flux_model_adu == pytest.approx(0.9 * truth.target_flux_adu, rel=0.08)
    assert t.mag_model == pytest.approx(-2.5 * math.log10(t.flux_model_adu / truth.exposure_s))


def test_find_target_prefers_the_reference_point_over_a_brighter_field_star(sky):
    """A bright star also crossing the slit elsewhere must not be taken for the target."""
    img, truth = render(sky, slit_angle_deg=45.0, target_mag=16.0, seed=22)
    g = N.find_slit(img)
    s, _ = g.to_slit(*truth.target_xy)
    # a 12th-magnitude field star on the slit, 120" away along it
    bright_xy = g.to_pixel(float(s) - 300.0, 0.0)
    extra = Table({"ra": [0.0], "dec": [0.0], "mag": [12.0]})
    extra["ra"][0], extra["dec"][0] = truth.wcs.all_pix2world(np.array([bright_xy]), 0)[0]
    img2, _ = render(N.SkyWithExtraStars(sky, extra), slit_angle_deg=45.0, target_mag=16.0, seed=22)
    t = N.find_target(img2, N.find_slit(img2))
    assert t.found and t.n_candidates >= 2
    assert math.hypot(t.x - truth.target_xy[0], t.y - truth.target_xy[1]) < 0.5
    # told where Nayuta puts its targets, it picks the other one
    t2 = N.find_target(img2, N.find_slit(img2), reference_xy=bright_xy, reference_tolerance_px=20.0)
    assert math.hypot(t2.x - bright_xy[0], t2.y - bright_xy[1]) < 1.0


def test_a_saturated_target_is_flagged(sky):
    img, truth = render(sky, target_mag=9.0, seed=24)
    t = N.find_target(img, N.find_slit(img), saturation_adu=65535.0)
    assert t.found and t.wings.saturated
    img2, _ = render(sky, target_mag=14.0, seed=24)
    t2 = N.find_target(img2, N.find_slit(img2), saturation_adu=65535.0)
    assert t2.found and not t2.wings.saturated


def test_no_target_on_the_slit(sky):
    img, _ = render(sky, target_mag=26.0, seed=23)
    t = N.find_target(img, N.find_slit(img))
    assert not t.found and "no star straddles" in t.reason


def test_find_target_without_slit():
    t = N.find_target(np.zeros((40, 40)), N.SlitGeometry.not_found("none"))
    assert not t.found and t.reason.startswith("no slit")


# ------------------------------------------------------------------------------------ registration and sky


@pytest.fixture(scope="module")
def pair(sky):
    """A slit-viewer frame (mirrored, rotated) and a 60 cm frame pointed 3.6' away, with truths."""
    target = (133.3, 21.7)
    tsky = N.SkyWithExtraStars(sky, Table({"ra": [target[0]], "dec": [target[1]], "mag": [14.5]}))
    img, truth = N.render_slit_viewer(target_ra_deg=target[0], target_dec_deg=target[1], sky=tsky,
                                      scale_arcsec_px=SV_SCALE, shape=SV_SHAPE, rotation_deg=217.0, parity="flipped",
                                      slit_angle_deg=100.0, target_mag=None, seed=31)
    fr, centre = frame60(tsky, *target, offset_arcmin=(2.0, -3.0), rotation=40.0)
    return img, truth, fr, centre


def test_register_in_frame_maps_the_target(pair):
    img, truth, fr, _ = pair
    slit = N.find_slit(img)
    t = N.find_target(img, slit)
    sv_src = N.sources_off_slit(N.extract(img, mask=slit.band_mask(img.shape, pad_px=2)), slit,
                                fwhm_px=t.fwhm_px, target_xy=(t.x, t.y))
    reg = N.register_in_frame(sv_src, N.extract(fr.image), SV_SCALE / F60_SCALE, frame_shape=F60_SHAPE)
    assert reg.ok, reg.reason
    assert reg.flipped  # the slit viewer is mirrored, the 60 cm is not
    assert reg.scale == pytest.approx(SV_SCALE / F60_SCALE, rel=0.005)
    assert reg.n_matched >= 10 and reg.rms_px < 0.5 and reg.p_chance < 1e-10
    true_xy = fr.wcs.all_world2pix(np.array([[truth.target_ra_deg, truth.target_dec_deg]]), 0)[0]
    fx, fy = reg.apply(*truth.target_xy)
    assert math.hypot(fx[0] - true_xy[0], fy[0] - true_xy[1]) < 0.5


def test_register_refuses_a_frame_of_another_field(pair, sky):
    img, _, _, _ = pair
    other, _ = frame60(sky, 40.0, -10.0, offset_arcmin=(0.0, 0.0))
    reg = N.register_in_frame(N.extract(img), N.extract(other.image), SV_SCALE / F60_SCALE, frame_shape=F60_SHAPE)
    assert not reg.ok and reg.reason


def test_register_needs_sources_and_a_scale():
    few = Table({"x": [1.0, 2.0], "y": [3.0, 4.0], "flux": [1.0, 2.0]})
    assert "too few sources" in N.register_in_frame(few, few, 0.6).reason
    with pytest.raises(N.NayutaError, match="scale_ratio"):
        N.register_in_frame(few, few, 0.0)
    with pytest.raises(N.NayutaError, match="'x'"):
        N.register_in_frame(Table({"y": [1.0]}), few, 0.6)


def test_target_sky_position_by_both_routes(pair, sky):
    img, truth, fr, centre = pair
    chain = build_chain(SolverSettings(order=["hinted"]), catalog=sky)
    loc = N.locate_target(
        img,
        sv_hint=SolveHint(ra_deg=133.3 + 0.005, dec_deg=21.7 - 0.004, radius_deg=0.05, scale_arcsec=SV_SCALE),
        sv_exposure_s=truth.exposure_s, sv_gain=truth.gain, solver=chain,
        frame60=N.Frame60(image=fr.image, scale_arcsec=F60_SCALE, exposure_s=30.0, gain=1.5,
                          hint=SolveHint(ra_deg=centre[0] + 0.02, dec_deg=centre[1], radius_deg=0.1,
                                         scale_arcsec=F60_SCALE)),
        settings=N.NayutaSettings(sv_scale_arcsec=SV_SCALE),
    )
    assert loc.located and loc.method == "solve"
    assert set(loc.ra_by_route) == {"solve", "register"}
    for ra, dec in loc.ra_by_route.values():
        assert sep_arcsec(ra, dec, truth.target_ra_deg, truth.target_dec_deg) < 0.5  # acceptance: 10"
    assert loc.route_disagreement_arcsec < 0.5 and not loc.warnings
    assert angle_diff(loc.slit.angle_deg, 100.0) < 0.05
    # brightness in both: the 60 cm's aperture magnitude is the true one (zero point 22.5, gain 1.5)
    true60 = -2.5 * math.log10(10 ** (-0.4 * (14.5 - 22.5)) / 1.5)
    assert loc.mag_60cm == pytest.approx(true60, abs=0.05)
    assert loc.mag_difference == pytest.approx(loc.mag_60cm - loc.mag_slit_viewer)
    assert loc.mag_slit_viewer > loc.mag_slit_viewer_model  # the wings are a faint limit
    j = loc.to_json()
    for k in ("target_ra_deg", "target_dec_deg", "method", "slit_angle_deg", "target_xy", "mag_slit_viewer",
              "mag_60cm", "elapsed_ms"):
        assert k in j


def test_register_route_alone_with_a_solved_60cm_wcs(pair):
    img, truth, fr, _ = pair
    loc = N.locate_target(img, frame60=N.Frame60(image=fr.image, scale_arcsec=F60_SCALE, wcs=fr.wcs),
                          settings=N.NayutaSettings(route="register", sv_scale_arcsec=SV_SCALE))
    assert loc.located and loc.method == "register" and loc.sv_solve is None
    assert sep_arcsec(loc.target_ra_deg, loc.target_dec_deg, truth.target_ra_deg, truth.target_dec_deg) < 0.5


def test_target_sky_position_function(pair):
    img, truth, fr, _ = pair
    reg_bad = N.Registration.failure("nothing")
    sky = N.target_sky_position(truth.target_xy, route="register", registration=reg_bad, frame_wcs=fr.wcs)
    assert not sky.ok and "nothing" in sky.reason
    sky = N.target_sky_position(truth.target_xy, route="solve")
    assert not sky.ok and "no solver" in sky.reason


def test_locate_reports_a_missing_slit(sky):
    img, _ = render(sky, slit_width_arcsec=1e-4, seed=41)
    loc = N.locate_target(img)
    assert not loc.located and loc.reason.startswith("slit not found") and loc.target_ra_deg is None


# ------------------------------------------------------------------------------------ photometry


def test_aperture_photometry_of_a_rendered_star(sky):
    w = simple_wcs((10.0, 10.0), shape=(200, 200), pixel_scale_arcsec=0.64)
    stars = Table({"ra": [10.0], "dec": [10.0], "mag": [14.0]})
    fr = render_star_field(wcs=w, stars=stars, shape=(200, 200), fwhm_px=3.0, sky_adu=200.0, exposure_s=20.0,
                           n_cosmic_rays=0, n_hot_pixels=0, bad_columns=(), seed=5)
    p = N.aperture_photometry_at(fr.image, 99.5, 99.5, fwhm_px=3.0, exposure_s=20.0, gain=1.5)
    assert p.flux_adu == pytest.approx(float(fr.stars["flux_adu"][0]), rel=0.02)
    assert p.mag == pytest.approx(-2.5 * math.log10(float(fr.stars["flux_adu"][0]) / 20.0), abs=0.02)
    assert p.flux_err_adu > 0 and p.mag_err < 0.02
    with pytest.raises(N.NayutaError, match="FWHM"):
        N.aperture_photometry_at(fr.image, 99.5, 99.5, fwhm_px=0.0)


def test_nominal_wcs_and_sky_offsets():
    w = N.nominal_wcs(ra_deg=200.0, dec_deg=45.0, shape=(101, 101), scale_arcsec=0.64, rotation_deg=90.0)
    geo = describe_wcs(w, (101, 101))
    assert geo["ra_deg"] == pytest.approx(200.0) and geo["dec_deg"] == pytest.approx(45.0)
    assert angle_diff(geo["rotation_deg"], 90.0, 360.0) < 1e-6 and geo["parity"] == "normal"
    # image +y points east at rotation 90: 50 px up is 32" east
    east, north = N.offset_on_sky_arcsec(w, (50.0, 50.0), (50.0, 100.0))
    assert east == pytest.approx(32.0, abs=0.01) and abs(north) < 0.01


@pytest.mark.parametrize("fwhm", [3.1, 8.0])
def test_measure_fwhm_of_a_rendered_frame(sky, fwhm):
    w = simple_wcs((77.0, -12.0), shape=(400, 400), pixel_scale_arcsec=0.64)
    fr = render_star_field(wcs=w, stars=sky.stars_for_wcs(w, (400, 400)), shape=(400, 400), fwhm_px=fwhm,
                           sky_adu=300.0, exposure_s=60.0, seed=6)
    f = N.measure_fwhm(fr.image, N.extract(fr.image))
    # a Gaussian fitted to the renderer's Moffat (beta 4) stars reads ~9 % wide
    assert f == pytest.approx(1.09 * fwhm, rel=0.06)
    assert N.measure_fwhm(fr.image, Table({"x": [], "y": [], "flux": []})) is None
