"""tenmon.scheduler: targets and queue, constraints, night boundaries, the planner, plots, jobs.

Modules (pure planning code: times, coordinates and tables in, results out):

- ``targets``: the ``Target`` model; TOML/CSV import with file/line/field errors.
- ``queue``: ``TargetQueue``, targets and their history in SQLite.
- ``night``: dusk and dawn at a twilight for a date at a site.
- ``constraints``: every target on a 1-minute grid at once; altitude with horizon mask,
  airmass, moon, sun, time windows, hour angle.
- ``planner``: ``plan_night``, ``replan`` (weather close, failed or urgent target) and the
  independent ``check_plan``.
- ``plot``: the plan's altitude-versus-time PNG.
- ``jobs``: apscheduler 3.x wiring (twilight trigger, persistent job store, night jobs).
- ``settings``: ``SchedulerSettings`` (mounted into the site config).
"""
