"""LCUS serial relay board: byte-exact frames, pacing, port settings, loss, and a real-tty crash."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import textwrap
import time

import pytest
import serial
from fake_serial import FakeWire
from relay_rigs import lcus_rig

from tenmon.core.clock import FakeClock
from tenmon.config.models import LcusSerialRelayConfig
from tenmon.drivers.relays.lcus import LcusRelayBank, lcus_frame, parse_lcus_frames
from tenmon.core.errors import DeviceDisconnected, InterlockError

OFF_1_TO_4 = bytes.fromhex("A00100A1 A00200A2 A00300A3 A00400A4")


@pytest.mark.parametrize(("channel", "on", "hexframe"), [
    (1, True, "A0 01 01 A2"),   # the example printed with every LCUS board
    (1, False, "A0 01 00 A1"),
    (2, True, "A0 02 01 A3"),
    (4, False, "A0 04 00 A4"),
    (8, True, "A0 08 01 A9"),
    (0x5F, True, "A0 5F 01 00"),  # checksum wraps: 0xA0 + 0x5F + 1 = 0x100
    (0xFF, False, "A0 FF 00 9F"),
])
def test_frames_are_byte_exact(channel, on, hexframe):
    assert lcus_frame(channel, on) == bytes.fromhex(hexframe)
    assert parse_lcus_frames(bytes.fromhex(hexframe)) == [(channel, on)]


@pytest.mark.parametrize("channel", [0, 256, -1])
def test_frame_channel_range(channel):
    with pytest.raises(ValueError):
        lcus_frame(channel, True)


@pytest.mark.parametrize("bad", ["A0 01 01 A3", "A1 01 01 A3", "A0 01 02 A3", "A0 01 01"])
def test_parser_rejects_corrupt_frames(bad):
    with pytest.raises(ValueError):
        parse_lcus_frames(bytes.fromhex(bad))


def test_connect_set_disconnect_bytes_on_the_wire():
    r = lcus_rig(FakeClock(), channels=4, interlocks=[(1, 2)])
    wire: FakeWire = r.extra["wire"]
    r.bank.connect()
    assert wire.written == OFF_1_TO_4
    assert wire.settings == {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1,
                             "write_timeout": 1.0, "exclusive": True}
    r.bank.set(1, True)
    r.bank.set(1, False)
    r.bank.set(2, True)
    with pytest.raises(InterlockError):
        r.bank.set(1, True)  # refused: nothing goes out
    r.bank.disconnect()
    assert wire.written == OFF_1_TO_4 + bytes.fromhex("A00101A2 A00100A1 A00201A3") + OFF_1_TO_4


def test_frames_are_paced_by_the_frame_gap():
    clock = FakeClock()
    r = lcus_rig(clock, channels=4, frame_gap_s=0.05, paced=True)
    r.bank.connect()
    r.bank.set(3, True)
    clock.advance(2.0)
    r.bank.set(3, False)  # long after the last frame: sent at once
    times = [t for t, _ in r.extra["wire"].chunks]
    assert len(times) == 6
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= 0.05 - 1e-9 for g in gaps[:4]), gaps
    assert times[0] == 0.0
    assert times[5] == pytest.approx(times[4] + 2.0)


def test_default_gap_uses_real_sleep_between_frames():
    """With the real clock and ``time.sleep``, all-off of 4 channels takes >= 3 gaps."""
    from tenmon.core.clock import RealClock

    url = "fake://lcus-real-gap"
    FakeWire.register(url, RealClock())
    bank = LcusRelayBank("main", LcusSerialRelayConfig(type="lcus-serial", port=url, channels=4),
                         RealClock())
    t0 = time.monotonic()
    bank.connect()
    assert time.monotonic() - t0 >= 3 * bank.frame_gap_s
    bank.disconnect()


def test_stray_replies_are_discarded_by_service():
    r = lcus_rig(FakeClock())
    r.bank.connect()
    r.extra["wire"].feed(b"CH1: OFF\r\nCH2: OFF\r\n")
    r.bank.service()
    assert r.bank.connected
    assert r.extra["wire"]._inbox == bytearray()


def test_loop_url_works():
    cfg = LcusSerialRelayConfig(type="lcus-serial", port="loop://", channels=2)
    bank = LcusRelayBank("main", cfg, FakeClock(), frame_gap_s=0)
    bank.connect()
    bank.set(2, True)
    bank.service()  # the echoed frames are read and discarded
    assert bank.connected and bank.is_on(2)
    bank.disconnect()


def test_unplug_mid_motion_then_reconnect_sends_all_off():
    clock = FakeClock()
    r = lcus_rig(clock, channels=4, reconnect_s=2.0)
    wire: FakeWire = r.extra["wire"]
    r.bank.connect()
    r.bank.set(1, True)
    n = len(wire.written)
    wire.unplug()
    with pytest.raises(DeviceDisconnected, match="Input/output error"):
        r.bank.set(1, False)
    assert len(wire.written) == n  # nothing reached the dead port
    wire.replug()
    clock.advance(2.0)
    r.bank.service()
    assert r.bank.connected and wire.opens == 2
    assert wire.written[n:] == OFF_1_TO_4


def test_write_timeout_is_board_loss():
    clock = FakeClock()
    r = lcus_rig(clock)
    wire: FakeWire = r.extra["wire"]
    r.bank.connect()
    r.bank.set(1, True)
    wire.stalled = True
    with pytest.raises(DeviceDisconnected, match="Write timeout"):
        r.bank.set(3, True)
    assert r.bank.lost
    assert "relay 1 was on" in r.bank.events()[-1].message
    wire.stalled = False
    clock.advance(5.0)
    r.bank.service()
    assert r.bank.connected
    assert parse_lcus_frames(wire.written)[-4:] == [(1, False), (2, False), (3, False),
                                                    (4, False)]


CRASHING_CHILD = textwrap.dedent("""
    import sys
    from tenmon.core.clock import RealClock
    from tenmon.config.models import LcusSerialRelayConfig
    from tenmon.drivers.relays.lcus import LcusRelayBank

    cfg = LcusSerialRelayConfig(type="lcus-serial", port=sys.argv[1], channels=4,
                                interlocks=[(1, 2)])
    bank = LcusRelayBank("main", cfg, RealClock(), frame_gap_s=0.0)
    bank.connect()
    bank.set(1, True)
    bank.set(3, True)
    raise RuntimeError("a bug in the control loop")
""")


def test_crash_switches_relays_off_on_a_real_tty():
    """A process that dies of an uncaught exception still sends the off frames (atexit)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-c", CRASHING_CHILD, os.ttyname(slave)],
                              capture_output=True, text=True, timeout=60)
        received = b""
        while select.select([master], [], [], 0.2)[0]:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            received += chunk
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 1 and "a bug in the control loop" in proc.stderr
    assert parse_lcus_frames(received) == (
        [(ch, False) for ch in range(1, 5)] + [(1, True), (3, True)]
        + [(ch, False) for ch in range(1, 5)])


def test_serial_exception_is_an_oserror():
    # The base class's default board errors rely on this pyserial fact.
    assert issubclass(serial.SerialException, OSError)
    assert issubclass(serial.SerialTimeoutException, OSError)
