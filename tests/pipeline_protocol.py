"""The small protocol the QA-pipeline tests (batch, receiver) check plans against.

Two rules: the spinal-cord maximum, which decides (the generator's violations variant
breaks it), and a heart mean far above the generator's 20–40 Gy, so it always passes.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["pipeline_protocol_yaml", "write_pipeline_protocol"]


def pipeline_protocol_yaml(protocol_id: str, title: str) -> str:
    """The protocol's YAML text, with its own id and title."""
    return f"""\
schema_version: 1
id: {protocol_id}
title: {title}
version: "1"
rules:
  - id: OAR-CORD-MAX
    kind: dvh
    title: Spinal cord maximum
    category: oar
    structure: SpinalCord
    metric: "D0.03cc[Gy]"
    dose_basis: physical
    limits: {{unit: Gy, upper: {{per_protocol: 45, acceptable: 48}}}}
    provenance: {{source: test, section: "1", confidence: institutional}}
  - id: OAR-HEART-MEAN
    kind: dvh
    title: Heart mean dose
    category: oar
    structure: Heart
    metric: "Mean[Gy]"
    dose_basis: physical
    limits: {{unit: Gy, upper: {{per_protocol: 45}}}}  # far above the generator's 20-40 Gy: only the cord decides
    provenance: {{source: test, section: "2", confidence: institutional}}
"""


def write_pipeline_protocol(folder: Path, protocol_id: str, title: str) -> Path:
    """Write the protocol to ``folder/<protocol_id>.yaml`` and return the path."""
    path = folder / f"{protocol_id}.yaml"
    path.write_text(pipeline_protocol_yaml(protocol_id, title), encoding="utf-8")
    return path
