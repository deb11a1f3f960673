"""The batch summary table: one row per plan and finding, as CSV and Parquet.

pyarrow is imported here only (the ``batch`` extra); without it the CSV is still written.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from plancheck.atomic_write import write_file_atomically
from plancheck.batch.job import SUMMARY_COLUMNS
from plancheck.report.sanitize import csv_cell

__all__ = ["write_summary", "write_skipped", "parquet_available", "SKIPPED_NAME"]

#: The list of files the batch passed over, with the reason, next to the summary.
SKIPPED_NAME = "skipped.csv"

log = logging.getLogger(__name__)


def parquet_available() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def write_summary(rows: Iterable[Mapping[str, Any]], out_dir: str | os.PathLike[str],
                  *, stem: str = "summary") -> list[Path]:
    """Write ``<stem>.csv`` and, if pyarrow is installed, ``<stem>.parquet``.

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{c: r.get(c) for c in SUMMARY_COLUMNS} for r in rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else csv_cell(v)))
                         for k, v in row.items()})
    csv_path = out / f"{stem}.csv"
    write_file_atomically(csv_path, buffer.getvalue().encode("utf-8"))
    written = [csv_path]
    if not parquet_available():
        log.warning("pyarrow is not installed (pip install 'plancheck[batch]'): %s.parquet not written", stem)
        return written
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.float64() if c == "measured" else pa.string()) for c in SUMMARY_COLUMNS])
    table = pa.Table.from_pylist(rows, schema=schema)
    parquet_path = out / f"{stem}.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_file_atomically(parquet_path, sink.getvalue().to_pybytes())
    written.append(parquet_path)
    return written


def write_skipped(skipped: Iterable[tuple[Any, str]], out_dir: str | os.PathLike[str]) -> Path:
    """Write :data:`SKIPPED_NAME`: one row per file passed over (``path``, ``reason``).

    Text cells a spreadsheet would run as a formula are made inert
    (:func:`plancheck.report.sanitize.csv_cell`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "reason"])
    for path, reason in skipped:
        writer.writerow([csv_cell(str(path)), csv_cell(reason)])
    target = out / SKIPPED_NAME
    write_file_atomically(target, buffer.getvalue().encode("utf-8"))
    return target
