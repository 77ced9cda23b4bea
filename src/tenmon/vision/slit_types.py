"""Types shared by the slit encoder and the drivers: a slit reading and the IR camera calibration."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

#: Slit states a reading can carry (DESIGN.md). ``opening``/``closing`` come from the tracker.
SLIT_STATES = ("open", "closed", "partial", "opening", "closing", "unknown")


@dataclass(frozen=True)
class SlitReading:
    """One reading of the optical encoder.

    ``azimuth_deg`` is the slit centre's azimuth (north 0, east 90) and ``open_fraction`` the
    uncovered fraction of the slit's length from the horizon end; both ``None`` when unknown.
    ``confidence`` is in 0..1; ``state`` is one of :data:`SLIT_STATES`.
    """

    time: datetime
    azimuth_deg: float | None
    open_fraction: float | None
    state: str
    confidence: float

    def __post_init__(self):
        if self.state not in SLIT_STATES:
            raise ValueError(f"slit state {self.state!r} is not one of {SLIT_STATES}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence} is outside 0..1")

    @classmethod
    def unknown(cls, time: datetime) -> "SlitReading":
        return cls(time=time, azimuth_deg=None, open_fraction=None, state="unknown", confidence=0.0)


@dataclass(frozen=True)
class Calibration:
    """IR camera calibration (keys as in DESIGN.md)."""

    center_x: float
    center_y: float
    horizon_radius: float
    north_angle_deg: float = 0.0
    azimuth_sense: int = 1

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Calibration":
        return cls(**{k: data[k] for k in ("center_x", "center_y", "horizon_radius",
                                           "north_angle_deg", "azimuth_sense") if k in data})

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        return cls.from_json(json.loads(Path(path).read_text()))
