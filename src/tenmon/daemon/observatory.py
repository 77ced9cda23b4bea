"""The observatory as the daemon owns it: devices, the safety supervisor, the record, one tick.

Everything here runs on the event-loop thread, one ``tick()`` at a time, so no state is shared
between threads. Nothing here waits on storage: events, history and daemon state go to the
store's writer thread (``daemon.store``), and ``emit`` never raises. Commands (from the HTTP
API, later the sequencer) are plain methods that check safety first and raise
:class:`~tenmon.errors.CommandRefused` with a stable code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tenmon import __version__
from tenmon.astro import lst_deg, radec_to_altaz, sun_altitude_deg
from tenmon.clock import Clock
from tenmon.config.models import TenmonConfig
from tenmon.daemon.safety import SafetyInputs, SafetyVerdict, evaluate
from tenmon.daemon.storage import StorageWatch
from tenmon.daemon.store import Store, utc_iso
from tenmon.daemon.supervisor import Devices, SafetySupervisor
from tenmon.drivers.base import MountState, ShutterState
from tenmon.drivers.motion import EncoderView
from tenmon.errors import CommandRefused, DeviceError

log = logging.getLogger(__name__)

SUN_CACHE_S = 30.0


class LoopStats:
    """Rolling record of how late control ticks start (seconds), for status and benchmarks."""

    def __init__(self, size: int = 6000):
        self.size = size
        self.values: list[float] = []
        self.count = 0

    def add(self, late_s: float) -> None:
        self.values.append(late_s)
        self.count += 1
        if len(self.values) > self.size:
            del self.values[: len(self.values) - self.size]

    def to_json(self) -> dict[str, float | int | None]:
        if not self.values:
            return {"ticks": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
        v = sorted(self.values)
        pick = lambda q: round(1000 * v[min(len(v) - 1, int(q * len(v)))], 2)  # noqa: E731
        return {"ticks": self.count, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                "max_ms": round(1000 * v[-1], 2)}


class Observatory:
    """Owns every device and runs the control tick. Built by ``daemon.compose``."""

    def __init__(self, config: TenmonConfig, clock: Clock, store: Store, *, banks: dict,
                 encoder, weather, mount, dome, slit, cover, world=None,
                 world_path: Path | None = None, mount_inline: bool = True):
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
        self.world = world
        self.world_path = world_path
        self.mount_inline = mount_inline
        self.mode = config.mode
        self.encoder_view = EncoderView(encoder, clock, config.safety.encoder_min_confidence)
        self.supervisor = SafetySupervisor(
            config.safety, Devices(slit=slit, cover=cover, mount=mount, dome=dome), clock,
            self.emit, slit_limit_s=config.slit.travel_time_s + config.slit.margin_s,
            cover_limit_s=config.cover.travel_time_s + config.cover.margin_s)
        self.emergency: str | None = None
        self.verdict = SafetyVerdict(False, ("starting",))
        self.shutting_down = False
        self._sun: tuple[float, float] | None = None  # (monotonic, altitude)
        self._history_key: dict[str, Any] = {}
        self._history_at: dict[str, float] = {}
        self._world_saved_at = -1e9
        self._started_at = clock.monotonic()
        self._reconcile_at: float | None = None
        self._unclean = False
        self._ticks = 0
        self._bank_seq: dict[str, int] = {}
        self._mount_state: MountState | None = None
        self.loop_stats = LoopStats()
        #: free space, retention, the store's alarms as events, whether exposures may start
        self.storage = StorageWatch(self)
        self._world_save_failed = False
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

    # ------------------------------------------------------------------ events

    def emit(self, level: str, kind: str, message: str, **data) -> None:
        """Record an event: in the journal at once (journald keeps the log), in the database
        through the store's writer thread. Never raises and never waits on storage."""
        try:
            getattr(log, {"info": "info", "warning": "warning"}.get(level, "error"))(
                "[%s] %s", kind, message)
        except Exception:  # noqa: BLE001 - a logging handler's failure must not stop safety
            pass
        try:
            self.store.add_event(self.clock.now(), level, kind, message, data)
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
        """After start-up readings: find out the slit's state; close if unsafe or after a crash."""
        self.encoder_view.refresh()
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
        self._save_world()
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
        """One control step: world, relays' limits, sensors, devices, safety, record."""
        self._ticks += 1
        now_m = self.clock.monotonic()
        if self.world is not None:
            self.world.step(self.clock.now())
        for name, bank in self.banks.items():
            try:
                bank.service()
            except DeviceError as exc:
                log.debug("relays.%s service: %s", name, exc)
            # the bank's own record: board lost / reconnected, relays cut at their max on-time
            seen = self._bank_seq.get(name, 0)
            for ev in getattr(bank, "events", lambda since=0: [])(seen):
                self._bank_seq[name] = max(seen, ev.seq)
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
        self.verdict = evaluate(self._safety_inputs(), self.config.safety)
        self.supervisor.emergency = self.emergency is not None
        self.supervisor.update(self.verdict)
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
        if self.world is not None:
            for text in self.world.incidents:
                self.emit("alarm", "device", f"simulated world: {text}")
            self.world.incidents.clear()
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
                            emergency=self.emergency)

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
            key = {k: v for k, v in snap[device].items()
                   if k not in ("azimuth_deg", "ra_deg", "dec_deg", "alt_deg", "az_deg",
                                "open_fraction", "sun_alt_deg", "coast_s")}
            due = now_m - self._history_at.get(device, -1e9) >= self.config.daemon.history_interval_s
            if key != self._history_key.get(device) or due:
                self._history_key[device] = key
                self._history_at[device] = now_m
                self.store.add_history(now, device, snap[device])
        # retention (events and device history) is the storage watch's: obs.storage.prune()
        if self.world is not None and self.world_path is not None and now_m - self._world_saved_at >= 1.0:
            self._world_saved_at = now_m
            self._save_world()

    def _save_world(self) -> None:
        """The simulated world's state file (simulated mode); a full or read-only disk is
        logged once, not fatal."""
        if self.world is None or self.world_path is None:
            return
        try:
            self.world.save(self.world_path)
        except OSError as exc:
            if not self._world_save_failed:
                self._world_save_failed = True
                log.error("cannot save the simulated world to %s: %s", self.world_path, exc)
            return
        if self._world_save_failed:
            self._world_save_failed = False
            log.info("the simulated world is saved again to %s", self.world_path)

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
        if not 0.0 <= azimuth_deg <= 360.0:
            raise CommandRefused("bad_request", f"azimuth {azimuth_deg} is outside 0..360 deg")
        self._guard("dome", self.dome.slew_to_azimuth, azimuth_deg)
        self._motion("dome", f"slewing to {azimuth_deg % 360:.1f} deg")

    def dome_home(self) -> None:
        if self.shutting_down or self.emergency:
            self._refuse_if_unsafe("dome home")
        self._guard("dome", self.dome.find_home)
        self._motion("dome", "homing")

    def dome_park(self) -> None:
        if self.shutting_down or self.emergency:
            self._refuse_if_unsafe("dome park")
        self._guard("dome", self.dome.park)
        self._motion("dome", "parking")

    def dome_abort(self) -> None:
        self.dome.abort()
        self.emit("info", "command", "dome: abort")

    def slit_open(self) -> None:
        self._refuse_if_unsafe("slit open")
        self._guard("slit", self.slit.open_slit)
        self._motion("slit", "opening")

    def slit_close(self) -> None:
        self._guard("slit", self.slit.close_slit)
        self._motion("slit", "closing")

    def cover_open(self) -> None:
        self._refuse_if_unsafe("cover open")
        self._guard("cover", self.cover.open_cover)
        self._motion("cover", "opening")

    def cover_close(self) -> None:
        self._guard("cover", self.cover.close_cover)
        self._motion("cover", "closing")

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
        if not self.emergency:
            raise CommandRefused("not_latched", "no emergency stop is latched")
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

    # ------------------------------------------------------------------ simulation commands

    def sim_weather(self, condition: str, wind_ms: float | None = None) -> None:
        if self.world is None:
            raise CommandRefused("not_simulated", "`sim` commands need the simulated observatory")
        try:
            self.world.set_weather(condition, wind_ms)
        except ValueError as exc:
            raise CommandRefused("bad_request", str(exc)) from None
        self.emit("info", "sim", f"simulated weather: {condition}"
                  + (f" {wind_ms:g} m/s" if wind_ms is not None else ""))

    def sim_fault(self, name: str, clear: bool = False) -> None:
        if self.world is None:
            raise CommandRefused("not_simulated", "`sim` commands need the simulated observatory")
        try:
            if clear:
                self.world.clear_fault(None if name in ("", "all") else name)
            else:
                self.world.inject_fault(name)
        except ValueError as exc:
            raise CommandRefused("bad_request", str(exc)) from None
        self.emit("warning", "sim", f"simulated fault {'cleared' if clear else 'injected'}: "
                  f"{name or 'all'}")

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        now = self.clock.now()
        site = self.config.site
        ra, dec = self.mount.ra_deg, self.mount.dec_deg
        alt = az = None
        if ra is not None and dec is not None:
            alt, az = radec_to_altaz(ra, dec, lst_deg(now, site.longitude_deg), site.latitude_deg)
        r = self.encoder.reading()
        enc_age = self.encoder_view.age()
        mstate = self.mount.state
        out: dict[str, Any] = {
            "mode": self.mode,
            "time_utc": utc_iso(now),
            "daemon": {"version": __version__, "uptime_s": round(self.clock.monotonic()
                                                                   - self._started_at, 1),
                       "shutting_down": self.shutting_down,
                       "tick_latency": self.loop_stats.to_json()},
            "dome": {
                "azimuth_deg": _r(self.dome.azimuth_deg, 2),
                "target_deg": _r(self.dome.target_deg, 2),
                "state": self.dome.state.value,
                "slewing": self.dome.slewing,
                "at_home": self.dome.at_home,
                "at_park": self.dome.at_park,
                "coast_s": round(self.dome.coast_s, 3),
                "error": self.dome.error,
            },
            "slit": {
                "state": self.slit.state.value,
                "open_fraction": _r(self.slit.open_fraction, 3),
                "ascom_status": self.slit.state.ascom,
                "verified": self.slit.verified,
                "error": self.slit.error,
            },
            "cover": {"state": self.cover.state.value, "verified": self.cover.verified,
                      "error": self.cover.error},
            "mount": {
                "ra_deg": _r(ra, 5), "dec_deg": _r(dec, 5), "alt_deg": _r(alt, 3),
                "az_deg": _r(az, 3), "state": mstate.value,
                "slewing": mstate in (MountState.SLEWING, MountState.PARKING),
                "parked": mstate == MountState.PARKED, "tracking": self.mount.tracking,
                "error": self.mount.error,
            },
            "safety": {
                **self.verdict.to_json(),
                "closing": self.supervisor.closing,
                "in_safe_state": self.supervisor.in_safe_state(),
                "emergency": self.emergency,
                "sun_alt_deg": _r(self._sun[1] if self._sun else None, 2),
            },
            "encoder": {"azimuth_deg": _r(r.azimuth_deg, 2), "open_fraction": _r(r.open_fraction, 3),
                        "state": r.state, "confidence": round(r.confidence, 3),
                        "age_s": None if enc_age == float("inf") else round(enc_age, 2)},
            "weather": _weather_json(self.weather.reading()),
            "storage": self.storage.status(),
            "relays": {name: {"connected": b.connected,
                              "on": [c for c in range(1, b.channels + 1) if b.is_on(c)]}
                       for name, b in self.banks.items()},
        }
        for name, fn in self.status_hooks.items():
            try:
                out[name] = fn()
            except Exception as exc:  # noqa: BLE001 - status must always answer
                out[name] = {"error": str(exc)}
        if self.world is not None:
            out["sim"] = {"faults": list(self.world.state.faults), "seed": self.world.sim.seed}
        return out


def _r(v: float | None, nd: int) -> float | None:
    return None if v is None else round(float(v), nd)


def _weather_json(w) -> dict[str, Any] | None:
    if w is None:
        return None
    return {"time_utc": utc_iso(w.time), "rain": w.rain, "wind_ms": w.wind_ms,
            "humidity_pct": w.humidity_pct}

