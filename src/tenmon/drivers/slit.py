"""The slit (shutter): open/close relays, position and state from the optical encoder.

Opening needs the encoder: it stops when the encoder reads open, and stops (ERROR) if the encoder
is lost, because a shutter driven blind can jam at its end stop. Closing is always allowed: with
the encoder it runs until the encoder reads closed, plus a short overrun to seat the shutter;
without it, a *blind close* runs the close relay for the full travel time plus margin from the
start of the close, and says so. Every motion has a timeout of travel time plus margin.

The optical encoder can see the slit (its azimuth) without seeing what tells its state: the
telescope hides the slit's lower end, far end or the shutter's edge. It then carries the last
state it could tell, with its age (``details["state_age_s"]``). A carried state is trusted while
the shutter has not moved since it was told; during a motion only a state told in the last
:attr:`RelaySlit.state_told_s` seconds counts. A close whose end the encoder could not see runs
the full travel time plus margin and ends *closed, not verified* (as a blind close does); an
open whose end it could not see stops at the same limit with the state ``unknown`` and says so.
"""

from __future__ import annotations

from tenmon.core.clock import Clock
from tenmon.config.models import SlitConfig
from tenmon.drivers.base import Encoder, RelayBank, ShutterState
from tenmon.drivers.motion import EncoderView, NoticeBoard, RelayPair
from tenmon.core.errors import DeviceError, EncoderLost


class RelaySlit(NoticeBoard):
    """Slit driver. Non-blocking: ``open_slit()``/``close_slit()`` start, ``update()`` runs."""

    encoder_grace_s = 2.0
    #: during a motion, a state the encoder told longer ago than this is not where the shutter is
    state_told_s = 2.0

    def __init__(self, config: SlitConfig, bank: RelayBank, encoder: Encoder, clock: Clock,
                 *, min_confidence: float = 0.3):
        super().__init__("slit")
        self.config = config
        self.clock = clock
        self.motor = RelayPair(bank, config.open_channel, config.close_channel, "slit")
        self.view = EncoderView(encoder, clock, min_confidence)
        self.state = ShutterState.UNKNOWN
        self.error: str | None = None
        #: False after a blind or unseen close ("closed, not verified": never the safe state),
        #: until the encoder tells the state again
        self.verified = True
        self._phase = "idle"
        self._t0 = 0.0
        self._closed_at: float | None = None
        self._blind = False
        self._open_hits = 0
        self._open_at: float | None = None
        self._close_hits = 0
        self._last_seen = None
        self._min_close_s = 0.0
        self._min_open_s = 0.0
        self._hits_since = 0.0
        self._seen_closed: float | None = None
        self._moved_until = float("-inf")  # monotonic time the shutter last moved

    # ------------------------------------------------------------------ readings

    @property
    def open_fraction(self) -> float | None:
        """The encoder's open fraction, None when lost or when its state is not told since the
        shutter moved (see the module docstring)."""
        if self.view.lost(self.encoder_grace_s) or self.view.good is None:
            return None
        if not self._state_told():
            return None
        return self.view.good.open_fraction

    def _state_age(self) -> float:
        """Seconds since the encoder last told the state (0 for encoders that always tell it)."""
        age = self.view.good.details.get("state_age_s") if self.view.good is not None else None
        return float(age) if age is not None else 0.0

    def _state_told(self) -> bool:
        age = self._state_age()
        if age == 0.0:
            return True
        if self._phase != "idle":
            return age <= self.state_told_s
        told_at = (self.view.good_at or 0.0) - age
        return told_at >= self._moved_until - self.state_told_s

    @property
    def moving(self) -> bool:
        return self._phase != "idle"

    @property
    def blind(self) -> bool:
        return self._blind

    #: hysteresis on the thresholds, so encoder noise does not flip a closed slit to partial
    HYSTERESIS = 0.03

    def _static_state(self) -> ShutterState:
        frac = self.open_fraction
        if frac is None:
            return ShutterState.UNKNOWN
        h = self.HYSTERESIS
        if self.state == ShutterState.CLOSED and frac <= self.config.closed_threshold + h:
            return ShutterState.CLOSED
        if self.state == ShutterState.OPEN and frac >= self.config.open_threshold - h:
            return ShutterState.OPEN
        if frac >= self.config.open_threshold:
            return ShutterState.OPEN
        if frac <= self.config.closed_threshold:
            return ShutterState.CLOSED
        return ShutterState.PARTIAL

    # ------------------------------------------------------------------ verbs

    def open_slit(self) -> None:
        """Start opening. Raises EncoderLost (never opens blind) or DeviceError (relays)."""
        self.view.refresh()
        if self.view.lost(self.encoder_grace_s):
            raise EncoderLost("slit", "no trusted encoder reading: the slit is never opened blind")
        if self._static_state() == ShutterState.OPEN:
            self.state = ShutterState.OPEN
            return
        start_fraction = self.open_fraction or 0.0
        self.motor.drive(+1)
        self._start("opening")
        # as for closing: an encoder that reads "open" early must not leave the slit part-open
        self._min_open_s = max(0.0, 0.95 - start_fraction) * self.config.travel_time_s

    def close_slit(self) -> None:
        """Start closing; always allowed. Without a trusted encoder reading this is a blind close.

        Raises DeviceError only if the relay board cannot be driven at all.
        """
        self.view.refresh()
        if self._phase == "closing":
            return
        start_fraction = self.open_fraction
        self.motor.drive(-1)
        self._start("closing")
        self._blind = self.view.lost(self.encoder_grace_s)
        # Never stop a close before the time the travel from where it started takes: an encoder
        # that reads "closed" too early (the optical one can, near the bottom) must not leave
        # the slit open a crack. Unknown start: the full travel.
        f0 = 1.0 if start_fraction is None or self._blind else min(1.0, start_fraction + 0.05)
        self._min_close_s = f0 * self.config.travel_time_s
        if self._blind:
            self.notice("warning", "encoder lost: blind close, running the close relay for "
                        f"{self._limit():g} s (travel time + margin)")

    def stop(self) -> None:
        """Stop the shutter motor where it is. Never raises."""
        err = self.motor.stop_quietly()
        self._phase = "idle"
        if err:
            self._set_error(f"stop failed: {err}")

    def disconnect(self) -> None:
        self.motor.stop_quietly()
        self._phase = "idle"

    def fail(self, message: str) -> None:
        """An outside watch found a fault (a welded relay, motion nobody commanded): motor off,
        state ERROR with ``message``. Never raises."""
        err = self.motor.stop_quietly()
        self._phase = "idle"
        self._blind = False
        self._set_error(message + (f"; and stopping failed: {err}" if err else ""))

    def _start(self, phase: str) -> None:
        self._phase = phase
        self._t0 = self.clock.monotonic()
        self._closed_at = None
        self._open_hits = 0
        self._open_at = None
        self._close_hits = 0
        self._last_seen = None
        self._seen_closed = None
        self.error = None
        self.state = ShutterState.OPENING if phase == "opening" else ShutterState.CLOSING

    def _limit(self) -> float:
        return self.config.travel_time_s + self.config.margin_s

    def _set_error(self, message: str) -> None:
        self.state = ShutterState.ERROR
        self.error = message
        self.notice("error", message)

    # ------------------------------------------------------------------ the loop

    def update(self) -> None:
        self.view.refresh()
        try:
            self._step()
        except DeviceError as exc:
            err = self.motor.stop_quietly()
            self._phase = "idle"
            self._set_error(f"relay board: {exc.detail}" + (f" ({err})" if err else ""))

    def _step(self) -> None:
        now = self.clock.monotonic()
        elapsed = now - self._t0
        lost = self.view.lost(self.encoder_grace_s)
        if self._phase != "idle":
            self._moved_until = now
        if self._phase == "idle":
            if self.state == ShutterState.ERROR:
                return
            static = self._static_state()
            if static != ShutterState.UNKNOWN:
                self.state = static
                self.verified = True  # the encoder tells the state: verified
            elif not (self.state == ShutterState.CLOSED and not self.verified):
                # keep "closed (unverified)" after a blind close until the encoder returns
                self.state = ShutterState.UNKNOWN
            return

        if self._phase == "opening":
            if lost:
                self.motor.stop()
                self._phase = "idle"
                self._set_error("encoder lost while opening: stopped (never opened blind)")
                return
            good = self.view.good
            if good is not self._last_seen:
                self._last_seen = good
                at_top = self.open_fraction is not None and \
                    self.open_fraction >= self.config.open_threshold
                self._open_hits = self._open_hits + 1 if at_top else 0
            # two readings in a row at the top (one noisy reading must not stop it short), then
            # on to the end stop for open_overrun_s (stopping right at the threshold would leave
            # the slit where noise reads it as partly open)
            if self._open_hits >= 2 and self._open_at is None and elapsed >= self._min_open_s:
                self._open_at = now
            if self._open_at is not None and now - self._open_at >= self.config.open_overrun_s:
                self.motor.stop()
                self._phase = "idle"
                self.state = ShutterState.OPEN
                self.notice("info", f"slit open after {elapsed:.0f} s")
                return
            if self.motor.direction() != 1:
                self._phase = "idle"
                self._set_error("open relay switched off under the controller (maximum on-time?)")
                return
            if elapsed > self._limit():
                self.motor.stop()
                self._phase = "idle"
                if not self._state_told():
                    self.state = ShutterState.UNKNOWN
                    self.notice("warning", f"open relay ran {elapsed:.0f} s (travel time + margin) "
                                f"but the encoder could not see the slit's state for "
                                f"{self._state_age():.0f} s (the telescope hides its far end?): "
                                "open not verified; move the telescope clear of the slit to check")
                    return
                self._set_error(f"did not open within {self._limit():g} s "
                                f"(open fraction {self.open_fraction})")
            return

        # closing
        if lost and not self._blind:
            self._blind = True
            self.notice("warning", "encoder lost while closing: continuing blind until "
                        f"{self._limit():g} s after the close began")
        if not self._blind:
            good = self.view.good
            if good is not self._last_seen:
                self._last_seen = good
                at_bottom = self.open_fraction is not None and \
                    self.open_fraction <= self.config.closed_threshold
                self._close_hits = self._close_hits + 1 if at_bottom else 0
                if self._close_hits == 1:
                    self._hits_since = now - self._t0
                if self._close_hits == 3 and self._seen_closed is None:
                    self._seen_closed = self._hits_since  # first of three readings "closed"
        # three readings in a row at the bottom (a noisy reading can read "closed" with the slit
        # still a few % open) and at least the travel time from where the close began, then on
        # to the end stop for close_overrun_s
        if not self._blind and self._close_hits >= 3 and elapsed >= self._min_close_s:
            if self._closed_at is None:
                self._closed_at = now
            if now - self._closed_at >= self.config.close_overrun_s:
                self.motor.stop()
                self._phase = "idle"
                self.state = ShutterState.CLOSED
                self.verified = True
                seen = self._seen_closed if self._seen_closed is not None else elapsed
                self.notice("info", f"slit closed after {seen:.1f} s (seen closed; close relay "
                            f"off after {elapsed:.1f} s, at the end stop)",
                            seen_closed_s=round(seen, 2), relay_off_s=round(elapsed, 2))
            return
        cut = self.motor.direction() != -1
        if elapsed >= self._limit() or cut:
            self.motor.stop()
            self._phase = "idle"
            if self._blind and not cut:
                self._blind = False
                self.state = ShutterState.CLOSED
                self.verified = False
                self.notice("warning", f"blind close finished after {elapsed:.0f} s: the close "
                            "relay ran the full travel time; not verified by the encoder")
            elif cut:
                self._blind = False
                self._set_error(f"close relay switched off under the controller after "
                                f"{elapsed:.0f} s (maximum on-time or board reset?)")
            elif not self._state_told():
                self.state = ShutterState.CLOSED
                self.verified = False
                self.notice("warning", f"close relay ran the full travel time ({elapsed:.0f} s) but "
                            f"the encoder could not see the slit's state for {self._state_age():.0f} s "
                            "(the telescope hides its lower end?): closed, not verified; move the "
                            "telescope clear of the slit to check")
            else:
                self._set_error(f"did not close within {self._limit():g} s "
                                f"(open fraction {self.open_fraction})")
