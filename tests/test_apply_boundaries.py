"""Import boundaries read from the source (ast): the apply engine knows no target, the core knows no Prefect layer."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPLY = ROOT / "scimflow" / "apply"
#: The one function of the apply package allowed to import a target's package (lazily): the writer factory.
FACTORY = (ROOT / "scimflow" / "writers.py", "new_writer")


def _imports(node: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every import under ``node`` (relative imports resolved as ``.name``)."""
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            yield from ((n.lineno, a.name) for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            base = "." * n.level + (n.module or "")
            yield n.lineno, base
            yield from ((n.lineno, f"{base}.{a.name}") for a in n.names)


def _module_level_imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Imports run when the module is imported (function and class bodies left out)."""
    for stmt in tree.body:
        if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield from _imports(stmt)


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _exempt_lines(path: Path) -> set[int]:
    """Lines of the factory function (the only place a target's package may be imported)."""
    if path != FACTORY[0]:
        return set()
    tree = ast.parse(path.read_text())
    for n in tree.body:
        if isinstance(n, ast.FunctionDef) and n.name == FACTORY[1]:
            return set(range(n.lineno, (n.end_lineno or n.lineno) + 1))
    return set()


def test_the_apply_package_never_imports_a_target_package() -> None:
    """No module of scimflow/apply imports scimflow.connectors.superoffice (or .scim), except the writer factory."""
    modules = [*sorted(APPLY.glob("*.py")), FACTORY[0]]
    assert {p.name for p in modules} >= {"_engine.py", "_pool.py", "_writer.py", "_rows.py", "_run.py"}
    offenders = []
    for path in modules:
        exempt = _exempt_lines(path)
        for line, module in _imports(ast.parse(path.read_text())):
            target = _under(module, "scimflow.connectors.superoffice") or _under(module, "scimflow.connectors.scim")
            if target and line not in exempt:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert offenders == []
    assert _exempt_lines(FACTORY[0]), "the writer factory moved: update FACTORY"


def test_the_boundary_check_sees_a_lazy_import() -> None:
    """The check finds an import inside a function body too (so a lazy import cannot slip through)."""
    tree = ast.parse("def f():\n    from scimflow.connectors.superoffice import SuperOfficeWriter\n")
    assert (2, "scimflow.connectors.superoffice.SuperOfficeWriter") in set(_imports(tree))
    assert list(_module_level_imports(tree)) == []


def test_the_core_never_imports_prefect_flows_or_tasks() -> None:
    """No core module imports flows or tasks anywhere, nor prefect when it is imported."""
    offenders = []
    for path in sorted((ROOT / "scimflow").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for line, module in _imports(tree):
            if _under(module, "flows") or _under(module, "tasks"):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {module}")
        for line, module in _module_level_imports(tree):
            if _under(module, "prefect"):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert offenders == []
