"""Imported once by the batch's forkserver: load plancheck and its compiled kernels there, so
that every worker process forked from it starts warm (see :mod:`plancheck.batch.workers`,
:func:`plancheck.analysis.check_treatment.warm_up`)."""

from __future__ import annotations

import plancheck.batch.job  # noqa: F401  (the check path a worker runs)
from plancheck.allocator import keep_freed_memory
from plancheck.analysis.check_treatment import warm_up

__all__: list[str] = []

keep_freed_memory()  # inherited by every worker forked from here (each ends after its treatment)
warm_up()
