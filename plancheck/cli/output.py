"""Writing output files without leaving half-written ones behind."""

from __future__ import annotations

import os
from pathlib import Path

from collections.abc import Mapping

from plancheck.atomic_write import write_files_atomically
from plancheck.errors import UsageError

__all__ = ["write_all_atomically", "check_writable"]


def check_writable(path: str | os.PathLike[str], option: str) -> None:
    """Fail early (before any computation) when an output path cannot be written.

    Raises
    ------
    UsageError
        If the path is a directory or its folder cannot be created or written.
    """
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} {target}: is a directory, give a file name")
    parent = target.parent if str(target.parent) else Path(".")
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"{option} {target}: cannot write in {existing}")


def write_all_atomically(outputs: Mapping[str | os.PathLike[str], str]) -> None:
    """Write the command's output files all or nothing (see :mod:`plancheck.atomic_write`);
    a file that cannot be written is a usage error naming it."""
    try:
        write_files_atomically(outputs)
    except OSError as exc:
        raise UsageError(f"cannot write output: {exc.strerror or exc} ({exc.filename})") from exc
