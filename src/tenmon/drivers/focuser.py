"""The focuser and filter-wheel interfaces (issue 14): what the INDI and Alpaca backends implement.

Driven like every tenmon device: verbs return at once, the control loop calls ``update()`` every
tick and polls the properties; ``update()`` never raises for a device fault, it sets ``error``.
Positions are the device's own steps; filters are named as the wheel names them (the targets
file asks for a filter by name, the wheel maps it to a slot).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["FilterWheel", "Focuser"]


@runtime_checkable
class Focuser(Protocol):
    """An absolute focuser."""

    name: str

    def connect(self) -> None:
        """Open the link and read position and limits. Raises DeviceNotFound naming the server."""

    def disconnect(self) -> None:
        """Release the link; never moves the focuser."""

    def update(self) -> None:
        """Poll position, motion and temperature (non-blocking). Never raises for a device fault."""

    @property
    def position(self) -> int | None: ...

    @property
    def max_position(self) -> int: ...

    @property
    def moving(self) -> bool: ...

    @property
    def temperature_c(self) -> float | None:
        """The focuser's temperature probe, ``None`` where it has none (or a non-finite value)."""

    @property
    def error(self) -> str | None: ...

    def move_to(self, position: int) -> None:
        """Start an absolute move. Raises DeviceError for a position outside 0..max_position."""

    def halt(self) -> None:
        """Stop a move. Never raises."""


@runtime_checkable
class FilterWheel(Protocol):
    """A filter wheel whose slots have names."""

    name: str

    def connect(self) -> None:
        """Open the link and read the slot names. Raises DeviceNotFound naming the server."""

    def disconnect(self) -> None: ...

    def update(self) -> None:
        """Poll the position (non-blocking). Never raises for a device fault."""

    @property
    def names(self) -> list[str]:
        """Slot names in slot order (slot 0 first)."""

    @property
    def position(self) -> int | None:
        """The current slot, ``None`` while moving or unknown."""

    @property
    def moving(self) -> bool: ...

    @property
    def error(self) -> str | None: ...

    def select(self, filter_name: str) -> None:
        """Start moving to the slot named ``filter_name`` (case-insensitive). Raises DeviceError
        naming the known filters when there is no such filter."""
