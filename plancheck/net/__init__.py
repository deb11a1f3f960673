"""DICOM network entry point of plancheck: the receiver behind ``plancheck serve``.

pynetdicom is imported only in :mod:`plancheck.net.scp`. A :class:`Receiver` accepts RT Plan,
RT Structure Set, RT Dose, CT and MR objects, stores them safely
(:mod:`plancheck.dicom.store`) and, when an association is released, checks every plan that
has become complete in its check thread (:mod:`plancheck.net.checks`).
"""

from plancheck.net.checks import CHECK_LOG_NAME, CheckRecord, CheckWorker
from plancheck.net.scp import STATUS, Receiver, ReceiverConfig

__all__ = ["CHECK_LOG_NAME", "CheckRecord", "CheckWorker", "Receiver", "ReceiverConfig", "STATUS"]
