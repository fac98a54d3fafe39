"""Small modules: none over 500 lines in the core, an emulator module over it says why, and docs/internals.md
names every module of the package in its module map (and nothing that does not exist)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scimflow"
EMULATORS = PACKAGE / "emulators"
LIMIT = 500
INTERNALS = ROOT / "docs" / "internals.md"
_TREE_LINE = re.compile(r"^((?:│   |    )*)(?:├── |└── )(\S+)")


def _sizes() -> dict[Path, int]:
    """Lines of every Python module under scimflow/, by path relative to the repository."""
    return {
        path.relative_to(ROOT): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_no_core_module_is_over_500_lines() -> None:
    """Every module of scimflow/ outside scimflow/emulators/ has at most 500 lines; the message lists the rest."""
    emulators = EMULATORS.relative_to(ROOT)
    over = {path: n for path, n in _sizes().items() if emulators not in path.parents and n > LIMIT}
    assert not over, f"core modules over {LIMIT} lines (split them, one job per module): " + ", ".join(
        f"{path} ({n})" for path, n in sorted(over.items())
    )


def test_an_emulator_module_over_500_lines_says_why() -> None:
    """An emulator module over 500 lines explains in its module docstring why it is longer on purpose."""
    emulators = EMULATORS.relative_to(ROOT)
    silent = []
    for path, n in _sizes().items():
        if emulators not in path.parents or n <= LIMIT:
            continue
        doc = ast.get_docstring(ast.parse((ROOT / path).read_text(encoding="utf-8"))) or ""
        if "longer than the project's ~500 lines on purpose" not in " ".join(doc.split()):
            silent.append(f"{path} ({n})")
    assert not silent, (
        "emulator modules over 500 lines whose docstring does not say why "
        '("The module is longer than the project\'s ~500 lines on purpose: ..."): ' + ", ".join(silent)
    )


def map_paths(text: str) -> set[str]:
    """Paths named by the ``scimflow/`` tree picture of a module map (folders end in ``/``)."""
    lines = text.split("## Module map", 1)[1].split("```", 2)[1].splitlines()
    root = next(line.strip() for line in lines if line.strip())
    stack = [root]
    paths = {root}
    for line in lines:
        m = _TREE_LINE.match(line)
        if not m:
            continue
        depth = len(m.group(1)) // 4 + 1
        del stack[depth:]
        path = stack[-1] + m.group(2)
        paths.add(path)
        if path.endswith("/"):
            stack.append(path)
    return paths


def test_map_paths_reads_nesting() -> None:
    """The tree reader puts a nested module under its folder and a later sibling back at the top."""
    text = "## Module map\n```\nscimflow/\n├── a/   x\n│   └── b.py   y\n└── c.py   z\n```\n"
    assert map_paths(text) == {"scimflow/", "scimflow/a/", "scimflow/a/b.py", "scimflow/c.py"}


def test_internals_module_map_names_every_module() -> None:
    """Every module and package of scimflow/ is in docs/internals.md's picture, and every name there exists."""
    named = map_paths(INTERNALS.read_text(encoding="utf-8"))
    actual = {
        str(path.relative_to(ROOT)) + ("/" if path.is_dir() else "")
        for path in PACKAGE.rglob("*")
        if "__pycache__" not in path.parts
        and "migrations" not in path.relative_to(PACKAGE).parts[:-1]
        and (path.is_dir() or (path.suffix == ".py" and path.name not in ("__init__.py", "__main__.py")))
    }
    actual.add("scimflow/")
    missing, stale = sorted(actual - named), sorted(named - actual)
    assert not missing, "modules missing from docs/internals.md's module map: " + ", ".join(missing)
    assert not stale, "docs/internals.md's module map names what does not exist: " + ", ".join(stale)
