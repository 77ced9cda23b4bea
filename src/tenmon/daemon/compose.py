"""The composition root: the one place that builds devices from the config and wires them together.

A site gets its real drivers; a simulated observatory gets the simulated world and devices that
are views of it. There is no fallback from one to the other: a missing device is an error that
names it.

Services are built here too and given what they use (``install_centring``: centring and Nayuta
following); the night operations are still built by ``daemon.night.install_night_operations``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tenmon.core.clock import Clock, FakeClock, RealClock
from tenmon.config.models import SimulatedMountConfig, TenmonConfig
from tenmon.daemon.device_factory import build_mount, build_weather, is_network
from tenmon.daemon.observatory import Observatory
from tenmon.daemon.store import Store
from tenmon.drivers import registry
from tenmon.drivers.cover import RelayCover
from tenmon.drivers.dome import RelayDome
from tenmon.drivers.slit import RelaySlit
from tenmon.core.errors import DeviceNotFound
from tenmon.core.timefmt import parse_utc, utc_iso

log = logging.getLogger(__name__)

WORLD_FILE = "sim-world.json"


def build_observatory(config: TenmonConfig, *, clock: Clock | None = None, fresh: bool = False
                      ) -> Observatory:
    """Build the observatory for ``config`` (devices not yet connected: call ``start()``).

    In simulated mode the clock is a :class:`FakeClock` the daemon advances tick by tick; the
    world resumes from ``<data_dir>/sim-world.json`` unless ``fresh``.
    """
    data_dir = Path(config.paths.data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the control loop runs without its disk; the store says so
        log.error("cannot create the data directory %s: %s", data_dir, exc)
    # never raises for a database it cannot open: it starts in memory and keeps trying
    store = Store(config.paths.database, config.storage)
    if config.mode == "simulated":
        return _build_simulated(config, store, data_dir, clock, fresh)
    return _build_site(config, store, clock or RealClock())


def _build_simulated(config: TenmonConfig, store: Store, data_dir: Path, clock: Clock | None,
                     fresh: bool) -> Observatory:
    from tenmon.drivers.mount import make_mount
    from tenmon.drivers.sim.devices import (SimulatedEncoder, SimulatedLimitSwitches,
                                            SimulatedWeather)
    from tenmon.drivers.sim.relays import SimulatedRelayBank
    from tenmon.drivers.sim.world import MotorInput, SimWorld

    sim = config.sim
    world_path = data_dir / WORLD_FILE
    state = None if fresh else SimWorld.load_state(world_path)
    start = sim.start()
    if state is not None:
        start = parse_utc(state.time_utc)
        log.info("simulated world resumed from %s at %s", world_path, utc_iso(start))
    clock = clock or FakeClock(start)
    mcfg = config.mount
    # a network mount (its server's simulator) leaves the world's own mount at its defaults
    sim_mount = mcfg if mcfg.type == "simulated" else SimulatedMountConfig(type="simulated")
    world = SimWorld(sim, config.site, start=clock.now() if state is None else start,
                     mount_park_ha_deg=sim_mount.park_ha_deg,
                     mount_park_dec_deg=sim_mount.park_dec_deg,
                     mount_slew_rate_deg_s=sim_mount.slew_rate_deg_s,
                     pointing_error_arcmin=sim_mount.pointing_error_arcmin, state=state)
    banks = {name: SimulatedRelayBank(name, bcfg, clock) for name, bcfg in config.relays.items()}
    world.wire(
        dome=MotorInput(banks[config.dome.relays], config.dome.cw_channel,
                        config.dome.ccw_channel),
        slit=MotorInput(banks[config.slit.relays], config.slit.open_channel,
                        config.slit.close_channel),
        cover=MotorInput(banks[config.cover.relays], config.cover.open_channel,
                         config.cover.close_channel),
    )
    # faults survive a restart: re-apply the ones that live in the relay banks
    for fault in list(world.state.faults):
        if fault.partition(":")[0] in ("relay-stuck", "relay-unplugged"):
            world.state.faults.remove(fault)
            world.inject_fault(fault)
    if config.encoder.type == "simulated-ir":
        # the optical encoder in the loop: the world rendered as the IR camera sees it -> model
        from tenmon.drivers.sim.ir_camera import simulated_ir_encoder

        encoder = simulated_ir_encoder(config.encoder, world, clock)
    else:
        encoder = SimulatedEncoder(config.encoder, config.slit, world, clock, seed=sim.seed)
    weather = (build_weather(config.weather, clock) if is_network(config.weather)
               else SimulatedWeather(world, clock))
    mount = (build_mount(mcfg, clock, site=config.site) if is_network(mcfg)
             else make_mount(mcfg, clock, world=world))
    switches = SimulatedLimitSwitches(world) if config.cover.limit_switches else None
    # the world's driver: ticked by the control loop around the observatory's tick (the
    # observatory's code is the same as at a site), its events recorded by the observatory
    from tenmon.drivers.sim.site import SimSite

    sim_site = SimSite(world, clock, world_path)
    obs = _assemble(config, clock, store, banks, encoder, weather, mount, switches,
                    world=world, sim=sim_site, mount_inline=True)
    sim_site.emit = obs.emit
    obs.status_hooks["sim"] = sim_site.status
    obs.stop_hooks.append(sim_site.close)
    return obs


def _build_site(config: TenmonConfig, store: Store, clock: Clock) -> Observatory:
    from tenmon.drivers.relays import make_relay_bank

    banks = {name: make_relay_bank(name, bcfg, clock) for name, bcfg in config.relays.items()}
    encoder = _site_encoder(config, clock)
    weather = _site_weather(config, clock)
    mount = _site_mount(config, clock)
    switches = None
    if config.cover.limit_switches is not None:
        from tenmon.drivers.gpio_inputs import LimitSwitches

        switches = LimitSwitches(config.cover.limit_switches)
    # a network mount's update() only reads its cache (INDI: slew timeouts, tracking limits;
    # Alpaca: nothing): it runs on the loop; an LX200 mount polls on its own thread
    return _assemble(config, clock, store, banks, encoder, weather, mount, switches,
                     mount_inline=is_network(config.mount))


def _site_encoder(config: TenmonConfig, clock: Clock):
    entry = registry.driver("encoder", config.encoder.type)
    if entry.simulated:
        raise DeviceNotFound("encoder", f"type {config.encoder.type!r} cannot run at a site")
    return entry.load()(config.encoder, clock)


def _site_weather(config: TenmonConfig, clock: Clock):
    if is_network(config.weather):  # alpaca, indi
        return build_weather(config.weather, clock)
    entry = registry.driver("weather", config.weather.type)
    if entry.simulated:
        raise DeviceNotFound("weather", f"type {config.weather.type!r} cannot run at a site")
    return entry.load()(config.weather, clock)


def _site_mount(config: TenmonConfig, clock: Clock):
    if is_network(config.mount):  # alpaca, indi: each runs its own worker thread
        return build_mount(config.mount, clock, site=config.site)
    if registry.driver("mount", config.mount.type).simulated:
        raise DeviceNotFound("mount", f"type {config.mount.type!r} cannot run at a site")
    from tenmon.daemon.mount_thread import ThreadedMount
    from tenmon.drivers.mount import make_mount

    return ThreadedMount(make_mount(config.mount, clock))


def _assemble(config, clock, store, banks, encoder, weather, mount, switches, *, world=None,
              sim=None, mount_inline: bool) -> Observatory:
    conf = config.safety.encoder_min_confidence
    dome = RelayDome(config.dome, banks[config.dome.relays], encoder, clock, min_confidence=conf)
    slit = RelaySlit(config.slit, banks[config.slit.relays], encoder, clock, min_confidence=conf)
    cover = RelayCover(config.cover, banks[config.cover.relays], clock, switches)
    obs = Observatory(config, clock, store, banks=banks, encoder=encoder, weather=weather,
                      mount=mount, dome=dome, slit=slit, cover=cover, world=world, sim=sim,
                      mount_inline=mount_inline)
    from tenmon.daemon.services.encoder_collect import install_encoder_collect

    install_encoder_collect(obs)  # labelled IR frames for `tenmon encoder adapt` ([encoder] collect)
    return obs


# ---------------------------------------------------------------------------- services


def install_centring(obs: Observatory, night_ops, *, settings=None, nayuta: Any = True,
                     locate_executor=None):
    """Build centring (and, with ``nayuta``, Nayuta following) and wire them into ``obs``.

    The services get what they use from here (the night operations' camera, frame service,
    sequencer and geometry, the storage watch, the solver's settings) and are wired in: tick
    hooks (after the night operations' one), stop hooks, the ``centring`` and ``nayuta`` status
    sections, listeners on the frame service, the API routes (``obs.api_routes``; ``build_app``
    serves them), and the centring job as a claim on the telescope that the sequencer respects.
    ``obs.centring`` and ``obs.nayuta`` record them for the API and tests; no service reads
    them. Idempotent.

    Args:
        obs: the observatory.
        night_ops: from ``install_night_operations`` (camera, frames, sequencer).
        settings: ``[centring]``; default the config's ``centring`` section, else defaults.
        nayuta: ``True``: Nayuta following with the config's ``nayuta`` section (or defaults);
            a ``NayutaDaemonSettings`` (or dict): with those; ``False``: not at all.
        locate_executor: for tests: where slit-viewer frames are located (default a thread).

    Returns:
        The :class:`~tenmon.daemon.services.centring.CentringService` (``.nayuta`` is the
        ``NayutaService`` or ``None``).

    Raises:
        ConfigError: a section does not validate, or there are no night operations.
    """
    from tenmon.config.sections import section
    from tenmon.daemon.services.centring import CentringService, centring_routes
    from tenmon.config.services import CentringServiceSettings
    from tenmon.core.errors import ConfigError

    existing = getattr(obs, "centring", None)
    if existing is not None:
        return existing
    if night_ops is None:
        raise ConfigError("centring needs the night operations (camera and frame service)")
    s = section(obs.config, "centring", CentringServiceSettings, settings)
    service = CentringService(obs, camera=night_ops.camera, frames=night_ops.frames,
                              geometry=night_ops.geometry,
                              centering=night_ops.frames.job.solver.centering,
                              sequencer=night_ops.sequencer, storage=obs.storage, settings=s)
    obs.centring = service
    night_ops.sequencer.telescope_claims.append(service)
    obs.tick_hooks.append(service.tick)
    obs.stop_hooks.append(service.stop_now)
    obs.status_hooks["centring"] = service.status
    night_ops.frames.listeners.append(service.on_frame)
    obs.api_routes.extend(centring_routes(service))
    service.nayuta = None
    if nayuta is not False:
        service.nayuta = _install_nayuta(obs, service, night_ops,
                                         settings=None if nayuta is True else nayuta,
                                         executor=locate_executor)
    return service


def _install_nayuta(obs: Observatory, centring, night_ops, *, settings=None, executor=None):
    """Nayuta following, wired in (tick and stop hooks, ``nayuta`` status, routes, a frame
    listener). ``settings``: ``NayutaDaemonSettings`` or a dict; default the config's ``nayuta``
    section, else defaults.

    Raises:
        ConfigError: the section does not validate, or the feed cannot be set up.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tenmon.config.sections import section
    from tenmon.daemon.services.nayuta import NayutaService, feed_problem, nayuta_routes
    from tenmon.config.services import NayutaDaemonSettings
    from tenmon.drivers.nayuta_feed import make_feed
    from tenmon.core.errors import ConfigError, DeviceError

    existing = getattr(obs, "nayuta", None)
    if existing is not None:
        return existing
    settings = section(obs.config, "nayuta", NayutaDaemonSettings, settings)
    own_pool = executor is None
    try:
        feed = None
        if feed_problem(settings, simulated=obs.world is not None) is None:
            feed = make_feed(settings.feed, clock=obs.clock)
        pool = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="nayuta-locate")
        service = NayutaService(obs, centring, solver=night_ops.frames.job.solver,
                                camera_settings=night_ops.camera_settings, settings=settings,
                                feed=feed, executor=pool, world=obs.world)
    except ValueError as exc:
        raise ConfigError(f"nayuta: {exc}") from None
    except DeviceError as exc:
        raise ConfigError(f"nayuta: {exc}") from None
    obs.nayuta = service
    obs.tick_hooks.append(service.tick)
    obs.stop_hooks.append(service.stop_now)
    if own_pool:  # after the service's stop hook, which ends a sync in progress
        obs.stop_hooks.append(lambda: pool.shutdown(wait=False, cancel_futures=True))
    obs.status_hooks["nayuta"] = service.status
    night_ops.frames.listeners.append(service.on_frame)
    obs.api_routes.extend(nayuta_routes(service))
    return service
