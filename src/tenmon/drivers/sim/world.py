"""The simulated observatory: one seeded, deterministic model of dome, slit, cover, mount and weather.

The world steps with the injected clock (``step(now)``). Its motors are driven by what the
simulated relay banks *physically* do (welded contacts and unplugged boards included), so the
whole control loop runs through the same code as at a site:
relays -> world -> encoder -> controller. Simulated devices are views of this object.

Its state survives a daemon crash: ``save()`` writes it atomically to the data directory and
``SimWorld.restore()`` brings it back, as the real dome would still be half open after a
``kill -9``.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from tenmon.core.astro import altaz_to_radec, lst_deg, wrap180
from tenmon.core.atomicfile import atomic_write_text, usual_mode
from tenmon.config.models import SimConfig, SiteConfig
from tenmon.core.timefmt import parse_utc, utc_iso

log = logging.getLogger(__name__)

#: Faults the world knows; ``relay-stuck`` takes a channel (``relay-stuck:3``).
FAULTS = {
    "dome-stall": "the dome motor runs but the dome does not turn",
    "slit-stall": "the shutter motor runs but the shutter does not move",
    "cover-stall": "the cover motor runs but the cover does not move",
    "encoder-dropout": "the encoder sees nothing (camera blinded or lost)",
    "slit-state-hidden": "the encoder sees the slit but not what tells its state (the telescope "
                         "hides it): azimuth read, state carried from before",
    "relay-unplugged": "the relay board's USB cable is pulled",
    "relay-stuck": "a relay contact is welded on (relay-stuck:CHANNEL)",
    "mount-disconnect": "the mount's serial link is lost",
    "weather-stale": "the weather station stops reporting",
    "weather-nan": "the weather station reports its wind speed as NaN (a sensor fault)",
    "rain-cable-cut": "the rain sensor's cable is cut: its fail-safe (normally-closed) wiring "
                      "reads wet",
}

SIDEREAL_RATE = 360.98564736629 / 86400.0  # degrees of hour angle per second


@dataclass
class WorldState:
    """Everything the world remembers (JSON-serialisable)."""

    time_utc: str
    dome_az_deg: float = 0.0
    dome_speed_deg_s: float = 0.0
    slit_fraction: float = 0.0
    cover_fraction: float = 0.0
    mount_ha_deg: float = 0.0
    mount_dec_deg: float = 35.0
    mount_tracking: bool = False
    mount_parked: bool = True
    mount_target: list[float] | None = None  # [ra, dec] of a goto
    mount_park_target: list[float] | None = None  # [ha, dec] while parking
    rain: bool = False
    wind_ms: float = 2.0
    humidity_pct: float = 60.0
    faults: list[str] = field(default_factory=list)
    script_index: int = 0
    elapsed_s: float = 0.0
    pointing_terms_arcmin: dict[str, float] = field(default_factory=dict)


class MotorInput:
    """Where a motor reads its drive: (relay bank, forward channel, reverse channel)."""

    def __init__(self, bank, forward: int, reverse: int):
        self.bank = bank
        self.forward = forward
        self.reverse = reverse

    def drive(self) -> int:
        """+1 forward, -1 reverse, 0 off. Both energized: the motor is blocked (0)."""
        fwd = self.bank.physical(self.forward)
        rev = self.bank.physical(self.reverse)
        if fwd and rev:
            return 0
        return 1 if fwd else (-1 if rev else 0)

    def both(self) -> bool:
        return self.bank.physical(self.forward) and self.bank.physical(self.reverse)


class SimWorld:
    """The simulated observatory. Deterministic for a seed; stepped by ``step(now)``."""

    def __init__(self, sim: SimConfig, site: SiteConfig, *, start: datetime,
                 mount_park_ha_deg: float = 0.0, mount_park_dec_deg: float = 35.0,
                 mount_slew_rate_deg_s: float = 4.0, pointing_error_arcmin: float = 5.0,
                 state: WorldState | None = None):
        self.sim = sim
        self.site = site
        self.rng = random.Random(sim.seed)
        self.mount_park_position = (mount_park_ha_deg, mount_park_dec_deg)
        self.mount_slew_rate = mount_slew_rate_deg_s
        if state is None:
            state = WorldState(time_utc=utc_iso(start, timespec="auto"),
                               mount_ha_deg=mount_park_ha_deg, mount_dec_deg=mount_park_dec_deg)
            terms_rng = random.Random(sim.seed * 7919 + 17)
            s = pointing_error_arcmin
            # A classic set of equatorial-mount terms (TPOINT names), arcminutes.
            state.pointing_terms_arcmin = {
                "IH": terms_rng.uniform(-0.6, 0.6) * s, "ID": terms_rng.uniform(-0.6, 0.6) * s,
                "CH": terms_rng.uniform(-0.3, 0.3) * s, "NP": terms_rng.uniform(-0.2, 0.2) * s,
                "MA": terms_rng.uniform(-0.2, 0.2) * s, "ME": terms_rng.uniform(-0.2, 0.2) * s,
            }
        self.state = state
        self.dome_motor: MotorInput | None = None
        self.slit_motor: MotorInput | None = None
        self.cover_motor: MotorInput | None = None
        self.relay_banks: list = []
        self.incidents: list[str] = []  # things a real observatory would hear (motor blocked)
        self._last: datetime | None = None
        self._model = None
        self._model_terms: dict[str, float] | None = None

    # ------------------------------------------------------------------ wiring and faults

    def wire(self, *, dome: MotorInput, slit: MotorInput, cover: MotorInput) -> None:
        self.dome_motor, self.slit_motor, self.cover_motor = dome, slit, cover
        self.relay_banks = list({id(m.bank): m.bank for m in (dome, slit, cover)}.values())

    def inject_fault(self, name: str) -> None:
        """Inject a fault by name (see :data:`FAULTS`). Raises ValueError for an unknown one."""
        base, _, arg = name.partition(":")
        if base not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
        if base == "relay-stuck":
            if not arg.isdigit():
                raise ValueError("relay-stuck needs a channel: relay-stuck:CHANNEL")
            for bank in self.relay_banks:
                bank.stick(int(arg), True)
        if base == "relay-unplugged":
            for bank in self.relay_banks:
                bank.unplug()
        if name not in self.state.faults:
            self.state.faults.append(name)

    def clear_fault(self, name: str | None = None) -> None:
        """Clear one fault, or all of them with ``None``."""
        names = list(self.state.faults) if name is None else [name]
        for n in names:
            if n not in self.state.faults:
                raise ValueError(f"fault {n!r} is not active")
            base, _, arg = n.partition(":")
            if base == "relay-stuck":
                for bank in self.relay_banks:
                    bank.unstick(int(arg))
            if base == "relay-unplugged":
                for bank in self.relay_banks:
                    bank.replug()
            self.state.faults.remove(n)

    def has_fault(self, base: str) -> bool:
        return any(f.partition(":")[0] == base for f in self.state.faults)

    def set_weather(self, condition: str, wind_ms: float | None = None) -> None:
        """``clear``, ``rain``, ``wind`` (with ``wind_ms``) or ``humid``."""
        st = self.state
        if condition == "clear":
            st.rain, st.wind_ms, st.humidity_pct = False, 2.0, 60.0
        elif condition == "rain":
            st.rain, st.humidity_pct = True, 98.0
        elif condition == "wind":
            st.wind_ms = 20.0 if wind_ms is None else float(wind_ms)
        elif condition == "humid":
            st.humidity_pct = 95.0
        else:
            raise ValueError(f"unknown weather {condition!r}: clear, rain, wind or humid")

    # ------------------------------------------------------------------ time

    @property
    def time(self) -> datetime:
        return parse_utc(self.state.time_utc)

    def lst(self, when: datetime | None = None) -> float:
        return lst_deg(when or self.time, self.site.longitude_deg)

    def step(self, now: datetime, max_substep_s: float = 0.05) -> None:
        """Advance the world to ``now`` (substeps of at most ``max_substep_s``)."""
        last = self.time
        dt_total = (now - last).total_seconds()
        if dt_total <= 0:
            return
        n = max(1, math.ceil(dt_total / max_substep_s))
        dt = dt_total / n
        for _ in range(n):
            self._substep(dt)
        self.state.time_utc = utc_iso(now, timespec="auto")
        self.state.elapsed_s += dt_total
        self._run_weather_script()

    def _substep(self, dt: float) -> None:
        st, sim = self.state, self.sim
        # Dome: first-order spin-up to full speed, exponential coast when the motor stops.
        drive = self.dome_motor.drive() if self.dome_motor else 0
        if self.dome_motor and self.dome_motor.both():
            self._incident("dome motor: both directions energized")
        if self.has_fault("dome-stall"):
            drive, st.dome_speed_deg_s = 0, 0.0
        target = drive * sim.dome_max_speed_deg_s
        tau = sim.dome_spinup_s if drive else sim.dome_coast_s
        st.dome_speed_deg_s = target + (st.dome_speed_deg_s - target) * math.exp(-dt / tau)
        if not drive and abs(st.dome_speed_deg_s) < 0.02:
            st.dome_speed_deg_s = 0.0
        st.dome_az_deg = (st.dome_az_deg + st.dome_speed_deg_s * dt) % 360.0
        # Shutter and cover: constant-speed travel between the end stops.
        st.slit_fraction = self._travel(st.slit_fraction, self.slit_motor, sim.slit_travel_s,
                                        "slit-stall", dt)
        st.cover_fraction = self._travel(st.cover_fraction, self.cover_motor, sim.cover_travel_s,
                                         "cover-stall", dt)
        self._step_mount(dt)

    def _travel(self, frac: float, motor: MotorInput | None, travel_s: float, stall: str,
                dt: float) -> float:
        if motor is None or self.has_fault(stall):
            return frac
        if motor.both():
            self._incident(f"{stall.split('-')[0]} motor: both directions energized")
        return min(1.0, max(0.0, frac + motor.drive() * dt / travel_s))

    def _incident(self, text: str) -> None:
        if not self.incidents or self.incidents[-1] != text:
            self.incidents.append(text)
            log.warning("simulated world: %s", text)

    # ------------------------------------------------------------------ mount

    def _step_mount(self, dt: float) -> None:
        st = self.state
        dlst = SIDEREAL_RATE * dt
        if st.mount_park_target is not None:
            goal_ha, goal_dec = st.mount_park_target
        elif st.mount_target is not None:
            goal_ha = (self.lst() + dlst - st.mount_target[0]) % 360.0
            goal_dec = st.mount_target[1]
        else:
            if st.mount_tracking:
                st.mount_ha_deg = (st.mount_ha_deg + dlst) % 360.0
            return
        if st.mount_tracking:
            st.mount_ha_deg = (st.mount_ha_deg + dlst) % 360.0
        step = self.mount_slew_rate * dt
        dha = wrap180(goal_ha - st.mount_ha_deg)
        ddec = goal_dec - st.mount_dec_deg
        st.mount_ha_deg = (st.mount_ha_deg + max(-step, min(step, dha))) % 360.0
        st.mount_dec_deg += max(-step, min(step, ddec))
        if abs(dha) <= step and abs(ddec) <= step:
            st.mount_ha_deg, st.mount_dec_deg = goal_ha % 360.0, goal_dec
            if st.mount_park_target is not None:
                st.mount_park_target = None
                st.mount_parked, st.mount_tracking = True, False
            else:
                st.mount_target = None
                st.mount_tracking = True

    @property
    def mount_ra_deg(self) -> float:
        return (self.lst() - self.state.mount_ha_deg) % 360.0

    @property
    def mount_slewing(self) -> bool:
        return self.state.mount_target is not None or self.state.mount_park_target is not None

    def mount_goto(self, ra_deg: float, dec_deg: float) -> None:
        self.state.mount_target = [ra_deg % 360.0, dec_deg]
        self.state.mount_park_target = None
        self.state.mount_parked = False

    def mount_park(self) -> None:
        self.state.mount_target = None
        self.state.mount_park_target = [self.mount_park_position[0] % 360.0, self.mount_park_position[1]]

    def mount_abort(self) -> None:
        self.state.mount_target = None
        self.state.mount_park_target = None

    def mount_sync(self, ra_deg: float, dec_deg: float) -> None:
        """Sync: the mount now believes it points at (ra, dec); its true pointing is unchanged,
        so the change is absorbed into the index terms IH/ID (found numerically: two passes of a
        finite-difference step, the model being near-linear in them)."""
        st = self.state
        true_ra, true_dec = self.true_pointing()
        st.mount_ha_deg, st.mount_dec_deg = (self.lst() - ra_deg) % 360.0, dec_deg
        for _ in range(3):
            now_ra, now_dec = self.true_pointing()
            err_ra, err_dec = wrap180(now_ra - true_ra) * 3600.0, (now_dec - true_dec) * 3600.0
            if abs(err_ra) < 1e-3 and abs(err_dec) < 1e-3:
                break
            for term, err, coord in (("IH", err_ra, 0), ("ID", err_dec, 1)):
                base = self.true_pointing()[coord]
                st.pointing_terms_arcmin[term] += 1.0 / 60.0  # +1 arcsec
                moved = self.true_pointing()[coord] - base
                moved = (wrap180(moved) if coord == 0 else moved) * 3600.0
                st.pointing_terms_arcmin[term] -= 1.0 / 60.0
                if abs(moved) > 1e-6:
                    st.pointing_terms_arcmin[term] -= err / moved / 60.0

    def pointing_model(self):
        """The simulated mount's pointing error as a TPOINT model (``tenmon.pointing.model``),
        so a model fitted on simulated solves means what a model fitted at a site means."""
        from tenmon.pointing.model import PointingModel

        terms = self.state.pointing_terms_arcmin
        if self._model is None or self._model_terms != terms:
            self._model_terms = dict(terms)
            self._model = PointingModel(
                terms=tuple(terms), coefficients_arcsec={k: v * 60.0 for k, v in terms.items()},
                sigmas_arcsec={k: 0.0 for k in terms}, latitude_deg=self.site.latitude_deg)
        return self._model

    def true_pointing(self) -> tuple[float, float]:
        """Where the telescope really points (ra, dec): the mount reads true + model offsets
        (TPOINT convention, mount on the east side of the pier), inverted by iteration."""
        model = self.pointing_model()
        mount_ha, mount_dec = self.state.mount_ha_deg, self.state.mount_dec_deg
        ha, dec = mount_ha, mount_dec
        for _ in range(4):
            dh, dd = model.offsets_arcsec(wrap180(ha), max(-89.9, min(89.9, dec)), "east")
            ha = mount_ha - float(dh[0]) / 3600.0
            dec = mount_dec - float(dd[0]) / 3600.0
        return (self.lst() - ha) % 360.0, dec

    # ------------------------------------------------------------------ weather

    def _run_weather_script(self) -> None:
        st = self.state
        if self.sim.weather == "scripted":
            script = self.sim.weather_script
            while st.script_index < len(script) and script[st.script_index].after_s <= st.elapsed_s:
                ev = script[st.script_index]
                self.set_weather(ev.condition, ev.wind_ms if ev.condition == "wind" else None)
                st.script_index += 1
        else:
            # random: a seeded two-state process, on average 3 h dry and 20 min of rain
            minute = int(st.elapsed_s // 60)
            if minute > st.script_index:
                for _ in range(minute - st.script_index):
                    if st.rain and self.rng.random() < 1 / 20:
                        self.set_weather("clear")
                    elif not st.rain and self.rng.random() < 1 / 180:
                        self.set_weather("rain")
                st.script_index = minute

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """Write the state atomically (temporary name, then rename)."""
        atomic_write_text(path, json.dumps(asdict(self.state)), mode=usual_mode())

    @staticmethod
    def load_state(path: Path) -> WorldState | None:
        """A saved state, or ``None`` if there is none or it is unreadable (logged)."""
        try:
            data = json.loads(path.read_text())
            return WorldState(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("simulated world state %s unreadable (%s): starting fresh", path, exc)
            return None

    def dome_altaz_of_slit(self) -> tuple[float, float]:
        """For renderers: the slit's azimuth and the elevation of its open edge."""
        frac = self.state.slit_fraction
        return self.state.dome_az_deg, 90.0 * frac

    def radec_of_altaz(self, alt: float, az: float) -> tuple[float, float]:
        return altaz_to_radec(alt, az, self.lst(), self.site.latitude_deg)
