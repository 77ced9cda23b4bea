"""Labels of IR frames the daemon knows at no cost to observing, and the labels file.

The labels file (``LABELS.jsonl``) has one JSON object a line::

    {"image": PATH, "state": "open"|"closed"|"partial"|"moving"|null,
     "open_fraction": number|null, "azimuth_deg": number|null}

``image`` may be relative to the labels file. Any label may be null (unknown); extra keys
(``time``, ``why``) are kept for people and ignored by the readers.

:class:`SiteLabeller` is pure: the daemon feeds it what its relays and limits did (``observe``,
clock seconds) and asks what is known at a frame's time (``label``). What it knows:

- the slit's state after a *full* motion (the relay ran at least the travel time: the shutter is
  at its end stop, whatever the encoder says), or after a close/open the driver verified;
- the open fraction after a *timed* partial move that started from a known end
  (start +- run time / travel time);
- ``moving`` while a slit relay runs;
- the dome's azimuth after a homing (``homed``: a home sensor or a marker a site has) and after
  timed rotations from there (relay on-time through the dome's spin-up and coast model), with an
  uncertainty that grows with every rotation; no azimuth while the dome turns or coasts;
- pseudo-labels: the encoder's own confident ``open``/``closed`` where the relay history agrees
  (the last slit motion was an open, resp. a close, and the shutter has not moved since).
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tenmon.core.errors import ConfigError

#: Label states (``moving``: a slit relay was running when the frame was taken).
LABEL_STATES = ("open", "closed", "partial", "moving")


@dataclass(frozen=True)
class FrameLabel:
    """One labelled frame: the image path and what is known of it (None: unknown)."""

    image: Path
    state: str | None = None
    open_fraction: float | None = None
    azimuth_deg: float | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def to_json_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        img = self.image
        if relative_to is not None:
            try:
                img = Path(os.path.relpath(self.image, relative_to))
            except ValueError:
                pass
        d = {"image": str(img), "state": self.state,
             "open_fraction": None if self.open_fraction is None else round(float(self.open_fraction), 4),
             "azimuth_deg": None if self.azimuth_deg is None else round(float(self.azimuth_deg) % 360.0, 3)}
        d.update(self.extra)
        return d

    @property
    def empty(self) -> bool:
        return self.state is None and self.open_fraction is None and self.azimuth_deg is None


def parse_label(obj: Any, base: Path, where: str) -> FrameLabel:
    """A :class:`FrameLabel` from one decoded JSON line (``where`` names it in errors).

    Raises:
        ConfigError: a missing image key, an unknown state, a number out of range.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("image"), str) or not obj["image"]:
        raise ConfigError(f"{where}: expected an object with an \"image\" path")
    state = obj.get("state")
    if state is not None and state not in LABEL_STATES:
        raise ConfigError(f"{where}: state must be one of {', '.join(LABEL_STATES)} or null, got {state!r}")
    frac = obj.get("open_fraction")
    if frac is not None:
        if not isinstance(frac, (int, float)) or not 0.0 <= float(frac) <= 1.0:
            raise ConfigError(f"{where}: open_fraction must be a number in 0..1 or null, got {frac!r}")
        frac = float(frac)
    az = obj.get("azimuth_deg")
    if az is not None:
        if not isinstance(az, (int, float)) or not math.isfinite(float(az)):
            raise ConfigError(f"{where}: azimuth_deg must be a number or null, got {az!r}")
        az = float(az) % 360.0
    img = Path(obj["image"])
    if not img.is_absolute():
        img = base / img
    extra = {k: v for k, v in obj.items() if k not in ("image", "state", "open_fraction", "azimuth_deg")}
    return FrameLabel(img, state, frac, az, extra)


def read_labels(path: str | Path) -> list[FrameLabel]:
    """Read a labels file (see the module docstring); relative images resolve beside it.

    Raises:
        ConfigError: the file is missing, or a line is not a valid label (the line is named).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such labels file")
    out = []
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{p}:{n}: not JSON: {exc.msg}") from None
            out.append(parse_label(obj, p.parent, f"{p}:{n}"))
    return out


class LabelWriter:
    """Writes labelled frames into a folder: ``frames/NAME.png`` and a line in ``labels.jsonl``.

    Each image is written under a temporary name and renamed before its line is appended, so a
    line never names a half-written image. Thread-safe.
    """

    def __init__(self, folder: str | Path, labels_name: str = "labels.jsonl"):
        self.folder = Path(folder)
        self.frames = self.folder / "frames"
        self.frames.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / labels_name
        self._lock = threading.Lock()
        self.written = 0

    def write(self, name: str, image, label: FrameLabel) -> FrameLabel:
        """Write ``image`` as ``frames/name`` with ``label`` (its image path is replaced)."""
        from tenmon.vision.images import write_image

        img_path = write_image(self.frames / name, image)
        lab = FrameLabel(img_path, label.state, label.open_fraction, label.azimuth_deg, dict(label.extra))
        line = json.dumps(lab.to_json_dict(relative_to=self.folder))
        with self._lock:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
            self.written += 1
        return lab


def write_labels(path: str | Path, labels: Iterable[FrameLabel]) -> None:
    """Write a whole labels file (image paths relative to its folder where possible)."""
    from tenmon.vision.slit.reading import atomic_write_text

    p = Path(path)
    text = "".join(json.dumps(lab.to_json_dict(relative_to=p.parent)) + "\n" for lab in labels)
    atomic_write_text(p, text)


# --------------------------------------------------------------------------- the labeller


@dataclass(frozen=True)
class LabellerSettings:
    """What the labeller needs to know of the dome and the slit (from the site config)."""

    travel_time_s: float = 60.0           # slit: full travel, closed to open
    dome_speed_deg_s: float = 3.0         # dome: full rotation speed
    dome_spinup_s: float = 1.5            # dome: first-order spin-up time constant
    dome_coast_s: float = 1.0             # dome: coast distance / speed after the motor stops
    home_sd_deg: float = 0.3              # azimuth uncertainty right after homing
    rotation_sd_fraction: float = 0.02    # timed rotation: uncertainty per degree turned
    max_azimuth_sd_deg: float = 1.0       # no azimuth label above this uncertainty
    settle_s: float = 3.0                 # the dome coasts this long after its relay opens
    pseudo_confidence: float = 0.9        # encoder readings at least this sure may be labels
    pseudo_state_confidence: float = 0.99  # ... with a band state probability at least this


class SiteLabeller:
    """What the daemon knows of the slit and dome at a time, from relay history (pure; see module).

    Feed it ``observe(t, slit_relay=..., dome_relay=...)`` every tick (clock seconds; relays
    +1 open/cw, -1 close/ccw, 0 off) and ``homed(t, azimuth)`` when the dome's azimuth is known
    absolutely; ``verified(t, state)`` when the slit driver verified an end state. Thread-safe:
    the daemon's loop feeds it while the encoder's worker asks ``label``.
    """

    def __init__(self, settings: LabellerSettings | None = None):
        self.s = settings or LabellerSettings()
        self._lock = threading.Lock()
        # slit
        self._slit_dir = 0
        self._slit_t0 = 0.0
        self._slit_start: float | None = None     # open fraction where the current motion began
        self._slit_frac: float | None = None      # known open fraction while idle
        self._slit_end: str | None = None         # "open"/"closed": last full (end-stop) motion
        self._slit_by_time = False                # the fraction comes from a timed move
        self._slit_last_dir = 0                   # direction of the last slit motion
        # dome
        self._dome_dir = 0
        self._dome_t0 = 0.0
        self._dome_t_last = 0.0
        self._dome_off_at = -math.inf
        self._az: float | None = None
        self._az_var = 0.0
        self._speed = 0.0
        self._rot_dist = 0.0

    # ------------------------------------------------------------------ feeding

    def observe(self, t: float, *, slit_relay: int = 0, dome_relay: int = 0) -> None:
        """The relays' state at clock time ``t`` (seconds)."""
        with self._lock:
            self._slit(t, int(slit_relay))
            self._dome(t, int(dome_relay))

    def homed(self, t: float, azimuth_deg: float) -> None:
        """The dome is at ``azimuth_deg`` now (a home sensor, or a position a site knows)."""
        with self._lock:
            self._az = float(azimuth_deg) % 360.0
            self._az_var = self.s.home_sd_deg ** 2

    def verified(self, t: float, state: str) -> None:
        """The slit driver verified the slit ``open`` or ``closed`` (idle)."""
        if state not in ("open", "closed"):
            return
        with self._lock:
            if self._slit_dir == 0:
                self._slit_end = state
                self._slit_frac = 1.0 if state == "open" else 0.0
                self._slit_by_time = False

    def _slit(self, t: float, relay: int) -> None:
        if relay == self._slit_dir:
            return
        if self._slit_dir != 0:  # a motion ends (or reverses)
            ran = t - self._slit_t0
            full = ran >= self.s.travel_time_s
            if full:
                self._slit_end = "open" if self._slit_dir > 0 else "closed"
                self._slit_frac = 1.0 if self._slit_dir > 0 else 0.0
                self._slit_by_time = False
            elif self._slit_start is not None:
                f = self._slit_start + self._slit_dir * ran / self.s.travel_time_s
                self._slit_frac = min(1.0, max(0.0, f))
                self._slit_end = None
                self._slit_by_time = True
            else:
                self._slit_frac = None
                self._slit_end = None
        if relay != 0:
            self._slit_last_dir = relay
            self._slit_start = self._slit_frac
            self._slit_t0 = t
        self._slit_dir = relay

    def _dome(self, t: float, relay: int) -> None:
        if self._dome_dir != 0:
            self._advance(t)
        if relay == self._dome_dir:
            return
        if self._dome_dir != 0:  # motor off: add the coast; the rotation's error is systematic
            if self._az is not None:
                coast = self._dome_dir * self._speed * self.s.dome_coast_s
                self._move(coast)
                self._az_var += (self.s.rotation_sd_fraction * self._rot_dist) ** 2
            self._dome_off_at = t
            self._speed = 0.0
        if relay != 0:
            self._rot_dist = 0.0
            self._dome_t0 = t
            self._dome_t_last = t
            self._speed = 0.0
        self._dome_dir = relay

    def _advance(self, t: float) -> None:
        """Integrate the dome's rotation from the last tick to ``t`` (spin-up model)."""
        s = self.s
        a, b = self._dome_t_last - self._dome_t0, t - self._dome_t0
        if b <= a:
            return
        # integral of v_max * (1 - exp(-x / tau)) from a to b
        tau = max(s.dome_spinup_s, 1e-6)
        dist = s.dome_speed_deg_s * ((b - a) + tau * (math.exp(-b / tau) - math.exp(-a / tau)))
        self._speed = s.dome_speed_deg_s * (1.0 - math.exp(-b / tau))
        self._dome_t_last = t
        if self._az is not None:
            self._move(self._dome_dir * dist)

    def _move(self, delta: float) -> None:
        self._az = (self._az + delta) % 360.0
        self._rot_dist += abs(delta)

    # ------------------------------------------------------------------ asking

    def facts(self, t: float) -> dict[str, Any]:
        """What is known at ``t``: slit (state, fraction, why) and dome (azimuth, sd, moving)."""
        with self._lock:
            slit_moving = self._slit_dir != 0
            state = frac = None
            why = []
            if slit_moving:
                state = "moving"
                if self._slit_start is not None:
                    f = self._slit_start + self._slit_dir * (t - self._slit_t0) / self.s.travel_time_s
                    frac = min(1.0, max(0.0, f))
                why.append("slit relay running")
            elif self._slit_end is not None:
                state, frac = self._slit_end, self._slit_frac
                why.append(f"slit {self._slit_end} after a full or verified motion")
            elif self._slit_frac is not None and self._slit_by_time:
                frac = self._slit_frac
                state = "closed" if frac <= 0.02 else "open" if frac >= 0.98 else "partial"
                why.append("timed partial move")
            dome_moving = self._dome_dir != 0 or (t - self._dome_off_at) < self.s.settle_s
            az = None
            sd = math.sqrt(self._az_var) if self._az is not None else None
            if self._az is not None and not dome_moving and sd <= self.s.max_azimuth_sd_deg:
                az = self._az
                why.append(f"azimuth from homing and timed rotation (sd {sd:.2f} deg)")
            return {"state": state, "open_fraction": frac, "azimuth_deg": az, "azimuth_sd_deg": sd,
                    "dome_moving": dome_moving, "slit_end": None if slit_moving else self._slit_end,
                    "last_motion": None if slit_moving else {1: "open", -1: "closed"}.get(self._slit_last_dir),
                    "why": why}

    def label(self, t: float, reading=None) -> FrameLabel | None:
        """The label of a frame taken at ``t`` (image path empty), or None when nothing is known.

        ``reading`` (a :class:`~tenmon.vision.slit.reading.SlitReading` of that frame) adds a
        pseudo-label for the state when it is confident and the relay history agrees.
        """
        f = self.facts(t)
        state, frac, why = f["state"], f["open_fraction"], list(f["why"])
        if (state is None and reading is not None and reading.state in ("open", "closed")
                and reading.confidence >= self.s.pseudo_confidence
                and float(reading.details.get("state_confidence", 1.0)) >= self.s.pseudo_state_confidence
                and f["last_motion"] == reading.state):
            state = reading.state
            frac = 1.0 if state == "open" else 0.0
            why.append("pseudo-label: confident encoder reading agreeing with the relay history")
        lab = FrameLabel(Path(""), state, frac, f["azimuth_deg"], {"time_s": round(t, 3), "why": "; ".join(why)})
        return None if lab.empty else lab
