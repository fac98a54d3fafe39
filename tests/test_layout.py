"""Standing rules of the layout: the core never imports Prefect; the CLI lists every contract verb."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import scimflow

ROOT = Path(__file__).resolve().parents[1]


def _core_modules() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.walk_packages(scimflow.__path__, prefix="scimflow.")
        if ".migrations." not in m.name and not m.name.endswith("__main__")
    )


def test_core_never_imports_prefect():
    """Importing every module under scimflow/ leaves prefect out of sys.modules."""
    mods = _core_modules()
    assert len(mods) > 5
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'prefect' or k.startswith('prefect.'))\n"
        "print('PREFECT' if bad else 'CLEAN', bad[:3])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.startswith("CLEAN"), out.stdout + out.stderr


def test_no_prefect_import_statement_in_core():
    """No source file of the core even mentions an import of prefect (lazy imports included)."""
    offenders = []
    for path in (ROOT / "scimflow").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            s = line.strip()
            if s.startswith(("import prefect", "from prefect")):
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == []


def test_help_lists_every_contract_verb():
    """`scimflow --help` names every verb of the CLI contract."""
    out = subprocess.run(
        [sys.executable, "-m", "scimflow", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    for verb in ("demo", "emulate", "plan", "sync", "explain", "rules", "doctor", "links"):
        assert verb in out, verb
    sub = subprocess.run(
        [sys.executable, "-m", "scimflow", "rules", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert "check" in sub and "test" in sub
    sub = subprocess.run(
        [sys.executable, "-m", "scimflow", "links", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert "export" in sub and "import" in sub
