"""Building network devices by ``type``: the one registry from a config section to a backend.

The composition root (``compose.py``) and night operations (``night.py``) ask here for the
mount, the weather sensor, the camera, the focuser and the filter wheel when their section names
a standard server (``type = "alpaca"`` or ``type = "indi"``). Nothing here falls back to a
simulator: a backend that is not installed, or a server that is not there, is a
:class:`~tenmon.core.errors.DeviceNotFound` naming the section and the address.

Each backend package offers the same five builders, each returning a device that is not yet
connected (the caller calls ``connect()``, which raises DeviceNotFound naming the server)::

    make_mount(config, clock[, site])                               -> Mount
    make_weather(config, clock)                                     -> WeatherSensor
    make_camera(config, settings, frames_dir, clock, header_context) -> Camera
    make_focuser(config, clock)                                     -> Focuser
    make_filter_wheel(config, clock)                                -> FilterWheel

``tenmon.drivers.alpaca`` (alpyca) implements them for ``alpaca``; ``tenmon.drivers.indi``
for ``indi``. ``header_context`` is a :data:`~tenmon.drivers.camera_fits.HeaderContext`: the
cards the camera cannot know itself (mount pointing, focus position, filter, site), read at the
start of each exposure.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path
from typing import Any

from tenmon.core.clock import Clock
from tenmon.drivers.camera_fits import FrameSite, HeaderContext
from tenmon.drivers.registry import BACKENDS  # type -> package (re-exported)
from tenmon.core.errors import DeviceNotFound

log = logging.getLogger(__name__)


def is_network(section: Any) -> bool:
    """Whether a config section names a standard server's device (alpaca, indi)."""
    return getattr(section, "type", None) in BACKENDS


def _builder(kind: str, section: Any, fn: str):
    t = getattr(section, "type", None)
    package = BACKENDS.get(t)
    if package is None:
        raise DeviceNotFound(kind, f"type {t!r} is not a network device type "
                             f"({', '.join(BACKENDS)})")
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise DeviceNotFound(kind, f"type = {t!r} needs {package}, which cannot be imported "
                             f"here ({exc}); install tenmon with its {t} backend") from None
    builder = getattr(module, fn, None)
    if builder is None:
        raise DeviceNotFound(kind, f"the {t} backend has no {kind} ({package}.{fn})")
    return builder


def build_mount(section: Any, clock: Clock, site: Any = None):
    """The ``[mount]`` of a network type (not connected). ``site`` (the ``[site]`` section) goes
    to a backend whose ``make_mount`` takes it (INDI: the limits' horizon, sent to the mount)."""
    builder = _builder("mount", section, "make_mount")
    if site is not None and "site" in inspect.signature(builder).parameters:
        return builder(section, clock, site=site)
    return builder(section, clock)


def build_weather(section: Any, clock: Clock):
    """The ``[weather]`` of a network type (not connected)."""
    return _builder("weather", section, "make_weather")(section, clock)


def build_camera(section: Any, settings: Any, frames_dir: Path, clock: Clock,
                 header_context: HeaderContext):
    """The ``[ccd]`` of a network type (not connected); frames go to ``frames_dir``."""
    return _builder("camera", section, "make_camera")(section, settings, Path(frames_dir), clock,
                                                      header_context)


def build_focuser(section: Any, clock: Clock):
    """The ``[focuser]`` (not connected)."""
    return _builder("focuser", section, "make_focuser")(section, clock)


def build_filter_wheel(section: Any, clock: Clock):
    """The ``[filter_wheel]`` (not connected)."""
    return _builder("filter_wheel", section, "make_filter_wheel")(section, clock)


def header_context_for(config: Any, mount: Any, focuser: Any = None, wheel: Any = None,
                       pixel_scale_arcsec: float | None = None) -> HeaderContext:
    """The cards a camera cannot know itself, from the devices' cached properties (cheap, never
    blocks, never raises): site, the mount's pointing, focus position and temperature, filter."""
    site = FrameSite(name=config.site.name, latitude_deg=config.site.latitude_deg,
                     longitude_deg=config.site.longitude_deg, elevation_m=config.site.elevation_m)

    def context() -> dict[str, Any]:
        out: dict[str, Any] = {"site": site}
        if pixel_scale_arcsec is not None:
            out["pixel_scale_arcsec"] = pixel_scale_arcsec
        try:
            out["ra_deg"], out["dec_deg"] = mount.ra_deg, mount.dec_deg
        except Exception as exc:  # noqa: BLE001 - a header card must never stop an exposure
            log.debug("no pointing for the header: %s", exc)
        if focuser is not None:
            try:
                out["focus_position"] = focuser.position
                out["focus_temp_c"] = focuser.temperature_c
            except Exception as exc:  # noqa: BLE001
                log.debug("no focus position for the header: %s", exc)
        if wheel is not None:
            try:
                pos, names = wheel.position, wheel.names
                if pos is not None and 0 <= pos < len(names):
                    out["filter_name"] = names[pos]
            except Exception as exc:  # noqa: BLE001
                log.debug("no filter for the header: %s", exc)
        return out

    return context


__all__ = ["BACKENDS", "build_camera", "build_filter_wheel", "build_focuser", "build_mount",
           "build_weather", "header_context_for", "is_network"]
