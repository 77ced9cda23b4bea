"""The simulated relay bank: the real interlock logic over a board that can be unplugged or weld.

:class:`SimulatedRelayBank` derives from the same base class as the hardware backends, so its
interlocks, maximum on-times, loss and reconnect behave exactly as at a site. The "board" is a
few booleans; the simulated world reads :meth:`SimulatedRelayBank.physical` to drive its motors,
and fault hooks let the world and tests break it:

* :meth:`~SimulatedRelayBank.unplug` / :meth:`~SimulatedRelayBank.replug`: the USB cable is
  pulled. Writes fail (the public API raises ``DeviceDisconnected``) and every relay drops out,
  as on a USB-powered board. After ``replug()`` the board is back, all off, but the old handle
  stays dead until the bank reopens it (``service()`` does, every ``reconnect_s``).
* :meth:`~SimulatedRelayBank.stick` / :meth:`~SimulatedRelayBank.unstick`: a welded contact: the
  physical state ignores commands (and power) until unstuck.

The board reads its contacts back (:meth:`~RelayBankBase.readback`) unless its config says
``readback = false``, which stands for the write-only boards (LCUS): then only the encoder can
tell a welded contact.
"""

from __future__ import annotations

import errno

from tenmon.core.clock import Clock
from tenmon.config.models import _RelayBankBase
from tenmon.drivers.relays.base import RelayBankBase
from tenmon.core.errors import DeviceNotFound

__all__ = ["SimulatedRelayBank"]


class SimulatedRelayBank(RelayBankBase):
    """A relay bank with no hardware; ``physical(channel)`` is what a motor would see.

    Args:
        name: the bank's name in the config.
        config: a :class:`~tenmon.config.models.SimulatedRelayConfig` (any relay config works).
        clock: the injected clock (the simulated world's).
    """

    def __init__(self, name: str, config: _RelayBankBase, clock: Clock, **kwargs):
        super().__init__(name, config, clock, **kwargs)
        self._plugged = True
        self._plug_generation = 0       # bumps on every unplug: old handles stay dead
        self._open_generation: int | None = None
        self._coils = {ch: False for ch in range(1, self.channels + 1)}
        self._stuck: dict[int, bool] = {}
        self.writes = 0                 # commands the board accepted (a wire-level count)

    # ------------------------------------------------------------------ backend hooks

    def _open(self) -> None:
        if not self._plugged:
            raise DeviceNotFound(self.device, "simulated relay board is unplugged")
        self._open_generation = self._plug_generation

    def _close(self) -> None:
        self._open_generation = None

    def _alive(self) -> None:
        if not self._plugged or self._open_generation != self._plug_generation:
            raise OSError(errno.EIO, "Input/output error (simulated relay board unplugged)")

    def _write(self, channel: int, on: bool) -> None:
        self._alive()
        self._coils[channel] = on
        self.writes += 1

    def _probe(self) -> None:
        self._alive()

    def _read_back(self) -> dict[int, bool] | None:
        if not getattr(self._config, "readback", True):
            return None
        self._alive()
        return {ch: self.physical(ch) for ch in range(1, self.channels + 1)}

    # ------------------------------------------------------------------ fault hooks

    @property
    def plugged(self) -> bool:
        """False between :meth:`unplug` and :meth:`replug`."""
        return self._plugged

    def unplug(self) -> None:
        """Pull the board's USB cable: writes fail and every (non-welded) relay drops out."""
        self._plugged = False
        self._plug_generation += 1
        for ch in self._coils:
            self._coils[ch] = False

    def replug(self) -> None:
        """Plug the board back in; it powers up with every relay off."""
        self._plugged = True

    def stick(self, channel: int, on: bool = True) -> None:
        """Weld ``channel``'s contact: it reads ``on`` whatever is commanded until unstuck.

        Raises:
            InterlockError: ``channel`` is outside ``1..channels``.
        """
        self._check_channel(channel)
        self._stuck[channel] = bool(on)

    def unstick(self, channel: int) -> None:
        """Free a welded contact: it follows its coil again."""
        self._check_channel(channel)
        self._stuck.pop(channel, None)

    def physical(self, channel: int) -> bool:
        """Whether ``channel``'s contact is closed now (what the motor sees).

        Raises:
            InterlockError: ``channel`` is outside ``1..channels``.
        """
        self._check_channel(channel)
        stuck = self._stuck.get(channel)
        return stuck if stuck is not None else self._coils[channel]
