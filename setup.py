"""Build step of plancheck: everything is in pyproject.toml except finding the packages and
compiling the kernels.

The packages are every package under ``plancheck/`` (found, not listed) and
``plancheck.constraints``, the top-level ``constraints/`` folder mapped into the package
(``[tool.setuptools.package-dir]``; its data files: ``[tool.setuptools.package-data]``).

``build_ext`` compiles the DVH engine's kernels ahead of time into
``plancheck/kernels/_aot`` (numba's pycc; see ``plancheck/kernels/build.py``). It is
optional: if it fails (no C compiler, an unsupported platform), the install still succeeds
and plancheck compiles the kernels on first use instead (about 15 s, once).
"""

from __future__ import annotations

import os
import sys
import time
import traceback

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

AOT_MODULE = "plancheck.kernels._aot"


class BuildKernels(build_ext):
    """Compile ``plancheck.kernels._aot`` with numba's pycc instead of a C source."""

    def build_extension(self, ext: Extension) -> None:
        if ext.name != AOT_MODULE:
            super().build_extension(ext)
            return
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        start = time.perf_counter()
        sys.stderr.write("plancheck: compiling the DVH kernels ahead of time (about 30-60 s, once) ...\n")
        try:
            here = os.path.dirname(os.path.abspath(__file__))
            if here not in sys.path:
                sys.path.insert(0, here)
            from plancheck.kernels.build import compile_extension

            built = compile_extension(os.path.dirname(target))
            if os.path.abspath(str(built)) != os.path.abspath(target):
                os.replace(built, target)
        except Exception:  # optional: the JIT kernels work without it
            sys.stderr.write("plancheck: WARNING: could not compile the kernels ahead of time; they will be "
                             "compiled on first use instead. Reason:\n" + traceback.format_exc(limit=3))
            return
        sys.stderr.write(f"plancheck: kernels compiled in {time.perf_counter() - start:.0f} s\n")


setup(
    packages=[*find_packages(include=["plancheck", "plancheck.*"]), "plancheck.constraints"],
    ext_modules=[Extension(AOT_MODULE, sources=[], optional=True)],
    cmdclass={"build_ext": BuildKernels},
)
