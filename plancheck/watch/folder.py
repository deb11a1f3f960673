"""A watched export folder: check each patient's treatment once its export is complete and stable.

Planning systems export to a (network) folder file by file, sometimes in pieces and in any
order. :class:`ExportFolder` is fed the paths that changed (by a file-system observer,
:mod:`plancheck.watch.observer`, and by full rescans) and, on each :meth:`~ExportFolder.step`:

1. **stable files**: a file is taken once its size and modification time have not changed
   for ``settle_s`` seconds *and* it is a whole DICOM object (its element structure reaches
   its end: a file still being copied is not); it is then indexed by its header
   (:func:`plancheck.dicom.store.index_objects`); a file that disappears leaves the index;
2. **treatments**: the indexed objects are grouped as the receiver groups them
   (:func:`plancheck.dicom.store.group_treatments`, :func:`~plancheck.dicom.store.treatment_checks`:
   every plan of a patient in one frame of reference, alternative plans as separate
   treatments, the case file's ``courses:`` if its folder has one);
3. **checks**: a treatment whose folders have been quiet for ``settle_s`` seconds (no
   unstable file in them) and that is complete (every course has its structure set and
   doses) is checked, once per version (:class:`plancheck.analysis.treatment_versions.TreatmentChecker`),
   into ``REPORTS/<patient key>/<treatment id>/<time>_<version>/``. One still incomplete after
   ``incomplete_after_s`` quiet seconds is recorded once as ERROR naming what is missing,
   so an export that stays partial is not silently ignored; when the missing file arrives,
   the new version is checked.

Restarts: the version folders are the state. After a restart every file is indexed again
and a version that has a folder is not checked again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from plancheck.analysis.check_treatment import read_case, selection_for
from plancheck.model.case_files import find_treatment_case
from plancheck.dicom.store import (
    ObjectInfo, TreatmentCheck, TreatmentGroup, group_treatments, incomplete_reason, index_objects, treatment_checks,
)
from plancheck.errors import PlancheckError
from plancheck.protocol.loader import Protocol
from plancheck.analysis.treatment_versions import CheckRecord, TreatmentChecker

__all__ = ["ExportFolder", "WatchOptions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchOptions:
    """Settings of a watched folder.

    Parameters
    ----------
    settle_s
        Seconds a file must stay unchanged (and its treatment's folders quiet) before it is used.
    incomplete_after_s
        Quiet seconds after which a treatment that is still incomplete is recorded as ERROR.
    formats
        Report formats.
    isolate
        Check each treatment in a worker process of its own (within the default time and
        memory limits of :class:`plancheck.analysis.processes.JobLimits`; a crash cannot stop the watch).
    """

    settle_s: float = 5.0
    incomplete_after_s: float = 600.0
    formats: tuple[str, ...] = ("json", "html")
    isolate: bool = True


@dataclass
class _FileState:
    size: int
    mtime_ns: int
    seen: float  # when this size and time were first seen
    indexed: bool = False
    waiting_reason: str = ""


class ExportFolder:
    """The state of a watched folder (thread-safe: :meth:`notify` may be called from an
    observer thread while :meth:`step` runs in another).

    Parameters
    ----------
    root
        The folder the planning system exports to.
    reports_dir
        Where reports go (must not be inside ``root``).
    protocol
        The resolved protocol.
    options
        :class:`WatchOptions`.
    """

    def __init__(self, root: str | os.PathLike[str], reports_dir: str | os.PathLike[str], protocol: Protocol,
                 options: WatchOptions = WatchOptions()) -> None:
        self.root = Path(root).resolve()
        self.options = options
        self.records: list[CheckRecord] = []
        self.checker = TreatmentChecker(Path(reports_dir), protocol, formats=options.formats,
                                        on_record=self.records.append, isolate=options.isolate)
        self._lock = threading.Lock()
        self._dirty: set[Path] = set()
        self._files: dict[Path, _FileState] = {}
        self._objects: dict[str, ObjectInfo] = {}
        self._uids_of: dict[Path, str] = {}
        self._changed_dirs: dict[Path, float] = {}
        self._decided: dict[str, tuple] = {}  # check id -> signature of what was decided on
        self._needs_grouping = False

    # ------------------------------------------------------------------ input

    def notify(self, path: str | os.PathLike[str]) -> None:
        """A path was created, changed, moved here or deleted (an observer event)."""
        p = Path(path)
        try:
            relative = p.relative_to(self.root)
        except ValueError:
            return
        if any(part.startswith(".") for part in relative.parts):
            return  # hidden files: temporary names of copy tools
        with self._lock:
            self._dirty.add(p)

    def scan(self) -> int:
        """Look at every file under the root again (at start, and now and then in case an
        event was missed). Returns the number of files found."""
        found = [p for p in self.root.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(self.root).parts)]
        with self._lock:
            known = set(self._files)
            self._dirty.update(found)
            self._dirty.update(known - set(found))  # vanished files
        return len(found)

    # ------------------------------------------------------------------ work

    def step(self, now: float | None = None) -> list[CheckRecord]:
        """Take the files that became stable, then check the treatments that are ready.
        Returns the records of the checks made."""
        now = time.monotonic() if now is None else now
        self._settle(now)
        if not self._needs_grouping:
            return []
        return self._check_ready(now)

    def _settle(self, now: float) -> None:
        with self._lock:
            dirty = sorted(self._dirty)
        for path in dirty:
            try:
                st = path.stat()
            except OSError:  # deleted (or moved away)
                with self._lock:
                    self._dirty.discard(path)
                    self._files.pop(path, None)
                    uid = self._uids_of.pop(path, None)
                    if uid is not None and self._objects.get(uid, None) is not None \
                            and self._objects[uid].path == path:
                        del self._objects[uid]
                        self._needs_grouping = True
                continue
            state = self._files.get(path)
            if state is None or (state.size, state.mtime_ns) != (st.st_size, st.st_mtime_ns):
                self._files[path] = _FileState(st.st_size, st.st_mtime_ns, now)
                with self._lock:
                    self._changed_dirs[path.parent] = max(self._changed_dirs.get(path.parent, 0.0), now)
                continue
            if now - state.seen < self.options.settle_s:
                continue
            reason = incomplete_reason(path)
            if reason is not None and reason != "not a DICOM file":
                if reason != state.waiting_reason:
                    # the file's name only: the folders of an export are often named after the patient
                    log.info("%s: waiting, not a whole DICOM object yet (%s)", path.name, reason)
                    state.waiting_reason = reason
                state.seen = now  # look again after another settle period
                continue
            with self._lock:
                self._dirty.discard(path)
            self._index(path)

    def _index(self, path: Path) -> None:
        result = index_objects(path)
        state = self._files[path]
        state.indexed = True
        old = self._uids_of.pop(path, None)
        if old is not None and old in self._objects and self._objects[old].path == path:
            del self._objects[old]
        for info in result.objects:
            self._objects[info.sop_instance_uid] = info
            self._uids_of[path] = info.sop_instance_uid
        self._needs_grouping = True

    def _quiet_since(self, files: Iterable[Path]) -> float:
        with self._lock:
            dirs = {p.parent for p in files}
            unstable = any(p.parent in dirs for p in self._dirty)
            last = max((self._changed_dirs.get(d, 0.0) for d in dirs), default=0.0)
        return float("inf") if unstable else last

    def _signature(self, check: TreatmentCheck, case_file: str | None) -> tuple:
        """What a decision on a check depends on: its objects' files and times, its courses, the
        patient's plans in other frames (which leave its composite limits NOT EVALUATED), its
        case file and that file's size and time (an edited case file is a new version)."""
        files = tuple(sorted((o.sop_instance_uid, str(o.path), self._files[o.path].mtime_ns if o.path in self._files
                              else 0) for o in check.objects))
        elsewhere = tuple(sorted(p.sop_instance_uid for p in check.treatment.elsewhere))
        try:
            case_stat = (os.stat(case_file).st_size, os.stat(case_file).st_mtime_ns) if case_file else None
        except OSError:
            case_stat = None
        return files, check.choice.courses if check.choice else (), check.error, case_file, case_stat, elsewhere

    def _check_ready(self, now: float) -> list[CheckRecord]:
        self._needs_grouping = False
        done: list[CheckRecord] = []
        for treatment in group_treatments(list(self._objects.values())):
            case_file, selection, case_error = self._case_of(treatment)
            for check in treatment_checks(treatment, selection, alternatives="variants"):
                signature = self._signature(check, case_file)
                if self._decided.get(check.check_id) == signature:
                    continue
                quiet_since = self._quiet_since(check.files)
                if quiet_since == float("inf") or now - quiet_since < self.options.settle_s:
                    self._needs_grouping = True  # look again when its folders are quiet
                    continue
                if case_error is not None:
                    check = TreatmentCheck(check.treatment, check.choice, case_error)
                elif check.error is None and not check.complete:
                    if now - quiet_since < self.options.incomplete_after_s:
                        self._needs_grouping = True  # wait for the missing files, or give up later
                        continue
                    log.warning("treatment %s (%s) still incomplete after %g s: %s", check.check_id,
                                " + ".join(g.plan.label for g in check.courses), self.options.incomplete_after_s,
                                "; ".join(check.missing))
                    check = TreatmentCheck(check.treatment, check.choice,
                                           f"the export is still incomplete after {self.options.incomplete_after_s:g} s "
                                           f"without changes: {'; '.join(check.missing)}")
                self._decided[check.check_id] = signature
                record = self.checker.check(check, case_file=case_file)
                if record is not None:
                    done.append(record)
        return done

    def _case_of(self, treatment: TreatmentGroup):
        found = find_treatment_case([g.plan.path for g in treatment.plans], [
            o.path for o in (*(o for g in treatment.plans for o in (g.plan, *g.structure_sets, *g.doses)),
                             *treatment.structure_sets, *treatment.unplaced_doses, *treatment.images)])
        if len(found) > 1:
            return None, None, f"its plans lie next to {len(found)} different case files ({', '.join(found)}); keep one"
        if not found:
            return None, None, None
        try:
            return found[0], selection_for(read_case(found[0]), found[0]), None
        except PlancheckError as exc:
            return found[0], None, str(exc)
