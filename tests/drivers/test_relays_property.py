"""Property test: random command sequences, checked at the wire, never break interlocks or limits.

Hypothesis drives each backend with random sequences of ``set`` / ``all_off`` / ``is_on`` /
control ticks (clock advance + ``service()``, as the daemon's loop does) / ``connect`` /
``disconnect`` and, where a board can be unplugged, ``unplug`` / ``replug``. What the relays did
is decoded from the wire alone: the LCUS frames the fake port received (stamped with the fake
clock's time), gpiozero mock pin history, the HID board's mask log, the simulated coils. Then:

* no interlock pair is ever energized together, after any single wire-level change;
* no relay is energized longer than its maximum on-time plus one control tick (plus the frame
  gaps of the paced LCUS variant, whose writes take clock time);
* the wire never has a relay energized that the driver does not think is on, and after a
  control tick the wire and the driver agree exactly.

The last test breaks a bank on purpose and checks that the same property finds it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings, target
from hypothesis import strategies as st
from relay_rigs import BUILDERS, lcus_rig, wire_violations

from tenmon.core.clock import FakeClock
from tenmon.core.errors import DeviceDisconnected, DeviceNotFound, InterlockError

CHANNELS = 6
PAIRS = [(1, 2), (3, 4), (5, 6)]
MAX_ON_S = 3.0
PER_CHANNEL = {1: 5.0, 3: 1.5}
LIMITS = {ch: PER_CHANNEL.get(ch, MAX_ON_S) for ch in range(1, CHANNELS + 1)}
TICK_S = 0.5          # the largest control-loop period in these runs
FRAME_GAP_S = 0.05    # the paced LCUS variant


def _set():
    return st.tuples(st.just("set"), st.integers(1, CHANNELS), st.booleans())


def ops_strategy(unplug: bool):
    # Repeated entries weight the draw: mostly switching and time passing (so limits trip and
    # boards come back), sometimes the rarer verbs.
    tick = st.tuples(st.just("tick"), st.floats(0.0, TICK_S))
    run = st.tuples(st.just("run"), st.integers(1, 20))
    rare = [st.tuples(st.just("connect")), st.tuples(st.just("disconnect")),
            st.tuples(st.just("cycle"))]
    if unplug:
        pull = st.tuples(st.just("pull"), st.integers(0, 16))
        rare += [st.tuples(st.just("unplug")), st.tuples(st.just("replug")), pull, pull, pull]
    common = [
        _set(), _set(), _set(), _set(), _set(), _set(), tick, tick, tick, run, run, run,
        st.tuples(st.just("all_off")),
        st.tuples(st.just("is_on"), st.integers(1, CHANNELS)),
        st.one_of(rare),
    ]
    return st.lists(st.one_of(common), min_size=10, max_size=80)


def build(kind: str, clock: FakeClock):
    kw = dict(channels=CHANNELS, interlocks=PAIRS, max_on_s=MAX_ON_S, per_channel=PER_CHANNEL)
    if kind == "lcus-paced":
        return lcus_rig(clock, frame_gap_s=FRAME_GAP_S, paced=True, reconnect_s=2.0, **kw)
    if kind == "lcus":
        return lcus_rig(clock, reconnect_s=2.0, **kw)
    return BUILDERS[kind](clock, **kw)


def run_sequence(rig, ops) -> list[str]:
    """Apply ``ops`` to the rig; return the wire-level violations found (empty when none)."""
    bank, clock = rig.bank, rig.clock
    problems: list[str] = []

    def tick(dt: float) -> None:
        clock.advance(dt)
        bank.service()

    bank.connect()
    for op in ops:
        name = op[0]
        try:
            if name == "set":
                bank.set(op[1], op[2])
            elif name == "all_off":
                bank.all_off()
            elif name == "is_on":
                bank.is_on(op[1])
            elif name == "tick":
                tick(op[1])
            elif name == "run":
                for _ in range(op[1]):
                    tick(TICK_S)
            elif name == "connect":
                bank.connect()
            elif name == "disconnect":
                bank.disconnect()
            elif name == "cycle":  # the daemon restarting its drivers
                bank.disconnect()
                bank.connect()
            elif name == "pull":  # cable out for a few ticks, then back in
                rig.unplug()
                for _ in range(op[1]):
                    tick(TICK_S)
                rig.replug()
            elif name == "unplug":
                rig.unplug()
            elif name == "replug":
                rig.replug()
        except (InterlockError, DeviceDisconnected, DeviceNotFound):
            pass
        commanded = bank.commanded()
        physical = rig.physical_all()
        behind = [ch for ch in physical if physical[ch] and not commanded[ch]]
        if behind:
            problems.append(f"after {op}: relays {behind} energized but not commanded")
        if name in ("tick", "run") and bank.connected and physical != commanded:
            problems.append(f"after {op}: wire {physical} != driver {commanded}")
    slack = TICK_S + ((2 * CHANNELS + 1) * FRAME_GAP_S if rig.extra.get("paced") else 0.0)
    problems += wire_violations(rig.transitions(), channels=CHANNELS, pairs=PAIRS,
                                limits=LIMITS, slack_s=slack, end_t=clock.monotonic())
    return problems


def longest_on_ratio(transitions, end_t: float) -> float:
    """The longest on-period on the wire as a fraction of its channel's limit."""
    since: dict[int, float] = {}
    best = 0.0
    for t, ch, on in transitions:
        if on and ch not in since:
            since[ch] = t
        elif not on and ch in since:
            best = max(best, (t - since.pop(ch)) / LIMITS[ch])
    for ch, t0 in since.items():
        best = max(best, (end_t - t0) / LIMITS[ch])
    return best


SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

KINDS = ["lcus", "lcus-paced", "gpio", "gpio-active-low", "hid", "sim"]
UNPLUGGABLE = {"lcus", "lcus-paced", "hid", "sim"}


@pytest.mark.parametrize("kind", KINDS)
def test_random_sequences_keep_interlocks_and_limits(kind):
    @SETTINGS
    @given(ops=ops_strategy(kind in UNPLUGGABLE))
    def prop(ops):
        rig = build(kind, FakeClock())
        if kind == "lcus-paced":
            rig.extra["paced"] = True
        try:
            assert run_sequence(rig, ops) == []
            # Steer the search toward relays held on up to their limits.
            target(longest_on_ratio(rig.transitions(), rig.clock.monotonic()),
                   label="longest on-time / limit")
        finally:
            rig.bank.disconnect()

    prop()


def test_the_sequences_do_reach_the_limits_and_the_interlocks():
    """Guard against a vacuous property: typical sequences do trip limits and interlocks."""
    rig = build("sim", FakeClock())
    ops = [("set", 1, True), ("set", 2, True), ("set", 3, True), ("run", 4), ("unplug",),
           ("run", 6), ("replug",), ("run", 6), ("set", 4, True)]
    assert run_sequence(rig, ops) == []
    kinds = [e.kind for e in rig.bank.events()]
    assert "max-on-time" in kinds and "board-lost" in kinds and "reconnected" in kinds
    assert rig.bank.is_on(4)


def test_checker_flags_hand_made_violations():
    trace = [(0.0, 1, True), (1.0, 2, True), (1.5, 1, False), (1.5, 2, False),
             (2.0, 3, True), (9.0, 3, False)]
    found = wire_violations(trace, channels=CHANNELS, pairs=PAIRS, limits=LIMITS,
                            slack_s=TICK_S, end_t=10.0)
    assert found == ["channels 1 and 2 both on at t=1.000",
                     "channel 3 on for 7.000 s (limit 1.5 s) until t=9.000"]


@pytest.mark.parametrize("sabotage", ["interlock", "limit"])
def test_property_finds_a_broken_bank(sabotage):
    """Break the bank's own bookkeeping: hypothesis must find a wire-level counterexample."""

    @settings(max_examples=300, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow])
    @given(ops=ops_strategy(unplug=False))
    def prop(ops):
        rig = build("lcus", FakeClock())
        if sabotage == "interlock":
            rig.bank._partners = {ch: set() for ch in rig.bank._partners}
        else:
            rig.bank._limits = {ch: 1e9 for ch in rig.bank._limits}
        assert run_sequence(rig, ops) == []

    with pytest.raises(AssertionError):
        prop()
