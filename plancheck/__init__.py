"""plancheck: check a radiotherapy plan (DICOM RT Plan, Structure Set, Dose) before approval."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
