"""Imported once by the batch's forkserver: load plancheck and its compiled kernels there, so
that every worker process forked from it starts warm (see :mod:`plancheck.batch.workers`).

Importing this module computes one tiny DVH (a 10 mm square on a 3 × 3 × 3 grid), which
makes numba load the cached machine code of the engine's kernels. Any failure is ignored:
a worker then simply loads the kernels itself.
"""

from __future__ import annotations

__all__ = ["warm_up"]


def warm_up() -> None:
    """Import the check path and run the DVH kernels once on a tiny case (errors ignored)."""
    try:
        import numpy as np

        import plancheck.batch.job  # noqa: F401  (the reader, rules and renderers)
        import plancheck.report  # noqa: F401
        from plancheck.dvh.engine import compute_dvh
        from plancheck.model import Contour, DoseGrid, Roi

        axis = np.array([-10.0, 0.0, 10.0])
        dose = DoseGrid(np.full((3, 3, 3), 2.0), axis.copy(), axis.copy(), axis.copy(), "1.2.3")
        square = [[-5.0, -5.0, 0.0], [5.0, -5.0, 0.0], [5.0, 5.0, 0.0], [-5.0, 5.0, 0.0]]
        roi = Roi(1, "warm-up", "ORGAN", (Contour(np.array(square)),))
        compute_dvh(roi, dose)
    except Exception:  # never let the forkserver fail to start
        pass


warm_up()
