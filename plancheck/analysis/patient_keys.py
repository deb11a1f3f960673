"""Patient keys: the name under which a patient's reports are filed, never the patient's ID.

Shared by ``plancheck batch``, the DICOM receiver and the watched folder, which file each
treatment's reports under ``REPORTS/<patient key>/<treatment id>/``: a treatment id is its
frame of reference UID, which two patients may share (a template or phantom CT, anonymised
data), so the patient key keeps their reports apart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["SALT_FILE", "patient_keyer"]

#: Secret salt of the patient keys, kept in the reports folder (same folder → same keys).
SALT_FILE = ".patient-key-salt"


def patient_keyer(reports_dir: Path) -> Callable[[str], str]:
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
