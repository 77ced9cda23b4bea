"""One small phase machine for the daemon's services: declared transitions, safety as the guard.

The night's sequencer, the centring service and Nayuta following each advance through phases
on the control tick. Each builds a :class:`PhaseMachine` with

- ``transitions``: for every phase, the phases it may go to. Anything else raises
  :class:`IllegalTransition` (a bug, never an operator's doing): the table is the picture of
  the service, checked on every move.
- ``safe``: the phases that move nothing toward observing (idle, waiting, holding, closing,
  done, or pure computation). Going to one of them is always allowed, whatever safety says:
  the way out of trouble is never blocked.
- ``guard``: consulted on every other transition (and on staying in such a phase), before the
  phase changes. It returns ``None`` when the move may go on, else the reason it may not
  (unsafe weather, the supervisor closing, an emergency stop...). A refused move raises
  :class:`UnsafeTransition` (a ``CommandRefused`` with code ``unsafe``) and leaves the phase
  as it was; the service catches it where it runs (its tick, its frame listener) and takes its
  safety path (hold, fail the job), which only goes to safe phases.

The services keep their own dispatch (``handlers``: a phase's tick function), but read the
phase from the machine: ``machine.handler(obj)`` finds ``obj._tick_<phase>``.
"""

from __future__ import annotations

import enum
import logging
from typing import Callable, Generic, Hashable, Iterable, Mapping, TypeVar

from tenmon.core.errors import CommandRefused

log = logging.getLogger(__name__)

P = TypeVar("P", bound=Hashable)

#: A guard: ``None`` when a move into an observing phase may go on, else why not.
Guard = Callable[[], "str | None"]


class IllegalTransition(RuntimeError):
    """A service asked for a transition its table does not declare (a bug in the service)."""

    def __init__(self, machine: str, src, dst):
        super().__init__(f"{machine}: {_name(src)} -> {_name(dst)} is not a declared transition")
        self.machine, self.src, self.dst = machine, src, dst


class UnsafeTransition(CommandRefused):
    """The guard refused a move into an observing phase; ``reason`` says why."""

    def __init__(self, machine: str, src, dst, reason: str):
        super().__init__("unsafe", f"{machine}: {_name(src)} -> {_name(dst)} refused: {reason}")
        self.machine, self.src, self.dst, self.reason = machine, src, dst, reason


def _name(phase) -> str:
    return phase.value if isinstance(phase, enum.Enum) else str(phase)


class PhaseMachine(Generic[P]):
    """The phase of one service, moved only along declared transitions (see the module docstring).

    Args:
        name: the service's name (in errors and logs).
        initial: the first phase (need not be safe; it is not guarded).
        transitions: phase -> the phases it may go to. Every phase named anywhere must have an
            entry (an empty one for a phase that is left only by ``reset``).
        safe: phases entered without asking the guard.
        guard: see :data:`Guard`; ``None``: every move is allowed (only the table is checked).
        on_change: ``(old, new, why)`` after every change of phase (not when staying).

    Raises:
        ValueError: the table names a phase without an entry, or ``initial`` has none.
    """

    def __init__(self, name: str, initial: P, transitions: Mapping[P, Iterable[P]], *,
                 safe: Iterable[P] = (), guard: Guard | None = None,
                 on_change: Callable[[P, P, str], None] | None = None):
        self.name = name
        self.transitions: dict[P, frozenset[P]] = {k: frozenset(v)
                                                   for k, v in transitions.items()}
        self.safe: frozenset[P] = frozenset(safe)
        named = set(self.transitions) | self.safe | {initial}
        for targets in self.transitions.values():
            named |= targets
        missing = named - set(self.transitions)
        if missing:
            raise ValueError(f"{name}: phases without a transitions entry: "
                             f"{sorted(_name(p) for p in missing)}")
        self.guard = guard
        self.on_change = on_change
        self._state: P = initial

    @property
    def state(self) -> P:
        return self._state

    def allowed(self, dst: P) -> bool:
        """``dst`` is declared from the current phase (staying is always declared)."""
        return dst == self._state or dst in self.transitions[self._state]

    def check(self, dst: P) -> None:
        """Raise what :meth:`to` would raise for ``dst``, without moving.

        Raises:
            IllegalTransition: not declared.
            UnsafeTransition: the guard refuses.
        """
        if not self.allowed(dst):
            raise IllegalTransition(self.name, self._state, dst)
        if dst not in self.safe and self.guard is not None:
            reason = self.guard()
            if reason is not None:
                raise UnsafeTransition(self.name, self._state, dst, reason)

    def to(self, dst: P, why: str = "") -> bool:
        """Move to ``dst``; returns whether the phase changed (``False`` when staying).

        Raises:
            IllegalTransition: ``dst`` is not declared from the current phase.
            UnsafeTransition: ``dst`` is not a safe phase and the guard refuses (nothing moves).
        """
        self.check(dst)
        src = self._state
        if src == dst:
            return False
        self._state = dst
        if self.on_change is not None:
            self.on_change(src, dst, why)
        return True

    def reset(self, phase: P) -> None:
        """Set the phase without the table (a new job or run starting from scratch). Only a safe
        phase (or the initial one of a fresh machine) may be set this way.

        Raises:
            ValueError: ``phase`` is not safe.
        """
        if phase not in self.safe:
            raise ValueError(f"{self.name}: reset only to a safe phase, not {_name(phase)}")
        self._state = phase

    def force(self, phase: P) -> None:
        """Set the phase outright, without the table or the guard: for tests that stage a
        phase (never called by a service's own logic).

        Raises:
            ValueError: ``phase`` is not a phase of this machine.
        """
        if phase not in self.transitions:
            raise ValueError(f"{self.name}: no phase {_name(phase)}")
        self._state = phase

    def handler(self, obj, prefix: str = "_tick_") -> Callable:
        """``obj``'s method for the current phase (``_tick_<phase>``)."""
        return getattr(obj, prefix + _name(self._state))

    def __repr__(self) -> str:
        return f"PhaseMachine({self.name!r}, {_name(self._state)})"


__all__ = ["PhaseMachine", "IllegalTransition", "UnsafeTransition", "Guard"]
