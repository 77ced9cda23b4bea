"""Dome rotation: a CW/CCW relay pair closed-loop on the optical encoder's azimuth.

The dome has inertia: it spins up over a second or two and coasts after the motor stops. The
controller models the motor to first order: speed after ``t`` s on is
``v_max * (1 - exp(-t / spinup_s))`` and the coast after the motor stops is ``coast_s * v``. It
stops the motor early by the predicted coast, learns ``v_max`` from long slews and ``coast_s``
from every measured overshoot, and makes up to ``max_corrections`` short moves to land inside the
dead band. (A speed differentiated from a 5 Hz camera lags by half a second during spin-up, which
made short moves overshoot; the model does not lag.) Rotating with no change of azimuth is a stall; no trusted encoder reading
for ``encoder_grace_s`` during a slew is a loss; both stop the motor and put the dome in ERROR.

Wiring: CW is azimuth increasing (north -> east), on channel ``cw_channel`` of the relay bank.
"""

from __future__ import annotations

import math

from tenmon.core.astro import wrap180
from tenmon.core.clock import Clock
from tenmon.config.models import DomeConfig
from tenmon.drivers.base import DomeState, Encoder, RelayBank
from tenmon.drivers.motion import EncoderView, NoticeBoard, RelayPair
from tenmon.core.errors import DeviceError, EncoderLost


class RelayDome(NoticeBoard):
    """Closed-loop dome rotation. Non-blocking: verbs start motions, ``update()`` runs them."""

    encoder_grace_s = 2.0

    def __init__(self, config: DomeConfig, bank: RelayBank, encoder: Encoder, clock: Clock,
                 *, min_confidence: float = 0.3):
        super().__init__("dome")
        self.config = config
        self.clock = clock
        self.motor = RelayPair(bank, config.cw_channel, config.ccw_channel, "dome")
        self.view = EncoderView(encoder, clock, min_confidence)
        self.coast_s = config.coast_initial_s
        self.max_speed = config.speed_initial_deg_s
        self._on_since = 0.0
        self._last_update: float | None = None
        self._dt = 0.1
        self.state = DomeState.IDLE
        self.target_deg: float | None = None
        self.error: str | None = None
        self._phase = "idle"
        self._purpose = "goto"
        self._t0 = 0.0
        self._wait_until = 0.0
        self._corrections = 0
        self._dir = 0
        self._stall_ref: tuple[float, float] | None = None
        self._stop_az: float | None = None
        self._stop_speed = 0.0
        self._stop_t = 0.0

    # ------------------------------------------------------------------ properties

    @property
    def azimuth_deg(self) -> float | None:
        if self.view.lost(self.encoder_grace_s):
            return None
        if not self.slewing and abs(self.view.velocity()) < 0.3:
            return self.view.mean_recent(1.0)  # at rest: average out the encoder's noise
        return self.view.azimuth_now()

    @property
    def slewing(self) -> bool:
        return self._phase != "idle"

    def _near(self, az: float) -> bool:
        cur = self.azimuth_deg
        return (cur is not None and not self.slewing
                and abs(wrap180(cur - az)) <= max(1.0, 2 * self.config.dead_band_deg))

    @property
    def at_home(self) -> bool:
        return self._near(self.config.home_azimuth_deg)

    @property
    def at_park(self) -> bool:
        return self._near(self.config.park_azimuth_deg)

    # ------------------------------------------------------------------ verbs

    def slew_to_azimuth(self, azimuth_deg: float, *, purpose: str = "goto") -> None:
        """Start a slew to ``azimuth_deg`` (any value; taken modulo 360) the shortest way round.

        Raises:
            EncoderLost: no trusted azimuth to close the loop on.
            DeviceError: the relay board refused or is gone.
        """
        self.view.refresh()
        if self.view.lost(self.encoder_grace_s):
            raise EncoderLost("dome", "no trusted azimuth from the encoder: cannot slew")
        self.target_deg = float(azimuth_deg) % 360.0
        self.error = None
        self._purpose = purpose
        self._corrections = 0
        self._t0 = self.clock.monotonic()
        self._phase = "plan"
        self.state = DomeState.SLEWING
        self._step()

    def find_home(self) -> None:
        """Go to the home azimuth (absolute azimuth comes from the optical encoder)."""
        self.slew_to_azimuth(self.config.home_azimuth_deg, purpose="home")

    def park(self) -> None:
        self.slew_to_azimuth(self.config.park_azimuth_deg, purpose="park")

    def abort(self) -> None:
        """Stop the motor now; the dome coasts to a stop. Never raises."""
        err = self.motor.stop_quietly()
        was = self._phase
        self._phase = "idle"
        self.state = DomeState.ERROR if err else DomeState.IDLE
        if err:
            self.error = err
        if was != "idle":
            self.notice("info", "slew aborted")

    def disconnect(self) -> None:
        self.motor.stop_quietly()
        self._phase = "idle"

    def fail(self, message: str) -> None:
        """An outside watch found a fault (a welded relay): motor off, state ERROR with
        ``message``. Never raises."""
        self._fail(message)

    # ------------------------------------------------------------------ the loop

    def update(self) -> None:
        self.view.refresh()
        if self._phase == "idle":
            if self.state != DomeState.ERROR:
                self.state = (DomeState.UNKNOWN if self.view.lost(self.encoder_grace_s)
                              else DomeState.IDLE)
            return
        try:
            self._step()
        except DeviceError as exc:
            self._fail(f"relay board: {exc.detail}")

    def _fail(self, message: str) -> None:
        err = self.motor.stop_quietly()
        self._phase = "idle"
        self.state = DomeState.ERROR
        self.error = message + (f"; and stopping failed: {err}" if err else "")
        self.notice("error", self.error, target_deg=self.target_deg)

    def _step(self) -> None:
        now = self.clock.monotonic()
        if self._last_update is not None and now > self._last_update:
            self._dt = min(1.0, now - self._last_update)
        self._last_update = now
        cfg = self.config
        if self.view.lost(self.encoder_grace_s):
            self._fail(f"encoder lost during slew to {self.target_deg:.1f} deg: motor stopped")
            return
        if now - self._t0 > cfg.slew_timeout_s:
            self._fail(f"slew to {self.target_deg:.1f} deg timed out after {cfg.slew_timeout_s:g} s")
            return
        az = self.view.azimuth_now()
        speed = self.view.velocity()
        err = wrap180(self.target_deg - az)

        if self._phase == "plan":
            if abs(err) <= cfg.dead_band_deg:
                self._finish(az)
                return
            direction = 1 if err > 0 else -1
            current = self.motor.direction()
            if current and current != direction:
                self.motor.stop()
                self._phase, self._wait_until = "reverse", now + cfg.reverse_delay_s
                return
            self.motor.drive(direction)
            self._dir = direction
            self._on_since = now
            self._phase = "drive"
            self._stall_ref = (now, az)
            return

        if self._phase == "reverse":
            if now >= self._wait_until:
                self._phase = "plan"
                self._step()
            return

        if self._phase == "drive":
            v = self._model_speed(now)
            # where the dome is now: the newest reading plus the motion since it was taken
            t_read, az_read = self.view.history[-1]
            az_est = az_read + self._dir * v * max(0.0, now - t_read)
            remaining = wrap180(self.target_deg - az_est) * self._dir
            # stop when the coast (plus the half tick until the relay acts) covers what is left
            if remaining <= v * (self.coast_s + self._dt / 2):
                self.motor.stop()
                self._phase = "coast"
                self._stop_az, self._stop_speed, self._stop_t = az_est, v, now
                return
            if now - self._on_since > 3 * cfg.spinup_s + 1.5 and abs(speed) > 0.5:
                # at full speed the measured rate is trustworthy: learn the top speed
                self.max_speed = min(20.0, max(0.1, 0.8 * self.max_speed + 0.2 * abs(speed)))
            if self.motor.direction() != self._dir:
                self._fail("motor relay switched off under the controller (maximum on-time?)")
                return
            t_ref, az_ref = self._stall_ref
            if now - t_ref >= cfg.stall_window_s:
                moved = abs(wrap180(az - az_ref))
                if moved < cfg.stall_min_deg:
                    self._fail(f"stall: motor on for {now - t_ref:.1f} s but the dome turned only "
                               f"{moved:.2f} deg: motor stopped")
                    return
                self._stall_ref = (now, az)
            return

        if self._phase == "coast":
            # Wait out the coast: at least 4 coast times (residual motion < 2 %) and a measured
            # rate below 0.3 deg/s (about 3 sigma of the rate's noise with a 0.15 deg encoder).
            since_stop = now - self._stop_t
            if since_stop < 4.0 * self.coast_s + 0.5 or abs(speed) >= 0.3:
                if since_stop > 4.0 * self.coast_s + 8.0 and abs(speed) >= 0.3:
                    self._fail(f"dome still turning at {speed:+.1f} deg/s {since_stop:.0f} s after "
                               "its motor relays were switched off: relay stuck on?")
                return
            az = self.view.mean_recent(1.0)
            err = wrap180(self.target_deg - az)
            self._learn(az)
            if abs(err) <= cfg.dead_band_deg:
                self._finish(az)
                return
            self._corrections += 1
            if self._corrections > cfg.max_corrections:
                self._fail(f"could not settle within {cfg.dead_band_deg:g} deg of "
                           f"{self.target_deg:.1f} after {cfg.max_corrections} corrections "
                           f"(at {az:.1f} deg)")
                return
            self._phase = "plan"

    def _model_speed(self, now: float) -> float:
        """Predicted speed (deg/s, unsigned) after the motor has been on since ``_on_since``."""
        t_on = max(0.0, now - self._on_since)
        return self.max_speed * (1.0 - math.exp(-t_on / self.config.spinup_s))

    def _learn(self, az: float) -> None:
        """Update the coast time from the overshoot just measured (speeds above 0.5 deg/s)."""
        if self._stop_az is None or self._stop_speed < 0.3:
            return
        coasted = wrap180(az - self._stop_az) * self._dir
        measured = max(0.0, coasted) / self._stop_speed
        self.coast_s = min(5.0, max(0.0, 0.5 * self.coast_s + 0.5 * measured))

    def _finish(self, az: float) -> None:
        self.motor.stop()
        self._phase = "idle"
        self.state = DomeState.IDLE
        self.notice("info", f"dome at {az:.1f} deg ({self._purpose} {self.target_deg:.1f} deg)",
                    azimuth_deg=round(az, 2), coast_s=round(self.coast_s, 3))
