"""plancheck: check a radiotherapy plan (DICOM RT Plan, Structure Set, Dose) before approval.

The library's main entry points, importable from the top level (loaded on first use, so
``import plancheck`` stays cheap)::

    export = plancheck.read_export("export_dir")                     # DICOM → linked models
    dvh = plancheck.compute_dvh(roi, export.courses[0].dose)         # plancheck's DVH engine
    plancheck.evaluate_metric("D95%[Gy]", dvh).value                 # TG-263 metric (None if undefined)
    report = plancheck.run_check(export, plancheck.protocol_for_check("esophagus-oligomet-2025"))
"""

import importlib
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {
    "read_export": "plancheck.dicom",
    "read_plan": "plancheck.dicom",
    "read_structure_set": "plancheck.dicom",
    "read_dose": "plancheck.dicom",
    "compute_dvh": "plancheck.dvh.engine",
    "DVH": "plancheck.dvh.dvh",
    "parse_metric": "plancheck.dvh.metrics",
    "evaluate_metric": "plancheck.dvh.metrics",
    "DoseConversion": "plancheck.radiobiology",
    "DoseKind": "plancheck.radiobiology",
    "bed_gy": "plancheck.radiobiology",
    "eqd2_gy": "plancheck.radiobiology",
    "load_protocol": "plancheck.protocol.loader",
    "protocol_for_check": "plancheck.rules.runner",
    "run_check": "plancheck.rules.runner",
    "load_case": "plancheck.model.case",
    "Status": "plancheck.rules.findings",
    "Finding": "plancheck.rules.findings",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'plancheck' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
