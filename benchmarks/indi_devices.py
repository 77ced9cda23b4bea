"""INDI devices and the control loop: tick times while BLOBs arrive and under faults at the wire.

Starts Debian's indiserver with indi_simulator_ccd, _telescope, _focus and _weather on a free
loopback port, builds tenmon's INDI camera, mount, focuser and weather station, and runs a
control loop at ``daemon.tick_s`` = 0.1 s (real clock) that calls every device's ``update()``
each tick, as the daemon does. Measured per tick: the time spent in the ``update()`` calls and
the loop's wake-up lateness (how late the tick started: GIL contention from the INDI threads
parsing XML, decoding base64 and writing FITS shows up there). Scenarios:

1. ``idle``: devices connected, mount tracking, no exposure.
2. ``blobs``: back-to-back 0.5 s full-frame exposures (1280 x 1024 x 16 bit: a 2.6 MB FITS BLOB,
   3.5 MB of base64 on the wire, each written as a FITS file), the mount tracking, the focuser
   moving back and forth.
3. ``fault: device disconnected`` (the CCD switched off by another client mid-exposure),
   ``fault: exposure never ends`` (the CCD driver process stopped, SIGSTOP; readout_timeout_s 3),
   ``fault: server killed`` (indiserver SIGKILLed mid-exposure): ticks over the window, and the
   time from the fault to the camera's ``error``.

    .venv/bin/python benchmarks/indi_devices.py              # ~2 min; writes docs/bench/indi.md
    .venv/bin/python benchmarks/indi_devices.py --seconds 10 --no-write
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "drivers" / "indi"))

from indi_rig import IndiServer  # noqa: E402

from tenmon.core.clock import RealClock  # noqa: E402
from tenmon.config.models import (  # noqa: E402
    IndiCameraConfig,
    IndiFocuserConfig,
    IndiMountConfig,
    IndiWeatherConfig,
)
from tenmon.drivers.camera import CameraState  # noqa: E402
from tenmon.drivers.indi import IndiCamera, IndiFocuser, IndiMount, IndiWeather  # noqa: E402
from tenmon.core.errors import DeviceError  # noqa: E402

TICK_S = 0.1
DRIVERS = ("indi_simulator_ccd", "indi_simulator_telescope", "indi_simulator_focus",
           "indi_simulator_weather")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


class Rig:
    def __init__(self, home: Path, frames: Path):
        self.home, self.frames = home, frames
        self.server = IndiServer(DRIVERS, home).start()
        port = self.server.port
        clock = RealClock()
        self.camera = IndiCamera(IndiCameraConfig(type="indi", port=port, device="CCD Simulator",
                                                  readout_timeout_s=3), None, frames, clock,
                                 lambda: {"ra_deg": self.mount.ra_deg,
                                          "dec_deg": self.mount.dec_deg})
        self.mount = IndiMount(IndiMountConfig(type="indi", port=port,
                                               device="Telescope Simulator", min_alt_deg=-10),
                               clock)
        self.focuser = IndiFocuser(IndiFocuserConfig(type="indi", port=port,
                                                     device="Focuser Simulator"), clock)
        self.weather = IndiWeather(IndiWeatherConfig(type="indi", port=port,
                                                     device="Weather Simulator",
                                                     update_period_s=1), clock)
        self.devices = [self.camera, self.mount, self.focuser, self.weather]
        for d in self.devices:
            d.connect()
        if self.mount.parked:
            self.mount.unpark()
            time.sleep(1)
        self.mount.set_tracking(True)

    def loop(self, seconds: float, *, expose: bool, focus: bool = False, fault=None,
             fault_at_s: float = 1.0) -> dict:
        """Run the control loop; returns tick figures (ms) and what happened."""
        work, late = [], []
        frames0 = self.camera.frames_written
        blobs0 = self.camera.conn.blobs_received
        t0 = time.perf_counter()
        next_t = t0
        fault_t = error_t = None
        err_text = None
        direction = 1
        while True:
            now = time.perf_counter()
            if now - t0 >= seconds:
                break
            late.append(max(0.0, now - next_t) * 1e3)
            s = time.perf_counter()
            for d in self.devices:
                d.update()
            work.append((time.perf_counter() - s) * 1e3)
            cam = self.camera
            refused = None
            if expose and cam.state == CameraState.IDLE:
                cam.take_frame()
                try:
                    cam.start_exposure(0.5, name="bench")
                except DeviceError as exc:  # the fault hit between two exposures
                    refused = str(exc)
            if focus and not self.focuser.moving and self.focuser.position is not None:
                target = 40000 if direction > 0 else 30000
                direction = -direction
                self.focuser.move_to(target)
            if fault is not None and fault_t is None and now - t0 >= fault_at_s and \
                    cam.state == CameraState.EXPOSING:
                # injected from another thread: indi_setprop is a subprocess, not the loop's work
                threading.Thread(target=fault, daemon=True).start()
                fault_t = time.perf_counter()
            if fault_t is not None and error_t is None and (cam.state == CameraState.ERROR
                                                             or refused is not None):
                error_t = time.perf_counter()
                err_text = cam.error or refused
            next_t += TICK_S
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.perf_counter() - t0
        return {"ticks": len(work), "work_p50": pct(work, 50), "work_p99": pct(work, 99),
                "work_max": max(work), "late_p50": pct(late, 50), "late_p99": pct(late, 99),
                "late_max": max(late), "frames": self.camera.frames_written - frames0,
                "blobs": self.camera.conn.blobs_received - blobs0, "elapsed": elapsed,
                "detect_s": None if fault_t is None or error_t is None else error_t - fault_t,
                "error": err_text}

    def reset_camera(self) -> None:
        self.camera.connect()  # after a fault: switches the device on again, clears the error

    def close(self) -> None:
        for d in self.devices:
            d.disconnect()
        self.server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="per main scenario")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rig = Rig(tmp / "home", tmp / "frames")
        try:
            rows.append(("idle (mount tracking, weather 1 Hz)",
                         rig.loop(args.seconds / 2, expose=False)))
            rows.append(("BLOBs: 0.5 s full frames back to back, focuser moving",
                         rig.loop(args.seconds, expose=True, focus=True)))
            rows.append(("fault: CCD disconnected mid-exposure",
                         rig.loop(6, expose=True, fault=lambda: rig.server.setprop(
                             "CCD Simulator.CONNECTION.DISCONNECT=On"))))
            rig.reset_camera()
            pid = rig.server.driver_pid("indi_simulator_ccd")
            rows.append(("fault: exposure never ends (driver stopped; readout_timeout_s 3)",
                         rig.loop(8, expose=True, fault=lambda: os.kill(pid, signal.SIGSTOP))))
            os.kill(pid, signal.SIGCONT)
            time.sleep(1)
            rig.reset_camera()
            rows.append(("fault: indiserver killed mid-exposure",
                         rig.loop(8, expose=True, fault=rig.server.kill)))
        finally:
            rig.close()
    lines = [
        "# INDI devices: control-tick times with BLOBs and faults at the wire",
        "",
        "Rerun: `.venv/bin/python benchmarks/indi_devices.py` (writes this file; ~2 min).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, indi-bin (Debian) simulators on loopback; control loop "
        f"at {TICK_S} s calling update() of the INDI camera, mount, focuser and weather station.",
        "`update()` = time inside the four update() calls per tick; `late` = how late the tick "
        "started (GIL contention from the INDI threads' XML parsing, base64 decoding and FITS "
        "writing shows up here). Times in ms.",
        "",
        "| scenario | ticks | update() p50 | update() p99 | update() max | late p50 | late p99 |"
        " late max | frames written | fault -> camera error |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        det = "" if r["detect_s"] is None else f"{r['detect_s']:.2f} s"
        if r["error"]:
            det += f" ({r['error'][:90]})"
        lines.append(f"| {name} | {r['ticks']} | {r['work_p50']:.2f} | {r['work_p99']:.2f} | "
                     f"{r['work_max']:.2f} | {r['late_p50']:.2f} | {r['late_p99']:.2f} | "
                     f"{r['late_max']:.2f} | {r['frames']} | {det} |")
    blob_row = rows[1][1]
    mb = blob_row["frames"] * 1280 * 1024 * 2 / 1e6
    lines += ["", f"BLOB throughput in the BLOB scenario: {blob_row['frames']} frames "
              f"({mb:.0f} MB of pixels) in {blob_row['elapsed']:.0f} s.", ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        out = ROOT / "docs" / "bench" / "indi.md"
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
