"""A wire-level LX200 mount emulator: a fake serial port that answers commands as a mount does.

``Lx200Emulator(clock, dialect="meade" | "onstep")`` has the pyserial calls a driver uses
(``open``, ``close``, ``is_open``, ``write``, ``read``, ``read_until``, ``reset_input_buffer``,
``timeout``...). Bytes written are parsed as LX200 commands (``:XX...#`` frames and the ACK byte
0x06) and answered the way the documented controllers answer: a Meade LX200/Autostar (degree glyph
0xDF, ``:MS#`` refusals with a message, no reply to ``:hP#``, ACK gives the alignment mode) or an
OnStep (``*``, ``:GU#`` flags, ``1``/``0`` replies to ``:hP#``, ``:Te#``...). Unknown commands
get no reply, as on a real LX200.

The mount has axes (hour angle, Dec) that move on the injected clock: slews run at
``slew_rate_deg_s`` per axis, tracking keeps RA fixed, no tracking lets RA drift with sidereal time.
The sky is computed from the clock's UTC time and the site (GMST formula, no astropy), so
``:MS#`` refuses targets below the horizon and ``:GA#``/``:GZ#`` give the real alt/az.

Faults to inject: ``garbage`` (every reply is junk), ``silent`` (nothing is answered),
``unplug()`` (every port call raises ``serial.SerialException``, as pyserial does when a USB
adapter is pulled) and ``replug()``, ``stall`` (slews never progress), ``reject_coordinates``
(``:Sr``/``:Sd`` answer ``0``), ``refuse_goto`` (``:MS#`` answers that code), ``override(cmd,
reply)`` (a fixed reply for one command).

Inspection: ``received`` (every byte written), ``commands`` (each parsed command), ``overlaps``
(a thread wrote while another thread's reply was still unread: the driver's lock failed).

``PtyLink(emulator)`` serves the emulator on a pseudo-terminal, so a real pyserial port (real
timeouts, termios flushes) can be tested against it.
"""

from __future__ import annotations

import math
import os
import re
import select
import threading
import time
import tty

import serial

SIDEREAL_DEG_PER_S = 360.98564736629 / 86400.0


def _wrap180(x: float) -> float:
    return (x + 180.0) % 360.0 - 180.0


class Lx200Emulator:
    """An LX200 mount behind a fake serial port. See the module docstring."""

    def __init__(self, clock, *, dialect: str = "meade", product: str | None = "Autostar",
                 high_precision: bool = False, can_toggle_precision: bool = True,
                 latitude_deg: float = 35.0, longitude_deg: float = 134.3,
                 ha_deg: float = 0.0, dec_deg: float = 0.0, tracking: bool = True,
                 slew_rate_deg_s: float = 3.0, park_alt_deg: float = 30.0,
                 park_az_deg: float = 180.0):
        if dialect not in ("meade", "onstep"):
            raise ValueError(dialect)
        self.clock = clock
        self.dialect = dialect
        self.product = "On-Step" if dialect == "onstep" else product
        self.deg_char = "*" if dialect == "onstep" else "\xdf"
        self.high_precision = high_precision
        self.can_toggle_precision = can_toggle_precision
        self.latitude_deg = latitude_deg
        self.longitude_deg = longitude_deg
        self.slew_rate_deg_s = slew_rate_deg_s
        self.park_alt_deg = park_alt_deg
        self.park_az_deg = park_az_deg
        self._ha = _wrap180(ha_deg)
        self._dec = dec_deg
        self.tracking = tracking
        self.mode = "P" if tracking else "L"  # Meade alignment mode, read with ACK
        self.slewing = False
        self.parking = False
        self.parked = False
        # ("radec", ra, dec) for a goto, ("hadec", ha, dec) for the park position
        self._goal: tuple[str, float, float] | None = None
        self.target_ra: float | None = None
        self.target_dec: float | None = None
        self._t = clock.monotonic()
        # faults
        self.garbage = False
        self.silent = False
        self.plugged = True
        self.stall = False
        self.reject_coordinates = False
        self.refuse_goto: str | None = None
        self._overrides: dict[bytes, bytes] = {}
        # serial-port face
        self.port = "emulator://lx200"
        self.baudrate = 9600
        self.timeout: float | None = None
        self.write_timeout: float | None = None
        self.is_open = False
        self.io_yield = False  # sleep a little in every port call (to provoke thread switches)
        # inspection
        self.received = bytearray()
        self.commands: list[bytes] = []
        self.unknown: list[bytes] = []
        self.overlaps = 0
        self._inbuf = bytearray()
        self._out = bytearray()
        self._owner: int | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ the sky

    @property
    def lst_deg(self) -> float:
        """Local sidereal time at the clock's now, degrees (GMST to ~0.1 s; plenty here)."""
        jd = 2440587.5 + self.clock.now().timestamp() / 86400.0
        gmst = 280.46061837 + 360.98564736629 * (jd - 2451545.0)
        return (gmst + self.longitude_deg) % 360.0

    def altaz(self, ha_deg: float, dec_deg: float) -> tuple[float, float]:
        """(alt, az) in degrees (az from north through east) of an hour angle and Dec."""
        phi, h, d = (math.radians(v) for v in (self.latitude_deg, ha_deg, dec_deg))
        sin_alt = math.sin(phi) * math.sin(d) + math.cos(phi) * math.cos(d) * math.cos(h)
        alt = math.degrees(math.asin(max(-1.0, min(1.0, sin_alt))))
        az = math.degrees(math.atan2(-math.cos(d) * math.sin(h),
                                     math.cos(phi) * math.sin(d)
                                     - math.sin(phi) * math.cos(d) * math.cos(h)))
        return alt, az % 360.0

    def hadec(self, alt_deg: float, az_deg: float) -> tuple[float, float]:
        """(hour angle, Dec) in degrees of an alt/az direction."""
        phi, a, z = (math.radians(v) for v in (self.latitude_deg, alt_deg, az_deg))
        sin_d = math.sin(phi) * math.sin(a) + math.cos(phi) * math.cos(a) * math.cos(z)
        dec = math.degrees(math.asin(max(-1.0, min(1.0, sin_d))))
        ha = math.degrees(math.atan2(-math.cos(a) * math.sin(z),
                                     math.cos(phi) * math.sin(a)
                                     - math.sin(phi) * math.cos(a) * math.cos(z)))
        return _wrap180(ha), dec

    def ha_of(self, ra_deg: float) -> float:
        return _wrap180(self.lst_deg - ra_deg)

    # ------------------------------------------------------------------ the mount's truth

    @property
    def ra_deg(self) -> float:
        with self._lock:
            self._advance()
            return (self.lst_deg - self._ha) % 360.0

    @property
    def dec_deg(self) -> float:
        with self._lock:
            self._advance()
            return self._dec

    def place(self, ra_deg: float, dec_deg: float) -> None:
        """Put the mount at (RA, Dec) now, not moving (for tests)."""
        with self._lock:
            self._advance()
            self._ha = self.ha_of(ra_deg)
            self._dec = dec_deg
            self.slewing = self.parking = False
            self._goal = None

    def start_slew(self, ra_deg: float, dec_deg: float) -> None:
        """Start a slew as the hand paddle would (the driver did not ask for it)."""
        with self._lock:
            self._advance()
            self._goal = ("radec", ra_deg % 360.0, dec_deg)
            self.slewing = True

    def _goal_hadec(self) -> tuple[float, float]:
        kind, a, dec = self._goal
        return (self.ha_of(a) if kind == "radec" else a), dec

    def _advance(self) -> None:
        now = self.clock.monotonic()
        dt, self._t = now - self._t, now
        if dt <= 0:
            return
        if self.slewing:
            if self.stall:
                return
            gha, gdec = self._goal_hadec()
            step = self.slew_rate_deg_s * dt
            dha, ddec = _wrap180(gha - self._ha), gdec - self._dec
            self._ha = _wrap180(self._ha + max(-step, min(step, dha)))
            self._dec += max(-step, min(step, ddec))
            if abs(dha) <= step and abs(ddec) <= step:
                self._ha, self._dec = gha, gdec
                self.slewing = False
                if self._goal[0] == "hadec":  # the park position
                    self.parking = False
                    self.parked = True
                    self.tracking = False
                    self.mode = "L"
                elif self.dialect == "onstep":
                    self.tracking = True
                self._goal = None
        elif self.tracking:
            self._ha = _wrap180(self._ha + SIDEREAL_DEG_PER_S * dt)

    # ------------------------------------------------------------------ faults and inspection

    def unplug(self) -> None:
        self.plugged = False

    def replug(self) -> None:
        self.plugged = True

    def override(self, cmd: bytes, reply: bytes | None) -> None:
        """Answer ``cmd`` with ``reply`` from now on (``None`` removes the override)."""
        if reply is None:
            self._overrides.pop(cmd, None)
        else:
            self._overrides[cmd] = reply

    def clear_log(self) -> None:
        self.received.clear()
        self.commands.clear()

    # ------------------------------------------------------------------ serial-port face

    def _check(self) -> None:
        if not self.plugged:
            raise serial.SerialException(
                "read failed: device reports readiness to read but returned no data "
                "(device disconnected or multiple access on port?)")
        if not self.is_open:
            raise serial.PortNotOpenError()

    def _yield(self) -> None:
        if self.io_yield:
            time.sleep(0.0002)

    def _note_writer(self) -> None:
        me = threading.get_ident()
        if self._out and self._owner is not None and self._owner != me:
            self.overlaps += 1

    def open(self) -> None:
        if not self.plugged:
            raise serial.SerialException(f"could not open port {self.port}: no such device")
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    @property
    def in_waiting(self) -> int:
        return len(self._out)

    def flush(self) -> None:
        self._check()

    def reset_input_buffer(self) -> None:
        with self._lock:
            self._check()
            self._note_writer()
            self._out.clear()
            self._owner = None
        self._yield()

    def write(self, data: bytes) -> int:
        with self._lock:
            self._check()
            self._note_writer()
            data = bytes(data)
            self.received += data
            self._inbuf += data
            self._process()
        self._yield()
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self._yield()
        with self._lock:
            self._check()
            n = min(size, len(self._out))
            return self._take(n)

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        self._yield()
        with self._lock:
            self._check()
            i = self._out.find(expected)
            n = i + len(expected) if i >= 0 else len(self._out)
            if size is not None:
                n = min(n, size)
            return self._take(n)

    def _take(self, n: int) -> bytes:
        data = bytes(self._out[:n])
        del self._out[:n]
        if not self._out:
            self._owner = None
        return data

    # ------------------------------------------------------------------ the protocol

    def _process(self) -> None:
        while self._inbuf:
            if self._inbuf[0] == 0x06:
                del self._inbuf[0]
                self._handle(b"\x06")
                continue
            start = self._inbuf.find(b":")
            if start < 0:
                self._inbuf.clear()  # junk between frames is ignored, as a mount does
                return
            end = self._inbuf.find(b"#", start)
            if end < 0:
                del self._inbuf[:start]
                return  # wait for the rest of the frame
            cmd = bytes(self._inbuf[start:end + 1])
            del self._inbuf[:end + 1]
            self._handle(cmd)

    def _handle(self, cmd: bytes) -> None:
        self.commands.append(cmd)
        if self.silent:
            return
        self._advance()
        reply = self._overrides.get(cmd)
        if reply is None:
            reply = self._respond(cmd.decode("latin-1"))
        if reply is None:
            return
        if self.garbage:
            reply = b"\xfe\x15zq#"
        self._out += reply
        self._owner = threading.get_ident()

    def _fmt_ra(self, ra_deg: float) -> str:
        hours = (ra_deg % 360.0) / 15.0
        if self.high_precision:
            s = int(round(hours * 3600.0)) % 86400
            return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
        t = int(round(hours * 600.0)) % 14400
        return f"{t // 600:02d}:{t // 10 % 60:02d}.{t % 10}"

    def _fmt_dms(self, value: float, *, signed: bool, width: int, wrap: int | None = None) -> str:
        sign = "-" if value < 0 else "+"
        if self.high_precision:
            s = int(round(abs(value) * 3600.0))
            if wrap:
                s %= wrap * 3600
            body = f"{s // 3600:0{width}d}{self.deg_char}{s // 60 % 60:02d}'{s % 60:02d}"
        else:
            m = int(round(abs(value) * 60.0))
            if wrap:
                m %= wrap * 60
            body = f"{m // 60:0{width}d}{self.deg_char}{m % 60:02d}"
        return (sign if signed else "") + body

    def _parse_ra(self, text: str) -> float | None:
        pat = r" ?(\d{2}):(\d{2}):(\d{2})" if self.high_precision else r" ?(\d{2}):(\d{2})\.(\d)"
        m = re.fullmatch(pat, text)
        if not m:
            return None
        h, mi, x = int(m[1]), int(m[2]), int(m[3])
        sec = x if self.high_precision else x * 6
        if h > 23 or mi > 59 or sec > 59:
            return None
        return (h * 3600 + mi * 60 + sec) / 240.0

    def _parse_dec(self, text: str) -> float | None:
        pat = (r" ?([+-])(\d{2})[*\xdf:](\d{2}):(\d{2})" if self.high_precision
               else r" ?([+-])(\d{2})[*\xdf](\d{2})")
        m = re.fullmatch(pat, text)
        if not m:
            return None
        d, mi = int(m[2]), int(m[3])
        sec = int(m[4]) if self.high_precision else 0
        value = d + mi / 60.0 + sec / 3600.0
        if mi > 59 or sec > 59 or value > 90:
            return None
        return -value if m[1] == "-" else value

    def _respond(self, c: str) -> bytes | None:  # noqa: C901 - one branch per LX200 command
        onstep = self.dialect == "onstep"
        if c == "\x06":
            return (("G" if onstep else self.mode)).encode()
        if c == ":GR#":
            return (self._fmt_ra((self.lst_deg - self._ha) % 360.0) + "#").encode("latin-1")
        if c == ":GD#":
            return (self._fmt_dms(self._dec, signed=True, width=2) + "#").encode("latin-1")
        if c in (":GA#", ":GZ#"):
            alt, az = self.altaz(self._ha, self._dec)
            text = (self._fmt_dms(alt, signed=True, width=2) if c == ":GA#"
                    else self._fmt_dms(az, signed=False, width=3, wrap=360))
            return (text + "#").encode("latin-1")
        if c == ":U#":
            if self.can_toggle_precision:
                self.high_precision = not self.high_precision
            return None
        if c == ":GVP#":
            return None if self.product is None else (self.product + "#").encode("latin-1")
        if c.startswith(":Sr") or c.startswith(":Sd"):
            value = (self._parse_ra if c[2] == "r" else self._parse_dec)(c[3:-1])
            if value is None or self.reject_coordinates:
                return b"0"
            if c[2] == "r":
                self.target_ra = value
            else:
                self.target_dec = value
            return b"1"
        if c == ":MS#":
            return self._goto()
        if c == ":CM#":
            if onstep and (self.slewing or self.parked):
                return b"E5#" if self.slewing else b"E4#"
            if self.target_ra is None or self.target_dec is None:
                return b"E9#" if onstep else b"No object#"
            self._ha, self._dec = self.ha_of(self.target_ra), self.target_dec
            return b"N/A#" if onstep else b" M31 EX GAL MAG 3.5 SZ178.0'#"
        if c == ":Q#":
            self.slewing = self.parking = False
            self._goal = None
            return None
        if c == ":hP#":
            if not self.parked:
                self._goal = ("hadec", *self.hadec(self.park_alt_deg, self.park_az_deg))
                self.slewing = self.parking = True
            return b"1" if onstep else None
        if c == ":D#":
            return b"\x7f#" if self.slewing else b"#"
        if onstep:
            if c == ":hR#":
                if not self.parked:
                    return b"0"
                self.parked = False
                self.tracking = True
                return b"1"
            if c == ":GU#":
                flags = ("n" if (self.slewing or not self.tracking) else "")
                flags += "" if self.slewing else "N"
                flags += "I" if self.parking else ("P" if self.parked else "p")
                return (flags + "E#").encode()
            if c in (":Te#", ":Td#"):
                if self.parked:
                    return b"0"
                self.tracking = c == ":Te#"
                return b"1"
        else:
            if c in (":AP#", ":AA#", ":AL#"):
                self.mode = c[2]
                self.tracking = self.mode != "L"
                return None
        self.unknown.append(c.encode("latin-1"))
        return None

    def _goto(self) -> bytes:
        onstep = self.dialect == "onstep"
        if self.parked:
            return b"4" if onstep else b"2Telescope is parked#"
        if self.target_ra is None or self.target_dec is None:
            return b"9" if onstep else b"2No object#"
        ha = self.ha_of(self.target_ra)
        alt, _ = self.altaz(ha, self.target_dec)
        if alt < 0:
            return b"1" if onstep else b"1Object Below Horizon #"
        if self.refuse_goto is not None:
            code = self.refuse_goto
            return code.encode() if onstep else f"{code}Object Below Higher#".encode()
        self._goal = ("radec", self.target_ra, self.target_dec)
        self.slewing = True
        return b"0"


class PtyLink:
    """Serve an emulator on a pseudo-terminal; ``path`` is the device a real pyserial opens.

    A thread moves bytes between the pty master and the emulator. ``close()`` stops it.
    """

    def __init__(self, emulator: Lx200Emulator):
        self.emulator = emulator
        emulator.open()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lx200-pty", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.02)
            if not ready:
                continue
            try:
                data = os.read(self._master, 256)
            except OSError:
                continue
            try:
                self.emulator.write(data)
                out = self.emulator.read(4096)
            except serial.SerialException:
                continue  # unplugged: the bytes are lost, the other side times out
            if out:
                os.write(self._master, out)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
