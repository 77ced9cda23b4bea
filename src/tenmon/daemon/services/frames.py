"""The daemon's frame service: directory intake -> process pool (pipeline, solving) -> SQLite.

Frames reach the daemon through the frames directory, whoever wrote them (a site's CCD program or
the simulated CCD): ``drivers.ccd_directory.FrameDirectory`` delivers each complete frame once;
``daemon.frame_worker.FrameWorker`` processes it off the control loop in a process pool (bounded
queue, newest-first by default so the frame a sequencer waits for to centre is not stuck behind a
backlog); the worker runs ``vision.pipeline.process_frame`` with the solver chain
(``vision.solve``). Each outcome becomes a row of ``frames`` and, when a solve was tried, a row of
``solves`` (``tenmon.daemon.schema.SOLVES_SCHEMA``), an event, and a call to every listener
(the sequencer centres on it).

Nothing here blocks the loop: ``tick()`` (a tick hook) polls the directory every ``poll_s`` of
the daemon's clock (a few ``stat`` calls), submits paths (O(1)) and queues the rows of results
that arrived since the last tick for the store's writer thread (``daemon.store``): a database
that is full, locked or gone delays the rows, in order, and loses none of them while the
store's buffer holds; the frame's target and block are kept in memory for the listeners. A restart loses nothing: a frame written but not processed is
not marked processed in the intake's state file, so the next start delivers it again; its row
(keyed by path) is updated, never duplicated.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from tenmon.daemon.services.frame_worker import FrameOutcome, FrameWorker, make_pool, masters_for
from tenmon.config.services import FrameServiceSettings, FrameWorkerSettings
from tenmon.daemon.schema import FRAMES_SCHEMA, SOLVES_SCHEMA
from tenmon.drivers.ccd_directory import FrameDirectory, FrameDirectorySettings
from tenmon.core.errors import DeviceError, StorageError
from tenmon.core.timefmt import parse_utc, utc_iso
from tenmon.config.vision import PipelineSettings, SolverSettings

log = logging.getLogger(__name__)


def default_worker_settings() -> FrameWorkerSettings:
    """The pool a night wants: one process, newest frame first, room for a backlog of frames."""
    return FrameWorkerSettings(processes=1, queue_size=64, newest_first=True,
                               drop_policy="drop_oldest")


class FrameJob(BaseModel):
    """What a worker process needs for one frame (sent as JSON; small)."""

    model_config = ConfigDict(extra="forbid")

    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    solver: SolverSettings = Field(default_factory=SolverSettings)
    longitude_deg: float = 0.0


# ---------------------------------------------------------------------------- worker side

def _make_solver(job: FrameJob):
    """The pipeline's solver for this job (``vision.solve.header_solver``: hints from the header)."""
    from tenmon.vision.solve.header_solver import header_solver

    return header_solver(job.solver, longitude_deg=job.longitude_deg)


def run_frame_solved(path: str, out_dir: str, job_json: str) -> dict[str, Any]:
    """Process and plate-solve one frame in a worker process; returns ``FrameResult.to_json()``
    (the solve under ``"solve"``). Takes and returns only small picklable values."""
    from tenmon.vision.frames.pipeline import process_frame

    job = FrameJob.model_validate_json(job_json)
    masters = masters_for(job.pipeline.calibration.directory)
    result = process_frame(path, out_dir=out_dir, settings=job.pipeline, solver=_make_solver(job),
                           masters=masters)
    return result.to_json()


# ---------------------------------------------------------------------------- loop side

#: ``listener(record)``: ``record`` is a :class:`FrameRecord`.
Listener = Callable[["FrameRecord"], None]


class FrameRecord:
    """One processed (or failed) frame as the loop sees it. ``frame_id`` and ``solve_id`` are
    ``None`` in the daemon (its rows are numbered by the store's writer thread, later; the
    ``frames`` row links its solve by ``solve_id``)."""

    def __init__(self, path: str, ok: bool, context: dict[str, Any], result: dict | None,
                 error: str | None, frame_id: int | None, solve_id: int | None):
        self.path = path
        self.ok = ok
        self.context = context
        self.result = result or {}
        self.error = error
        self.frame_id = frame_id
        self.solve_id = solve_id

    @property
    def solve(self) -> dict[str, Any]:
        return self.result.get("solve") or {}

    @property
    def solved(self) -> bool:
        return bool(self.ok and self.solve.get("solved"))


class FrameService:
    """Intake -> worker -> rows and listeners (see the module doc). Runs on the loop thread.

    Args:
        obs: the observatory (store, clock, emit).
        frames_dir: the directory to watch.
        products_dir: where products go.
        job: the worker's settings (pipeline, solver, site longitude).
        settings: polling.
        worker_settings: the pool.
        executor: for tests: an executor instead of a process pool.
    """

    def __init__(self, obs, *, frames_dir: Path, products_dir: Path, job: FrameJob,
                 settings: FrameServiceSettings | None = None,
                 worker_settings: FrameWorkerSettings | None = None, executor=None):
        self.obs = obs
        self.settings = settings or FrameServiceSettings()
        self.frames_dir = Path(frames_dir)
        self.products_dir = Path(products_dir)
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        self.products_dir.mkdir(parents=True, exist_ok=True)
        obs.store.add_schema(FRAMES_SCHEMA)
        obs.store.add_schema(SOLVES_SCHEMA)
        self.job = job
        self.intake = FrameDirectory(
            self.frames_dir, clock=obs.clock,
            settings=FrameDirectorySettings(pattern=self.settings.pattern,
                                            stable_s=self.settings.stable_s),
            state_file=Path(obs.config.paths.data_dir) / "frames-intake.json")
        ws = worker_settings or default_worker_settings()
        # The pool is ours (FrameWorker leaves an executor it was given alone), so that a
        # synchronous stop hook can let go of it without reaching into the worker.
        self._own_pool = executor is None
        self.executor = executor if executor is not None else make_pool(ws)
        self.worker = FrameWorker(out_dir=self.products_dir, pipeline_settings=job, settings=ws,
                                  on_result=self._on_result, on_drop=self._on_drop,
                                  executor=self.executor, runner=run_frame_solved)
        self.listeners: list[Listener] = []
        #: ``context_for(path) -> dict`` (target, block) for a newly delivered frame.
        self.context_for: Callable[[Path], dict[str, Any]] = lambda p: {}
        self.pier_side_for: Callable[[float | None, float | None, float | None], str | None] = (
            lambda ra, dec, lst: None)
        self._outcomes: collections.deque[tuple[str, FrameOutcome | None]] = collections.deque()
        #: path -> {"target", "block"} of frames delivered and not yet recorded (bounded)
        self._ctx: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._backlog: list[Path] = []   # delivered before the worker started
        self._next_poll = -1e9
        self._start_task: asyncio.Task | None = None
        self._retry_start_at = -1e9
        self.started = False
        self.closed = False
        self.counts = {"received": 0, "done": 0, "solved": 0, "failed": 0, "dropped": 0}

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Start the process pool (imports the pipeline in it once). Idempotent."""
        if self.started or self.closed:
            return
        await self.worker.start()
        self.started = True
        for p in self._backlog:
            self._submit(p)
        self._backlog.clear()

    def ensure_started(self) -> None:
        """From a tick inside the running event loop: start the pool in the background (and
        again a minute after a failed start, which is recorded)."""
        if self.started or self.closed:
            return
        task = self._start_task
        if task is not None:
            if not task.done():
                return
            self._start_task = None
            exc = task.exception() if not task.cancelled() else None
            self._retry_start_at = self.obs.clock.monotonic() + 60.0
            self.obs.emit("error", "frame", f"the frame pool did not start: {exc}; frames wait "
                          "in the directory, retrying in a minute")
            return
        if self.obs.clock.monotonic() < self._retry_start_at:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (a synchronous test): frames wait in the backlog
        self._start_task = loop.create_task(self.start())

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait until every delivered frame has a result (then write the rows)."""
        await self.start()
        await self.worker.join(timeout_s=timeout_s)
        self._drain_outcomes()

    async def stop(self, *, drain: bool = False, timeout_s: float | None = 30.0) -> None:
        """Stop the pool. With ``drain`` every delivered frame is processed first; without it,
        frames not yet processed stay ``queued`` and are delivered again at the next start."""
        if self.started and drain:
            try:
                await self.worker.join(timeout_s=timeout_s)
            except asyncio.TimeoutError:
                log.warning("frames still being processed after %s s: left queued for the next "
                            "start", timeout_s)
            self._drain_outcomes()
        self.stop_now()
        if self.started:
            await self.worker.stop(drain=False, timeout_s=timeout_s)
        self.started = False

    def stop_now(self) -> None:
        """Synchronous stop (a stop hook): let go of the pool; results after this are ignored,
        so frames not processed yet stay ``queued`` (and unmarked in the intake's state) and are
        delivered again at the next start."""
        self._drain_outcomes()
        self.closed = True
        if self._own_pool:
            self.executor.shutdown(wait=False, cancel_futures=True)

    @property
    def processing(self) -> bool:
        """Frames delivered to the pool and not finished."""
        st = self.worker.stats
        return bool(self._backlog or st.running or st.queued)

    @property
    def settling(self) -> bool:
        """Frames in the pool (queued or running), or waiting for a pool that is starting: their
        outcomes arrive off the tick (the next tick records them). A failed start (retried a
        minute later) does not count."""
        st = self.worker.stats
        starting = self._start_task is not None and not self._start_task.done()
        return bool(st.running or st.queued or (self._backlog and starting))

    @property
    def busy(self) -> bool:
        """:attr:`processing`, or files in the directory not yet stable and complete."""
        return self.processing or bool(self._outcomes or self.intake.pending)

    # ------------------------------------------------------------------ the tick

    def tick(self) -> None:
        """Poll the directory when due, submit new frames, write the results that arrived."""
        self.ensure_started()
        now_m = self.obs.clock.monotonic()
        if now_m >= self._next_poll:
            self._next_poll = now_m + self.settings.poll_s
            try:
                new = self.intake.poll()
            except DeviceError as exc:
                new = []
                self.obs.emit("error", "frame", f"frame intake: {exc.detail}")
                self._next_poll = now_m + 60.0
            for p in new:
                self._received(p)
        self._drain_outcomes()

    def _received(self, path: Path) -> None:
        ctx = dict(self.context_for(path) or {})
        self.counts["received"] += 1
        if not ctx.get("target"):
            ctx = {**self._stored_context(str(path)), **{k: v for k, v in ctx.items() if v}}
        self._remember(str(path), ctx)
        self.obs.store.execute(
            "INSERT INTO frames (path, received_utc, status, target, block) VALUES (?, ?, "
            "'queued', ?, ?) ON CONFLICT(path) DO UPDATE SET status = 'queued', "
            "received_utc = excluded.received_utc, target = COALESCE(excluded.target, target), "
            "block = COALESCE(excluded.block, block)",
            (str(path), utc_iso(self.obs.clock.now()), ctx.get("target"), ctx.get("block")),
            what=f"frame row {path.name}")
        if self.started:
            self._submit(path)
        else:
            self._backlog.append(path)

    def set_context(self, path: str | Path, context: dict[str, Any]) -> None:
        """Attach a frame to its target and block (the sequencer knows once the camera is done)."""
        ctx = {"target": context.get("target"), "block": context.get("block")}
        self._remember(str(path), ctx)
        self.obs.store.execute("UPDATE frames SET target = ?, block = ? WHERE path = ?",
                               (ctx["target"], ctx["block"], str(path)),
                               what=f"frame context {Path(path).name}")

    def _remember(self, path: str, ctx: dict[str, Any]) -> None:
        self._ctx[path] = {"target": ctx.get("target"), "block": ctx.get("block")}
        self._ctx.move_to_end(path)
        while len(self._ctx) > 2000:
            self._ctx.popitem(last=False)

    def _stored_context(self, path: str) -> dict[str, Any]:
        """Target and block a frame delivered again (after a restart) had in the database;
        ``{}`` when the database cannot say now (its row keeps them anyway)."""
        try:
            rows = self.obs.store.query("SELECT target, block FROM frames WHERE path = ?",
                                        (path,))
        except StorageError:
            return {}
        return {"target": rows[0]["target"], "block": rows[0]["block"]} if rows else {}

    def _submit(self, path: Path) -> None:
        self.worker.submit(path)

    def _on_result(self, outcome: FrameOutcome) -> None:
        if not self.closed:
            self._outcomes.append((outcome.path, outcome))  # written on the next tick

    def _on_drop(self, path: str) -> None:
        if not self.closed:
            self._outcomes.append((path, None))

    def _drain_outcomes(self) -> None:
        while self._outcomes:
            path, outcome = self._outcomes.popleft()
            try:
                self._record(path, outcome)
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the rest
                log.exception("recording frame %s failed", path)
                self.obs.emit("error", "frame", f"{Path(path).name}: cannot record: {exc}")

    def _record(self, path: str, outcome: FrameOutcome | None) -> None:
        store = self.obs.store
        ctx = dict(self._ctx.pop(path, None) or {})
        now = utc_iso(self.obs.clock.now())
        name = Path(path).name
        if outcome is None:
            self.counts["dropped"] += 1
            store.execute("UPDATE frames SET status = 'dropped', processed_utc = ?, error = ? "
                          "WHERE path = ?", (now, "dropped: the frame queue was full", path),
                          what=f"frame row {name}")
            self.obs.emit("warning", "frame", f"{name}: dropped (frame queue full); it stays in "
                          "the frames directory, unprocessed", path=path)
            self._notify(FrameRecord(path, False, ctx, None, "dropped", None, None))
            return
        if not outcome.ok:
            self.counts["failed"] += 1
            store.execute("UPDATE frames SET status = 'failed', processed_utc = ?, error = ?, "
                          "wall_queued_s = ? WHERE path = ?",
                          (now, outcome.error, outcome.queued_s, path), what=f"frame row {name}")
            self.obs.emit("error", "frame", f"{name}: processing failed: {outcome.error}",
                          path=path)
            self._mark_processed(path)
            self._notify(FrameRecord(path, False, ctx, None, outcome.error, None, None))
            return
        res = outcome.result or {}
        solve = res.get("solve") or {}
        solve_row = self._solve_row(path, res, solve) if solve else None
        header = res.get("header") or {}
        small = {k: v for k, v in res.items() if k not in ("solve",)}
        if solve:
            small["solve"] = {k: v for k, v in solve.items() if k != "wcs"}
        values = (now, header.get("date_obs"), header.get("exptime_s"), res.get("n_sources"),
                  res.get("n_cosmic_pixels"), res.get("fwhm_px"), res.get("background"),
                  int(bool(solve.get("solved"))) if solve else None,
                  solve.get("ra_deg"), solve.get("dec_deg"), solve.get("rms_arcsec"),
                  res.get("elapsed_ms"), outcome.queued_s, json.dumps(small, default=str), path)

        def write(conn) -> int | None:
            # the solve and its frame in one step of the writer's transaction
            from tenmon.vision.solve.base import insert_solve

            solve_id = insert_solve(conn, solve_row) if solve_row is not None else None
            conn.execute(
                "UPDATE frames SET status = 'done', processed_utc = ?, date_obs = ?, "
                "exptime_s = ?, n_sources = ?, n_cosmic_pixels = ?, fwhm_px = ?, background = ?, "
                "solved = ?, solve_id = ?, ra_deg = ?, dec_deg = ?, rms_arcsec = ?, "
                "elapsed_ms = ?, wall_queued_s = ?, error = NULL, result_json = ? WHERE path = ?",
                values[:8] + (solve_id,) + values[8:])
            return solve_id

        store.submit(write, what=f"frame row and solve {name}")
        self.counts["done"] += 1
        if solve.get("solved"):
            self.counts["solved"] += 1
            self.obs.emit("info", "frame", f"{name}: {res.get('n_sources')} sources, FWHM "
                          f"{_f(res.get('fwhm_px'), 2)} px; solved by {solve.get('solver')} "
                          f"(RA {solve['ra_deg']:.4f} Dec {solve['dec_deg']:.4f}, rms "
                          f"{_f(solve.get('rms_arcsec'), 2)}\", {solve.get('n_matched')} stars) in "
                          f"{outcome.elapsed_s:.1f} s", path=path)
        else:
            self.obs.emit("warning", "frame", f"{name}: {res.get('n_sources')} sources; NOT "
                          f"solved: {solve.get('reason') or 'no solver'}", path=path)
        self._mark_processed(path)
        self._notify(FrameRecord(path, True, ctx, res, None, None, None))

    def _solve_row(self, path: str, res: dict, solve: dict) -> dict[str, Any]:
        """The ``solves`` row of a frame's solve (written by the store's writer thread)."""
        header = res.get("header") or {}
        hint = solve.get("hint") or {}
        mid = _mid_exposure(header.get("date_obs"), header.get("exptime_s"))
        mra, mdec, lst = solve.get("mount_ra_deg"), solve.get("mount_dec_deg"), solve.get("lst_deg")
        pier = self.pier_side_for(mra, mdec, lst)
        wcs = solve.get("wcs")
        row = {
            "time_utc": utc_iso(mid or self.obs.clock.now()),
            "frame": path,
            "solved": int(bool(solve.get("solved"))),
            "reason": solve.get("reason"),
            "solver": solve.get("solver"),
            "elapsed_ms": solve.get("elapsed_ms"),
            "hint_ra_deg": hint.get("ra_deg"),
            "hint_dec_deg": hint.get("dec_deg"),
            "hint_radius_deg": hint.get("radius_deg"),
            "ra_deg": solve.get("ra_deg"),
            "dec_deg": solve.get("dec_deg"),
            "rotation_deg": solve.get("rotation_deg"),
            "scale_arcsec": solve.get("scale_arcsec"),
            "parity": solve.get("parity"),
            "rms_arcsec": solve.get("rms_arcsec"),
            "n_matched": solve.get("n_matched"),
            "wcs_json": json.dumps(wcs) if wcs else None,
            "mount_ra_deg": mra,
            "mount_dec_deg": mdec,
            "lst_deg": lst,
            "pier_side": pier,
        }
        return row

    def _mark_processed(self, path: str) -> None:
        try:
            self.intake.mark_processed(path)
        except OSError as exc:
            log.warning("cannot remember %s as processed: %s", path, exc)

    def _notify(self, record: FrameRecord) -> None:
        for fn in list(self.listeners):
            try:
                fn(record)
            except Exception:  # noqa: BLE001 - a listener bug must not lose the next frames
                log.exception("frame listener %r failed", fn)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        st = self.worker.stats
        return {**self.counts, "running": st.running, "queued": st.queued,
                "started": self.started, "pending_in_directory": self.intake.pending}

    def summary(self) -> dict[str, Any]:
        """Totals from the ``frames`` table (all nights), as written so far (the store's
        writer may still hold the newest rows: ``store.flush()`` first for the final word).

        Raises:
            StorageError: the database cannot be read now.
        """
        r = self.obs.store.query("SELECT COUNT(*) AS n, SUM(status = 'done') AS done, "
                       "SUM(status = 'failed') AS failed, SUM(status = 'dropped') AS dropped, "
                       "SUM(status = 'queued') AS queued, SUM(solved = 1) AS solved FROM frames"
                       )[0]
        return {k: int(r[k] or 0) for k in ("n", "done", "failed", "dropped", "queued", "solved")}


def _mid_exposure(date_obs: str | None, exptime_s: float | None) -> datetime | None:
    if not date_obs:
        return None
    try:
        t = parse_utc(str(date_obs))
    except ValueError:
        return None
    return t + timedelta(seconds=float(exptime_s or 0.0) / 2)


def _f(v: Any, nd: int) -> str:
    return "?" if v is None else f"{float(v):.{nd}f}"


__all__ = ["FRAMES_SCHEMA", "FrameJob", "FrameRecord", "FrameService", "FrameServiceSettings",
           "default_worker_settings", "run_frame_solved"]
