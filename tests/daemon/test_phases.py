"""The services' phase machine: declared transitions only, safety guarding every observing move."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from tenmon.core.clock import FakeClock
from tenmon.daemon.services import centring, nayuta as nayuta_service, sequencer
from tenmon.config.services import DomeGeometry, SequencerSettings
from tenmon.daemon.services.phases import IllegalTransition, PhaseMachine, UnsafeTransition
from tenmon.daemon.services.sequencer import Phase, Sequencer
from tenmon.core.errors import CommandRefused
from tenmon.config.vision import CenteringSettings


class P(str, enum.Enum):
    IDLE = "idle"
    OPENING = "opening"
    OBSERVING = "observing"
    HOLD = "hold"


TABLE = {P.IDLE: (P.OPENING,), P.OPENING: (P.OBSERVING, P.HOLD),
         P.OBSERVING: (P.HOLD, P.IDLE), P.HOLD: (P.OPENING, P.IDLE)}


def machine(reason=None, changes=None):
    box = {"reason": reason}
    m = PhaseMachine("test", P.IDLE, TABLE, safe=(P.IDLE, P.HOLD), guard=lambda: box["reason"],
                     on_change=(lambda a, b, why: changes.append((a, b, why)))
                     if changes is not None else None)
    return m, box


def test_declared_transitions_move_and_report():
    changes = []
    m, _ = machine(changes=changes)
    assert m.to(P.OPENING, "dark") is True
    assert m.to(P.OBSERVING) is True
    assert m.to(P.OBSERVING) is False  # staying is always declared, and is not a change
    assert m.state == P.OBSERVING
    assert changes == [(P.IDLE, P.OPENING, "dark"), (P.OPENING, P.OBSERVING, "")]


def test_an_undeclared_transition_raises_and_does_not_move():
    m, _ = machine()
    with pytest.raises(IllegalTransition, match="idle -> observing"):
        m.to(P.OBSERVING)
    assert m.state == P.IDLE
    assert not m.allowed(P.OBSERVING) and m.allowed(P.OPENING) and m.allowed(P.IDLE)


def test_an_unsafe_guard_stops_a_transition_into_an_observing_phase():
    m, box = machine()
    m.to(P.OPENING)
    box["reason"] = "rain"
    with pytest.raises(UnsafeTransition) as exc:
        m.to(P.OBSERVING)
    assert m.state == P.OPENING
    assert exc.value.reason == "rain" and exc.value.code == "unsafe"
    assert isinstance(exc.value, CommandRefused)  # the API answers it as a refusal (409)
    with pytest.raises(UnsafeTransition):  # staying in an observing phase is guarded too
        m.to(P.OPENING)
    m.to(P.HOLD, "rain")  # the way out is never blocked
    assert m.state == P.HOLD
    with pytest.raises(UnsafeTransition):
        m.to(P.OPENING)
    box["reason"] = None
    m.to(P.OPENING)
    assert m.state == P.OPENING


def test_the_guard_is_not_asked_for_safe_phases():
    calls = []
    m = PhaseMachine("test", P.IDLE, TABLE, safe=(P.IDLE, P.HOLD),
                     guard=lambda: calls.append(1) or "unsafe")
    with pytest.raises(UnsafeTransition):
        m.to(P.OPENING)
    assert calls == [1]
    m.reset(P.HOLD)
    m.to(P.IDLE)
    assert calls == [1]


def test_reset_only_to_a_safe_phase():
    m, _ = machine()
    with pytest.raises(ValueError):
        m.reset(P.OBSERVING)
    m.reset(P.HOLD)
    assert m.state == P.HOLD


def test_a_table_naming_a_phase_without_an_entry_is_refused():
    with pytest.raises(ValueError, match="without a transitions entry"):
        PhaseMachine("bad", "a", {"a": ("b",)})


def test_handler_dispatches_on_the_phase():
    class Svc:
        def _tick_idle(self):
            return "idle tick"

    m, _ = machine()
    assert m.handler(Svc())() == "idle tick"


@pytest.mark.parametrize("table, safe, initial", [
    (sequencer.TRANSITIONS, sequencer.SAFE, Phase.IDLE),
    (centring.TRANSITIONS, ("idle",), "idle"),
    (nayuta_service.TRANSITIONS, nayuta_service.SAFE, "idle"),
])
def test_the_services_tables_are_complete(table, safe, initial):
    PhaseMachine("svc", initial, table, safe=safe)  # every phase named has an entry


def test_the_services_every_phase_has_a_tick():
    for ph in Phase:
        assert callable(getattr(Sequencer, f"_tick_{ph.value}"))
    for ph in centring.TRANSITIONS:
        if ph != "idle":
            assert callable(getattr(centring.CentringService, f"_tick_{ph}"))
    for ph in nayuta_service.TRANSITIONS:
        if ph != "idle":
            assert callable(getattr(nayuta_service.NayutaService, f"_tick_{ph}"))


def test_centring_and_nayuta_guard_their_moves():
    m = PhaseMachine("centring", "idle", centring.TRANSITIONS, safe=("idle",),
                     guard=lambda: "unsafe: rain")
    with pytest.raises(UnsafeTransition):
        m.to("slewing")
    with pytest.raises(IllegalTransition):
        m.to("solving")
    n = PhaseMachine("nayuta", "idle", nayuta_service.TRANSITIONS, safe=nayuta_service.SAFE,
                     guard=lambda: "unsafe: rain")
    n.to("frame")
    n.to("locating")  # locating a frame moves nothing: allowed in the rain
    with pytest.raises(UnsafeTransition):
        n.to("centring")  # centring moves the telescope
    n.to("idle")


# ---------------------------------------------------------------------------- the sequencer


class _Obs:
    """The little of an observatory the sequencer's transitions read."""

    def __init__(self):
        self.clock = FakeClock(datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc))
        self.config = SimpleNamespace(site=SimpleNamespace(latitude_deg=34.6,
                                                           longitude_deg=133.6))
        self.verdict = SimpleNamespace(safe=True, reasons=())
        self.supervisor = SimpleNamespace(closing=False)
        self.emergency = None
        self.events = []

    def emit(self, level, kind, message, **data):
        self.events.append((level, kind, message))

    def slit_close(self):
        self.events.append(("command", "slit", "close"))

    def cover_close(self):
        self.events.append(("command", "cover", "close"))

    def mount_park(self):
        self.events.append(("command", "mount", "park"))

    def dome_park(self):
        self.events.append(("command", "dome", "park"))


def _sequencer(obs):
    noop = lambda *a, **k: None  # noqa: E731
    return Sequencer(obs, camera=None, geometry=DomeGeometry(), settings=SequencerSettings(),
                     centering=CenteringSettings(), log_event=noop, on_block_done=noop,
                     on_block_failed=noop, on_weather_close=noop)


def test_the_sequencer_refuses_undeclared_and_unsafe_moves():
    obs = _Obs()
    seq = _sequencer(obs)
    assert seq.phase == Phase.IDLE
    with pytest.raises(IllegalTransition):
        seq._to(Phase.EXPOSING, "straight to exposing")
    seq.arm("dusk")
    assert seq.phase == Phase.ARMED
    seq._to(Phase.OPENING, "opening")
    obs.verdict = SimpleNamespace(safe=False, reasons=("rain",))
    with pytest.raises(UnsafeTransition, match="rain"):
        seq._to(Phase.READY, "open")
    assert seq.phase == Phase.OPENING
    seq._to(Phase.HOLD, "safety close")
    assert seq.phase == Phase.HOLD
    assert ("info", "sequencer", "hold: safety close") in obs.events
    obs.verdict = SimpleNamespace(safe=True, reasons=())
    obs.emergency = "operator"
    with pytest.raises(UnsafeTransition, match="emergency stop"):
        seq._to(Phase.OPENING, "reopen")
    seq.end_night("dawn")  # closing is safe: never refused
    assert seq.phase == Phase.CLOSING
    assert ("command", "slit", "close") in obs.events


def test_force_stages_a_phase_for_tests_only_among_known_phases():
    m, box = machine()
    box["reason"] = "rain"
    m.force(P.OBSERVING)  # no table, no guard: a test staging a phase
    assert m.state == P.OBSERVING
    with pytest.raises(ValueError):
        m.force("nowhere")
    seq = _sequencer(_Obs())
    seq.phase = Phase.EXPOSING
    assert seq.phase == Phase.EXPOSING and seq.machine.state == Phase.EXPOSING
