"""The daemon's main loop: start devices, serve the API, tick, and shut down safely on a signal.

SIGTERM and SIGINT take the same path: stop taking commands, abort the dome, reach the safe
state (slit closed, cover closed, mount parked) within ``daemon.shutdown_timeout_s``, switch
every relay off, exit. A second signal skips the wait (relays still go off). A crash in the tick
also ends with every relay off (``finally``), and systemd restarts the daemon, whose start-up
reconcile finds the slit and closes it if needed.

Nothing before the control loop needs the disk: the store opens its database on its writer
thread (starting in memory when it cannot, and retrying), and night operations that cannot be
set up (a frames directory that cannot be created, ...) are an alarm, not a reason to exit, so
the start-up reconcile always runs and closes what is open when it is unsafe.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiohttp import web

from tenmon.clock import FakeClock
from tenmon.config.models import TenmonConfig
from tenmon.daemon.api import build_app
from tenmon.daemon.compose import build_observatory
from tenmon.daemon.notify import SystemdNotifier
from tenmon.daemon.observatory import Observatory
from tenmon.errors import DeviceError, TenmonError

log = logging.getLogger(__name__)


class DaemonStartError(TenmonError):
    """The daemon could not start (port taken, device missing)."""


async def run_daemon(config: TenmonConfig, *, fresh: bool = False,
                     notifier: SystemdNotifier | None = None) -> int:
    """Run until a signal; return the process exit code."""
    notifier = notifier or SystemdNotifier()
    obs = build_observatory(config, fresh=fresh)
    try:
        obs.start()
    except DeviceError as exc:
        obs.stop()
        obs.store.close()
        raise DaemonStartError(f"cannot start: {exc}") from None
    # The camera, the frame service (process pool), the night's jobs and sequencer (when
    # [night] enabled), centring and Nayuta following: all driven by the control tick.
    from tenmon.daemon.centring import install_centring
    from tenmon.daemon.night import install_night_operations

    try:
        night = install_night_operations(obs, config)
        install_centring(obs, night)
        await night.start()
    except (TenmonError, OSError) as exc:
        # the control loop (safety, the start-up reconcile, the API) runs without them
        log.exception("night operations failed to start")
        obs.emit("alarm", "daemon", f"cannot start night operations (frames, camera, night "
                 f"jobs): {exc}; the observatory runs without them (safety, commands and the "
                 "API work); fix the cause and restart")
    runner = web.AppRunner(build_app(obs), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.api.host, config.api.port)
    try:
        await site.start()
    except OSError as exc:
        obs.stop()
        obs.store.close()
        await runner.cleanup()
        raise DaemonStartError(f"cannot listen on {config.api.host}:{config.api.port}: "
                               f"{exc.strerror} (is another tenmon daemon running?)") from None
    speed = config.sim.speed if config.sim else 1.0
    url = f"http://{config.api.host}:{config.api.port}"
    obs.emit("info", "daemon", f"API listening on {url}"
             + (f"; simulated time x{speed:g}" if config.mode == "simulated" else ""))
    notifier.ready(f"{config.mode} observatory running; API {url}")

    signals = 0
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        name = signal.Signals(signum).name
        if signals == 1:
            obs.begin_shutdown(name)
            notifier.stopping(f"{name}: going to the safe state")
        else:
            log.warning("%s again: exiting now without waiting for the safe state", name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    code = 0
    try:
        await _loop(obs, config, speed, notifier, lambda: signals)
    except Exception:
        log.exception("control loop crashed: switching every relay off")
        code = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if obs.shutting_down and not obs.supervisor.in_safe_state():
            obs.emit("alarm", "daemon", "exiting before the safe state was verified: "
                     + obs.supervisor.describe())
        obs.stop(clean=code == 0)
        obs.store.close(timeout_s=0.0)  # stop() gave the writer its bounded flush already
        await runner.cleanup()
    return code


async def _loop(obs: Observatory, config: TenmonConfig, speed: float,
                notifier: SystemdNotifier, signals) -> None:
    tick_s = config.daemon.tick_s
    simulated = isinstance(obs.clock, FakeClock)
    wd_every = notifier.watchdog_interval_s() if config.daemon.watchdog else None
    wd_last = time.monotonic()
    next_wall = time.monotonic()
    shutdown_started: float | None = None
    while True:
        # latency: how late this tick starts against its schedule (wall clock)
        obs.loop_stats.add(max(0.0, time.monotonic() - next_wall))
        if simulated:
            obs.clock.advance(tick_s)
        obs.tick()
        if wd_every is not None and time.monotonic() - wd_last >= wd_every:
            notifier.watchdog()
            wd_last = time.monotonic()
        if obs.shutting_down:
            now = obs.clock.monotonic()
            if shutdown_started is None:
                shutdown_started = now
            if obs.supervisor.in_safe_state():
                obs.emit("info", "daemon", "safe state reached: stopping")
                return
            if signals() > 1:
                return
            if now - shutdown_started > config.daemon.shutdown_timeout_s:
                obs.emit("alarm", "daemon", "shutdown bound of "
                         f"{config.daemon.shutdown_timeout_s:g} s passed before the safe state "
                         "was verified")
                return
        next_wall += tick_s / speed
        delay = next_wall - time.monotonic()
        if delay < -1.0:
            next_wall = time.monotonic()  # fell behind: do not try to catch up in a burst
            delay = 0.0
        await asyncio.sleep(max(0.0, delay))
