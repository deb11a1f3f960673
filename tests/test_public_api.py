"""The public surface is explicit, and the layers and third-party boundaries hold.

Like httpx's ``tests/test_exported_members.py``: every name in an ``__all__`` exists, and every
public name a module defines is in its ``__all__``. The layers and the import boundaries
(pydicom only in ``plancheck/dicom/``, dicompyler-core only in
``plancheck/dvh/dicompyler_adapter.py``, pynetdicom only in ``plancheck/net/``, numba only in
``plancheck/kernels/`` ...) are import-linter contracts (``pyproject.toml``), run here too.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import importlib.util
import pkgutil
import subprocess
import sys
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


# ------------------------------------------------------------------------- layers and boundaries

def test_the_import_contracts_are_kept() -> None:
    """The layers and the third-party boundaries (pydicom only in ``plancheck/dicom/``, numba
    only in ``plancheck/kernels/`` ...) are import-linter contracts in ``pyproject.toml``
    (``[tool.importlinter]``); ``.ci/run`` runs ``lint-imports`` before the tests, and so does
    this test, so that a test run alone sees a broken layer too. import-linter's graph includes
    imports inside functions."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


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
