"""The last good configuration, saved by the daemon at every successful start, for the tools that
must work when the config file does not: ``relays_off`` (the relay banks) and ``tenmon alerts
send`` (the alert targets).

A config edited badly and a daemon that then fails to start is exactly when the relays must still
go off and a person must still be told, so the daemon writes, atomically (temporary file, fsync,
rename, fsync of the directory):

* ``DATA_DIR/device-map.json``: every relay bank's config (type, port, pins, serial, channels);
* ``DATA_DIR/alerts.json`` (mode 0600: apprise URLs may hold passwords): the ``[alerts]`` section
  and the site's name.

Both carry the time they were written and the config file they came from.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from tenmon.core.atomicfile import atomic_write_text
from tenmon.config.models import AlertsConfig, PathsConfig, RelayBankConfig, TenmonConfig
from tenmon.core.errors import ConfigError

DEVICE_MAP = "device-map.json"
ALERTS_FILE = "alerts.json"
VERSION = 1

_BANKS = TypeAdapter(dict[str, RelayBankConfig])


def default_data_dir() -> Path:
    """systemd's ``$STATE_DIRECTORY`` (set for every command of a unit with ``StateDirectory=``),
    else the default data directory."""
    state = os.environ.get("STATE_DIRECTORY", "")
    if state:
        return Path(state.split(":")[0])
    return PathsConfig().data_dir


def atomic_write(path: Path, text: str, mode: int = 0o640) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, whole, even
    after a power loss (file and directory flushed)."""
    atomic_write_text(path, text, mode=mode, fsync=True)


def _header(source: str | None) -> dict[str, Any]:
    return {"version": VERSION, "written_utc": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "config": source}


def save_device_map(config: TenmonConfig, data_dir: Path | str, source: str | None = None) -> Path:
    """Write the relay banks of ``config`` to ``DATA_DIR/device-map.json``; returns the path."""
    path = Path(data_dir) / DEVICE_MAP
    doc = {**_header(source), "site": config.site.name,
           "relays": {name: bank.model_dump(mode="json") for name, bank in config.relays.items()}}
    atomic_write(path, json.dumps(doc, indent=1) + "\n", 0o640)
    return path


def load_device_map(data_dir: Path | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(banks, header)`` from ``DATA_DIR/device-map.json``: ``banks`` maps a bank's name to its
    validated config model; ``header`` holds ``written_utc``, ``config`` and ``site``.

    Raises:
        ConfigError: no such file, unreadable, or not a valid device map.
    """
    path = Path(data_dir) / DEVICE_MAP
    doc = _read(path)
    try:
        banks = _BANKS.validate_python(doc.get("relays"))
    except ValidationError as exc:
        raise ConfigError(f"{path}: not a valid device map: {exc}") from None
    return banks, {k: doc.get(k) for k in ("written_utc", "config", "site")}


def save_alerts(config: TenmonConfig, data_dir: Path | str, source: str | None = None) -> Path:
    """Write the ``[alerts]`` section (and the site's name) to ``DATA_DIR/alerts.json``, 0600."""
    path = Path(data_dir) / ALERTS_FILE
    doc = {**_header(source), "site": config.site.name,
           "alerts": config.alerts.model_dump(mode="json")}
    atomic_write(path, json.dumps(doc, indent=1) + "\n", 0o600)
    return path


def load_alerts(data_dir: Path | str) -> tuple[AlertsConfig, dict[str, Any]]:
    """``(alerts, header)`` from ``DATA_DIR/alerts.json``.

    Raises:
        ConfigError: no such file, unreadable, or not valid.
    """
    path = Path(data_dir) / ALERTS_FILE
    doc = _read(path)
    try:
        alerts = AlertsConfig.model_validate(doc.get("alerts"))
    except ValidationError as exc:
        raise ConfigError(f"{path}: not a valid alerts file: {exc}") from None
    return alerts, {k: doc.get(k) for k in ("written_utc", "config", "site")}


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (the daemon writes it at every successful "
                          "start)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise ConfigError(f"{path}: not a version-{VERSION} file of tenmon")
    return doc
