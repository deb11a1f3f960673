"""Read an export in a forked process while the protocol and the case file load here.

Before its rules can run, ``plancheck check`` reads the DICOM files (pydicom's import and the
reading: about 0.4 s for the sample) and loads the protocol and the case file (pydantic's
import, the rule kinds' models, validation: about 0.35 s). Neither needs the other, so with
two CPUs the export is read in a child forked at the start (:class:`plancheck.parallel.ForkedCall`)
while this process loads the protocol and the case file; the export comes back through shared
memory (:mod:`plancheck.fork_transfer`).

Which plans are courses depends on the case file (its ``courses:`` list), which is validated
here, not in the child. The child reads the list without validating it
(:func:`plancheck.model.case_files.declared_plans`); :meth:`ExportReadAhead.export` uses the
child's export only when the selection it was read with equals the one from the validated
case, and reads the export again otherwise. A child that fails in any way costs time, not
results: the export is then read here, and an unreadable export raises its error here, as
without the child. Messages the child logs are logged here once its export is used.

This module imports neither pydantic nor pydicom: the parent forks before either is imported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from plancheck.model.case_files import declared_plans
from plancheck.model.course_selection import PlanSelection, selection_from
from plancheck.model.export import PlanExport
from plancheck.parallel import ForkedCall

__all__ = ["ExportReadAhead", "read_treatment_export"]

ExportPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def read_treatment_export(paths: ExportPaths, selection: PlanSelection | None) -> PlanExport:
    """The export of a treatment as every check reads it: ``selection`` (or every plan) as its
    courses, alternative plans refused (:func:`plancheck.dicom.read_export`)."""
    from plancheck.dicom import read_export

    return read_export(paths, plans=selection, alternatives="refuse")


class ExportReadAhead:
    """The export of ``paths``, read in a forked child from now on (see the module docstring).

    Parameters
    ----------
    paths
        The export (a folder, a ``.zip``, files).
    case_source
        Its case file (a path or ``ARCHIVE.zip!member``), or None.
    plans
        ``--plan`` labels (win over the case file's ``courses:``).
    enabled
        False: nothing is forked; :meth:`export` reads here.
    """

    def __init__(self, paths: ExportPaths, case_source: str | None, plans: Sequence[str] = (), *,
                 enabled: bool = True) -> None:
        self._paths = paths
        self._call: ForkedCall[tuple[PlanSelection | None, PlanExport]] = ForkedCall(
            lambda: self._read_guessing(case_source, tuple(plans)), enabled=enabled)

    @property
    def forked(self) -> bool:
        """Whether a child is reading the export."""
        return self._call.forked

    def _read_guessing(self, case_source: str | None, plans: tuple[str, ...]
                       ) -> tuple[PlanSelection | None, PlanExport]:
        """In the child: the selection guessed from the unvalidated case file, and the export read with it."""
        declared = declared_plans(case_source) if case_source and not plans else None
        guess = selection_from(plans, declared, case_source)
        return guess, read_treatment_export(self._paths, guess)

    def export(self, selection: PlanSelection | None) -> PlanExport:
        """The export with ``selection`` as its courses (from the validated case file and
        ``--plan``: :func:`plancheck.analysis.check_treatment.selection_for`): the child's when
        it read with the same selection, else read here.

        Raises
        ------
        InputError
            The files cannot be read or linked (raised here, as :func:`read_treatment_export`).
        """
        if not self._call.forked:
            return read_treatment_export(self._paths, selection)
        # the child's export only when read with these courses (else read here, its log dropped)
        _, export = self._call.result(fallback=lambda: (selection, read_treatment_export(self._paths, selection)),
                                      accept=lambda got: got[0] == selection)
        return export

    def cancel(self) -> None:
        """End the child, if its export was not taken."""
        self._call.cancel()

    def __enter__(self) -> ExportReadAhead:
        return self

    def __exit__(self, *exc_info) -> None:
        self.cancel()
