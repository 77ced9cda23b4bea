"""Device interfaces: one Protocol per device kind, the state enums, and small shared readings.

Motions are non-blocking: a verb starts the motion and returns; the caller polls ``state``.
Every device has ``disconnect()``, which releases it and never moves hardware.
Drivers that need regular attention (closed loops, timeouts, reconnects) have ``update()``,
called by the daemon's control loop every tick; ``update()`` never blocks for long and never
raises for a device fault: it puts the device in its ``error`` state with a message instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from tenmon.vision.slit.reading import SlitReading

__all__ = [
    "CoverState", "DomeState", "Encoder", "Mount", "MountState", "RelayBank", "ShutterState",
    "SlitReading", "WeatherReading", "WeatherSensor",
]


class DomeState(str, enum.Enum):
    IDLE = "idle"
    SLEWING = "slewing"
    COASTING = "coasting"
    ERROR = "error"
    UNKNOWN = "unknown"


class ShutterState(str, enum.Enum):
    """Slit (and cover) states; ``ascom`` gives ASCOM's ShutterStatus number."""

    OPEN = "open"
    CLOSED = "closed"
    PARTIAL = "partial"
    OPENING = "opening"
    CLOSING = "closing"
    ERROR = "error"
    UNKNOWN = "unknown"

    @property
    def ascom(self) -> int:
        return {"open": 0, "closed": 1, "opening": 2, "closing": 3}.get(self.value, 4)


CoverState = ShutterState


class MountState(str, enum.Enum):
    IDLE = "idle"          # not moving, not tracking, not parked
    TRACKING = "tracking"
    SLEWING = "slewing"
    PARKING = "parking"
    PARKED = "parked"
    ERROR = "error"
    UNKNOWN = "unknown"


@runtime_checkable
class RelayBank(Protocol):
    """A bank of relays, channels numbered from 1.

    Interlocks live here: two channels of an interlock pair are never energized together
    (``set`` raises :class:`~tenmon.core.errors.InterlockError` rather than do it), every energized
    relay is switched off once on longer than its maximum on-time (checked on every call and by
    ``service()``), and every relay is switched off on ``connect()``, ``disconnect()`` and when
    the process exits (atexit / crash handler).
    """

    name: str
    channels: int

    @property
    def connected(self) -> bool: ...

    def connect(self) -> None:
        """Open the board and switch every relay off. Raises DeviceNotFound."""

    def disconnect(self) -> None:
        """Switch every relay off (best effort) and release the board. Never raises."""

    def set(self, channel: int, on: bool) -> None:
        """Energize or release one relay. Raises InterlockError, DeviceDisconnected."""

    def is_on(self, channel: int) -> bool:
        """What the driver last commanded for ``channel``."""

    def all_off(self) -> None:
        """Switch every relay off. Raises DeviceDisconnected if the board is gone."""

    def service(self) -> None:
        """Enforce maximum on-times and try to reconnect a lost board. Call every tick."""


@runtime_checkable
class Encoder(Protocol):
    """The dome/slit position source (simulated, or the IR camera + slit detector)."""

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def update(self) -> None:
        """Take a new reading if one is due (non-blocking)."""

    def reading(self) -> SlitReading:
        """The latest reading; ``state == "unknown"`` with low confidence when lost."""


@runtime_checkable
class Mount(Protocol):
    """A telescope mount. Coordinates are the mount's own idea of where it points, in degrees
    (RA 0..360, Dec -90..90). Motions are non-blocking; poll ``state``."""

    def connect(self) -> None:
        """Open the link and read the position. Raises DeviceNotFound."""

    def disconnect(self) -> None:
        """Release the link; never moves the mount."""

    def update(self) -> None:
        """Poll position and status (may block for a few serial round-trips). Never raises for a
        device fault: sets ``state = ERROR`` and ``error``."""

    @property
    def state(self) -> MountState: ...

    @property
    def ra_deg(self) -> float | None: ...

    @property
    def dec_deg(self) -> float | None: ...

    @property
    def tracking(self) -> bool: ...

    @property
    def error(self) -> str | None: ...

    def goto(self, ra_deg: float, dec_deg: float) -> None:
        """Start a slew. Raises DeviceError if the mount refuses (below horizon, limits)."""

    def sync(self, ra_deg: float, dec_deg: float) -> None: ...

    def abort(self) -> None: ...

    def park(self) -> None: ...

    def unpark(self) -> None: ...

    def set_tracking(self, on: bool) -> None: ...


@dataclass(frozen=True)
class WeatherReading:
    """Weather at one time. ``None`` fields are not measured by this sensor.

    ``time`` is when the sensor last *really* reported (a heartbeat, a fresh message), not when
    the daemon last looked. ``stale_after_s``: the sensor's own bound on how long its report
    holds (a heartbeat's timeout); the safety decision takes the shorter of it and
    ``safety.weather_stale_s``.

    ``alert``: the sensor itself says it is unsafe (an Alpaca SafetyMonitor's ``IsSafe`` false,
    an INDI weather station's alert state), with its reason; ``None`` when it raises none (or
    has no such judgement). Any alert is unsafe, whatever the other quantities say.
    """

    time: datetime
    rain: bool | None
    wind_ms: float | None = None
    humidity_pct: float | None = None
    stale_after_s: float | None = None
    alert: str | None = None


@runtime_checkable
class WeatherSensor(Protocol):
    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def update(self) -> None: ...

    def reading(self) -> WeatherReading | None:
        """The latest reading, ``None`` when there has never been one."""
