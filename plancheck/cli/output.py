"""Writing output files without leaving half-written ones behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from collections.abc import Mapping

from plancheck.errors import UsageError

__all__ = ["write_atomically", "write_all_atomically", "check_writable"]


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
    """Write several files so that either all appear or none: every text goes to a
    temporary file first; only when all are written are they renamed into place."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in outputs.items():
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            staged.append((tmp, target))
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        for tmp, target in staged:
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are meant to be read by others
            os.replace(tmp, target)
    except OSError as exc:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"cannot write output: {exc.strerror or exc} ({exc.filename})") from exc


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are meant to be read by others
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
