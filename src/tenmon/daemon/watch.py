"""Every actuator is watched: motion nobody commanded is an actuator fault (alarm and unsafe).

Three ways to see it, checked every tick after the devices' own updates:

* **relay read-back**: a bank that reads its contacts back (``RelayBankBase.readback()``; the
  simulated board does, write-only boards such as the LCUS ones do not) disagreeing with what
  was commanded for longer than :data:`READBACK_GRACE_S`. A contact that reads ON while
  commanded off (welded) is switched off again, its interlock partner is switched off, and the
  device it drives is stopped; nothing is ever energized against it (the bank's interlock
  refuses it). A contact that reads OFF while commanded on (it does not close) is switched off
  and its device stopped.
* **the dome turning while idle**: after the dome's coast has died out (``4 coast_s + 5 s``
  after its motor stopped), its encoder azimuth moving more than ``safety.uncommanded_dome_deg``.
* **the shutter moving while idle**: the encoder's open fraction (median of its last readings)
  moving more than ``safety.uncommanded_slit_fraction`` with no slit motion commanded; and a
  cover with limit switches leaving its end switch with no cover motion commanded.

Motion seen this way says which relay drives it (the dome turning clockwise: its CW relay), and
that relay is marked welded for the bank's interlock (``RelayBankBase.suspect``) while the fault
lasts, so on a board that cannot read back too nothing is energized against it.

A fault is an ``alarm`` event (kind ``actuator``) and an input of the safety decision
(``SafetyInputs.faults``: unsafe) until the motion has stopped (or the read-back agrees) for
``safety.fault_clear_s``, or an operator clears it (``tenmon resume``; a fault still going on is
found again at once). Status shows it: the relays' read-back beside what was commanded, the
dome or slit ``moving (uncommanded)``.
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from tenmon.core.astro import wrap180
from tenmon.core.clock import Clock
from tenmon.config.models import TenmonConfig
from tenmon.drivers.base import ShutterState
from tenmon.core.errors import DeviceError

log = logging.getLogger(__name__)

#: A read-back that disagrees with the command for this long is a fault (boards may lag a write).
READBACK_GRACE_S = 0.25
#: After the slit's or cover's motor stops, wait this long before watching it stand still.
SHUTTER_SETTLE_S = 2.0
#: Readings the slit's open fraction is taken as the median of (noise must not read as motion).
SLIT_MEDIAN_OF = 5
#: Below this rate (deg/s) the dome stands still (about 3 sigma of the rate's noise with a
#: 0.15 deg encoder at 5 Hz).
DOME_STILL_DEG_S = 0.3


@dataclass
class ActuatorFault:
    """One actuator fault: ``device`` is where status shows it; ``moving`` whether something
    turns or travels that nobody commanded."""

    key: str
    device: str
    message: str
    moving: bool
    since: float
    quiet_since: float | None = None
    #: (bank, channel) treated as welded on while the fault lasts (the interlock refuses their
    #: partners): the relay that drives the motion seen
    suspects: tuple = ()

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "message": self.message, "moving": self.moving}


class ActuatorWatch:
    """See the module docstring. Built by the observatory; ``update()`` once per tick."""

    def __init__(self, config: TenmonConfig, *, banks: dict, dome, slit, cover, encoder_view,
                 clock: Clock, emit: Callable[..., None]):
        self.limits = config.safety
        self.cfg = config
        self.banks = banks
        self.dome, self.slit, self.cover = dome, slit, cover
        self.view = encoder_view
        self.clock = clock
        self.emit = emit
        self.faults_by_key: dict[str, ActuatorFault] = {}
        #: (bank, channel) -> (device name, role), from the config's wiring
        self.owner: dict[tuple[str, int], tuple[str, str]] = {}
        for dev, bank, pairs in (
                ("dome", config.dome.relays, (("cw", config.dome.cw_channel),
                                              ("ccw", config.dome.ccw_channel))),
                ("slit", config.slit.relays, (("open", config.slit.open_channel),
                                              ("close", config.slit.close_channel))),
                ("cover", config.cover.relays, (("open", config.cover.open_channel),
                                                ("close", config.cover.close_channel)))):
            for role, ch in pairs:
                self.owner[(bank, ch)] = (dev, role)
        self.readbacks: dict[str, dict[int, bool] | None] = {}
        self._mismatch_since: dict[str, float] = {}
        now = clock.monotonic()
        self._dome_idle_since = now
        self._dome_ref: float | None = None
        self._slit_idle_since = now
        self._slit_ref: float | None = None
        self._slit_fracs: deque[float] = deque(maxlen=SLIT_MEDIAN_OF)
        self._slit_seen = None
        self._slit_last_median: float | None = None
        self._slit_still_since = now
        self._cover_idle_since = now
        self._cover_ref: ShutterState | None = None

    # ------------------------------------------------------------------ results

    def faults(self) -> tuple[str, ...]:
        """The active faults' messages (the safety decision's ``faults`` input)."""
        return tuple(f.message for f in self.faults_by_key.values())

    def fault_of(self, device: str, *, moving: bool | None = None) -> ActuatorFault | None:
        for f in self.faults_by_key.values():
            if f.device == device and (moving is None or f.moving == moving):
                return f
        return None

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.faults_by_key.values()]

    def clear(self) -> int:
        """The operator clears every fault (``tenmon resume``); one still going on is found
        again. Returns how many were cleared."""
        n = len(self.faults_by_key)
        for f in self.faults_by_key.values():
            self.emit("info", "actuator", f"actuator fault cleared by the operator: {f.message}",
                      device=f.device)
        for f in self.faults_by_key.values():
            self._unsuspect(f)
        self.faults_by_key.clear()
        self._mismatch_since.clear()
        self._dome_ref = self._slit_ref = None
        self._cover_ref = None
        return n

    # ------------------------------------------------------------------ the tick

    def update(self) -> None:
        now = self.clock.monotonic()
        present: set[str] = set()
        for name, bank in self.banks.items():
            present |= self._check_relays(name, bank, now)
        present |= self._check_dome(now)
        present |= self._check_slit(now)
        present |= self._check_cover(now)
        for key, f in list(self.faults_by_key.items()):
            if key in present:
                f.quiet_since = None
                continue
            if f.quiet_since is None:
                f.quiet_since = now
            elif now - f.quiet_since >= self.limits.fault_clear_s:
                del self.faults_by_key[key]
                self._unsuspect(f)
                self.emit("info", "actuator", f"actuator fault over (stopped for "
                          f"{now - f.quiet_since:.0f} s): {f.message}", device=f.device)

    def _raise(self, key: str, device: str, message: str, moving: bool, now: float,
               suspect: tuple[str, int] | None = None) -> bool:
        """Record a fault (an alarm the first time); True if it is new."""
        f = self.faults_by_key.get(key)
        if f is not None:
            return False
        suspects = ()
        if suspect is not None and suspect[0] in self.banks:
            try:
                self.banks[suspect[0]].suspect(suspect[1], f"{device}: motion nobody commanded")
                suspects = (suspect,)
            except (AttributeError, DeviceError):
                pass
        self.faults_by_key[key] = ActuatorFault(key, device, message, moving, now,
                                                suspects=suspects)
        self.emit("alarm", "actuator", "ACTUATOR FAULT: " + message, device=device)
        return True

    def _unsuspect(self, f: ActuatorFault) -> None:
        for bank, ch in f.suspects:
            try:
                self.banks[bank].suspect(ch, None)
            except (AttributeError, KeyError, DeviceError):
                pass

    # ------------------------------------------------------------------ relays

    def _check_relays(self, name: str, bank, now: float) -> set[str]:
        read = getattr(bank, "readback", None)
        physical = read() if read is not None else None
        self.readbacks[name] = physical
        present: set[str] = set()
        if physical is None:
            # cannot tell (write-only board, or lost): a fault found earlier stays until the
            # encoder-side checks or the operator clear it
            for key in self.faults_by_key:
                if key.startswith(f"relays.{name}:"):
                    present.add(key)
            return present
        for ch in range(1, bank.channels + 1):
            key = f"relays.{name}:{ch}"
            commanded = bank.is_on(ch)
            phys = bool(physical.get(ch, commanded))
            if phys == commanded:
                self._mismatch_since.pop(key, None)
                continue
            since = self._mismatch_since.setdefault(key, now)
            if now - since < READBACK_GRACE_S and key not in self.faults_by_key:
                continue
            present.add(key)
            if key in self.faults_by_key:
                continue
            dev, role = self.owner.get((name, ch), (None, None))
            what = f"relays.{name} channel {ch}" + (f" ({dev} {role})" if dev else "")
            if phys:
                found = f"relay stuck on: {what} reads back ON but is commanded off (welded?)"
            else:
                found = (f"relay does not close: {what} is commanded on but reads back OFF")
            done = self._stop_relay(bank, ch, dev, found)
            msg = f"{found}: {done}"
            if phys:
                msg += "; nothing is driven against it" + (
                    f"; the {dev} may be moving: cut its motor power if it does not stop"
                    if dev else "")
            self._raise(key, f"relays.{name}", msg, moving=phys, now=now)
        return present

    def _stop_relay(self, bank, ch: int, dev: str | None, found: str) -> str:
        """Stop what can be stopped; returns what was done (for the alarm's text)."""
        done = []
        try:
            bank.set(ch, False)
            done.append(f"switched channel {ch} off again")
        except DeviceError as exc:
            done.append(f"could not switch channel {ch} off ({exc.detail})")
        for partner in sorted(getattr(bank, "interlocks", {}).get(ch, ())):
            try:
                if bank.is_on(partner):
                    bank.set(partner, False)
                    done.append(f"switched its partner channel {partner} off")
            except DeviceError as exc:
                done.append(f"could not switch partner channel {partner} off ({exc.detail})")
        device = {"dome": self.dome, "slit": self.slit, "cover": self.cover}.get(dev or "")
        if device is not None:
            device.fail(found)  # its controller stops and says why, instead of fighting it
            done.append(f"{dev} stopped")
        return ", ".join(done)

    def relay_device_moving(self, device: str) -> bool:
        """A welded contact of ``device``'s relays reads ON (it may be moving)."""
        for f in self.faults_by_key.values():
            if f.moving and f.key.startswith("relays."):
                bank, _, ch = f.key[len("relays."):].rpartition(":")
                if self.owner.get((bank, int(ch)), (None,))[0] == device:
                    return True
        return False

    # ------------------------------------------------------------------ dome

    def _check_dome(self, now: float) -> set[str]:
        dome = self.dome
        busy = dome.slewing or dome.motor.direction() != 0
        if busy:
            self._dome_idle_since = now
            self._dome_ref = None
            return set()
        grace = 4.0 * dome.coast_s + 5.0
        if now - self._dome_idle_since < grace or self.view.lost(2.0):
            return {"dome"} if "dome" in self.faults_by_key else set()
        az = self.view.mean_recent(1.0)
        if az is None:
            return set()
        if self._dome_ref is None:
            self._dome_ref = az
            return set()
        moved = abs(wrap180(az - self._dome_ref))
        turning = abs(self.view.velocity()) >= DOME_STILL_DEG_S
        if "dome" in self.faults_by_key:
            if turning:
                return {"dome"}
            self._dome_ref = az  # stopped: watch from where it stands now
            return set()
        if moved > self.limits.uncommanded_dome_deg:
            self._raise("dome", "dome", f"the dome is turning with no motion commanded (moved "
                        f"{moved:.1f} deg while idle, now at {az:.1f} deg, "
                        f"{self.view.velocity():+.1f} deg/s): a relay stuck on, or pushed by "
                        "hand?", moving=True, now=now,
                        suspect=(self.cfg.dome.relays,
                                 self.cfg.dome.cw_channel if wrap180(az - self._dome_ref) > 0
                                 else self.cfg.dome.ccw_channel))
            dome.fail("turning with no motion commanded (relay stuck on?): motor relays off")
            return {"dome"}
        return set()

    # ------------------------------------------------------------------ slit and cover

    def _check_slit(self, now: float) -> set[str]:
        slit = self.slit
        if slit.moving:
            self._slit_idle_since = now
            self._slit_ref = None
            self._slit_fracs.clear()
            return set()
        active = "slit" in self.faults_by_key
        frac = slit.open_fraction
        good = slit.view.good
        if frac is not None and good is not self._slit_seen:
            self._slit_seen = good
            self._slit_fracs.append(frac)
        if now - self._slit_idle_since < SHUTTER_SETTLE_S or frac is None \
                or len(self._slit_fracs) < SLIT_MEDIAN_OF:
            return {"slit"} if active else set()
        med = statistics.median(self._slit_fracs)
        if self._slit_last_median is None or abs(med - self._slit_last_median) > 0.01:
            self._slit_still_since = now
        self._slit_last_median = med
        if self._slit_ref is None:
            self._slit_ref = med
            return set()
        if active:
            if now - self._slit_still_since < 2.0:
                return {"slit"}
            self._slit_ref = med
            return set()
        moved = med - self._slit_ref
        if abs(moved) > self.limits.uncommanded_slit_fraction:
            way = "opening" if moved > 0 else "closing"
            self._raise("slit", "slit", f"the shutter is {way} with no motion commanded "
                        f"({self._slit_ref:.0%} -> {med:.0%} open while idle): a relay stuck "
                        "on?", moving=True, now=now,
                        suspect=(self.cfg.slit.relays,
                                 self.cfg.slit.open_channel if moved > 0
                                 else self.cfg.slit.close_channel))
            slit.fail("moving with no motion commanded (relay stuck on?): motor relays off")
            return {"slit"}
        return set()

    def _check_cover(self, now: float) -> set[str]:
        cover = self.cover
        if not getattr(cover, "has_switches", False):
            return set()
        if cover.moving:
            self._cover_idle_since = now
            self._cover_ref = None
            return set()
        active = "cover" in self.faults_by_key
        st = cover.state
        if now - self._cover_idle_since < SHUTTER_SETTLE_S:
            return {"cover"} if active else set()
        if self._cover_ref is None:
            if st in (ShutterState.OPEN, ShutterState.CLOSED):
                self._cover_ref = st
            return {"cover"} if active else set()
        if st == self._cover_ref:
            return set()
        if active:
            if st in (ShutterState.OPEN, ShutterState.CLOSED):
                self._cover_ref = st  # at an end stop again: it stopped
                return set()
            return {"cover"}
        if st != ShutterState.ERROR:
            self._raise("cover", "cover", f"the mirror cover left {self._cover_ref.value} with no "
                        f"motion commanded (its limit switches now say {st.value}): a relay "
                        "stuck on?", moving=True, now=now,
                        suspect=(self.cfg.cover.relays,
                                 self.cfg.cover.open_channel
                                 if self._cover_ref == ShutterState.CLOSED
                                 else self.cfg.cover.close_channel))
            cover.fail("moving with no motion commanded (relay stuck on?): motor relays off")
            return {"cover"}
        return set()
