"""Rebuild docs/benchmarks.md from the per-area result pages in docs/bench/*.md.

Each benchmark script writes (or its author pastes) its figures and the command that reproduces
them into docs/bench/<area>.md; this joins them, in a fixed order, under one table of contents.
Run: .venv/bin/python benchmarks/collect_docs.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["daemon", "relays", "slit_encoder", "ir_encoder_loop", "frame_pipeline", "daemon_frames",
         "clusters_gaia", "clusters", "solve", "pointing", "centring", "nayuta", "planner",
         "night", "storage", "faults", "soak", "archive", "sources", "cosmics_families",
         "encoder_adapt", "indi", "alpaca_devices", "alpaca"]

HEADER = """# Benchmarks

Measured speed and accuracy, each with the command that reruns it. Figures are from this
project's development machines (2 cores, no GPU) unless a section says otherwise; tests check
behaviour, these pages check numbers. This page is assembled from `docs/bench/*.md` by
`.venv/bin/python benchmarks/collect_docs.py`: edit those, not this.

"""


def main() -> None:
    pages = {p.stem: p for p in sorted((ROOT / "docs" / "bench").glob("*.md"))}
    names = [n for n in ORDER if n in pages] + sorted(set(pages) - set(ORDER))
    parts = [HEADER, "".join(f"- [{n}](#{n.replace('_', '-')})\n" for n in names), "\n"]
    for n in names:
        text = pages[n].read_text().strip()
        if not text.startswith("#"):
            text = f"## {n}\n\n{text}"
        else:  # demote the page's headings by one level
            text = "\n".join(("#" + line) if line.startswith("#") else line
                             for line in text.splitlines())
        parts.append(f'<a id="{n.replace("_", "-")}"></a>\n\n{text}\n\n')
    out = ROOT / "docs" / "benchmarks.md"
    out.write_text("".join(parts).rstrip() + "\n")
    print(f"wrote {out} from {len(names)} pages: {', '.join(names)}")


if __name__ == "__main__":
    main()
