"""The night planner: priority-first placement of target blocks, re-planning on events, and an
independent plan checker.

How a night is planned (:func:`plan_night`):

1. Every target is placed on a grid of ``settings.time_step_s`` (1 min) covering the night and
   every constraint is evaluated for all targets and times at once (:mod:`.constraints`).
2. Targets are taken in priority order (lower number first; ties: the target with fewer
   observable minutes first, then by name). Each gets the free slot where every grid minute of
   its block, both ends included, meets every constraint, where the transition from the block
   before it and to the block after it fits, and where its mean altitude is highest (a target
   with ``cadence_s``, or an urgent one, takes the earliest such slot instead, and repeats
   ``cadence_s`` later while slots remain). Later, lower-priority targets fill what is left.
3. A block lasts ``count * (exposure_s + readout_s)``; before it comes a transition of
   ``max(slew, dome, filter change) + settle_s``: slew is the great-circle distance from where the
   telescope was (the previous block's target at its end, or the park position) to the target
   at the block's start over ``slew_rate_deg_s``; dome is the azimuth change over
   ``dome_rate_deg_s``; the mount, the dome and the filter wheel move at the same time.

:func:`check_plan` re-evaluates a plan with plain astropy transforms, independently of the fast
path; the planner's own tests and the benchmark require it to find no violation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import numpy as np

from tenmon.core import offline
from tenmon.core.astro import separation_deg
from tenmon.scheduler.constraints import (
    ConstraintResult,
    SkyGrid,
    azimuth_change_deg,
    compute_sky_grid,
    constraints_from_settings,
    evaluate,
    time_grid,
)
from tenmon.scheduler.errors import SchedulerError
from tenmon.scheduler.night import Night
from tenmon.scheduler.settings import TWILIGHT_SUN_ALT_DEG
from tenmon.config.services import SchedulerSettings
from tenmon.scheduler.targets import Target
from tenmon.core.timefmt import utc_iso

offline.configure()

import astropy.units as u  # noqa: E402
from astropy.coordinates import (  # noqa: E402
    TETE,
    AltAz,
    EarthLocation,
    SkyCoord,
    get_body,
    get_sun,
)
from astropy.time import Time  # noqa: E402

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ScheduledBlock:
    """One visit of one target: exposures from ``start`` to ``end`` (UTC).

    ``overhead_s`` is the transition before ``start`` (slew, dome, filter, settle) from the
    previous block or from the park position; ``visit`` counts visits of a cadence target.
    """

    name: str
    start: datetime
    end: datetime
    ra_deg: float
    dec_deg: float
    priority: int
    exposure_s: float
    count: int
    filter: str | None
    binning: int
    overhead_s: float
    visit: int = 1

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: ``name``, ``start_utc``, ``end_utc``, ``ra_deg``, ``dec_deg``, ..."""
        return {
            "name": self.name,
            "start_utc": _iso(self.start),
            "end_utc": _iso(self.end),
            "ra_deg": self.ra_deg,
            "dec_deg": self.dec_deg,
            "priority": self.priority,
            "exposure_s": self.exposure_s,
            "count": self.count,
            "filter": self.filter,
            "binning": self.binning,
            "overhead_s": round(self.overhead_s, 3),
            "visit": self.visit,
        }


@dataclass(frozen=True)
class Unscheduled:
    """A target left out of the plan and why (one line an operator can act on)."""

    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    """A night's plan: blocks in time order and the targets left out with reasons.

    ``targets``, ``site`` and ``settings`` are what it was planned from (so it can be re-planned
    and checked); ``start`` is when planning began (dusk, or ``plan_night``'s ``start``; a
    re-plan keeps it and records itself in ``events``) and ``start_alt_deg``/``start_az_deg``
    where the telescope was then (the park position).
    """

    night: Night
    site: EarthLocation
    settings: SchedulerSettings
    targets: tuple[Target, ...]
    scheduled: tuple[ScheduledBlock, ...]
    unscheduled: tuple[Unscheduled, ...]
    start: datetime
    start_alt_deg: float
    start_az_deg: float
    events: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: ``night`` (the evening's date), ``night_start_utc``,
        ``night_end_utc``, ``twilight``, ``scheduled`` and ``unscheduled``."""
        return {
            "night": self.night.date.isoformat(),
            "night_start_utc": _iso(self.night.start),
            "night_end_utc": _iso(self.night.end),
            "twilight": self.night.twilight,
            "site": {
                "lat_deg": float(self.site.lat.deg),
                "lon_deg": float(self.site.lon.deg),
                "elev_m": float(self.site.height.to_value(u.m)),
            },
            "scheduled": [b.to_dict() for b in self.scheduled],
            "unscheduled": [x.to_dict() for x in self.unscheduled],
            "events": list(self.events),
        }

    @property
    def exposure_time_s(self) -> float:
        """Total open-shutter time of the scheduled blocks, seconds."""
        return float(sum(b.exposure_s * b.count for b in self.scheduled))


# ---------------------------------------------------------------------------- events
@dataclass(frozen=True)
class WeatherClose:
    """The dome closed for weather at ``now``; ``until`` is when it may reopen (None: not
    tonight). The block in progress is lost."""

    until: datetime | None = None
    reason: str = "weather"


@dataclass(frozen=True)
class TargetFailed:
    """Target ``name`` failed (acquisition, guiding, ...); it is dropped from tonight's plan."""

    name: str
    reason: str = ""


@dataclass(frozen=True)
class UrgentTarget:
    """A target that must go first: it is placed at the earliest possible time after the block
    in progress, and everything not yet started is re-planned around it."""

    target: Target


Event = WeatherClose | TargetFailed | UrgentTarget


# ---------------------------------------------------------------------------- planning
def plan_night(
    targets: Sequence[Target],
    night: Night,
    site: EarthLocation,
    settings: SchedulerSettings | None = None,
    *,
    start: datetime | None = None,
    progress: Progress | None = None,
) -> Plan:
    """Plan one night (or what is left of it).

    Args:
        targets: what to observe (names must be unique).
        night: the night's boundaries (see :func:`tenmon.scheduler.night.night_for_date`).
        site: the observatory (latitude, longitude, height).
        settings: constraints and overheads; defaults of :class:`SchedulerSettings` if None.
        start: plan from this UTC time instead of dusk (a daemon starting mid-night); the
            telescope is taken to be at the park position then.
        progress: called as ``progress(done, total)`` while targets are placed.

    Returns:
        The plan; targets that do not fit are in ``unscheduled`` with a reason.

    Raises:
        SchedulerError: duplicate target names, or a naive ``start``.
    """
    settings = settings or SchedulerSettings()
    targets = list(targets)
    _check_unique(targets)
    park = (settings.park_alt_deg, settings.park_az_deg)
    t_from = night.start if start is None else max(_aware(start), night.start)
    if t_from >= night.end:
        blocks: list[ScheduledBlock] = []
        unscheduled = [Unscheduled(t.name, "no time left in the night") for t in targets]
    else:
        blocks, unscheduled = _schedule(
            targets, night, site, settings, t_from=t_from, start_pos=park, start_filter=None,
            progress=progress,
        )
    plan = Plan(
        night=night, site=site, settings=settings, targets=tuple(targets),
        scheduled=tuple(blocks), unscheduled=tuple(unscheduled), start=t_from,
        start_alt_deg=park[0], start_az_deg=park[1],
    )
    log.info("planned %s: %d blocks, %d targets unscheduled", night.date, len(blocks),
             len(unscheduled))
    return plan


def replan(plan: Plan, now: datetime, event: Event, *, progress: Progress | None = None) -> Plan:
    """Re-plan the rest of the night after ``event`` at ``now`` (UTC).

    Blocks that ended by ``now`` stay. The block in progress stays too, except on
    :class:`WeatherClose` (interrupted) and for the target of :class:`TargetFailed`. Everything
    after that is planned again from the remaining targets: targets already observed (without
    cadence) are not planned again; a cadence target keeps its spacing.

    Raises:
        SchedulerError: naive ``now``, an unknown event, or a failed target not in the plan.
    """
    now = _aware(now)
    settings, site, night = plan.settings, plan.site, plan.night
    blocks = sorted(plan.scheduled, key=lambda b: b.start)
    done = [b for b in blocks if b.end <= now]
    current = next((b for b in blocks if b.start <= now < b.end), None)
    targets = list(plan.targets)
    extra: list[Unscheduled] = []
    urgent: set[str] = set()
    label = ""
    kept = list(done)
    park = (settings.park_alt_deg, settings.park_az_deg)

    if isinstance(event, WeatherClose):
        label = f"{_hm(now)} weather close ({event.reason})"
        if current is not None:
            extra.append(Unscheduled(current.name, f"interrupted by weather close at {_hm(now)} "
                                                   f"UTC ({event.reason})"))
        until = _aware(event.until) if event.until is not None else None
        if until is not None:
            label += f" until {_hm(until)}"
        t_from = max(now, until) if until is not None else night.end
        start_pos, start_filter = park, None
    elif isinstance(event, TargetFailed):
        label = f"{_hm(now)} target {event.name} failed"
        if not any(t.name == event.name for t in targets):
            raise SchedulerError(f"target {event.name!r} is not in this plan")
        targets = [t for t in targets if t.name != event.name]
        extra.append(Unscheduled(event.name, f"failed at {_hm(now)} UTC"
                                 + (f": {event.reason}" if event.reason else "")))
        if current is not None and current.name != event.name:
            kept.append(current)
            t_from = current.end
            start_pos = _position(current, current.end, site)
            start_filter = current.filter
        elif current is not None:  # the failed target's own block: the telescope is there
            t_from = now
            start_pos = _position(current, now, site)
            start_filter = current.filter
        else:
            t_from = now
            start_pos = _last_position(kept, now, site, park)
            start_filter = _last_filter(kept)
    elif isinstance(event, UrgentTarget):
        label = f"{_hm(now)} urgent target {event.target.name}"
        targets = [t for t in targets if t.name != event.target.name] + [event.target]
        urgent.add(event.target.name)
        if current is not None:
            kept.append(current)
            t_from = current.end
            start_pos = _position(current, current.end, site)
            start_filter = current.filter
        else:
            t_from = now
            start_pos = _last_position(kept, now, site, park)
            start_filter = _last_filter(kept)
    else:
        raise SchedulerError(f"unknown re-planning event {event!r}")

    t_from = max(t_from, night.start)
    kept_names = {b.name for b in kept}
    visits: dict[str, int] = {}
    last_start: dict[str, datetime] = {}
    for b in kept:
        visits[b.name] = max(visits.get(b.name, 0), b.visit)
        last_start[b.name] = max(last_start.get(b.name, b.start), b.start)
    remaining: list[Target] = []
    earliest: dict[str, float] = {}
    for t in targets:
        if t.name in kept_names:
            if t.cadence_s is None:
                continue
            earliest[t.name] = last_start[t.name].timestamp() + t.cadence_s
        remaining.append(t)

    dropped = {x.name for x in extra}
    if t_from >= night.end:
        reason = (f"weather close at {_hm(now)} UTC for the rest of the night"
                  if isinstance(event, WeatherClose) else "no time left in the night")
        new_blocks: list[ScheduledBlock] = []
        new_unscheduled = [Unscheduled(t.name, reason) for t in remaining
                           if t.name not in dropped]
    else:
        new_blocks, new_unscheduled = _schedule(
            remaining, night, site, settings, t_from=t_from, start_pos=start_pos,
            start_filter=start_filter, earliest=earliest, urgent=urgent, visits_done=visits,
            progress=progress, fixed=kept,
        )
        new_unscheduled = [x for x in new_unscheduled if x.name not in dropped]
    # Kept blocks are history and stay as they were; new blocks carry their overhead from
    # where the telescope is at ``t_from``.
    scheduled = sorted(kept + new_blocks, key=lambda b: b.start)
    return replace(
        plan,
        # A failed target stays among the plan's targets: its earlier blocks are still checked.
        targets=tuple(targets) if isinstance(event, UrgentTarget) else plan.targets,
        scheduled=tuple(scheduled),
        unscheduled=tuple(extra + new_unscheduled),
        events=plan.events + (label,),
    )


# ---------------------------------------------------------------------------- the core
@dataclass
class _Timeline:
    """Blocks placed so far, sorted by start, as arrays for vectorised gap queries."""

    start: list[float] = field(default_factory=list)
    end: list[float] = field(default_factory=list)
    start_alt: list[float] = field(default_factory=list)
    start_az: list[float] = field(default_factory=list)
    end_alt: list[float] = field(default_factory=list)
    end_az: list[float] = field(default_factory=list)
    filt: list[int] = field(default_factory=list)

    def insert(self, s: float, e: float, sa: float, sz: float, ea: float, ez: float,
               f: int) -> None:
        i = int(np.searchsorted(np.asarray(self.start), s))
        for lst, v in ((self.start, s), (self.end, e), (self.start_alt, sa), (self.start_az, sz),
                       (self.end_alt, ea), (self.end_az, ez), (self.filt, f)):
            lst.insert(i, v)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(x, dtype=float) for x in (
            self.start, self.end, self.start_alt, self.start_az, self.end_alt, self.end_az,
            self.filt))


def _transition_s(alt0, az0, f0, alt1, az1, f1,  # type: ignore[no-untyped-def]
                  settings: SchedulerSettings):
    """Seconds from one pointing to the next: max(slew, dome, filter) + settle (vectorised)."""
    slew = separation_deg(az0, alt0, az1, alt1) / settings.slew_rate_deg_s
    dome = azimuth_change_deg(az0, az1) / settings.dome_rate_deg_s
    f0 = np.asarray(f0)
    f1 = np.asarray(f1)
    filt = np.where((f0 >= 0) & (f1 >= 0) & (f0 != f1), settings.filter_change_s, 0.0)
    return np.maximum(np.maximum(slew, dome), filt) + settings.settle_s


def _schedule(
    targets: list[Target],
    night: Night,
    site: EarthLocation,
    settings: SchedulerSettings,
    *,
    t_from: datetime,
    start_pos: tuple[float, float],
    start_filter: str | None,
    earliest: dict[str, float] | None = None,
    urgent: set[str] | None = None,
    visits_done: dict[str, int] | None = None,
    progress: Progress | None = None,
    fixed: Sequence[ScheduledBlock] = (),
) -> tuple[list[ScheduledBlock], list[Unscheduled]]:
    earliest = earliest or {}
    urgent = urgent or set()
    visits_done = visits_done or {}
    step = settings.time_step_s
    t0 = t_from.timestamp()
    unix = time_grid(t_from, night.end, step)
    n, m = len(targets), unix.size
    if n == 0:
        return [], []
    if m < 2:
        return [], [Unscheduled(t.name, "no time left in the night") for t in targets]
    grid = compute_sky_grid([t.ra_deg for t in targets], [t.dec_deg for t in targets], unix, site)
    result = evaluate(constraints_from_settings(settings), grid, targets)
    ok = result.ok
    for j, t in enumerate(targets):
        if t.name in earliest:
            ok[j, unix < earliest[t.name] - 1e-6] = False

    filters = sorted({t.filter for t in targets if t.filter is not None}
                     | {b.filter for b in fixed if b.filter is not None}
                     | ({start_filter} if start_filter else set()))
    fcode = {f: i for i, f in enumerate(filters)}

    def code(f: str | None) -> int:
        return fcode[f] if f is not None else -1

    dur_s = np.array([t.duration_s(settings.readout_s) for t in targets])
    cells = np.ceil(dur_s / step - 1e-9).astype(int)
    observable = ok.sum(axis=1)
    order = sorted(range(n), key=lambda j: (
        0 if targets[j].name in urgent else 1, targets[j].priority, int(observable[j]),
        targets[j].name))

    timeline = _Timeline()
    placed: list[tuple[int, float, int]] = []  # (target index, start unix, visit)
    alt_cum = np.concatenate([np.zeros((n, 1)), np.cumsum(grid.alt_deg, axis=1)], axis=1)
    for done_count, j in enumerate(order):
        t = targets[j]
        d = int(cells[j])
        visit = visits_done.get(t.name, 0)
        row_ok = ok[j]
        while d + 1 <= m:
            s = _best_start(j, d, float(dur_s[j]), row_ok, unix, grid, alt_cum[j], timeline,
                            t0, start_pos, code(start_filter), code(t.filter), settings,
                            earliest_first=(t.cadence_s is not None or t.name in urgent))
            if s is None:
                break
            e = s + float(dur_s[j])
            sa, sz = grid.altaz_at(j, s)
            ea, ez = grid.altaz_at(j, e)
            timeline.insert(s, e, float(sa), float(sz), float(ea), float(ez), code(t.filter))
            visit += 1
            placed.append((j, s, visit))
            if t.cadence_s is None:
                break
            row_ok = row_ok & (unix >= s + t.cadence_s - 1e-6)
        if progress is not None:
            progress(done_count + 1, n)

    placed_idx = {j for j, _, _ in placed}
    blocks = [
        ScheduledBlock(
            name=targets[j].name,
            start=_dt(s),
            end=_dt(s + float(dur_s[j])),
            ra_deg=targets[j].ra_deg,
            dec_deg=targets[j].dec_deg,
            priority=targets[j].priority,
            exposure_s=targets[j].exposure_s,
            count=targets[j].count,
            filter=targets[j].filter,
            binning=targets[j].binning,
            overhead_s=0.0,
            visit=v,
        )
        for j, s, v in placed
    ]
    blocks.sort(key=lambda b: b.start)
    blocks = _with_overheads_grid(blocks, grid, targets, t0, start_pos, start_filter, settings)
    unscheduled = [
        Unscheduled(targets[j].name, _reason(j, targets[j], int(cells[j]), ok, result, step))
        for j in order if j not in placed_idx
    ]
    return blocks, unscheduled


def _best_start(
    j: int, d: int, dur: float, row_ok: np.ndarray, unix: np.ndarray, grid: SkyGrid,
    alt_cum: np.ndarray, timeline: _Timeline, t0: float, start_pos: tuple[float, float],
    start_f: int, f: int, settings: SchedulerSettings, *, earliest_first: bool,
) -> float | None:
    """Best feasible start (unix seconds) for target ``j``, or None.

    Candidates are every grid minute plus, for each free gap, the start right after the
    transition from the block before it and the start that ends right before the transition to
    the block after it (so blocks pack without losing the rounding to whole minutes). A
    candidate needs every grid point from the one at or before its start to the one at or after
    its end to meet the constraints, and the transitions on both sides to fit.
    """
    m = unix.size
    u0 = float(unix[0])
    step = float(unix[1] - unix[0])
    b_s, b_e, b_sa, b_sz, b_ea, b_ez, b_f = timeline.arrays()
    nb = b_s.size

    cands = [unix[: max(m - d, 0)]]
    # Snap after the previous pointing (the start position, then every block's end).
    p_end = np.concatenate([[t0], b_e])
    p_alt = np.concatenate([[start_pos[0]], b_ea])
    p_az = np.concatenate([[start_pos[1]], b_ez])
    p_f = np.concatenate([[start_f], b_f])
    s1 = p_end + _transition_s(p_alt, p_az, p_f, *_at(grid, j, p_end, unix), f, settings)
    s2 = p_end + _transition_s(p_alt, p_az, p_f, *_at(grid, j, s1, unix), f, settings)
    cands.append(np.ceil(np.maximum(s1, s2) + 1e-3))
    if nb:
        # Snap before the next block: end + transition(target at end -> next start) = next start.
        e1 = b_s - _transition_s(*_at(grid, j, b_s, unix), f, b_sa, b_sz, b_f, settings)
        e2 = b_s - _transition_s(*_at(grid, j, e1, unix), f, b_sa, b_sz, b_f, settings)
        cands.append(np.floor(np.minimum(e1, e2) - 1e-3 - dur))
    snap = np.concatenate([np.zeros(cands[0].size, dtype=bool),
                           np.ones(sum(c.size for c in cands[1:]), dtype=bool)])
    s = np.concatenate(cands)
    e = s + dur
    kf = np.floor((s - u0) / step + 1e-9).astype(int)
    kc = np.ceil((e - u0) / step - 1e-9).astype(int)
    inside = (s >= t0) & (kf >= 0) & (kc <= m - 1)
    s, e, kf, kc, snap = s[inside], e[inside], kf[inside], kc[inside], snap[inside]
    bad = np.concatenate([[0], np.cumsum(~row_ok)])
    keep = (bad[kc + 1] - bad[kf]) == 0
    if not keep.any():
        return None
    s, e, kf, kc, snap = s[keep], e[keep], kf[keep], kc[keep], snap[keep]
    alt_s, az_s = _at(grid, j, s, unix)
    alt_e, az_e = _at(grid, j, e, unix)
    if nb:
        p = np.searchsorted(b_s, s, side="right") - 1
        has_p = p >= 0
        pc = np.clip(p, 0, None)
        prev_end = np.where(has_p, b_e[pc], t0)
        prev_alt = np.where(has_p, b_ea[pc], start_pos[0])
        prev_az = np.where(has_p, b_ez[pc], start_pos[1])
        prev_f = np.where(has_p, b_f[pc], start_f)
        nx = p + 1
        has_n = nx < nb
        nc = np.clip(nx, 0, nb - 1)
        cond_in = s >= prev_end + _transition_s(prev_alt, prev_az, prev_f, alt_s, az_s, f,
                                                settings)
        cond_out = ~has_n | (e + _transition_s(alt_e, az_e, f, b_sa[nc], b_sz[nc], b_f[nc],
                                               settings) <= b_s[nc])
        feasible = cond_in & cond_out
    else:
        feasible = s >= t0 + _transition_s(start_pos[0], start_pos[1], start_f, alt_s, az_s, f,
                                           settings)
    if not feasible.any():
        return None
    s, kf, kc, snap = s[feasible], kf[feasible], kc[feasible], snap[feasible]
    if earliest_first:
        return float(s.min())
    score = (alt_cum[kc + 1] - alt_cum[kf]) / (kc - kf + 1)
    best = int(np.argmax(score))
    if settings.pack_slack_deg > 0 and snap.any() and not snap[best]:
        # Packing against a neighbour leaves no unusable sliver of time; accept a slightly
        # lower mean altitude for it.
        snapped = np.nonzero(snap)[0]
        alt_best = int(snapped[np.argmax(score[snapped])])
        if score[alt_best] >= score[best] - settings.pack_slack_deg:
            best = alt_best
    return float(s[best])


def _at(grid: SkyGrid, j: int, when: np.ndarray, unix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alt, az) of target ``j`` at ``when`` (clamped into the grid's span)."""
    alt, az = grid.altaz_at(j, np.clip(when, unix[0], unix[-1]))
    return np.asarray(alt), np.asarray(az)


def _with_overheads_grid(blocks: list[ScheduledBlock], grid: SkyGrid, targets: list[Target],
                         t0: float, start_pos: tuple[float, float], start_filter: str | None,
                         settings: SchedulerSettings) -> list[ScheduledBlock]:
    """Fill in each block's ``overhead_s`` from its actual predecessor (fast-path positions)."""
    index = {t.name: i for i, t in enumerate(targets)}
    out = []
    prev = (start_pos[0], start_pos[1], start_filter)
    fcode: dict[str | None, int] = {None: -1}
    for b in blocks:
        j = index[b.name]
        sa, sz = grid.altaz_at(j, b.start.timestamp())
        for f in (prev[2], b.filter):
            if f not in fcode:
                fcode[f] = len(fcode)
        ov = float(_transition_s(prev[0], prev[1], fcode[prev[2]], sa, sz, fcode[b.filter],
                                 settings))
        out.append(replace(b, overhead_s=ov))
        ea, ez = grid.altaz_at(j, b.end.timestamp())
        prev = (float(ea), float(ez), b.filter)
    return out


def _positions(blocks: Sequence[ScheduledBlock], when: Sequence[datetime], site: EarthLocation
               ) -> tuple[np.ndarray, np.ndarray]:
    """(alt, az) of each block's target at the matching time, fast path."""
    unix = np.array([w.timestamp() for w in when])
    lo, hi = float(unix.min()), float(unix.max())
    grid_t = np.array([lo, hi]) if hi > lo else np.array([lo, lo + 60.0])
    grid = compute_sky_grid([b.ra_deg for b in blocks], [b.dec_deg for b in blocks], grid_t, site)
    alt, az = grid.altaz_at(np.arange(len(blocks)), unix)
    return np.asarray(alt), np.asarray(az)


def _position(block: ScheduledBlock, when: datetime, site: EarthLocation) -> tuple[float, float]:
    alt, az = _positions([block], [when], site)
    return float(alt[0]), float(az[0])


def _last_position(kept: list[ScheduledBlock], now: datetime, site: EarthLocation,
                   park: tuple[float, float]) -> tuple[float, float]:
    if not kept:
        return park
    last = max(kept, key=lambda b: b.end)
    return _position(last, last.end, site)


def _last_filter(kept: list[ScheduledBlock]) -> str | None:
    return max(kept, key=lambda b: b.end).filter if kept else None


def _reason(j: int, target: Target, cells: int, ok: np.ndarray, result: ConstraintResult,
            step: float) -> str:
    never = result.never_met(j)
    if never:
        return "never meets " + "; ".join(never) + " in the planned time"
    row = ok[j]
    if not row.any():
        return "its constraints are never all met at the same time in the planned time"
    longest = _longest_run(row)
    minutes = target.duration_s() / 60.0
    if longest < cells + 1:
        return (f"needs {math.ceil(cells * step / 60.0)} min in one block but its longest "
                f"observable stretch is {max(longest - 1, 0) * step / 60.0:g} min")
    return (f"no free slot: its observable time ({int(row.sum() * step / 60.0)} min) is taken by "
            f"blocks of equal or higher priority or leaves no room for the transitions "
            f"(block {minutes:.0f} min of exposure)")


def _longest_run(row: np.ndarray) -> int:
    if not row.any():
        return 0
    padded = np.concatenate([[0], row.astype(np.int8), [0]])
    edges = np.diff(padded)
    starts = np.nonzero(edges == 1)[0]
    ends = np.nonzero(edges == -1)[0]
    return int((ends - starts).max())


# ---------------------------------------------------------------------------- checking
@dataclass(frozen=True)
class Violation:
    """A rule a plan breaks: which block (``name``, ``start``), which rule, and by how much."""

    name: str
    start: datetime
    rule: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "start_utc": _iso(self.start), "rule": self.rule,
                "detail": self.detail}


def check_plan(
    plan: Plan,
    targets: Sequence[Target],
    site: EarthLocation,
    settings: SchedulerSettings | None = None,
    *,
    step_s: float | None = None,
    angle_tolerance_deg: float = 1e-3,
    time_tolerance_s: float = 0.5,
) -> list[Violation]:
    """Re-check every block of ``plan`` with plain astropy transforms (not the planner's path).

    Each block is sampled at its start, every ``step_s`` (default: the settings' time step)
    after it, and at its end. At every sample: sun altitude (the night's twilight), altitude
    above ``min_altitude_deg`` and the horizon mask, airmass, hour angle (from apparent sidereal
    time and TETE right ascension), moon separation and illumination, and the target's time
    window. Between blocks: no overlap, and a gap at least the transition time (from astropy
    positions). Also: block inside the night, length ``count * (exposure_s + readout_s)``,
    target known and coordinates unchanged.

    Args:
        angle_tolerance_deg: slack on angular limits (the planner's fast path is within 1").
        time_tolerance_s: slack on transition gaps.

    Returns:
        Every violation found (empty when the plan is sound).
    """
    settings = settings or plan.settings
    step = step_s or settings.time_step_s
    by_name = {t.name: t for t in targets}
    out: list[Violation] = []
    blocks = sorted(plan.scheduled, key=lambda b: b.start)
    if not blocks:
        return out

    for b in blocks:
        t = by_name.get(b.name)
        if t is None:
            out.append(Violation(b.name, b.start, "target", "not among the given targets"))
            continue
        if abs(t.ra_deg - b.ra_deg) > 1e-9 or abs(t.dec_deg - b.dec_deg) > 1e-9:
            out.append(Violation(b.name, b.start, "target", "coordinates differ from the target's"))
        need = t.count * (t.exposure_s + settings.readout_s)
        have = (b.end - b.start).total_seconds()
        if have < need - 1e-3:
            out.append(Violation(b.name, b.start, "duration",
                                 f"block lasts {have:.1f} s, needs {need:.1f} s"))
        if b.start < plan.night.start - timedelta(seconds=1e-3) or \
                b.end > plan.night.end + timedelta(seconds=1e-3):
            out.append(Violation(b.name, b.start, "night", "block outside the night"))

    # One astropy transform for every sample of every block.
    idx: list[int] = []
    times: list[float] = []
    for i, b in enumerate(blocks):
        s, e = b.start.timestamp(), b.end.timestamp()
        n_in = int(math.floor((e - s) / step + 1e-9))
        samples = [s + k * step for k in range(n_in + 1) if s + k * step < e - 1e-6] + [e]
        idx.extend([i] * len(samples))
        times.extend(samples)
    idx_a = np.asarray(idx)
    obstime = Time(np.asarray(times), format="unix", scale="utc")
    ra = np.array([blocks[i].ra_deg for i in idx])
    dec = np.array([blocks[i].dec_deg for i in idx])
    frame = AltAz(obstime=obstime, location=site)
    coords = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    aa = coords.transform_to(frame)
    alt = np.asarray(aa.alt.deg)
    az = np.asarray(aa.az.deg)
    sun_alt = np.asarray(get_sun(obstime).transform_to(frame).alt.deg)
    moon_aa = get_body("moon", obstime, location=site).transform_to(frame)
    tol = angle_tolerance_deg

    def flag(mask: np.ndarray, rule: str, fmt: Callable[[int], str]) -> None:
        seen: set[int] = set()
        for k in np.nonzero(mask)[0]:
            i = int(idx_a[k])
            if i in seen:
                continue
            seen.add(i)
            out.append(Violation(blocks[i].name, blocks[i].start, rule, fmt(int(k))))

    def when(k: int) -> str:
        return _dt(float(times[k])).strftime("%H:%M:%S")

    sun_max = TWILIGHT_SUN_ALT_DEG[settings.observe_twilight]
    flag(sun_alt > sun_max + tol, "sun_altitude",
         lambda k: f"sun at {sun_alt[k]:.3f} deg > {sun_max:g} at {when(k)}")
    limit = np.full_like(alt, settings.min_altitude_deg)
    if settings.horizon_mask:
        pts = sorted(settings.horizon_mask)
        maz = np.array([p[0] for p in pts])
        malt = np.array([p[1] for p in pts])
        mask_alt = np.interp(az, maz, malt, period=360.0) if maz.size > 1 else \
            np.full_like(az, malt[0])
        limit = np.maximum(limit, mask_alt)
    flag(alt < limit - tol, "altitude",
         lambda k: f"altitude {alt[k]:.3f} deg < limit {limit[k]:.3f} at {when(k)}")
    if settings.max_airmass is not None:
        secz = np.asarray(aa.secz)
        bad = (alt <= 0) | (secz > settings.max_airmass * (1 + 1e-4))
        flag(bad, "airmass",
             lambda k: f"airmass {secz[k]:.4f} > {settings.max_airmass:g} at {when(k)}")
    if settings.min_hour_angle_deg > -180 or settings.max_hour_angle_deg < 180:
        last = obstime.sidereal_time("apparent", longitude=site.lon).deg
        ra_app = coords.transform_to(TETE(obstime=obstime)).ra.deg
        ha = (last - ra_app + 180.0) % 360.0 - 180.0
        flag((ha < settings.min_hour_angle_deg - tol) | (ha > settings.max_hour_angle_deg + tol),
             "hour_angle", lambda k: f"hour angle {ha[k]:.3f} deg outside "
             f"{settings.min_hour_angle_deg:g}..{settings.max_hour_angle_deg:g} at {when(k)}")
    if settings.min_moon_separation_deg is not None:
        sep = np.asarray(aa.separation(moon_aa).deg)
        flag(sep < settings.min_moon_separation_deg - tol, "moon_separation",
             lambda k: f"moon {sep[k]:.3f} deg away < {settings.min_moon_separation_deg:g} "
             f"at {when(k)}")
    if settings.max_moon_illumination is not None:
        sun_g = get_sun(obstime)
        moon_g = get_body("moon", obstime)
        elong = sun_g.separation(moon_g, origin_mismatch="ignore").rad
        sd, md = sun_g.distance.to_value(u.km), moon_g.distance.to_value(u.km)
        illum = (1 + np.cos(np.arctan2(sd * np.sin(elong), md - sd * np.cos(elong)))) / 2
        moon_alt = np.asarray(moon_aa.alt.deg)
        flag((moon_alt > 0) & (illum > settings.max_moon_illumination + 1e-3),
             "moon_illumination", lambda k: f"moon {illum[k]:.3f} lit and up at {when(k)}")
    ws = np.array([_ts(by_name[blocks[i].name].window_start, -np.inf)
                   if blocks[i].name in by_name else -np.inf for i in idx])
    we = np.array([_ts(by_name[blocks[i].name].window_end, np.inf)
                   if blocks[i].name in by_name else np.inf for i in idx])
    t_arr = np.asarray(times)
    flag((t_arr < ws - 1e-6) | (t_arr > we + 1e-6), "time_window",
         lambda k: f"exposing at {when(k)} outside the target's window")

    # Transitions: previous block's target at its end -> this block's target at its start.
    first_k = {int(i): int(np.nonzero(idx_a == i)[0][0]) for i in range(len(blocks))}
    last_k = {int(i): int(np.nonzero(idx_a == i)[0][-1]) for i in range(len(blocks))}
    for i, b in enumerate(blocks):
        k0 = first_k[i]
        if i == 0:
            if b.start < plan.start:
                continue  # a re-planned plan's history: its first block predates its start
            p_alt, p_az, p_f = plan.start_alt_deg, plan.start_az_deg, None
            p_end = plan.start
        else:
            a = blocks[i - 1]
            kl = last_k[i - 1]
            p_alt, p_az, p_f, p_end = alt[kl], az[kl], a.filter, a.end
            if b.start < a.end:
                out.append(Violation(b.name, b.start, "overlap", f"starts before {a.name} ends"))
                continue
        # Astropy's alt/az and tenmon's one separation (tested against astropy's), not the
        # planner's vectorised grid.
        slew = separation_deg(float(p_az), float(p_alt), float(az[k0]),
                              float(alt[k0])) / settings.slew_rate_deg_s
        turn = abs(float(az[k0]) - float(p_az)) % 360.0
        dome = min(turn, 360.0 - turn) / settings.dome_rate_deg_s
        filt = settings.filter_change_s if (p_f is not None and b.filter is not None
                                            and p_f != b.filter) else 0.0
        need = max(slew, dome, filt) + settings.settle_s
        gap = (b.start - p_end).total_seconds()
        if gap < need - time_tolerance_s:
            out.append(Violation(b.name, b.start, "transition",
                                 f"{gap:.1f} s after the previous pointing, needs {need:.1f} s"))
    return out


# ---------------------------------------------------------------------------- helpers
def _check_unique(targets: Sequence[Target]) -> None:
    seen: set[str] = set()
    for t in targets:
        if t.name in seen:
            raise SchedulerError(f"target name {t.name!r} appears twice; names must be unique")
        seen.add(t.name)


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise SchedulerError(f"time {when.isoformat()} has no timezone; use UTC-aware times")
    return when.astimezone(timezone.utc)


def _dt(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, tz=timezone.utc)


def _ts(when: datetime | None, default: float) -> float:
    return when.timestamp() if when is not None else default


def _iso(when: datetime) -> str:
    return utc_iso(when, timespec="auto")


def _hm(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%H:%M")
