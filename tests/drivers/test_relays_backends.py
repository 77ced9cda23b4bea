"""What only one relay backend does: HID reports, GPIO pin history, sim faults, the registry."""

from __future__ import annotations

import sys

import pytest
from fake_hid import FakeHid, FakeHidRelayBoard
from gpiozero.pins.mock import MockFactory

from tenmon.core.clock import FakeClock
from tenmon.config.models import (
    GpioRelayConfig,
    HidRelayConfig,
    LcusSerialRelayConfig,
    SimulatedRelayConfig,
    SimulatedWeatherConfig,
)
from tenmon.drivers import registry
from tenmon.drivers.relays import make_relay_bank
from tenmon.drivers.relays.gpio import GpioRelayBank
from tenmon.drivers.relays.hid import HidRelayBank, set_report, state_from_report
from tenmon.drivers.relays.lcus import LcusRelayBank
from tenmon.drivers.sim.relays import SimulatedRelayBank
from tenmon.core.errors import ConfigError, DeviceDisconnected, DeviceNotFound, InterlockError

# ----------------------------------------------------------------------------- USB HID


def hid_bank(clock, boards, **cfg) -> HidRelayBank:
    config = HidRelayConfig(type="usb-hid", channels=cfg.pop("channels", 2),
                            interlocks=[(1, 2)], **cfg)
    return HidRelayBank("main", config, clock, hid_module=FakeHid(boards))


def test_hid_reports_are_byte_exact():
    assert set_report(0xFF, 1) == [0x00, 0xFF, 0x01, 0, 0, 0, 0, 0, 0]
    assert set_report(0xFC) == [0x00, 0xFC, 0x00, 0, 0, 0, 0, 0, 0]
    assert state_from_report([0x54, 0x4E, 0x4D, 0x30, 0x31, 0, 0, 0x05]) == ("TNM01", 0x05)
    with pytest.raises(ValueError):
        state_from_report([1, 2, 3])


def test_hid_wire_sequence():
    clock = FakeClock()
    board = FakeHidRelayBoard(clock, serial="TNM01", relays=2)
    bank = hid_bank(clock, [board])
    bank.connect()
    bank.set(2, True)
    clock.advance(1.5)
    bank.set(2, False)
    bank.disconnect()
    assert [r for _, r in board.reports] == [
        [0, 0xFC, 0, 0, 0, 0, 0, 0, 0],   # connect: all off
        [0, 0xFF, 2, 0, 0, 0, 0, 0, 0],
        [0, 0xFD, 2, 0, 0, 0, 0, 0, 0],
        [0, 0xFD, 1, 0, 0, 0, 0, 0, 0],   # disconnect: each relay off
        [0, 0xFD, 2, 0, 0, 0, 0, 0, 0],
    ]
    assert board.mask_log == [(0.0, 0b10), (1.5, 0)]


def test_hid_picks_the_board_by_serial():
    clock = FakeClock()
    a = FakeHidRelayBoard(clock, serial="AAAAA", relays=2, path=b"/dev/hidraw1")
    b = FakeHidRelayBoard(clock, serial="BBBBB", relays=2, path=b"/dev/hidraw2")
    bank = hid_bank(clock, [a, b], serial="BBBBB")
    bank.connect()
    bank.set(1, True)
    assert b.mask == 1 and a.mask == 0 and bank.board_serial == "BBBBB"
    missing = hid_bank(clock, [a, b], serial="CCCCC")
    with pytest.raises(DeviceNotFound, match="'CCCCC'.*found 'AAAAA', 'BBBBB'"):
        missing.connect()


def test_hid_board_with_too_few_relays():
    clock = FakeClock()
    bank = hid_bank(clock, [FakeHidRelayBoard(clock, relays=2)], channels=4)
    with pytest.raises(DeviceNotFound, match="has 2 relays but the config asks for 4"):
        bank.connect()


def test_hid_readback_mismatch_is_board_loss():
    """A board whose state does not follow the command is not trusted: lost, all off."""
    clock = FakeClock()

    class DeafBoard(FakeHidRelayBoard):
        deaf = False

        def handle(self, report):
            if not self.deaf:
                super().handle(report)

    board = DeafBoard(clock, relays=2)
    bank = hid_bank(clock, [board])
    bank.connect()
    bank.set(1, True)
    board.deaf = True
    with pytest.raises(DeviceDisconnected, match="relay 1 reads on after switching it off"):
        bank.set(1, False)
    assert bank.lost and "relay 1 was on" in bank.events()[-1].message


def test_hid_service_notices_a_board_changed_behind_its_back():
    clock = FakeClock()
    board = FakeHidRelayBoard(clock, relays=2)
    bank = hid_bank(clock, [board])
    bank.connect()
    bank.set(1, True)
    board.mask = 0b11  # another program switched relay 2 on
    bank.service()
    assert bank.lost
    assert "differs from the commanded 0x01" in bank.events()[-1].message
    assert board.mask == 0  # the best-effort all-off reached it


def test_hid_ignores_other_vusb_devices():
    clock = FakeClock()

    class OtherHid(FakeHid):
        def enumerate(self, vendor_id=0, product_id=0):
            return [dict(d, product_string="SomeOtherVUSB") for d in super().enumerate()]

    bank = HidRelayBank("main", HidRelayConfig(type="usb-hid", channels=2), clock,
                        hid_module=OtherHid([FakeHidRelayBoard(clock)]))
    with pytest.raises(DeviceNotFound, match="found none"):
        bank.connect()


# ----------------------------------------------------------------------------- GPIO pin history


@pytest.mark.parametrize("active_high", [True, False])
def test_gpio_pin_history(active_high):
    clock, factory = FakeClock(), MockFactory()
    cfg = GpioRelayConfig(type="gpio", channels=2, pins=[17, 27], active_high=active_high,
                          interlocks=[(1, 2)], max_on_s=5.0)
    bank = GpioRelayBank("main", cfg, clock, pin_factory=factory)
    bank.connect()
    pin = factory.pin(17)
    pin.clear_states()
    bank.set(1, True)
    clock.advance(6.0)
    bank.service()  # maximum on-time
    bank.set(1, True)
    bank.set(1, False)
    on, off = active_high, not active_high
    pin.assert_states([off, on, off, on, off])
    assert factory.pin(27).state == off
    bank.disconnect()
    assert pin.function == "input"  # released


# ----------------------------------------------------------------------------- simulator faults


def sim(clock=None, **kw) -> SimulatedRelayBank:
    cfg = SimulatedRelayConfig(type="simulated", channels=4, interlocks=[(1, 2)], **kw)
    return SimulatedRelayBank("main", cfg, clock or FakeClock())


def test_sim_stuck_relay_ignores_commands():
    bank = sim()
    bank.connect()
    bank.stick(3, True)
    assert bank.physical(3) and not bank.is_on(3)
    bank.set(3, True)
    bank.set(3, False)
    assert bank.physical(3)  # welded: the motor still runs
    bank.unplug()
    assert bank.physical(3)  # even without coil power
    bank.unstick(3)
    assert not bank.physical(3)
    bank.stick(4, False)
    bank.replug()
    bank.disconnect()
    bank.connect()
    bank.set(4, True)
    assert bank.is_on(4) and not bank.physical(4)  # welded open: commanded on, no contact


def test_sim_unplug_drops_relays_and_writes_fail():
    bank = sim()
    bank.connect()
    bank.set(1, True)
    writes = bank.writes
    bank.unplug()
    assert not bank.plugged and not bank.physical(1)
    with pytest.raises(DeviceDisconnected):
        bank.set(1, False)
    assert bank.writes == writes
    with pytest.raises(InterlockError):
        bank.physical(9)


# ----------------------------------------------------------------------------- the registry


def test_registry_builds_each_backend():
    clock = FakeClock()
    assert registry.types("relays") == ("lcus-serial", "gpio", "usb-hid", "simulated")
    cases = [
        (LcusSerialRelayConfig(type="lcus-serial", port="loop://"), LcusRelayBank),
        (GpioRelayConfig(type="gpio", channels=1, pins=[17]), GpioRelayBank),
        (SimulatedRelayConfig(type="simulated"), SimulatedRelayBank),
    ]
    for cfg, cls in cases:
        bank = make_relay_bank("b", cfg, clock)
        assert type(bank) is cls and bank.device == "relays.b"
        assert not bank.connected  # built, not connected


def test_hid_without_hidapi_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "hid", None)  # "import hid" raises ImportError
    with pytest.raises(DeviceNotFound, match="relays.door: .*'hidapi'.*pip install hidapi"):
        make_relay_bank("door", HidRelayConfig(type="usb-hid"), FakeClock())


def test_hid_with_the_wrong_hid_package(monkeypatch):
    import types

    impostor = types.ModuleType("hid")
    impostor.Device = object  # the ctypes "hid" package's API
    monkeypatch.setitem(sys.modules, "hid", impostor)
    with pytest.raises(DeviceNotFound, match="not cython-hidapi"):
        make_relay_bank("door", HidRelayConfig(type="usb-hid"), FakeClock())


def test_unknown_config_is_a_config_error():
    with pytest.raises(ConfigError, match="no relay backend"):
        make_relay_bank("x", SimulatedWeatherConfig(type="simulated"), FakeClock())


def test_gpio_failure_is_loss_but_relays_may_still_be_on():
    """A GPIO error does not cut the relay module's power: the event must not claim it did."""
    from gpiozero.pins.mock import MockPin

    class FailingPin(MockPin):
        broken = False

        def _set_state(self, value):
            if FailingPin.broken:
                raise OSError(5, "gpiochip vanished")
            super()._set_state(value)

    clock, factory = FakeClock(), MockFactory(pin_class=FailingPin)
    cfg = GpioRelayConfig(type="gpio", channels=2, pins=[17, 27], interlocks=[(1, 2)])
    bank = GpioRelayBank("main", cfg, clock, pin_factory=factory)
    bank.connect()
    bank.set(1, True)
    FailingPin.broken = True
    try:
        with pytest.raises(DeviceDisconnected, match="gpiochip vanished"):
            bank.set(2, False)
        assert bank.lost
        assert "relay 1 was on and may still be on: check the hardware" in \
            bank.events()[-1].message
    finally:
        FailingPin.broken = False
    clock.advance(5.0)
    bank.service()
    assert bank.connected and factory.pin(17).state is False
