"""Standing rules of the layout: the core never imports Prefect, no module reaches into another package's
private modules, and the CLI lists every contract verb."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

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



def _imports(tree: ast.AST) -> Iterator[tuple[ast.stmt, str]]:
    """``(statement, dotted name)`` for every absolute import under ``tree``: the module, and for
    ``from M import n`` also ``M.n`` (``n`` may be a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module
            yield from ((node, f"{node.module}.{a.name}") for a in node.names)


def test_no_prefect_import_statement_in_core():
    """No core source imports prefect, lazily or not (``prefect-secret:`` is served by tasks/prefect_secrets.py)."""
    offenders = []
    for path in sorted((ROOT / "scimflow").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        for node, name in _imports(tree):
            if name.split(".")[0] == "prefect":
                offenders.append(f"{rel}:{node.lineno}: {name}")
    assert offenders == []


_FIRST_PARTY = ("scimflow", "flows", "tasks")


def private_imports(rel: PurePosixPath, source: str) -> list[str]:
    """Imports in ``source`` (the file ``rel``) of a private name (``_x``) of our packages from outside the
    package that owns it.

    ``scimflow.rules._compiler`` is private to ``scimflow.rules``: modules under ``scimflow/rules/`` may
    import it, no other module may (they use what ``scimflow.rules`` exports).
    """
    package = ".".join(rel.parts[:-1])
    found = []
    for node, name in _imports(ast.parse(source)):
        dotted = name.split(".")
        if dotted[0] not in _FIRST_PARTY:
            continue
        for i, part in enumerate(dotted):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(dotted[:i])
                if package != owner and not package.startswith(owner + "."):
                    found.append(f"{rel}:{node.lineno}: {name}")
                break
    return sorted(set(found))


def test_no_private_cross_package_import():
    """No module of scimflow/, flows/ or tasks/ imports another package's private module or name."""
    paths = [p for top in _FIRST_PARTY for p in sorted((ROOT / top).rglob("*.py")) if "migrations" not in p.parts]
    assert len(paths) > 20
    offenders = [hit for p in paths for hit in private_imports(PurePosixPath(p.relative_to(ROOT)), p.read_text())]
    assert offenders == []


def test_private_import_check_tells_inside_from_outside():
    """The check flags a private import from another package (lazy ones too) and allows one from inside."""
    code = (
        "from scimflow.rules._compiler import compile_rules\n"
        "def f():\n    from scimflow.rules import _compiler\n"
        "import re._parser\n"
    )
    assert private_imports(PurePosixPath("scimflow/plan/_probe.py"), code) == [
        "scimflow/plan/_probe.py:1: scimflow.rules._compiler",
        "scimflow/plan/_probe.py:1: scimflow.rules._compiler.compile_rules",
        "scimflow/plan/_probe.py:3: scimflow.rules._compiler",
    ]
    assert private_imports(PurePosixPath("scimflow/rules/_probe.py"), code) == []
    assert private_imports(PurePosixPath("scimflow/rules/__init__.py"), code) == []


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
