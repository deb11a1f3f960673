"""Text from the input made harmless where it reaches a terminal or a spreadsheet.

ROI names, plan labels, file names and messages quoting them come from the export. Two
kinds of content in them can do harm when printed as they are:

* **control characters**: an ROI named ``Cord\\x1b[1A\\x1b[2K`` moves the cursor up and
  erases the line above it — a FAIL row — on a terminal; a carriage return overwrites a
  line; Unicode bidirectional controls reorder what is shown. :func:`printable` shows
  every such character as a visible escape (``\\x1b``, ``\\u202e``) instead.
* **spreadsheet formulas**: a CSV cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab
  or carriage return) is run as a formula when the file is opened in a spreadsheet.
  :func:`csv_cell` prefixes such text with ``'`` so it stays text (OWASP, "CSV
  Injection"). Numbers are left alone (a negative dose stays a number).

References
----------
OWASP Foundation, "CSV Injection" (https://owasp.org/www-community/attacks/CSV_Injection).
ECMA-48 (control functions: C0, C1, ESC sequences); Unicode Technical Report #36 §2.4
(bidirectional text spoofing).
"""

from __future__ import annotations

from typing import Any

__all__ = ["printable", "markup_safe", "csv_cell", "csv_row"]

_BIDI_CONTROLS = ("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape_for(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_TABLE = {code: _escape_for(code) for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))}
_TABLE.update({ord(c): _escape_for(ord(c)) for c in _BIDI_CONTROLS})
_TABLE_KEEP_NEWLINES = {k: v for k, v in _TABLE.items() if k != 0x0A}

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def printable(text: Any, *, keep_newlines: bool = False) -> str:
    """``str(text)`` with every control character shown as a visible escape.

    C0 controls (including ESC, CR, backspace, tab), DEL, C1 controls and Unicode
    bidirectional controls become ``\\xNN`` / ``\\uNNNN``; with ``keep_newlines`` a line
    feed stays a line feed (multi-line messages, ``--debug`` tracebacks).

    Examples
    --------
    >>> printable("Cord\\x1b[1A")
    'Cord\\\\x1b[1A'
    """
    return str(text).translate(_TABLE_KEEP_NEWLINES if keep_newlines else _TABLE)


def markup_safe(text: Any) -> str:
    """:func:`printable` text that rich prints literally (its ``[...]`` markup escaped)."""
    from rich.markup import escape

    return escape(printable(text))


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a string starting with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return gets a leading ``'``. Numbers (and strings of
    a plain number, e.g. ``-1.5``) and None are returned unchanged."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def csv_row(values: Any) -> list[Any]:
    """:func:`csv_cell` applied to every cell of a row."""
    return [csv_cell(v) for v in values]
