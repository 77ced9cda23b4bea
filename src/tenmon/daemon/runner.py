"""The daemon's main loop: start devices, serve the API, tick, and shut down safely on a signal.

Start-up order: first the site lock (``DATA_DIR/tenmon.lock``: a second daemon stops here, before
it has opened the database or touched a relay board), then the observatory, the alerts (so that
the start-up warnings reach a person), the devices, the last good device map and alert targets
(for ``relays_off`` and ``tenmon alerts send`` when the config cannot be read), the heartbeat
output, night operations and the API.

SIGTERM and SIGINT take the same path: stop taking commands, abort the dome, reach the safe
state (slit closed, cover closed, mount parked) within ``daemon.shutdown_timeout_s``, switch
every relay off, exit. A second signal skips the wait (relays still go off). A crash in the tick
also ends with every relay off (``finally``), and systemd restarts the daemon, whose start-up
reconcile finds the slit and closes it if needed. The control loop (``daemon.control_loop``, the
same one ``tenmon simulate`` runs) toggles the heartbeat output after every completed tick, so an
external dead-man relay closes the slit when it stops.

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
from pathlib import Path

from aiohttp import web

from tenmon.core.clock import RealClock
from tenmon.config.models import TenmonConfig
from tenmon.daemon.alerts import AlertManager
from tenmon.daemon.api.server import build_app
from tenmon.daemon.compose import build_observatory
from tenmon.daemon.control_loop import ControlLoop
from tenmon.daemon.heartbeat import Heartbeat, close_failed, open_heartbeat
from tenmon.daemon.lock import DaemonLock
from tenmon.daemon.notify import SystemdNotifier
from tenmon.daemon.observatory import Observatory
from tenmon.core.errors import DeviceError, TenmonError

log = logging.getLogger(__name__)

#: Longest wait at exit for queued alerts to go out (the unit's TimeoutStopSec leaves room).
ALERTS_FLUSH_S = 10.0


class DaemonStartError(TenmonError):
    """The daemon could not start (port taken, device missing)."""


async def run_daemon(config: TenmonConfig, *, fresh: bool = False,
                     notifier: SystemdNotifier | None = None,
                     config_path: Path | str | None = None) -> int:
    """Run until a signal; return the process exit code.

    Raises:
        DaemonLocked: another daemon runs on this data directory (nothing was touched).
        DaemonStartError: a device, the frame service or the API port could not start.
    """
    lock = DaemonLock(config.paths.data_dir)
    try:
        lock.acquire()  # the very first step: before the database or any device
    except OSError as exc:
        raise DaemonStartError(f"cannot take the site lock {lock.path}: "
                               f"{exc.strerror or exc}") from None
    try:
        return await _run(config, fresh, notifier or SystemdNotifier(), config_path)
    finally:
        lock.release()


async def _run(config: TenmonConfig, fresh: bool, notifier: SystemdNotifier,
               config_path: Path | str | None) -> int:
    obs = build_observatory(config, fresh=fresh)
    alerts = AlertManager(config.alerts, site_name=config.site.name, clock=RealClock())
    alert_problems = alerts.start()
    if alerts.enabled:
        obs.event_listeners.append(alerts.listener)
        obs.status_hooks["alerts"] = alerts.status
    heartbeat: Heartbeat | None = None
    try:
        try:
            obs.start()
        except DeviceError as exc:
            obs.emit("alarm", "daemon", f"cannot start: {exc}; the daemon exits (systemd "
                     "retries); relays off")
            obs.stop()
            obs.store.close()
            raise DaemonStartError(f"cannot start: {exc}") from None
        for problem in alert_problems:
            obs.emit("error", "alerts", problem)
        _save_last_good(obs, config, config_path)
        heartbeat = _start_heartbeat(obs, config)
        return await _serve(obs, config, notifier, heartbeat)
    finally:
        if heartbeat is not None:
            heartbeat.close()
        alerts.stop(ALERTS_FLUSH_S)


def _save_last_good(obs: Observatory, config: TenmonConfig, config_path) -> None:
    """The device map and alert targets of this good start, for relays_off and alerts send."""
    from tenmon.lastgood import save_alerts, save_device_map

    source = str(Path(config_path).resolve()) if config_path else None
    try:
        save_device_map(config, config.paths.data_dir, source)
        save_alerts(config, config.paths.data_dir, source)
    except OSError as exc:
        obs.emit("error", "daemon", f"cannot write the last good device map to "
                 f"{config.paths.data_dir}: {exc.strerror or exc}; relays_off depends on a "
                 "readable config until it can")


def _start_heartbeat(obs: Observatory, config: TenmonConfig) -> Heartbeat | None:
    if config.heartbeat is None:
        return None
    try:
        hb = open_heartbeat(config.heartbeat, RealClock(), simulated=config.mode == "simulated")
    except DeviceError as exc:
        obs.emit("alarm", "heartbeat", f"{exc.detail}: no heartbeat pulses, so the external "
                 "dead-man relay will close the slit; fix the wiring or [heartbeat] pin")
        return None
    obs.status_hooks["heartbeat"] = hb.status
    obs.emit("info", "heartbeat", f"heartbeat on GPIO {config.heartbeat.pin}, toggled every "
             f"{config.heartbeat.period_s:g} s while the control loop runs")
    return hb


async def _serve(obs: Observatory, config: TenmonConfig, notifier: SystemdNotifier,
                 heartbeat: Heartbeat | None) -> int:
    # The camera, the frame service (process pool), the night's jobs and sequencer (when
    # [night] enabled), centring and Nayuta following: all driven by the control tick.
    from tenmon.daemon.compose import install_centring
    from tenmon.daemon.services.night import install_night_operations

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
                               f"{exc.strerror} (is another program using the port?)") from None
    # ASCOM Alpaca ([alpaca] enabled): its own port, the same loop and observatory methods
    from tenmon.daemon.api.alpaca import start_alpaca

    try:
        alpaca = await start_alpaca(obs)
    except OSError as exc:
        obs.stop()
        obs.store.close()
        await runner.cleanup()
        raise DaemonStartError(f"cannot serve Alpaca on {config.alpaca.host}:"
                               f"{config.alpaca.port}: {exc.strerror or exc} (is another "
                               "program using the port?)") from None
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
        await _loop(obs, config, speed, notifier, lambda: signals, heartbeat)
    except Exception:
        log.exception("control loop crashed: switching every relay off")
        code = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if alpaca is not None:
            await alpaca.stop()  # no Alpaca request reaches a stopped observatory
        if obs.shutting_down and not obs.supervisor.in_safe_state():
            obs.emit("alarm", "daemon", "exiting before the safe state was verified: "
                     + obs.supervisor.describe())
        obs.stop(clean=code == 0)
        obs.store.close(timeout_s=0.0)  # stop() gave the writer its bounded flush already
        await runner.cleanup()
    return code


async def _loop(obs: Observatory, config: TenmonConfig, speed: float,
                notifier: SystemdNotifier, signals, heartbeat: Heartbeat | None = None) -> None:
    """Tick until the shutdown ends (the one :class:`ControlLoop`); ping systemd's watchdog and
    the heartbeat after each tick."""
    loop = ControlLoop(obs, tick_s=config.daemon.tick_s, speed=speed)
    if heartbeat is not None:
        def beat() -> None:
            held = close_failed(obs) if heartbeat.config.stop_when_close_fails else None
            heartbeat.beat(healthy=held is None, why_not=held or "")

        loop.after_tick.append(beat)
    wd_every = notifier.watchdog_interval_s() if config.daemon.watchdog else None
    if wd_every is not None:
        wd_last = time.monotonic()

        def watchdog() -> None:
            nonlocal wd_last
            if time.monotonic() - wd_last >= wd_every:
                notifier.watchdog()
                wd_last = time.monotonic()

        loop.after_tick.append(watchdog)
    shutdown = _Shutdown(obs, config, signals)
    loop.after_tick.append(shutdown.check)
    await loop.run(lambda: shutdown.done)


class _Shutdown:
    """After every tick: once shutting down, end the loop at the safe state, at a second
    signal, or when ``daemon.shutdown_timeout_s`` has passed."""

    def __init__(self, obs: Observatory, config: TenmonConfig, signals):
        self.obs = obs
        self.timeout_s = config.daemon.shutdown_timeout_s
        self.signals = signals
        self.started: float | None = None
        self.done = False

    def check(self) -> None:
        obs = self.obs
        if not obs.shutting_down or self.done:
            return
        now = obs.clock.monotonic()
        if self.started is None:
            self.started = now
        if obs.supervisor.in_safe_state():
            obs.emit("info", "daemon", "safe state reached: stopping")
            self.done = True
        elif self.signals() > 1:
            self.done = True
        elif now - self.started > self.timeout_s:
            obs.emit("alarm", "daemon", f"shutdown bound of {self.timeout_s:g} s passed before "
                     "the safe state was verified")
            self.done = True
