"""Start-up of the command line: what a process imports before it does any work.

``plancheck --version`` must answer without importing the library (numpy, pydicom, pydantic,
numba); building the parser (every subcommand's ``register``) must not import the heavy
libraries a subcommand imports only when it runs; a check with the ahead-of-time compiled
kernels never imports numba; and the defaults the help shows equal the library's.
Each case runs in a fresh interpreter (``sys.modules`` of this test process is not clean).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import plancheck.kernels
from plancheck.cli.defaults import DEFAULT_PROTOCOL
from plancheck.protocol.loader import DEFAULT_PROTOCOL as LIBRARY_DEFAULT_PROTOCOL

REPO = Path(__file__).resolve().parents[1]


def _modules_after(code: str, *argv: str) -> set[str]:
    """Top-level package names imported by a fresh interpreter running ``code``."""
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


HEAVY = {"numpy", "pydicom", "pydantic", "numba", "yaml", "rich", "jinja2", "shapely", "pynetdicom", "dask", "pyarrow"}


def test_version_imports_nothing_heavy() -> None:
    found = _modules_after("from plancheck.cli.main import main; import sys\n"
                           "import contextlib, io\n"
                           "with contextlib.redirect_stdout(io.StringIO()) as out: main(['--version'])\n"
                           "assert out.getvalue() == 'plancheck 0.1.0\\n', out.getvalue()")
    assert found & HEAVY == set()


def test_building_the_parser_imports_no_subcommand_machinery() -> None:
    """Every subcommand registers its options with light imports (the volume-model choices
    need plancheck.model, hence numpy); rich, jinja2, pydicom, the protocol schema (pydantic),
    the DICOM receiver and the batch runner are imported by the commands that use them."""
    found = _modules_after("from plancheck.cli.main import build_parser; build_parser()")
    assert found & {"pydicom", "pydantic", "numba", "yaml", "rich", "jinja2", "shapely", "pynetdicom", "dask",
                    "pyarrow"} == set()


def test_a_check_imports_neither_numba_nor_the_batch_and_network_machinery() -> None:
    if not plancheck.kernels.backend().startswith("ahead-of-time"):
        pytest.skip("the ahead-of-time compiled kernels are not built (pip install -e .)")
    found = _modules_after("from plancheck.cli.main import main; import sys, contextlib, io\n"
                           "with contextlib.redirect_stdout(io.StringIO()): main(['check', sys.argv[1]])",
                           str(REPO / "sample_dicom"))
    assert found & {"numba", "llvmlite", "rich", "jinja2", "pynetdicom", "dask", "pyarrow"} == set()


def test_the_help_shows_the_library_defaults() -> None:
    assert DEFAULT_PROTOCOL == LIBRARY_DEFAULT_PROTOCOL
