"""Slit tracker: fuses single-frame readings over time into a position, a velocity and a motion state.

Azimuth: a constant-velocity Kalman filter on the circle (innovations wrapped to +-180 degrees),
measurement noise scaled by each reading's confidence, readings outside a gate rejected as
outliers. A run of mutually consistent outliers means the dome really is elsewhere (after a gap,
or a reading stream that was wrong before): the track restarts there. Opening: the open fraction
is smoothed and its rate taken from a short window; a clear rate says ``opening``/``closing``.
Honesty: without an accepted reading for ``stale_s`` the tracker answers ``unknown``; meanwhile
its confidence decays with the age of the last good reading. A reading that found the slit but
could not tell its state (state ``unknown``, azimuth given: the telescope hides the part of the
slit that tells it) feeds the azimuth only; the opening and state are carried from the last
frames that could tell them (``details["state_age_s"]`` says how old that is).

Pure: readings (with their timestamps) in, readings out; no clock, no sleeps.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from datetime import datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tenmon.vision.slit.reading import SlitReading, angle_diff, state_for_fraction, wrap360

log = logging.getLogger(__name__)


class TrackerSettings(BaseModel):
    """Tuning of :class:`SlitTracker` (defaults suit a dome turning at up to ~6 deg/s)."""

    model_config = ConfigDict(extra="forbid")

    min_confidence: float = Field(default=0.3, ge=0, le=1, description="readings below are ignored")
    measurement_noise_deg: float = Field(default=0.4, gt=0, description="1-sigma of a confident reading")
    acceleration_noise_deg_s2: float = Field(default=2.0, gt=0, description="process noise of the dome")
    gate_deg: float = Field(default=5.0, gt=0, description="innovations beyond this (and 4 sigma) are outliers")
    max_rate_deg_s: float = Field(default=10.0, gt=0, description="the dome cannot turn faster")
    restart_after: int = Field(default=3, ge=1, description="consistent outliers that restart the track")
    stale_s: float = Field(default=5.0, gt=0, description="no good reading for this long: unknown")
    rotation_threshold_deg_s: float = Field(default=0.3, ge=0, description="above: the dome is turning")
    fraction_window_s: float = Field(default=3.0, gt=0, description="window of the opening-rate fit")
    fraction_rate_threshold_s: float = Field(default=0.01, ge=0,
                                             description="open fraction per second that counts as moving")


class SlitTracker:
    """Tracks the slit from a stream of :class:`SlitReading` (see the module docstring)."""

    def __init__(self, settings: TrackerSettings | None = None):
        self.settings = settings or TrackerSettings()
        self.reset()

    def reset(self) -> None:
        """Forget the track."""
        self._x: np.ndarray | None = None  # [azimuth (unwrapped), rate]
        self._P = np.eye(2)
        self._t: datetime | None = None
        self._last_good: datetime | None = None
        self._conf = 0.0
        self._outliers: list[tuple[datetime, float]] = []
        self._fractions: deque[tuple[datetime, float]] = deque()
        self._frac: float | None = None
        self._frame_state = "unknown"
        self._last_state: datetime | None = None
        self.accepted = 0
        self.rejected = 0

    # -- filtering ---------------------------------------------------------------------------

    def _predict(self, t: datetime) -> None:
        if self._x is None or self._t is None:
            return
        dt = (t - self._t).total_seconds()
        if dt <= 0:
            return
        F = np.array([[1.0, dt], [0.0, 1.0]])
        q = self.settings.acceleration_noise_deg_s2 ** 2
        Q = q * np.array([[dt ** 4 / 4, dt ** 3 / 2], [dt ** 3 / 2, dt ** 2]])
        self._x = F @ self._x
        self._P = F @ self._P @ F.T + Q
        self._t = t

    def _start(self, t: datetime, az: float, r: float) -> None:
        self._x = np.array([az, 0.0])
        self._P = np.diag([r, 4.0])
        self._t = t
        self._outliers.clear()

    def update(self, reading: SlitReading) -> SlitReading:
        """Feed one single-frame reading; returns the tracked reading at its time.

        Readings older than the track's time are ignored (returned as the current estimate).
        """
        s = self.settings
        t = reading.time
        if self._t is not None and t < self._t:
            return self.current(self._t)
        if not reading.azimuth_known or reading.confidence < s.min_confidence:
            self._predict(t)
            return self.current(t)
        az = float(reading.azimuth_deg)
        sigma = s.measurement_noise_deg / max(reading.confidence, 0.1)
        r = sigma * sigma
        if self._x is None:
            self._start(t, az, r)
            self._accept(reading, t)
            return self.current(t)
        self._predict(t)
        nu = angle_diff(az, self._x[0] % 360.0)
        S = self._P[0, 0] + r
        gate = max(s.gate_deg, 4.0 * math.sqrt(S))
        if abs(nu) > gate:
            self.rejected += 1
            self._outliers.append((t, az))
            self._outliers = self._outliers[-s.restart_after:]
            if len(self._outliers) >= s.restart_after and self._consistent(self._outliers):
                log.info("slit track restarted at %.1f deg after %d consistent outliers", az,
                         len(self._outliers))
                self._start(t, az, r)
                self._accept(reading, t)
            return self.current(t)
        self._outliers.clear()
        H = np.array([1.0, 0.0])
        K = self._P @ H / S
        self._x = self._x + K * nu
        self._P = (np.eye(2) - np.outer(K, H)) @ self._P
        self._x[1] = float(np.clip(self._x[1], -s.max_rate_deg_s, s.max_rate_deg_s))
        self._accept(reading, t)
        return self.current(t)

    def _consistent(self, pts: list[tuple[datetime, float]]) -> bool:
        """True when outliers agree with each other (within the gate, allowing the max rate)."""
        s = self.settings
        for (t0, a0), (t1, a1) in zip(pts, pts[1:]):
            dt = (t1 - t0).total_seconds()
            if abs(angle_diff(a1, a0)) > s.gate_deg + s.max_rate_deg_s * dt:
                return False
        return True

    def _accept(self, reading: SlitReading, t: datetime) -> None:
        self.accepted += 1
        self._last_good = t
        self._conf = 0.7 * self._conf + 0.3 * reading.confidence if self.accepted > 1 else reading.confidence
        if reading.state == "unknown":
            # the azimuth only: the opening stays what the last frames that could tell it said
            return
        self._last_state = t
        if reading.open_fraction is not None:
            self._fractions.append((t, float(reading.open_fraction)))
            while self._fractions and (t - self._fractions[0][0]).total_seconds() > self.settings.fraction_window_s:
                self._fractions.popleft()
            fr = np.array([f for _, f in self._fractions])
            self._frac = float(np.median(fr))
        self._frame_state = reading.state

    def _fraction_rate(self) -> float:
        if len(self._fractions) < 3:
            return 0.0
        t0 = self._fractions[0][0]
        ts = np.array([(t - t0).total_seconds() for t, _ in self._fractions])
        fs = np.array([f for _, f in self._fractions])
        if ts[-1] - ts[0] < 0.5:
            return 0.0
        return float(np.polyfit(ts, fs, 1)[0])

    # -- output ------------------------------------------------------------------------------

    def current(self, now: datetime) -> SlitReading:
        """The tracked reading at ``now`` (prediction from the last update; no state change)."""
        s = self.settings
        if self._x is None or self._last_good is None:
            return SlitReading.unknown(now, source="tracker", reason="no reading yet")
        age = (now - self._last_good).total_seconds()
        if age > s.stale_s:
            return SlitReading.unknown(now, source="tracker", reason=f"no good reading for {age:.1f} s",
                                       last_azimuth_deg=wrap360(float(self._x[0])))
        dt = max(0.0, (now - self._t).total_seconds()) if self._t else 0.0
        az = wrap360(float(self._x[0] + self._x[1] * dt))
        rate = float(self._x[1])
        frac = self._frac
        state_age = None if self._last_state is None else (now - self._last_state).total_seconds()
        # no opening rate from old frames: a carried opening is a still one
        frate = self._fraction_rate() if state_age is not None and state_age <= s.fraction_window_s else 0.0
        if frac is None:
            state = self._frame_state
        elif frate > s.fraction_rate_threshold_s and frac < 0.98:
            state = "opening"
        elif frate < -s.fraction_rate_threshold_s and frac > 0.02:
            state = "closing"
        else:
            state = state_for_fraction(frac)
        conf = self._conf * math.exp(-age / s.stale_s)
        sigma = math.sqrt(max(self._P[0, 0], 0.0))
        conf *= 1.0 / (1.0 + max(0.0, sigma - 1.0))
        return SlitReading(time=now, azimuth_deg=round(az, 3),
                           open_fraction=None if frac is None else round(frac, 3), state=state,
                           confidence=round(float(np.clip(conf, 0.0, 1.0)), 3), source="tracker",
                           angular_velocity_deg_s=round(rate, 3),
                           details={"rotating": abs(rate) > s.rotation_threshold_deg_s,
                                    "sigma_deg": sigma, "fraction_rate_s": frate, "age_s": age,
                                    "state_age_s": state_age,
                                    "accepted": self.accepted, "rejected": self.rejected})
