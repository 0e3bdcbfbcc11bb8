"""The package layout keeps its rules: what crosses a module's edge, and no import circles.

The layers between packages are import-linter's contract in pyproject.toml (run by `make lint`);
these two rules are the ones it does not check.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import grimp

SYNCD = Path(__file__).resolve().parents[1] / "syncd"


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """Every ``from syncd... import ...`` in a file, with its line, module and names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("syncd"):
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def _package_of(path: Path) -> str:
    parts = path.relative_to(SYNCD.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts[:2])


def _module_exists(dotted: str) -> bool:
    base = SYNCD.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_name_is_imported_from_another_module() -> None:
    """``from syncd.x._m import _name`` never happens: a ``_name`` stays in its module. A private
    *module* is imported only from inside its own package."""
    wrong = []
    for path in sorted(SYNCD.rglob("*.py")):
        own_package = _package_of(path)
        for line, module, names in _imports(path):
            for name in names:
                dotted = f"{module}.{name}" if _module_exists(f"{module}.{name}") else module
                if _is_private(name) and dotted == module:
                    wrong.append(f"{path}:{line}: private name {name} from {module}")
                private = any(_is_private(part) for part in dotted.split("."))
                if private and ".".join(dotted.split(".")[:2]) != own_package:
                    wrong.append(f"{path}:{line}: {dotted} is private to its package")
    assert wrong == []


def test_no_module_imports_itself_through_a_circle() -> None:
    """No import cycle between syncd's modules, lazy (in-function) imports included; imports
    under ``TYPE_CHECKING`` are type hints only and do not count."""
    graph = grimp.build_graph("syncd", exclude_type_checking_imports=True)
    circles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == module or imported.startswith(module + "."):
                continue  # a package's __init__ importing its own modules is how faces work
            if module.startswith(imported + "."):
                continue  # a module importing its own package's face: checked below
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                circles.append(f"{module} -> {imported} -> ... -> {module}: {back}")
    assert circles == []


def test_no_module_imports_its_own_package_face() -> None:
    """Inside a package, modules import each other directly, never through the ``__init__``
    that re-exports them (that is the import circle the face would hide)."""
    wrong = []
    for path in sorted(SYNCD.rglob("_*.py")):
        if path.name.startswith("__"):
            continue  # __init__ is the face itself; __main__ runs it
        own_package = _package_of(path)
        for line, module, names in _imports(path):
            submodules = all(_module_exists(f"{module}.{name}") for name in names)
            if module == own_package and own_package != "syncd" and not submodules:
                wrong.append(f"{path}:{line}: imports its own package {module}")
    assert wrong == []


def test_every_package_face_gives_what_the_others_import_from_it() -> None:
    """What one package imports from another is listed in that package's ``__all__`` (its face),
    and every name a face lists is really there."""
    wrong = []
    for path in sorted(SYNCD.rglob("*.py")):
        own_package = _package_of(path)
        for line, module, names in _imports(path):
            is_package = (SYNCD.parent.joinpath(*module.split(".")) / "__init__.py").exists()
            if module.count(".") != 1 or not is_package or module == own_package:
                continue  # only another package's face
            face = importlib.import_module(module)
            listed = set(getattr(face, "__all__", ()))
            for name in names:
                if not _module_exists(f"{module}.{name}") and name not in listed:
                    wrong.append(f"{path}:{line}: {name} is not in {module}.__all__")
    for package in sorted({_package_of(path) for path in SYNCD.glob("*/__init__.py")}):
        face = importlib.import_module(package)
        wrong += [
            f"{package}.{name} is missing" for name in face.__all__ if not hasattr(face, name)
        ]
    assert wrong == []


def test_at_most_ten_modules_at_the_top() -> None:
    top = sorted(path.name for path in SYNCD.glob("*.py"))
    assert len(top) <= 10, top
