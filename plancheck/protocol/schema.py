"""The protocol file format: strict pydantic models shared by every rule kind.

A protocol file (YAML) looks like::

    schema_version: 1
    id: esophagus-oligomet-2025
    title: Oligometastatic esophageal cancer, Chinese expert consensus 2025
    version: "2025.1"
    extends: [plan-integrity]          # built-in protocol ids or paths (optional)
    rules:
      - id: OAR-CORD
        kind: dvh                      # the discriminator: which rule kind
        title: Spinal cord PRV maximum dose, conventional course
        category: oar
        provenance: {source: "...", section: "§5 OAR-CORD", confidence: companion}
        ...                            # fields of the rule kind
    overrides:                         # change values of inherited rules
      OAR-CORD: {limits: {unit: Gy, upper: {per_protocol: 44}}}
    disable: [OAR-KID]                 # switch inherited rules off
    structure_mapping: {SpinalCord: "Cord"}   # standard name → this clinic's ROI name
    alpha_beta_gy: {Lungs: 4}          # α/β overrides per standard structure name (a PRV of an
                                       # organ, e.g. SpinalCord_PRV05, takes the organ's)

Every model forbids unknown keys, so a misspelt key is an error that names the
file, the rule id and the field, never a silently ignored value.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Confidence", "Category", "ProvenanceSpec", "RuleBase", "ProtocolHeader", "StrictModel"]

Confidence = Literal["consensus", "companion", "provisional", "institutional"]
Category = Literal["definition", "timing", "dose", "target", "coverage", "oar", "integrity", "other"]


class StrictModel(BaseModel):
    """Base of every protocol-file model: unknown keys are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ProvenanceSpec(StrictModel):
    """Where a rule comes from.

    ``confidence``: ``consensus`` (stated by the consensus), ``companion`` (a document
    the consensus builds on), ``provisional`` (common practice, to be confirmed),
    ``institutional`` (a clinic's own choice).
    """

    source: str = Field(min_length=1)
    section: str = Field(min_length=1)
    confidence: Confidence
    note: str = ""


class RuleBase(StrictModel):
    """Fields every rule has. Each rule kind subclasses it with ``kind: Literal[...]``."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", description="unique id, e.g. OAR-CORD")
    kind: str
    title: str = Field(min_length=1)
    category: Category
    provenance: ProvenanceSpec
    description: str = ""


class ProtocolHeader(StrictModel):
    """The protocol-level fields (rules are added per registered kind, see
    :func:`plancheck.protocol.loader.protocol_file_model`)."""

    schema_version: Literal[1]
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]*$")
    title: str
    version: str
    description: str = ""
    extends: list[str] = Field(default_factory=list)
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    disable: list[str] = Field(default_factory=list)
    structure_mapping: dict[str, str] = Field(default_factory=dict)
    alpha_beta_gy: dict[str, float] = Field(default_factory=dict)
