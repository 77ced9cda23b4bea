"""CH340 "LCUS" USB serial relay boards (LCUS-1/2/4/8 and look-alikes) through pyserial.

What the public documentation of these boards says, and what this driver does with it:

* Link: the CH340 USB-serial chip at 9600 baud, 8N1 (``baudrate`` in the config for the rare
  board set otherwise).
* Command frame, four bytes: ``A0 <channel> <state> <checksum>`` with channel 1..N, state ``00``
  off / ``01`` on, checksum ``(0xA0 + channel + state) & 0xFF``. Examples printed with every
  board: ``A0 01 01 A2`` (relay 1 on), ``A0 01 00 A1`` (relay 1 off). :func:`lcus_frame` builds
  them.
* Replies: none to commands. A status query (a single ``FF`` byte) is answered by some 4-channel
  boards with text lines (``CH1: OFF``), by the "PRO" variants with ``A0 0F 02 B1``, and by many
  boards not at all; a broadcast all-off ``A0 0F 00 AF`` is documented only for the "PRO" boards.
  So this driver never depends on a reply: it is write-only, ``all_off`` sends one off frame per
  channel, and stray input is read and discarded by the liveness probe.
* Pace: the board's microcontroller takes one frame at a time; users report frames sent back to
  back being dropped (10-100 ms gaps make them reliable). A dropped *off* frame would leave a
  motor running, so every frame waits ``frame_gap_s`` (default 0.05 s) after the previous one.
  Writes are bounded by ``write_timeout_s`` (a wedged USB link raises instead of hanging the
  control loop); the driver does not ``flush()`` (``tcdrain`` has no timeout).
* No initialisation string: the LCUS boards act on the first frame. (Boards that need ``50``/``51``
  handshakes, e.g. the ICStation "HL-340" ones, speak another protocol and are not supported.)
* Unplugging: the tty vanishes and any write or ioctl on the open port raises
  ``serial.SerialException``/``OSError``; the base class treats that as board loss (relays drop:
  these boards are powered by USB) and reopens the port every ``reconnect_s``. Use a stable
  ``/dev/serial/by-id/usb-1a86_...`` path: ``/dev/ttyUSB0`` may come back as ``ttyUSB1``.
* The port is opened ``exclusive`` so a second process cannot drive the same board.

The port is opened with ``serial.serial_for_url``, so ``loop://`` and registered URL handlers
(the tests' wire-level fake) work as well as device paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import serial

from tenmon.core.clock import Clock
from tenmon.config.models import LcusSerialRelayConfig
from tenmon.drivers.relays.base import RelayBankBase
from tenmon.core.errors import DeviceNotFound

try:  # tcdrain and friends raise termios.error, which is not an OSError
    import termios
    _TERMIOS_ERRORS: tuple[type[BaseException], ...] = (termios.error,)
except ImportError:  # pragma: no cover - Windows
    _TERMIOS_ERRORS = ()

__all__ = ["FRAME_START", "LcusRelayBank", "lcus_frame", "parse_lcus_frames"]

log = logging.getLogger(__name__)

FRAME_START = 0xA0


def lcus_frame(channel: int, on: bool) -> bytes:
    """The four-byte LCUS command switching ``channel`` (1..255) on or off.

    Raises:
        ValueError: ``channel`` is outside 1..255.
    """
    if not 1 <= channel <= 0xFF:
        raise ValueError(f"LCUS channel {channel} is outside 1..255")
    state = 1 if on else 0
    return bytes((FRAME_START, channel, state, (FRAME_START + channel + state) & 0xFF))


def parse_lcus_frames(data: bytes) -> list[tuple[int, bool]]:
    """Decode a stream of LCUS command frames into ``(channel, on)`` pairs, in order.

    Raises:
        ValueError: the stream is not a whole number of valid frames (bad start byte, state or
            checksum), so a test reading the wire cannot silently skip a corrupt frame.
    """
    if len(data) % 4:
        raise ValueError(f"{len(data)} bytes is not a whole number of 4-byte LCUS frames")
    out = []
    for i in range(0, len(data), 4):
        start, ch, state, check = data[i:i + 4]
        if start != FRAME_START or state not in (0, 1) or check != (start + ch + state) & 0xFF:
            raise ValueError(f"invalid LCUS frame at byte {i}: {data[i:i + 4].hex(' ')}")
        out.append((ch, bool(state)))
    return out


class LcusRelayBank(RelayBankBase):
    """An LCUS CH340 serial relay board (interlocks and limits from :class:`RelayBankBase`).

    Wiring: the board's relay *n* is channel *n* in the config; motors hang on the NO contacts,
    so a board that loses power stops them.

    Args:
        name: the bank's name in the config.
        config: its :class:`~tenmon.config.models.LcusSerialRelayConfig` (port, baudrate,
            channels, limits, interlocks, reconnect_s).
        clock: the injected clock; its ``monotonic()`` also paces frames.
        frame_gap_s: minimum seconds between the starts of two frames (see the module notes).
        write_timeout_s: a write that cannot complete in this time is a board failure.
        sleep: how to wait out the frame gap (``time.sleep``; tests pass ``FakeClock.advance``).
    """

    _board_errors = (OSError, *_TERMIOS_ERRORS)  # serial.SerialException is an OSError

    def __init__(self, name: str, config: LcusSerialRelayConfig, clock: Clock, *,
                 frame_gap_s: float = 0.05, write_timeout_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep, **kwargs):
        super().__init__(name, config, clock, **kwargs)
        if frame_gap_s < 0 or write_timeout_s <= 0:
            raise ValueError("frame_gap_s must be >= 0 and write_timeout_s > 0")
        self.port = config.port
        self.baudrate = config.baudrate
        self.frame_gap_s = frame_gap_s
        self.write_timeout_s = write_timeout_s
        self._sleep = sleep
        self._serial: serial.SerialBase | None = None
        self._last_frame_s: float | None = None

    def _open(self) -> None:
        try:
            self._serial = serial.serial_for_url(
                self.port, baudrate=self.baudrate, bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE, stopbits=serial.STOPBITS_ONE, timeout=0,
                write_timeout=self.write_timeout_s, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._serial = None
            raise DeviceNotFound(self.device, f"cannot open LCUS relay board at {self.port!r}: "
                                 f"{exc}") from exc
        try:
            self._serial.reset_input_buffer()
        except self._board_errors as exc:
            self._close()
            raise DeviceNotFound(self.device, f"LCUS relay board at {self.port!r} opened but "
                                 f"failed at once: {exc}") from exc
        self._last_frame_s = None

    def _close(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        try:
            port.close()
        except Exception as exc:  # noqa: BLE001 - closing a dead port must never raise
            log.debug("%s: closing %s: %s", self.device, self.port, exc)

    def _write(self, channel: int, on: bool) -> None:
        if self._serial is None:
            raise serial.SerialException(f"LCUS relay board at {self.port!r} is not open")
        if self._last_frame_s is not None and self.frame_gap_s > 0:
            wait = self._last_frame_s + self.frame_gap_s - self._clock.monotonic()
            if wait > 0:
                self._sleep(wait)
        frame = lcus_frame(channel, on)
        written = self._serial.write(frame)
        self._last_frame_s = self._clock.monotonic()
        if written is not None and written != len(frame):
            raise serial.SerialException(f"short write: {written} of {len(frame)} bytes")

    def _probe(self) -> None:
        if self._serial is None:
            raise serial.SerialException(f"LCUS relay board at {self.port!r} is not open")
        waiting = self._serial.in_waiting  # an ioctl: fails once the tty has vanished
        if waiting:
            stray = self._serial.read(waiting)
            log.debug("%s: discarded %d byte(s) from the board: %r", self.device, len(stray),
                      stray[:64])
