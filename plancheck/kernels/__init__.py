"""plancheck's compiled inner loops (the only place numba is used): ahead-of-time compiled when
installed, else JIT.

The kernels are defined once, as numba functions: the DVH engine's in
:mod:`plancheck.kernels.jit`, the RT Structure Set reader's decimal-string parser in
:mod:`plancheck.kernels.decimal_strings` (each documented there). ``pip install`` also compiles them ahead of time
(:mod:`plancheck.kernels.build`) into the extension ``plancheck.kernels._aot``; this
module exposes each kernel under its own name and runs

* the ahead-of-time compiled variant when the extension is present, built from the same
  source (its stored digest equals :func:`~plancheck.kernels.signatures.source_digest`)
  and every argument has exactly a type it was compiled for
  (:data:`~plancheck.kernels.signatures.SIGNATURES`): no numba import, no compilation;
* otherwise the JIT function (numba is imported then; the first use after an install
  compiles it, later processes load numba's on-disk cache).

Both run the same code with the same options, and the tests compare them.
``PLANCHECK_KERNELS=jit`` forces the JIT functions, ``aot`` refuses to start without the
compiled extension (for checking an install), ``auto`` (default) chooses as above.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import Any

from plancheck.kernels.signatures import MODULE_OF, SIGNATURES, exported_name, source_digest

__all__ = [*SIGNATURES, "backend", "jit_kernel"]
"""Every kernel (served by the module ``__getattr__`` below), the backend in use, the JIT accessor."""

log = logging.getLogger(__name__)

_MODES = ("auto", "aot", "jit")


def _load_extension() -> tuple[Any | None, str]:
    """The compiled extension and why it is (not) used."""
    mode = os.environ.get("PLANCHECK_KERNELS", "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise RuntimeError(f"PLANCHECK_KERNELS={mode!r}: expected one of {', '.join(_MODES)}")
    if mode == "jit":
        return None, "JIT (PLANCHECK_KERNELS=jit)"
    try:
        from plancheck.kernels import _aot  # type: ignore[attr-defined]
    except ImportError as exc:
        reason = f"JIT (no ahead-of-time compiled kernels: {exc})"
        extension = None
    else:
        if _aot.source_digest() == source_digest():
            return _aot, f"ahead-of-time compiled ({os.path.basename(getattr(_aot, '__file__', '_aot'))})"
        reason = "JIT (the ahead-of-time compiled kernels are older than their source; rebuild: python -m plancheck.kernels.build)"
        extension = None
    if mode == "aot":
        raise RuntimeError(f"PLANCHECK_KERNELS=aot but {reason}")
    return extension, reason


_EXTENSION, _BACKEND = _load_extension()
log.debug("kernels: %s", _BACKEND)


def backend() -> str:
    """Which kernels run: ``ahead-of-time compiled (...)`` or ``JIT (reason)``."""
    return _BACKEND


def jit_kernel(name: str) -> Callable[..., Any]:
    """The JIT function of a kernel (imports numba)."""
    return getattr(importlib.import_module(f"plancheck.kernels.{MODULE_OF[name]}"), name)


def _dispatcher(name: str) -> Callable[..., Any]:
    variants = SIGNATURES[name]
    if _EXTENSION is None:
        return jit_kernel(name)
    compiled = [(sig, getattr(_EXTENSION, exported_name(name, i))) for i, sig in enumerate(variants)]

    def kernel(*args: Any) -> Any:
        for sig, function in compiled:
            if sig.matches(args):
                return function(*args)
        log.debug("kernel %s: argument types not compiled ahead of time, using the JIT function", name)
        return jit_kernel(name)(*args)

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = f"{name} (ahead-of-time compiled; see plancheck.kernels.jit.{name})"
    return kernel


_cache: dict[str, Callable[..., Any]] = {}


def __getattr__(name: str) -> Callable[..., Any]:
    if name in SIGNATURES:
        function = _cache.get(name)
        if function is None:
            function = _cache.setdefault(name, _dispatcher(name))
        return function
    raise AttributeError(f"module 'plancheck.kernels' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SIGNATURES))
