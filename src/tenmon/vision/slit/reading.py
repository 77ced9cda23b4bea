"""Value types of the optical slit encoder: the camera calibration and one slit reading."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from tenmon.core.atomicfile import atomic_write_text as _atomic_write_text, usual_mode
from tenmon.core.errors import ConfigError

#: Slit states a reading can carry (DESIGN.md). Single frames give the first four;
#: the tracker adds ``opening`` and ``closing``.
STATES = ("open", "closed", "partial", "opening", "closing", "unknown")
SLIT_STATES = STATES  # the name the drivers import
FRAME_STATES = ("open", "closed", "partial", "unknown")

#: Fisheye projections the camera model knows (radius as a function of the off-axis angle).
PROJECTIONS = ("equidistant", "equisolid", "stereographic", "orthographic")

#: Open fractions at or below this are ``closed``, at or above ``1 - this`` ``open``.
STATE_TOLERANCE = 0.02


def state_for_fraction(open_fraction: float, tolerance: float = STATE_TOLERANCE) -> str:
    """Name the single-frame state of a slit open by ``open_fraction`` (0..1).

    ``closed`` at or below ``tolerance``, ``open`` at or above ``1 - tolerance``, else ``partial``.
    """
    if open_fraction <= tolerance:
        return "closed"
    if open_fraction >= 1.0 - tolerance:
        return "open"
    return "partial"


@dataclass(frozen=True)
class Calibration:
    """Where the IR camera looks: the mapping between image pixels and dome directions.

    The five keys of DESIGN.md, plus optional refinements that default to the plain model:

    - ``center_x``, ``center_y``: pixel (x right, y down) where the zenith is imaged.
    - ``horizon_radius``: pixels from that centre to elevation 0.
    - ``north_angle_deg``: image angle, from image-up clockwise as displayed, of azimuth 0.
    - ``azimuth_sense``: +1 if azimuth grows clockwise in the displayed image, -1 otherwise.
    - ``projection``: the lens's fisheye projection (``equidistant`` unless known otherwise).
    - ``camera_offset_east``, ``camera_offset_north``, ``camera_offset_up``: the camera's
      position relative to the dome's centre, in dome radii (0 = at the centre). They remove the
      parallax of an off-centre camera; leave them 0 when unknown.
    """

    center_x: float
    center_y: float
    horizon_radius: float
    north_angle_deg: float = 0.0
    azimuth_sense: int = 1
    projection: str = "equidistant"
    camera_offset_east: float = 0.0
    camera_offset_north: float = 0.0
    camera_offset_up: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("center_x", "center_y", "horizon_radius", "north_angle_deg",
                     "camera_offset_east", "camera_offset_north", "camera_offset_up"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append((name, None, f"must be a finite number, got {value!r}"))
        if not problems and self.horizon_radius <= 0:
            problems.append(("horizon_radius", None, f"must be > 0 pixels, got {self.horizon_radius}"))
        if self.azimuth_sense not in (1, -1):
            problems.append(("azimuth_sense", None, f"must be +1 or -1, got {self.azimuth_sense!r}"))
        if self.projection not in PROJECTIONS:
            problems.append(("projection", None,
                             f"must be one of {', '.join(PROJECTIONS)}, got {self.projection!r}"))
        for name in ("camera_offset_east", "camera_offset_north", "camera_offset_up"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and abs(value) >= 0.5:
                problems.append((name, None, f"must be within +-0.5 dome radii, got {value}"))
        if problems:
            raise ConfigError("invalid IR camera calibration: "
                              + "; ".join(f"{k}: {m}" for k, _, m in problems), problems)

    # -- (de)serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The calibration as plain JSON/TOML values (the five keys first)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "calibration") -> "Calibration":
        """Build a calibration from a mapping of the keys above.

        Raises:
            ConfigError: a required key is missing, a key is unknown, or a value is invalid;
                the message names ``source`` and the key.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a calibration must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown calibration key(s) {', '.join(unknown)}",
                              [(k, None, "unknown key") for k in unknown])
        missing = [k for k in ("center_x", "center_y", "horizon_radius") if k not in data]
        if missing:
            raise ConfigError(f"{source}: missing calibration key(s) {', '.join(missing)}",
                              [(k, None, "missing") for k in missing])
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "projection":
                kwargs[key] = str(value)
            elif key == "azimuth_sense":
                if not isinstance(value, (int, float)) or value not in (1, -1):
                    raise ConfigError(f"{source}: azimuth_sense must be +1 or -1, got {value!r}",
                                      [(key, None, "must be +1 or -1")])
                kwargs[key] = int(value)
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{source}: {key} must be a number, got {value!r}",
                                      [(key, None, "must be a number")])
                kwargs[key] = float(value)
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}", exc.problems) from None

    def to_json(self) -> dict[str, Any]:
        """Alias of :meth:`to_dict` (the name the drivers use)."""
        return self.to_dict()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Calibration":
        """Alias of :meth:`from_dict` (the name the drivers use)."""
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Calibration":
        """Read a calibration JSON file (one calibration object).

        Raises:
            ConfigError: the file is missing, not JSON, or not a valid calibration.
        """
        data = load_json(path)
        return cls.from_dict(data, source=str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the calibration as JSON, atomically (temporary name, then rename)."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    def to_toml(self, table: str = "encoder.calibration") -> str:
        """The calibration as a TOML table snippet, for pasting into the site config."""
        lines = [f"[{table}]"]
        for key, value in self.to_dict().items():
            if isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            elif isinstance(value, int):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f"{key} = {round(float(value), 4)!r}")
        return "\n".join(lines) + "\n"

    def scaled(self, factor: float) -> "Calibration":
        """The same calibration for the image resized by ``factor`` (pixel keys scale)."""
        return replace(self, center_x=(self.center_x + 0.5) * factor - 0.5,
                       center_y=(self.center_y + 0.5) * factor - 0.5,
                       horizon_radius=self.horizon_radius * factor)


@dataclass(frozen=True)
class SlitReading:
    """One reading of the slit.

    ``azimuth_deg``: the slit centre's azimuth (north 0, east 90), ``None`` when unknown.
    ``open_fraction``: uncovered fraction of the slit's length from the horizon end (0..1),
    ``None`` when unknown. ``state``: one of :data:`STATES`. ``confidence``: 0..1.
    A reading with an azimuth and the state ``unknown`` found the slit but could not tell its
    state (the telescope hides the part that tells it); its ``open_fraction`` is ``None``.
    ``source`` says which estimator produced it (``model``, ``model+edges`` (a faint box confirmed
    by both slit edges), ``model+classical``, ``classical``, ``tracker``, ``none``);
    ``details`` carries estimator diagnostics (never needed by callers).
    """

    time: datetime
    azimuth_deg: float | None
    open_fraction: float | None
    state: str
    confidence: float
    source: str = "none"
    angular_velocity_deg_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown slit state {self.state!r}; expected one of {STATES}")
        if self.time.tzinfo is None:
            raise ValueError("SlitReading.time must be timezone-aware (UTC)")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be within 0..1, got {self.confidence}")

    @classmethod
    def unknown(cls, time: datetime, *, source: str = "none", confidence: float = 0.0,
                **details: Any) -> "SlitReading":
        """A reading that says honestly that the slit cannot be read."""
        return cls(time=time, azimuth_deg=None, open_fraction=None, state="unknown",
                   confidence=float(confidence), source=source, details=dict(details))

    @property
    def known(self) -> bool:
        """True when the reading carries an azimuth and a state other than ``unknown``."""
        return self.state != "unknown" and self.azimuth_deg is not None

    @property
    def azimuth_known(self) -> bool:
        """True when the reading carries an azimuth (its state may still be ``unknown``)."""
        return self.azimuth_deg is not None

    def to_json_dict(self) -> dict[str, Any]:
        """Stable JSON form (time as ISO 8601 UTC)."""
        return {
            "time": self.time.astimezone(timezone.utc).isoformat(),
            "azimuth_deg": None if self.azimuth_deg is None else round(float(self.azimuth_deg), 3),
            "open_fraction": None if self.open_fraction is None else round(float(self.open_fraction), 3),
            "state": self.state,
            "confidence": round(float(self.confidence), 3),
            "source": self.source,
            "angular_velocity_deg_s": (None if self.angular_velocity_deg_s is None
                                       else round(float(self.angular_velocity_deg_s), 3)),
        }


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, naming the file in the error.

    Raises:
        ConfigError: the file is missing or not valid JSON.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON (line {exc.lineno}: {exc.msg})",
                          [("", exc.lineno, exc.msg)]) from None


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename (the
    file gets the usual mode, as ``open()`` would give it)."""
    _atomic_write_text(path, text, mode=usual_mode())


def wrap360(angle_deg: float) -> float:
    """An angle in degrees wrapped to [0, 360)."""
    a = math.fmod(angle_deg, 360.0)
    if a < 0:
        a += 360.0
    return 0.0 if a >= 360.0 else a


def angle_diff(a_deg: float, b_deg: float) -> float:
    """Signed smallest difference ``a - b`` in degrees, in (-180, 180]."""
    d = math.fmod(a_deg - b_deg + 180.0, 360.0)
    if d <= 0:
        d += 360.0
    return d - 180.0
