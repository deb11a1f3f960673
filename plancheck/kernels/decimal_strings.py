"""The DICOM decimal-string (DS) parser as a numba JIT function: the RT Structure Set reader's
kernel (:mod:`plancheck.dicom.fast_contours`), apart from the DVH engine's (:mod:`plancheck.kernels.jit`).

It is compiled because it has to be fast: a clinical structure set holds about half a million
contour coordinates, which this kernel reads in about 10 ms; Python's ``float()`` on each token
takes 130–200 ms, numpy's string casts and ``loadtxt`` 130–250 ms, and pydicom's own conversion
of the ROI Contour Sequence 0.4 s more per structure set (the sample, on the project's 2-core
machine). Compiled ahead of time with the DVH kernels, with the same options
(:data:`plancheck.kernels.jit.JIT_OPTIONS`).

References
----------
DICOM PS3.5 §6.2 (Value Representation DS: "[+|-]digits[.digits][(E|e)[+|-]digits]", leading
and trailing spaces allowed). W. D. Clinger, "How to read floating point numbers accurately",
PLDI 1990 (the exact fast path).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from plancheck.kernels.jit import JIT_OPTIONS

__all__ = ["parse_decimal_strings"]


_POW10 = np.array([10.0 ** k for k in range(23)])  # exact in double precision
_MAX_EXACT_MANTISSA = 2 ** 53


@njit(**JIT_OPTIONS)
def parse_decimal_strings(buf, expected):
    """Parse backslash-separated decimal strings (DICOM DS values, e.g. contour data).

    A value ``[spaces][+|-]digits[.digits][(e|E)[+|-]digits][spaces]`` whose digits form
    an integer mantissa ``m ≤ 2⁵³`` and whose decimal exponent ``e`` has ``|e| ≤ 22`` is
    ``m·10^e`` or ``m/10^-e``: one correctly rounded operation on two exact doubles, so
    the same double as ``float()`` (Clinger's fast path). Any other value is marked for
    the caller to convert with ``float()`` (``status`` 1), and a token that is not a
    number at all (empty, stray characters) makes the whole parse fail (``status`` 2).

    Returns ``(values, status, starts, ends, count)``: per value (the first
    ``expected`` ones) its value, status and token byte range (for the fallback), and
    how many values the buffer holds.
    """
    n = len(buf)
    values = np.empty(expected)
    status = np.zeros(expected, dtype=np.int8)
    starts = np.empty(expected, dtype=np.int64)
    ends = np.empty(expected, dtype=np.int64)
    count = 0
    i = 0
    while True:
        start = i
        while i < n and buf[i] != 92:  # backslash
            i += 1
        end = i
        a = start
        b = end
        while a < b and buf[a] == 32:
            a += 1
        while b > a and buf[b - 1] == 32:
            b -= 1
        state = 0  # 0 ok, 1 fallback, 2 not a number
        negative = False
        if a < b and (buf[a] == 43 or buf[a] == 45):
            negative = buf[a] == 45
            a += 1
        mantissa = 0
        digits = 0
        exponent = 0
        while a < b and 48 <= buf[a] <= 57:
            if mantissa <= (_MAX_EXACT_MANTISSA - 9) // 10:
                mantissa = mantissa * 10 + (buf[a] - 48)
            else:
                state = 1
            digits += 1
            a += 1
        if a < b and buf[a] == 46:  # '.'
            a += 1
            while a < b and 48 <= buf[a] <= 57:
                if mantissa <= (_MAX_EXACT_MANTISSA - 9) // 10:
                    mantissa = mantissa * 10 + (buf[a] - 48)
                    exponent -= 1
                else:
                    state = 1
                digits += 1
                a += 1
        if digits == 0:
            state = 2
        if a < b and (buf[a] == 101 or buf[a] == 69):  # e, E
            a += 1
            exp_negative = False
            if a < b and (buf[a] == 43 or buf[a] == 45):
                exp_negative = buf[a] == 45
                a += 1
            exp_digits = 0
            e = 0
            while a < b and 48 <= buf[a] <= 57:
                if e < 10000:
                    e = e * 10 + (buf[a] - 48)
                exp_digits += 1
                a += 1
            if exp_digits == 0:
                state = 2
            exponent += -e if exp_negative else e
        if a != b:
            state = 2
        if count < expected:
            value = 0.0
            if state == 0:
                if exponent >= 0 and exponent <= 22:
                    value = mantissa * _POW10[exponent]
                elif exponent < 0 and exponent >= -22:
                    value = mantissa / _POW10[-exponent]
                else:
                    state = 1
            values[count] = -value if negative else value
            status[count] = state
            starts[count] = start
            ends[count] = end
        count += 1
        if i >= n:
            break
        i += 1  # past the backslash
    return values, status, starts, ends, count
