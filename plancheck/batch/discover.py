"""Find every plan under a folder (any layout, any number of patients) and make its job."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from plancheck.batch.job import PlanJob
from plancheck.dicom.store import IndexResult, PlanGroup, group_plans, index_objects, safe_uid
from plancheck.model.case import find_case_file
from plancheck.protocol.loader import Protocol

__all__ = ["Discovery", "discover_plans", "patient_keyer", "protocol_fingerprint", "SALT_FILE"]

#: Secret salt of the patient keys, kept in the reports folder (same folder → same keys).
SALT_FILE = ".patient-key-salt"


@dataclass
class Discovery:
    """The jobs found under a root folder, and the files passed over."""

    jobs: list[PlanJob] = field(default_factory=list)
    groups: list[PlanGroup] = field(default_factory=list)
    index: IndexResult = field(default_factory=IndexResult)


def patient_keyer(reports_dir: Path):
    """A function ``patient_id -> key``: HMAC-SHA256 with a salt stored in ``reports_dir``.

    A plain hash of a medical record number can be reversed by trying every number; the
    salt (random, created on first use, readable only by its owner) prevents that while
    keeping keys stable across runs into the same reports folder.
    """
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / SALT_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32))
    salt = bytes.fromhex(path.read_text(encoding="ascii").strip())

    def key(patient_id: str) -> str:
        return "P" + hmac.new(salt, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()[:12]

    return key


def protocol_fingerprint(protocol: Protocol, formats: tuple[str, ...]) -> str:
    """A hash of the resolved rules, mapping, α/β table and report formats."""
    from plancheck import __version__

    data = {
        "version": __version__,
        "protocol": [protocol.id, protocol.version, list(protocol.chain)],
        "rules": [r.rule.model_dump(mode="json") for r in protocol.rules],
        "mapping": dict(protocol.structure_mapping),
        "alpha_beta": dict(protocol.alpha_beta_gy),
        "formats": sorted(formats),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def discover_plans(root: str | os.PathLike[str], reports_dir: str | os.PathLike[str], protocol: Protocol,
                   *, formats: tuple[str, ...] = ("json",)) -> Discovery:
    """Index every file under ``root`` and make one :class:`PlanJob` per RT Plan.

    Files are grouped by their headers (patient, frame of reference, UID references), not by
    folder. Each plan's reports go to ``reports_dir/<patient key>/<plan UID>/``. A
    ``case.yaml`` in the plan file's folder is used as its case file.
    """
    reports = Path(reports_dir)
    index = index_objects(root)
    groups = group_plans(index.objects)
    keyer = patient_keyer(reports)
    fingerprint = protocol_fingerprint(protocol, formats)
    discovery = Discovery(index=index, groups=groups)
    for group in groups:
        plan = group.plan
        key = keyer(plan.patient_id)
        case = find_case_file(plan.path.parent)
        discovery.jobs.append(PlanJob(
            plan_uid=plan.sop_instance_uid, plan_label=plan.label, patient_key=key,
            study_uid=plan.study_instance_uid, files=tuple(str(p) for p in group.files),
            out_dir=str(reports / key / safe_uid(plan.sop_instance_uid)), formats=formats,
            case_file=str(case) if case else None, fingerprint=fingerprint,
            secrets=(plan.patient_id, plan.patient_name),
        ))
    return discovery
