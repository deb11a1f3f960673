"""Documented exit codes of the ``plancheck`` command."""

from __future__ import annotations

import enum

__all__ = ["ExitCode"]


class ExitCode(enum.IntEnum):
    """What ``plancheck`` returns to the shell or pipeline.

    OK (0)
        The job ran; for ``check``: nothing failed.
    RULES_FAILED (1)
        ``check``: at least one rule FAILED.
    USAGE_ERROR (2)
        Invalid command line or request (unknown option, unparsable metric,
        structure not in the export).
    INPUT_ERROR (3)
        Unusable input: not DICOM, truncated, relative dose, files that do not
        belong together, a malformed protocol or case file. One message names
        the file and the problem.
    NOT_EVALUATED (4)
        ``check --strict``: nothing failed but at least one rule could not be evaluated.
    INTERNAL_ERROR (70)
        A bug in plancheck (run with ``--debug`` for the traceback).
    INTERRUPTED (130)
        Stopped by Ctrl+C (SIGINT) before the job finished (128 + 2, the shell's convention).
    """

    OK = 0
    RULES_FAILED = 1
    USAGE_ERROR = 2
    INPUT_ERROR = 3
    NOT_EVALUATED = 4
    INTERNAL_ERROR = 70
    INTERRUPTED = 130
