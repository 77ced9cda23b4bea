"""The simulated IR camera: a frame source that renders the simulated world's dome as a fixed camera sees it.

Stands where the real IR camera stands, so in simulated mode the loop runs through the same code
as at a site: relays -> world -> rendered frame -> slit detector -> tracker -> dome/slit
controllers. The camera is fixed for a seed (:func:`camera_params`: lens, mounting, dome
textures, sensor; a clear night), and its calibration is the renderer's own truth, as a site's
``tenmon encoder calibrate`` would find it. Every frame renders the world's dome azimuth and slit
opening at the clock's time of capture, with fresh sensor noise.

The world's ``encoder-dropout`` fault becomes what blinds a real camera (lights off by default,
or a covered lens / glare: ``dropout_occlusion``); tests can also set :attr:`SimulatedIrCamera.occlusion`
or freeze the camera (:attr:`SimulatedIrCamera.frozen`: no frames at all).

The settings model (:class:`SimulatedIrEncoderConfig`, ``type = "simulated-ir"``) has only
pydantic and the standard library at import, so the config layer can import it cheaply; the
renderer is imported when a camera is built.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal



from tenmon.config.models import SimulatedIrEncoderConfig  # noqa: F401 - re-exported
from tenmon.drivers.ir_encoder import IrCameraEncoder
from tenmon.core.errors import DeviceDisconnected

if TYPE_CHECKING:  # pragma: no cover - types only
    from tenmon.core.clock import Clock
    from tenmon.drivers.ir_camera import Frame
    from tenmon.drivers.sim.world import SimWorld
    from tenmon.vision.slit.render import RenderParams
    from tenmon.vision.slit.reading import Calibration

log = logging.getLogger(__name__)

#: Default camera seed: a clear-night camera on which the packaged model reads azimuth well
#: and states best among seeds 6..40 (scanned at 480x360 and 320x240; docs/bench/ir_encoder_loop.md).
DEFAULT_RENDER_SEED = 35


def camera_params(seed: int, width: int = 480, height: int = 360) -> "RenderParams":
    """The fixed simulated camera for ``seed``: a clear night, no occlusion, telescope parked.

    Drawn from :func:`tenmon.vision.slit.render.random_params` (lens, projection, mounting offset,
    dome textures and sensor all follow the seed); the same seed gives the same camera at any
    frame size.
    """
    import numpy as np

    from tenmon.vision.slit.render import random_params

    p = random_params(np.random.default_rng(seed), scene="night", occlusion="none",
                      resolution=(int(width), int(height)))
    # the tube pivots just above the dome's centre; parked at the zenith (the world's park
    # position, HA 0 at the site's latitude) until the mount moves
    return replace(p, tube_alt_deg=90.0, tube_az_deg=0.0, tube_pivot=(0.0, 0.0, 0.05))


class SimulatedIrCamera:
    """A frame source (:class:`tenmon.drivers.ir_camera.FrameSource`) that renders the simulated world.

    Frames come at ``rate_hz`` frames per second of the injected clock: ``read()`` blocks (real
    time, in short sleeps) until the clock reaches the next frame time, then renders the world
    at ``clock.now()``. With a :class:`~tenmon.core.clock.FakeClock` advanced by the daemon at
    ``speed`` x real time, rendering and inference therefore cost ``speed`` x their wall time in
    simulated latency, as a slow camera computer would.

    Args:
        world: the simulated world (read only: dome azimuth, slit fraction, faults, mount).
        clock: stamps frames and paces them.
        seed: the camera (:func:`camera_params`).
        width, height: frame size in pixels.
        rate_hz: frames per clock second.
        tube: ``mount`` (draw the telescope where the world's mount really points), ``parked``
            (at the zenith) or ``none``.
        dropout_occlusion: the occlusion drawn while the world has ``encoder-dropout``.
    """

    def __init__(self, world: "SimWorld", clock: "Clock", *, seed: int = DEFAULT_RENDER_SEED,
                 width: int = 480, height: int = 360, rate_hz: float = 2.0,
                 tube: str = "mount", dropout_occlusion: str = "lights_off"):
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.world = world
        self.clock = clock
        self.seed = int(seed)
        self.rate_hz = float(rate_hz)
        self.tube = tube
        self.dropout_occlusion = dropout_occlusion
        self.params = camera_params(self.seed, width, height)
        self.name = f"simulated IR camera (seed {self.seed}, {width}x{height})"
        #: an occlusion forced by a test or a scenario (``lights_off``, ``lens_covered``, ...)
        self.occlusion: str | None = None
        #: a frozen camera delivers no frames at all (``read()`` keeps waiting)
        self.frozen = False
        self._calibration: "Calibration | None" = None
        self._closed = threading.Event()
        self._closed.set()
        self._next_t: float | None = None
        self._index = 0

    @classmethod
    def from_config(cls, config: SimulatedIrEncoderConfig, world: "SimWorld", clock: "Clock"
                    ) -> "SimulatedIrCamera":
        """The camera a :class:`SimulatedIrEncoderConfig` describes."""
        return cls(world, clock, seed=config.render_seed, width=config.width_px,
                   height=config.height_px, rate_hz=config.rate_hz, tube=config.tube,
                   dropout_occlusion=config.dropout_occlusion)

    @property
    def calibration(self) -> "Calibration":
        """The camera's calibration (the renderer's truth: centre, horizon radius, north, sense,
        projection, offset), as ``tenmon encoder calibrate`` would measure it at a site."""
        if self._calibration is None:
            from tenmon.vision.slit.render import render

            self._calibration = render(0.0, 0.0, self.params, seed=0).truth.calibration
        return self._calibration

    # -- FrameSource ---------------------------------------------------------------------------

    def open(self) -> None:
        """Start delivering frames (the first one at once)."""
        self._closed.clear()
        self._next_t = None

    def close(self) -> None:
        """Stop: a ``read()`` waiting for its frame time returns with DeviceDisconnected."""
        self._closed.set()

    def read(self) -> "Frame":
        """Wait for the next frame time on the clock, then render the world as it is then.

        Blocks in real time (5 ms sleeps) while the clock has not reached the frame time, or
        while the camera is frozen.

        Raises:
            DeviceDisconnected: the camera is closed (or was never opened).
        """
        from tenmon.drivers.ir_camera import Frame
        from tenmon.vision.slit.render import render_world_view

        period = 1.0 / self.rate_hz
        while True:
            if self._closed.is_set():
                raise DeviceDisconnected("encoder.camera", f"{self.name} is closed")
            t = self.clock.monotonic()
            if not self.frozen and (self._next_t is None or t >= self._next_t):
                break
            time.sleep(0.005)
        # the next frame one period after this one (a camera that fell behind does not burst)
        self._next_t = t + period
        now = self.clock.now()
        st = self.world.state
        az, frac = float(st.dome_az_deg), float(st.slit_fraction)
        params = self._frame_params()
        self._index += 1
        image = render_world_view(az, frac, params, seed=self.seed * 1_000_003 + self._index, time=now)
        return Frame(image=image, time=now, index=self._index, source=self.name)

    def _frame_params(self) -> "RenderParams":
        p = self.params
        occlusion = self.occlusion
        if occlusion is None and self.world.has_fault("encoder-dropout"):
            occlusion = self.dropout_occlusion
        changes: dict = {}
        if occlusion and occlusion != "none":
            changes["occlusion"] = occlusion
            if occlusion == "lights_off":
                # as random_params draws it: nothing lights the dome, a moonless sky
                changes.update(illuminator=False, ambient=0.001, sky_level=0.0002,
                               cloud_level=0.0002, star_level=p.star_level * 0.02, moon_level=0.0)
        if self.tube == "none":
            changes["tube"] = False
        elif self.tube == "mount" and not self.world.state.mount_parked:
            alt, az = self._mount_altaz()
            changes.update(tube_alt_deg=alt, tube_az_deg=az)
        return replace(p, **changes) if changes else p

    def _mount_altaz(self) -> tuple[float, float]:
        from tenmon.core.astro import radec_to_altaz

        ra, dec = self.world.true_pointing()
        alt, az = radec_to_altaz(ra, dec, self.world.lst(), self.world.site.latitude_deg)
        return max(0.0, float(alt)), float(az)


class SimulatedIrCameraEncoder(IrCameraEncoder):
    """The IR encoder in simulation, with one addition: the simulation keeps pace with its camera.

    Rendering a frame costs this computer tens of ms that a site's camera does not cost; at
    ``speed`` x real time that is ``speed`` times more simulated latency, and a load spike
    on a shared machine would read as a lost encoder. So while the newest frame is older
    than ``max_lag_s`` simulated seconds, ``update()`` (the control loop) waits, at most
    ``hold_limit_s`` wall seconds, for the worker: the simulated clock then runs slower than
    ``speed``, as the runner already does when it falls behind. A frozen camera is never
    waited for, and a hold that times out is not repeated until a new frame arrives, so a
    dead camera still reads stale and stops the dome. ``held_s`` sums the wall time held.
    """

    def __init__(self, config, clock, **kwargs):
        super().__init__(config, clock, **kwargs)
        self.max_lag_s = float(config.max_lag_s)
        self.hold_limit_s = float(config.hold_limit_s)
        self.held_s = 0.0
        self._gave_up_at = None

    def update(self) -> None:
        super().update()
        cam = self._source
        if self.max_lag_s <= 0 or not self.running or getattr(cam, "frozen", False):
            return
        last = self.last_frame_time
        if self._gave_up_at is not None:
            if last == self._gave_up_at:
                return
            self._gave_up_at = None
        if (self.clock.now() - last).total_seconds() <= self.max_lag_s:
            return
        t0 = time.monotonic()
        while (self.clock.now() - self.last_frame_time).total_seconds() > self.max_lag_s:
            if time.monotonic() - t0 > self.hold_limit_s or not self.running \
                    or getattr(cam, "frozen", False):
                self._gave_up_at = self.last_frame_time
                log.warning("simulated IR camera %.1f s behind the simulated clock: not "
                            "holding the simulation for it", (self.clock.now() - last).total_seconds())
                break
            time.sleep(0.001)
        self.held_s += time.monotonic() - t0


def simulated_ir_encoder(config: SimulatedIrEncoderConfig, world: "SimWorld", clock: "Clock"):
    """The IR-camera encoder on the simulated camera: the daemon's encoder for ``type = "simulated-ir"``.

    Returns a :class:`SimulatedIrCameraEncoder` (an
    :class:`~tenmon.drivers.ir_encoder.IrCameraEncoder` that keeps the simulation in step with
    its camera; see there).
    """
    camera = SimulatedIrCamera.from_config(config, world, clock)
    return SimulatedIrCameraEncoder(config, clock, source=camera, calibration=camera.calibration)
