"""What the daemon's services use of the rest of the daemon, as narrow typed protocols.

The services (the night's sequencer, centring, Nayuta following) are given their collaborators
by the composition root (``daemon.compose``) instead of looking them up on the observatory. Each
protocol is the little a service reads or commands; the :class:`~tenmon.daemon.observatory.
Observatory` satisfies the observatory-side ones structurally (it is passed for them today),
and tests can pass a small stand-in for any one of them.

- :class:`Events`: the event log (``emit``).
- :class:`SafetyView`: the verdict, the supervisor, the emergency latch, shutdown, the reopen
  hold-off. Read only: services never act on safety, they stop when it says so.
- :class:`Enclosure`: dome, slit and cover states and their commands (each refuses, with
  ``CommandRefused``, what is unsafe).
- :class:`MountControl`: the mount's state and its commands.
- :class:`ExposureGate`: whether an exposure may start now (the storage watch).
- :class:`FrameResults`: a frame service's context and listeners.
- :class:`TelescopeClaim`: something else that has the telescope for now (a centring job).
- :class:`ServiceObservatory`: all of the observatory-side ones with the clock, the config and
  the store, as the sequencer and centring take it.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from tenmon.core.clock import Clock


class Events(Protocol):
    def emit(self, level: str, kind: str, message: str, **data: Any) -> None: ...


class Verdict(Protocol):
    safe: bool
    reasons: tuple[str, ...]


class Supervisor(Protocol):
    closing: bool

    def describe(self) -> str: ...

    def in_safe_state(self) -> bool: ...


class SafetyView(Protocol):
    verdict: Verdict
    supervisor: Supervisor
    emergency: str | None
    shutting_down: bool

    def hold_off_remaining_s(self) -> float: ...


class Enclosure(Protocol):
    dome: Any   # drivers.dome.RelayDome: state, azimuth_deg, target_deg, slewing
    slit: Any   # .state: ShutterState
    cover: Any  # .state: ShutterState

    def dome_goto(self, azimuth_deg: float) -> None: ...

    def dome_park(self) -> None: ...

    def slit_open(self) -> None: ...

    def slit_close(self) -> None: ...

    def cover_open(self) -> None: ...

    def cover_close(self) -> None: ...


class MountControl(Protocol):
    mount: Any  # drivers.base.Mount: state, error, ra_deg, dec_deg, sync()

    def mount_goto(self, ra_deg: float, dec_deg: float) -> None: ...

    def mount_park(self) -> None: ...


@runtime_checkable
class ExposureGate(Protocol):
    def exposure_refusal(self) -> str | None: ...


class FrameResults(Protocol):
    listeners: list[Callable[[Any], None]]

    def set_context(self, path: Any, context: dict[str, Any]) -> None: ...


class TelescopeClaim(Protocol):
    @property
    def busy(self) -> bool: ...


class StateStore(Protocol):
    def get_state(self, key: str, default: Any = None) -> Any: ...

    def set_state(self, key: str, value: Any) -> None: ...


class ServiceObservatory(Events, SafetyView, Enclosure, MountControl, Protocol):
    """The observatory as a service uses it: commands, states, safety, events, clock, config."""

    clock: Clock
    config: Any   # config.models.TenmonConfig
    store: StateStore


__all__ = ["Events", "SafetyView", "Enclosure", "MountControl", "ExposureGate",
           "FrameResults", "TelescopeClaim", "StateStore", "ServiceObservatory"]
