"""Input checks shared by the linear-quadratic formulas (private).

Every check raises :class:`plancheck.errors.RadiobiologyError` whose message
names the parameter, the value found and what is required, e.g.
``A 'fractions' value of 2.5 is invalid, it must be a whole number >= 1``.
"""

from __future__ import annotations

import math
import numbers
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from plancheck.errors import RadiobiologyError

__all__ = [
    "DoseT",
    "as_dose_array",
    "check_alpha_beta_gy",
    "check_finite",
    "check_fractions",
    "check_positive",
    "restore_kind",
]

#: A dose given as a plain number (returned as ``float``) or as an array of
#: voxel doses (returned as a ``numpy.ndarray`` of the same shape).
DoseT = TypeVar("DoseT", float, np.ndarray)


def _as_real(value: object, name: str) -> float:
    """Return ``value`` as a float, refusing bools, strings and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RadiobiologyError(
            f"A '{name}' value of {value!r} ({type(value).__name__}) is invalid, "
            "it must be a real number"
        )
    return float(value)


def check_finite(value: object, name: str) -> float:
    """Return ``value`` as a finite float."""
    number = _as_real(value, name)
    if not math.isfinite(number):
        raise RadiobiologyError(f"A '{name}' value of {number} is invalid, it must be finite")
    return number


def check_positive(value: object, name: str, unit: str = "") -> float:
    """Return ``value`` as a finite float > 0."""
    number = check_finite(value, name)
    if number <= 0:
        suffix = f" {unit}" if unit else ""
        raise RadiobiologyError(
            f"A '{name}' value of {number:g}{suffix} is invalid, it must be > 0{suffix}"
        )
    return number


def check_alpha_beta_gy(value: object, name: str = "alpha_beta_gy") -> float:
    """Return an α/β ratio (Gy) as a finite float > 0."""
    return check_positive(value, name, "Gy")


def check_fractions(value: object, name: str = "fractions") -> int:
    """Return a number of fractions as an ``int`` >= 1.

    Integral floats (``30.0``) are accepted; ``2.5``, ``0``, ``-1``, ``True``,
    NaN and infinity are not.
    """
    number = check_finite(value, name)
    if number != math.floor(number) or number < 1:
        raise RadiobiologyError(
            f"A '{name}' value of {value} is invalid, it must be a whole number >= 1"
        )
    return int(number)


def as_dose_array(
    value: float | npt.ArrayLike, name: str, *, allow_negative: bool = False
) -> tuple[np.ndarray, bool]:
    """Convert a dose (number or array, Gy) to a float64 array and check it.

    Returns
    -------
    (array, is_scalar)
        ``is_scalar`` is True when ``value`` was not a ``numpy.ndarray`` and
        had no dimensions, so the caller can return a ``float``.
    """
    is_scalar = not isinstance(value, np.ndarray) and np.ndim(value) == 0
    if is_scalar:
        _as_real(value, name)  # refuse bools, strings and None with a clear message
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RadiobiologyError(
            f"A '{name}' value of type {type(value).__name__} is invalid, "
            "it must be a number or an array of numbers (Gy)"
        ) from exc
    bad = ~np.isfinite(array)
    if bad.any():
        first = array[bad].flat[0]
        raise RadiobiologyError(
            f"'{name}' holds {int(bad.sum())} non-finite value(s) (e.g. {first}); "
            "every dose must be finite"
        )
    if not allow_negative:
        negative = array < 0
        if negative.any():
            raise RadiobiologyError(
                f"'{name}' holds {int(negative.sum())} negative value(s) "
                f"(the lowest is {array.min():g} Gy); every dose must be >= 0 Gy"
            )
    return array, is_scalar


def restore_kind(result: np.ndarray, is_scalar: bool) -> float | np.ndarray:
    """Return ``result`` as a ``float`` if the input was a number, else as the array."""
    return float(result) if is_scalar else result
