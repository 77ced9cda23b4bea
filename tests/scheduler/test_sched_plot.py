"""The plan's altitude-versus-time PNG."""

from __future__ import annotations

from datetime import date

import astropy.units as u
import numpy as np
from astropy.coordinates import EarthLocation
from matplotlib.image import imread

from tenmon.scheduler.night import night_for_date
from tenmon.scheduler.planner import plan_night
from tenmon.scheduler.plot import plot_plan
from tenmon.config.services import SchedulerSettings
from tenmon.scheduler.targets import Target

SITE = EarthLocation.from_geodetic(134.3356 * u.deg, 35.0253 * u.deg, 449 * u.m)


def test_plot_writes_a_png_with_the_blocks(tmp_path):
    night = night_for_date(date(2026, 11, 21), SITE)
    targets = [Target(name=f"T{i}", ra_deg=ra, dec_deg=35.0, priority=1, exposure_s=300,
                      count=3) for i, ra in enumerate(range(0, 360, 30))]
    settings = SchedulerSettings(horizon_mask=[(0, 20), (180, 40)])
    plan = plan_night(targets, night, SITE, settings)
    assert plan.scheduled
    out = plot_plan(plan, tmp_path / "sub" / "plan.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(out)
    assert img.shape[0] > 500 and img.shape[1] > 1000
    # Drawn, not blank: many distinct colours (curves, blocks, shading).
    colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["plan.png"]  # no temp left

    empty = plan_night([], night, SITE, settings)
    assert imread(plot_plan(empty, tmp_path / "empty.png")).shape == img.shape
