"""The public surface is explicit, and third-party libraries stay behind their boundary modules.

Like httpx's ``tests/test_exported_members.py``: every name in an ``__all__`` exists, and every
public name a module defines is in its ``__all__``. The import boundaries (pydicom only in
``plancheck/dicom/``, dicompyler-core only in ``plancheck/dvh/dicompyler_adapter.py``, pynetdicom
only in ``plancheck/net/``, numba only in ``plancheck/kernels/``) are checked by parsing the source with :mod:`ast`, so a lazy import
inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import plancheck

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "plancheck"
SOURCES = sorted([*PACKAGE.rglob("*.py"), *(REPO / "constraints").rglob("*.py")])


def _module_names() -> list[str]:
    # plancheck.__main__ runs the command line when imported: it is not an API module; nor is the
    # kernels' compiled extension (plancheck.kernels._aot, built at install: no Python source).
    return ["plancheck"] + sorted(m.name for m in pkgutil.walk_packages(plancheck.__path__, "plancheck.")
                                  if m.name.split(".")[-1] != "__main__"
                                  and str(importlib.util.find_spec(m.name).origin).endswith(".py"))


MODULES = _module_names()
MODULES_WITH_ALL = [name for name in MODULES if hasattr(importlib.import_module(name), "__all__")]
# The packages whose ``__init__`` is the public surface (re-exports with ``__all__``).
PUBLIC_PACKAGES = ["plancheck", "plancheck.dicom", "plancheck.model", "plancheck.radiobiology"]


# ------------------------------------------------------------------------------------- exports

def test_top_level_exports() -> None:
    assert plancheck.__version__ == "0.1.0"
    for name in plancheck.__all__:  # every advertised name resolves (lazily imported)
        assert getattr(plancheck, name) is not None, name
    public = sorted(name for name, value in vars(plancheck).items()
                    if (not name.startswith("_") or name == "__version__") and not inspect.ismodule(value))
    assert set(public) <= set(plancheck.__all__)  # nothing public that is not advertised
    assert {"read_export", "compute_dvh", "evaluate_metric", "run_check", "protocol_for_check"} <= set(plancheck.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        plancheck.nope  # noqa: B018


def test_library_logger_has_a_null_handler() -> None:
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("plancheck").handlers)


@pytest.mark.parametrize("module_name", ["plancheck.dicom", "plancheck.radiobiology", "plancheck.model",
                                         "plancheck.errors", "plancheck.cli.exit_codes"])
def test_subpackage_exports_resolve(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__all__
    for name in module.__all__:
        assert getattr(module, name, None) is not None, f"{module_name}.{name}"


def test_key_entry_points_are_exported() -> None:
    from plancheck import dicom, radiobiology

    assert {"read_export", "read_plan", "read_structure_set", "read_dose"} <= set(dicom.__all__)
    assert {"bed_gy", "eqd2_gy", "DoseKind", "DoseConversion", "load_alpha_beta_table"} <= set(radiobiology.__all__)
    assert radiobiology.eqd2_gy(60.0, 30, 10.0) == pytest.approx(60.0)


@pytest.mark.parametrize("module_name", MODULES_WITH_ALL)
def test_all_names_exist_and_are_unique(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert len(module.__all__) == len(set(module.__all__)), module_name
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("module_name", PUBLIC_PACKAGES)
def test_nothing_public_is_missing_from_all(module_name: str) -> None:
    """A package's ``__init__`` exports exactly its public, non-module names (httpx's rule)."""
    module = importlib.import_module(module_name)
    public = {name for name, value in vars(module).items()
              if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"}
    assert sorted(public - set(module.__all__)) == []


def _cross_module_imports() -> set[tuple[str, str, str]]:
    """(file, module, name) of every ``from plancheck.x import name`` of a non-module name that
    ``plancheck.x`` does not list in ``__all__``: code in one module relying on another's internals."""
    found = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    and node.module.split(".")[0] == "plancheck"):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if inspect.ismodule(getattr(module, alias.name, None)):
                    continue
                if alias.name not in getattr(module, "__all__", ()):
                    found.add((path.relative_to(REPO).as_posix(), node.module, alias.name))
    return found


def test_modules_use_only_each_others_exports() -> None:
    """A name one module imports from another is in that module's ``__all__``."""
    assert sorted(_cross_module_imports()) == []


def test_every_module_has_all_or_is_a_namespace_of_submodules() -> None:
    """Sub-packages without ``__all__`` define nothing public themselves (they only hold modules)."""
    for name in MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "__all__"):
            continue
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")]
        assert defs == [], f"{name} defines {defs} but has no __all__"


# ----------------------------------------------------------------------------- import boundaries

BOUNDARIES = {
    # third-party top-level package: where it may be imported (a folder, or one file)
    "pydicom": "plancheck/dicom/",
    "dicompylercore": "plancheck/dvh/dicompyler_adapter.py",
    "pynetdicom": "plancheck/net/",
    "numba": "plancheck/kernels/",
    "watchdog": "plancheck/watch/observer.py",
}


def _imported_packages(path: Path) -> set[str]:
    """Top-level names of every absolute import in ``path``, wherever it is (also in functions),
    and of ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.add(node.args[0].value.split(".")[0])
    return found


IMPORTS = {path.relative_to(REPO).as_posix(): _imported_packages(path) for path in SOURCES}


def test_the_import_scan_sees_the_boundary_modules() -> None:
    """Guard against a scan that finds nothing: the boundary modules do import their libraries
    (dicompyler-core lazily, inside functions)."""
    assert any("pydicom" in found for rel, found in IMPORTS.items() if rel.startswith("plancheck/dicom/"))
    assert "dicompylercore" in IMPORTS["plancheck/dvh/dicompyler_adapter.py"]
    assert len(IMPORTS) > 40


@pytest.mark.parametrize("library", list(BOUNDARIES))
def test_library_imported_only_behind_its_boundary(library: str) -> None:
    allowed = BOUNDARIES[library]
    offenders = sorted(rel for rel, found in IMPORTS.items()
                       if library in found and not (rel == allowed or (allowed.endswith("/") and rel.startswith(allowed))))
    assert offenders == [], f"{library} may only be imported in {allowed}"


def test_library_code_does_not_print_or_configure_logging() -> None:
    """Only the CLI writes to the terminal and configures logging; the library logs."""
    offenders = []
    for path in SOURCES:
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("plancheck/cli/") or rel in ("plancheck/__main__.py", "plancheck/kernels/build.py"):
            continue  # command lines (build.py: the install's build step, python -m plancheck.kernels.build)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id == "print":
                    offenders.append(f"{rel}:{node.lineno} print()")
                elif isinstance(func, ast.Attribute) and func.attr == "basicConfig":
                    offenders.append(f"{rel}:{node.lineno} logging.basicConfig()")
    assert offenders == []
