"""The site file's sections for image work: the frame pipeline (``[pipeline]``), plate solving
(``[solver]``) and Nayuta's locating (``[nayuta.locate]``).

Models only (this package imports nothing else of tenmon); the vision modules import them from
here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class CalibrationSettings(BaseModel):
    """Calibration settings; sections use FITS syntax ``[x1:x2,y1:y2]`` (1-based, inclusive)."""

    model_config = ConfigDict(extra="forbid")

    directory: Path | None = Field(default=None, description="master bias/dark/flat/bpm; None: none")
    overscan: str | None = Field(default=None, description="overscan section; overrides BIASSEC")
    trim: str | None = Field(default=None, description="section to keep; overrides TRIMSEC/DATASEC")
    use_header_sections: bool = Field(default=True, description="use BIASSEC/TRIMSEC/DATASEC from the header")
    bias_level_adu: float | None = Field(
        default=None, description="constant pedestal to subtract when there is no overscan and no master bias"
    )
    detect_bad_columns: bool = True
    bad_column_sigma: float = Field(default=10.0, gt=0)


class CosmicSettings(BaseModel):
    """LA Cosmic settings (gain and read noise come from the frame; see ``PipelineSettings``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    implementation: Literal["fast", "astroscrappy"] = Field(
        default="fast", description="fast: same mask as astroscrappy, later iterations on tiles only"
    )
    sigclip: float = Field(default=4.5, gt=0, description="Laplacian-to-noise detection limit")
    sigfrac: float = Field(default=0.3, gt=0, le=1, description="neighbour limit, fraction of sigclip")
    objlim: float = Field(
        default=2.0, gt=0,
        description="Laplacian to fine-structure contrast (LA Cosmic's default 5 drops compact and on-star "
        "rays; star protection here is the PSF test, docs/bench/cosmics_families.md)")
    niter: int = Field(default=4, ge=1, le=10)
    protect_stars: bool = True
    protect_fwhm_factor: float = Field(
        default=0.85, gt=0, le=1.5,
        description="PSF sharpness test uses this fraction of the measured FWHM (< 1 protects more)",
    )
    protect_object_sigma: float = Field(default=3.0, gt=0, description="3x3-median level that marks an object")
    protect_noise_sigma: float = Field(default=2.5, ge=0, description="noise margin of the PSF sharpness test")
    grow_sigma: float | None = Field(
        default=2.0, gt=0, description="grow the mask into neighbours above this many sigma; None: no growth"
    )
    grow_steps: int = Field(
        default=1, ge=1, le=10,
        description="growth steps: each adds off-star neighbours above grow_sigma that stand out from "
        "their unflagged 5x5 neighbours and are not brighter than the flagged pixel they touch "
        "(more steps find more of a track's faint edge and flag more star wings; docs/bench/cosmics_families.md)",
    )
    track_min_px: float | None = Field(
        default=5.0, gt=0,
        description="tracks: regions at least this long [px] and 3x longer than wide are cosmic rays "
        "whatever the PSF test says, and a second pass finds them among the pixels above sigclip "
        "that LA Cosmic's fine-structure test (objlim) dropped; None: off",
    )
    protect_per_direction: bool = Field(
        default=True, description="PSF test with one limit per direction (x, y, two diagonals) measured on "
        "the frame's stars, instead of the smaller of the two axes and of the two diagonals")
    protect_core_factor: float | None = Field(
        default=0.85, gt=0, le=1,
        description="star cores (within protect_core_radius of a local maximum inside an object): the "
        "PSF test's limits times this (a ray there must be sharper still); None: off")
    protect_core_radius: float = Field(default=1.5, gt=0, le=5, description="star core radius [px]")
    protect_core_sigma: float = Field(
        default=1.5, gt=0, description="a star core's 5x5 median must exceed this many single-pixel sigmas "
        "(a 5x5 median's own noise is ~0.25 sigma)")
    star_one_step: bool = Field(
        default=True, description="on stars, keep only flagged pixels next to a pixel sharper than the PSF")
    sharp_pass_sigma: float | None = Field(
        default=3.5, gt=0,
        description="sharp pass: pixels above sigclip that objlim dropped are rays when sharper than the "
        "frame's stars by this many sigma (PSF test); None: off")
    threads: int = Field(default=0, ge=0, description="OpenMP threads for astroscrappy; 0 = library default")


class SourceSettings(BaseModel):
    """Background and extraction settings."""

    model_config = ConfigDict(extra="forbid")

    background_box_px: int = Field(default=64, ge=8, description="background mesh size")
    background_filter_px: int = Field(default=3, ge=1, description="median filter of the mesh, in meshes")
    threshold_sigma: float = Field(
        default=1.5, gt=0, description="detection threshold on the filtered image, in sky sigmas per pixel"
    )
    threshold_noise: Literal["global", "local"] = Field(
        default="global", description="sky sigma of the threshold and of snr_auto: the frame's global rms "
        "(SExtractor without a weight map) or the local rms map (fewer detections where the sky is noisier)")
    min_area_px: int = Field(default=5, ge=1)
    deblend_nthresh: int = Field(default=32, ge=1)
    deblend_cont: float = Field(default=0.005, gt=0, le=1, description="1.0 disables deblending")
    clean: bool = Field(default=True, description="SExtractor's cleaning of spurious detections near bright ones")
    clean_param: float = Field(default=1.0, gt=0, description="SExtractor's CLEAN_PARAM")
    detection_filter: Literal["default", "gauss"] = Field(
        default="default", description="detection filter: SExtractor's default.conv (3x3 pyramid, FWHM ~2 px), "
        "or a Gaussian of fwhm_guess_px")
    min_snr: float = Field(default=5.0, ge=0, description="drop detections whose aperture SNR and "
                           "SExtractor-style SNR (snr_auto) are both below this")
    edge_px: int = Field(default=3, ge=0)
    max_ellipticity: float = Field(default=0.5, gt=0, lt=1)
    fwhm_guess_px: float = Field(default=2.5, gt=0, description="used until the frame's own is measured")
    psf_fit: bool = Field(default=True, description="refine point-source positions by a simultaneous PSF fit")
    psf_fit_iterations: int = Field(default=5, ge=1, le=50, description="Gauss-Newton iterations of the PSF fit")
    mask_neighbours: bool = Field(
        default=True, description="leave other objects' pixels out of the Kron radius and flux, corrected "
        "for the masked area (SExtractor's MASK_TYPE CORRECT)")


class ClusterSettings(BaseModel):
    """DBSCAN cluster-candidate settings for frames ([frames] ``clusters``; module doc).

    ``refine_null`` and the ``eps``/``min_samples`` overrides also apply to catalogue tables;
    tables take their other settings from :class:`TableClusterSettings`.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    eps: float | None = Field(default=None, gt=0, description="fixed eps (px for frames); None: from the data")
    min_samples: int | None = Field(default=None, ge=2, description="None: max(2*dims, round(ln N))")
    null_core_fraction: float = Field(default=0.01, gt=0, lt=0.5)
    n_null: int = Field(default=5, ge=1, le=100)
    min_significance: float = Field(default=4.5, description="Gaussian sigma, look-elsewhere corrected")
    min_snr: float = Field(default=5.0, ge=0, description="frame sources used (aperture SNR)")
    min_sources: int = Field(default=30, ge=3, description="fewer sources than this: no search")
    refine_null: bool = Field(default=True, description="tables without contrast: second pass with a null made of the field only")
    seed: int = 0


class HfrSettings(BaseModel):
    """How :func:`half_flux_radius` measures (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    background_box_px: int = Field(default=64, ge=16, description="sky mesh [px]")
    threshold_sigma: float = Field(default=3.0, gt=0, description="detection, in global sky rms")
    min_area_px: int = Field(default=9, ge=1, description="pixels above the threshold")
    min_axis_ratio: float = Field(default=0.6, gt=0, le=1, description="b/a of a round star")
    max_stars: int = Field(default=100, ge=1, description="the brightest candidates measured")
    aperture_factor: float = Field(default=3.0, ge=2.0, le=6.0, description="measuring circle, "
                                   "in the star's own HFRs")
    sky_annulus_px: float = Field(default=6.0, gt=0, description="width of the local sky's "
                                  "annulus (at least; half the circle's radius when larger)")
    max_iterations: int = Field(default=10, ge=1, le=50)
    min_hfr_px: float = Field(default=0.6, ge=0, description="sharper is no star: a hot pixel "
                              "measures 0.40 px, a pair ~0.55; a star sampled at FWHM >= 1.3 px "
                              "measures more")
    neighbour_flux_ratio: float = Field(default=0.1, gt=0, description="a neighbour inside the "
                                        "circle brighter than this fraction of the star drops it")
    min_stars: int = Field(default=1, ge=1, description="stars needed for a frame's HFR (a "
                           "focusing field may hold one bright star)")


class ProductSettings(BaseModel):
    """Which products to write and how."""

    model_config = ConfigDict(extra="forbid")

    clean_fits: bool = True
    mask_fits: bool = Field(default=True, description="also a separate, compressed mask file")
    sources: bool = True
    clusters: bool = True
    regions: bool = True
    preview: bool = True
    preview_max_px: int = Field(default=1024, ge=128, le=8192, description="longest side of the PNG")
    preview_stretch_a: float = Field(default=0.1, gt=0, le=1, description="asinh softening (astropy's a)")


class PipelineSettings(BaseModel):
    """Settings of the frame pipeline (mounted in the site config as ``[pipeline]``).

    Gain, read noise and saturation come from the header (GAIN/EGAIN, RDNOISE/READNOIS,
    SATURATE) unless overridden here; the ``fallback_*`` values apply when the header lacks them.
    """

    model_config = ConfigDict(extra="forbid")

    gain_e_per_adu: float | None = Field(default=None, gt=0, description="override the header's GAIN")
    read_noise_e: float | None = Field(default=None, ge=0, description="override the header's RDNOISE")
    saturation_adu: float | None = Field(default=None, gt=0, description="override the header's SATURATE")
    fallback_gain_e_per_adu: float = Field(default=1.0, gt=0)
    fallback_read_noise_e: float = Field(default=6.5, ge=0)
    fallback_saturation_adu: float = Field(default=65535.0, gt=0)
    zero_point_mag: float = Field(default=25.0, description="magnitude of 1 ADU/s, for the limiting magnitude")
    hdu: int | str | None = Field(default=None, description="HDU with the image; None: the first 2-D one")
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    cosmics: CosmicSettings = Field(default_factory=CosmicSettings)
    sources: SourceSettings = Field(default_factory=SourceSettings)
    clusters: ClusterSettings = Field(default_factory=ClusterSettings)
    hfr: HfrSettings = Field(default_factory=HfrSettings)
    products: ProductSettings = Field(default_factory=ProductSettings)


class HintedSettings(BaseModel):
    """Settings of the built-in hinted solver (``[solver.hinted]``)."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(5.0, gt=0, description="give up after this long")
    search_radius_deg: float = Field(0.15, gt=0, le=5, description="pointing error searched when the hint has none")
    min_sources: int = Field(6, ge=3, description="fewer sources than this: not solved")
    min_matches: int = Field(6, ge=4, description="fewer matched stars than this: not solved")
    n_triangle_stars: int = Field(30, ge=5, le=60, description="brightest image sources forming triangles")
    neighbours: int = Field(8, ge=3, le=20, description="triangles: each star with pairs of its k nearest")
    max_catalog_stars: int = Field(160, ge=20, le=400, description="cap on catalogue stars forming triangles")
    max_rms_px: float = Field(1.0, gt=0, description="rms above this (pixels): not solved")
    false_alarm: float = Field(
        1e-6, gt=0, lt=1e-2, description="max probability that the final match count is chance"
    )
    screen_false_alarm: float = Field(
        1e-2, gt=0, lt=0.5, description="candidates more likely than this to be chance are not refined"
    )
    sip: str = Field("auto", pattern="^(auto|never|2|3)$", description="auto: SIP when the residuals need it")


class SolveFieldSettings(BaseModel):
    """Local astrometry.net (``[solver.astrometry_net]``)."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field("solve-field", description="solve-field executable (name on PATH or path)")
    timeout_s: float = Field(60.0, gt=0, description="wall-clock limit per solve")
    backend_config: Path | None = Field(None, description="astrometry.cfg naming the index directories")
    max_sources: int = Field(300, ge=10, description="brightest sources passed to solve-field")
    use_image_below: int = Field(12, ge=0, description="fewer sources than this: let solve-field extract them")
    tweak_order: int = Field(2, ge=0, le=5, description="SIP order solve-field fits (0: none)")
    odds_to_solve: float = Field(1e9, gt=1, description="astrometry.net's acceptance odds (default 1e9)")
    code_tolerance: float = Field(0.01, gt=0, le=0.05, description="quad matching tolerance")
    scale_tolerance: float = Field(0.1, gt=0, lt=1, description="pixel-scale range searched around the hint")


class WebApiSettings(BaseModel):
    """The astrometry.net web API (``[solver.web]``): nova.astrometry.net or a site's own server."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field("https://nova.astrometry.net", description="server base URL (its API is URL/api)")
    api_key: SecretStr | None = Field(None, description="API key of the account on that server")
    timeout_s: float = Field(300.0, gt=0, description="whole solve, upload to WCS")
    request_timeout_s: float = Field(30.0, gt=0, description="each HTTP request")
    max_sources: int = Field(200, ge=10, description="brightest sources uploaded")


class CenteringSettings(BaseModel):
    """``[solver.centering]``: how close is centred, how many tries, how to correct."""

    model_config = ConfigDict(extra="forbid")

    tolerance_arcsec: float = Field(10.0, gt=0, description="centred when the solved centre is this close")
    max_tries: int = Field(5, ge=1, le=50, description="frames taken before giving up")
    method: Literal["sync", "offset"] = Field("sync", description="sync the mount, or slew by the offset")


class CatalogSettings(BaseModel):
    """Where the hinted solver gets its stars (``[solver.catalog]``)."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["none", "file", "simulated", "gaia"] = Field(
        "none", description="none | file (path) | simulated (the simulated sky) | gaia (network, cached)"
    )
    path: Path | None = Field(None, description="ECSV/FITS/CSV with ra, dec, mag (provider = file)")
    sim_seed: int = Field(0, description="seed of the simulated sky (same as the simulated CCD's)")
    sim_density_per_deg2: float = Field(30000.0, gt=0)
    sim_mag_faint: float = Field(21.0)
    gaia_cache_dir: Path = Field(Path("/var/lib/tenmon/gaia-cache"), description="disk cache of Gaia cones")
    gaia_mag_limit: float = Field(19.0, description="faintest G magnitude fetched")
    gaia_timeout_s: float = Field(60.0, gt=0, description="bound on one Gaia query")


SolverName = Literal["hinted", "astrometry_net", "web"]


class SolverSettings(BaseModel):
    """Plate solving (``[solver]``): order, hints, each solver's settings, the catalogue."""

    model_config = ConfigDict(extra="forbid")

    order: list[SolverName] = Field(["hinted", "astrometry_net"], min_length=1,
                                    description="solvers tried in this order")
    pixel_scale_arcsec: float | None = Field(None, gt=0, description="the camera's pixel scale, for hints")
    scale_tolerance: float = Field(0.05, gt=0, lt=0.5, description="how well the pixel scale is known")
    pointing_error_deg: float = Field(0.1, gt=0, le=10, description="hint radius: how far the mount may be off")
    max_rms_px: float = Field(1.0, gt=0, description="any solver's answer with a larger rms (pixels) is rejected")
    hinted: HintedSettings = Field(default_factory=HintedSettings)
    astrometry_net: SolveFieldSettings = Field(default_factory=SolveFieldSettings)
    web: WebApiSettings = Field(default_factory=WebApiSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    centering: CenteringSettings = Field(default_factory=CenteringSettings)


#: The simulated slit viewer's pixel scale, arcsec/px (tenmon.vision.nayuta: its geometry).
SV_SCALE_ARCSEC = 0.2


class SlitSearchSettings(BaseModel):
    """How :func:`find_slit` searches (``[nayuta.slit]``)."""

    model_config = ConfigDict(extra="forbid")

    coarse_px: int = Field(300, ge=64, le=2000, description="coarse search: image binned to this long side")
    coarse_step_deg: float = Field(0.5, gt=0, le=5, description="angle step of the coarse search")
    fine_px: int = Field(1100, ge=128, le=8000, description="fine search: image binned to this long side")
    fine_step_deg: float = Field(0.05, gt=0, le=1, description="angle step of the fine search")
    min_significance: float = Field(9.0, gt=0, description="dip significance (sigma) below this: no slit")
    min_segment_fraction: float = Field(0.5, gt=0, le=1, description="share of slit segments that must show it")
    star_clip_sigma: float = Field(3.0, gt=0, description="pixels above sky + this many sigma are stars")
    min_width_px: float = Field(1.2, gt=0, description="a darker band narrower than this is a bad column, not the slit")


class TargetSearchSettings(BaseModel):
    """How :func:`find_target` looks for a star straddling the slit (``[nayuta.target]``)."""

    model_config = ConfigDict(extra="forbid")

    min_significance: float = Field(5.0, gt=0, description="each wing must be this significant (sigma)")
    min_symmetry: float = Field(0.15, ge=0, le=1, description="fainter wing / brighter wing, at least")
    strip_fwhm: float = Field(1.5, gt=0, description="width of the wing strips beside the slit, in FWHM")
    aperture_fwhm: float = Field(2.5, gt=0, description="photometry aperture radius, in FWHM")
    annulus_fwhm: tuple[float, float] = Field((3.0, 5.0), description="sky annulus radii, in FWHM")


class RegistrationSettings(BaseModel):
    """How :func:`register_in_frame` matches slit-viewer stars into a 60 cm frame (``[nayuta.registration]``)."""

    model_config = ConfigDict(extra="forbid")

    n_sv_stars: int = Field(40, ge=5, le=200, description="brightest slit-viewer sources forming triangles")
    max_frame_stars: int = Field(400, ge=20, le=3000, description="cap on 60 cm sources forming triangles")
    neighbours: int = Field(6, ge=3, le=15, description="triangles: each star with pairs of its k nearest")
    match_radius_px: float = Field(3.0, gt=0, description="verification radius, 60 cm frame pixels")
    min_matches: int = Field(6, ge=4, description="fewer matched stars than this: not registered")
    false_alarm: float = Field(1e-6, gt=0, lt=1e-2, description="max probability that the match is chance")


class NayutaSettings(BaseModel):
    """Following Nayuta (``[nayuta]``): the slit viewer's scale, the route to the sky, the searches."""

    model_config = ConfigDict(extra="forbid")

    sv_scale_arcsec: float = Field(SV_SCALE_ARCSEC * 2, gt=0, description="slit-viewer pixel scale as read out")
    scale_tolerance: float = Field(0.03, gt=0, lt=0.3, description="how well both pixel scales are known")
    sv_pointing_error_deg: float = Field(
        0.05, gt=0, le=5, description="how far Nayuta's reported position may be from the slit viewer's centre"
    )
    route: Literal["auto", "solve", "register"] = Field(
        "auto", description="solve the slit viewer, register it in the 60 cm frame, or auto (solve, then register)"
    )
    min_slit_confidence: float = Field(0.3, ge=0, le=1, description="a slit found with less is not used")
    target_reference_xy: tuple[float, float] | None = Field(
        None, description="slit-viewer pixel where Nayuta puts its targets; None: the slit's middle"
    )
    max_route_disagreement_arcsec: float = Field(
        5.0, gt=0, description="both routes done and further apart than this: the answer is flagged"
    )
    sv_max_rms_arcsec: float = Field(
        0.5, gt=0, description="slit-viewer solutions with a larger rms are rejected (its pixels are small)"
    )
    slit: SlitSearchSettings = Field(default_factory=SlitSearchSettings)
    target: TargetSearchSettings = Field(default_factory=TargetSearchSettings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
