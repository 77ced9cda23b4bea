"""One contract for every relay-bank backend, asserted at the wire (frames, pin levels, reports)."""

from __future__ import annotations

import pytest
from relay_rigs import BUILDERS, Rig

from tenmon.core.clock import FakeClock
from tenmon.drivers.base import RelayBank
from tenmon.drivers.relays import switch_off_all_banks
from tenmon.core.errors import DeviceDisconnected, DeviceNotFound, InterlockError

ALL = list(BUILDERS)
UNPLUGGABLE = ["lcus", "hid", "sim"]  # a GPIO header cannot be unplugged from the Pi


def build(kind: str, **kw) -> Rig:
    return BUILDERS[kind](FakeClock(), **kw)


@pytest.fixture(params=ALL)
def rig(request) -> Rig:
    r = build(request.param)
    r.bank.connect()
    yield r
    r.bank.disconnect()


@pytest.fixture(params=UNPLUGGABLE)
def urig(request) -> Rig:
    r = build(request.param, channels=4, interlocks=[(1, 2)], max_on_s=30.0)
    r.bank.connect()
    yield r
    r.bank.disconnect()


def test_is_a_relay_bank(rig):
    assert isinstance(rig.bank, RelayBank)
    assert rig.bank.connected
    assert rig.bank.channels == 4


@pytest.mark.parametrize("kind", ALL)
def test_connect_switches_off_relays_left_on(kind):
    r = build(kind)
    r.preset_on(1)
    r.preset_on(3)
    assert r.physical(1) and r.physical(3)
    r.bank.connect()
    assert r.physical_all() == {1: False, 2: False, 3: False, 4: False}
    assert r.bank.commanded() == {1: False, 2: False, 3: False, 4: False}
    r.bank.disconnect()


def test_set_drives_the_wire(rig):
    rig.bank.set(3, True)
    assert rig.physical(3) and rig.bank.is_on(3)
    assert not any(rig.physical(ch) for ch in (1, 2, 4))
    rig.bank.set(3, False)
    assert not rig.physical(3) and not rig.bank.is_on(3)


def test_interlock_refuses_and_names_both_channels(rig):
    rig.bank.set(1, True)
    with pytest.raises(InterlockError) as err:
        rig.bank.set(2, True)
    assert "channel 2" in str(err.value) and "channel 1" in str(err.value)
    assert err.value.device == "relays.main"
    assert rig.physical(1) and not rig.physical(2)
    rig.bank.set(1, False)
    rig.bank.set(2, True)  # the other direction, once the first is off
    assert rig.physical(2) and not rig.physical(1)
    # channels outside any pair are free
    rig.bank.set(3, True)
    rig.bank.set(4, True)
    assert rig.physical(3) and rig.physical(4)


def test_channel_out_of_range(rig):
    for bad in (0, 5, -1):
        with pytest.raises(InterlockError, match="outside 1..4"):
            rig.bank.set(bad, True)
    assert not any(rig.physical_all().values())


def test_max_on_time_by_service(rig):
    rig.bank.set(1, True)
    rig.clock.advance(9.9)
    rig.bank.service()
    assert rig.physical(1)
    rig.clock.advance(0.2)  # 10.1 s: past the 10 s limit
    rig.bank.service()
    assert not rig.physical(1) and not rig.bank.is_on(1)
    (period,) = rig.bank.on_periods(1)
    assert period.duration_s == pytest.approx(10.1)
    assert period.end_reason == "max-on-time"
    kinds = [e.kind for e in rig.bank.events()]
    assert kinds[-1] == "max-on-time"
    assert "channel 1" in rig.bank.events()[-1].message


def test_max_on_time_checked_on_every_call(rig):
    rig.bank.set(1, True)
    rig.clock.advance(11.0)
    rig.bank.set(3, True)  # no service() in between: the call itself enforces the limit
    assert not rig.physical(1) and rig.physical(3)


def test_per_channel_limit_and_no_timer_restart():
    for kind in ALL:
        r = build(kind, max_on_s=10.0, per_channel={3: 2.0})
        r.bank.connect()
        r.bank.set(3, True)
        r.bank.set(4, True)
        r.clock.advance(1.5)
        r.bank.set(3, True)  # re-commanding "on" does not restart the maximum on-time
        r.clock.advance(0.6)
        r.bank.service()
        assert not r.physical(3), kind
        assert r.physical(4), kind
        assert r.bank.max_on_s(3) == 2.0 and r.bank.max_on_s(4) == 10.0
        r.bank.disconnect()


def test_history_says_how_long(rig):
    rig.bank.set(2, True)
    rig.clock.advance(3.0)
    rig.bank.set(2, False)
    rig.bank.set(4, True)
    (period,) = rig.bank.on_periods(2)
    assert period.duration_s == pytest.approx(3.0)
    assert rig.bank.on_periods(4)[-1].end_s is None
    assert [(s.channel, s.on, s.reason) for s in rig.bank.history()] == [
        (2, True, "command"), (2, False, "command"), (4, True, "command")]
    rig.clock.advance(1.25)
    assert rig.bank.on_for_s(4) == pytest.approx(1.25)


def test_all_off(rig):
    rig.bank.set(1, True)
    rig.bank.set(3, True)
    rig.bank.all_off()
    assert not any(rig.physical_all().values())
    assert not any(rig.bank.commanded().values())


def test_disconnect_switches_off_and_never_raises(rig):
    rig.bank.set(2, True)
    rig.bank.set(4, True)
    rig.bank.disconnect()
    assert not any(rig.physical_all().values())
    assert not rig.bank.connected and not rig.bank.lost
    with pytest.raises(DeviceDisconnected, match="not connected"):
        rig.bank.set(1, True)
    rig.bank.disconnect()  # twice is fine
    rig.bank.connect()  # and the board can be opened again
    rig.bank.set(1, True)
    assert rig.physical(1)


def test_exit_hook_switches_every_live_bank_off():
    rigs = [build(kind) for kind in ALL]
    for r in rigs:
        r.bank.connect()
        r.bank.set(1, True)
        r.bank.set(4, True)
    switch_off_all_banks()
    for r in rigs:
        assert not any(r.physical_all().values()), r.kind
        assert not r.bank.connected
        assert r.bank.events()[-1].kind == "exit"


@pytest.mark.parametrize("kind", ALL)
def test_absent_board_is_device_not_found(kind):
    r = build(kind)
    holder = None
    if kind == "lcus":
        r.bank.port = "fake://nothing-plugged-here"
    elif kind.startswith("gpio"):
        from gpiozero import OutputDevice

        # channel 3's pin is taken by another device
        holder = OutputDevice(r.extra["pins"][2], pin_factory=r.extra["factory"])
    else:
        r.unplug()
    with pytest.raises(DeviceNotFound) as err:
        r.bank.connect()
    assert err.value.device == "relays.main"
    assert not r.bank.connected
    if holder is not None:
        assert f"pin {r.extra['pins'][2]}" in str(err.value)
        # the pins claimed before the failure were released again
        assert all(r.extra["factory"].pin(p).function == "input" for p in r.extra["pins"][:2])
        holder.close()


# ----------------------------------------------------------------------------- unplugging


def test_unplug_during_write_is_a_defined_safe_state(urig):
    bank = urig.bank
    bank.set(1, True)
    bank.set(3, True)
    urig.unplug()
    with pytest.raises(DeviceDisconnected) as err:
        bank.set(3, False)
    assert err.value.device == "relays.main"
    assert not bank.connected and bank.lost
    assert not any(urig.physical_all().values())
    assert not any(bank.commanded().values())
    ev = bank.events()[-1]
    assert ev.kind == "board-lost"
    assert "relays 1, 3 were on" in ev.message and "switching channel 3 off" in ev.message
    with pytest.raises(DeviceDisconnected, match="board lost"):
        bank.set(1, True)
    with pytest.raises(DeviceDisconnected):
        bank.all_off()


def test_service_notices_an_idle_unplug_and_reconnects(urig):
    bank = urig.bank
    bank.set(2, True)
    urig.unplug()
    bank.service()
    assert bank.lost and not bank.connected
    assert bank.events()[-1].kind == "board-lost"
    assert "relay 2 was on" in bank.events()[-1].message
    seq = bank.events()[-1].seq
    urig.clock.advance(6.0)
    bank.service()  # still unplugged: a quiet retry, no new event
    assert bank.lost and bank.events(since=seq) == []
    urig.replug()
    urig.clock.advance(1.0)
    bank.service()  # less than reconnect_s since the last try
    assert bank.lost
    urig.clock.advance(5.0)
    bank.service()
    assert bank.connected and not bank.lost and bank.error is None
    (ev,) = bank.events(since=seq)
    assert ev.kind == "reconnected" and "all relays switched off" in ev.message
    assert not any(urig.physical_all().values())
    bank.set(2, True)
    assert urig.physical(2)


def test_replug_before_noticing_still_reopens(urig):
    """The cable is pulled and pushed back between two ticks: the old handle is dead."""
    bank = urig.bank
    bank.set(1, True)
    urig.unplug()
    urig.replug()
    assert not urig.physical(1)  # the board rebooted with every relay off
    bank.service()
    assert bank.lost  # noticed on the dead handle
    urig.clock.advance(5.0)
    bank.service()
    assert bank.connected
    bank.set(1, True)
    assert urig.physical(1)


def test_disconnect_while_unplugged_never_raises(urig):
    urig.bank.set(1, True)
    urig.unplug()
    urig.bank.disconnect()
    assert not urig.bank.connected and not urig.bank.lost
    urig.clock.advance(60)
    urig.replug()
    urig.bank.service()  # a deliberate disconnect is not retried
    assert not urig.bank.connected
