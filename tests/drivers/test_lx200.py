"""The LX200 mount driver against a wire-level emulator: bytes written, replies parsed, faults."""

from __future__ import annotations

import threading
import time

import pytest
from lx200_emulator import Lx200Emulator, PtyLink

from tenmon.config.models import Lx200MountConfig, SimulatedMountConfig
from tenmon.drivers.base import Mount, MountState
from tenmon.drivers.mount import make_mount
from tenmon.drivers.mount.lx200 import (
    Lx200Mount,
    MountRefused,
    NotConnected,
    TargetBelowHorizon,
    format_dec,
    format_ra,
    parse_az,
    parse_dec,
    parse_ra,
)
from tenmon.core.errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceNotFound,
    DeviceTimeout,
    ProtocolError,
)

M1 = (83.6331, 22.0145)  # the Crab: 05:34:31.94 +22:00:52.2, high in the east at the fake time


def config(**kw) -> Lx200MountConfig:
    base = dict(type="lx200", port="emulator://lx200", timeout_s=0.2, slew_timeout_s=120.0,
                park_alt_deg=30.0, park_az_deg=180.0)
    base.update(kw)
    return Lx200MountConfig(**base)


def emulator(clock, dialect="meade", **kw) -> Lx200Emulator:
    emu = Lx200Emulator(clock, dialect=dialect, **kw)
    emu.place(emu.lst_deg, 0.0)  # on the meridian, 55 deg up
    return emu


def connected(emu, clock, **kw) -> Lx200Mount:
    mount = Lx200Mount(config(**kw), clock, port=emu)
    mount.connect()
    emu.clear_log()
    return mount


def run_until(mount, clock, states, *, step=1.0, limit=600.0) -> float:
    """Advance the fake clock and update until the state is one of ``states``; elapsed seconds."""
    t = 0.0
    while t < limit:
        clock.advance(step)
        t += step
        mount.update()
        if mount.state in states:
            return t
    raise AssertionError(f"still {mount.state} after {limit} s (error: {mount.error})")


@pytest.fixture
def meade(fake_clock):
    return emulator(fake_clock, "meade")


@pytest.fixture
def onstep(fake_clock):
    return emulator(fake_clock, "onstep", high_precision=True)


# --------------------------------------------------------------------------- sexagesimal


@pytest.mark.parametrize("ra, high, low", [
    (0.0, "00:00:00", "00:00.0"),
    (M1[0], "05:34:32", "05:34.5"),
    (359.9996, "00:00:00", "00:00.0"),      # 23:59:59.9 rounds up and wraps to 0 h
    (359.99, "23:59:58", "00:00.0"),         # 23:59:57.6: 59.96 min rounds up and wraps
    (359.98, "23:59:55", "23:59.9"),         # 23:59:55.2
    (-15.0, "23:00:00", "23:00.0"),          # negative RA wraps
    (375.0, "01:00:00", "01:00.0"),
    (187.625, "12:30:30", "12:30.5"),
])
def test_format_ra(ra, high, low):
    assert format_ra(ra) == high
    assert format_ra(ra, high_precision=False) == low


@pytest.mark.parametrize("dec, high, low", [
    (M1[1], "+22*00:52", "+22*01"),
    (-0.5, "-00*30:00", "-00*30"),           # the negative-zero-degrees case
    (-0.0001, "+00*00:00", "+00*00"),        # rounds to zero: no minus sign
    (10.99999, "+11*00:00", "+11*00"),       # seconds carry into minutes and degrees
    (90.0, "+90*00:00", "+90*00"),
    (-90.0, "-90*00:00", "-90*00"),
    (-45.25, "-45*15:00", "-45*15"),
])
def test_format_dec(dec, high, low):
    assert format_dec(dec) == high
    assert format_dec(dec, high_precision=False) == low


@pytest.mark.parametrize("bad", [90.001, -91.0, float("nan"), float("inf")])
def test_format_dec_rejects_impossible(bad):
    with pytest.raises(ValueError):
        format_dec(bad)


@pytest.mark.parametrize("text, deg, high", [
    ("05:34:32", 83.633333, True),
    ("05:34.5", 83.625, False),
    ("23:59:59", 359.995833, True),
    ("23:59:59.9", 359.999583, True),        # OnStep's extended precision
    ("23:59.9", 359.975, False),
    ("00:00:00", 0.0, True),
    ("24:00:00", 0.0, True),                 # a mount's own rounding to 24 h wraps
])
def test_parse_ra(text, deg, high):
    value, h = parse_ra(text)
    assert value == pytest.approx(deg, abs=1e-6)
    assert h is high


@pytest.mark.parametrize("text, deg, high", [
    ("+22*00'52", 22.014444, True),
    ("-00*30'00", -0.5, True),
    ("-00\xdf30'00", -0.5, True),            # the handset's degree glyph, ASCII 223
    ("-00*30", -0.5, False),
    ("+45:59:45", 45.995833, True),          # colons, as some clones send
    ("-89\xdf59", -89.983333, False),
    ("+90*00'00", 90.0, True),
])
def test_parse_dec(text, deg, high):
    value, h = parse_dec(text)
    assert value == pytest.approx(deg, abs=1e-6)
    assert h is high


@pytest.mark.parametrize("bad", ["", "12:3", "25:00:00", "12:60:00", "12:30:60", "AB:CD:EF",
                                 ":GR", "12:30.55", "\xfe\x15zq"])
def test_parse_ra_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse_ra(bad)


@pytest.mark.parametrize("bad", ["", "+91*00'00", "+45*60'00", "+45*00'60", "45", "+4*00",
                                 "N/A", "+45#00"])
def test_parse_dec_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse_dec(bad)


def test_parse_az():
    assert parse_az("180\xdf30'00") == pytest.approx(180.5)
    assert parse_az("359*59") == pytest.approx(359.983333, abs=1e-6)
    assert parse_az("360*00'00") == 0.0
    for bad in ("-10*00", "361*00", "abc"):
        with pytest.raises(ValueError):
            parse_az(bad)


# --------------------------------------------------------------------------- connect


def test_connect_meade_low_precision_switches_to_high(meade, fake_clock):
    mount = Lx200Mount(config(), fake_clock, port=meade)
    assert isinstance(mount, Mount)
    assert mount.state == MountState.UNKNOWN and mount.ra_deg is None
    mount.connect()
    assert bytes(meade.received) == b":GR#:U#:GR#:GD#:GVP#\x06:GR#:GD#:D#"
    assert mount.dialect == "meade" and mount.high_precision and meade.high_precision
    assert mount.state == MountState.TRACKING and mount.tracking
    assert mount.ra_deg == pytest.approx(meade.ra_deg, abs=0.005)
    assert mount.dec_deg == pytest.approx(0.0, abs=1e-3)


def test_connect_onstep_detected(onstep, fake_clock):
    mount = Lx200Mount(config(), fake_clock, port=onstep)
    mount.connect()
    assert bytes(onstep.received) == b":GR#:GD#:GVP#:GR#:GD#:GU#"
    assert mount.dialect == "onstep" and mount.state == MountState.TRACKING


def test_classic_lx200_without_gvp_is_meade(fake_clock):
    emu = emulator(fake_clock, "meade", product=None)  # a Classic leaves :GVP# unanswered
    mount = connected(emu, fake_clock)
    assert mount.dialect == "meade" and mount.state == MountState.TRACKING


def test_explicit_dialect_skips_the_probe(onstep, fake_clock):
    mount = Lx200Mount(config(), fake_clock, port=onstep, dialect="onstep")
    mount.connect()
    assert b":GVP#" not in onstep.commands
    with pytest.raises(ValueError):
        Lx200Mount(config(), fake_clock, dialect="celestron")


def test_mount_stuck_in_low_precision_gets_low_precision_targets(fake_clock):
    emu = emulator(fake_clock, "meade", can_toggle_precision=False)
    mount = Lx200Mount(config(), fake_clock, port=emu)
    mount.connect()
    assert bytes(emu.received).startswith(b":GR#:U#:GR#:GD#")
    assert not mount.high_precision
    emu.clear_log()
    mount.goto(*M1)
    assert emu.commands == [b":Sr 05:34.5#", b":Sd +22*01#", b":MS#"]
    assert emu.slewing


def test_connect_to_nothing_is_device_not_found(fake_clock):
    emu = emulator(fake_clock)
    emu.silent = True
    mount = Lx200Mount(config(), fake_clock, port=emu)
    with pytest.raises(DeviceNotFound, match=r"mount: no LX200 mount answering .* no reply to :GR"):
        mount.connect()
    assert mount.state == MountState.ERROR and "no reply" in mount.error
    assert not emu.is_open


def test_missing_serial_port_is_device_not_found(fake_clock):
    mount = Lx200Mount(config(port="/dev/ttyTENMON_NO_SUCH_PORT"), fake_clock)
    with pytest.raises(DeviceNotFound, match="ttyTENMON_NO_SUCH_PORT"):
        mount.connect()
    assert mount.state == MountState.ERROR


def test_a_port_that_is_not_an_lx200_is_device_not_found(fake_clock):
    # pyserial's loop:// echoes every byte back: ':GR#' comes back as the "reply".
    mount = Lx200Mount(config(port="loop://"), fake_clock)
    with pytest.raises(DeviceNotFound, match="garbled reply to :GR#"):
        mount.connect()


# --------------------------------------------------------------------------- goto, slews


@pytest.mark.parametrize("dialect, poll", [("meade", b":GR#:GD#:D#"), ("onstep", b":GR#:GD#:GU#")])
def test_goto_bytes_and_slew_to_completion(fake_clock, dialect, poll):
    emu = emulator(fake_clock, dialect)
    mount = connected(emu, fake_clock)
    assert emu.altaz(emu.ha_of(M1[0]), M1[1])[0] > 10  # the target is well up
    mount.goto(*M1)
    assert bytes(emu.received) == b":Sr 05:34:32#:Sd +22*00:52#:MS#"
    assert mount.state == MountState.SLEWING and emu.slewing
    emu.clear_log()
    mount.update()
    assert bytes(emu.received) == poll
    elapsed = run_until(mount, fake_clock, {MountState.TRACKING})
    # 53.6 deg of hour angle at 3 deg/s: the emulator needs ~18 s.
    assert 17.0 <= elapsed <= 19.0
    assert not emu.slewing
    assert mount.ra_deg == pytest.approx(M1[0], abs=2 / 3600)
    assert mount.dec_deg == pytest.approx(M1[1], abs=2 / 3600)
    assert mount.error is None


def test_goto_edge_coordinates_bytes(meade, fake_clock):
    mount = connected(meade, fake_clock)
    mount.goto(359.9996, -0.5)  # 23:59:59.9, -00:30
    assert meade.commands == [b":Sr 00:00:00#", b":Sd -00*30:00#", b":MS#"]


def test_slew_finishes_even_if_bars_never_show(meade, fake_clock):
    # A controller may answer ':D#' with '#' before the motors start: the driver waits for the
    # position instead of declaring the slew done at once.
    mount = connected(meade, fake_clock)
    meade.override(b":D#", b"#")
    mount.goto(*M1)
    mount.update()
    assert mount.state == MountState.SLEWING
    elapsed = run_until(mount, fake_clock, {MountState.TRACKING})
    assert 17.0 <= elapsed <= 19.0


@pytest.mark.parametrize("dialect, reason", [("meade", "Object Below Horizon"),
                                             ("onstep", "below the horizon limit")])
def test_goto_below_horizon_is_typed(fake_clock, dialect, reason):
    emu = emulator(fake_clock, dialect)
    mount = connected(emu, fake_clock)
    ra = (emu.lst_deg + 180.0) % 360.0  # on the lower meridian
    with pytest.raises(TargetBelowHorizon, match=reason) as info:
        mount.goto(ra, -40.0)
    assert info.value.code == "1" and info.value.command == ":MS#"
    assert str(info.value).startswith("mount: ")
    assert mount.state == MountState.TRACKING and mount.error is None and not emu.slewing


@pytest.mark.parametrize("dialect, code, reason", [("meade", "2", "Object Below Higher"),
                                                   ("onstep", "6", "outside the limits")])
def test_goto_other_refusal_is_mount_refused(fake_clock, dialect, code, reason):
    emu = emulator(fake_clock, dialect)
    emu.refuse_goto = code
    mount = connected(emu, fake_clock)
    with pytest.raises(MountRefused, match=reason) as info:
        mount.goto(*M1)
    assert not isinstance(info.value, TargetBelowHorizon) and info.value.code == code


def test_rejected_coordinates(meade, fake_clock):
    meade.reject_coordinates = True
    mount = connected(meade, fake_clock)
    with pytest.raises(MountRefused, match=r"rejected the target RA \(:Sr 05:34:32#\)"):
        mount.goto(*M1)
    assert meade.commands == [b":Sr 05:34:32#"]


def test_goto_rejects_impossible_input_without_sending(meade, fake_clock):
    mount = connected(meade, fake_clock)
    for args in ((10.0, 91.0), (float("nan"), 0.0)):
        with pytest.raises(ValueError):
            mount.goto(*args)
    assert meade.received == b""


def test_abort_stops_a_slew(meade, fake_clock):
    mount = connected(meade, fake_clock)
    mount.goto(*M1)
    run_until(mount, fake_clock, {MountState.SLEWING}, step=2.0)
    meade.clear_log()
    mount.abort()
    assert meade.commands == [b":Q#"]
    assert not meade.slewing and mount.state == MountState.TRACKING
    fake_clock.advance(5)
    mount.update()
    assert mount.state == MountState.TRACKING


def test_slew_timeout_aborts_and_sets_error(meade, fake_clock):
    meade.stall = True  # an axis that never gets there
    mount = connected(meade, fake_clock, slew_timeout_s=30.0)
    mount.goto(*M1)
    run_until(mount, fake_clock, {MountState.ERROR}, step=5.0, limit=60)
    assert meade.commands[-1] == b":Q#" and not meade.slewing
    assert "slew did not finish within 30 s (mount.slew_timeout_s)" in mount.error
    assert mount.error.startswith("mount: ")
    fake_clock.advance(5)
    mount.update()
    assert mount.state == MountState.ERROR  # sticky until a verb succeeds
    meade.stall = False
    mount.goto(*M1)
    assert mount.state == MountState.SLEWING and mount.error is None


def test_slew_from_the_hand_paddle_is_seen(onstep, fake_clock):
    mount = connected(onstep, fake_clock)
    onstep.start_slew(*M1)
    mount.update()
    assert mount.state == MountState.SLEWING
    run_until(mount, fake_clock, {MountState.TRACKING})


# --------------------------------------------------------------------------- sync, tracking


def test_sync_bytes_and_position(meade, fake_clock):
    mount = connected(meade, fake_clock)
    mount.sync(10.0, 41.2)
    assert meade.commands[:3] == [b":Sr 00:40:00#", b":Sd +41*12:00#", b":CM#"]
    assert meade.commands[3:] == [b":GR#", b":GD#", b":D#"]
    assert mount.ra_deg == pytest.approx(10.0, abs=1e-3)
    assert mount.dec_deg == pytest.approx(41.2, abs=1e-3)
    assert meade.ra_deg == pytest.approx(10.0, abs=1e-6)


def test_sync_refusals(onstep, fake_clock):
    mount = connected(onstep, fake_clock)
    onstep.override(b":CM#", b"E6#")
    with pytest.raises(MountRefused, match="outside the limits") as info:
        mount.sync(10.0, 41.2)
    assert info.value.code == "6"
    onstep.override(b":CM#", None)
    mount.goto(*M1)
    onstep.clear_log()
    with pytest.raises(MountRefused, match="moving"):
        mount.sync(10.0, 41.2)
    assert onstep.received == b""


def test_tracking_onstep(onstep, fake_clock):
    mount = connected(onstep, fake_clock)
    mount.set_tracking(False)
    assert onstep.commands == [b":Td#"]
    assert mount.state == MountState.IDLE and not mount.tracking and not onstep.tracking
    ra0 = mount.ra_deg
    fake_clock.advance(60.0)
    mount.update()
    assert mount.state == MountState.IDLE
    assert mount.ra_deg - ra0 == pytest.approx(60 * 360.98564736629 / 86400, abs=0.005)
    onstep.clear_log()
    mount.set_tracking(True)
    assert onstep.commands == [b":Te#"]
    assert mount.state == MountState.TRACKING and onstep.tracking


def test_tracking_meade_reads_the_mode_back(meade, fake_clock):
    mount = connected(meade, fake_clock)
    mount.set_tracking(False)
    assert meade.commands == [b":AL#", b"\x06"]
    assert mount.state == MountState.IDLE and meade.mode == "L"
    meade.clear_log()
    mount.set_tracking(True)
    assert meade.commands == [b":AP#", b"\x06"]
    assert mount.state == MountState.TRACKING and meade.tracking
    meade.override(b"\x06", b"L")  # a mount that ignores the command
    with pytest.raises(MountRefused, match="tracking still off"):
        mount.set_tracking(True)


# --------------------------------------------------------------------------- park


def test_park_meade(meade, fake_clock):
    mount = connected(meade, fake_clock)
    mount.park()
    assert meade.commands == [b":hP#"]
    assert mount.state == MountState.PARKING
    elapsed = run_until(mount, fake_clock, {MountState.PARKED})
    assert 8.0 <= elapsed <= 10.0  # 25 deg of Dec at 3 deg/s
    assert meade.parked and not mount.tracking and mount.error is None
    assert b":GA#" in meade.commands and b":GZ#" in meade.commands
    with pytest.raises(MountRefused, match="parked"):
        mount.goto(*M1)
    with pytest.raises(MountRefused, match="parked"):
        mount.set_tracking(True)
    meade.clear_log()
    mount.park()  # already parked: nothing sent
    assert meade.received == b""
    mount.unpark()
    assert meade.commands[:3] == [b":GR#", b":GD#", b"\x06"]
    assert mount.state == MountState.IDLE  # the mount stopped tracking when it parked
    mount.set_tracking(True)
    assert mount.state == MountState.TRACKING


def test_park_onstep(onstep, fake_clock):
    mount = connected(onstep, fake_clock)
    mount.park()
    assert onstep.commands == [b":hP#"]
    mount.update()
    assert mount.state == MountState.PARKING
    run_until(mount, fake_clock, {MountState.PARKED})
    assert mount.error is None and not mount.tracking
    onstep.clear_log()
    mount.unpark()
    assert onstep.commands[0] == b":hR#"
    assert mount.state == MountState.TRACKING  # OnStep resumes tracking on unpark
    mount.goto(*M1)
    assert mount.state == MountState.SLEWING


def test_park_position_disagreeing_with_config_is_an_error(meade, fake_clock):
    mount = connected(meade, fake_clock, park_alt_deg=60.0)
    mount.park()
    run_until(mount, fake_clock, {MountState.ERROR})
    assert "from the configured park position (mount.park_alt_deg = 60" in mount.error
    assert meade.parked


def test_onstep_park_refused(onstep, fake_clock):
    mount = connected(onstep, fake_clock)
    onstep.override(b":hP#", b"0")
    with pytest.raises(MountRefused, match="refused to park"):
        mount.park()
    assert mount.state == MountState.TRACKING


def test_park_timeout(onstep, fake_clock):
    onstep.stall = True
    mount = connected(onstep, fake_clock, slew_timeout_s=20.0)
    mount.park()
    run_until(mount, fake_clock, {MountState.ERROR}, step=5.0, limit=40)
    assert "park did not finish within 20 s" in mount.error
    assert onstep.commands[-1] == b":Q#" and not onstep.parking


# --------------------------------------------------------------------------- faults


def test_silent_mount_times_out(meade, fake_clock):
    mount = connected(meade, fake_clock)
    meade.silent = True
    mount.update()  # never raises
    assert mount.state == MountState.ERROR
    assert mount.error == ("mount: no reply to :GR# within 0.2 s (mount.timeout_s) on "
                           "'emulator://lx200'")
    with pytest.raises(DeviceTimeout, match=r"no reply to :Sr 05:34:32#"):
        mount.goto(*M1)
    meade.silent = False
    mount.goto(*M1)  # the link is back: a verb that succeeds clears the error
    assert mount.state == MountState.SLEWING and mount.error is None


def test_garbage_is_a_protocol_error(meade, fake_clock):
    mount = connected(meade, fake_clock)
    meade.garbage = True
    mount.update()
    assert mount.state == MountState.ERROR and "garbled reply to :GR#" in mount.error
    with pytest.raises(ProtocolError, match="garbled reply to :Sr 05:34:32#"):
        mount.goto(*M1)


@pytest.mark.parametrize("cmd, reply, message", [
    (b":GR#", b"25:00:00#", "garbled reply to :GR#"),
    (b":GD#", b"+22*00'52", "reply b\"+22*00'52\" cut off"),     # no terminator
    (b":GD#", b"+" * 70 + b"#", "no '#' within 64 bytes"),        # runaway reply
    (b":D#", b"12:00:00#", "garbled reply to :D#"),
])
def test_bad_replies_are_named(meade, fake_clock, cmd, reply, message):
    mount = connected(meade, fake_clock)
    meade.override(cmd, reply)
    mount.update()
    assert mount.state == MountState.ERROR and message in mount.error


def test_classic_distance_bars(meade, fake_clock):
    mount = connected(meade, fake_clock)
    meade.override(b":D#", b" " * 32 + b"#")  # the Classic's idle field
    mount.update()
    assert mount.state == MountState.TRACKING
    meade.override(b":D#", b"\x7f\x7f\x7f" + b" " * 29 + b"#")
    mount.update()
    assert mount.state == MountState.SLEWING


def test_onstep_status_with_pec_glyphs(onstep, fake_clock):
    mount = connected(onstep, fake_clock)
    onstep.override(b":GU#", b"N/pHrE0#")  # OnStep 4: '/' = PEC ignored
    mount.update()
    assert mount.state == MountState.TRACKING
    onstep.override(b":GU#", b"Nn#")  # no park flag at all: not an OnStep status
    mount.update()
    assert mount.state == MountState.ERROR and "garbled reply to :GU#" in mount.error


def test_onstep_axis_fault(onstep, fake_clock):
    mount = connected(onstep, fake_clock)
    onstep.override(b":GU#", b"NpfE#")
    mount.update()
    assert mount.state == MountState.ERROR and "axis fault" in mount.error


def test_unplug_and_reconnect(meade, fake_clock):
    mount = connected(meade, fake_clock)
    meade.unplug()
    mount.update()
    assert mount.state == MountState.ERROR
    assert "serial link on 'emulator://lx200' lost during :GR#" in mount.error
    with pytest.raises(DeviceDisconnected):
        mount.goto(*M1)
    with pytest.raises(DeviceNotFound, match="cannot open serial port"):
        mount.connect()
    meade.replug()
    mount.connect()
    assert mount.state == MountState.TRACKING and mount.error is None


def test_disconnect_never_moves_and_nothing_moves_after(meade, fake_clock):
    mount = connected(meade, fake_clock)
    mount.goto(*M1)
    meade.clear_log()
    mount.disconnect()
    assert meade.received == b"" and meade.slewing  # no :Q#: disconnect sends nothing
    assert mount.state == MountState.UNKNOWN and mount.ra_deg is None and not meade.is_open
    mount.update()
    for verb, args in ((mount.goto, M1), (mount.sync, M1), (mount.park, ()),
                       (mount.unpark, ()), (mount.abort, ()), (mount.set_tracking, (True,))):
        with pytest.raises(NotConnected, match="mount: not connected"):
            verb(*args)
    assert meade.received == b""


# --------------------------------------------------------------------------- threads


def _hammer(mount, clock, errors, n=150):
    def poller():
        for _ in range(n):
            try:
                mount.update()
            except Exception as exc:  # noqa: BLE001 - collected and asserted on
                errors.append(exc)

    def commander():
        for i in range(n // 3):
            try:
                mount.goto(*M1) if i % 2 == 0 else mount.abort()
                mount.set_tracking(True)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=poller), threading.Thread(target=commander)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)


def test_overlap_detector_sees_interleaved_commands(meade):
    # The detector itself: a write from a second thread while the first thread's reply is unread.
    meade.open()
    meade.write(b":GR#")
    t = threading.Thread(target=meade.write, args=(b":GD#",))
    t.start()
    t.join()
    assert meade.overlaps == 1


def test_lock_serialises_update_and_commands(meade, fake_clock):
    mount = connected(meade, fake_clock)
    meade.io_yield = True  # every port call sleeps: threads switch in the middle of exchanges
    errors: list[Exception] = []
    _hammer(mount, fake_clock, errors)
    assert errors == []
    assert meade.overlaps == 0
    assert mount.error is None


def test_without_the_lock_exchanges_interleave(meade, fake_clock):
    # Proof that the test above can fail: the same load with the lock removed garbles exchanges.
    class NoLock:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    mount = connected(meade, fake_clock)
    mount._lock = NoLock()
    meade.io_yield = True
    _hammer(mount, fake_clock, [])
    assert meade.overlaps > 0


# --------------------------------------------------------------------------- real pyserial


def test_real_serial_port_over_a_pty(fake_clock):
    emu = emulator(fake_clock, "onstep", high_precision=True)
    link = PtyLink(emu)
    mount = Lx200Mount(config(port=link.path, timeout_s=0.3), fake_clock)
    try:
        mount.connect()
        assert mount.dialect == "onstep" and mount.state == MountState.TRACKING
        mount.goto(*M1)
        assert emu.slewing and emu.commands[-3:] == [b":Sr 05:34:32#", b":Sd +22*00:52#",
                                                      b":MS#"]
        run_until(mount, fake_clock, {MountState.TRACKING}, step=2.0)
        emu.silent = True
        t0 = time.monotonic()
        mount.update()
        waited = time.monotonic() - t0
        assert mount.state == MountState.ERROR and "no reply to :GR# within 0.3 s" in mount.error
        assert 0.25 <= waited < 2.0  # pyserial's own timeout, not a hang
    finally:
        mount.disconnect()
        link.close()


# --------------------------------------------------------------------------- edge readings


def test_reading_edge_positions_over_the_wire(fake_clock):
    emu = emulator(fake_clock, "meade", high_precision=True)
    mount = connected(emu, fake_clock)
    emu.place(86399 / 240.0, -0.5)  # 23:59:59, -00:30:00
    mount.update()
    assert mount.ra_deg == pytest.approx(359.995833, abs=1e-5)
    assert mount.dec_deg == -0.5
    emu.place(359.9996, 0.0)  # 23:59:59.9: the mount itself rounds to 00:00:00
    mount.update()
    assert mount.ra_deg == 0.0
    emu.override(b":GR#", b"23:59:59.9#")  # OnStep's extended precision
    mount.update()
    assert mount.ra_deg == pytest.approx(359.999583, abs=1e-6)


def test_reading_low_precision_negative_zero_dec(fake_clock):
    emu = emulator(fake_clock, "meade", can_toggle_precision=False)
    mount = connected(emu, fake_clock)
    emu.place(M1[0], -0.5)
    mount.update()
    assert mount.dec_deg == -0.5
    assert mount.ra_deg == pytest.approx(M1[0], abs=0.025)  # 0.1 min of time = 0.025 deg


# --------------------------------------------------------------------------- registry


def test_make_mount(fake_clock):
    mount = make_mount(config(), fake_clock)
    assert isinstance(mount, Lx200Mount) and isinstance(mount, Mount)
    with pytest.raises(ConfigError, match="needs the simulated world"):
        make_mount(SimulatedMountConfig(type="simulated"), fake_clock)


@pytest.mark.parametrize("fault", ["silent", "garbage", "unplug", "stall"])
def test_every_failure_ends_in_an_error_naming_the_device(meade, fake_clock, fault):
    mount = connected(meade, fake_clock, slew_timeout_s=10.0)
    mount.goto(*M1)
    if fault == "unplug":
        meade.unplug()
    else:
        setattr(meade, fault, True)
    run_until(mount, fake_clock, {MountState.ERROR}, limit=30)
    assert mount.error.startswith("mount: ")
