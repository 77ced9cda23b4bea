"""Test rigs: each relay-bank backend over its wire-level fake, with a decoder of what the wire did.

A :class:`Rig` holds a bank and the fake at the far end of its "cable" and answers, from the wire
alone (frames received, pin levels, HID reports; never from the driver's own state):

* ``physical(ch)``: is relay ``ch`` energized now;
* ``transitions()``: every wire-level change ``(t, channel, on)`` in order, with the fake clock's
  time (a board losing power appears as "off" for every relay that was on);
* ``unplug()`` / ``replug()`` for backends that can lose their board (not GPIO);
* ``preset_on(ch)``: the board was left with ``ch`` on (by a crashed earlier process).

:func:`wire_violations` checks a transition list against the interlock pairs and on-time limits.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from fake_hid import FakeHid, FakeHidRelayBoard
from fake_serial import FakeWire
from gpiozero.pins.mock import MockFactory, MockPin

from tenmon.core.clock import FakeClock
from tenmon.config.models import (
    GpioRelayConfig,
    HidRelayConfig,
    LcusSerialRelayConfig,
    SimulatedRelayConfig,
)
from tenmon.drivers.relays.gpio import GpioRelayBank
from tenmon.drivers.relays.hid import HidRelayBank
from tenmon.drivers.relays.lcus import LcusRelayBank, parse_lcus_frames
from tenmon.drivers.sim.relays import SimulatedRelayBank

Transition = tuple[float, int, bool]
_ids = itertools.count()
GPIO_PINS = [17, 27, 22, 23, 24, 25, 5, 6, 13, 19, 26, 16]


@dataclass
class Rig:
    kind: str
    clock: FakeClock
    bank: object
    physical: Callable[[int], bool]
    transitions: Callable[[], list[Transition]]
    preset_on: Callable[[int], None]
    unplug: Callable[[], None] | None = None
    replug: Callable[[], None] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def can_unplug(self) -> bool:
        return self.unplug is not None

    def physical_all(self) -> dict[int, bool]:
        return {ch: self.physical(ch) for ch in range(1, self.bank.channels + 1)}


# ----------------------------------------------------------------------------- LCUS serial


def lcus_rig(clock: FakeClock, *, channels=4, interlocks=((1, 2),), max_on_s=10.0,
             per_channel=None, reconnect_s=5.0, frame_gap_s=0.0, paced=False) -> Rig:
    url = f"fake://lcus-{next(_ids)}"
    wire = FakeWire.register(url, clock)
    cfg = LcusSerialRelayConfig(type="lcus-serial", port=url, channels=channels,
                                interlocks=list(interlocks), max_on_s=max_on_s,
                                max_on_s_per_channel=per_channel or {}, reconnect_s=reconnect_s)
    bank = LcusRelayBank("main", cfg, clock, frame_gap_s=frame_gap_s,
                         sleep=clock.advance if paced else (lambda s: None))
    # Decoded incrementally: ``seen`` wire events are folded into ``out`` and ``state``.
    dec = {"seen": 0, "out": [], "state": {ch: False for ch in range(1, channels + 1)}}

    def transitions() -> list[Transition]:
        out, state = dec["out"], dec["state"]
        for ev in wire.events[dec["seen"]:]:
            if ev.kind == "write":
                for ch, on in parse_lcus_frames(ev.data):
                    out.append((ev.t, ch, on))
                    state[ch] = on
            else:  # unplug or replug: a USB-powered board powers down / up with relays off
                for ch in state:
                    if state[ch]:
                        out.append((ev.t, ch, False))
                    state[ch] = False
        dec["seen"] = len(wire.events)
        return list(out)

    def physical(ch: int) -> bool:
        transitions()
        return dec["state"][ch]

    def preset_on(ch: int) -> None:
        if wire.events:
            raise RuntimeError("preset_on() is for the board's state before anything is sent")
        dec["state"][ch] = True
        dec["out"].append((0.0, ch, True))

    return Rig("lcus", clock, bank, physical, transitions, preset_on, wire.unplug, wire.replug,
               {"wire": wire, "url": url})


# ----------------------------------------------------------------------------- GPIO


class RecordingPin(MockPin):
    """A gpiozero mock pin that also logs (fake-clock time, pin, function, level) per change."""

    def _log(self) -> None:
        fac = self._factory
        if getattr(fac, "wire_log", None) is not None:
            fac.wire_log.append((fac.clock.monotonic(), self.info.name, self._function,
                                 self._state))

    def _set_function(self, value):
        super()._set_function(value)
        self._log()

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            self._log()
        return changed


class RecordingFactory(MockFactory):
    def __init__(self, clock: FakeClock):
        super().__init__(pin_class=RecordingPin)
        self.clock = clock
        self.wire_log: list[tuple[float, str, str, bool]] = []


def gpio_rig(clock: FakeClock, *, channels=4, interlocks=((1, 2),), max_on_s=10.0,
             per_channel=None, active_high=True) -> Rig:
    pins = GPIO_PINS[:channels]
    factory = RecordingFactory(clock)
    cfg = GpioRelayConfig(type="gpio", pins=pins, channels=channels, active_high=active_high,
                          interlocks=list(interlocks), max_on_s=max_on_s,
                          max_on_s_per_channel=per_channel or {})
    bank = GpioRelayBank("main", cfg, clock, pin_factory=factory)
    names = {f"GPIO{p}": ch for ch, p in enumerate(pins, start=1)}

    def energized(function: str, level: bool) -> bool:
        # A pin released to input is not driving the relay module: its input pull keeps it off.
        return function == "output" and level == active_high

    def transitions() -> list[Transition]:
        return [(t, names[name], energized(fn, lvl)) for t, name, fn, lvl in factory.wire_log
                if name in names]

    def physical(ch: int) -> bool:
        pin = factory.pin(pins[ch - 1])
        return energized(pin.function, pin.state)

    def preset_on(ch: int) -> None:
        pin = factory.pin(pins[ch - 1])
        pin.function = "output"
        pin.state = active_high

    return Rig("gpio" if active_high else "gpio-active-low", clock, bank, physical, transitions,
               preset_on, None, None, {"factory": factory, "pins": pins})


# ----------------------------------------------------------------------------- USB HID


def hid_rig(clock: FakeClock, *, channels=4, interlocks=((1, 2),), max_on_s=10.0,
            per_channel=None) -> Rig:
    board = FakeHidRelayBoard(clock, serial="TNM01", relays=8)
    hid = FakeHid([board])
    cfg = HidRelayConfig(type="usb-hid", serial="TNM01", channels=channels,
                         interlocks=list(interlocks), max_on_s=max_on_s,
                         max_on_s_per_channel=per_channel or {})
    bank = HidRelayBank("main", cfg, clock, hid_module=hid)
    initial = {"mask": 0}

    def transitions() -> list[Transition]:
        out: list[Transition] = []
        prev = initial["mask"]
        out += [(0.0, ch, True) for ch in range(1, 9) if prev & (1 << (ch - 1))]
        for t, mask in board.mask_log:
            for ch in range(1, board.relays + 1):
                bit = 1 << (ch - 1)
                if (mask ^ prev) & bit:
                    out.append((t, ch, bool(mask & bit)))
            prev = mask
        return [tr for tr in out if tr[1] <= channels]

    def physical(ch: int) -> bool:
        return bool(board.mask & (1 << (ch - 1)))

    def preset_on(ch: int) -> None:
        board.mask |= 1 << (ch - 1)
        initial["mask"] = board.mask

    return Rig("hid", clock, bank, physical, transitions, preset_on, board.unplug, board.replug,
               {"board": board, "hid": hid})


# ----------------------------------------------------------------------------- simulated


class _TracedSimBank(SimulatedRelayBank):
    """The simulated bank with its coil changes logged (the simulated board's "wire")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trace: list[Transition] = []

    def _write(self, channel: int, on: bool) -> None:
        super()._write(channel, on)
        self.trace.append((self._clock.monotonic(), channel, on))

    def unplug(self) -> None:
        for ch in range(1, self.channels + 1):
            if self.physical(ch):
                self.trace.append((self._clock.monotonic(), ch, False))
        super().unplug()


def sim_rig(clock: FakeClock, *, channels=4, interlocks=((1, 2),), max_on_s=10.0,
            per_channel=None) -> Rig:
    cfg = SimulatedRelayConfig(type="simulated", channels=channels, interlocks=list(interlocks),
                               max_on_s=max_on_s, max_on_s_per_channel=per_channel or {})
    bank = _TracedSimBank("main", cfg, clock)

    def preset_on(ch: int) -> None:
        bank._coils[ch] = True  # a board left on: only the simulator's own coils can say so
        bank.trace.append((0.0, ch, True))

    return Rig("sim", clock, bank, bank.physical, lambda: list(bank.trace), preset_on,
               bank.unplug, bank.replug)


BUILDERS = {
    "lcus": lcus_rig,
    "gpio": gpio_rig,
    "gpio-active-low": lambda clock, **kw: gpio_rig(clock, active_high=False, **kw),
    "hid": hid_rig,
    "sim": sim_rig,
}


# ----------------------------------------------------------------------------- the checker


def wire_violations(transitions: list[Transition], *, channels: int,
                    pairs: list[tuple[int, int]], limits: dict[int, float], slack_s: float,
                    end_t: float) -> list[str]:
    """Interlock and on-time violations in a wire-level transition list (empty when none).

    A pair is violated if, after any single transition, both of its channels are on. A relay is
    over its limit if it stays on longer than ``limits[ch] + slack_s`` (until it goes off, or
    until ``end_t`` if it is still on).
    """
    slack_s += 1e-9  # the fake clock sums floats: 3.0 + 0.5 may come out as 3.5000000000000004
    state = {ch: False for ch in range(1, channels + 1)}
    since: dict[int, float] = {}
    found: list[str] = []
    for t, ch, on in transitions:
        if on and not state[ch]:
            since[ch] = t
        elif not on and state[ch]:
            dur = t - since.pop(ch)
            if dur > limits[ch] + slack_s:
                found.append(f"channel {ch} on for {dur:.3f} s (limit {limits[ch]:g} s) "
                             f"until t={t:.3f}")
        state[ch] = on
        for a, b in pairs:
            if state[a] and state[b]:
                found.append(f"channels {a} and {b} both on at t={t:.3f}")
    for ch, t0 in since.items():
        if end_t - t0 > limits[ch] + slack_s:
            found.append(f"channel {ch} still on after {end_t - t0:.3f} s (limit "
                         f"{limits[ch]:g} s)")
    return found
