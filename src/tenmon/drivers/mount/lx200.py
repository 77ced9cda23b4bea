"""LX200 mount driver: Meade LX200/Autostar and OnStep controllers over a serial line.

Commands used (Meade "Telescope Serial Command Protocol" 2010-10, the LX200 Classic manual, INDI's
``lx200driver.cpp`` and OnStep's ``Command.ino`` agree on these):

=====================  ========================================  ==================================
command                reply                                      use
=====================  ========================================  ==================================
``:GR#``               ``HH:MM.T#`` (low) / ``HH:MM:SS#`` (high)  telescope RA
``:GD#``               ``sDD*MM#`` / ``sDD*MM'SS#``               telescope Dec
``:GA#`` ``:GZ#``      ``sDD*MM'SS#`` / ``DDD*MM'SS#``            altitude / azimuth (park check)
``:U#``                nothing                                    toggle low/high precision
``:Sr HH:MM:SS#``      ``1`` valid / ``0`` invalid                target RA (``HH:MM.T`` if low)
``:Sd sDD*MM:SS#``     ``1`` / ``0``                              target Dec (``sDD*MM`` if low)
``:MS#``               ``0`` ok; ``1<msg>#`` below horizon;       slew to the target
                       ``2<msg>#``.. other refusal
``:CM#``               ``<text>#``                                sync on the target
``:Q#``                nothing                                    stop every motion
``:hP#``               nothing (Meade) / ``1``,``0`` (OnStep)     slew to the park position
``:D#``                bars while slewing, ``#`` when still       slewing detection
=====================  ========================================  ==================================

The ``*`` in Dec replies may be ASCII 223 (the handset's degree glyph) or ``:``; both are read.
What differs between controllers is gathered in two *dialects*:

- ``meade`` (LX200 Classic, Autostar, LX200GPS and most clones): tracking is the alignment mode
  (``:AP#`` polar = tracking, or ``:AA#`` if the mount was in alt-az mode; ``:AL#`` land = tracking
  off; read back with ACK ``0x06`` -> ``A``/``P``/``G``/``L``); ``:MS#`` refusals carry a text;
  ``:hP#`` answers nothing and there is no unpark command (``unpark()`` re-checks the link).
- ``onstep``: ``:Te#``/``:Td#`` tracking (reply ``1``/``0``), ``:hP#``/``:hR#`` park/unpark (reply
  ``1``/``0``), ``:GU#`` status flags (``n`` not tracking, ``N`` no goto, ``p``/``I``/``P``/``F``
  park state, ``f`` axis fault), ``:MS#`` refusals are a bare digit, ``:CM#`` answers ``N/A#`` or
  ``E<n>#``.

``dialect="auto"`` (default) asks ``:GVP#`` once at connect: ``On-Step`` selects ``onstep``; any
other answer, or none (a Classic LX200 does not know ``:GVP#``, which costs one ``timeout_s``),
selects ``meade``.

Precision: at connect the driver reads ``:GR#``; a low-precision reply is followed by ``:U#`` and
a second ``:GR#`` to confirm. Targets are then sent in the precision the mount answers in
(some controllers reject the other format).

Motions are non-blocking: ``goto()``/``park()`` start them; ``update()`` polls (3 round trips:
position, Dec, then ``:D#`` or ``:GU#``; ~31 bytes, ~32 ms of wire time at 9600 baud) and moves
``state`` on. A slew is finished when the mount stops reporting motion *and* it either reported
motion once or already sits on the target (a controller may not show distance bars at once after
``:MS#``). A slew or park longer than ``slew_timeout_s`` is stopped with ``:Q#`` and puts the
mount in ERROR. Faults are sticky: ERROR stays, with its message in ``error``, until a verb
(``goto``, ``sync``, ``abort``, ``park``, ``unpark``, ``set_tracking``) or ``connect()`` succeeds.

One re-entrant lock serialises every exchange on the port, so ``update()`` from the control loop's
thread and a verb from another thread never interleave their bytes.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import serial

from tenmon.core.astro import separation_deg
from tenmon.core.clock import Clock
from tenmon.config.models import Lx200MountConfig
from tenmon.drivers.base import MountState
from tenmon.core.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceNotFound,
    DeviceTimeout,
    ProtocolError,
)

__all__ = [
    "GOTO_DONE_TOLERANCE_DEG", "Lx200Mount", "MountRefused", "NotConnected",
    "PARK_TOLERANCE_DEG", "TargetBelowHorizon", "format_dec", "format_ra", "parse_az",
    "parse_dec", "parse_ra",
]

log = logging.getLogger(__name__)

DEVICE = "mount"
ACK = b"\x06"
MAX_REPLY = 64  # the longest LX200 reply used here is the Classic's 33-byte ':D#' bar string
#: A goto whose bars were never seen counts as done once the mount reports a position this close.
GOTO_DONE_TOLERANCE_DEG = 0.1
#: After parking, the mount's own alt/az must be this close to (park_alt_deg, park_az_deg).
PARK_TOLERANCE_DEG = 2.0

Dialect = Literal["auto", "meade", "onstep"]

_ONSTEP_GOTO_ERRORS = {
    "1": "target below the horizon limit",
    "2": "target above the overhead limit",
    "3": "controller in standby",
    "4": "mount is parked",
    "5": "a goto is already in progress",
    "6": "target outside the limits",
    "7": "hardware fault",
    "8": "already in motion",
    "9": "unspecified error",
}
_MEADE_GOTO_ERRORS = {
    "1": "object below the horizon",
    "2": "object below the 'higher' limit",
    "4": "object above the lower limit",
}


class NotConnected(DeviceError):
    """A verb was called on a mount that is not connected (never connected, or disconnected)."""


class MountRefused(DeviceError):
    """The mount answered, and refused the command.

    ``command`` is the LX200 command refused (e.g. ``":MS#"``), ``code`` the mount's reply code
    when it gave one (``"1"`` .. ``"9"``, ``"0"`` for a rejected coordinate), else ``None``.
    """

    def __init__(self, message: str, *, command: str, code: str | None = None):
        super().__init__(DEVICE, message)
        self.command = command
        self.code = code


class TargetBelowHorizon(MountRefused):
    """``:MS#`` answered ``1``: the target is below the mount's horizon limit."""


# --------------------------------------------------------------------------- sexagesimal


def _round_half_up(x: float) -> int:
    # Python's round() rounds halves to even; a mount display rounds them up.
    return math.floor(x + 0.5)


def format_ra(ra_deg: float, *, high_precision: bool = True) -> str:
    """Right ascension in degrees as the LX200 writes it.

    ``HH:MM:SS`` (high precision, rounded to the second of time) or ``HH:MM.T`` (low precision,
    tenths of a minute). Any finite angle is wrapped into [0, 360); a value that rounds up to 24 h
    wraps to ``00:00:00``. Raises ValueError for NaN or infinity.
    """
    if not math.isfinite(ra_deg):
        raise ValueError(f"RA must be finite, got {ra_deg!r}")
    hours = (ra_deg % 360.0) / 15.0
    if high_precision:
        total = _round_half_up(hours * 3600.0) % 86400
        h, rem = divmod(total, 3600)
        m, s = divmod(rem, 60)
        return f"{h:02d}:{m:02d}:{s:02d}"
    total = _round_half_up(hours * 600.0) % 14400
    h, rem = divmod(total, 600)
    m, t = divmod(rem, 10)
    return f"{h:02d}:{m:02d}.{t:d}"


def format_dec(dec_deg: float, *, high_precision: bool = True) -> str:
    """Declination in degrees as the LX200 writes it: ``sDD*MM:SS`` or ``sDD*MM`` (low precision).

    The sign comes from the value, not from the whole degrees, so -0.5 is ``-00*30:00``; a value
    that rounds to zero is written ``+00*00:00``. Raises ValueError outside [-90, 90] or non-finite.
    """
    if not math.isfinite(dec_deg) or abs(dec_deg) > 90.0:
        raise ValueError(f"Dec must be within [-90, 90] degrees, got {dec_deg!r}")
    if high_precision:
        total = _round_half_up(abs(dec_deg) * 3600.0)
        sign = "-" if dec_deg < 0 and total > 0 else "+"
        d, rem = divmod(total, 3600)
        m, s = divmod(rem, 60)
        return f"{sign}{d:02d}*{m:02d}:{s:02d}"
    total = _round_half_up(abs(dec_deg) * 60.0)
    sign = "-" if dec_deg < 0 and total > 0 else "+"
    d, m = divmod(total, 60)
    return f"{sign}{d:02d}*{m:02d}"


_RA_HIGH = re.compile(r"(\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)")
_RA_LOW = re.compile(r"(\d{2}):(\d{2})\.(\d)")
# Degrees separator: '*' in Meade's documents, 0xDF (the handset's degree glyph) on the wire,
# ':' on some clones; minutes separator "'" or ':'.
_DMS_HIGH = re.compile(r"([+-]?)(\d{2,3})[*\xdf:](\d{2})[':](\d{2}(?:\.\d+)?)")
_DMS_LOW = re.compile(r"([+-]?)(\d{2,3})[*\xdf:](\d{2})")


def parse_ra(text: str) -> tuple[float, bool]:
    """Parse an LX200 RA reply (without ``#``) into ``(degrees in [0, 360), high_precision)``.

    Accepts ``HH:MM:SS``, ``HH:MM:SS.ss`` (OnStep's extended form) and ``HH:MM.T``. A reply of
    exactly 24 h (a mount's own rounding) reads as 0. Raises ValueError for anything else.
    """
    s = text.strip()
    if m := _RA_HIGH.fullmatch(s):
        h, mi, sec = int(m[1]), int(m[2]), float(m[3])
        high = True
    elif m := _RA_LOW.fullmatch(s):
        h, mi, sec = int(m[1]), int(m[2]), int(m[3]) * 6.0
        high = False
    else:
        raise ValueError(f"not an LX200 RA: {text!r}")
    if mi >= 60 or sec >= 60.0 or h > 24:
        raise ValueError(f"RA field out of range: {text!r}")
    seconds = h * 3600 + mi * 60 + sec
    if seconds > 86400:
        raise ValueError(f"RA beyond 24 h: {text!r}")
    return (seconds / 240.0) % 360.0, high


def _parse_dms(text: str, what: str) -> tuple[str, int, int, float, bool]:
    s = text.strip()
    if m := _DMS_HIGH.fullmatch(s):
        sign, d, mi, sec, high = m[1], int(m[2]), int(m[3]), float(m[4]), True
    elif m := _DMS_LOW.fullmatch(s):
        sign, d, mi, sec, high = m[1], int(m[2]), int(m[3]), 0.0, False
    else:
        raise ValueError(f"not an LX200 {what}: {text!r}")
    if mi >= 60 or sec >= 60.0:
        raise ValueError(f"{what} field out of range: {text!r}")
    return sign, d, mi, sec, high


def parse_dec(text: str) -> tuple[float, bool]:
    """Parse an LX200 Dec (or altitude) reply into ``(degrees, high_precision)``.

    Accepts ``sDD*MM'SS``, ``sDD*MM`` with ``*``, ASCII 223 or ``:`` after the degrees; the sign
    is kept for a zero degree field (``-00*30'00`` is -0.5). Raises ValueError outside +-90.
    """
    sign, d, mi, sec, high = _parse_dms(text, "Dec")
    value = d + mi / 60.0 + sec / 3600.0
    if value > 90.0:
        raise ValueError(f"Dec beyond 90 degrees: {text!r}")
    return (-value if sign == "-" else value), high


def parse_az(text: str) -> float:
    """Parse an LX200 azimuth reply ``DDD*MM'SS`` or ``DDD*MM`` into degrees in [0, 360).

    Raises ValueError for a signed or out-of-range value.
    """
    sign, d, mi, sec, _ = _parse_dms(text, "azimuth")
    value = d + mi / 60.0 + sec / 3600.0
    if sign == "-" or value > 360.0:
        raise ValueError(f"azimuth out of range: {text!r}")
    return value % 360.0


def _parse_bars(text: str) -> bool:
    """``:D#`` reply -> slewing. Idle is an empty string (Autostar, OnStep) or only spaces (the
    Classic's 32-character field); any bar glyph means slewing. Letters or digits are not bars:
    the reply belongs to some other command."""
    if any(c.isalnum() for c in text):
        raise ValueError(f"not a distance-bar string: {text!r}")
    return any(c != " " for c in text)


def _show(cmd: bytes) -> str:
    return "<ACK>" if cmd == ACK else cmd.decode("latin-1")


# --------------------------------------------------------------------------- the driver


class Lx200Mount:
    """A mount on an LX200-protocol serial line (Meade or OnStep dialect).

    ``Lx200Mount(config, clock)`` opens ``config.port`` with :func:`serial.serial_for_url` at
    ``connect()`` (a device path such as ``/dev/ttyUSB0`` or any pyserial URL); ``port=`` injects
    an already-built serial-port object instead (tests pass a wire-level emulator). ``dialect``
    overrides ``config.dialect`` when that field exists, else ``"auto"``.

    Implements :class:`tenmon.drivers.base.Mount`. Coordinates are the mount's own (RA 0..360,
    Dec -90..90 degrees). Verbs block only for their serial round trips (each bounded by
    ``config.timeout_s``) and raise :class:`~tenmon.core.errors.DeviceError` subclasses:
    :class:`NotConnected`, :class:`MountRefused` (:class:`TargetBelowHorizon`),
    :class:`~tenmon.core.errors.DeviceTimeout`, :class:`~tenmon.core.errors.ProtocolError`,
    :class:`~tenmon.core.errors.DeviceDisconnected`. ``update()`` never raises for a device fault.
    """

    def __init__(self, config: Lx200MountConfig, clock: Clock, *, port: Any | None = None,
                 dialect: Dialect | None = None):
        want = dialect if dialect is not None else getattr(config, "dialect", "auto")
        if want not in ("auto", "meade", "onstep"):
            raise ValueError(f"LX200 dialect must be 'auto', 'meade' or 'onstep', not {want!r}")
        self.config = config
        self.clock = clock
        self.name = DEVICE
        self._wanted_dialect: str = want
        self._injected_port = port
        self._port: Any | None = None
        self._lock = threading.RLock()
        self._connected = False
        self._dialect: str | None = None
        self._fault: str | None = None
        self._derived = MountState.UNKNOWN
        self._ra: float | None = None
        self._dec: float | None = None
        self._polled_at: float | None = None
        self._tracking = False
        self._ra_high = True
        self._dec_high = True
        self._track_on_cmd = b":AP#"
        self._parked_meade = False
        # The motion being watched: "slew" (our goto), "park" (our park), "external" (hand paddle).
        self._motion: str | None = None
        self._motion_t0 = 0.0
        self._target: tuple[float, float] | None = None
        self._seen_moving = False

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> MountState:
        if self._fault is not None:
            return MountState.ERROR
        if not self._connected:
            return MountState.UNKNOWN
        return self._derived

    @property
    def ra_deg(self) -> float | None:
        return self._ra

    @property
    def dec_deg(self) -> float | None:
        return self._dec

    @property
    def tracking(self) -> bool:
        return self._tracking

    @property
    def position_age_s(self) -> float | None:
        """Seconds since the position was last read from the mount (``None``: never)."""
        at = self._polled_at
        return None if at is None or self._ra is None else self.clock.monotonic() - at

    @property
    def error(self) -> str | None:
        return self._fault

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def dialect(self) -> str | None:
        """``"meade"`` or ``"onstep"`` once connected (the detected or configured dialect)."""
        return self._dialect

    @property
    def high_precision(self) -> bool:
        """Whether the mount answers (and is sent) high-precision coordinates."""
        return self._ra_high and self._dec_high

    # ------------------------------------------------------------------ link

    def connect(self) -> None:
        """Open the serial link, settle precision and dialect, and read the position and status.

        Blocks for a handful of round trips (plus one ``timeout_s`` when auto-detecting a Classic
        LX200). Calling it again reopens the link (the way to recover after an unplug). Never
        moves the mount. Raises DeviceNotFound (port missing, nothing answering, or something
        that does not speak LX200), with the cause in the message.
        """
        with self._lock:
            self._close_port()
            self._connected = False
            self._fault = None
            self._motion = None
            self._parked_meade = False
            try:
                self._port = self._open_port()
                self._dialect = None
                self._handshake()
                self._connected = True
                self._derived = MountState.UNKNOWN
                self._poll()
            except DeviceError as exc:
                self._close_port()
                self._connected = False
                if isinstance(exc, DeviceNotFound):
                    err: DeviceError = exc
                else:
                    err = DeviceNotFound(
                        DEVICE, f"no LX200 mount answering on {self.config.port!r}: {exc.detail}")
                self._fault = str(err)
                if err is exc:
                    raise
                raise err from exc
            log.info("mount: connected on %s (%s dialect, %s precision): %s", self.config.port,
                     self._dialect, "high" if self.high_precision else "low", self.state.value)

    def disconnect(self) -> None:
        """Close the serial link. Sends nothing, so never moves (or stops) the mount.

        Never raises; ``state`` becomes UNKNOWN and the position None.
        """
        with self._lock:
            self._close_port()
            self._connected = False
            self._fault = None
            self._derived = MountState.UNKNOWN
            self._ra = self._dec = None
            self._motion = None
            self._target = None

    def update(self) -> None:
        """Poll position and status, finish or time out the current motion.

        Blocks for three serial round trips (five while a park is being checked). Never raises
        for a device fault: a timeout, garbage or a lost link puts the mount in ERROR with the
        message in ``error``. Does nothing when not connected.
        """
        with self._lock:
            if not self._connected:
                return
            try:
                self._poll()
            except DeviceError as exc:
                self._set_fault(exc.detail)
            self._check_motion_timeout()

    # ------------------------------------------------------------------ verbs

    def goto(self, ra_deg: float, dec_deg: float) -> None:
        """Start a slew to (RA, Dec) in degrees; returns once the mount accepted it.

        Sends ``:Sr``, ``:Sd`` then ``:MS#``. Raises ValueError for a Dec outside +-90 or a
        non-finite value; NotConnected; MountRefused when parked or parking (nothing is sent),
        when a coordinate is rejected, or when ``:MS#`` refuses (TargetBelowHorizon for code 1);
        DeviceTimeout / ProtocolError / DeviceDisconnected on a link fault (state ERROR too).
        """
        format_ra(ra_deg)
        format_dec(dec_deg)
        with self._lock:
            self._require_connected()
            if self._derived == MountState.PARKED:
                raise MountRefused("the mount is parked: unpark() before a goto", command="goto")
            if self._motion == "park":
                raise MountRefused("the mount is parking: abort() before a goto", command="goto")
            with self._faults_kept():
                self._set_target(ra_deg, dec_deg, "goto")
                self._send(b":MS#")
                code = self._read_char(b":MS#")
                if code != "0":
                    self._raise_goto_refusal(code, ra_deg, dec_deg)
            self._start_motion("slew", MountState.SLEWING)
            self._target = (ra_deg % 360.0, dec_deg)
            log.info("mount: slewing to RA %.4f Dec %+.4f", ra_deg % 360.0, dec_deg)

    def sync(self, ra_deg: float, dec_deg: float) -> None:
        """Tell the mount it now points at (RA, Dec) degrees (``:Sr``, ``:Sd``, ``:CM#``).

        Raises ValueError for bad coordinates; NotConnected; MountRefused while parked or
        moving (nothing is sent), or when the mount rejects the coordinates or the sync;
        DeviceTimeout / ProtocolError / DeviceDisconnected on a link fault.
        """
        format_ra(ra_deg)
        format_dec(dec_deg)
        with self._lock:
            self._require_connected()
            if self._derived == MountState.PARKED:
                raise MountRefused("the mount is parked: unpark() before a sync", command="sync")
            if self._motion is not None:
                raise MountRefused("the mount is moving: wait or abort() before a sync",
                                   command="sync")
            with self._faults_kept():
                self._set_target(ra_deg, dec_deg, "sync")
                reply = self._query(b":CM#")
                if self._dialect == "onstep" and re.fullmatch(r"E\d", reply):
                    msg = _ONSTEP_GOTO_ERRORS.get(reply[1], "unknown error")
                    raise MountRefused(f"sync refused (:CM# answered {reply!r}: {msg})",
                                       command=":CM#", code=reply[1])
                self._fault = None
                self._poll()
            log.info("mount: synced on RA %.4f Dec %+.4f", ra_deg % 360.0, dec_deg)

    def abort(self) -> None:
        """Stop every motion (``:Q#``, no reply) and stop watching it; clears a fault.

        Raises NotConnected, or DeviceDisconnected / DeviceTimeout if the command could not be
        written (then nothing is known about the mount).
        """
        with self._lock:
            self._require_connected()
            with self._faults_kept():
                self._send(b":Q#")
            self._motion = None
            self._target = None
            self._fault = None
            if self._derived != MountState.PARKED:
                self._derived = MountState.TRACKING if self._tracking else MountState.IDLE
            log.info("mount: abort sent")

    def park(self) -> None:
        """Start a slew to the mount's park position (``:hP#``); ``state`` goes PARKING, PARKED.

        On arrival the mount's own alt/az is compared with ``park_alt_deg``/``park_az_deg``; more
        than PARK_TOLERANCE_DEG away is an ERROR (the mount's park position and the site config
        disagree). Already parked: nothing is sent. Raises NotConnected; MountRefused (OnStep
        answered ``0``); DeviceTimeout / ProtocolError / DeviceDisconnected on a link fault.
        """
        with self._lock:
            self._require_connected()
            if self._derived == MountState.PARKED and self._fault is None:
                return
            with self._faults_kept():
                if self._dialect == "onstep":
                    self._expect_bool(b":hP#", "the mount refused to park")
                else:
                    self._send(b":hP#")
            self._start_motion("park", MountState.PARKING)
            log.info("mount: parking")

    def unpark(self) -> None:
        """Leave the parked state (OnStep ``:hR#``; Meade has no such command: the link is checked
        again and the driver stops reporting PARKED). Tracking stays as the mount reports it.

        Not parked: nothing is sent. Raises NotConnected; MountRefused; DeviceTimeout (a Meade
        handset that parked may need a power cycle) / ProtocolError / DeviceDisconnected.
        """
        with self._lock:
            self._require_connected()
            if self._derived != MountState.PARKED:
                return
            with self._faults_kept():
                if self._dialect == "onstep":
                    self._expect_bool(b":hR#", "the mount refused to unpark")
                else:
                    try:
                        self._handshake()
                    except DeviceTimeout as exc:
                        raise DeviceTimeout(DEVICE, f"{exc.detail}; a Meade handset that parked "
                                            "may answer again only after a power cycle") from exc
                    self._parked_meade = False
                self._fault = None
                self._derived = MountState.UNKNOWN
                self._poll()
            log.info("mount: unparked (%s)", self._derived.value)

    def set_tracking(self, on: bool) -> None:
        """Switch sidereal tracking on or off.

        OnStep: ``:Te#`` / ``:Td#`` (reply ``1``). Meade: ``:AP#`` (``:AA#`` on a mount found in
        alt-az mode) / ``:AL#`` (land mode), then ACK to read the mode back. Raises NotConnected;
        MountRefused when parked (nothing sent) or refused; DeviceTimeout / ProtocolError /
        DeviceDisconnected on a link fault.
        """
        with self._lock:
            self._require_connected()
            if self._derived == MountState.PARKED:
                raise MountRefused("the mount is parked: unpark() before changing tracking",
                                   command="set_tracking")
            with self._faults_kept():
                if self._dialect == "onstep":
                    cmd = b":Te#" if on else b":Td#"
                    self._expect_bool(cmd, f"the mount refused to switch tracking "
                                           f"{'on' if on else 'off'}")
                    self._tracking = on
                else:
                    self._send(self._track_on_cmd if on else b":AL#")
                    mode = self._read_alignment()
                    if (mode != "L") != on:
                        raise MountRefused(f"tracking still {'off' if on else 'on'} after the "
                                           f"command (alignment mode {mode!r})",
                                           command=_show(self._track_on_cmd if on else b":AL#"))
            self._fault = None
            if self._motion is None:
                self._derived = MountState.TRACKING if self._tracking else MountState.IDLE
            log.info("mount: tracking %s", "on" if on else "off")

    # ------------------------------------------------------------------ internals: link

    def _open_port(self) -> Any:
        cfg = self.config
        if self._injected_port is not None:
            port = self._injected_port
            try:
                if not port.is_open:
                    port.open()
                port.baudrate = cfg.baudrate
                port.timeout = cfg.timeout_s
                port.write_timeout = cfg.timeout_s
            except (serial.SerialException, OSError) as exc:
                raise DeviceNotFound(DEVICE,
                                     f"cannot open serial port {cfg.port!r}: {exc}") from exc
            return port
        try:
            return serial.serial_for_url(cfg.port, baudrate=cfg.baudrate, timeout=cfg.timeout_s,
                                         write_timeout=cfg.timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceNotFound(DEVICE, f"cannot open serial port {cfg.port!r}: {exc}") from exc

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is None:
            return
        try:
            port.close()
        except Exception as exc:  # noqa: BLE001 - closing a dead port must never raise
            log.debug("mount: closing the port failed: %s", exc)

    def _require_connected(self) -> None:
        if not self._connected or self._port is None:
            raise NotConnected(DEVICE, "not connected: call connect() first")

    def _link_error(self, exc: Exception, cmd: bytes) -> DeviceError:
        if isinstance(exc, serial.SerialTimeoutException):
            return DeviceTimeout(DEVICE, f"writing {_show(cmd)} to {self.config.port!r} blocked "
                                 f"longer than {self.config.timeout_s:g} s (mount.timeout_s)")
        return DeviceDisconnected(DEVICE, f"serial link on {self.config.port!r} lost during "
                                  f"{_show(cmd)}: {exc}")

    def _send(self, cmd: bytes) -> None:
        port = self._port
        if port is None:
            raise NotConnected(DEVICE, "not connected: call connect() first")
        log.debug("mount -> %r", cmd)
        try:
            port.reset_input_buffer()  # drop a late or unread reply so it cannot answer this one
            port.write(cmd)
        except (serial.SerialException, OSError) as exc:
            raise self._link_error(exc, cmd) from exc

    def _no_reply(self, cmd: bytes, got: bytes = b"") -> DeviceTimeout:
        what = f"reply {got!r} cut off" if got else "no reply"
        return DeviceTimeout(DEVICE, f"{what} to {_show(cmd)} within {self.config.timeout_s:g} s "
                             f"(mount.timeout_s) on {self.config.port!r}")

    def _read_char(self, cmd: bytes) -> str:
        try:
            data = self._port.read(1)
        except (serial.SerialException, OSError) as exc:
            raise self._link_error(exc, cmd) from exc
        log.debug("mount <- %r", data)
        if not data:
            raise self._no_reply(cmd)
        return data.decode("latin-1")

    def _read_hash(self, cmd: bytes) -> str:
        try:
            data = self._port.read_until(b"#", MAX_REPLY)
        except (serial.SerialException, OSError) as exc:
            raise self._link_error(exc, cmd) from exc
        log.debug("mount <- %r", data)
        if not data.endswith(b"#"):
            if len(data) >= MAX_REPLY:
                raise ProtocolError(DEVICE, f"reply to {_show(cmd)} has no '#' within {MAX_REPLY} "
                                    f"bytes: {data[:24]!r}...")
            raise self._no_reply(cmd, data)
        return data[:-1].decode("latin-1")

    def _query(self, cmd: bytes) -> str:
        self._send(cmd)
        return self._read_hash(cmd)

    def _parse(self, fn, text: str, cmd: bytes):
        try:
            return fn(text)
        except ValueError as exc:
            raise ProtocolError(DEVICE, f"garbled reply to {_show(cmd)}: {text!r} ({exc})") from exc

    def _expect_bool(self, cmd: bytes, refusal: str) -> None:
        self._send(cmd)
        r = self._read_char(cmd)
        if r == "0":
            raise MountRefused(f"{refusal} ({_show(cmd)} answered 0)", command=_show(cmd), code="0")
        if r != "1":
            raise ProtocolError(DEVICE, f"garbled reply to {_show(cmd)}: {r!r} (expected 1 or 0)")

    def _read_alignment(self) -> str:
        """ACK -> alignment mode; sets tracking (Meade dialect) and the tracking-on command."""
        self._send(ACK)
        mode = self._read_char(ACK)
        if mode not in ("A", "L", "P", "G"):
            raise ProtocolError(DEVICE, f"garbled reply to <ACK>: {mode!r} (expected A, L, P or G)")
        if mode in ("P", "G"):
            self._track_on_cmd = b":AP#"
        elif mode == "A":
            self._track_on_cmd = b":AA#"
        self._tracking = mode != "L"
        return mode

    def _handshake(self) -> None:
        """Precision (``:GR#``, ``:U#`` if low, ``:GR#`` again), ``:GD#``, dialect, tracking."""
        _, high = self._parse(parse_ra, self._query(b":GR#"), b":GR#")
        if not high:
            self._send(b":U#")
            _, high = self._parse(parse_ra, self._query(b":GR#"), b":GR#")
            if not high:
                log.warning("mount: still low precision after :U#; targets go in HH:MM.T/sDD*MM")
        self._ra_high = high
        _, self._dec_high = self._parse(parse_dec, self._query(b":GD#"), b":GD#")
        if self._dialect is None:
            self._dialect = self._detect_dialect()
        if self._dialect == "meade":
            self._read_alignment()

    def _detect_dialect(self) -> str:
        if self._wanted_dialect != "auto":
            return self._wanted_dialect
        try:
            product = self._query(b":GVP#")
        except DeviceTimeout:
            return "meade"  # a Classic LX200 leaves :GVP# unanswered
        name = product.lower().replace("-", "")
        return "onstep" if "onstep" in name else "meade"

    # ------------------------------------------------------------------ internals: commands

    @contextmanager
    def _faults_kept(self) -> Iterator[None]:
        """Re-raise link faults after recording them: a broken link is a fault of the device
        (state ERROR); a refusal is not (the mount is fine and said no)."""
        try:
            yield
        except (DeviceTimeout, ProtocolError, DeviceDisconnected) as exc:
            self._set_fault(exc.detail)
            raise

    def _set_fault(self, detail: str) -> None:
        msg = f"{DEVICE}: {detail}"
        if msg != self._fault:
            log.warning("%s", msg)
        self._fault = msg

    def _set_target(self, ra_deg: float, dec_deg: float, verb: str) -> None:
        for cmd_text, what in (
            (f":Sr {format_ra(ra_deg, high_precision=self._ra_high)}#", "RA"),
            (f":Sd {format_dec(dec_deg, high_precision=self._dec_high)}#", "Dec"),
        ):
            cmd = cmd_text.encode("latin-1")
            self._send(cmd)
            r = self._read_char(cmd)
            if r == "0":
                raise MountRefused(f"{verb}: the mount rejected the target {what} ({cmd_text})",
                                   command=cmd_text, code="0")
            if r != "1":
                raise ProtocolError(DEVICE, f"garbled reply to {cmd_text}: {r!r} "
                                    "(expected 1 or 0)")

    def _raise_goto_refusal(self, code: str, ra_deg: float, dec_deg: float) -> None:
        if not code.isdigit():
            raise ProtocolError(DEVICE, f"garbled reply to :MS#: {code!r} (expected a digit)")
        if self._dialect == "onstep":
            reason = _ONSTEP_GOTO_ERRORS.get(code, "unknown error")
        else:
            # Meade follows the code with a message ending in '#'.
            try:
                reason = self._read_hash(b":MS#").strip()
            except DeviceTimeout:
                reason = ""
            reason = reason or _MEADE_GOTO_ERRORS.get(code, "refused")
        cls = TargetBelowHorizon if code == "1" else MountRefused
        raise cls(f"goto RA {ra_deg % 360.0:.4f} Dec {dec_deg:+.4f} refused (:MS# code {code}: "
                  f"{reason})", command=":MS#", code=code)

    def _start_motion(self, kind: str, state: MountState) -> None:
        self._motion = kind
        self._motion_t0 = self.clock.monotonic()
        self._seen_moving = False
        self._target = None
        self._fault = None
        self._derived = state

    # ------------------------------------------------------------------ internals: status

    def _poll(self) -> None:
        ra, self._ra_high = self._parse(parse_ra, self._query(b":GR#"), b":GR#")
        dec, self._dec_high = self._parse(parse_dec, self._query(b":GD#"), b":GD#")
        self._ra, self._dec = ra, dec
        self._polled_at = self.clock.monotonic()
        if self._dialect == "onstep":
            slewing, park, axis_fault = self._parse(self._parse_status, self._query(b":GU#"),
                                                    b":GU#")
            if axis_fault:
                self._set_fault("the mount reports an axis fault (:GU# flag 'f')")
        else:
            slewing = self._parse(_parse_bars, self._query(b":D#"), b":D#")
            park = None
        self._advance(slewing, park)

    def _parse_status(self, text: str) -> tuple[bool, str, bool]:
        """OnStep ``:GU#`` flags -> (slewing, park state p/I/P/F, axis fault); sets tracking."""
        # Flags are letters, digits and (OnStep 4) PEC glyphs such as '/', '~', '^'.
        if not text or not all(" " < c < "\x7f" for c in text):
            raise ValueError(f"not an OnStep status: {text!r}")
        parks = [c for c in text if c in "pIPF"]
        if len(parks) != 1:
            raise ValueError(f"OnStep status without one park flag: {text!r}")
        self._tracking = "n" not in text
        return "N" not in text, parks[0], "f" in text

    def _read_altaz(self) -> tuple[float, float]:
        alt, _ = self._parse(parse_dec, self._query(b":GA#"), b":GA#")
        az = self._parse(parse_az, self._query(b":GZ#"), b":GZ#")
        return alt, az

    def _park_offset(self) -> tuple[float, float, float]:
        alt, az = self._read_altaz()
        sep = separation_deg(az, alt, self.config.park_az_deg, self.config.park_alt_deg)
        return alt, az, sep

    def _finish_park(self, offset: tuple[float, float, float] | None = None) -> None:
        alt, az, sep = offset if offset is not None else self._park_offset()
        self._motion = None
        self._tracking = False
        self._derived = MountState.PARKED
        if self._dialect == "meade":
            self._parked_meade = True
        if sep > PARK_TOLERANCE_DEG:
            self._set_fault(
                f"parked at alt {alt:.2f} az {az:.2f} deg, {sep:.1f} deg from the configured park "
                f"position (mount.park_alt_deg = {self.config.park_alt_deg:g}, "
                f"mount.park_az_deg = {self.config.park_az_deg:g})")
        else:
            log.info("mount: parked at alt %.2f az %.2f", alt, az)

    def _idle_state(self) -> MountState:
        return MountState.TRACKING if self._tracking else MountState.IDLE

    def _advance(self, slewing: bool, park: str | None) -> None:
        if park == "F":
            self._motion = None
            self._set_fault("the mount reports that parking failed (:GU# flag 'F')")
        if self._motion == "park":
            if slewing or park == "I":
                self._seen_moving = True
            if park is not None:  # OnStep says where the park stands
                if park == "P":
                    self._finish_park()
                elif park == "p" and not slewing and self._seen_moving:
                    self._motion = None
                    self._derived = self._idle_state()
                    self._set_fault("parking stopped before the park position was reached")
                else:
                    self._derived = MountState.PARKING
                return
            if not slewing:
                # Meade: bars gone. Done if they were seen, or if already at the park position.
                offset = self._park_offset()
                if self._seen_moving or offset[2] <= PARK_TOLERANCE_DEG:
                    self._finish_park(offset)
                    return
            self._derived = MountState.PARKING
            return
        if park == "P" or (park is None and self._parked_meade):
            if self._derived != MountState.PARKED:
                self._finish_park()
            return
        if park == "I":  # parking started from the handset
            self._start_motion("park", MountState.PARKING)
            self._seen_moving = True
            return
        if self._derived == MountState.PARKED:
            self._derived = MountState.UNKNOWN  # unparked from the handset
        if self._motion == "slew":
            if slewing:
                self._seen_moving = True
                self._derived = MountState.SLEWING
            elif self._seen_moving or self._at_target():
                self._motion = None
                self._derived = self._idle_state()
                log.info("mount: slew finished at RA %.4f Dec %+.4f", self._ra, self._dec)
            else:
                self._derived = MountState.SLEWING
            return
        if slewing:
            if self._motion is None:
                log.info("mount: slewing on its own (hand paddle?)")
                self._motion = "external"
                self._motion_t0 = self.clock.monotonic()
            self._derived = MountState.SLEWING
            return
        self._motion = None
        self._derived = self._idle_state()

    def _at_target(self) -> bool:
        if self._target is None or self._ra is None or self._dec is None:
            return False
        ra, dec = self._target
        return separation_deg(self._ra, self._dec, ra, dec) <= GOTO_DONE_TOLERANCE_DEG

    def _check_motion_timeout(self) -> None:
        if self._motion is None:
            return
        elapsed = self.clock.monotonic() - self._motion_t0
        limit = self.config.slew_timeout_s
        if elapsed <= limit:
            return
        kind = "park" if self._motion == "park" else "slew"
        self._motion = None
        self._target = None
        msg = (f"{kind} did not finish within {limit:g} s (mount.slew_timeout_s); "
               "sent :Q# to stop it")
        try:
            self._send(b":Q#")
        except DeviceError as exc:
            msg = f"{kind} did not finish within {limit:g} s (mount.slew_timeout_s); " \
                  f"the stop command :Q# failed too: {exc.detail}"
        self._derived = self._idle_state()
        self._set_fault(msg)
