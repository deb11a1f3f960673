"""Writing output files so that readers never see half of one.

Every file goes to a temporary file beside its target first (made readable by
others: ``mkstemp`` creates 0600 files, and reports are meant to be read); only
when all of a group are written are they renamed into place, so either the whole
group appears or none of it. On failure the temporary files are removed and the
``OSError`` is re-raised for the caller to report.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["write_files_atomically", "write_file_atomically"]


def write_files_atomically(outputs: Mapping[str | os.PathLike[str], str | bytes]) -> None:
    """Write every ``{path: text or bytes}`` (text as UTF-8), all or nothing."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, content in outputs.items():
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            staged.append((tmp, target))
            data = content.encode("utf-8") if isinstance(content, str) else content
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


def write_file_atomically(path: str | os.PathLike[str], content: str | bytes) -> None:
    """Write one file (text as UTF-8) through a temporary file and a rename."""
    write_files_atomically({path: content})
