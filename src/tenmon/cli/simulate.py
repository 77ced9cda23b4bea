"""`tenmon simulate --night DATE`: the simulated daemon through one night in accelerated time.

The simulated observatory (world, relays, dome, slit, cover, mount, weather, safety supervisor)
runs in this process on a ``FakeClock`` with the night's operations installed
(``daemon.night.install_night_operations``): the dusk/dawn jobs, the planner, the sequencer, the
simulated CCD and the frame service (process pool, pipeline, plate solving). The daemon's own
control loop (``daemon.control_loop.ControlLoop``) advances the clock one control tick at a time
and paces ticks at ``--speed`` times real time, measuring how late each tick starts (the daemon's
own tick-latency figure). It runs from half an hour before dusk to half an hour after dawn,
waits for every frame to be processed, and reports.

With ``--speed 0`` (or ``--fast``) it runs as fast as it can and lets simulated time wait while
anything a tick started runs off the loop (``NightOps.in_flight()``: camera renders, frames in
the pool, planning, the night jobs' trigger computations), so they take no simulated time and
the same seed gives the same night however busy the machine is (for tests and CI; the speed
figure then means little).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tenmon.core.errors import ConfigError, TenmonError
from tenmon.core.timefmt import utc_iso

log = logging.getLogger(__name__)


class SimulateError(TenmonError):
    """A simulated night that cannot be run (bad weather script, date, targets)."""


@dataclass
class WeatherStep:
    """One scripted weather change: at ``at_utc``, or ``after_s`` seconds after the start."""

    condition: str
    after_s: float | None = None
    at_utc: datetime | None = None
    wind_ms: float = 0.0


@dataclass
class SimulationOptions:
    """Everything one simulated night needs (the CLI's arguments)."""

    night: date
    speed: float = 60.0
    weather: list[WeatherStep] = field(default_factory=list)
    data_dir: Path | None = None
    files_dir: Path | None = None   # frames and products (default: inside data_dir)
    config_path: Path | None = None
    seed: int = 0
    targets_file: Path | None = None
    n_targets: int = 30
    exposure_s: float = 300.0
    count: int = 3
    tick_s: float | None = None
    frame_px: int = 512
    restart_at: list[datetime] = field(default_factory=list)
    before_s: float = 1800.0
    after_s: float = 1800.0
    site: tuple[float, float, float] | None = None   # lat, lon, elevation (tests)
    observe_twilight: str | None = None
    sections: dict[str, Any] = field(default_factory=dict)  # settings models by section
    progress: bool = True
    drain_timeout_s: float = 900.0


# ---------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tenmon simulate`` to a sub-parsers object."""
    p = subparsers.add_parser(
        "simulate",
        help="run the simulated observatory through one night in accelerated time and report",
        description=(
            "Run the whole daemon in simulated mode (in this process, no API) through the night "
            "of DATE (the local evening's date at the site), from half an hour before dusk to "
            "half an hour after dawn, at --speed times real time: the dusk job opens when safe, "
            "the planner plans the queue, the sequencer slews, slaves the dome, exposes the "
            "simulated CCD and centres on the plate solves, weather closes and reopens, dawn "
            "closes. Then every frame is processed, and the night is reported: opened_utc, "
            "closed_utc, targets_observed, frames, frames_solved, safety_closes, weather_lost_s, "
            "errors, each target, and the control loop's tick latency. A full night at 60x takes "
            "about 12 minutes."),
    )
    p.add_argument("--night", required=True, metavar="DATE", type=_date,
                   help="local date of the evening, YYYY-MM-DD")
    p.add_argument("--speed", type=float, default=60.0, metavar="N",
                   help="simulated seconds per wall second (default 60); 0: as fast as possible, "
                        "simulated time waiting for renders, frames and planning (one seed, one "
                        "night)")
    p.add_argument("--fast", action="store_true", help="the same as --speed 0")
    p.add_argument("--weather", type=Path, metavar="SCRIPT",
                   help="TOML or JSON list of {after_s | at_utc, condition[, wind_ms]}; "
                        "condition: clear, rain, wind, humid")
    p.add_argument("--targets", type=Path, metavar="FILE",
                   help="TOML/CSV targets to queue (default: N synthetic targets across the night)")
    p.add_argument("--n-targets", type=int, default=30, metavar="N",
                   help="synthetic targets when --targets is not given (default 30)")
    p.add_argument("--exposure-s", type=float, default=300.0, metavar="S",
                   help="synthetic targets' exposure (default 300)")
    p.add_argument("--count", type=int, default=3, metavar="N",
                   help="synthetic targets' exposures per visit (default 3)")
    p.add_argument("--frame-px", type=int, default=512, metavar="PX",
                   help="simulated frame size (square, binned from the 2048 px, 11' CCD; "
                        "default 512 = 4x4 binning, 1.28\"/px: processing keeps up at 60x on "
                        "two cores; 1024 does not, see docs/bench/night.md)")
    p.add_argument("--tick-s", type=float, metavar="S",
                   help="control tick of simulated time (default: the config's, 0.1)")
    p.add_argument("--restart-at", action="append", default=[], metavar="HH:MM",
                   help="crash the daemon at this UTC time (the night's) and start it again "
                        "(repeatable)")
    p.add_argument("--observe-twilight", choices=("civil", "nautical", "astronomical"),
                   help="sun altitude bounding the planned science night (default: the "
                        "scheduler settings', astronomical); nautical for a short summer night")
    p.add_argument("--margin-min", type=float, default=30.0, metavar="MIN",
                   help="start this long before dusk and end this long after dawn (default 30)")
    p.add_argument("--seed", type=int, default=0, help="simulation seed (world, sky, targets)")
    p.add_argument("--data-dir", type=Path, metavar="DIR",
                   help="where the simulated daemon keeps its state (default: a new temp dir)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=_handler)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _handler(args: argparse.Namespace) -> int:
    cfg_path = getattr(args, "config", None)
    opts = SimulationOptions(
        night=args.night, speed=0.0 if args.fast else args.speed,
        weather=load_weather_script(args.weather) if args.weather else [],
        data_dir=args.data_dir, config_path=Path(cfg_path) if cfg_path else None,
        seed=args.seed, targets_file=args.targets, n_targets=args.n_targets,
        exposure_s=args.exposure_s, count=args.count, tick_s=args.tick_s,
        frame_px=args.frame_px, progress=sys.stderr.isatty(),
        before_s=60.0 * args.margin_min, after_s=60.0 * args.margin_min,
        observe_twilight=args.observe_twilight)
    if args.margin_min < 0:
        raise SimulateError(f"--margin-min {args.margin_min}: must be >= 0")
    if opts.speed < 0:
        raise SimulateError(f"--speed {opts.speed}: must be 0 (as fast as possible) or positive")
    for text in args.restart_at:
        opts.restart_at.append(_restart_time(text, args.night))
    report = run_simulated_night(opts)
    if args.json:
        print(json.dumps(report, default=str))
    else:
        _print_human(report)
    return 0 if not report["errors"] and report["frames_unprocessed"] == 0 else 1


def _restart_time(text: str, night: date) -> datetime:
    try:
        hh, mm = (int(x) for x in text.split(":"))
    except ValueError:
        raise SimulateError(f"--restart-at {text!r}: give a UTC time HH:MM") from None
    # the night's UTC times: evening times on the date, morning times on the next day
    d = night if hh >= 12 else night + timedelta(days=1)
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=timezone.utc)


def load_weather_script(path: Path) -> list[WeatherStep]:
    """Read a weather script: a JSON list, or TOML with ``[[event]]`` (or ``weather = [...]``).

    Each entry: ``condition`` (clear, rain, wind, humid), and ``after_s`` (seconds after the
    simulation starts) or ``at_utc`` (ISO time); ``wind_ms`` for wind.

    Raises:
        SimulateError: unreadable file, or an entry with a bad key or value (named).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulateError(f"{path}: cannot read the weather script: {exc.strerror}") from None
    try:
        if Path(path).suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            data = tomllib.loads(text)
            raw = data.get("event", data.get("weather"))
            if raw is None:
                raise SimulateError(f"{path}: no [[event]] tables (or weather = [...]) in the "
                                    "weather script")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SimulateError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}:"
                            f" {exc}") from None
    if not isinstance(raw, list):
        raise SimulateError(f"{path}: the weather script must be a list of events")
    steps = []
    for i, item in enumerate(raw, start=1):
        where = f"{path}: event {i}"
        if not isinstance(item, dict):
            raise SimulateError(f"{where}: not a table/object")
        unknown = set(item) - {"after_s", "at_utc", "condition", "wind_ms"}
        if unknown:
            raise SimulateError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        cond = item.get("condition")
        if cond not in ("clear", "rain", "wind", "humid"):
            raise SimulateError(f"{where}: condition {cond!r} is not clear, rain, wind or humid")
        if ("after_s" in item) == ("at_utc" in item):
            raise SimulateError(f"{where}: give exactly one of after_s and at_utc")
        step = WeatherStep(condition=cond, wind_ms=float(item.get("wind_ms", 0.0)))
        if "after_s" in item:
            try:
                step.after_s = float(item["after_s"])
            except (TypeError, ValueError):
                raise SimulateError(f"{where}: after_s {item['after_s']!r} is not a "
                                    "number") from None
            if step.after_s < 0:
                raise SimulateError(f"{where}: after_s must be >= 0")
        else:
            at = item["at_utc"]
            if isinstance(at, str):
                try:
                    at = datetime.fromisoformat(at.replace("Z", "+00:00"))
                except ValueError:
                    raise SimulateError(f"{where}: at_utc {item['at_utc']!r} is not an ISO "
                                        "time") from None
            if not isinstance(at, datetime):
                raise SimulateError(f"{where}: at_utc must be a time")
            step.at_utc = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
        steps.append(step)
    return steps


# ---------------------------------------------------------------------------- the run


def night_window(opts: SimulationOptions, config, scheduler) -> tuple[datetime, datetime]:
    """(start, end) of the simulation: ``before_s`` before the open twilight's dusk to
    ``after_s`` after the close twilight's dawn."""
    from tenmon.scheduler.night import night_for_date

    loc = _location(config)
    dusk = night_for_date(opts.night, loc, scheduler.open_twilight).start
    dawn = night_for_date(opts.night, loc, scheduler.close_twilight).end
    return (dusk - timedelta(seconds=opts.before_s), dawn + timedelta(seconds=opts.after_s))


def _location(config):
    from tenmon.core import offline

    offline.configure()
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    s = config.site
    return EarthLocation.from_geodetic(s.longitude_deg * u.deg, s.latitude_deg * u.deg,
                                       s.elevation_m * u.m)


def build_config(opts: SimulationOptions, start: datetime | None = None):
    """The simulated site's config with this run's data dir, start, seed, tick and weather."""
    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.config.models import WeatherEvent

    env = {"TENMON_PATHS__DATA_DIR": str(opts.data_dir), "TENMON_SIM__SEED": str(opts.seed)}
    if opts.files_dir is not None:
        env["TENMON_PATHS__FRAMES_DIR"] = str(opts.files_dir / "frames")
        env["TENMON_PATHS__PRODUCTS_DIR"] = str(opts.files_dir / "products")
    if start is not None:
        env["TENMON_SIM__START_UTC"] = start.isoformat()
    if opts.tick_s is not None:
        env["TENMON_DAEMON__TICK_S"] = str(opts.tick_s)
    if opts.site is not None:
        env["TENMON_SITE__LATITUDE_DEG"] = str(opts.site[0])
        env["TENMON_SITE__LONGITUDE_DEG"] = str(opts.site[1])
        env["TENMON_SITE__ELEVATION_M"] = str(opts.site[2])
    cfg = load_config(opts.config_path or simulated_config_path(), env=env)
    if cfg.mode != "simulated" or cfg.sim is None:
        raise ConfigError(f"{opts.config_path}: tenmon simulate needs mode = 'simulated' and a "
                          "[sim] section")
    if start is not None and opts.weather:
        events = []
        for w in opts.weather:
            after = w.after_s if w.after_s is not None else (w.at_utc - start).total_seconds()
            if after < 0:
                raise SimulateError(f"weather event at {w.at_utc} is before the simulation "
                                    f"starts ({start.isoformat()})")
            events.append(WeatherEvent(after_s=after, condition=w.condition, wind_ms=w.wind_ms))
        events.sort(key=lambda e: e.after_s)
        sim = cfg.sim.model_copy(update={"weather": "scripted", "weather_script": events})
        cfg = cfg.model_copy(update={"sim": sim})
    return cfg


def camera_for(frame_px: int):
    """The 11' CCD read out at ``frame_px`` square (binning 2048 / frame_px)."""
    from tenmon.config.services import CameraSettings

    if frame_px < 64 or 2048 % frame_px:
        raise SimulateError(f"--frame-px {frame_px}: use 2048 divided by a whole binning "
                            "(2048, 1024, 512, 256)")
    b = 2048 // frame_px
    return CameraSettings(width_px=frame_px, height_px=frame_px, binning=b,
                          overscan_px=max(4, 16 // max(1, b // 2)))


def synthetic_targets(night: date, config, scheduler, *, n: int, exposure_s: float, count: int,
                      seed: int):
    """``n`` targets spread over the night's sidereal times (transiting through it), Dec 5-65,
    priorities 1-3, named ``SIM-001``..."""
    import numpy as np

    from tenmon.core.astro import lst_deg
    from tenmon.scheduler.night import night_for_date
    from tenmon.scheduler.targets import Target

    loc = _location(config)
    nt = night_for_date(night, loc, scheduler.observe_twilight)
    rng = np.random.default_rng(seed + 4242)
    out = []
    for i in range(n):
        t = nt.start + (nt.end - nt.start) * ((i + 0.5) / n)
        ra = (lst_deg(t, config.site.longitude_deg) + rng.uniform(-20, 20)) % 360.0
        dec = float(rng.uniform(5.0, 65.0))
        out.append(Target(name=f"SIM-{i + 1:03d}", ra_deg=round(ra, 5), dec_deg=round(dec, 5),
                          priority=int(rng.integers(1, 4)), exposure_s=exposure_s, count=count))
    return out


async def _run_until(loop, ops, until: datetime, *, drain: bool = False,
                     drain_timeout_s: float = 900.0) -> None:
    """Tick ``loop`` (the daemon's :class:`~tenmon.daemon.control_loop.ControlLoop`) until the
    simulated clock reaches ``until``; with ``drain``, on until every frame is processed."""
    obs = loop.obs
    drain_started: float | None = None

    def done() -> bool:
        nonlocal drain_started
        if obs.clock.now() < until:
            return False
        if not drain or not ops.frames.busy:
            return True
        if drain_started is None:
            drain_started = time.monotonic()
        elif time.monotonic() - drain_started > drain_timeout_s:
            log.warning("frames still busy %.0f s after the end: giving up", drain_timeout_s)
            return True
        return False

    await loop.run(done)


def _control_loop(obs, ops, speed: float, bar, previous=None):
    """The daemon's control loop for this observatory, keeping the night's figures (carried
    over from ``previous`` across a simulated restart)."""
    from tenmon.daemon.control_loop import ControlLoop

    loop = ControlLoop(obs, tick_s=obs.config.daemon.tick_s, speed=speed,
                       hold=ops.in_flight, record=True,
                       busy=lambda: bool(ops.frames.worker.stats.running))
    if previous is not None:
        loop.late_s, loop.duration_s, loop.busy_flags = (previous.late_s, previous.duration_s,
                                                          previous.busy_flags)
        loop.sim_s, loop.wall_s = previous.sim_s, previous.wall_s
    if bar is not None:
        last_bar = [time.monotonic()]

        def progress() -> None:
            if time.monotonic() - last_bar[0] <= 0.5:
                return
            last_bar[0] = time.monotonic()
            bar.n = min(bar.total, int((obs.clock.now() - bar.start_time).total_seconds()))
            ph = obs.status_hooks["night"]() if "night" in obs.status_hooks else {}
            c = ops.frames.counts
            bar.set_postfix_str(f"{obs.clock.now():%H:%M} {ph.get('phase', '')} "
                                f"frames {c['done']}/{c['received']}", refresh=False)
            bar.refresh()

        loop.after_tick.append(progress)
    return loop


def run_simulated_night(opts: SimulationOptions) -> dict[str, Any]:
    """Run one simulated night (see the module docstring) and return the report.

    Raises:
        SimulateError: a bad option (date without a night, weather before the start).
        ConfigError: a bad site config.
    """
    return asyncio.run(_run(opts))


async def _run(opts: SimulationOptions) -> dict[str, Any]:
    from tenmon.daemon.compose import build_observatory
    from tenmon.daemon.services.night import night_report
    from tenmon.scheduler.errors import NoNightError
    from tenmon.scheduler import queue as target_queue
    from tenmon.scheduler.targets import load_targets
    from tenmon.config.sections import section
    from tenmon.config.services import SchedulerSettings

    opts = replace(opts)
    keep: Path | None = None
    if opts.data_dir is not None and (Path(opts.data_dir) / "tenmon.sqlite").exists():
        raise SimulateError(f"--data-dir {opts.data_dir} already holds a simulation; give a new "
                            "or empty directory (reports are read from its database)")
    if opts.data_dir is None:
        # Frames and products go to a new directory on disk; the daemon's state (SQLite, the
        # world file, saved every simulated second) lives in RAM while the night runs, since at
        # 60x it is written 60 times as often as at a site, and is copied next to the frames at
        # the end.
        keep = Path(tempfile.mkdtemp(prefix="tenmon-sim-"))
        opts.files_dir = keep
        shm = Path("/dev/shm")
        opts.data_dir = Path(tempfile.mkdtemp(prefix="tenmon-sim-state-",
                                              dir=shm if shm.is_dir() and os.access(shm, os.W_OK)
                                              else keep))
    opts.data_dir = Path(opts.data_dir)
    sections = {"camera": camera_for(opts.frame_px), **opts.sections}
    base = build_config(opts)
    scheduler = section(base, "scheduler", SchedulerSettings, sections.get("scheduler"))
    if opts.observe_twilight:
        scheduler = scheduler.model_copy(update={"observe_twilight": opts.observe_twilight})
    sections["scheduler"] = scheduler
    try:
        start, end = night_window(opts, base, scheduler)
    except NoNightError as exc:
        raise SimulateError(f"--night {opts.night}: {exc}") from None
    cfg = build_config(opts, start)
    obs = build_observatory(cfg, fresh=True)
    obs.start()
    ops = _install(obs, cfg, sections)
    if opts.targets_file is not None:
        targets = load_targets(opts.targets_file)
    else:
        targets = synthetic_targets(opts.night, cfg, scheduler, n=opts.n_targets,
                                    exposure_s=opts.exposure_s, count=opts.count, seed=opts.seed)
    now = obs.clock.now()
    # through the daemon's own writer (the loop is not running yet, so waiting here is fine)
    try:
        n = obs.store.submit(lambda c: target_queue.add_rows_in(c, targets, replace=True,
                                                                now=now),
                             what="simulated night's targets").result(timeout=60)
    except Exception as exc:  # noqa: BLE001 - a database that cannot take them: one clear line
        raise SimulateError(f"cannot queue the targets in {cfg.paths.database}: {exc}") from None
    obs.emit("info", "sim", f"simulated night of {opts.night}: {n} target(s) queued; "
             f"{start:%H:%M} to {end:%H:%M} UTC at x{opts.speed:g}")
    bar = _progress_bar(opts, start, end)
    loop = _control_loop(obs, ops, opts.speed, bar)
    restarts = sorted(t for t in opts.restart_at if start < t < end)
    try:
        await ops.start()
        for t in restarts:
            await _run_until(loop, ops, t)
            log.warning("simulated crash at %s: restarting the daemon", obs.clock.now())
            obs.emit("alarm", "sim", "simulated crash: the daemon is killed and restarted")
            obs.stop(clean=False)
            obs.store.close()
            obs = build_observatory(cfg, fresh=False)
            obs.start()
            ops = _install(obs, cfg, sections)
            loop = _control_loop(obs, ops, opts.speed, bar, previous=loop)
            await ops.start()
        await _run_until(loop, ops, end, drain=True,
                         drain_timeout_s=opts.drain_timeout_s)
        await ops.aclose(drain=True)
    finally:
        if bar is not None:
            bar.close()
        obs.stop()
    report = night_report(obs.store, start=start, end=obs.clock.now())
    report = {k: report[k] for k in ("opened_utc", "closed_utc", "targets_observed", "frames",
                                     "frames_solved", "safety_closes", "weather_lost_s",
                                     "errors")} | report
    # the simulated crashes themselves are not errors of the night
    report["errors"] = [e for e in report["errors"] if not (
        (e["kind"] == "sim" and "simulated crash" in e["message"])
        or (restarts and e["kind"] == "daemon"
            and e["message"].startswith("stopped after a crash")))]
    report["simulation"] = {
        "night": opts.night.isoformat(), "start_utc": utc_iso(start, timespec="auto"),
        "end_utc": utc_iso(end, timespec="auto"), "speed_requested": opts.speed,
        "speed_reached": round(loop.sim_s / loop.wall_s, 1) if loop.wall_s else None,
        "wall_s": round(loop.wall_s, 1), "sim_s": round(loop.sim_s, 1),
        "tick_s": cfg.daemon.tick_s, "ticks": loop.ticks, "restarts": len(restarts),
        "frame_px": opts.frame_px, "data_dir": str(opts.data_dir),
        "targets_queued": n,
    }
    report["tick_latency"] = latency_figures(loop)
    if keep is not None:
        _keep_state(obs.store, opts.data_dir, keep)
        report["simulation"]["data_dir"] = str(keep)
    obs.store.close()
    if keep is not None and opts.data_dir != keep:
        shutil.rmtree(opts.data_dir, ignore_errors=True)
    return report


def _keep_state(store, state_dir: Path, keep: Path) -> None:
    """Copy the live state (SQLite through its backup API, the world file) to ``keep``."""
    import sqlite3

    if state_dir == keep:
        return
    store.flush(timeout_s=30.0)
    dest = sqlite3.connect(str(keep / "tenmon.sqlite"))
    try:
        store.db.backup(dest)
    finally:
        dest.close()
    for name in ("sim-world.json", "frames-intake.json"):
        if (state_dir / name).exists():
            shutil.copy2(state_dir / name, keep / name)


def _install(obs, cfg, sections):
    """Night operations with this run's settings (replacing any the composition root
    installed with the config's)."""
    from tenmon.daemon.services.night import install_night_operations, uninstall_night_operations

    uninstall_night_operations(obs)
    if "night" not in sections:
        # the simulated site file may leave the daemon's own nights off; a simulated night is on
        from tenmon.config.services import NightSettings
        from tenmon.config.sections import section

        night = section(cfg, "night", NightSettings)
        sections = {**sections, "night": night.model_copy(update={"enabled": True})}
    return install_night_operations(obs, cfg, sections=sections)


def latency_figures(loop) -> dict[str, Any]:
    """p50/p99/max of tick lateness (as ``daemon.runner`` measures it) and of the tick's own
    time, over all ticks and over the ticks while a frame was being processed."""
    import numpy as np

    late = np.frombuffer(loop.late_s, dtype=float) * 1e3
    dur = np.frombuffer(loop.duration_s, dtype=float) * 1e3
    busy = np.frombuffer(loop.busy_flags, dtype=np.int8).astype(bool)

    def fig(a):
        if a.size == 0:
            return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
        return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 2),
                "p99_ms": round(float(np.percentile(a, 99)), 2),
                "max_ms": round(float(a.max()), 2)}

    return {"late": fig(late), "late_while_processing": fig(late[busy]),
            "tick_duration": fig(dur), "tick_duration_while_processing": fig(dur[busy]),
            "fraction_of_ticks_while_processing": round(float(busy.mean()), 3) if busy.size
            else 0.0}


def _progress_bar(opts: SimulationOptions, start: datetime, end: datetime):
    if not opts.progress:
        return None
    from tqdm import tqdm

    bar = tqdm(total=int((end - start).total_seconds()), unit="s", unit_scale=False,
               file=sys.stderr, desc=f"night {opts.night}", leave=True, mininterval=0.5,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
    bar.start_time = start
    return bar


def _print_human(r: dict[str, Any]) -> None:
    sim = r["simulation"]
    lat = r["tick_latency"]
    print(f"night {sim['night']}: {sim['start_utc'][11:16]} to {sim['end_utc'][11:16]} UTC, "
          f"x{sim['speed_reached']} reached in {sim['wall_s']:.0f} s "
          f"({sim['restarts']} restart(s))")
    print(f"  opened {r['opened_utc'] or '-'}   closed {r['closed_utc'] or '-'}")
    print(f"  targets observed {r['targets_observed']}   frames {r['frames']} "
          f"(solved {r['frames_solved']}, unprocessed {r['frames_unprocessed']})")
    print(f"  safety closes {r['safety_closes']} (slit closed after "
          f"{', '.join(f'{x:g} s' for x in r['slit_closed_after_s']) or '-'}), reopened "
          f"{r['reopens']} time(s), weather lost {r['weather_lost_s']:.0f} s")
    lp = lat["late_while_processing"]
    print(f"  tick latency p50 {lat['late']['p50_ms']} ms, p99 {lat['late']['p99_ms']} ms; "
          f"while frames were processed p99 {lp['p99_ms']} ms")
    for t in r["targets"]:
        c = t["offsets_arcsec"]
        print(f"  {t['target']:<12} {'/'.join(x for x in t['outcomes'] if x) or '-':<24} "
              f"frames {t.get('frames', 0)} solved {t.get('frames_solved', 0)}"
              + (f"  off target {c[0]:.1f}\" first, {c[-1]:.1f}\" last" if c else ""))
    print(f"  errors: {len(r['errors'])}")
    for e in r["errors"][:20]:
        print(f"    {e['time_utc'][11:19]} {e['level']} {e['kind']}: {e['message']}")
