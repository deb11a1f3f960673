"""What gets installed: every module and every data file.

The packages are found, not listed (``setup.py``: every package under ``plancheck/``, plus the
top-level ``constraints/`` folder mapped into the package as ``plancheck.constraints``), and the
data files are picked by globs (``[tool.setuptools.package-data]``). A ``build_py`` of a copy of
the sources proves it: every module and every data file (α/β table, TG-263 nomenclature,
structure synonyms, protocols) is in the tree a wheel installs, and readable with
``importlib.resources``; the test kit (``testkit/``) is not.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
DATA_FILES = ("alpha_beta.yaml", "tg263_nomenclature.csv", "structure_synonyms.yaml")


def test_console_script_points_at_the_cli() -> None:
    module, _, func = PYPROJECT["project"]["scripts"]["plancheck"].partition(":")
    assert (module, func) == ("plancheck.cli.main", "run")
    import plancheck.cli.main

    assert callable(plancheck.cli.main.run)


# --------------------------------------------------------------------------------- data files

@pytest.mark.parametrize("name", DATA_FILES)
def test_data_file_readable_with_importlib_resources(name: str) -> None:
    text = files("plancheck.constraints").joinpath(name).read_text(encoding="utf-8")
    assert len(text) > 1000
    if name.endswith(".yaml"):
        assert yaml.safe_load(text)
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        assert "TG263-Primary Name" in rows[0]
        assert {"SpinalCord", "Heart", "Esophagus"} <= {r["TG263-Primary Name"] for r in rows}


# ------------------------------------------------------------------- an installed source tree

@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``setup.py build_py`` of a copy of the sources: the tree a wheel would install."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy2(REPO / name, src / name)
    for folder in ("plancheck", "constraints", "testkit"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    if (REPO / "README.md").exists():
        shutil.copy2(REPO / "README.md", src / "README.md")
    out = src / "build_lib"
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(out)], cwd=src,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


def test_built_tree_has_the_data_files(built: Path) -> None:
    source_data = sorted(p.relative_to(REPO / "constraints").as_posix() for p in (REPO / "constraints").rglob("*")
                         if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts)
    assert set(DATA_FILES) <= set(source_data)
    installed = sorted(p.relative_to(built / "plancheck" / "constraints").as_posix()
                       for p in (built / "plancheck" / "constraints").rglob("*") if p.is_file() and p.suffix != ".py")
    assert installed == source_data
    assert (built / "plancheck" / "py.typed").is_file()


def test_built_tree_reads_its_data_with_importlib_resources(built: Path, tmp_path: Path) -> None:
    code = (
        "from importlib.resources import files\n"
        "import plancheck, plancheck.constraints\n"
        f"assert plancheck.__file__.startswith({str(built)!r}), plancheck.__file__\n"
        f"for name in {DATA_FILES!r}:\n"
        "    assert files('plancheck.constraints').joinpath(name).read_text(encoding='utf-8')\n"
        "from plancheck.radiobiology import load_alpha_beta_table\n"
        "print(load_alpha_beta_table().lookup('SpinalCord', is_target=False).alpha_beta_gy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(built)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) == pytest.approx(2.0)


def test_built_tree_has_every_module_and_not_the_test_kit(built: Path) -> None:
    source = {p.relative_to(REPO).as_posix() for p in (REPO / "plancheck").rglob("*.py") if "__pycache__" not in p.parts}
    installed = {p.relative_to(built).as_posix() for p in (built / "plancheck").rglob("*.py")
                 if "constraints" not in p.relative_to(built).parts}
    assert sorted(source - installed) == []
    assert (built / "plancheck" / "report" / "templates" / "report.html.j2").is_file()
    assert sorted(p.name for p in built.iterdir()) == ["plancheck"]  # no testkit, no top-level constraints
