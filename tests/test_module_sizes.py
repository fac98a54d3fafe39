"""Small modules: no core module over 500 lines; an emulator module over it says why in its docstring."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scimflow"
EMULATORS = PACKAGE / "emulators"
LIMIT = 500


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
