"""Where the course notebooks are and what their metadata says."""

from __future__ import annotations

import ast
import re
import symtable
import tomllib
from pathlib import Path

import nbformat

from coursetools import ROOT

CHECK_TAG = "nbval-check-output"
PARAMETERS_TAG = "parameters"


def lectures() -> list[Path]:
    return sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))


def solutions() -> list[Path]:
    return sorted((ROOT / "solutions").glob("*/*.ipynb"))


def exercises() -> list[Path]:
    return sorted((ROOT / "exercises").glob("*/*.ipynb"))


def executable_notebooks() -> list[Path]:
    """Every notebook the suite executes: lectures and instructor solutions."""
    return lectures() + solutions()


def keras_notebooks() -> list[Path]:
    """Executable notebooks that use Keras: the suite also runs these on the JAX backend."""
    return [p for p in executable_notebooks() if "keras" in imported_modules(read(p))]


def relpath(path: Path) -> str:
    """The path relative to the repository root (a path outside it stays absolute)."""
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.as_posix()


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def is_checked(cell) -> bool:
    """A cell whose stored output is a regression reference for nbval."""
    return CHECK_TAG in tags(cell)


def parameters_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and PARAMETERS_TAG in tags(c)]


def parameter_names(nb) -> set[str]:
    """Names assigned in the notebook's parameters cell(s)."""
    names: set[str] = set()
    for cell in parameters_cells(nb):
        for node in ast.parse(cell.source).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def ci_parameters(nb) -> dict:
    """The parameter overrides the test suite uses (notebook metadata ``course.ci_parameters``)."""
    return dict(nb.metadata.get("course", {}).get("ci_parameters", {}))


def course_settings() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["course"]


def colab_url(path: Path) -> str:
    settings = course_settings()
    return (
        "https://colab.research.google.com/github/"
        f"{settings['repository']}/blob/{settings['branch']}/{relpath(path)}"
    )


_MAGIC = re.compile(r"^\s*[%!]")


def python_source(cell) -> str:
    """A code cell's source without its IPython magic and shell lines (``%...``, ``!...``)."""
    return "\n".join(line for line in cell.source.splitlines() if not _MAGIC.match(line))


def imported_modules(nb) -> set[str]:
    """Top-level module names imported by the notebook's code cells (magics skipped)."""
    modules: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(python_source(cell))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                modules.add(".")  # relative import: always repo-local
    return modules


def repo_local_modules() -> set[str]:
    """Names a notebook could import from this repository instead of from a package."""
    names = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    for top in ROOT.iterdir():
        if top.is_dir() and not top.name.startswith(".") and top.name not in {"build", "_build"}:
            names |= {p.stem for p in top.rglob("*.py")}
    return names | {p.stem for p in ROOT.glob("*.py")} | {"."}


def _scopes(table: symtable.SymbolTable):
    """A symbol table and every table nested in it (functions, classes, lambdas, comprehensions)."""
    yield table
    for child in table.get_children():
        yield from _scopes(child)


def global_names(source: str) -> tuple[set[str], set[str]]:
    """``(bound, loaded)``: the global names a piece of code (one cell) binds, and those it reads.

    *Bound*: assigned, imported, defined (``def``/``class``), or a ``for``/``with``/
    ``except ... as`` target or walrus at module level, or declared ``global`` and
    assigned inside a function. *Loaded*: read at module level, or read inside a
    function, class or comprehension where it resolves to the global namespace; a
    function's parameters and locals, and the enclosing function's names it closes
    over, are not global. Names a star import brings in are not seen. Found by
    Python's own compiler (:mod:`symtable`), so scoping follows the language.
    """
    top = symtable.symtable(source, "<cell>", "exec")
    bound: set[str] = set()
    loaded: set[str] = set()
    for table in _scopes(top):
        module_level = table is top
        for symbol in table.get_symbols():
            is_global = module_level or symbol.is_global()
            binds = symbol.is_assigned() or symbol.is_imported()
            if binds and (module_level or symbol.is_declared_global()):
                bound.add(symbol.get_name())
            if symbol.is_referenced() and is_global:
                loaded.add(symbol.get_name())
    return bound, loaded
