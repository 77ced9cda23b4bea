"""ASCOM Alpaca devices through alpyca (the ASCOM Initiative's client): camera, mount, focuser,
filter wheel, weather (ObservingConditions + SafetyMonitor), and LAN discovery.

``type = "alpaca"`` in a device's section builds these (``daemon/device_factory.py``). Each
device runs its HTTP calls on a worker thread of its own, every call bounded by ``timeout_s``
(``_wire.py``, ``_worker.py``); the control loop only reads snapshots and queues commands.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["make_camera", "make_filter_wheel", "make_focuser", "make_mount", "make_weather"]


def make_mount(config, clock):
    from tenmon.drivers.alpaca.mount import AlpacaMount

    return AlpacaMount(config, clock)


def make_weather(config, clock):
    from tenmon.drivers.alpaca.weather import AlpacaWeather

    return AlpacaWeather(config, clock)


def make_camera(config, settings, frames_dir: Path, clock, header_context):
    from tenmon.drivers.alpaca.camera import AlpacaCamera

    return AlpacaCamera(config, settings, frames_dir, clock, header_context)


def make_focuser(config, clock):
    from tenmon.drivers.alpaca.focuser import AlpacaFocuser

    return AlpacaFocuser(config, clock)


def make_filter_wheel(config, clock):
    from tenmon.drivers.alpaca.focuser import AlpacaFilterWheel

    return AlpacaFilterWheel(config, clock)
