"""Issue 13's file moves: old module -> new module, applied to the tree and to every text that
names a module (imports, monkeypatch strings, docs paths, .importlinter, pyproject, systemd).

Idempotent: run it again after merging a branch written against the old layout and it rewrites
what that branch added. `python tools/relayout.py --check` lists what it would change.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tenmon"

#: old dotted module (below tenmon.) -> new dotted module
MOVES: dict[str, str] = {
    # core: what everything may import
    "clock": "core.clock",
    "errors": "core.errors",
    "astro": "core.astro",
    "timefmt": "core.timefmt",
    "atomicfile": "core.atomicfile",
    "offline": "core.offline",
    "lifeline": "core.lifeline",
    "lifeline_forkserver": "core.lifeline_forkserver",
    "vision.onnx_session": "core.onnx_session",
    # the slit encoder (runtime) and its torch-only training
    "vision.slit_adapt": "vision.slit.adapt",
    "vision.slit_band": "vision.slit.band",
    "vision.slit_band_data": "vision.slit.band_data",
    "vision.slit_classical": "vision.slit.classical",
    "vision.slit_detector": "vision.slit.detector",
    "vision.slit_eval": "vision.slit.evaluate",
    "vision.slit_features": "vision.slit.features",
    "vision.slit_labels": "vision.slit.labels",
    "vision.slit_opening": "vision.slit.opening",
    "vision.slit_tracker": "vision.slit.tracker",
    "vision.slit_types": "vision.slit.reading",
    "vision.ir_calibration": "vision.slit.calibration",
    "vision.polar": "vision.slit.polar",
    "vision.slit_adapt_train": "vision.slit.training.adapt",
    "vision.slit_band_train": "vision.slit.training.band",
    "vision.slit_rows_train": "vision.slit.training.rows",
    "vision.slit_train": "vision.slit.training.detector",
    # the frame pipeline
    "vision.pipeline": "vision.frames.pipeline",
    "vision.calibration": "vision.frames.calibration",
    "vision.cosmics": "vision.frames.cosmics",
    "vision.sources": "vision.frames.sources",
    "vision.sextractor": "vision.frames.sextractor",
    "vision.products": "vision.frames.products",
    "vision.clusters": "vision.frames.clusters",
    "vision.hfr": "vision.frames.hfr",
    # renderers
    "vision.skyrender": "vision.render.sky",
    "vision.ir_render": "vision.slit.render",
    # pointing: the TPOINT model and its runs
    "vision.pointing": "pointing.model",
    # the daemon's services and its API
    "daemon.night": "daemon.services.night",
    "daemon.sequencer": "daemon.services.sequencer",
    "daemon.centring": "daemon.services.centring",
    "daemon.nayuta_service": "daemon.services.nayuta",
    "daemon.frames": "daemon.services.frames",
    "daemon.frame_worker": "daemon.services.frame_worker",
    "daemon.autofocus": "daemon.services.autofocus",
    "daemon.encoder_collect": "daemon.services.encoder_collect",
    "daemon.phases": "daemon.services.phases",
    "daemon.ports": "daemon.services.ports",
    "daemon.api": "daemon.api.server",
    "daemon.api_access": "daemon.api.access",
    "daemon.api_kit": "daemon.api.kit",
    "daemon.api_reads": "daemon.api.reads",
    "daemon.audit": "daemon.api.audit",
    "daemon.openapi": "daemon.api.openapi",
    "daemon.page": "daemon.api.page",
    "daemon.page_media": "daemon.api.page_media",
    "daemon.push": "daemon.api.push",
    "daemon.alpaca": "daemon.api.alpaca",
    "daemon.alpaca_devices": "daemon.api.alpaca_devices",
    "daemon.alpaca_discovery": "daemon.api.alpaca_discovery",
}

#: data directories that move with their modules (relative to src/tenmon)
DIRS = {"vision/models": "vision/slit/models", "daemon/web": "daemon/api/web"}

#: new packages' docstrings
PACKAGES = {
    "core": "The core: clock, errors, astronomy helpers, time formats, atomic files, offline rules, "
            "worker lifelines, the ONNX loader. Imports nothing of tenmon above it.",
    "vision/slit": "The slit encoder's runtime: IR camera model, detector, band and opening "
                   "readers, tracker, site adaptation (onnxruntime only).",
    "vision/slit/training": "Training the slit encoder's models (needs the train extra: torch, "
                            "ultralytics).",
    "vision/frames": "The frame pipeline: calibration, LA Cosmic, sources, products, cluster "
                     "candidates.",
    "vision/render": "The simulated sky: star fields rendered as the CCD sees them.",
    "pointing": "Pointing: the TPOINT model, solve runs and their I/O, plots.",
    "daemon/services": "The daemon's services: night operations, sequencer, centring, Nayuta "
                       "following, frame service, autofocus, encoder label collection.",
    "daemon/api": "The daemon's faces: the HTTP API, the operator page, the Alpaca server.",
}

TEXT_DIRS = ["src", "tests", "benchmarks", "tools", "docs", "config", "systemd", ".ci"]
TEXT_FILES = ["README.md", "pyproject.toml", ".importlinter", "Makefile"]
SUFFIXES = {".py", ".md", ".toml", ".cfg", ".ini", ".txt", ".service", ".sh", ".json", ".yaml",
            ".yml", ".html", ".js", ""}


def _path(mod: str) -> str:
    return mod.replace(".", "/") + ".py"


def _children(new_pkg: str) -> list[str]:
    """Basenames of the modules that live in package ``new_pkg`` after the moves."""
    return sorted({n[len(new_pkg) + 1:].split(".")[0] for n in MOVES.values()
                   if n.startswith(new_pkg + ".")})


def _dotted_patterns():
    pats = []
    for old, new in sorted(MOVES.items(), key=lambda kv: -len(kv[0])):
        guard = r"(?![\w])"
        if new.startswith(old + "."):            # the old module became a package
            kids = "|".join(_children(old))
            guard = rf"(?![\w]|\.(?:{kids})\b)"
        pats.append((re.compile(rf"(?<![\w.])tenmon\.{re.escape(old)}{guard}"), f"tenmon.{new}"))
    for old, new in DIRS.items():  # data directories reached as resources ("tenmon.vision.models")
        o, n = old.replace("/", "."), new.replace("/", ".")
        pats.append((re.compile(rf"(?<![\w.])tenmon\.{re.escape(o)}(?![\w])"), f"tenmon.{n}"))
    return pats


def _path_patterns():
    pats = []
    for old, new in sorted(MOVES.items(), key=lambda kv: -len(kv[0])):
        op, np_ = _path(old), _path(new)
        pats.append((re.compile(rf"(?<![\w./-])((?:src/)?(?:tenmon/)?){re.escape(op)}(?![\w])"),
                     rf"\g<1>{np_}"))
    for old, new in DIRS.items():
        pats.append((re.compile(rf"(?<![\w./-])((?:src/)?(?:tenmon/)?){re.escape(old)}(?=[/\s`'\")*,:]|$)"),
                     rf"\g<1>{new}"))
    return pats


FROM_IMPORT = re.compile(r"^(?P<ind>[ \t]*)from tenmon(?P<pkg>(?:\.[a-z_]+)*) import (?P<names>[^()#\n]+?)(?P<tail>[ \t]*(?:#.*)?)$",
                         re.M)


def _split_from_imports(text: str) -> str:
    """``from tenmon.vision import cosmics, skyrender as sr`` -> one line per new package."""
    def fix(m: re.Match) -> str:
        pkg = m["pkg"].lstrip(".")
        names = [n.strip() for n in m["names"].split(",") if n.strip()]
        groups: dict[str, list[str]] = {}
        order: list[str] = []
        changed = False
        for item in names:
            parts = item.split()
            name = parts[0]
            alias = parts[2] if len(parts) == 3 and parts[1] == "as" else None
            full = f"{pkg}.{name}" if pkg else name
            if full in MOVES:
                new = MOVES[full]
                new_pkg, new_name = new.rsplit(".", 1)
                target = new_pkg
                bound = alias or name
                item = new_name if bound == new_name else f"{new_name} as {bound}"
                changed = True
            else:
                target = pkg
            if target not in groups:
                groups[target] = []
                order.append(target)
            groups[target].append(item)
        if not changed:
            return m.group(0)
        lines = []
        for i, target in enumerate(order):
            prefix = f"tenmon.{target}" if target else "tenmon"
            tail = m["tail"] if i == 0 else ""
            lines.append(f"{m['ind']}from {prefix} import {', '.join(groups[target])}{tail}")
        return "\n".join(lines)
    return FROM_IMPORT.sub(fix, text)


def rewrite(text: str, dotted, paths) -> str:
    text = _split_from_imports(text)
    for pat, rep in dotted:
        text = pat.sub(rep, text)
    for pat, rep in paths:
        text = pat.sub(rep, text)
    return text


def _git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=ROOT, check=True)


def move_files(check: bool) -> list[str]:
    done = []
    for pkg, doc in PACKAGES.items():
        init = SRC / pkg / "__init__.py"
        if not init.exists():
            done.append(f"create {init.relative_to(ROOT)}")
            if not check:
                init.parent.mkdir(parents=True, exist_ok=True)
                init.write_text(f'"""{doc}"""\n')
                _git("add", str(init))
    for old, new in MOVES.items():
        src, dst = SRC / _path(old), SRC / _path(new)
        if src.exists() and not dst.exists():
            done.append(f"move {src.relative_to(ROOT)} -> {dst.relative_to(ROOT)}")
            if not check:
                dst.parent.mkdir(parents=True, exist_ok=True)
                _git("mv", str(src), str(dst))
        elif src.exists() and dst.exists():
            sys.exit(f"both {src} and {dst} exist: merge them by hand")
    for old, new in DIRS.items():
        src, dst = SRC / old, SRC / new
        if src.exists():
            done.append(f"move {src.relative_to(ROOT)}/ -> {dst.relative_to(ROOT)}/")
            if not check:
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.exists():
                    for f in src.iterdir():
                        _git("mv", str(f), str(dst / f.name))
                else:
                    _git("mv", str(src), str(dst))
    return done


def text_files():
    for d in TEXT_DIRS:
        base = ROOT / d
        if not base.exists():
            continue
        for p in base.rglob("*"):
            if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts \
                    and p.resolve() != Path(__file__).resolve() and "data" not in p.parts[len(ROOT.parts):][:2]:
                yield p
    for f in TEXT_FILES:
        p = ROOT / f
        if p.exists():
            yield p


LAYERS_OLD = """    vision | scheduler
    config
    errors : clock : timefmt : atomicfile : astro : offline : lifeline : lifeline_forkserver"""
LAYERS_NEW = """    vision | scheduler
    pointing
    config
    core"""


def importlinter(check: bool) -> list[str]:
    """The layer contract names the new packages (core/, pointing/)."""
    p = ROOT / ".importlinter"
    text = p.read_text()
    new = text.replace(LAYERS_OLD, LAYERS_NEW).replace(
        "name = Layers: cli > daemon > drivers, archive > vision, scheduler > config > core",
        "name = Layers: cli > daemon > drivers, archive > vision, scheduler > pointing > config > core")
    if ";   pointing " not in new:
        new = new.replace(
            ";   core        errors, clock, time formats, atomic files, astro, offline rules, worker lifelines",
            ";   pointing    the TPOINT model, solve runs and their files (vision's solver reports into it)\n"
            ";   core        errors, clock, time formats, atomic files, astro, offline rules, worker lifelines,\n"
            ";               the ONNX loader")
    new = new.replace('; other; ":" siblings (the core modules) may import each other.', "; other.")
    if "tenmon.core.onnx_session" not in new:
        new = new.replace("    tenmon.core.lifeline_forkserver\n",
                          "    tenmon.core.lifeline_forkserver\n    tenmon.core.onnx_session\n", 1)
    if new != text and not check:
        p.write_text(new)
    return [".importlinter layers"] if new != text else []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="list what would change; change nothing")
    args = ap.parse_args(argv)
    moved = move_files(args.check)
    dotted, paths = _dotted_patterns(), _path_patterns()
    changed = []
    for p in text_files():
        try:
            text = p.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        new = rewrite(text, dotted, paths)
        if new != text:
            changed.append(str(p.relative_to(ROOT)))
            if not args.check:
                p.write_text(new)
    moved += importlinter(args.check)
    for line in moved:
        print(line)
    print(f"{len(changed)} files {'would be ' if args.check else ''}rewritten")
    for c in changed:
        print("  ", c)
    return 1 if args.check and (moved or changed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
