"""docs/architecture.md's "Where each behaviour lives" stays true (issue 13's one-hop check).

Every module the table names exists, every function or class it names in brackets after a
module is defined there, and every ``tenmon`` command the README shows has a row.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tenmon"
DOC = ROOT / "docs" / "architecture.md"

#: README commands whose row names them otherwise (the command -> a word of its row)
ALIASES = {"daemon": "make run", "status": "status --watch", "events": "events"}


def table_rows() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Where each behaviour lives", 1)[1]
    return [line for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| ---") and "Behaviour" not in line]


def module_path(token: str) -> Path | None:
    """``daemon/compose.py`` or ``vision/nayuta/`` -> the file or package, if it is one."""
    if token.endswith(".py"):
        return SRC / token
    if token.endswith("/"):
        return SRC / token
    return None


def defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_the_table_has_rows():
    assert len(table_rows()) > 40


def test_every_module_the_table_names_exists():
    missing = []
    for row in table_rows():
        module_column = row.split(" | ")[-1]
        for token in re.findall(r"`([^`]+)`", module_column):
            path = module_path(token)
            if path is not None and not path.exists():
                missing.append(token)
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_names_in_brackets_are_defined_in_their_module():
    wrong = []
    for row in table_rows():
        module_column = row.split(" | ")[-1]
        for module, names in re.findall(r"`([a-z_/]+\.py)` \(([^)]*)\)", module_column):
            defined = defined_names(SRC / module)
            head = re.split(r"[:;]", names, maxsplit=1)[0]  # "pool: `x.py`..." names another module
            for name in re.findall(r"`([A-Za-z_]\w*)`", head):
                if name not in defined:
                    wrong.append(f"{module}: {name}")
    assert not wrong, f"docs/architecture.md names what its module does not define: {wrong}"


def test_every_readme_command_has_a_row():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    behaviours = " ".join(row.split(" | ")[0] for row in table_rows())
    commands = {m.group(1) for m in re.finditer(r"(?:bin/|`)tenmon ([a-z][a-z-]*)", readme)}
    assert len(commands) > 10
    spans = [span.split() for row in table_rows() for span in re.findall(r"`([^`]+)`", row.split(" | ")[0])]
    missing = [c for c in sorted(commands)
               if f"tenmon {c}" not in behaviours and ALIASES.get(c, "\0") not in behaviours
               and not any(c in words for words in spans)]
    assert not missing, f"README commands with no row in docs/architecture.md: {missing}"
