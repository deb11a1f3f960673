"""Compile the kernels ahead of time into an extension module (run at install).

``pip install`` runs this through ``setup.py`` (its ``build_ext`` step): numba's ``pycc``
compiles every kernel (:mod:`plancheck.kernels.jit`, :mod:`plancheck.kernels.decimal_strings`) for every signature of
:mod:`plancheck.kernels.signatures` into ``plancheck/kernels/_aot*.so``, with the JIT's
semantics (``error_model="numpy"``, no fastmath) and releasing the GIL like the JIT's
``nogil`` (structures run in threads). The module needs neither numba nor a compiler at run
time, so a process starts without importing numba (about 0.3 s) and without loading
numba's cache (about 0.4 s), and no user ever waits for a compilation.

The code is built for the generic CPU of the architecture (e.g. ``x86-64``), so a built
wheel runs on any machine of that architecture; ``PLANCHECK_AOT_CPU=host`` builds for
the building machine's CPU instead.

Rebuild by hand (e.g. after editing the kernels in a development checkout; a stale module
is detected and not used)::

    python -m plancheck.kernels.build

If the build fails (no C compiler, say), the install goes on and plancheck uses the JIT
kernels, compiled on first use.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

__all__ = ["EXTENSION_NAME", "compile_extension", "main"]

EXTENSION_NAME = "_aot"
"""Module name of the extension inside :mod:`plancheck.kernels`."""


def _configure_flags() -> None:
    """Make pycc compile with the JIT's semantics: pycc builds its own default ``Flags``
    (Python error model, GIL held); give it a subclass with the kernels' options."""
    import numba.pycc.compiler as pycc_compiler
    from numba.core.compiler import Flags

    if getattr(pycc_compiler.Flags, "_plancheck", False):
        return

    class KernelFlags(Flags):
        _plancheck = True

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True
            self.error_model = "numpy"
            self.fastmath = False

    pycc_compiler.Flags = KernelFlags


def compile_extension(output_dir: str | os.PathLike[str], *, cpu: str | None = None, verbose: bool = False) -> Path:
    """Compile every kernel variant into ``output_dir``; returns the module's path.

    Parameters
    ----------
    output_dir
        Folder of the extension (``plancheck/kernels`` of the install).
    cpu
        LLVM CPU name; default ``$PLANCHECK_AOT_CPU`` or the generic CPU of the architecture.
    verbose
        Print progress.
    """
    import warnings

    from numba.core.errors import NumbaPendingDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaPendingDeprecationWarning)  # pycc: see docs/performance notes
        from numba.pycc import CC

    _configure_flags()
    from plancheck.kernels import jit
    from plancheck.kernels.signatures import MODULE_OF, SIGNATURES, exported_name, source_digest

    cc = CC(EXTENSION_NAME, source_module=jit)
    cc.output_dir = str(output_dir)
    cc.target_cpu = cpu if cpu is not None else os.environ.get("PLANCHECK_AOT_CPU", "")
    cc.verbose = verbose
    for kernel, variants in SIGNATURES.items():
        func = getattr(importlib.import_module(f"plancheck.kernels.{MODULE_OF[kernel]}"), kernel).py_func
        for i, sig in enumerate(variants):
            cc.export(exported_name(kernel, i), sig.numba_text())(func)
    namespace: dict = {}
    exec(f"def source_digest():\n    return {source_digest()}\n", namespace)  # noqa: S102 (a constant)
    cc.export("source_digest", "i8()")(namespace["source_digest"])
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    cc.compile()
    return Path(output_dir) / cc.output_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plancheck.kernels.build", description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=str(Path(__file__).resolve().parent),
                        help="folder of the extension (default: this package)")
    parser.add_argument("--cpu", default=None, help="LLVM CPU name (default: generic; 'host': this machine)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = compile_extension(args.output_dir, cpu=args.cpu)
    print(f"compiled {path} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
