"""Exceptions raised by plancheck.

Every exception carries enough context (file, tag, ROI, value, requirement) for
one clear message that a dosimetrist can act on; the CLI turns them into exit
codes without a traceback.

Exception tree::

    PlancheckError                      base of everything plancheck raises on purpose
     ├── InputError                     the input cannot be used (CLI exit code 3)
     │    ├── DicomReadError            not DICOM, truncated, unreadable file
     │    ├── DicomConformanceError     a required attribute is missing or invalid
     │    ├── LinkError                 files do not belong together (UIDs, frame, patient)
     │    ├── UnsupportedInputError     valid DICOM of a kind plancheck does not check (brachytherapy)
     │    └── StructureDefectError      an ROI with defects (Roi.defects) was asked to be measured
     ├── UsageError                     the caller asked for something invalid (exit code 2)
     │    └── MetricSpecError           a DVH metric string that cannot be parsed
     ├── RadiobiologyError (ValueError) nonsense input to an LQ formula (n <= 0, α/β <= 0 ...)
     ├── ProtocolError                  a protocol or case file that does not validate (exit 3)
     │    └── CaseFileError             a case file: every problem with its line
     ├── StorageLimitError              the receiver's store refuses an object (size, store or disk full)
     └── WorkerFailed                   a function run in a worker process did not return: the process
                                        died or was stopped at its time or memory limit

Not in the tree, on purpose:

* :class:`plancheck.rules.base.RuleNotApplicable` is a rule evaluator's *signal* (the rule does
  not apply to this export: reported as not applicable, with the reason), not an error;
* private control flow that never leaves its module: ``_Truncated``
  (:mod:`plancheck.dicom.read_common`, becomes a :class:`DicomReadError`), ``_Unusual``
  (:mod:`plancheck.dicom.fast_contours`: the fast path gives way to pydicom's),
  ``_DataFileError`` (:mod:`plancheck.datafile`, becomes a :class:`ProtocolError`),
  ``_Missing`` / ``_NotEvaluated`` (:mod:`plancheck.rules.kinds.clinical_rule`, become findings),
  ``_NotCheckable`` (:mod:`plancheck.analysis.treatment_versions`, becomes an ERROR record);
* the standard exceptions of a library API used wrongly by its caller — ``ValueError``,
  ``KeyError``, ``TypeError`` (a dose array whose shape does not match its axes, an ROI
  name not in a structure set, an unknown volume model name) — and ``RuntimeError`` when
  ``PLANCHECK_KERNELS`` asks for a kernel backend that cannot be used. The command line
  turns those into exit 70 (a bug) or checks its input first.
"""

from __future__ import annotations

from os import PathLike

__all__ = [
    "PlancheckError",
    "InputError",
    "DicomReadError",
    "DicomConformanceError",
    "LinkError",
    "StructureDefectError",
    "UnsupportedInputError",
    "UsageError",
    "MetricSpecError",
    "RadiobiologyError",
    "ProtocolError",
    "CaseFileError",
    "StorageLimitError",
    "WorkerFailed",
]


class PlancheckError(Exception):
    """Base class of all errors plancheck raises deliberately."""


class InputError(PlancheckError):
    """The input cannot be used for the requested job.

    Parameters
    ----------
    message
        What is wrong, in words a dosimetrist understands.
    path
        The file (or directory) concerned, if any; it is named in ``str(error)``.
    """

    def __init__(self, message: str, path: str | PathLike[str] | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.path:
            return f"{self.path}: {self.message}"
        return self.message


class DicomReadError(InputError):
    """A file is not DICOM, is truncated, or cannot be decoded."""


class DicomConformanceError(InputError):
    """A required DICOM attribute is missing or has a value plancheck cannot use.

    The message names the tag, its keyword, the value found and what is required,
    e.g. ``(3004,0002) 'Dose Units' is 'RELATIVE', it must be 'GY'``.
    """


class LinkError(InputError):
    """Files do not belong together: unresolved references, several patients,
    mismatched frames of reference, a plan without its dose."""


class UnsupportedInputError(InputError):
    """Valid DICOM of a kind plancheck does not check, e.g. a brachytherapy plan."""


class StructureDefectError(InputError):
    """A structure that was read but cannot be measured reliably (its ``Roi.defects``) was
    passed to the DVH engine. Rules and commands check ``Roi.defects`` first and report the
    structure as not evaluated; this error is the engine's last guard against measuring it."""


class UsageError(PlancheckError):
    """The caller asked for something that cannot be done (CLI exit code 2)."""


class MetricSpecError(UsageError, ValueError):
    """A DVH metric string (AAPM TG-263 §9 syntax) that cannot be parsed."""


class RadiobiologyError(PlancheckError, ValueError):
    """Nonsense input to a linear-quadratic formula (n <= 0, negative dose, α/β <= 0)."""


class ProtocolError(PlancheckError):
    """A protocol, mapping or case file that does not validate.

    Parameters
    ----------
    message
        What is wrong; names the rule id and the field where known.
    path
        The file concerned.
    line
        The line (1-based) where the problem is, when known: ``str(error)`` is then
        ``"FILE: line N: message"``.
    """

    def __init__(self, message: str, path: str | PathLike[str] | None = None, *, line: int | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"line {self.line}: {self.message}" if self.line else self.message
        if self.path:
            return f"{self.path}: {text}"
        return text


class CaseFileError(ProtocolError):
    """A case file that does not validate, with every problem and its line.

    Parameters
    ----------
    problems
        ``(line, message)`` pairs (line 1-based; 0 when not known), in file order.
    path
        The case file.
    """

    def __init__(self, problems: list[tuple[int, str]], path: str | PathLike[str] | None = None) -> None:
        self.problems = list(problems)
        text = "; ".join(f"line {line}: {message}" if line else message for line, message in self.problems)
        super().__init__(text, path)


class StorageLimitError(PlancheckError):
    """An object is larger than allowed, or storing it would exceed the disk budget
    (the receiver answers with a failure status and goes on).

    Attributes
    ----------
    message
        What limit was hit, with the numbers.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class WorkerFailed(PlancheckError):
    """A function run in a worker process of its own
    (:func:`plancheck.analysis.processes.call_in_process`) did not return: its process died or
    was stopped at a limit (the message says which)."""
