"""Loading the site TOML file: parse, apply TENMON_ environment overrides, validate, locate errors."""

from __future__ import annotations

import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from tenmon.config.models import TenmonConfig, wiring_problems
from tenmon.core.errors import ConfigError

DEFAULT_PATH = Path("/etc/tenmon/tenmon.toml")
ENV_PREFIX = "TENMON_"


def simulated_config_path() -> Path:
    """The packaged simulated-site file (``config/simulated.toml`` in the repository links to it)."""
    return Path(str(resources.files("tenmon.config").joinpath("simulated.toml")))


def load_config(path: str | os.PathLike, env: Mapping[str, str] | None = None) -> TenmonConfig:
    """Read, override from the environment, and validate a site file.

    Environment variables ``TENMON_<SECTION>__<KEY>`` (``__`` between levels, case-insensitive)
    override keys, e.g. ``TENMON_API__PORT=8471``; values are read as TOML values when they parse
    (numbers, booleans, arrays) and as strings otherwise. Variables whose first part is not a
    top-level section of the file format are ignored (so ``TENMON_URL`` for the CLI is not a key).

    Every section is typed (:class:`TenmonConfig`, with the services' sections in
    :mod:`tenmon.config.services` and :mod:`tenmon.config.vision`), so each bad key is reported
    with its line.

    Raises:
        ConfigError: unreadable file, TOML syntax error, or invalid keys/values; its ``problems``
            list every problem as ``(key_path, line, message)``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, source=str(path), env=os.environ if env is None else env)


def parse_config(text: str, *, source: str = "<config>",
                 env: Mapping[str, str] | None = None) -> TenmonConfig:
    """Validate TOML ``text``; see :func:`load_config`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        line = int(m.group(1)) if m else None
        raise ConfigError(f"{source}: TOML syntax error: {exc}",
                          [("", line, f"TOML syntax error: {exc}")]) from None
    overridden = apply_env_overrides(data, env or {})
    lines = KeyLines(text)
    try:
        cfg = TenmonConfig.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc, (), lines, overridden)
        raise ConfigError(_summary(source, problems), problems) from None
    problems = [(k, _line_for(lines, k, overridden), m) for k, m in wiring_problems(cfg)]
    if problems:
        raise ConfigError(_summary(source, problems), problems)
    return cfg


def _problems(exc: ValidationError, prefix: tuple, lines, overridden: set[str]) -> list:
    """``(key_path, line, message)`` for each error of a validation."""
    problems = []
    for err in exc.errors():
        key = _key_path(prefix + tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (misspelt?)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg = f"{msg} (got {err['input']!r})"
        problems.append((key, _line_for(lines, key, overridden), msg))
    return problems


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> set[str]:
    """Apply ``TENMON_A__B=value`` overrides to ``data`` in place; return the key paths set."""
    top = set(TenmonConfig.model_fields)
    done: set[str] = set()
    for name, raw in env.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if not parts or parts[0] not in top:
            continue
        node = data
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        node[parts[-1]] = _parse_value(raw)
        done.add(".".join(parts))
    return done


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _key_path(loc: tuple) -> str:
    parts = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            # discriminated unions add the tag ("lcus-serial") to the location: drop it
            if parts and item in _UNION_TAGS:
                continue
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


_UNION_TAGS = {"lcus-serial", "gpio", "usb-hid", "simulated", "simulated-ir", "lx200", "ir-camera", "gpio-rain",
               "directory", "relay", "alpaca", "indi"}


def _line_for(lines: "KeyLines", key: str, overridden: set[str]) -> int | None:
    if key in overridden:
        return None
    return lines.find(key)


def _summary(source: str, problems: list[tuple[str, int | None, str]]) -> str:
    rows = [f"{source}:{line if line else '-'}: {key or '(file)'}: {msg}"
            for key, line, msg in problems]
    return "\n".join(rows)


class KeyLines:
    """Maps dotted key paths to the line (1-based) where a TOML text defines them.

    tomllib keeps no positions, so this scans table headers and ``key =`` lines. It handles
    tables, dotted keys, quoted keys and arrays of tables (``a[0].b``); a key it cannot place maps
    to its nearest enclosing table, and failing that to ``None``.
    """

    _header = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _assign = re.compile(r"^\s*((?:[A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')"
                         r"(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*'))*)\s*=")

    def __init__(self, text: str):
        self.lines: dict[str, int] = {}
        table: list[str] = []
        counts: dict[str, int] = {}
        for n, line in enumerate(text.splitlines(), start=1):
            m = self._header.match(line)
            if m:
                table = self._split(m.group(2))
                if m.group(1) == "[[":
                    base = ".".join(table)
                    idx = counts.get(base, -1) + 1
                    counts[base] = idx
                    table = table[:-1] + [f"{table[-1]}[{idx}]"]
                self.lines.setdefault(self._join(table), n)
                continue
            m = self._assign.match(line)
            if m:
                key = self._join(table + self._split(m.group(1)))
                self.lines.setdefault(key, n)

    @staticmethod
    def _split(dotted: str) -> list[str]:
        return [p.strip().strip("\"'") for p in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", dotted)]

    @staticmethod
    def _join(parts: list[str]) -> str:
        out = ""
        for p in parts:
            out += p if (not out or p.startswith("[")) else "." + p
        return out.replace(".[", "[")

    def find(self, key: str) -> int | None:
        probe = key
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            cut = max(probe.rfind("."), probe.rfind("["))
            if cut <= 0:
                break
            probe = probe[:cut]
        return self.lines.get(probe)
