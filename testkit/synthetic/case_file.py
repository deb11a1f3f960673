"""The clinical context (case file, ``case.yaml``) of a synthetic case.

DICOM does not carry histology, lesions, systemic therapy or restaging; plancheck reads
them from a case file next to the export (:mod:`plancheck.model.case`). The generator
writes one that matches each variant:

* ``sample`` / ``clinical`` -- squamous cell carcinoma of the mid-thoracic esophagus with
  two synchronous metastases (right upper lobe, T8 vertebral body), both treated, after
  4 cycles of chemo-immunotherapy without progression: within the consensus definition.
* ``violations`` -- the same patient with six metastatic lesions in four organs (beyond the
  squamous cell definition: at most 5 lesions in at most 3 organs), three of them without a
  target (``target: null``) and one whose target ``PTV_Met_Liver`` is not in the plan.

:func:`case_context` gives the content as plain data; :func:`write_case_file` writes it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from testkit.synthetic.spec import CaseSpec

__all__ = ["case_context", "write_case_file", "CASE_FILE_NAME"]

CASE_FILE_NAME = "case.yaml"

# The headers name the generator where it lived when the sample was made (plancheck/synthetic,
# plancheck.synthetic.case_file; now testkit/synthetic): kept so that the committed sample
# regenerates byte for byte.
_HEADER = {
    "sample": """\
# Clinical context of the synthetic sample case (plancheck/synthetic; plans dated 2025-06-02).
# Squamous cell carcinoma of the mid-thoracic esophagus with synchronous oligometastases in the
# right upper lobe of the lung and the T8 vertebral body, treated after 4 cycles of
# chemo-immunotherapy (partial response, no progression on FDG-PET/CT restaging) with
# 60 Gy / 30 fx to the primary (C1_Eso) and SBRT to both metastases (C2_LungMet, C3_VertMet).
# Written by scripts/make_sample_dicom.py (plancheck.synthetic.case_file); edit the generator, not this file.
""",
    "violations": """\
# Clinical context of the synthetic violations case (plancheck/synthetic; plans dated 2025-06-02).
# Squamous cell carcinoma of the mid-thoracic esophagus with SIX synchronous metastases in four
# organs: beyond the consensus definition of oligometastatic disease for squamous cell carcinoma
# (at most 5 lesions in at most 3 organs, DEF-SCC). Only two lesions are treated (C2_LungMet,
# C3_VertMet); three have no target (null) and one names a target, PTV_Met_Liver, that is not
# in the structure set (DEF-TREAT).
# Written by scripts/make_sample_dicom.py --variant violations (plancheck.synthetic.case_file).
""",
}


class _Dumper(yaml.SafeDumper):
    """Block style, and no ``&id001`` anchors for repeated dates: a person edits this file."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # indent list items under their key, as people write YAML
        return super().increase_indent(flow, False)


def case_context(spec: CaseSpec) -> dict[str, Any]:
    """The case-file content for ``spec`` as plain data (dates as :class:`datetime.date`).

    Parameters
    ----------
    spec
        The synthetic case's knobs; ``violations`` selects the out-of-definition context.

    Returns
    -------
    dict
        Fields of :class:`plancheck.model.case.Case`, in the order a person reads them.
    """
    diagnosis = dt.date(2025, 1, 6)
    metastases: list[dict[str, Any]] = [
        {"organ": "lung", "site": "right upper lobe", "size_mm": 18, "detected_date": diagnosis,
         "target": "PTV_Met_Lung"},
        {"organ": "bone", "site": "T8 vertebral body", "size_mm": 20, "detected_date": diagnosis,
         "target": "PTV_Met_Vert"},
    ]
    if spec.violations:
        metastases += [
            {"organ": "lung", "site": "left lower lobe", "size_mm": 9, "detected_date": diagnosis, "target": None},
            {"organ": "liver", "site": "segment VII", "size_mm": 22, "detected_date": diagnosis,
             "target": "PTV_Met_Liver"},
            {"organ": "adrenal", "site": "left adrenal gland", "size_mm": 15, "detected_date": diagnosis,
             "target": None},
            {"organ": "bone", "site": "left 6th rib", "size_mm": 12, "detected_date": diagnosis, "target": None},
        ]
    return {
        "histology": "squamous_cell_carcinoma",
        "intent": "curative",
        "primary": {"diagnosis_date": diagnosis, "target": "PTVp"},
        "presentation": "synchronous",
        "omd_type": "de_novo",
        "disease_free_interval_months": None,
        "metastases": metastases,
        "extra_regional_node_stations": 0,
        "systemic_therapy": {
            "agents": ["paclitaxel", "cisplatin", "camrelizumab"],
            "cycles": 4,
            "start_date": dt.date(2025, 1, 20),
            "end_date": dt.date(2025, 4, 10),
            "ongoing_during_rt": False,
            "response_at_restaging": "PR",
        },
        "concurrent_chemotherapy": False,
        "concurrent_immunotherapy": False,
        "restaging": {
            "modality": "FDG-PET/CT",
            "date": dt.date(2025, 4, 28),
            "progression": False,
            "new_lesions": 0,
            "brain_imaging": "MRI",
        },
    }


def write_case_file(spec: CaseSpec, out_dir: str | Path, *, name: str = CASE_FILE_NAME) -> Path:
    """Write the case file of ``spec`` into ``out_dir`` (deterministic bytes).

    Parameters
    ----------
    spec
        The synthetic case's knobs.
    out_dir
        Directory of the export; created if needed.
    name
        File name; ``case.yaml`` is the one plancheck finds next to an export.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = _HEADER["violations" if spec.violations else "sample"]
    body = yaml.dump(case_context(spec), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100)
    path = out / name
    path.write_text(header + body, encoding="utf-8")
    return path
