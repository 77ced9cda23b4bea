"""The daemon's own frames into the archive, as they are processed (``[archive]`` in the site file).

``ArchiveHookSettings`` is the section (off by default). When it is on, the night operations add
:meth:`DaemonArchiveSink.on_frame` to the frame service's listeners: on the control loop it only
puts the record on a bounded queue (O(1), never blocks; a full queue drops the record with a
warning, and the frame stays in the frames directory, so ``tenmon archive ingest FRAMES_DIR``
catches up later). A thread of its own reads the frame's header and its source product, and
writes through the archive's writer (batches, the archive's lock: an ingest may share the
archive). The daemon needs the ``archive`` extra only when this is on.

This module imports nothing heavy until a sink starts (the config loader imports the settings).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any

from tenmon.config.services import ArchiveHookSettings

log = logging.getLogger(__name__)


class DaemonArchiveSink:
    """Frame records -> the archive, off the control loop (see the module doc).

    Args:
        settings: the ``[archive]`` section.
        job: the frame service's ``FrameJob`` (pipeline and solver settings: their hash is
            recorded, so an ingest with the same settings skips these frames).
        clock: for the writer's times.
    """

    def __init__(self, settings: ArchiveHookSettings, *, job: Any, clock: Any = None):
        from tenmon.archive import require

        require("pyarrow", "astropy_healpix")
        from tenmon.archive.walk import masters_key
        from tenmon.archive.work import ArchiveSettings

        self.settings = settings
        self.clock = clock
        self.archive_settings = ArchiveSettings(pipeline=job.pipeline, solver=job.solver,
                                                blind="astrometry_net" in job.solver.order,
                                                longitude_deg=getattr(job, "longitude_deg", None))
        md = job.pipeline.calibration.directory
        self.masters = str(Path(md).resolve()) if md else None
        self.masters_key = masters_key(md) if md else ""
        self._q: queue.Queue = queue.Queue(maxsize=settings.queue_size)
        self.dropped = 0
        self.written = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def on_frame(self, record: Any) -> None:
        """A frame service listener (``FrameRecord``): queue it; never blocks."""
        item = (str(record.path), bool(record.ok), dict(record.result or {}), record.error)
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            log.warning("archive queue full (%d): %s not archived now; `tenmon archive ingest` on the "
                        "frames directory adds it later", self.settings.queue_size, record.path)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (up to ``timeout_s``) and stop the thread (a stop hook)."""
        if not self._started:
            return
        try:
            self._q.put(None, timeout=timeout_s)
        except queue.Full:
            log.warning("archive writer did not keep up; %d frame(s) not archived", self._q.qsize())
            return
        self._thread.join(timeout_s)

    def status(self) -> dict[str, Any]:
        return {"written": self.written, "dropped": self.dropped, "errors": self.errors, "queued": self._q.qsize()}

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        from tenmon.archive import index as idx
        from tenmon.archive.work import pipeline_version
        from tenmon.archive.writer import ArchiveWriter, utc_iso
        from tenmon.core.clock import RealClock

        clock = self.clock or RealClock()
        try:
            writer = ArchiveWriter(self.settings.path, batch_frames=self.settings.batch_frames,
                                   batch_s=self.settings.batch_s, clock=clock)
            writer.run_id = idx.begin_run(
                writer.conn, kind="daemon", root=None, started_utc=utc_iso(clock),
                pipeline_version=pipeline_version(), settings_hash=self.archive_settings.settings_hash(),
                settings_json=self.archive_settings.model_dump_json(), engine="daemon frame service", workers=None)
        except Exception:  # noqa: BLE001 - the daemon goes on without its archive; said loudly
            log.exception("the archive %s cannot be opened: the daemon's frames are not archived",
                          self.settings.path)
            self.errors += 1
            return
        status = "finished"
        try:
            while True:
                try:
                    item = self._q.get(timeout=self.settings.batch_s)
                except queue.Empty:
                    writer.flush()
                    continue
                if item is None:
                    break
                try:
                    writer.add(result_from_record(*item, settings=self.archive_settings, masters=self.masters,
                                                  masters_key=self.masters_key))
                    self.written += 1
                except Exception:  # noqa: BLE001 - one frame must not stop the archive
                    self.errors += 1
                    log.exception("archiving %s failed", item[0])
        except Exception:  # noqa: BLE001
            status = "failed"
            log.exception("the archive writer stopped")
        finally:
            try:
                writer.flush()
            finally:
                idx.end_run(writer.conn, writer.run_id, status=status, finished_utc=utc_iso(clock),
                            counts=dict(writer.counts))
                writer.close()


def result_from_record(path: str, ok: bool, result: dict[str, Any], error: str | None, *, settings: Any,
                       masters: str | None, masters_key: str) -> dict[str, Any]:
    """A daemon frame record as the archive's worker result (``work.process_task``'s form)."""
    from astropy.table import Table

    from tenmon.archive.headers import read_facts
    from tenmon.archive.walk import content_hash
    from tenmon.archive.work import (UnreadableFrame, detections_of, footprint, pipeline_version,
                                     scan_image_header)

    out: dict[str, Any] = {"path": str(Path(path).resolve()), "status": "failed", "reasons": [],
                           "pipeline_version": pipeline_version(), "settings_hash": settings.settings_hash(),
                           "masters": masters, "masters_key": masters_key, "facts": None, "detections": None,
                           "elapsed_ms": result.get("elapsed_ms")}
    try:
        st = os.stat(path)
        out["size"], out["mtime_ns"], out["sha"] = st.st_size, st.st_mtime_ns, content_hash(path)
        header, shape = scan_image_header(path)
    except (OSError, UnreadableFrame) as exc:
        out["reasons"].append(f"unreadable: {exc}")
        return out
    facts = read_facts(header)
    out["facts"] = facts.to_json()
    out["night"] = facts.night(settings.longitude_deg)
    if not ok:
        out["reasons"].append(f"pipeline: {error}")
        return out
    if not facts.has_time:
        out["reasons"].append("header: no observation time")
    products = result.get("products") or {}
    shape = _product_shape(products) or _trimmed_shape(header, shape)
    out["shape"] = list(shape)
    q = result.get("quality") or {}
    solve = result.get("solve") or {}
    out.update({"n_sources": result.get("n_sources"), "n_cosmic_pixels": result.get("n_cosmic_pixels"),
                "fwhm_px": result.get("fwhm_px"), "background": result.get("background"),
                "background_rms": result.get("background_rms"), "ellipticity": q.get("ellipticity"),
                "limiting_mag": q.get("limiting_mag"), "warnings": result.get("warnings") or [],
                "wcs_source": result.get("wcs_source"), "solver": solve.get("solver"),
                "solve_reason": solve.get("reason"), "solve_rms_arcsec": solve.get("rms_arcsec"),
                "solve_n_matched": solve.get("n_matched"), "wcs": None})
    if solve.get("solved") and solve.get("wcs"):
        from tenmon.vision.solve.base import wcs_from_json

        out["wcs"] = solve["wcs"]
        out.update(footprint(wcs_from_json(solve["wcs"]), tuple(shape)))
    else:
        out["reasons"].append(f"solve failed: {solve.get('reason') or 'no solver'}")
    src = products.get("sources")
    if src and Path(src).is_file():
        t = Table.read(src, format="ascii.ecsv")
        if out["wcs"] is None:
            for c in ("ra", "dec"):
                if c in t.colnames:
                    t.remove_column(c)
        hdr = result.get("header") or {}
        out["detections"] = detections_of(t, exptime_s=facts.exptime_s, gain=hdr.get("gain_e_per_adu"),
                                          keep_flags=settings.keep_flags)
    else:
        out["reasons"].append("no source list: the daemon's [pipeline.products] sources is off")
    out["status"] = "partial" if out["reasons"] else "ok"
    return out


def _product_shape(products: dict[str, Any]) -> tuple[int, int] | None:
    from astropy.io import fits

    for key in ("clean", "mask"):
        p = products.get(key)
        if p and Path(p).is_file():
            try:
                with fits.open(p) as hdul:
                    for h in hdul:
                        if h.header.get("NAXIS") == 2:
                            return int(h.header["NAXIS2"]), int(h.header["NAXIS1"])
            except OSError:
                continue
    return None


def _trimmed_shape(header: Any, shape: tuple[int, int]) -> tuple[int, int]:
    from tenmon.core.errors import VisionError
    from tenmon.vision.frames.calibration import parse_section

    trim = header.get("TRIMSEC") or header.get("DATASEC")
    if trim:
        try:
            rs, cs = parse_section(str(trim), shape)
            return rs.stop - rs.start, cs.stop - cs.start
        except VisionError:
            pass
    return shape


__all__ = ["ArchiveHookSettings", "DaemonArchiveSink", "result_from_record"]
