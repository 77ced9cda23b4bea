"""The observatory as the daemon owns it: devices, the safety supervisor, the record, one tick.

Everything here runs on the event-loop thread, one ``tick()`` at a time, so no state is shared
between threads. Nothing here waits on storage: events, history and daemon state go to the
store's writer thread (``daemon.store``), and ``emit`` never raises. Commands (from the HTTP API,
the sequencer, the night's jobs) are plain methods that check safety first and raise
:class:`~tenmon.core.errors.CommandRefused` with a stable code. Every open (slit or cover) goes
through :meth:`Observatory.check_open`, the one place that refuses it while unsafe, while the
supervisor is closing, or during the reopen hold-off.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

from tenmon import __version__
from tenmon.core.astro import lst_deg, radec_to_altaz, sun_altitude_deg
from tenmon.core.clock import Clock
from tenmon.config.models import TenmonConfig
from tenmon.daemon.safety import SafetyInputs, SafetyVerdict, evaluate
from tenmon.daemon.storage import StorageWatch
from tenmon.daemon.store import Store
from tenmon.core.timefmt import utc_iso
from tenmon.daemon.supervisor import HOLD_OFF_KEY, Devices, ReopenHoldOff, SafetySupervisor
from tenmon.daemon.watch import ActuatorWatch
from tenmon.drivers.base import MountState, ShutterState
from tenmon.drivers.motion import EncoderView
from tenmon.core.errors import CommandRefused, DeviceError

log = logging.getLogger(__name__)

SUN_CACHE_S = 30.0


class LoopStats:
    """Rolling record of how late control ticks start (seconds), for status and benchmarks."""

    #: A tick starting this late (s) counts as a stall (``late_100ms``, since the start).
    STALL_S = 0.1

    def __init__(self, size: int = 6000):
        self.size = size
        self.values: list[float] = []
        self.count = 0
        self.stalls = 0

    def add(self, late_s: float) -> None:
        self.values.append(late_s)
        self.count += 1
        if late_s > self.STALL_S:
            self.stalls += 1
        if len(self.values) > self.size:
            del self.values[: len(self.values) - self.size]

    def to_json(self) -> dict[str, float | int | None]:
        if not self.values:
            return {"ticks": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "late_100ms": 0}
        v = sorted(self.values)
        pick = lambda q: round(1000 * v[min(len(v) - 1, int(q * len(v)))], 2)  # noqa: E731
        return {"ticks": self.count, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                "max_ms": round(1000 * v[-1], 2), "late_100ms": self.stalls}


class Observatory:
    """Owns every device and runs the control tick. Built by ``daemon.compose``."""

    def __init__(self, config: TenmonConfig, clock: Clock, store: Store, *, banks: dict,
                 encoder, weather, mount, dome, slit, cover, world=None, sim=None,
                 mount_inline: bool = True):
        self.config = config
        self.clock = clock
        self.store = store
        self.banks = banks
        self.encoder = encoder
        self.weather = weather
        self.mount = mount
        self.dome = dome
        self.slit = slit
        self.cover = cover
        #: simulated mode: the simulated world, for the simulated services that view it (the
        #: simulated CCD renders it); ``None`` at a site. The observatory never steps it.
        self.world = world
        #: simulated mode: the world's driver (``drivers.sim.site.SimSite``: steps, saves, the
        #: ``sim`` commands), chosen by ``compose.py`` and ticked by the control loop
        #: (``daemon.control_loop``) around this observatory's tick; ``None`` at a site.
        self.sim = sim
        self.mount_inline = mount_inline
        self.mode = config.mode
        self.encoder_view = EncoderView(encoder, clock, config.safety.encoder_min_confidence)
        hold_off = ReopenHoldOff(config.safety.reopen_after_s, clock,
                                 save=lambda state: self.store.set_state(HOLD_OFF_KEY, state))
        self.supervisor = SafetySupervisor(
            config.safety, Devices(slit=slit, cover=cover, mount=mount, dome=dome), clock,
            self.emit, slit_limit_s=config.slit.travel_time_s + config.slit.margin_s,
            cover_limit_s=config.cover.travel_time_s + config.cover.margin_s, hold_off=hold_off)
        #: motion nobody commanded, relay read-back: actuator faults are unsafe
        self.watch = ActuatorWatch(config, banks=banks, dome=dome, slit=slit, cover=cover,
                                   encoder_view=self.encoder_view, clock=clock, emit=self.emit)
        self.emergency: str | None = None
        self.verdict = SafetyVerdict(False, ("starting",))
        self.shutting_down = False
        self._sun: tuple[float, float] | None = None  # (monotonic, altitude)
        self._history_key: dict[str, Any] = {}
        self._history_at: dict[str, float] = {}
        self._started_at = clock.monotonic()
        self._reconcile_at: float | None = None
        self._unclean = False
        self._ticks = 0
        self._bank_seq: dict[str, int] = {}
        self._bank_lost: set[str] = set()
        self._mount_state: MountState | None = None
        self._encoder_was_lost = False
        self.loop_stats = LoopStats()
        #: free space, retention, the store's alarms as events, whether exposures may start
        self.storage = StorageWatch(self)
        #: Extensions (frame service, sequencer) called at the end of every tick, after safety.
        #: A hook that raises is logged as an error event and the tick carries on: safety and
        #: device control never depend on an extension.
        self.tick_hooks: list = []
        #: Called by stop(), before devices are released.
        self.stop_hooks: list = []
        #: Extra sections merged into status() by extensions: name -> callable returning a dict.
        self.status_hooks: dict = {}
        #: extra HTTP routes ``(method, path under /api/v1, async handler(request))`` that
        #: services installed on this observatory serve (centring, Nayuta sync)
        self.api_routes: list = []
        #: Called by :meth:`emit` with every event as ``{"time_utc", "level", "kind", "message",
        #: "data"}``, before the event is stored, so that a storage failure cannot hold back an
        #: alert. A listener must return at once (the alerts enqueue; delivery is elsewhere);
        #: one that raises is logged and the others still run.
        self.event_listeners: list[Callable[[dict], None]] = []

    # ------------------------------------------------------------------ events

    def emit(self, level: str, kind: str, message: str, **data) -> None:
        """Record an event: in the journal at once (journald keeps the log), to the event
        listeners (alerts), then in the database through the store's writer thread. Never raises
        and never waits on storage."""
        try:
            getattr(log, {"info": "info", "warning": "warning"}.get(level, "error"))(
                "[%s] %s", kind, message)
        except Exception:  # noqa: BLE001 - a logging handler's failure must not stop safety
            pass
        now = self.clock.now()
        if self.event_listeners:
            event = {"time_utc": utc_iso(now), "level": level, "kind": kind, "message": message,
                     "data": data}
            for listener in list(self.event_listeners):
                try:
                    listener(event)
                except Exception:  # noqa: BLE001 - a listener never reaches the caller of emit
                    log.exception("event listener %r failed", listener)
        try:
            self.store.add_event(now, level, kind, message, data)
        except Exception:  # noqa: BLE001 - the event is in the journal; safety goes on
            log.exception("event not recorded in the database: [%s] %s", kind, message)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Connect every device (relays all off first), then plan the start-up reconcile.

        Nothing here needs the disk: the daemon state comes from the store's memory and events
        are queued. A store that could not read its database (``state_known`` false) cannot
        say whether the last run ended cleanly, so the reconcile assumes it did not.
        """
        self._unclean = bool(self.store.get_state("running", False))
        if not self.store.state_known:
            self._unclean = True
            self.emit("alarm", "reconcile", "the database could not be read at start: the "
                      "previous run is taken as unclean (the start-up reconcile closes and "
                      "parks unless the observatory is already in its safe state)")
        last = self.store.get_state("last_motion", {})
        self.supervisor.hold_off.restore(self.store.get_state(HOLD_OFF_KEY))
        self.store.set_state("running", True)
        self.emit("info", "daemon", f"tenmon {__version__} starting ({self.mode} mode)")
        if self._unclean:
            self.emit("warning", "reconcile", "the previous run ended uncleanly (crash, kill or "
                      "power loss)" + (f"; motions then: {last}" if last else ""), last_motion=last)
        for name, bank in self.banks.items():
            bank.connect()  # switches every relay off; raises DeviceNotFound
            self.emit("info", "device", f"relays.{name}: connected, all relays off")
        for dev_name, dev in (("encoder", self.encoder), ("weather", self.weather),
                              ("mount", self.mount)):
            try:
                dev.connect()
            except DeviceError as exc:
                self.emit("error", "device", f"{dev_name}: cannot connect: {exc.detail}")
        self._reconcile_at = self.clock.monotonic() + 3.0  # after the first readings
        self.store.set_state("last_motion", {})

    def _reconcile(self) -> None:
        """After start-up readings: find out the slit's state; close if unsafe or after a crash.

        From here on a lost sensor is an alarm and an unsafe verdict starts the reopen hold-off
        (before, first readings may still be on their way)."""
        self.encoder_view.refresh()
        self.supervisor.armed = True
        state = self.slit.state
        if state == ShutterState.UNKNOWN:
            self.emit("warning", "reconcile", "slit state unknown at start-up (no trusted encoder "
                      "reading): closing blind to be safe")
        if self._unclean and not self.supervisor.in_safe_state():
            self.emit("warning", "reconcile", "after an unclean shutdown the observatory is not in "
                      f"its safe state ({self.supervisor.describe()}): closing and parking")
            self.supervisor.force("start-up reconcile after an unclean shutdown")
        elif state == ShutterState.UNKNOWN:
            self.supervisor.force("start-up reconcile: slit state unknown")
        else:
            self.emit("info", "reconcile", f"start-up state: {self.supervisor.describe()}")

    def stop(self, clean: bool = True) -> None:
        """Release everything: relays off, links closed. Never moves hardware.

        ``clean=False`` (after a crash) leaves the "running" mark, so the next start reconciles
        as after an unclean shutdown.
        """
        for hook in list(self.stop_hooks):
            try:
                hook()
            except Exception:  # noqa: BLE001 - teardown must finish
                log.exception("stop hook %r failed", hook)
        for dev in (self.dome, self.slit, self.cover):
            dev.disconnect()
        for name, bank in self.banks.items():
            bank.disconnect()
        for dev in (self.encoder, self.weather, self.mount):
            try:
                dev.disconnect()
            except Exception as exc:  # noqa: BLE001 - teardown must finish; the error is logged
                log.error("disconnect failed: %s", exc)
        self.storage.close()
        if clean:
            self.store.set_state("running", False)
            self.emit("info", "daemon", "stopped cleanly: relays off")
        else:
            self.emit("alarm", "daemon", "stopped after a crash: relays off; the next start "
                      "will reconcile")
        # relays are off: now give the writer a bounded moment to write what is buffered
        if not self.store.flush(self.config.storage.stop_flush_s):
            log.error("stopping with rows not yet in the database (%s); they are in the "
                      "journal", self.store.health().get("error"))

    # ------------------------------------------------------------------ the tick

    def tick(self) -> None:
        """One control step: relays' limits, sensors, devices, safety, record."""
        self._ticks += 1
        now_m = self.clock.monotonic()
        back: list[str] = []
        for name, bank in self.banks.items():
            try:
                bank.service()
            except DeviceError as exc:
                log.debug("relays.%s service: %s", name, exc)
            # the bank's own record: board lost / reconnected, relays cut at their max on-time
            seen = self._bank_seq.get(name, 0)
            for ev in getattr(bank, "events", lambda since=0: [])(seen):
                self._bank_seq[name] = max(seen, ev.seq)
                if ev.kind == "board-lost":
                    self._bank_lost.add(name)
                elif ev.kind in ("connected", "reconnected") and name in self._bank_lost:
                    self._bank_lost.discard(name)
                    # a board that comes back resumes a pending close at once (after this
                    # tick's readings, below), not at the supervisor's next retry
                    back.append(f"relays.{name} is back")
                if ev.kind in ("connected", "disconnected", "exit"):
                    continue
                level = {"board-lost": "alarm", "max-on-time": "alarm"}.get(ev.kind, "info")
                self.emit(level, "relays", f"relays.{name}: {ev.message}", event=ev.kind)
        for dev in (self.encoder, self.weather):
            dev.update()
        if self.mount_inline:
            self.mount.update()
        self.encoder_view.refresh()
        for dev in (self.dome, self.slit, self.cover):
            dev.update()
        self.watch.update()
        lost = self.encoder_view.lost(self.slit.encoder_grace_s)
        if self._encoder_was_lost and not lost:
            back.append("the encoder sees again")
        self._encoder_was_lost = lost
        mstate = self.mount.state
        if self._mount_state == MountState.ERROR and mstate != MountState.ERROR:
            back.append(f"the mount answers again ({mstate.value})")
        self.verdict = evaluate(self._safety_inputs(), self.config.safety)
        self.supervisor.emergency = self.emergency is not None
        self.supervisor.update(self.verdict)
        for why in back:
            self.supervisor.resume_now(why)
        if self.emergency:
            self._hold_emergency()
        if self._reconcile_at is not None and now_m >= self._reconcile_at:
            self._reconcile_at = None
            self._reconcile()
        try:
            self.storage.tick()
        except Exception:  # noqa: BLE001 - the storage watch must never stop safety
            log.exception("storage watch failed")
        for hook in list(self.tick_hooks):
            try:
                hook()
            except Exception as exc:  # noqa: BLE001 - an extension bug must not stop safety
                log.exception("tick hook %r failed", hook)
                self.emit("error", "daemon", f"extension {getattr(hook, '__qualname__', hook)} "
                          f"failed: {exc}")
        for dev in (self.dome, self.slit, self.cover):
            for n in dev.drain_notices():
                self.emit(n.level, n.device, n.message, **n.data)
        mstate = self.mount.state
        if mstate != self._mount_state:
            if self._mount_state is not None:
                level = "error" if mstate == MountState.ERROR else "info"
                self.emit(level, "mount", f"mount {mstate.value}"
                          + (f": {self.mount.error}" if mstate == MountState.ERROR else ""))
            self._mount_state = mstate
        self._record(now_m)

    def _safety_inputs(self) -> SafetyInputs:
        now = self.clock.now()
        t = self.clock.monotonic()
        if self._sun is None or t - self._sun[0] > SUN_CACHE_S:
            site = self.config.site
            self._sun = (t, sun_altitude_deg(now, site.latitude_deg, site.longitude_deg))
        age = self.encoder_view.age()
        return SafetyInputs(now=now, weather=self.weather.reading(), sun_alt_deg=self._sun[1],
                            encoder_age_s=None if age == float("inf") else age,
                            emergency=self.emergency, faults=self.watch.faults())

    def _hold_emergency(self) -> None:
        if self.dome.slewing:
            self.dome.abort()
        if self.mount.state in (MountState.SLEWING, MountState.PARKING):
            try:
                self.mount.abort()
            except DeviceError:
                pass

    def _record(self, now_m: float) -> None:
        now = self.clock.now()
        snap = self.status()
        for device in ("dome", "slit", "cover", "mount", "safety"):
            # what changes by itself every tick (positions, ages, texts with an age in them)
            # is recorded every history_interval_s, not every tick
            key = {k: v for k, v in snap[device].items()
                   if k not in ("azimuth_deg", "ra_deg", "dec_deg", "alt_deg", "az_deg",
                                "open_fraction", "sun_alt_deg", "coast_s", "position_age_s",
                                "sun_age_s", "hold_off", "reasons")}
            due = now_m - self._history_at.get(device, -1e9) >= self.config.daemon.history_interval_s
            if key != self._history_key.get(device) or due:
                self._history_key[device] = key
                self._history_at[device] = now_m
                self.store.add_history(now, device, snap[device])
        # retention (events and device history) is the storage watch's: obs.storage.prune()

    # ------------------------------------------------------------------ commands

    def _refuse_if_unsafe(self, what: str) -> None:
        if self.shutting_down:
            raise CommandRefused("shutting_down", f"{what} refused: the daemon is shutting down")
        if self.emergency:
            raise CommandRefused("emergency", f"{what} refused: emergency stop latched "
                                 f"({self.emergency}); clear it with `tenmon resume`")
        if not self.verdict.safe:
            raise CommandRefused("unsafe", f"{what} refused: unsafe ("
                                 + "; ".join(self.verdict.reasons) + ")")

    def hold_off_remaining_s(self) -> float:
        """Seconds an open must still wait (the reopen hold-off); 0 when it may open."""
        return self.supervisor.hold_off.remaining_s()

    def check_open(self, what: str) -> None:
        """The one gate every open path goes through (operator, sequencer, night jobs, API).

        Raises:
            CommandRefused: ``shutting_down``, ``emergency``, ``unsafe``, ``closing`` (the safety
                supervisor has not finished closing) or ``hold_off`` (not yet safe for
                ``safety.reopen_after_s`` since the last unsafe condition; the message says how
                long remains).
        """
        self._refuse_if_unsafe(what)
        if self.supervisor.closing:
            raise CommandRefused("closing", f"{what} refused: the safety supervisor is still "
                                 f"closing ({self.supervisor.describe()})")
        left = self.hold_off_remaining_s()
        if left > 0:
            h = self.supervisor.hold_off
            after = "; ".join(h.reasons) or "an unsafe condition"
            raise CommandRefused(
                "hold_off", f"{what} refused: reopen hold-off, {left:.0f} s to go (opening waits "
                f"until it has been safe for {h.after_s:g} s; last unsafe: {after})")

    def _refuse_dome_fault(self, what: str) -> None:
        if self.watch.fault_of("dome") is not None or self.watch.relay_device_moving("dome"):
            raise CommandRefused("actuator_fault", f"{what} refused: actuator fault on the dome "
                                 "(see `tenmon status`); clear it with `tenmon resume` once it "
                                 "has stopped")

    def _motion(self, device: str, what: str) -> None:
        motions = dict(self.store.get_state("last_motion", {}))
        motions[device] = what
        self.store.set_state("last_motion", motions)
        self.emit("info", "command", f"{device}: {what}")

    def _guard(self, device: str, fn, *args) -> None:
        try:
            fn(*args)
        except DeviceError as exc:
            self.emit("error", device, f"{device}: {exc.detail}")
            raise CommandRefused("device_error", str(exc)) from None

    def dome_goto(self, azimuth_deg: float) -> None:
        if self.shutting_down or self.emergency:
            self._refuse_if_unsafe("dome goto")
        self._refuse_dome_fault("dome goto")
        if not 0.0 <= azimuth_deg <= 360.0:
            raise CommandRefused("bad_request", f"azimuth {azimuth_deg} is outside 0..360 deg")
        self._guard("dome", self.dome.slew_to_azimuth, azimuth_deg)
        self._motion("dome", f"slewing to {azimuth_deg % 360:.1f} deg")

    def dome_home(self) -> None:
        if self.shutting_down or self.emergency:
            self._refuse_if_unsafe("dome home")
        self._refuse_dome_fault("dome home")
        self._guard("dome", self.dome.find_home)
        self._motion("dome", "homing")

    def dome_park(self) -> None:
        if self.shutting_down or self.emergency:
            self._refuse_if_unsafe("dome park")
        self._refuse_dome_fault("dome park")
        self._guard("dome", self.dome.park)
        self._motion("dome", "parking")

    def dome_abort(self) -> None:
        self.dome.abort()
        self.emit("info", "command", "dome: abort")

    def slit_open(self) -> None:
        self.check_open("slit open")
        self._guard("slit", self.slit.open_slit)
        self._motion("slit", "opening")

    def slit_close(self) -> None:
        self._guard("slit", self.slit.close_slit)
        self._motion("slit", "closing")

    def cover_open(self) -> None:
        self.check_open("cover open")
        self._guard("cover", self.cover.open_cover)
        self._motion("cover", "opening")

    def cover_close(self) -> None:
        self._guard("cover", self.cover.close_cover)
        self._motion("cover", "closing")

    def cover_halt(self) -> None:
        """Stop an opening mirror cover where it is (an Alpaca client's HaltCover).

        Raises:
            CommandRefused: ``closing`` when the cover is closing: a close is never halted.
        """
        state = self.cover.state
        if state == ShutterState.CLOSING or self.supervisor.closing:
            raise CommandRefused("closing", "cover halt refused: the cover is closing, and a "
                                 "close is never halted")
        if state != ShutterState.OPENING:
            self.emit("info", "command", f"cover: halt (not moving: {state.value})")
            return
        self.cover.stop()
        self._motion("cover", "halted")

    def mount_goto(self, ra_deg: float, dec_deg: float) -> None:
        self._refuse_if_unsafe("mount goto")
        if not (0.0 <= ra_deg < 360.0 and -90.0 <= dec_deg <= 90.0):
            raise CommandRefused("bad_request", f"RA {ra_deg} / Dec {dec_deg} out of range "
                                 "(RA 0..360 deg, Dec -90..90 deg)")
        site = self.config.site
        alt, _ = radec_to_altaz(ra_deg, dec_deg, lst_deg(self.clock.now(), site.longitude_deg),
                                site.latitude_deg)
        if alt < 0:
            raise CommandRefused("below_horizon", f"RA {ra_deg:.4f} Dec {dec_deg:.4f} is below "
                                 f"the horizon now (altitude {alt:.1f} deg)")
        if self.mount.state == MountState.PARKED:
            self._guard("mount", self.mount.unpark)
        self._guard("mount", self.mount.goto, ra_deg, dec_deg)
        self._motion("mount", f"slewing to RA {ra_deg:.4f} Dec {dec_deg:.4f}")

    def mount_park(self) -> None:
        self._guard("mount", self.mount.park)
        self._motion("mount", "parking")

    def mount_abort(self) -> None:
        self._guard("mount", self.mount.abort)
        self.emit("info", "command", "mount: abort")

    def emergency_stop(self, reason: str = "operator") -> None:
        """Stop every motion now and close the slit; latched until :meth:`resume`."""
        self.emergency = reason or "operator"
        self.emit("alarm", "emergency", f"EMERGENCY STOP ({self.emergency}): stopping all motion, "
                  "closing the slit")
        self.dome.abort()
        try:
            self.mount.abort()
        except DeviceError as exc:
            self.emit("error", "mount", f"abort failed: {exc.detail}")
        try:
            self.slit.close_slit()
        except DeviceError as exc:
            self.emit("alarm", "slit", f"cannot close slit: {exc.detail}")

    def resume(self) -> None:
        """Clear a latched emergency stop and any actuator fault (one still going on is found
        again at once). Opening then still waits out the reopen hold-off."""
        faults = self.watch.faults()
        if not self.emergency and not faults:
            raise CommandRefused("not_latched", "no emergency stop is latched and no actuator "
                                 "fault is active")
        if faults:
            self.watch.clear()
        if self.emergency:
            self.emit("info", "emergency", f"emergency stop cleared (was: {self.emergency})")
            self.emergency = None

    def begin_shutdown(self, why: str) -> None:
        """Stop taking commands, abort the dome and go to the safe state."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self.emit("info", "daemon", f"shutting down ({why}): going to the safe state")
        self.dome.abort()
        self.supervisor.force(f"shutdown ({why})")

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """The observatory now, as strict JSON (no NaN or infinity anywhere).

        Every reading carries its age: ``weather.age_s``, ``encoder.age_s`` (of the last trusted
        reading) and ``encoder.state_age_s`` (of a carried slit state), ``safety.sun_age_s``,
        ``mount.position_age_s`` (where the driver knows it). The slit's ``state`` is the
        driver's (``closed`` with ``verified: false`` after a blind close: not the safe state);
        a device moving with no motion commanded says ``moving (uncommanded)``; every relay
        bank lists what was commanded (``on``) beside its read-back (``physically_on``, ``None``
        where the board cannot read back).
        """
        now = self.clock.now()
        t = self.clock.monotonic()
        site = self.config.site
        ra, dec = self.mount.ra_deg, self.mount.dec_deg
        alt = az = None
        if _finite(ra) and _finite(dec):
            alt, az = radec_to_altaz(ra, dec, lst_deg(now, site.longitude_deg), site.latitude_deg)
        r = self.encoder.reading()
        enc_age = self.encoder_view.age()
        mstate = self.mount.state
        watch = self.watch
        dome_fault = watch.fault_of("dome")
        dome_moving = dome_fault is not None or watch.relay_device_moving("dome")
        slit_fault = watch.fault_of("slit")
        slit_moving = slit_fault is not None or watch.relay_device_moving("slit")
        cover_fault = watch.fault_of("cover")
        cover_moving = cover_fault is not None or watch.relay_device_moving("cover")
        state_age = (r.details or {}).get("state_age_s") if r.details else None
        out: dict[str, Any] = {
            "mode": self.mode,
            "time_utc": utc_iso(now),
            "daemon": {"version": __version__, "uptime_s": round(t - self._started_at, 1),
                       "shutting_down": self.shutting_down,
                       "tick_latency": self.loop_stats.to_json()},
            "dome": {
                "azimuth_deg": _r(self.dome.azimuth_deg, 2),
                "target_deg": _r(self.dome.target_deg, 2),
                "state": "moving (uncommanded)" if dome_moving else self.dome.state.value,
                "slewing": self.dome.slewing,
                "uncommanded": dome_moving,
                "at_home": self.dome.at_home,
                "at_park": self.dome.at_park,
                "coast_s": _r(self.dome.coast_s, 3),
                "error": self.dome.error,
            },
            "slit": {
                "state": "moving (uncommanded)" if slit_moving else self.slit.state.value,
                "open_fraction": _r(self.slit.open_fraction, 3),
                "ascom_status": 4 if slit_moving else self.slit.state.ascom,
                "verified": self.slit.verified,
                "uncommanded": slit_moving,
                "error": self.slit.error,
            },
            "cover": {"state": "moving (uncommanded)" if cover_moving else self.cover.state.value,
                      "verified": self.cover.verified,
                      "limit_switches": bool(getattr(self.cover, "has_switches", False)),
                      "uncommanded": cover_moving, "error": self.cover.error},
            "mount": {
                "ra_deg": _r(ra, 5), "dec_deg": _r(dec, 5), "alt_deg": _r(alt, 3),
                "az_deg": _r(az, 3), "state": mstate.value,
                "slewing": mstate in (MountState.SLEWING, MountState.PARKING),
                "parked": mstate == MountState.PARKED, "tracking": self.mount.tracking,
                "position_age_s": _r(getattr(self.mount, "position_age_s", None), 2),
                "error": self.mount.error,
            },
            "safety": {
                **self.verdict.to_json(),
                "closing": self.supervisor.closing,
                "in_safe_state": self.supervisor.in_safe_state(),
                "safe_state_parts": self.supervisor.parts(),
                "emergency": self.emergency,
                "faults": watch.to_json(),
                "hold_off": self.supervisor.hold_off.to_json(),
                "sun_alt_deg": _r(self._sun[1] if self._sun else None, 2),
                "sun_age_s": _r(t - self._sun[0] if self._sun else None, 1),
            },
            "encoder": {"azimuth_deg": _r(r.azimuth_deg, 2), "open_fraction": _r(r.open_fraction, 3),
                        "state": r.state, "confidence": _r(r.confidence, 3),
                        "age_s": _r(enc_age, 2),
                        "reading_age_s": _r((now - r.time).total_seconds(), 2),
                        "state_age_s": _r(state_age, 1)},
            "weather": _weather_json(self.weather.reading(), now,
                                     getattr(self.weather, "error", None)),
            "storage": self.storage.status(),
            "relays": {name: self._relay_json(name, b) for name, b in self.banks.items()},
        }
        for name, fn in self.status_hooks.items():
            try:
                out[name] = fn()
            except Exception as exc:  # noqa: BLE001 - status must always answer
                out[name] = {"error": str(exc)}
        return out

    def _relay_json(self, name: str, bank) -> dict[str, Any]:
        on = [c for c in range(1, bank.channels + 1) if bank.is_on(c)]
        physical = self.watch.readbacks.get(name)
        phys_on = None if physical is None else sorted(c for c, v in physical.items() if v)
        return {"connected": bank.connected, "on": on, "physically_on": phys_on,
                "disagree": None if phys_on is None else sorted(set(on) ^ set(phys_on))}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _r(v: float | None, nd: int) -> float | None:
    """Rounded, or ``None`` for a missing or non-finite value (status is strict JSON)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return round(f, nd) if math.isfinite(f) else None


def _weather_json(w, now, error: str | None = None) -> dict[str, Any] | None:
    """The weather reading with its age; a non-finite value shows as ``None`` and is named in
    ``invalid`` (the safety decision judges it unsafe)."""
    if w is None:
        return None if error is None else {"error": error}
    invalid = [k for k in ("wind_ms", "humidity_pct")
               if getattr(w, k) is not None and _r(getattr(w, k), 3) is None]
    return {"time_utc": utc_iso(w.time), "age_s": _r((now - w.time).total_seconds(), 1),
            "stale_after_s": _r(w.stale_after_s, 1),
            "rain": w.rain if isinstance(w.rain, bool) or w.rain is None else None,
            "wind_ms": _r(w.wind_ms, 2), "humidity_pct": _r(w.humidity_pct, 1),
            "alert": None if getattr(w, "alert", None) is None else str(w.alert),
            "invalid": invalid, "error": error}

