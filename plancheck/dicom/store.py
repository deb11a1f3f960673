"""Keeping DICOM objects on disk safely, and finding the plans among stored files.

Two jobs, both header-level and both needing pydicom (hence in the DICOM boundary package):

* **Storing objects that arrive from the network** (:class:`ObjectStore`). Everything from the
  wire is untrusted: the data set is parsed and walked for truncation before it is kept
  (:func:`validate_received`), file names are built only from sanitised UIDs
  (:func:`safe_uid`), a different object never overwrites one with the same name (the older
  version is moved aside under a content-hash name), corrupt objects are kept aside in a
  quarantine folder, and the size of one object and of the whole store are limited.
* **Indexing files and grouping them into plans** (:func:`index_objects`,
  :func:`group_plans`): which structure set, dose(s) and images belong to each RT Plan, and
  whether the plan is complete (its structure set and every dose it needs are present). The
  receiver uses it to decide when a plan can be checked; ``plancheck batch`` uses it to find
  the plans of an archive in any folder layout.

Store layout (all names from sanitised UIDs; nothing from patient names or IDs)::

    STORE/studies/<StudyInstanceUID>/<RP|RS|RD|CT|MR>_<SOPInstanceUID>.dcm
    STORE/superseded/<StudyInstanceUID>/<prefix>_<SOPInstanceUID>.<sha256[:16]>.dcm
    STORE/quarantine/<UTC time>_<SOPInstanceUID>_<sha256[:12]>.dcm  (+ .txt: the reason)
    STORE/.incoming/   objects being received (written as they arrive, counted in the budget) and
                       temporary files renamed into place atomically; emptied on start

References
----------
DICOM PS3.4 Annex B (Storage Service Class; B.2.3 statuses), PS3.5 §9 (UID encoding rules:
digits and dots, at most 64 characters), PS3.10 §7 (DICOM file format), PS3.3 C.8.8.3 (RT Dose
module), C.8.8.9 - C.8.8.13 (RT Plan modules), C.8.8.5 (Structure Set module).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    RTDoseStorage,
    RTIonPlanStorage,
    RTPlanStorage,
    RTStructureSetStorage,
)

from plancheck.model.course_selection import (
    AlternativesPolicy, CourseChoice, LeftOutPlan, PlanFacts, PlanSelection, choose_courses,
)
from plancheck.dicom.read_common import (
    SourceFile, check_not_truncated, kind_of, not_dicom_reason, read_header, same_object, sop_class_name,
    sop_class_of,
)
from plancheck.errors import DicomConformanceError, DicomReadError, PlancheckError, StorageLimitError

__all__ = [
    "STORABLE_SOP_CLASSES", "TRANSFER_SYNTAXES_RT", "TRANSFER_SYNTAXES_IMAGE", "ReceivedObject", "StoredObject", "ObjectStore",
    "safe_uid", "validate_received", "validate_content", "status_dataset", "ObjectInfo", "IndexResult", "PlanGroup",
    "index_objects", "group_plans", "scrub", "TreatmentGroup", "TreatmentCheck", "group_treatments",
    "treatment_checks", "treatment_version", "index_archive", "incomplete_reason",
]

logger = logging.getLogger(__name__)

#: SOP classes the receiver accepts, with the file-name prefix of each.
STORABLE_SOP_CLASSES: dict[str, str] = {
    RTPlanStorage: "RP",
    RTIonPlanStorage: "RP",
    RTStructureSetStorage: "RS",
    RTDoseStorage: "RD",
    CTImageStorage: "CT",
    EnhancedCTImageStorage: "CT",
    MRImageStorage: "MR",
    EnhancedMRImageStorage: "MR",
}
#: Transfer syntaxes the receiver accepts for RT objects: uncompressed only (deflate is refused:
#: unbounded decompression).
TRANSFER_SYNTAXES_RT: list[str] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
#: Images may also arrive compressed; plancheck reads their headers only.
TRANSFER_SYNTAXES_IMAGE: list[str] = TRANSFER_SYNTAXES_RT + [
    JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, JPEG2000, RLELossless,
]

#: Largest archive member indexed (read into memory one at a time).
_MAX_MEMBER_BYTES = 2 * 1024**3

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_LENIENT_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # leading zeros seen in the wild


def _size_text(size_bytes: int) -> str:
    """``"12.3 MB"``, or ``"20000 bytes"`` below 0.1 MB (so a small limit is not shown as 0.0 MB)."""
    return f"{size_bytes / 1e6:.1f} MB" if size_bytes >= 100_000 else f"{size_bytes} bytes"


def safe_uid(value: object) -> str:
    """A file-name component derived from a UID received from outside.

    A value that is a UID by PS3.5 §9 (digits and dots, at most 64 characters; leading zeros
    tolerated) is used as is: it cannot contain a path separator, ``..`` or a drive letter.
    Anything else is replaced by ``x`` and the first 32 hex digits of its SHA-256, so a raw
    string from the wire never reaches the file system.

    Parameters
    ----------
    value
        The received value (any type; ``None`` and non-strings are hashed too).

    Returns
    -------
    str
        ``"1.2.840..."`` or ``"x3f1c..."``.
    """
    text = value if isinstance(value, str) else repr(value)
    stripped = text.strip("\x00 ")
    if 0 < len(stripped) <= 64 and _LENIENT_UID_RE.match(stripped):
        return stripped
    return "x" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of the given identifying strings (patient name, its
    ``^``-separated components, patient ID) replaced by ``***``, for logs and summaries.

    Only whole words of at least 3 characters are replaced (a 2-letter name component or ID
    is not identifying, and replacing it inside UIDs and numbers would garble the message).
    """
    words: set[str] = set()
    for secret in secrets:
        secret = (secret or "").strip()
        for word in [secret, *re.split(r"[\^=]", secret)]:
            word = word.strip()
            if len(word) >= 3:
                words.add(word)
    for word in sorted(words, key=len, reverse=True):
        text = re.sub(rf"(?<![0-9A-Za-z]){re.escape(word)}(?![0-9A-Za-z])", "***", text, flags=re.IGNORECASE)
    return text


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def status_dataset(status: int, comment: str) -> Dataset:
    """A DIMSE status with an Error Comment (0000,0902), for a storage SCP's response.

    The comment is cut to the 64 characters its VR (LO) allows.
    """
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return ds


# --------------------------------------------------------------------------- received objects

@dataclass(frozen=True)
class ReceivedObject:
    """Identity of a validated object that arrived over the network (UIDs only)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    prefix: str  # RP, RS, RD, CT, MR
    kind: str  # RTPLAN, RTSTRUCT, RTDOSE, IMAGE
    size_bytes: int
    sha256: str


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:  # a value that cannot be decoded
        return ""
    return str(value).strip() if value is not None else ""


def validate_received(data: bytes, *, sop_class_uid: str, sop_instance_uid: str, label: str) -> ReceivedObject:
    """Check that a received Part 10 byte stream is a complete, readable object of the class
    the sender announced.

    Parameters
    ----------
    data
        Preamble, file meta information and data set, as written by the network layer.
    sop_class_uid, sop_instance_uid
        The Affected SOP Class/Instance UID of the C-STORE request.
    label
        How the object is named in messages (a UID, never a patient's name).

    Returns
    -------
    ReceivedObject

    Raises
    ------
    DicomReadError
        The stream cannot be parsed, or its element structure runs past its end (truncated).
    DicomConformanceError
        The data set's SOP Class/Instance UID differ from the request's, the SOP class is not
        one plancheck stores, or (0020,000D) 'Study Instance UID' is missing.
    """
    try:
        ds = dcmread(BytesIO(data), stop_before_pixels=False)
        # Force the deferred parsing of every element now, not later in a reader.
        for _ in ds.iterall():
            pass
    except InvalidDicomError as exc:
        raise DicomReadError(f"is not a DICOM data set: {exc}", label) from exc
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise DicomReadError(f"cannot be parsed (corrupt or truncated): {type(exc).__name__}: {exc}",
                             label) from exc
    check_not_truncated(data, ds, label)
    ds_class = _text(ds, "SOPClassUID")
    ds_instance = _text(ds, "SOPInstanceUID")
    if ds_class != sop_class_uid:
        raise DicomConformanceError(
            f"(0008,0016) 'SOP Class UID' is {sop_class_name(ds_class)}, but the C-STORE request "
            f"announced {sop_class_name(sop_class_uid)}; they must be equal", label)
    if ds_instance != sop_instance_uid:
        raise DicomConformanceError(
            f"(0008,0018) 'SOP Instance UID' is {safe_uid(ds_instance)}, but the C-STORE request "
            f"announced {safe_uid(sop_instance_uid)}; they must be equal", label)
    prefix = STORABLE_SOP_CLASSES.get(ds_class)
    if prefix is None:
        raise DicomConformanceError(f"SOP class {sop_class_name(ds_class)} is not stored by plancheck", label)
    study = _text(ds, "StudyInstanceUID")
    if not study:
        raise DicomConformanceError("(0020,000D) 'Study Instance UID' is missing; it is required (Type 1) "
                                    "to file the object with its study", label)
    validate_content(ds, kind_of(ds_class) or "IMAGE", label)
    return ReceivedObject(ds_class, ds_instance, study, prefix, kind_of(ds_class) or "IMAGE", len(data),
                          _sha256(data))


def _image_pixel_length(ds: Dataset, label: str) -> None:
    """An uncompressed image's Pixel Data must hold Rows × Columns × frames × samples × bytes."""
    if "PixelData" not in ds:
        return
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and syntax.is_compressed:
        return
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DicomConformanceError(f"the image pixel module is incomplete or invalid: {exc}", label) from exc
    expected = rows * columns * frames * samples * bits // 8
    if len(ds.PixelData) < expected:
        raise DicomReadError(f"(7FE0,0010) 'Pixel Data' holds {len(ds.PixelData)} bytes, but {rows} rows × "
                             f"{columns} columns × {frames} frame(s) × {samples} sample(s) × {bits // 8} bytes = "
                             f"{expected} bytes are required: the object is truncated", label)


def validate_content(ds: Dataset, kind: str, label: str) -> None:
    """Check a received object with the readers ``plancheck check`` uses, so that an object the
    check would refuse is refused on receipt (and quarantined) instead of being stored and
    breaking every later check of its treatment.

    * RT Dose: read completely (:func:`plancheck.dicom.read_dose.dose_grid_from_dataset`):
      required attributes (Dose Units, Dose Grid Scaling, geometry), Pixel Data length;
    * RT Plan: :func:`plancheck.dicom.read_plan.plan_from_dataset` (fraction groups, beams,
      prescriptions);
    * RT Structure Set: :func:`plancheck.dicom.read_structures.structure_set_from_dataset`
      (ROIs and contours);
    * images: Pixel Data length when uncompressed (plancheck reads only their headers).

    Raises
    ------
    DicomReadError, DicomConformanceError
        As the reader does; unexpected reader failures become a DicomConformanceError.
    """
    from plancheck.dicom.read_dose import dose_grid_from_dataset
    from plancheck.dicom.read_plan import plan_from_dataset
    from plancheck.dicom.read_structures import structure_set_from_dataset

    readers = {"RTDOSE": dose_grid_from_dataset, "RTPLAN": plan_from_dataset, "RTSTRUCT": structure_set_from_dataset}
    try:
        if kind in readers:
            readers[kind](ds, label)
        else:
            _image_pixel_length(ds, label)
    except (DicomReadError, DicomConformanceError):
        raise
    except PlancheckError as exc:
        raise DicomConformanceError(str(exc), label) from exc
    except Exception as exc:  # a reader tripping over a malformed value
        raise DicomConformanceError(f"cannot be interpreted: {type(exc).__name__}: {exc}", label) from exc


@dataclass(frozen=True)
class StoredObject:
    """Where a received object was kept, and what happened to an earlier one of the same UID.

    Attributes
    ----------
    path
        The stored file.
    study_dir
        The folder of its study.
    duplicate
        True when an identical object was already stored (nothing was written).
    superseded
        Where a different, earlier object with the same SOP Instance UID was moved, if any.
    """

    obj: ReceivedObject
    path: Path
    study_dir: Path
    duplicate: bool = False
    superseded: Path | None = None


class ObjectStore:
    """A folder of received DICOM objects (see the module docstring for the layout).

    Thread-safe: several associations may store at once.

    Parameters
    ----------
    root
        The store folder (created).
    max_object_bytes
        Largest single object accepted.
    max_store_bytes
        Budget of the whole folder (studies, superseded and quarantined objects).
    min_free_bytes
        Refuse an object that would leave less free space than this on the file system.
    """

    def __init__(self, root: str | os.PathLike[str], *, max_object_bytes: int, max_store_bytes: int,
                 min_free_bytes: int = 0) -> None:
        self.root = Path(root)
        self.studies = self.root / "studies"
        self.quarantine_dir = self.root / "quarantine"
        self.superseded_dir = self.root / "superseded"
        self.incoming = self.root / ".incoming"
        for folder in (self.studies, self.quarantine_dir, self.superseded_dir, self.incoming):
            folder.mkdir(parents=True, exist_ok=True)
        for stale in self.incoming.iterdir():  # left over by a crash
            stale.unlink(missing_ok=True)
        self.max_object_bytes = int(max_object_bytes)
        self.max_store_bytes = int(max_store_bytes)
        self.min_free_bytes = int(min_free_bytes)
        self._lock = threading.Lock()
        self._usage = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        self._incoming_bytes = 0

    @property
    def usage_bytes(self) -> int:
        """Bytes currently held by the store (objects kept, and objects being received)."""
        return self._usage + self._incoming_bytes

    def check_size(self, size_bytes: int) -> None:
        """Raise :class:`StorageLimitError` if an object of this size may not be stored now
        (the bytes being received count against the budget)."""
        if size_bytes > self.max_object_bytes:
            raise StorageLimitError(f"object of {_size_text(size_bytes)} exceeds the limit of "
                                    f"{_size_text(self.max_object_bytes)} per object")
        used = self._usage + self._incoming_bytes
        if used + size_bytes > self.max_store_bytes:
            raise StorageLimitError(f"store is full: {used / 1e9:.3f} GB used, limit "
                                    f"{self.max_store_bytes / 1e9:.3f} GB")
        if self.min_free_bytes:
            free = shutil.disk_usage(self.root).free
            if free - size_bytes < self.min_free_bytes:
                raise StorageLimitError(f"disk nearly full: {free / 1e9:.3f} GB free, "
                                        f"{self.min_free_bytes / 1e9:.3f} GB must stay free")

    def reserve_incoming(self, size_bytes: int, object_bytes: int) -> None:
        """Count ``size_bytes`` more of an object being received (``object_bytes`` of it so
        far) against the limits, before they are written.

        Raises
        ------
        StorageLimitError
            The object would exceed the per-object limit, or the store its budget or the
            disk its free-space reserve.
        """
        with self._lock:
            if object_bytes > self.max_object_bytes:
                raise StorageLimitError(f"object larger than the limit of {_size_text(self.max_object_bytes)} "
                                        f"per object ({_size_text(object_bytes)} received so far)")
            self.check_size(size_bytes)
            self._incoming_bytes += size_bytes

    def release_incoming(self, size_bytes: int) -> None:
        """The received bytes of an object were dropped (or stored under :meth:`store`)."""
        with self._lock:
            self._incoming_bytes = max(0, self._incoming_bytes - size_bytes)

    def _write_temp(self, data: bytes) -> Path:
        fd, tmp = tempfile.mkstemp(prefix="rx-", suffix=".part", dir=self.incoming)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return Path(tmp)

    def store(self, data: bytes, obj: ReceivedObject) -> StoredObject:
        """Keep a validated object.

        An identical object already stored is not written again; a *different* object with
        the same SOP Instance UID replaces it, and the earlier one is moved to
        ``superseded/`` under a name that includes its content hash (never overwritten).

        Raises
        ------
        StorageLimitError
            The object is too large, or the store budget or free disk space would be exceeded.
        OSError
            Writing failed.
        """
        self.check_size(len(data))
        study_dir = self.studies / safe_uid(obj.study_instance_uid)
        name = f"{obj.prefix}_{safe_uid(obj.sop_instance_uid)}.dcm"
        target = study_dir / name
        tmp = self._write_temp(data)
        try:
            with self._lock:
                study_dir.mkdir(parents=True, exist_ok=True)
                superseded = None
                if target.exists():
                    if target.stat().st_size == len(data) and _file_sha256(target) == obj.sha256:
                        tmp.unlink()
                        return StoredObject(obj, target, study_dir, duplicate=True)
                    old_hash = _file_sha256(target)
                    aside = self.superseded_dir / study_dir.name
                    aside.mkdir(parents=True, exist_ok=True)
                    superseded = aside / f"{target.stem}.{old_hash[:16]}.dcm"
                    if superseded.exists():  # the same old content was set aside before
                        self._usage -= target.stat().st_size
                        target.unlink()
                    else:
                        os.replace(target, superseded)
                    logger.warning("SOP instance %s re-sent with different content; the earlier version "
                                   "is kept at %s", safe_uid(obj.sop_instance_uid), superseded)
                os.replace(tmp, target)
                self._usage += len(data)
                return StoredObject(obj, target, study_dir, superseded=superseded)
        finally:
            tmp.unlink(missing_ok=True)

    def quarantine(self, data: bytes, reason: str, *, sop_instance_uid: str) -> Path | None:
        """Keep a corrupt or non-conformant object aside with a ``.txt`` giving the reason.

        Returns None (and logs) when the budget does not allow keeping it.
        """
        digest = _sha256(data)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.quarantine_dir / f"{stamp}_{safe_uid(sop_instance_uid)}_{digest[:12]}.dcm"
        try:
            self.check_size(len(data))
        except StorageLimitError as exc:
            logger.error("object %s not quarantined: %s", safe_uid(sop_instance_uid), exc.message)
            return None
        tmp = self._write_temp(data)
        with self._lock:
            os.replace(tmp, target)
            reason_file = target.with_suffix(".txt")
            reason_file.write_text(reason + "\n", encoding="utf-8")
            self._usage += len(data) + reason_file.stat().st_size
        return target


# ------------------------------------------------------------------------------ indexing

_INDEX_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "PatientID", "PatientName", "StudyInstanceUID",
    "SeriesInstanceUID", "FrameOfReferenceUID", "Modality", "RTPlanLabel",
    "ReferencedStructureSetSequence", "FractionGroupSequence", "DoseSummationType",
    "ReferencedRTPlanSequence", "ReferencedFrameOfReferenceSequence",
    "ApprovalStatus", "RTPlanDate", "DoseReferenceSequence",  # telling alternative plans from courses
]


@dataclass(frozen=True)
class ObjectInfo:
    """What grouping needs from one file's header. Patient identity is kept for hashing and
    scrubbing only; it is left out of ``repr`` so it cannot reach a log by accident.

    Attributes
    ----------
    fraction_groups
        RT Plan: fraction group number → beam numbers with a non-zero meterset.
    dose_groups, dose_beams
        RT Dose: the fraction groups and beams it references.
    referenced_uids
        RT Plan: the structure set(s) it references; RT Dose: the plan(s).
    approval_status, plan_date, target_rois
        RT Plan: Approval Status, RT Plan Date and the ROI numbers of its TARGET dose
        references (to tell alternative plans from courses, :mod:`plancheck.model.course_selection`).
    member
        The member name when the object is inside a zip archive (``path`` is the archive).
    conflicting_paths
        Other files with this SOP Instance UID whose contents differ (an edited object
        re-exported under its old UID beside the old file). They are read with the object, so
        the check refuses the treatment naming both (it cannot tell which one is current).
    """

    path: Path
    kind: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    patient_id: str = field(repr=False)
    patient_name: str = field(repr=False)
    series_instance_uid: str = ""
    label: str = ""
    referenced_uids: tuple[str, ...] = ()
    summation_type: str = ""
    fraction_groups: tuple[tuple[int, tuple[int, ...]], ...] = ()
    dose_groups: tuple[int, ...] = ()
    dose_beams: tuple[int, ...] = ()
    approval_status: str = ""
    plan_date: str = ""
    target_rois: tuple[int, ...] = ()
    member: str = ""
    conflicting_paths: tuple[Path, ...] = ()


@dataclass
class IndexResult:
    """Objects found, and files passed over with the reason."""

    objects: list[ObjectInfo] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _info(path: Path, ds: Dataset) -> ObjectInfo | None:
    sop_class = sop_class_of(ds)
    kind = kind_of(sop_class)
    if kind is None:
        return None
    frame = _text(ds, "FrameOfReferenceUID")
    referenced: list[str] = []
    groups: list[tuple[int, tuple[int, ...]]] = []
    dose_groups: list[int] = []
    dose_beams: list[int] = []
    targets: set[int] = set()
    if kind == "RTSTRUCT" and not frame:
        for item in ds.get("ReferencedFrameOfReferenceSequence", None) or []:
            frame = _text(item, "FrameOfReferenceUID")
            if frame:
                break
    elif kind == "RTPLAN":
        referenced = [_text(i, "ReferencedSOPInstanceUID") for i in ds.get("ReferencedStructureSetSequence", None) or []]
        for group in ds.get("FractionGroupSequence", None) or []:
            number = _int(group.get("FractionGroupNumber", None))
            beams = []
            for ref in group.get("ReferencedBeamSequence", None) or []:
                beam = _int(ref.get("ReferencedBeamNumber", None))
                try:
                    meterset = float(ref.get("BeamMeterset", None))
                except (TypeError, ValueError):
                    meterset = None
                if beam is not None and meterset != 0.0:
                    beams.append(beam)
            if number is not None:
                groups.append((number, tuple(beams)))
        for ref in ds.get("DoseReferenceSequence", None) or []:
            roi = _int(ref.get("ReferencedROINumber", None))
            if roi is not None and _text(ref, "DoseReferenceType").upper() == "TARGET":
                targets.add(roi)
    elif kind == "RTDOSE":
        for ref in ds.get("ReferencedRTPlanSequence", None) or []:
            referenced.append(_text(ref, "ReferencedSOPInstanceUID"))
            for group in ref.get("ReferencedFractionGroupSequence", None) or []:
                number = _int(group.get("ReferencedFractionGroupNumber", None))
                if number is not None:
                    dose_groups.append(number)
                for beam in group.get("ReferencedBeamSequence", None) or []:
                    b = _int(beam.get("ReferencedBeamNumber", None))
                    if b is not None:
                        dose_beams.append(b)
    return ObjectInfo(
        path=path, kind=kind, sop_class_uid=sop_class, sop_instance_uid=_text(ds, "SOPInstanceUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"), frame_of_reference_uid=frame,
        patient_id=_text(ds, "PatientID"), patient_name=_text(ds, "PatientName"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"), label=_text(ds, "RTPlanLabel"),
        referenced_uids=tuple(u for u in referenced if u), summation_type=_text(ds, "DoseSummationType").upper(),
        fraction_groups=tuple(groups), dose_groups=tuple(dose_groups), dose_beams=tuple(dose_beams),
        approval_status=_text(ds, "ApprovalStatus").upper(),
        plan_date=_text(ds, "RTPlanDate") if kind == "RTPLAN" else "", target_rois=tuple(sorted(targets)),
    )


def index_objects(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> IndexResult:
    """Read the headers of every file under ``paths`` (directories searched recursively) and
    keep the RT Plans, Structure Sets, Doses and images.

    The header reader and classifier are those of ``plancheck check``
    (:func:`plancheck.dicom.read_common.read_header`, :func:`kind_of_dataset`): a data set
    without File Meta Information (Monaco) is read here as it is there, and a large file
    that is not DICOM is passed over after a cheap test of its first bytes. Only the
    attributes grouping needs are read (no contours, no pixels). Files that are not DICOM,
    cannot be parsed, or are of other SOP classes are listed in ``skipped`` with the
    reason; the same SOP instance found twice is kept once (the first path in sorted order).
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")))
        elif p.is_file():
            files.append(p)
    result = IndexResult()
    seen: dict[str, Path] = {}
    position: dict[str, int] = {}
    for path in files:
        source = SourceFile(label=str(path), path=path)
        try:
            ds = read_header(source, specific_tags=_INDEX_TAGS)
        except InvalidDicomError:
            result.skipped.append((path, not_dicom_reason(source)))
            continue
        except DicomReadError as exc:
            result.skipped.append((path, exc.message))
            continue
        try:
            info = _info(path, ds)
        except Exception as exc:  # an attribute grouping needs cannot be decoded
            result.skipped.append((path, f"unreadable DICOM header: {type(exc).__name__}: {exc}"))
            continue
        if info is None:
            result.skipped.append((path, f"SOP class {sop_class_name(sop_class_of(ds))} is not used by plancheck"))
            continue
        uid = info.sop_instance_uid
        if uid in seen:
            first = seen[uid]
            if info.kind != "IMAGE" and not same_object(SourceFile(str(first), first), source):
                kept = result.objects[position[uid]]
                result.objects[position[uid]] = replace(kept, conflicting_paths=(*kept.conflicting_paths, path))
                continue
            result.skipped.append((path, f"duplicate of {first}"))
            continue
        seen[uid] = path
        position[uid] = len(result.objects)
        result.objects.append(info)
    return result


# ------------------------------------------------------------------------------ grouping

_PLAN_TYPES = ("PLAN",)
_FRACTION_TYPES = ("FRACTION", "FRACTION_SESSION")
_BEAM_TYPES = ("BEAM", "BEAM_SESSION")


@dataclass(frozen=True)
class PlanGroup:
    """One RT Plan and the files it needs.

    Attributes
    ----------
    plan
        The RT Plan.
    structure_sets, doses, images
        The structure set it references (or the only one in its frame of reference), the
        doses that reference it, and the images of the same patient and frame of reference.
    missing
        Why the plan cannot be checked yet (empty when complete).
    """

    plan: ObjectInfo
    structure_sets: tuple[ObjectInfo, ...]
    doses: tuple[ObjectInfo, ...]
    images: tuple[ObjectInfo, ...]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def objects(self) -> tuple[ObjectInfo, ...]:
        return (self.plan, *self.structure_sets, *self.doses, *self.images)

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(o.path for o in self.objects)

    @property
    def component_uids(self) -> frozenset[str]:
        """SOP Instance UIDs of the plan, its structure set and doses (not the images)."""
        return frozenset(o.sop_instance_uid for o in (self.plan, *self.structure_sets, *self.doses))


def _missing_doses(plan: ObjectInfo, doses: Sequence[ObjectInfo]) -> list[str]:
    uid = safe_uid(plan.sop_instance_uid)
    if not doses:
        return [f"no RT Dose references RT Plan {uid}"]
    if any(d.summation_type in _PLAN_TYPES for d in doses):
        return []
    fraction = [d for d in doses if d.summation_type in _FRACTION_TYPES]
    if fraction:
        covered = {g for d in fraction for g in d.dose_groups}
        needed = {n for n, _ in plan.fraction_groups}
        if len(fraction) == 1 and not fraction[0].dose_groups and len(needed) <= 1:
            return []
        lacking = sorted(needed - covered)
        return [f"no FRACTION dose yet for fraction group(s) {lacking}"] if lacking else []
    beam = [d for d in doses if d.summation_type in _BEAM_TYPES]
    if beam:
        needed_beams = {b for _, beams in plan.fraction_groups for b in beams}
        covered_beams = {b for d in beam for b in d.dose_beams}
        if len(beam) == 1 and not beam[0].dose_beams and len(needed_beams) <= 1:
            return []
        lacking = sorted(needed_beams - covered_beams)
        return [f"no BEAM dose yet for beam(s) {lacking}"] if lacking else []
    types = sorted({d.summation_type or "(none)" for d in doses})
    return [f"the doses referencing RT Plan {uid} are of summation type(s) {types}, none usable"]


def _plan_frame(plan: ObjectInfo, rtss_by_uid: dict[str, ObjectInfo]) -> str:
    """The plan's Frame of Reference UID, else that of the structure set it references ("" if neither)."""
    if plan.frame_of_reference_uid:
        return plan.frame_of_reference_uid
    for uid in plan.referenced_uids:
        if uid in rtss_by_uid:
            return rtss_by_uid[uid].frame_of_reference_uid
    return ""


def group_plans(objects: Sequence[ObjectInfo]) -> list[PlanGroup]:
    """Group indexed objects by plan.

    A structure set belongs to a plan when the plan references it; a plan without a
    reference gets the only structure set of its patient and frame of reference. A dose
    belongs to the plan it references (a dose referencing no plan goes to the only plan of
    its patient and frame). Images go with every plan of the same patient and frame.

    Returns
    -------
    list of PlanGroup
        One per RT Plan, sorted by patient group then plan UID, with ``missing`` saying what
        the plan still lacks (structure set, doses, fraction groups or beams without dose).
    """
    rtss_by_uid = {o.sop_instance_uid: o for o in objects if o.kind == "RTSTRUCT"}
    plans = [o for o in objects if o.kind == "RTPLAN"]
    doses_by_plan: dict[str, list[ObjectInfo]] = {}
    unlinked_doses: list[ObjectInfo] = []
    for dose in (o for o in objects if o.kind == "RTDOSE"):
        if dose.referenced_uids:
            for uid in dict.fromkeys(dose.referenced_uids):
                doses_by_plan.setdefault(uid, []).append(dose)
        else:
            unlinked_doses.append(dose)

    by_place: dict[tuple[str, str], list[ObjectInfo]] = {}
    by_patient: dict[str, list[ObjectInfo]] = {}
    for o in objects:
        by_place.setdefault((o.patient_id, o.frame_of_reference_uid), []).append(o)
        by_patient.setdefault(o.patient_id, []).append(o)
    plan_frames = {p.sop_instance_uid: _plan_frame(p, rtss_by_uid) for p in plans}
    plans_at: dict[tuple[str, str], int] = {}
    for p in plans:
        key = (p.patient_id, plan_frames[p.sop_instance_uid])
        plans_at[key] = plans_at.get(key, 0) + 1

    groups: list[PlanGroup] = []
    for plan in plans:
        frame = plan_frames[plan.sop_instance_uid]
        same_place = by_place.get((plan.patient_id, frame), []) if frame else by_patient.get(plan.patient_id, [])
        missing: list[str] = []
        rtss: list[ObjectInfo] = []
        if plan.referenced_uids:
            for uid in plan.referenced_uids:
                if uid in rtss_by_uid:
                    rtss.append(rtss_by_uid[uid])
                else:
                    missing.append(f"RT Structure Set {safe_uid(uid)} referenced by the plan is not present")
        else:
            candidates = [o for o in same_place if o.kind == "RTSTRUCT"]
            if len(candidates) == 1:
                rtss = candidates
            else:
                missing.append(f"the plan references no structure set and {len(candidates)} are present "
                               "in its frame of reference")
        doses = list(doses_by_plan.get(plan.sop_instance_uid, []))
        if plans_at[(plan.patient_id, frame)] == 1:
            doses += [d for d in unlinked_doses if d.patient_id == plan.patient_id
                      and d.frame_of_reference_uid == frame]
        missing += _missing_doses(plan, doses)
        images = tuple(o for o in same_place if o.kind == "IMAGE" and frame)
        groups.append(PlanGroup(plan, tuple(rtss), tuple(doses), images, tuple(missing)))
    groups.sort(key=lambda g: (g.plan.patient_id, g.plan.sop_instance_uid))
    return groups



# ------------------------------------------------------------------------------ treatments

@dataclass(frozen=True)
class TreatmentGroup:
    """Every plan of one patient in one frame of reference: the unit plancheck checks.

    Attributes
    ----------
    frame_of_reference_uid
        The shared frame ("" when neither the plans nor their structure sets state one).
    plans
        One :class:`PlanGroup` per RT Plan (its structure set, doses, what it lacks).
    structure_sets, images
        Every structure set and image of the patient in this frame.
    unplaced_doses
        Doses of the patient in this frame that belong to none of its plans (they reference
        a plan that is not present, or no plan while the frame has several): a course whose
        plan is missing. The treatment is incomplete while they are there, and they are read
        with it, so the check refuses them as ``plancheck check`` does.
    elsewhere
        The patient's plans in other frames of reference (other image sets): their doses
        cannot be summed with this treatment's, so its limits on the whole treatment are
        not graded (:attr:`TreatmentCheck.outside_plans`).
    """

    patient_id: str = field(repr=False)
    patient_name: str = field(repr=False)
    frame_of_reference_uid: str
    plans: tuple[PlanGroup, ...]
    structure_sets: tuple[ObjectInfo, ...] = ()
    images: tuple[ObjectInfo, ...] = ()
    unplaced_doses: tuple[ObjectInfo, ...] = ()
    elsewhere: tuple[ObjectInfo, ...] = ()

    @property
    def key(self) -> str:
        """A file-name-safe identity: the frame of reference UID (sanitised), or a hash of
        the patient and first plan when there is no frame."""
        if self.frame_of_reference_uid:
            return safe_uid(self.frame_of_reference_uid)
        first = self.plans[0].plan.sop_instance_uid if self.plans else ""
        return "x" + hashlib.sha256(f"{self.patient_id}|{first}".encode()).hexdigest()[:32]

    @property
    def study_uid(self) -> str:
        return self.plans[0].plan.study_instance_uid if self.plans else ""

    def facts(self) -> list[PlanFacts]:
        """The plans as :class:`~plancheck.model.course_selection.PlanFacts` (target names unknown here)."""
        out = []
        for group in self.plans:
            p = group.plan
            rtss = group.structure_sets[0].sop_instance_uid if len(group.structure_sets) == 1 else (
                p.referenced_uids[0] if p.referenced_uids else "")
            out.append(PlanFacts(p.sop_instance_uid, p.label, p.approval_status, p.plan_date, rtss,
                                 frozenset(p.target_rois)))
        return out


@dataclass(frozen=True)
class TreatmentCheck:
    """One check of a treatment: the plans that are its courses (one choice among them when
    some plans are alternatives), the files to read, and what is still missing.

    Attributes
    ----------
    choice
        The courses and the plans left out (None when no choice could be made: ``error``).
    error
        Why the treatment cannot be checked as it is (e.g. too many alternatives), if so.
    """

    treatment: TreatmentGroup
    choice: CourseChoice | None
    error: str | None = None

    @property
    def check_id(self) -> str:
        """The treatment's key, with a suffix for one combination of alternative plans."""
        if self.choice is None or self.choice.variant == 0:
            return self.treatment.key
        digest = hashlib.sha256("|".join(sorted(self.choice.courses)).encode()).hexdigest()[:8]
        return f"{self.treatment.key}_{digest}"

    @property
    def courses(self) -> tuple[PlanGroup, ...]:
        if self.choice is None:
            return ()
        wanted = set(self.choice.courses)
        return tuple(g for g in self.treatment.plans if g.plan.sop_instance_uid in wanted)

    @property
    def missing(self) -> tuple[str, ...]:
        """What the courses still lack (empty when the check can run)."""
        out: list[str] = []
        for group in self.courses:
            out += [f"plan {group.plan.label or safe_uid(group.plan.sop_instance_uid)}: {m}" for m in group.missing]
        for dose in self.treatment.unplaced_doses:
            refs = ", ".join(safe_uid(u) for u in dose.referenced_uids)
            out.append(f"RT Dose {safe_uid(dose.sop_instance_uid)} references RT Plan {refs}, which is not present"
                       if refs else f"RT Dose {safe_uid(dose.sop_instance_uid)} references no RT Plan, and the "
                                    f"frame of reference has {len(self.treatment.plans)} plans")
        return tuple(out)

    @property
    def complete(self) -> bool:
        return self.error is None and self.choice is not None and not self.missing

    @property
    def outside_plans(self) -> tuple[LeftOutPlan, ...]:
        """The patient's plans in other frames of reference, as plans left out of this check
        (``outside``: its limits on the whole treatment are not graded)."""
        return tuple(LeftOutPlan(p.sop_instance_uid, p.label, f"a plan of the same patient in another frame of "
                                 f"reference ({safe_uid(p.frame_of_reference_uid) or 'none'}: another image set); "
                                 "its dose cannot be added to this treatment's", outside=True)
                     for p in self.treatment.elsewhere)

    @property
    def objects(self) -> tuple[ObjectInfo, ...]:
        """The course plans with their structure sets and doses, every other plan of the
        treatment (so the report can say why it was left out; its doses are not read),
        the frame's structure sets and images."""
        seen: dict[str, ObjectInfo] = {}
        for group in self.courses:
            for o in (group.plan, *group.structure_sets, *group.doses):
                seen.setdefault(o.sop_instance_uid, o)
        for group in self.treatment.plans:
            seen.setdefault(group.plan.sop_instance_uid, group.plan)
        for o in (*self.treatment.structure_sets, *self.treatment.unplaced_doses, *self.treatment.images):
            seen.setdefault(o.sop_instance_uid, o)
        return tuple(seen.values())

    @property
    def files(self) -> tuple[Path, ...]:
        """The files to read (an archive once, however many members it holds), with any file
        holding another version of one of the objects (:attr:`ObjectInfo.conflicting_paths`)."""
        return tuple(dict.fromkeys(p for o in self.objects for p in (o.path, *o.conflicting_paths)))

    @property
    def component_uids(self) -> frozenset[str]:
        """SOP Instance UIDs of every plan, structure set and dose of the treatment."""
        return frozenset(o.sop_instance_uid for g in self.treatment.plans
                         for o in (g.plan, *g.structure_sets, *g.doses)) | frozenset(
            o.sop_instance_uid for o in (*self.treatment.structure_sets, *self.treatment.unplaced_doses,
                                         *self.treatment.elsewhere))


def group_treatments(objects: Sequence[ObjectInfo]) -> list[TreatmentGroup]:
    """Group indexed objects into treatments: one per patient and frame of reference.

    Plans are grouped as by :func:`group_plans` (structure set, doses, completeness per
    plan); a plan without a frame of reference takes its structure set's. A dose of the
    patient and frame that belongs to none of the plans is the treatment's (``unplaced_doses``);
    the patient's plans in other frames are named (``elsewhere``).

    Returns
    -------
    list of TreatmentGroup
        Sorted by patient, then frame of reference.
    """
    plan_groups = group_plans(objects)
    rtss_by_uid = {o.sop_instance_uid: o for o in objects if o.kind == "RTSTRUCT"}
    placed = {d.sop_instance_uid for g in plan_groups for d in g.doses}

    by_place: dict[tuple[str, str], list[PlanGroup]] = {}
    for group in plan_groups:
        by_place.setdefault((group.plan.patient_id, _plan_frame(group.plan, rtss_by_uid)), []).append(group)
    out = []
    for (patient, frame), groups in by_place.items():
        same = [o for o in objects if o.patient_id == patient and o.frame_of_reference_uid == frame and frame]
        groups.sort(key=lambda g: (str(g.plan.path), g.plan.member, g.plan.sop_instance_uid))
        out.append(TreatmentGroup(
            patient, groups[0].plan.patient_name, frame, tuple(groups),
            tuple(o for o in same if o.kind == "RTSTRUCT"), tuple(o for o in same if o.kind == "IMAGE"),
            tuple(o for o in same if o.kind == "RTDOSE" and o.sop_instance_uid not in placed),
            tuple(g.plan for (other, other_frame), gs in by_place.items() for g in gs
                  if other == patient and other_frame != frame)))
    out.sort(key=lambda t: (t.patient_id, t.frame_of_reference_uid))
    return out


def treatment_checks(treatment: TreatmentGroup, selection: PlanSelection | None = None, *,
                     alternatives: AlternativesPolicy = "variants") -> list[TreatmentCheck]:
    """The checks to run on a treatment: one, or one per combination of alternative plans
    (:func:`plancheck.model.course_selection.choose_courses`); none when a ``missing_ok``
    selection names none of its plans. A choice that cannot be made (a selection naming an
    absent plan, too many alternatives) gives one check with ``error`` set."""
    try:
        choices = choose_courses(treatment.facts(), selection, alternatives=alternatives)
    except PlancheckError as exc:
        return [TreatmentCheck(treatment, None, str(exc))]
    return [TreatmentCheck(treatment, c) for c in choices]


def treatment_version(check: TreatmentCheck) -> str:
    """A content hash of a treatment check's inputs: its course selection, the SOP Instance
    UID and bytes of every RT object, the UIDs of its images and of the patient's plans in
    other frames. The same objects sent again give the same version; any changed object,
    added plan (here or in another frame) or other choice a new one."""
    h = hashlib.sha256()
    h.update(("courses:" + ",".join(sorted(check.choice.courses if check.choice else ())) + "\n").encode())
    if check.treatment.elsewhere:  # the patient's plans in other frames decide whether the composite is graded
        h.update(("elsewhere:" + ",".join(sorted(p.sop_instance_uid for p in check.treatment.elsewhere)) + "\n").encode())
    for o in sorted(check.objects, key=lambda o: o.sop_instance_uid):
        h.update(f"{o.kind}:{o.sop_instance_uid}".encode())
        if o.kind != "IMAGE" and not o.member:
            for path in (o.path, *o.conflicting_paths):
                try:
                    h.update(_file_sha256(path).encode())
                except OSError:
                    h.update(b"unreadable")
        h.update(b"\n")
    return h.hexdigest()[:16]


def index_archive(archive: str | os.PathLike[str]) -> IndexResult:
    """The RT objects and images inside a zip archive, by their headers (members read one at
    a time; each :class:`ObjectInfo` has ``path`` = the archive and ``member`` = its name).
    A member that is not DICOM or not of a class plancheck uses is listed as skipped."""
    path = Path(archive)
    result = IndexResult()
    seen: dict[str, str] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for member in sorted(zf.infolist(), key=lambda i: i.filename):
                if member.is_dir() or Path(member.filename).name.startswith("."):
                    continue
                label = f"{path}!{member.filename}"
                if member.file_size > _MAX_MEMBER_BYTES:
                    result.skipped.append((Path(label), f"{member.file_size / 2**20:.0f} MB, too large to index"))
                    continue
                data = zf.read(member)
                try:
                    ds = dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=_INDEX_TAGS, force=False)
                    info = _info(path, ds)
                except InvalidDicomError:
                    result.skipped.append((Path(label), "not a DICOM file"))
                    continue
                except Exception as exc:  # pydicom raises many types on corrupt input
                    result.skipped.append((Path(label), f"unreadable DICOM header: {type(exc).__name__}"))
                    continue
                if info is None:
                    result.skipped.append((Path(label), "SOP class not used by plancheck"))
                    continue
                if info.sop_instance_uid in seen:
                    result.skipped.append((Path(label), f"duplicate of {seen[info.sop_instance_uid]}"))
                    continue
                seen[info.sop_instance_uid] = label
                result.objects.append(replace(info, member=member.filename))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, EOFError, ValueError,
            NotImplementedError) as exc:
        result.skipped.append((path, f"not a readable zip archive: {exc}"))
    return result


def incomplete_reason(path: str | os.PathLike[str]) -> str | None:
    """Why a file is not (yet) a whole DICOM object — it is truncated, or its header cannot be
    read — or None when it is whole. Used on files that are still arriving (``plancheck
    watch``): a file copied in pieces is complete only once its element structure reaches
    its end (:func:`plancheck.dicom.read_common.check_not_truncated`)."""
    p = Path(path)
    try:
        data = p.read_bytes()
        ds = dcmread(BytesIO(data), stop_before_pixels=True)
    except InvalidDicomError:
        return "not a DICOM file"
    except Exception as exc:  # a header cut short, or unreadable
        return f"unreadable DICOM header: {type(exc).__name__}"
    try:
        check_not_truncated(data, ds, str(p))
    except DicomReadError as exc:
        return exc.message
    return None
