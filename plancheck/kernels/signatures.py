"""The argument types of every kernel, as plain data (no numba here).

The ahead-of-time build (:mod:`plancheck.kernels.build`) compiles each kernel once per
signature listed here; at run time :mod:`plancheck.kernels` calls the compiled function
only when every argument has exactly the listed type, else the JIT function (numba would
have compiled a separate specialisation for any other type, and a compiled function
called with the wrong types reads memory it should not: the check is not optional).

Argument tokens
---------------
``f8``, ``i8``
    A Python ``float`` (or ``numpy.float64``) / a Python ``int`` (or a signed 64-bit numpy
    integer; ``bool`` is not accepted).
``f4[:]``, ``f8[:]``, ``i1[:]``, ``i8[:]``, ``u1[:]``, ``b1[:]``
    A C-contiguous, aligned, writeable 1-D ``numpy.ndarray`` of that dtype (float32,
    float64, int8, int64, uint8, bool) in native byte order.
``f8[:,:]`` ...
    The same, 2-D.
``u1[:]r``
    A read-only 1-D array (numba types read-only arrays separately).

The return types are numba type strings, used by the build only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ArgType", "Signature", "SIGNATURES", "SOURCES", "MODULE_OF", "parse_token", "exported_name", "source_digest"]

_DTYPES = {
    "f4": np.dtype(np.float32),
    "f8": np.dtype(np.float64),
    "i1": np.dtype(np.int8),
    "i8": np.dtype(np.int64),
    "u1": np.dtype(np.uint8),
    "b1": np.dtype(np.bool_),
}


@dataclass(frozen=True)
class ArgType:
    """One argument's type: a scalar (``ndim == 0``) or a C-contiguous array."""

    code: str
    ndim: int = 0
    readonly: bool = False

    def matches(self, value: object) -> bool:
        """True when ``value`` has exactly this type (see the module docstring)."""
        if self.ndim == 0:
            if self.code == "f8":
                return isinstance(value, float)  # numpy.float64 is a float subclass
            if self.code == "i8":
                if isinstance(value, bool):
                    return False
                if isinstance(value, int):
                    return -(2 ** 63) <= value < 2 ** 63
                return isinstance(value, np.signedinteger) and value.dtype.itemsize == 8
            return False
        if type(value) is not np.ndarray:
            return False
        flags = value.flags
        return (value.dtype == _DTYPES[self.code] and value.dtype.isnative and value.ndim == self.ndim
                and flags.c_contiguous and flags.aligned and flags.writeable != self.readonly)

    def numba_text(self) -> str:
        """The numba type string (``f8[::1]``, ``i8[:, ::1]``, ``Array(u1, 1, 'C', readonly=True)``)."""
        if self.ndim == 0:
            return self.code
        if self.readonly:
            return f"Array({self.code}, {self.ndim}, 'C', readonly=True)"
        return f"{self.code}[{', '.join([':'] * (self.ndim - 1) + ['::1'])}]"


def parse_token(token: str) -> ArgType:
    """``"f8[:,:]"`` → ``ArgType("f8", 2)`` (see the module docstring).

    Raises
    ------
    ValueError
        For a token outside the documented set.
    """
    readonly = token.endswith("r")
    body = token[:-1] if readonly else token
    code, _, dims = body.partition("[")
    if code not in _DTYPES or (dims and not dims.endswith("]")):
        raise ValueError(f"kernel argument type {token!r}: expected e.g. f8, i8, f8[:], i8[:,:], u1[:]r")
    ndim = len(dims[:-1].split(",")) if dims else 0
    if ndim == 0 and (readonly or code not in ("f8", "i8")):
        raise ValueError(f"kernel argument type {token!r}: scalars are f8 or i8")
    return ArgType(code, ndim, readonly)


@dataclass(frozen=True)
class Signature:
    """One compiled variant of a kernel: its argument types and (for the build) return type."""

    returns: str
    args: tuple[ArgType, ...]

    @classmethod
    def of(cls, returns: str, args: str) -> Signature:
        return cls(returns, tuple(parse_token(t) for t in args.split()))

    def matches(self, values: tuple) -> bool:
        return len(values) == len(self.args) and all(a.matches(v) for a, v in zip(self.args, values))

    def numba_text(self) -> str:
        return f"{self.returns}({', '.join(a.numba_text() for a in self.args)})"


def _axis(dose_code: str) -> str:
    return f"{dose_code}[:]"


def _column_cells(dose: str) -> Signature:
    return Signature.of("none", (
        f"{_axis(dose)} i8 i8 "
        "i8[:] i8[:] f8[:] f8[:] b1[:] "          # x tables
        "i8[:] i8[:] f8[:] f8[:] b1[:] "          # y tables
        "i8[:] i8[:] i8[:] i8[:] "                # col, row, plane, counts
        "i8[:,:] i8[:,:] f8[:,:] f8[:,:] b1[:,:] f8[:,:] f8 "  # z tables, heights, step
        "f8[:] f8[:] f8[:] f8[:] f8[:]"))         # dose, gx, gy, gz, spread


def _lattice_cells(dose: str) -> Signature:
    return Signature.of("none", (
        f"{_axis(dose)} i8 i8 "
        "i8[:] i8[:] f8[:] f8[:] b1[:] i8 "       # x tables, column offset
        "i8[:] i8[:] f8[:] f8[:] b1[:] i8 "       # y tables, row offset
        "i8[:] i8[:] f8[:] f8[:] b1[:] "          # z tables
        "i8[:] i8[:] i8[:] f8[:] f8 "             # col, row, zcode, heights, step
        "f8[:] f8[:] f8[:] f8[:] f8[:]"))


def _point_cells(dose: str) -> Signature:
    return Signature.of("none", (
        f"{_axis(dose)} i8 i8 "
        "i8[:] i8[:] f8[:] f8[:] i8[:] i8[:] f8[:] f8[:] i8[:] i8[:] f8[:] f8[:] "
        "b1[:] f8[:] f8[:] f8[:] f8[:]"))


SIGNATURES: dict[str, tuple[Signature, ...]] = {
    "column_cells": (_column_cells("f4"), _column_cells("f8")),
    "lattice_cells": (_lattice_cells("f4"), _lattice_cells("f8")),
    "point_cells": (_point_cells("f4"), _point_cells("f8")),
    "voxel_corner_bounds": tuple(Signature.of("none", f"{_axis(d)} i8 i8 i8[:] i8 i8 i8[:] i8[:] i8[:] f8[:] f8[:]")
                                 for d in ("f4", "f8")),
    "spread_widths": (Signature.of("none", "f8[:] f8[:] f8[:] f8 f8[:] f8[:]"),),
    "spread_histogram": (Signature.of("f8", "f8[:] f8[:] f8[:] f8 f8 f8 f8[:] f8[:] f8[:] f8[:] f8[:]"),),
    "subdivide_cells": (Signature.of(
        "Tuple((i8[::1], i8[::1], i8[::1], f8[::1]))",
        "f8[:] f8[:] f8[:] f8[:] i8[:] i8 f8 f8 f8 i8 i8[:] i8[:] i8[:] i8[:] f8[:] i8"),),
    "slot_major_values": (Signature.of("none", "i8[:] i8[:] f8[:,:] f8[:]"),
                          Signature.of("none", "i8[:] i8[:] i8[:,:] i8[:]")),
    "rasterize_lattice": (Signature.of("UniTuple(i8[::1], 3)", "f8[:] f8[:] f8[:] f8[:] i8[:] f8 f8 f8 i8 i8"),),
    "sample_stats": (Signature.of("Tuple((f8, f8, f8, f8, i8))", "f8[:] f8[:]"),),
    "plane_edge_table": (Signature.of("Tuple((f8[::1], f8[::1], f8[::1], f8[::1], i8[::1]))", "f8[:,:] i8[:] i8[:] i8"),),
    "tail_cells": (Signature.of("Tuple((i8[::1], f8))", "f8[:] f8[:] f8[:] f8 f8 i8"),),
    "replace_plane_weights": (Signature.of("UniTuple(f8[::1], 2)", "f8[:] i8[:] i8[:] f8[:] i8[:] i8"),),
    "edge_points": (Signature.of("Tuple((f8[:, ::1], i8[::1]))", "f8[:,:] i8[:] i8[:] f8"),),
    "segment_distances": (Signature.of("none", "f8[:] f8[:] f8[:,:] f8[:]"),),
    "parse_decimal_strings": (Signature.of("Tuple((f8[::1], i1[::1], i8[::1], i8[::1], i8))", "u1[:]r i8"),
                              Signature.of("Tuple((f8[::1], i1[::1], i8[::1], i8[::1], i8))", "u1[:] i8")),
    "crossing_flags": (Signature.of("b1[::1]", "f8[:,:] i8[:] i8[:] i8"),),
    "contour_measures": (Signature.of(
        "Tuple((f8[::1], b1[::1], i8[::1], f8[::1], f8[::1], f8[::1], f8[::1], f8[::1]))", "f8[:,:] i8[:]"),),
}
"""Every kernel and the types it is compiled for ahead of time."""

_READER_KERNELS: dict[str, tuple[str, ...]] = {
    "decimal_strings": ("parse_decimal_strings",),  # the RT Structure Set reader's DS parser
    "contour_checks": ("contour_measures", "crossing_flags"),  # its contour checks
}
SOURCES: dict[str, tuple[str, ...]] = {
    # the DVH engine's loops: every kernel that is not the reader's
    "jit": tuple(name for name in SIGNATURES if not any(name in k for k in _READER_KERNELS.values())),
    **_READER_KERNELS,
}
"""Where each kernel is defined: module of :mod:`plancheck.kernels` → its kernels."""

MODULE_OF = {kernel: module for module, kernels in SOURCES.items() for kernel in kernels}
"""The defining module of each kernel."""


def exported_name(kernel: str, variant: int) -> str:
    """Name of a compiled variant in the extension module, e.g. ``column_cells__1``."""
    return f"{kernel}__{variant}"


def source_digest() -> int:
    """A 62-bit digest of the kernels' source and of this table: the extension stores the
    digest it was built from, and a different one means it is stale (an edited checkout)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in (*(f"{module}.py" for module in SOURCES), "signatures.py"):
        h.update((here / name).read_bytes())
    return int.from_bytes(h.digest()[:8], "little") >> 2
