"""Renderers of plancheck's results: text, JSON, HTML and JUnit XML of a check, DVH tables.

:func:`write_reports` writes a check's reports to a folder (used by the DICOM
receiver and the batch runner); each renderer can also be called on its own::

    from plancheck.report import render_report
    text = render_report(report, "html")
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from plancheck.atomic_write import write_files_atomically
from plancheck.errors import UsageError
from plancheck.report.check_html import check_html
from plancheck.report.check_json import check_json
from plancheck.report.check_junit import check_junit
from plancheck.report.check_text import DEFAULT_WIDTH, check_text
from plancheck.rules.runner import CheckReport

__all__ = ["write_reports", "render_report", "report_basename", "REPORT_FORMATS", "FORMATS_WITH_DVH_PLOTS",
           "check_text", "check_json", "check_html", "check_junit"]

REPORT_FORMATS = {"text": ".txt", "json": ".json", "html": ".html", "junit": ".junit.xml"}
"""Report formats and the file-name suffix each is written with."""

FORMATS_WITH_DVH_PLOTS = frozenset({"html"})
"""The formats that plot the check's DVHs (the others use only its findings)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _sanitise(part: str, limit: int = 96) -> str:
    """A file-name component: only letters, digits, ``.``, ``_``, ``-``; no leading dots;
    at most ``limit`` characters (values from DICOM are untrusted)."""
    cleaned = _UNSAFE.sub("_", part).strip("._-")
    return cleaned[:limit] or "unknown"


def report_basename(report: CheckReport) -> str:
    """``<plan SOP Instance UID>_<protocol id>`` (the first course's plan; with several
    courses ``+N`` tells how many more), sanitised for any file system."""
    courses = report.context.courses
    uid = courses[0].course.plan.sop_instance_uid if courses else "no-plan"
    more = f"+{len(courses) - 1}" if len(courses) > 1 else ""
    return f"{_sanitise(uid)}{more}_{_sanitise(report.protocol.id, 64)}"


def render_report(report: CheckReport, fmt: str, *, color: bool = False, all_rules: bool = False,
                  width: int | None = None, export_path: str | Sequence[str] | None = None) -> str:
    """The report in one format (``text``, ``json``, ``html``, ``junit``).

    ``color``, ``all_rules`` and ``width`` shape the text report (see
    :func:`~plancheck.report.check_text.check_text`); ``export_path`` (the export as the user
    named it) completes the command the text and HTML reports suggest when the case file
    is missing.

    Raises
    ------
    UsageError
        For an unknown format.
    """
    if fmt == "text":
        return check_text(report, color=color, all_rules=all_rules, width=width or DEFAULT_WIDTH,
                          export_path=export_path)
    if fmt == "json":
        return check_json(report)
    if fmt == "html":
        return check_html(report, export_path=export_path)
    if fmt == "junit":
        return check_junit(report)
    raise UsageError(f"unknown report format {fmt!r}; expected one of {', '.join(REPORT_FORMATS)}")


def write_reports(report: CheckReport, out_dir: str | os.PathLike[str],
                  formats: Iterable[str] = ("json", "html")) -> list[Path]:
    """Write the check's reports into ``out_dir`` (created if needed), each atomically.

    Parameters
    ----------
    report
        The result of :func:`plancheck.rules.runner.run_check`.
    out_dir
        The folder.
    formats
        Any of ``text``, ``json``, ``html``, ``junit``.

    Returns
    -------
    list of Path
        The files written, in the order of ``formats``: ``<basename><suffix>`` with the
        basename from :func:`report_basename` and the suffix from :data:`REPORT_FORMATS`.

    Raises
    ------
    UsageError
        For an unknown format (before anything is written).
    """
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in REPORT_FORMATS]
    if unknown:
        raise UsageError(f"unknown report format(s) {', '.join(map(repr, unknown))}; "
                         f"expected any of {', '.join(REPORT_FORMATS)}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    base = report_basename(report)
    outputs = {folder / f"{base}{REPORT_FORMATS[fmt]}": render_report(report, fmt) for fmt in formats}
    write_files_atomically(outputs)  # all formats appear together or none
    return list(outputs)
