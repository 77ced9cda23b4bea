"""Observing targets: the ``Target`` model and its TOML/CSV import with file/line/field errors.

A target file lists one target per CSV row or per ``[[target]]`` TOML table, with the fields
``name``, ``ra``, ``dec``, ``priority``, ``exposure_s``, ``count`` and optionally ``filter``,
``binning``, ``window_start``, ``window_end`` (ISO 8601 with a UTC offset) and ``cadence_s``.
``ra`` is degrees when a number, hours when sexagesimal text (``"05:35:17.3"`` or ``"5h35m17s"``);
``dec`` is degrees either way. Coordinates are given: nothing is looked up by name (offline).
Priority: lower numbers are observed first (0 or 1 is most urgent), as in astroplan.

Example (TOML)::

    [[target]]
    name = "M42"
    ra = "05:35:17.3"
    dec = "-05:23:28"
    priority = 1
    exposure_s = 60
    count = 10
    filter = "V"
    window_start = 2026-11-21T12:00:00Z
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import tomllib
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tenmon.scheduler.errors import TargetFileError
from tenmon.core.timefmt import utc_iso

log = logging.getLogger(__name__)

#: Fields of a target record in a file, in CSV column order.
FIELDS: tuple[str, ...] = (
    "name", "ra", "dec", "priority", "exposure_s", "count",
    "filter", "binning", "window_start", "window_end", "cadence_s",
)
#: Fields every record must give.
REQUIRED: tuple[str, ...] = ("name", "ra", "dec", "priority", "exposure_s", "count")
_ALIASES = {"ra_deg": "ra", "dec_deg": "dec"}
_MODEL_TO_FILE = {"ra_deg": "ra", "dec_deg": "dec"}


class Target(BaseModel):
    """One thing to observe: where, how important, and how long.

    ``ra_deg``/``dec_deg`` are ICRS degrees; ``priority`` lower is more urgent; a block lasts
    ``count * (exposure_s + readout_s)`` seconds plus the transition before it. ``window_start``
    and ``window_end`` (UTC) bound when any exposure may happen. ``cadence_s`` makes a target
    repeat: visits at least that far apart, tonight and on later nights.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    ra_deg: float = Field(ge=0.0, lt=360.0)
    dec_deg: float = Field(ge=-90.0, le=90.0)
    priority: int = Field(ge=0)
    exposure_s: float = Field(gt=0.0, le=86400.0)
    count: int = Field(ge=1, le=100000)
    filter: str | None = None
    binning: int = Field(default=1, ge=1, le=16)
    window_start: datetime | None = None
    window_end: datetime | None = None
    cadence_s: float | None = Field(default=None, gt=0.0)

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("name is empty")
        return value

    @field_validator("filter")
    @classmethod
    def _strip_filter(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return value or None

    @field_validator("window_start", "window_end")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("time has no UTC offset; write it as e.g. 2026-11-21T12:00:00Z")
        return value.astimezone(timezone.utc)

    @model_validator(mode="after")
    def _window_order(self) -> Target:
        if self.window_start and self.window_end and self.window_end <= self.window_start:
            raise ValueError(
                f"window_end ({self.window_end.isoformat()}) is not after "
                f"window_start ({self.window_start.isoformat()})"
            )
        return self

    def duration_s(self, readout_s: float = 0.0) -> float:
        """Seconds of shutter and readout for one visit: ``count * (exposure_s + readout_s)``."""
        return self.count * (self.exposure_s + readout_s)

    def to_record(self) -> dict[str, Any]:
        """The target as a file record (``ra``/``dec`` in degrees, times as ISO strings)."""
        return {
            "name": self.name,
            "ra": self.ra_deg,
            "dec": self.dec_deg,
            "priority": self.priority,
            "exposure_s": self.exposure_s,
            "count": self.count,
            "filter": self.filter,
            "binning": self.binning,
            "window_start": utc_iso(self.window_start, timespec="auto") if self.window_start else None,
            "window_end": utc_iso(self.window_end, timespec="auto") if self.window_end else None,
            "cadence_s": self.cadence_s,
        }


def parse_ra(value: Any) -> float:
    """Right ascension in degrees from a number (degrees) or sexagesimal text (hours).

    Raises:
        ValueError: the value is not a right ascension in 0..360 deg / 0..24 h.
    """
    deg = _parse_angle(value, hours_if_text=True)
    if not 0.0 <= deg < 360.0:
        raise ValueError(f"right ascension {value!r} is outside 0..360 deg (0..24 h)")
    return deg


def parse_dec(value: Any) -> float:
    """Declination in degrees from a number or sexagesimal text (degrees).

    Raises:
        ValueError: the value is not a declination in -90..90 deg.
    """
    deg = _parse_angle(value, hours_if_text=False)
    if not -90.0 <= deg <= 90.0:
        raise ValueError(f"declination {value!r} is outside -90..90 deg")
    return deg


_SEXAGESIMAL = re.compile(r"[:hmsd°'\"]|\s")


def _parse_angle(value: Any, *, hours_if_text: bool) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an angle")
    if isinstance(value, (int, float)):
        deg = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("angle is empty")
        if _SEXAGESIMAL.search(text):
            import astropy.units as u
            from astropy.coordinates import Angle

            try:
                angle = Angle(text, unit=u.hourangle if hours_if_text else u.deg)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"cannot read angle {value!r}: {exc}") from None
            deg = float(angle.deg)
        else:
            try:
                deg = float(text)
            except ValueError:
                raise ValueError(f"cannot read angle {value!r}") from None
    else:
        raise ValueError(f"{value!r} is not an angle")
    if not math.isfinite(deg):
        raise ValueError(f"angle {value!r} is not finite")
    return deg


def target_from_record(record: Mapping[str, Any]) -> Target:
    """Build a :class:`Target` from a file record (keys as in :data:`FIELDS`).

    Raises:
        TargetFileError: with one problem per bad field (``line`` is None here; the file
            readers fill it in).
    """
    target, problems = _record_problems(record)
    if target is None:
        raise TargetFileError(
            "; ".join(f"field {f!r}: {m}" for f, m in problems),
            [(f, None, m) for f, m in problems],
        )
    return target


def _record_problems(record: Mapping[str, Any]) -> tuple[Target | None, list[tuple[str, str]]]:
    """(target or None, [(file_field, message), ...])."""
    problems: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    for key, value in record.items():
        key = _ALIASES.get(str(key).strip(), str(key).strip())
        if key not in FIELDS:
            problems.append((key, f"unknown field; expected one of {', '.join(FIELDS)}"))
            continue
        if value is None or (isinstance(value, str) and not value.strip() and key != "name"):
            continue
        data[key] = value
    for key in REQUIRED:
        if key not in data:
            problems.append((key, "missing"))
    model: dict[str, Any] = {k: v for k, v in data.items() if k not in ("ra", "dec")}
    for key, parse, out in (("ra", parse_ra, "ra_deg"), ("dec", parse_dec, "dec_deg")):
        if key in data:
            try:
                model[out] = parse(data[key])
            except ValueError as exc:
                problems.append((key, str(exc)))
    if problems:
        return None, problems
    try:
        return Target.model_validate(model), []
    except ValidationError as exc:
        for err in exc.errors():
            loc = err.get("loc") or ("",)
            field = _MODEL_TO_FILE.get(str(loc[0]), str(loc[0])) if loc else ""
            msg = err.get("msg", "invalid")
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            problems.append((field or "(record)", f"{msg} (got {err.get('input')!r})"
                             if field else msg))
        return None, problems


def load_targets(path: str | Path) -> list[Target]:
    """Read targets from a ``.toml`` or ``.csv`` file (the file is never modified).

    Raises:
        TargetFileError: the file cannot be read, has an unknown suffix, a syntax error, an
            unknown or missing field, a bad value or a duplicate name. The message names the file,
            the line and the field of the first problem; ``problems`` lists all of them.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise TargetFileError(f"{path}: cannot read target file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TargetFileError(f"{path}: not UTF-8 text: {exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return parse_targets_toml(text, source=str(path))
    if suffix == ".csv":
        return parse_targets_csv(text, source=str(path))
    raise TargetFileError(f"{path}: unknown target file type {suffix!r}; use .toml or .csv")


def parse_targets_csv(text: str, *, source: str = "<csv>") -> list[Target]:
    """Targets from CSV text with a header row naming the fields; rows whose name starts with
    ``#`` are comments.

    Raises:
        TargetFileError: see :func:`load_targets`.
    """
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise TargetFileError(f"{source}: empty file; expected a header row "
                              f"({', '.join(REQUIRED)}, ...)") from None
    except csv.Error as exc:
        raise TargetFileError(f"{source} line 1: {exc}") from None
    columns = [_ALIASES.get(h.strip(), h.strip()) for h in header]
    problems: list[tuple[str, int | None, str]] = []
    for col in columns:
        if col not in FIELDS:
            problems.append((col, 1, f"unknown column; expected one of {', '.join(FIELDS)}"))
    for col in REQUIRED:
        if col not in columns:
            problems.append((col, 1, "missing column"))
    if problems:
        _raise(source, problems)
    records: list[tuple[int, dict[str, Any]]] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if row[0].lstrip().startswith("#"):
                continue
            if len(row) > len(columns):
                problems.append(("(row)", line, f"{len(row)} values but {len(columns)} columns"))
                continue
            records.append((line, dict(zip(columns, row))))
    except csv.Error as exc:
        problems.append(("(row)", reader.line_num, str(exc)))
    targets = _build(records, problems, prefix="row")
    if problems:
        _raise(source, problems)
    return targets


_TOML_LINE = re.compile(r"at line (\d+)")


def parse_targets_toml(text: str, *, source: str = "<toml>") -> list[Target]:
    """Targets from TOML text made of ``[[target]]`` tables.

    Raises:
        TargetFileError: see :func:`load_targets`.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        line = int(match.group(1)) if match else None
        where = f" line {line}" if line else ""
        raise TargetFileError(f"{source}{where}: TOML syntax error: {exc}",
                              [("(syntax)", line, str(exc))]) from None
    problems: list[tuple[str, int | None, str]] = []
    for key in data:
        if key != "target":
            problems.append((key, _key_line(text, key), "unknown top-level key; "
                             "write targets as [[target]] tables"))
    tables = data.get("target", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append(("target", _key_line(text, "target"),
                         "must be an array of tables ([[target]])"))
        tables = []
    if problems:
        _raise(source, problems)
    starts = _table_lines(text)
    records: list[tuple[int, dict[str, Any]]] = []
    for i, table in enumerate(tables):
        records.append((starts[i] if i < len(starts) else 0, table))
    targets = _build(records, problems, prefix="target", text=text, starts=starts)
    if problems:
        _raise(source, problems)
    return targets


def _build(
    records: list[tuple[int, dict[str, Any]]],
    problems: list[tuple[str, int | None, str]],
    *,
    prefix: str,
    text: str | None = None,
    starts: list[int] | None = None,
) -> list[Target]:
    targets: list[Target] = []
    seen: dict[str, int] = {}
    for index, (line, record) in enumerate(records):
        target, errs = _record_problems(record)
        for field, msg in errs:
            where = line or None
            if text is not None and starts is not None:
                where = _field_line(text, starts, index, field) or where
            problems.append((f"{prefix}[{index + 1}].{field}", where, msg))
        if target is None:
            continue
        if target.name in seen:
            where = line or None
            if text is not None and starts is not None:
                where = _field_line(text, starts, index, "name") or where
            problems.append((f"{prefix}[{index + 1}].name", where,
                             f"duplicate name {target.name!r} (first at line {seen[target.name]})"))
            continue
        seen[target.name] = line
        targets.append(target)
    return targets


def _raise(source: str, problems: list[tuple[str, int | None, str]]) -> None:
    field, line, msg = problems[0]
    where = f" line {line}" if line else ""
    short = field.rsplit(".", 1)[-1]
    more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" \
        if len(problems) > 1 else ""
    raise TargetFileError(f"{source}{where}: field {short!r}: {msg}{more}", problems)


_HEADER = re.compile(r"^\s*\[\[\s*target\s*\]\]")
_ANY_HEADER = re.compile(r"^\s*\[")


def _table_lines(text: str) -> list[int]:
    """1-based line numbers of every ``[[target]]`` header (tomllib gives no positions)."""
    return [n for n, line in enumerate(text.splitlines(), 1) if _HEADER.match(line)]


def _field_line(text: str, starts: list[int], index: int, field: str) -> int | None:
    if index >= len(starts):
        return None
    lines = text.splitlines()
    key = re.compile(rf"^\s*[\"']?{re.escape(field)}[\"']?\s*=")
    for n in range(starts[index], len(lines)):  # 0-based index of the line after the header
        if _ANY_HEADER.match(lines[n]):
            break
        if key.match(lines[n]):
            return n + 1
    return starts[index]


def _key_line(text: str, key: str) -> int | None:
    pat = re.compile(rf"^\s*(\[+\s*)?{re.escape(key)}\b")
    for n, line in enumerate(text.splitlines(), 1):
        if pat.match(line):
            return n
    return None
