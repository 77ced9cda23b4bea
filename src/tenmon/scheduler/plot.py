"""Altitude-versus-time PNG of a night's plan (matplotlib's Agg canvas, no pyplot state)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from tenmon.core.atomicfile import atomic_write
from tenmon.scheduler.constraints import HorizonMask, compute_sky_grid
from tenmon.scheduler.planner import Plan

log = logging.getLogger(__name__)

_MAX_LABELS = 40  # above this many blocks the names would overlap into a smear


def plot_plan(plan: Plan, path: str | Path, *, step_s: float = 120.0, dpi: int = 110) -> Path:
    """Draw every scheduled target's altitude through the night, bold while it is observed.

    The x axis is UTC; the shaded parts are outside the plan's night; the dashed line is the
    minimum altitude (the horizon mask, if any, is drawn per block as a dotted line). The file
    is written to a temporary name beside ``path`` and renamed, so a reader never sees half a PNG.

    Args:
        plan: the plan to draw (an empty plan gives an empty, labelled chart).
        path: output PNG path.
        step_s: sampling of the curves in seconds.
        dpi: resolution.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OSError: the directory cannot be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter, date2num
    from matplotlib.figure import Figure

    path = Path(path)
    night = plan.night
    pad = timedelta(minutes=30)
    t_lo, t_hi = night.start - pad, night.end + pad
    unix = np.arange(t_lo.timestamp(), t_hi.timestamp() + step_s, step_s)
    times = [datetime.fromtimestamp(float(t), tz=timezone.utc) for t in unix]
    x = date2num(times)

    names: list[str] = []
    coords: list[tuple[float, float]] = []
    for b in plan.scheduled:
        if b.name not in names:
            names.append(b.name)
            coords.append((b.ra_deg, b.dec_deg))
    fig = Figure(figsize=(11, 6.5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if names:
        grid = compute_sky_grid([c[0] for c in coords], [c[1] for c in coords], unix, plan.site)
        cmap = fig.colormaps["tab20"] if hasattr(fig, "colormaps") else None
        if cmap is None:
            from matplotlib import colormaps

            cmap = colormaps["tab20"]
        mask = HorizonMask(plan.settings.horizon_mask)
        index = {n: i for i, n in enumerate(names)}
        for i, name in enumerate(names):
            ax.plot(x, grid.alt_deg[i], color=cmap(i % 20), lw=0.7, alpha=0.3)
        for b in plan.scheduled:
            i = index[b.name]
            color = cmap(i % 20)
            s, e = b.start.timestamp(), b.end.timestamp()
            bt = np.linspace(s, e, max(2, int((e - s) / 30.0) + 1))
            alt, az = grid.altaz_at(i, bt)
            bx = date2num([datetime.fromtimestamp(float(t), tz=timezone.utc) for t in bt])
            ax.plot(bx, alt, color=color, lw=2.6, solid_capstyle="butt")
            if mask:
                limit = np.maximum(plan.settings.min_altitude_deg, mask.min_alt_deg(az))
                ax.plot(bx, limit, color=color, lw=0.8, ls=":")
            if len(plan.scheduled) <= _MAX_LABELS:
                k = len(bt) // 2
                ax.annotate(b.name, (bx[k], alt[k]), xytext=(0, 4), textcoords="offset points",
                            ha="center", fontsize=7, color=color)
    ax.axhline(plan.settings.min_altitude_deg, color="0.3", ls="--", lw=0.8)
    ax.axvspan(date2num(t_lo), date2num(night.start), color="0.85", zorder=0)
    ax.axvspan(date2num(night.end), date2num(t_hi), color="0.85", zorder=0)
    ax.set_xlim(date2num(t_lo), date2num(t_hi))
    ax.set_ylim(0, 90)
    ax.set_ylabel("altitude (deg)")
    ax.set_xlabel("UTC")
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=timezone.utc))
    ax.grid(alpha=0.3)
    ax.set_title(
        f"Plan for the night of {night.date.isoformat()} ({night.twilight} twilight "
        f"{night.start:%H:%M}-{night.end:%H:%M} UTC): {len(plan.scheduled)} blocks, "
        f"{len(plan.unscheduled)} unscheduled",
        fontsize=10,
    )
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    log.info("wrote plan plot %s", path)
    return path
