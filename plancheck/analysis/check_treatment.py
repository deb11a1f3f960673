"""Check one patient's treatment from its files: the one function behind every entry point.

``plancheck check``, ``plancheck batch`` (in its workers), the DICOM receiver
(``plancheck serve``) and the watched export folder (``plancheck watch``) all call
:func:`check_treatment`, so a treatment gets the same verdict whichever way it arrives:
the same reader, the same choice of courses (:mod:`plancheck.model.course_selection`: a
``--plan`` selection, else the case file's ``courses:``, else every plan, alternative plans
refused), the same rules on the same composite of all its courses.

The case file of an export (:func:`find_case`) is ``case.yaml`` (or ``.yml``/``.json``) in
the export folder; for a ``.zip`` export, the one inside the archive (the shallowest if
several), else the one next to the archive. Inside an archive it is named
``ARCHIVE.zip!member/path`` (:func:`read_case`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from plancheck.analysis.read_ahead import read_treatment_export
from plancheck.errors import PlancheckError
from plancheck.model.case import Case, case_from_text
from plancheck.model.case_files import ARCHIVE_SEPARATOR, find_case, read_case_text
from plancheck.model.course_selection import LeftOutPlan, PlanSelection, selection_from
from plancheck.model.export import PlanExport
from plancheck.model.volume_model import VolumeModel, volume_model_named
from plancheck.protocol.loader import Protocol
from plancheck.rules.runner import CheckReport, run_check

__all__ = ["check_treatment", "check_export", "check_treatment_files", "find_case", "read_case", "selection_for",
           "ARCHIVE_SEPARATOR", "warm_up"]


def read_case(source: str | os.PathLike[str]) -> Case:
    """Load a case file: a path, or ``ARCHIVE.zip!member`` for one inside an archive.

    Raises
    ------
    ProtocolError
        The file cannot be read or does not validate (naming ``source`` and the field).
    """
    return case_from_text(*read_case_text(source))


def selection_for(case: Case | None, case_source: str | None, plans: Sequence[str] = ()) -> PlanSelection | None:
    """The courses to check: ``plans`` (``--plan``) if given, else the case file's ``courses:``
    list, else None (every plan; alternatives handled by the caller's policy)."""
    declared = tuple(c.plan for c in case.courses) if case is not None and case.courses else None
    return selection_from(plans, declared, case_source)


def check_treatment(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], protocol: Protocol, *,
                    case: Case | None = None, case_source: str | None = None,
                    selection: PlanSelection | None = None, user_mapping: Mapping[str, str] | None = None,
                    volume_model: VolumeModel | str | None = None, threads: int | None = None,
                    processes: int = 1, outside: Sequence[LeftOutPlan] = ()) -> CheckReport:
    """Read one patient's treatment and check it against ``protocol``.

    Parameters
    ----------
    paths
        The export: a folder, a ``.zip``, files (one patient, one frame of reference).
    protocol
        The resolved protocol (:func:`plancheck.rules.runner.protocol_for_check`).
    case, case_source
        The clinical context and where it came from (for the report).
    selection
        The plans that are the courses (``--plan``; a batch variant). Default: the case
        file's ``courses:``, else every plan — alternative plans are then refused
        (:class:`~plancheck.errors.LinkError` naming them and how to select).
    user_mapping
        ``--map`` overrides (standard name → ROI name).
    volume_model
        DVH volume model for every structure set, or its name (``--volume-model``); default
        (None or ``"auto"``): from the Manufacturer of the files.
    threads
        Rule threads (:func:`plancheck.rules.runner.run_check`; 1 inside batch workers).
    processes
        Processes the rules are split among (:func:`plancheck.rules.runner.run_check`; more
        than 1 only for an interactive check: ``plancheck check``).
    outside
        The patient's plans outside these files' frame of reference, found by a pipeline
        that grouped the files (:attr:`plancheck.dicom.store.TreatmentCheck.outside_plans`):
        listed as left out, and limits on the whole treatment are then not graded.

    Returns
    -------
    CheckReport
        Its export says which plans were summed as courses (``courses``) and which were
        left out, and why (``left_out``, also in the warnings).

    Raises
    ------
    InputError
        The files cannot be read or linked, or alternative plans need a selection.
    ProtocolError
        The case file does not validate or names a plan that is not there.
    UsageError
        ``selection`` (``--plan``) names a plan that is not there.
    """
    if selection is None:
        selection = selection_for(case, case_source)
    export = read_treatment_export(paths, selection)
    if outside:
        export = replace(export, left_out=export.left_out + tuple(outside),
                         warnings=export.warnings + tuple(p.describe() for p in outside))
    return check_export(export, protocol, case=case, case_source=case_source, user_mapping=user_mapping,
                        volume_model=volume_model, threads=threads, processes=processes)


def check_export(export: PlanExport, protocol: Protocol, *, case: Case | None = None, case_source: str | None = None,
                 user_mapping: Mapping[str, str] | None = None, volume_model: VolumeModel | str | None = None,
                 threads: int | None = None, processes: int = 1, share_dvhs: bool = True) -> CheckReport:
    """:func:`check_treatment` of an export already read
    (:func:`plancheck.analysis.read_ahead.read_treatment_export`); the parameters as there,
    and ``share_dvhs`` as :func:`plancheck.rules.runner.run_check` (False when the report has
    no DVH plots)."""
    if isinstance(volume_model, VolumeModel):
        export = export.with_volume_model(volume_model, "volume model given by the caller")
    elif volume_model not in (None, "auto"):
        export = export.with_volume_model(volume_model_named(volume_model), "--volume-model")
    return run_check(export, protocol, case=case, case_source=case_source, user_mapping=user_mapping,
                     threads=threads, processes=processes, share_dvhs=share_dvhs)


def check_treatment_files(files: Sequence[str | os.PathLike[str]], protocol: Protocol,
                          out_dir: str | os.PathLike[str], *, formats: Sequence[str] = ("json", "html"),
                          case_file: str | None = None, selection: PlanSelection | None = None,
                          threads: int | None = None, outside: Sequence[LeftOutPlan] = ()
                          ) -> tuple[CheckReport, list[Path]]:
    """:func:`check_treatment` on ``files``, then the reports written into ``out_dir``
    (all formats appear together or none). ``outside``: as :func:`check_treatment`.

    Raises
    ------
    InputError, ProtocolError, UsageError
        As :func:`check_treatment`.
    PlancheckError
        :func:`plancheck.report.write_reports` is not available.
    """
    from plancheck import report as _report

    case = read_case(case_file) if case_file else None
    paths = [str(f) for f in files]
    report = check_treatment(paths if len(paths) != 1 else paths[0], protocol, case=case, case_source=case_file,
                             selection=selection, threads=threads, outside=outside)
    write_reports = getattr(_report, "write_reports", None)
    if write_reports is None:
        raise PlancheckError("plancheck.report.write_reports is not available in this installation")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = write_reports(report, Path(out_dir), formats=tuple(formats))
    return report, [Path(p) for p in written]


def warm_up() -> None:
    """Import the check path (reader, rules, renderers) and run the DVH kernels once on a tiny
    case, so that numba loads their compiled code now rather than during the first check of a
    long-running service (the receiver, the watched folder, the batch's worker server).
    Errors are ignored: the first check then loads what it needs itself."""
    try:
        import numpy as np

        import plancheck.dicom  # noqa: F401
        import plancheck.report  # noqa: F401
        from plancheck.dvh.engine import compute_dvh
        from plancheck.model import Contour, DoseGrid, Roi
        from plancheck.rules.registry import rule_kinds

        rule_kinds()
        axis = np.array([-10.0, 0.0, 10.0])
        dose = DoseGrid(np.full((3, 3, 3), 2.0), axis.copy(), axis.copy(), axis.copy(), "1.2.3")
        square = [[-5.0, -5.0, 0.0], [5.0, -5.0, 0.0], [5.0, 5.0, 0.0], [-5.0, 5.0, 0.0]]
        compute_dvh(Roi(1, "warm-up", "ORGAN", (Contour(np.array(square)),)), dose)
    except Exception:  # never let a warm-up stop a service from starting
        pass
