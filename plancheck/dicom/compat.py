"""Compatibility between pydicom 3 and dicompyler-core 0.5.6.

dicompyler-core 0.5.6 (the latest release) does ``from pydicom.dicomio import
read_file`` when its ``dicomparser`` module is imported; pydicom 3 removed that
alias of :func:`pydicom.dcmread`. plancheck only hands dicompyler-core datasets
that it has already read (never file names), so the alias is never called; it
only has to exist while ``dicomparser`` is first imported.
:func:`pydicom_read_file_alias` provides it for that moment and removes it
afterwards, so pydicom is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
import pydicom.dicomio

__all__ = ["pydicom_read_file_alias", "load_dataset"]


@contextmanager
def pydicom_read_file_alias() -> Iterator[None]:
    """Temporarily provide ``pydicom.dicomio.read_file`` (= ``pydicom.dcmread``)."""
    added = not hasattr(pydicom.dicomio, "read_file")
    if added:
        pydicom.dicomio.read_file = pydicom.dcmread  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if added:
            del pydicom.dicomio.read_file  # type: ignore[attr-defined]


def load_dataset(path: str | Path) -> Any:
    """Read a whole DICOM file as an opaque dataset, for third-party engines
    (dicompyler-core) that need one. plancheck code never looks inside it."""
    return pydicom.dcmread(str(path))
