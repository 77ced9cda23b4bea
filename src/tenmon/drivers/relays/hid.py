"""dcttech-style USB HID relay boards ("USBRelay1/2/4/8", V-USB, 16c0:05df) through hidapi.

The protocol, as the boards' vendor tools and the maintained open-source drivers (``usbrelay``,
``hidusb-relay-cmd``) use it; every message is a HID *feature* report:

* set: ``00 FF <relay> 00 00 00 00 00 00`` switches relay 1..8 on, ``00 FD <relay> ...`` off,
  ``00 FC ...`` all off (``00 FE`` all on, never sent here);
* get: feature report 1 (8 bytes) holds the board's 5-character serial in bytes 0..4 and the
  relay states as a bit mask in byte 7 (bit 0 = relay 1).

Unlike the LCUS serial boards these report their state, so every write is read back and checked:
a board that does not do what it was told is treated as lost (all off, reconnect later), and
``service()`` compares the board's mask with the commanded state every tick.

Library: cython-hidapi (PyPI ``hidapi``, import ``hid``), maintained by the Trezor project,
with Linux hidraw and libusb back ends; no extra C library is needed with its wheels. On Linux
give the daemon's user access with a udev rule, e.g.
``SUBSYSTEM=="hidraw", ATTRS{idVendor}=="16c0", ATTRS{idProduct}=="05df", MODE="0660",
GROUP="plugdev"``. Several boards share the VID:PID; ``serial`` in the config picks one (the
serial is the one in the feature report, settable with the vendor tool, not a USB string).
"""

from __future__ import annotations

import logging
import re
from types import ModuleType

from tenmon.core.clock import Clock
from tenmon.config.models import HidRelayConfig
from tenmon.drivers.relays.base import RelayBankBase
from tenmon.core.errors import DeviceNotFound

__all__ = [
    "CMD_ALL_OFF", "CMD_OFF", "CMD_ON", "HidRelayBank", "PRODUCT_ID", "REPORT_LEN", "VENDOR_ID",
    "import_hidapi", "set_report", "state_from_report",
]

log = logging.getLogger(__name__)

VENDOR_ID = 0x16C0
PRODUCT_ID = 0x05DF
CMD_ON = 0xFF
CMD_OFF = 0xFD
CMD_ALL_OFF = 0xFC
REPORT_LEN = 9  # report id 0 + 8 data bytes
STATE_REPORT_ID = 1
STATE_REPORT_LEN = 8
_PRODUCT_RE = re.compile(r"^USBRelay(\d)$")


def import_hidapi() -> ModuleType:
    """Import cython-hidapi's ``hid`` module.

    Raises:
        ImportError: hidapi is not installed, or the ``hid`` found is another package (the
            ctypes ``hid`` package has the same import name and a different API).
    """
    import hid  # noqa: PLC0415 - optional dependency

    if not hasattr(hid, "device") or not hasattr(hid, "enumerate"):
        raise ImportError(f"the 'hid' module at {getattr(hid, '__file__', '?')} is not "
                          "cython-hidapi (PyPI 'hidapi'); uninstall the 'hid' package")
    return hid


def set_report(command: int, relay: int = 0) -> list[int]:
    """The 9-byte feature report (report id 0 first) carrying ``command`` for ``relay``."""
    return [0x00, command, relay] + [0x00] * (REPORT_LEN - 3)


def state_from_report(report: list[int] | bytes) -> tuple[str, int]:
    """``(serial, relay bit mask)`` from feature report 1.

    Raises:
        ValueError: the report is shorter than 8 bytes.
    """
    if len(report) < STATE_REPORT_LEN:
        raise ValueError(f"relay state report has {len(report)} bytes, expected "
                         f"{STATE_REPORT_LEN}")
    serial = bytes(report[0:5]).split(b"\0", 1)[0].decode("ascii", "replace")
    return serial, report[7]


class HidRelayBank(RelayBankBase):
    """A dcttech USB HID relay board (interlocks and limits from :class:`RelayBankBase`).

    Args:
        name: the bank's name in the config.
        config: its :class:`~tenmon.config.models.HidRelayConfig` (serial, channels, limits).
        clock: the injected clock.
        hid_module: the ``hid`` module (cython-hidapi) or a test double with the same
            ``enumerate`` / ``device`` API; imported when omitted.

    Raises:
        ImportError: ``hid_module`` is omitted and hidapi is not installed
            (:func:`~tenmon.drivers.relays.make_relay_bank` turns this into DeviceNotFound).
    """

    # cython-hidapi raises OSError on I/O failures and ValueError on a closed handle.
    _board_errors = (OSError, ValueError)

    def __init__(self, name: str, config: HidRelayConfig, clock: Clock, *,
                 hid_module: ModuleType | object | None = None, **kwargs):
        super().__init__(name, config, clock, **kwargs)
        self._hid = hid_module if hid_module is not None else import_hidapi()
        self.serial = config.serial
        self.board_serial: str | None = None
        self.board_relays: int | None = None
        self._dev = None

    # ------------------------------------------------------------------ backend hooks

    def _open(self) -> None:
        self._close()
        try:
            infos = [i for i in self._hid.enumerate(VENDOR_ID, PRODUCT_ID)
                     if _PRODUCT_RE.match(i.get("product_string") or "")]
        except OSError as exc:
            raise DeviceNotFound(self.device, f"cannot list USB HID devices: {exc}") from exc
        seen = []
        for info in infos:
            dev = self._hid.device()
            try:
                dev.open_path(info["path"])
                serial, _ = state_from_report(dev.get_feature_report(STATE_REPORT_ID,
                                                                     STATE_REPORT_LEN))
            except (OSError, ValueError) as exc:
                log.debug("%s: cannot open %r: %s", self.device, info.get("path"), exc)
                _close_quietly(dev)
                continue
            seen.append(serial)
            if self.serial is not None and serial != self.serial:
                _close_quietly(dev)
                continue
            relays = int(_PRODUCT_RE.match(info["product_string"]).group(1))
            if relays < self.channels:
                _close_quietly(dev)
                raise DeviceNotFound(self.device, f"USB relay board {serial!r} has {relays} "
                                     f"relays but the config asks for {self.channels} channels")
            self._dev, self.board_serial, self.board_relays = dev, serial, relays
            return
        want = f"serial {self.serial!r}" if self.serial else "any serial"
        found = f"found {', '.join(repr(s) for s in seen)}" if seen else "found none"
        raise DeviceNotFound(self.device, f"no USB HID relay board (16c0:05df, USBRelayN) with "
                             f"{want}: {found} (check the cable and hidraw permissions)")

    def _close(self) -> None:
        dev, self._dev = self._dev, None
        if dev is not None:
            _close_quietly(dev)

    def _send(self, report: list[int]) -> None:
        if self._dev is None:
            raise ValueError("USB relay board is not open")
        n = self._dev.send_feature_report(report)
        if n is not None and n < 0:
            raise OSError(f"send_feature_report returned {n}")

    def _mask(self) -> int:
        if self._dev is None:
            raise ValueError("USB relay board is not open")
        return state_from_report(self._dev.get_feature_report(STATE_REPORT_ID,
                                                              STATE_REPORT_LEN))[1]

    def _write(self, channel: int, on: bool) -> None:
        self._send(set_report(CMD_ON if on else CMD_OFF, channel))
        mask = self._mask()
        if bool(mask & (1 << (channel - 1))) != on:
            raise OSError(f"relay {channel} reads {'off' if on else 'on'} after switching it "
                          f"{'on' if on else 'off'} (state mask {mask:#04x})")

    def _write_all_off(self) -> None:
        self._send(set_report(CMD_ALL_OFF))
        mask = self._mask() & self._board_mask()
        if mask:
            raise OSError(f"relays still on after all-off (state mask {mask:#04x})")

    def _probe(self) -> None:
        mask = self._mask() & self._board_mask()
        want = sum(1 << (ch - 1) for ch, on in self._commanded.items() if on)
        if mask != want:
            raise OSError(f"board state mask {mask:#04x} differs from the commanded "
                          f"{want:#04x} (reset, or driven by another program?)")

    def _board_mask(self) -> int:
        return (1 << (self.board_relays or self.channels)) - 1


def _close_quietly(dev) -> None:
    try:
        dev.close()
    except Exception as exc:  # noqa: BLE001 - closing a dead handle must never raise
        log.debug("closing HID device: %s", exc)
