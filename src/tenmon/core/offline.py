"""Offline rules applied once per process: nothing in tenmon may reach the network at run time."""

from __future__ import annotations

import os

_done = False


def configure() -> None:
    """Switch off every download and telemetry path of the libraries tenmon uses.

    Idempotent and cheap after the first call. Call it at entry points and at the top of modules
    that use astropy times/coordinates, ultralytics or onnxruntime.
    """
    global _done
    if _done:
        return
    # ultralytics: no hub, no asset downloads, no settings sync.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    # astropy: bundled Earth-rotation tables only. Once they are older than auto_max_age,
    # AltAz conversions would otherwise try to download and raise offline.
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    from astropy.utils.data import conf as data_conf

    data_conf.allow_internet = False
    _done = True
