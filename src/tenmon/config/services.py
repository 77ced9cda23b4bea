"""The site file's sections for the daemon's services: night operations (sequencer, frame intake,
frame workers), the scheduler, the dome's geometry, the science camera, centring, following
Nayuta, the archive hook and autofocus.

Models only (this package imports nothing else of tenmon); the code that uses them imports them
from here. The image sections (pipeline, solver, Nayuta's locating) are in
:mod:`tenmon.config.vision`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tenmon.config.vision import NayutaSettings


class FrameWorkerSettings(BaseModel):
    """Frame-processing pool settings (mounted in the site config as ``[frames]``)."""

    model_config = ConfigDict(extra="forbid")

    processes: int = Field(default=1, ge=1, le=16, description="worker processes")
    queue_size: int = Field(default=8, ge=1, description="frames waiting, beyond those running")
    newest_first: bool = Field(default=False, description="process the newest queued frame first")
    drop_policy: Literal["drop_oldest", "drop_newest"] = Field(
        default="drop_oldest", description="which frame to drop when the queue is full"
    )
    nice: int = Field(default=10, ge=0, le=19, description="CPU niceness added in worker processes")
    threads_per_process: int = Field(default=1, ge=1, le=16, description="OpenMP/BLAS threads per worker")
    timeout_s: float = Field(default=600.0, gt=0, description="report a frame as failed after this long")


class FrameServiceSettings(BaseModel):
    """The intake's polling (``[frame_service]``); the pool is ``[frames]``
    (``FrameWorkerSettings``), the pipeline ``[pipeline]``, the solver ``[solver]``."""

    model_config = ConfigDict(extra="forbid")

    poll_s: float = Field(default=1.0, gt=0, description="directory poll period (daemon clock)")
    pattern: str = Field(default="*.fits", description="frame file names")
    stable_s: float = Field(default=2.0, gt=0, description="size and mtime unchanged this long")


class SequencerSettings(BaseModel):
    """How the sequencer runs a night (``[night.sequencer]``). Times in seconds of the daemon's
    clock."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    settle_s: float = Field(default=10.0, ge=0, description="after every slew, before exposing")
    centre: bool = Field(default=True, description="centre each target on its first frame's solve")
    centre_wait_s: float = Field(
        default=300.0, ge=0, description="wait up to this long for the first frame's solve "
        "before the second exposure (a solve takes seconds at a site; 300 s also covers a "
        "simulated night at 60x, where 3 s of processing are 3 simulated minutes); a solve "
        "that comes later is applied between exposures")
    late_grace_s: float = Field(
        default=300.0, ge=0, description="a block may run this long past its planned end")
    slew_timeout_s: float = Field(default=300.0, gt=0, description="mount and dome to arrive")
    dome_check_s: float = Field(default=5.0, gt=0, description="dome slaving check period")
    startup_grace_s: float = Field(
        default=15.0, ge=0, description="after the daemon starts, let its start-up reconcile run "
        "(it closes what a crash left open) before opening")
    reopen_min_dark_s: float = Field(
        default=1200.0, ge=0, description="do not reopen with less dark time than this left")
    open_retry_s: float = Field(default=60.0, gt=0, description="after a refused open")
    close_when_plan_done: bool = Field(
        default=True, description="close and park when no block is left (before dawn)")
    camera_retries: int = Field(default=2, ge=0, description="camera errors tolerated per block")


class NightSettings(BaseModel):
    """Night operations (``[night]``): the sequencer, the frame intake, the targets."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="run the night's jobs and the sequencer "
                          "by themselves; when false the camera and the frame service still run "
                          "(for `tenmon center`, Nayuta sync and frames written by hand)")
    targets_file: Path | None = Field(
        default=None, description="TOML/CSV targets queued (replacing same names) at start")
    sequencer: SequencerSettings = Field(default_factory=SequencerSettings)
    intake: FrameServiceSettings = Field(default_factory=FrameServiceSettings)


#: Twilight names accepted wherever a twilight is configured.
Twilight = Literal["sunset", "civil", "nautical", "astronomical"]


class JobSettings(BaseModel):
    """How the night's apscheduler jobs fire and how late a missed run may still run.

    ``*_misfire_grace_s`` is apscheduler's ``misfire_grace_time``: a run that is later than this
    (a daemon that was down at dusk) is dropped, not replayed. ``None`` means "run however late",
    which is right only for closing.
    """

    model_config = ConfigDict(extra="forbid")

    # Whole seconds: apscheduler takes misfire_grace_time as an int.
    open_misfire_grace_s: int = Field(default=1800, gt=0)
    plan_misfire_grace_s: int = Field(default=1800, gt=0)
    # Closing at dawn is always safe, so a daemon restarted after dawn still closes (once).
    close_misfire_grace_s: int | None = Field(default=None, gt=0)
    health_interval_s: float = Field(default=60.0, gt=0)
    weather_interval_s: float = Field(default=60.0, gt=0)
    check_misfire_grace_s: int = Field(default=30, gt=0)


class SchedulerSettings(BaseModel):
    """Everything the planner and the night jobs need, with the site's defaults.

    Angles in degrees, times in seconds. ``horizon_mask`` lists ``[azimuth_deg, min_altitude_deg]``
    points (azimuth north 0, east 90); the minimum altitude between points is interpolated
    linearly in azimuth (wrapping at 360) and combined with ``min_altitude_deg`` (the higher wins).
    Hour angles are negative east of the meridian.
    """

    model_config = ConfigDict(extra="forbid")

    open_twilight: Twilight = Field(
        default="nautical", description="dusk at which the open job fires (then: if safe)")
    close_twilight: Twilight = Field(default="nautical", description="dawn at which to close")
    observe_twilight: Twilight = Field(
        default="astronomical", description="sun altitude bounding the planned science night")
    min_altitude_deg: float = Field(default=30.0, ge=0.0, lt=90.0)
    horizon_mask: list[tuple[float, float]] = Field(
        default_factory=list, description="[azimuth_deg, min_altitude_deg] points")
    max_airmass: float | None = Field(default=2.0, ge=1.0, description="sec z; None: no limit")
    min_moon_separation_deg: float | None = Field(default=20.0, ge=0.0, le=180.0)
    max_moon_illumination: float | None = Field(
        default=None, ge=0.0, le=1.0, description="lit fraction allowed while the moon is up")
    min_hour_angle_deg: float = Field(default=-90.0, ge=-180.0, le=180.0)
    max_hour_angle_deg: float = Field(default=90.0, ge=-180.0, le=180.0)
    slew_rate_deg_s: float = Field(default=2.0, gt=0, description="mount, great-circle")
    dome_rate_deg_s: float = Field(default=3.0, gt=0, description="dome rotation")
    settle_s: float = Field(default=10.0, ge=0, description="after every slew")
    readout_s: float = Field(default=5.0, ge=0, description="per exposure")
    filter_change_s: float = Field(default=10.0, ge=0, description="overlaps the slew")
    park_alt_deg: float = Field(default=35.0, ge=-5.0, le=90.0,
                                description="where the first slew of the night starts")
    park_az_deg: float = Field(default=0.0, ge=0.0, lt=360.0)
    pack_slack_deg: float = Field(
        default=5.0, ge=0.0, le=90.0,
        description="mean altitude a block may give up to sit right against a neighbour")
    time_step_s: float = Field(default=60.0, ge=10.0, le=600.0,
                               description="constraint grid: every block minute is checked")
    jobs: JobSettings = Field(default_factory=JobSettings)

    @field_validator("horizon_mask")
    @classmethod
    def _check_mask(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        seen: set[float] = set()
        for az, alt in points:
            if not 0.0 <= az < 360.0:
                raise ValueError(f"horizon_mask azimuth {az} is outside 0..360 deg")
            if not -5.0 <= alt < 90.0:
                raise ValueError(f"horizon_mask minimum altitude {alt} is outside -5..90 deg")
            if az in seen:
                raise ValueError(f"horizon_mask lists azimuth {az} twice")
            seen.add(az)
        return sorted(points)

    @model_validator(mode="after")
    def _check_ha(self) -> SchedulerSettings:
        if self.min_hour_angle_deg >= self.max_hour_angle_deg:
            raise ValueError(
                f"min_hour_angle_deg ({self.min_hour_angle_deg}) must be below "
                f"max_hour_angle_deg ({self.max_hour_angle_deg})"
            )
        return self


class DomeGeometry(BaseModel):
    """The dome and where the telescope sits in it (``[dome_geometry]`` in the site file).

    Defaults describe a centred fork mount, for which the dome simply follows the telescope's
    azimuth.
    """

    model_config = ConfigDict(extra="forbid")

    radius_m: float = Field(default=2.5, gt=0, description="radius of the dome's hemisphere")
    mount_east_m: float = Field(default=0.0, description="axes' intersection east of the centre")
    mount_north_m: float = Field(default=0.0, description="axes' intersection north of the centre")
    mount_up_m: float = Field(default=0.0, description="axes' intersection above the dome's "
                              "equator (the springline)")
    mount_type: Literal["fork", "german"] = "fork"
    dec_axis_offset_m: float = Field(
        default=0.0, ge=0, description="German mount: axes' intersection to the tube's axis")
    pier_side: Literal["auto", "east", "west"] = Field(
        default="auto", description="auto: east for targets west of the meridian (HA >= 0)")
    slit_width_m: float = Field(default=1.0, gt=0, description="width of the slit opening")
    slave_tolerance_deg: float = Field(
        default=2.0, gt=0, le=30, description="move the dome when it is this far from its target")

    @model_validator(mode="after")
    def _inside(self) -> DomeGeometry:
        reach = math.sqrt(self.mount_east_m ** 2 + self.mount_north_m ** 2 + self.mount_up_m ** 2)
        if reach + self.dec_axis_offset_m >= self.radius_m:
            raise ValueError(f"the telescope ({reach + self.dec_axis_offset_m:.2f} m from the "
                             f"centre) must be inside the dome (radius {self.radius_m:g} m)")
        return self

    def slit_half_width_deg(self) -> float:
        """Half the slit's angular width seen from the dome centre at the horizon, degrees."""
        return math.degrees(math.asin(min(1.0, 0.5 * self.slit_width_m / self.radius_m)))


class CameraSettings(BaseModel):
    """The science CCD (``[camera]``). Sizes are of the *binned* frame a night produces.

    The defaults are the 60 cm's 2k x 2k camera at 0.32"/px (an 11' field) read out binned 2 x 2:
    1024 x 1024 pixels of 0.64", which keeps a simulated night's frames small and fast.
    """

    model_config = ConfigDict(extra="forbid")

    width_px: int = Field(default=1024, ge=64, le=8192, description="binned frame width")
    height_px: int = Field(default=1024, ge=64, le=8192, description="binned frame height")
    binning: int = Field(default=2, ge=1, le=16)
    pixel_scale_arcsec: float = Field(default=0.32, gt=0, description="unbinned pixel scale")
    rotation_deg: float = Field(default=0.0, description="position angle of image +y, E of N")
    focal_length_mm: float = Field(default=8700.0, gt=0, description="for the FOCALLEN card")
    gain_e_per_adu: float = Field(default=1.5, gt=0)
    read_noise_e: float = Field(default=8.0, ge=0)
    bias_adu: float = Field(default=500.0, ge=0)
    overscan_px: int = Field(default=16, ge=0, le=256, description="overscan columns at the right")
    saturation_adu: float = Field(default=65535.0, gt=0)
    zero_point_mag: float = Field(default=22.5, description="magnitude giving 1 e-/s in total")
    seeing_arcsec: float = Field(default=2.0, gt=0, description="simulated seeing FWHM")
    dark_sky_mag: float = Field(default=21.0, description="zenith dark sky, V mag/arcsec^2")
    readout_s: float = Field(default=5.0, ge=0, description="readout time after the shutter")
    timeout_s: float = Field(default=120.0, gt=0, description="exposure + readout must end by then")

    @property
    def binned_scale_arcsec(self) -> float:
        """Pixel scale of the binned frame, arcsec/px."""
        return self.pixel_scale_arcsec * self.binning

    @property
    def field_arcmin(self) -> tuple[float, float]:
        """Field of view (width, height) in arcmin."""
        s = self.binned_scale_arcsec / 60.0
        return self.width_px * s, self.height_px * s


class CentringServiceSettings(BaseModel):
    """How the daemon centres (``[centring]``). Times are seconds of the daemon's clock.

    ``tolerance_arcsec``, ``max_tries`` and ``method`` default to ``[solver.centering]`` (the
    sequencer's); a request may override tolerance, tries and exposure.
    """

    model_config = ConfigDict(extra="forbid")

    exposure_s: float = Field(default=20.0, gt=0, le=600, description="exposure of each try")
    settle_s: float = Field(default=5.0, ge=0, description="after each slew, before exposing")
    tolerance_arcsec: float | None = Field(
        default=None, gt=0, description="centred within this; None: [solver.centering]")
    max_tries: int | None = Field(default=None, ge=1, le=50,
                                  description="frames before giving up; None: [solver.centering]")
    method: Literal["sync", "offset"] | None = Field(
        default=None, description="sync the mount and goto again, or slew by the offset; None: "
        "[solver.centering]")
    slew_timeout_s: float = Field(default=300.0, gt=0, description="mount and dome to arrive")
    solve_timeout_s: float = Field(
        default=180.0, gt=0, description="a frame's solve must arrive this long after the frame "
        "is written, else the try counts as not solved")
    camera_timeout_s: float = Field(
        default=120.0, gt=0, description="the camera must deliver the frame this long after the "
        "exposure ends")
    job_timeout_s: float = Field(default=1800.0, gt=0, description="a whole job")
    dome_check_s: float = Field(default=5.0, gt=0, description="dome slaving period")
    open_grace_s: float = Field(
        default=5.0, ge=0, description="a slit or cover reading not open for longer ends the job")
    sync_max_move_arcsec: float = Field(
        default=30.0, gt=0, description="do not sync when the mount moved more than this since "
        "the frame (its position no longer matches the solve)")
    keep_jobs: int = Field(default=20, ge=1, le=1000, description="finished jobs kept for GET")


class SimulatedSlitViewerSettings(BaseModel):
    """The simulated slit viewer (``[nayuta.feed.simulated]``); see ``render_slit_viewer``.

    Defaults: 7' x 4' read out 2 x 2 binned (1050 x 600 px of 0.4"), a 1.2" slit along the
    image's y axis, 1.6" seeing, a mirrored image (the jaws and relay reflect it), 10 s exposures.
    """

    model_config = ConfigDict(extra="forbid")

    scale_arcsec: float = Field(0.4, gt=0, description="pixel scale as read out")
    width_px: int = Field(1050, ge=64, le=8192)
    height_px: int = Field(600, ge=64, le=8192)
    rotation_deg: float = Field(0.0, description="position angle of image +y, E of N (the rotator's)")
    parity: Literal["normal", "flipped"] = Field("flipped", description="mirrored by the slit jaws")
    slit_width_arcsec: float = Field(1.2, gt=0)
    slit_angle_deg: float = Field(90.0, description="slit long axis from image +x towards +y")
    slit_length_arcsec: float | None = Field(None, gt=0, description="None: across the field")
    seeing_arcsec: float = Field(1.6, gt=0)
    exposure_s: float = Field(10.0, gt=0)
    sky_mag_arcsec2: float = Field(20.5)
    zero_point_mag: float = Field(24.5, description="magnitude giving 1 e-/s")
    gain_e_per_adu: float = Field(1.5, gt=0)
    read_noise_e: float = Field(5.0, ge=0)
    target_mag: float = Field(
        14.0, description="magnitude of a target added where the simulated sky has no star"
    )
    guiding_jitter_arcsec: float = Field(0.15, ge=0, description="rms of the target's offset from the slit centre")
    reported_pointing_error_arcsec: float = Field(
        20.0, ge=0, description="how far Nayuta's reported RA/Dec is from its target (fixed per target)"
    )
    sky_seed: int = Field(0, description="the simulated sky (the 60 cm's simulated CCD uses the same)")
    seed: int = Field(0, description="noise and pointing errors")


class NayutaFeedSettings(BaseModel):
    """Where slit-viewer frames come from (``[nayuta.feed]``)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["directory", "simulated"] = Field("simulated", description="directory | simulated")
    directory: Path | None = Field(None, description="where Nayuta's slit viewer writes FITS (type = directory)")
    pattern: str = Field("*.fits", description="glob of slit-viewer frame names")
    stable_s: float = Field(1.0, gt=0, description="size and mtime steady this long before a frame is read")
    max_age_s: float = Field(120.0, gt=0, description="a newest frame older than this is stale")
    scale_arcsec: float | None = Field(
        None, gt=0, description="slit-viewer pixel scale when the header has none"
    )
    pointing_error_deg: float = Field(0.05, gt=0, le=5, description="hint radius around Nayuta's reported position")
    simulated: SimulatedSlitViewerSettings = Field(default_factory=SimulatedSlitViewerSettings)

    @model_validator(mode="after")
    def _directory_needed(self) -> NayutaFeedSettings:
        if self.type == "directory" and self.directory is None:
            raise ValueError("nayuta.feed.type = 'directory' needs nayuta.feed.directory")
        return self


class SimulatedNayutaTarget(BaseModel):
    """Nayuta's target in simulated mode (``[nayuta.simulated_target]``)."""

    model_config = ConfigDict(extra="forbid")

    ra_deg: float | None = Field(default=None, ge=0, lt=360, description="None: a star near "
                                 "the zenith at the first sync")
    dec_deg: float | None = Field(default=None, ge=-90, le=90)
    mag_bright: float = Field(default=11.0, description="brightest simulated star taken")
    mag_faint: float = Field(default=15.0, description="faintest simulated star taken")
    search_radius_deg: float = Field(default=0.2, gt=0, le=5,
                                     description="how far from the position a star is looked for")


class NayutaDaemonSettings(BaseModel):
    """Following Nayuta in the daemon (``[nayuta]``): the feed, the locating, following."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="serve /nayuta/* (the feed must be usable)")
    feed: NayutaFeedSettings = Field(default_factory=NayutaFeedSettings)
    locate: NayutaSettings = Field(default_factory=NayutaSettings)
    follow_threshold_arcsec: float = Field(
        default=30.0, gt=0, description="following: re-sync when Nayuta's position moves this far")
    poll_s: float = Field(default=15.0, gt=0, description="following: feed check period (daemon "
                          "clock)")
    answer_wait_s: float = Field(
        default=100.0, ge=0, le=600, description="POST /nayuta/sync with once: wait this long "
        "(wall seconds) for the result before answering 202 with the sync in progress")
    locate_timeout_s: float = Field(default=120.0, gt=0, description="locating one frame (wall)")
    register_max_offset_arcmin: float = Field(
        default=4.0, gt=0, description="use the last 60 cm frame for registration only when its "
        "centre is this close to Nayuta's reported position")
    tolerance_arcsec: float | None = Field(default=None, gt=0, description="centring; None: "
                                           "[centring] / [solver.centering]")
    max_tries: int | None = Field(default=None, ge=1, le=50)
    exposure_s: float | None = Field(default=None, gt=0, le=600)
    zero_point_60cm_mag: float | None = Field(
        default=None, description="mag of 1 ADU/s on the 60 cm (None: simulated camera's, or "
        "no calibrated magnitude)")
    zero_point_slit_viewer_mag: float | None = Field(
        default=None, description="mag of 1 ADU/s on the slit viewer (None: as above)")
    simulated_target: SimulatedNayutaTarget = Field(default_factory=SimulatedNayutaTarget)


class ArchiveHookSettings(BaseModel):
    """``[archive]``: the daemon's processed frames go into this archive too."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="write the daemon's processed frames into the archive")
    path: Path = Field(Path("/var/lib/tenmon/archive"), description="the archive directory")
    queue_size: int = Field(1000, ge=1, description="frames waiting for the archive writer before drops")
    batch_frames: int = Field(16, ge=1, description="frames per write")
    batch_s: float = Field(30.0, gt=0, description="write at least this often while frames arrive")


class AutofocusSettings(BaseModel):
    """``[autofocus]``: when and how the sequencer focuses (with a ``[focuser]`` and a camera).
    Steps are the focuser's; times are seconds of the daemon's clock."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = Field(default=True, description="focus when due (needs [focuser] and a "
                          "camera tenmon drives)")
    step: int = Field(default=100, ge=1, description="focuser steps between sweep points")
    points: int = Field(default=9, ge=5, le=31, description="positions in one sweep")
    exposure_s: float = Field(default=5.0, gt=0, le=600)
    min_points: int = Field(default=5, ge=4, description="measured points needed for a fit")
    max_sweeps: int = Field(default=3, ge=1, le=10, description="sweeps when the minimum lies "
                            "at an edge (each re-centred there)")
    verify_tolerance: float = Field(default=1.3, ge=1.0, le=3.0, description="the verify "
                                    "frame's HFR must be within this factor of the fitted minimum")
    min_v_depth: float = Field(default=1.2, gt=1.0, description="the sweep's edges must be this "
                               "many times the fitted minimum (else no V was seen)")
    backlash_steps: int = Field(default=0, ge=0, description="every move ends upwards: below "
                                "the target by this much first")
    frame_wait_s: float = Field(default=300.0, gt=0, description="wait for one frame's "
                                "exposure and measurement")
    move_wait_s: float = Field(default=120.0, gt=0)
    refocus_temp_delta_c: float | None = Field(default=1.0, gt=0, description="refocus when "
                                               "the focuser's temperature moved this much")
    refocus_interval_min: float | None = Field(default=None, gt=0, description="refocus at "
                                               "least this often (None: never for time alone)")
    retry_after_failure_min: float = Field(default=30.0, ge=0, description="after a failed "
                                           "run, wait this long before the next try")
