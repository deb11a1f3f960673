"""The DICOM Storage SCP of ``plancheck serve`` (the only module importing pynetdicom).

Associations are served by pynetdicom, one thread each. The C-STORE handler only checks the
size, validates and stores the object (:mod:`plancheck.dicom.store`); when an association is
released, the objects it stored are handed to the :class:`~plancheck.net.checks.CheckWorker`
thread, which checks every treatment (all plans of a patient in one frame of reference) the
association completed or changed, once per version.

Robustness
----------
* **Connections that never associate.** A TCP connection that has not sent its
  A-ASSOCIATE-RQ is *pending*; a pending connection that has sent nothing yet is *silent*.
  At most ``max_pending_per_peer`` silent connections per peer address and ``max_pending``
  in all: one more closes the oldest silent one (of that peer, or of all). A connection
  whose request has arrived (bytes waiting, or read by pynetdicom) is never closed for this:
  a sender on the same address as a flood of reconnecting idle connections keeps its
  connection. A pending connection is closed after ``association_timeout_s``. Pending
  connections do not take association slots (``max_associations`` counts associations),
  so idle connections cannot lock a real sender out. An association idle for
  ``idle_timeout_s`` is aborted.
* **Objects being received** are written as they arrive into the store's own
  ``.incoming/`` folder (not the system's temporary folder), counted in its budget, and
  limited while they arrive: past ``max_object_bytes`` (or the store budget, or the free
  disk reserve) nothing more is written and the C-STORE is answered 0xA700. The files of an
  aborted association are removed when it ends, and the folder is emptied on start.
* **Objects are validated on receipt** with the readers ``plancheck check`` uses (Pixel
  Data length, required RT attributes: :func:`plancheck.dicom.store.validate_content`); an
  object that fails is quarantined and answered with a failure status, so it can never
  break later checks of its treatment.

DIMSE statuses of a C-STORE response (PS3.4 Table B.2-1; PS3.7 Annex C):

========  ======================================================================
0x0000    Success: stored (or an identical copy was already stored)
0xA700    Refused, out of resources: object larger than ``--max-object-mb``, store
          budget ``--max-store-gb`` or free disk space exhausted, write failure
0xA900    Error, data set does not match SOP class: SOP Class/Instance UID differ
          from the request, Study Instance UID missing (object quarantined)
0xC210    Error, cannot understand: corrupt or truncated data set (quarantined)
0xC211    Error, cannot understand: unexpected failure in the handler
0x0122    Refused, SOP class not supported (only if a peer sends on a context
          whose class plancheck does not store)
========  ======================================================================

Storage classes plancheck does not use are not negotiated (the presentation context is
rejected with "abstract syntax not supported"); a calling AE title outside the allow-list
gets an association rejection ("calling AE title not recognised"), as does a called AE
title other than the server's.

References
----------
DICOM PS3.4 Annex B (Storage Service Class), PS3.7 §9.1.1 (C-STORE), PS3.8 §9.3.4
(A-ASSOCIATE-RJ reasons).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import os
import select
import socket
import tempfile
from collections import OrderedDict

from pynetdicom import AE, _config, dimse_messages, evt
from pynetdicom.sop_class import Verification

from plancheck.dicom.store import (
    STORABLE_SOP_CLASSES, TRANSFER_SYNTAXES_IMAGE, TRANSFER_SYNTAXES_RT, ObjectStore, safe_uid, status_dataset,
    validate_received,
)
from plancheck.errors import DicomConformanceError, DicomReadError, StorageLimitError, UsageError
from plancheck.net.checks import CheckRecord, CheckWorker
from plancheck.parallel import available_cpus
from plancheck.protocol.loader import Protocol

__all__ = ["ReceiverConfig", "Receiver", "STATUS", "MAX_DEFAULT_PARALLEL_CHECKS", "default_parallel_checks"]

log = logging.getLogger(__name__)

#: DIMSE status codes used by the receiver.
STATUS = {
    "success": 0x0000,
    "out_of_resources": 0xA700,
    "does_not_match": 0xA900,
    "cannot_understand": 0xC210,
    "handler_failure": 0xC211,
    "sop_class_not_supported": 0x0122,
}


_PRINTABLE = re.compile(r"[^\x20-\x7e]")


MAX_DEFAULT_PARALLEL_CHECKS = 2
"""Checks the receiver runs at the same time by default at most."""


def default_parallel_checks() -> int:
    """Checks run at the same time by default: the CPUs this process may use, at most
    :data:`MAX_DEFAULT_PARALLEL_CHECKS` (exports that arrive together are checked together
    instead of one after the other; measured with ``benchmarks/pipeline_load.py``)."""
    return max(1, min(available_cpus(), MAX_DEFAULT_PARALLEL_CHECKS))


def _shown(value: Any, limit: int = 16) -> str:
    """An AE title or address from the wire, safe to log (printable ASCII, bounded)."""
    return _PRINTABLE.sub("?", str(value).strip())[:limit]


@dataclass(frozen=True)
class ReceiverConfig:
    """Settings of the receiver.

    Parameters
    ----------
    store_dir, reports_dir
        Where received objects and reports go.
    protocol
        The resolved protocol to check plans against.
    ae_title
        The server's AE title; associations must call it.
    bind, port
        Listening address; port 0 picks a free port (tests).
    allowed_calling_aes
        If not empty, only these calling AE titles may associate.
    max_object_bytes, max_store_bytes, min_free_bytes
        Size of one object; budget of the store folder; free space to keep on its disk.
    formats
        Report formats.
    max_associations
        Concurrent associations.
    max_pending, max_pending_per_peer
        TCP connections that have not sent anything yet, in all and per peer address; one
        more closes the oldest of them.
    association_timeout_s
        Seconds a connection may take to request an association (ACSE timeout).
    idle_timeout_s
        Seconds an association may stay silent before it is aborted (network timeout).
    isolate_checks
        Check each treatment in a worker process of its own (default): checks run beside the
        network threads without sharing their interpreter lock, within time and memory limits,
        and a crashing check cannot take the receiver down.
    parallel_checks
        Checks run at the same time at most (each in its own worker process with
        ``isolate_checks``); None: :func:`default_parallel_checks`.
    """

    store_dir: Path
    reports_dir: Path
    protocol: Protocol
    ae_title: str = "PLANCHECK"
    bind: str = "127.0.0.1"
    port: int = 11112
    allowed_calling_aes: tuple[str, ...] = ()
    max_object_bytes: int = 1024 * 1024 * 1024
    max_store_bytes: int = 50 * 1024**3
    min_free_bytes: int = 256 * 1024 * 1024
    formats: tuple[str, ...] = ("json", "html")
    max_associations: int = 10
    max_pending: int = 16
    max_pending_per_peer: int = 4
    association_timeout_s: float = 5.0
    idle_timeout_s: float = 60.0
    isolate_checks: bool = True
    parallel_checks: int | None = None

    def __post_init__(self) -> None:
        title = self.ae_title.strip()
        if not 1 <= len(title) <= 16 or _PRINTABLE.search(title) or "\\" in title:
            raise UsageError(f"AE title {self.ae_title!r}: 1 to 16 printable characters, no backslash")
        for ae in self.allowed_calling_aes:
            if not 1 <= len(ae.strip()) <= 16:
                raise UsageError(f"calling AE title {ae!r}: 1 to 16 characters")
        if self.max_object_bytes <= 0 or self.max_store_bytes <= 0:
            raise UsageError("size limits must be positive")
        if min(self.max_associations, self.max_pending, self.max_pending_per_peer) < 1:
            raise UsageError("connection limits must be at least 1")
        if not (self.association_timeout_s > 0 and self.idle_timeout_s > 0):
            raise UsageError("timeouts must be positive")


@dataclass
class _AssocState:
    paths: set[Path] = field(default_factory=set)
    received: set[str] = field(default_factory=set)
    stored: int = 0
    refused: int = 0


class _IncomingFile:
    """A received object being written into the store's ``.incoming/`` folder, the limits
    checked before every write (pynetdicom writes P-DATA fragments here as they arrive).

    Quacks like the ``NamedTemporaryFile`` pynetdicom expects: ``write``, ``file.flush``,
    ``name``, ``close``. Past a limit it stops writing (the bytes are received and dropped)
    and remembers why, and the C-STORE handler answers "out of resources".
    """

    def __init__(self, store: ObjectStore, owner: int) -> None:
        fd, name = tempfile.mkstemp(prefix="rx-", suffix=".part", dir=store.incoming)
        self._fh = os.fdopen(fd, "wb")
        self.name = name
        self.file = self
        self.store = store
        self.owner = owner
        self.received = 0
        self.reserved = 0
        self.refused: str | None = None
        self.closed = False

    def write(self, data: bytes) -> int:
        size = len(data)
        self.received += size
        if self.refused is None:
            try:
                self.store.reserve_incoming(size, self.received)
            except StorageLimitError as exc:
                self.refused = exc.message
                self._fh.truncate(0)  # give the space back at once
                self._fh.seek(0)
                self.store.release_incoming(self.reserved)
                self.reserved = 0
            else:
                self.reserved += size
                self._fh.write(data)
        return size

    def flush(self) -> None:
        if not self._fh.closed:
            self._fh.flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._fh.close()
            self.store.release_incoming(self.reserved)
            self.reserved = 0

    def discard(self) -> None:
        """Close and delete (an association ended before the object was handled)."""
        self.close()
        Path(self.name).unlink(missing_ok=True)


_ORIGINAL_TEMPFILE = dimse_messages.NamedTemporaryFile
_SERVERS: dict[int, Receiver] = {}
_SERVERS_LOCK = threading.Lock()


def _incoming_file(*args: Any, **kwargs: Any) -> Any:
    """pynetdicom's temporary-file factory for received data sets: a bounded file in the
    store of the receiver serving this association (the calling thread is the association's
    DUL thread); pynetdicom's default for any other use."""
    assoc = getattr(threading.current_thread(), "assoc", None)
    server = getattr(assoc, "_server", None)
    with _SERVERS_LOCK:
        receiver = _SERVERS.get(id(server)) if server is not None else None
    if receiver is None:
        return _ORIGINAL_TEMPFILE(*args, **kwargs)
    return receiver._open_incoming(assoc)


def _has_spoken(assoc: Any) -> bool:
    """True once a pending connection has sent something: its bytes wait in the socket, or
    pynetdicom's state machine has left Sta2 ("awaiting A-ASSOCIATE-RQ", PS3.8 9.2) because
    it read them. A connection whose state cannot be read counts as silent."""
    try:
        if assoc.dul.state_machine.current_state not in ("Sta1", "Sta2"):
            return True
        sock = assoc.dul.socket.socket
        if sock is None:
            return False
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (AttributeError, OSError, ValueError):
        return False


class Receiver:
    """A running Storage SCP with its check thread.

    Use :meth:`start` / :meth:`stop`, or as a context manager. Thread-safe.

    Examples
    --------
    >>> with Receiver(ReceiverConfig(store, reports, protocol, port=0)) as rx:  # doctest: +SKIP
    ...     print(rx.port)
    """

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.store = ObjectStore(config.store_dir, max_object_bytes=config.max_object_bytes,
                                 max_store_bytes=config.max_store_bytes, min_free_bytes=config.min_free_bytes)
        self.records: list[CheckRecord] = []
        self._records_changed = threading.Condition()
        self.worker = CheckWorker(Path(config.reports_dir), config.protocol, formats=config.formats,
                                  on_record=self._on_record, store_dir=self.store.studies,
                                  isolate=config.isolate_checks,
                                  parallel_checks=config.parallel_checks or default_parallel_checks())
        self._states: dict[int, _AssocState] = {}
        self._orphans = _AssocState()
        self._lock = threading.Lock()
        self._pending: OrderedDict[int, tuple[str, Any]] = OrderedDict()  # id(assoc) -> (peer, assoc)
        self._incoming: dict[str, _IncomingFile] = {}  # path -> file being received
        self._patched = False
        self._server = None
        self._ae: AE | None = None
        self._chunked_before: bool | None = None

    # ------------------------------------------------------------------------- lifecycle

    def _make_ae(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        ae.require_called_aet = True
        ae.require_calling_aet = list(self.config.allowed_calling_aes)
        # pynetdicom counts connections that have not associated yet as associations: leave room for
        # the pending ones (bounded by _on_conn_open) so they can never take a real sender's slot
        ae.maximum_associations = self.config.max_associations + self.config.max_pending
        ae.acse_timeout = self.config.association_timeout_s
        ae.dimse_timeout = 120
        ae.network_timeout = self.config.idle_timeout_s
        ae.add_supported_context(Verification)
        for sop_class, prefix in STORABLE_SOP_CLASSES.items():
            syntaxes = TRANSFER_SYNTAXES_IMAGE if prefix in ("CT", "MR") else TRANSFER_SYNTAXES_RT
            ae.add_supported_context(sop_class, syntaxes)
        return ae

    def start(self) -> tuple[str, int]:
        """Start listening and the check thread; returns the bound (host, port).

        Raises
        ------
        UsageError
            The address cannot be bound (port in use, no permission).
        """
        # Received data sets go to a temporary file, not memory, so a large object or many
        # at once cannot exhaust RAM (a process-wide pynetdicom setting, restored by stop()).
        self._chunked_before = _config.STORE_RECV_CHUNKED_DATASET
        _config.STORE_RECV_CHUNKED_DATASET = True
        self._ae = self._make_ae()
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]
        try:
            self._server = self._ae.start_server((self.config.bind, self.config.port), block=False,
                                                 evt_handlers=handlers)
        except OSError as exc:
            _config.STORE_RECV_CHUNKED_DATASET = self._chunked_before
            raise UsageError(f"cannot listen on {self.config.bind}:{self.config.port}: {exc.strerror or exc}") from exc
        # received data sets are written into this store's .incoming folder, with the limits applied
        # as they arrive (pynetdicom's factory is process-wide: it is routed per server)
        with _SERVERS_LOCK:
            _SERVERS[id(self._server)] = self
            dimse_messages.NamedTemporaryFile = _incoming_file
        self.worker.start()
        host, port = self._server.server_address[:2]
        log.info("listening on %s:%d as AE %s; store %s; reports %s", host, port, self.config.ae_title,
                 self.config.store_dir, self.config.reports_dir)
        return host, port

    @property
    def port(self) -> int:
        assert self._server is not None, "the receiver is not started"
        return int(self._server.server_address[1])

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting associations, let the active ones finish (up to ``timeout`` s, then
        abort them), run the checks already queued, and stop."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.shutdown()
        with self._lock:
            pending = [assoc for _, assoc in self._pending.values()]
        for assoc in pending:
            self._close_pending(assoc)
        deadline = time.monotonic() + timeout
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in server.active_associations:
            log.warning("aborting association from AE %s at shutdown", _shown(assoc.requestor.ae_title))
            assoc.abort()
        if not self.worker.stop(max(1.0, deadline - time.monotonic())):
            log.warning("checks still running at shutdown were abandoned")
        if self._chunked_before is not None:
            _config.STORE_RECV_CHUNKED_DATASET = self._chunked_before
        with _SERVERS_LOCK:
            _SERVERS.pop(id(server), None)
            if not _SERVERS:
                dimse_messages.NamedTemporaryFile = _ORIGINAL_TEMPFILE
        with self._lock:
            left = list(self._incoming.values())
            self._incoming.clear()
        for incoming in left:
            incoming.discard()
        log.info("receiver stopped")

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------- checks

    def _on_record(self, record: CheckRecord) -> None:
        with self._records_changed:
            self.records.append(record)
            self._records_changed.notify_all()

    def wait_for_records(self, count: int, timeout: float = 30.0) -> list[CheckRecord]:
        """Wait until at least ``count`` checks have finished in total; returns the records."""
        deadline = time.monotonic() + timeout
        with self._records_changed:
            while len(self.records) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._records_changed.wait(left)
            return list(self.records)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no association is active and no check is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = bool(self._states)
            if not busy and self.worker.idle():
                return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------------------- handlers

    # ------------------------------------------------------------------------- connections

    @staticmethod
    def _peer(assoc: Any) -> str:
        try:
            return str(assoc.requestor.address)
        except AttributeError:
            return "?"

    def _close_pending(self, assoc: Any) -> None:
        """Close a connection that has not associated, and end its thread at once (it waits
        for the A-ASSOCIATE-RQ on its DUL queue: an empty item ends the wait as a timeout would)."""
        try:
            sock = assoc.dul.socket.socket
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass
        try:
            assoc.dul.to_user_queue.put(None)
        except AttributeError:
            pass

    def _on_conn_open(self, event: Any) -> None:
        """A TCP connection: pending until it requests an association; beyond the bounds,
        close the oldest silent pending connection of this peer (or of all)."""
        assoc = event.assoc
        peer = _shown(event.address[0] if getattr(event, "address", None) else self._peer(assoc), 45)
        evicted = []
        with self._lock:
            self._pending[id(assoc)] = (peer, assoc)
            silent = [key for key, (_, a) in self._pending.items() if not _has_spoken(a)]
            same = [key for key in silent if self._pending[key][0] == peer]
            while len(same) > self.config.max_pending_per_peer:
                key = same.pop(0)
                silent.remove(key)
                evicted.append(self._pending.pop(key))
            while len(silent) > self.config.max_pending:
                evicted.append(self._pending.pop(silent.pop(0)))
        for old_peer, old in evicted:
            log.warning("closing a connection from %s that has not requested an association (too many pending)",
                        old_peer)
            self._close_pending(old)

    def _on_requested(self, event: Any) -> None:
        with self._lock:
            self._pending.pop(id(event.assoc), None)

    # ------------------------------------------------------------------------- incoming files

    def _open_incoming(self, assoc: Any) -> _IncomingFile:
        incoming = _IncomingFile(self.store, id(assoc))
        with self._lock:
            self._incoming[incoming.name] = incoming
        return incoming

    def _take_incoming(self, path: str | None) -> _IncomingFile | None:
        if path is None:
            return None
        with self._lock:
            return self._incoming.pop(str(path), None)

    def _discard_incoming_of(self, assoc: Any) -> None:
        with self._lock:
            mine = [f for f in self._incoming.values() if f.owner == id(assoc)]
            for f in mine:
                self._incoming.pop(f.name, None)
        for f in mine:
            f.discard()

    def _state(self, event: Any) -> _AssocState:
        with self._lock:
            return self._states.setdefault(id(event.assoc), _AssocState())

    def _on_established(self, event: Any) -> None:
        self._state(event)
        req = event.assoc.requestor
        log.info("association from %s (calling AE %s) accepted", _shown(req.address, 45), _shown(req.ae_title))

    def _on_rejected(self, event: Any) -> None:
        req = event.assoc.requestor
        log.warning("association from %s (calling AE %s, called AE %s) rejected", _shown(req.address, 45),
                    _shown(req.ae_title), _shown(event.assoc.acceptor.ae_title))

    def _on_echo(self, event: Any) -> int:
        log.info("C-ECHO from AE %s", _shown(event.assoc.requestor.ae_title))
        return STATUS["success"]

    def _on_store(self, event: Any) -> Any:
        try:
            return self._store(event)
        except Exception as exc:  # a bug: the peer gets a failure, the server goes on
            log.error("C-STORE handler failed: %s: %s", type(exc).__name__, exc)
            return status_dataset(STATUS["handler_failure"], "internal error while storing")

    def _store(self, event: Any) -> Any:
        request = event.request
        sop_class = str(request.AffectedSOPClassUID or "")
        sop_instance = str(request.AffectedSOPInstanceUID or "")
        uid = safe_uid(sop_instance)
        state = self._state(event)
        if sop_class not in STORABLE_SOP_CLASSES:
            state.refused += 1
            log.warning("object %s refused: SOP class %s is not stored", uid, safe_uid(sop_class))
            return status_dataset(STATUS["sop_class_not_supported"], "SOP class not stored by plancheck")
        try:
            path = event.dataset_path  # STORE_RECV_CHUNKED_DATASET: a Part 10 file in STORE/.incoming
        except AttributeError:
            path = None
        incoming = self._take_incoming(path)
        if incoming is not None:
            incoming.flush()
            if incoming.refused is not None:
                state.refused += 1
                log.error("object %s refused while it arrived: %s", uid, incoming.refused)
                return status_dataset(STATUS["out_of_resources"], incoming.refused)
        size = Path(path).stat().st_size if path else len(event.encoded_dataset())
        try:
            self.store.check_size(size)
        except StorageLimitError as exc:
            state.refused += 1
            log.error("object %s refused: %s", uid, exc.message)
            return status_dataset(STATUS["out_of_resources"], exc.message)
        data = Path(path).read_bytes() if path else event.encoded_dataset()
        label = f"SOP instance {uid}"
        try:
            obj = validate_received(data, sop_class_uid=sop_class, sop_instance_uid=sop_instance, label=label)
        except (DicomReadError, DicomConformanceError) as exc:
            state.refused += 1
            kept = self.store.quarantine(data, str(exc), sop_instance_uid=sop_instance)
            corrupt = isinstance(exc, DicomReadError)
            log.error("object %s failed validation (%s); %s", uid, exc.message,
                      f"kept aside at {kept}" if kept else "not kept")
            if corrupt:
                return status_dataset(STATUS["cannot_understand"], "corrupt or truncated data set")
            return status_dataset(STATUS["does_not_match"], exc.message)
        try:
            stored = self.store.store(data, obj)
        except StorageLimitError as exc:
            state.refused += 1
            log.error("object %s refused: %s", uid, exc.message)
            return status_dataset(STATUS["out_of_resources"], exc.message)
        except OSError as exc:
            state.refused += 1
            log.error("object %s could not be written: %s", uid, exc.strerror or exc)
            return status_dataset(STATUS["out_of_resources"], "the object could not be written")
        with self._lock:
            state.paths.add(stored.path)
            state.received.add(obj.sop_instance_uid)
            state.stored += 1
        log.debug("stored %s %s in study %s%s", obj.prefix, uid, stored.study_dir.name,
                 " (identical copy already stored)" if stored.duplicate else "")
        return STATUS["success"]

    def _finish(self, event: Any, how: str) -> None:
        self._discard_incoming_of(event.assoc)
        with self._lock:
            self._pending.pop(id(event.assoc), None)
            state = self._states.pop(id(event.assoc), None)
            if state is None:
                return
            if how == "released":
                state.paths |= self._orphans.paths
                state.received |= self._orphans.received
                self._orphans = _AssocState()
            elif state.received:
                self._orphans.paths |= state.paths
                self._orphans.received |= state.received
        log.info("association from AE %s %s: %d object(s) stored, %d refused", _shown(event.assoc.requestor.ae_title),
                 how, state.stored, state.refused)
        if how == "released" and state.received:
            self.worker.submit(state.paths, state.received)
        elif state.received:
            log.warning("association %s: its %d object(s) are kept and will be checked after the next "
                        "released association", how, len(state.received))

    def _on_released(self, event: Any) -> None:
        self._finish(event, "released")

    def _on_aborted(self, event: Any) -> None:
        self._finish(event, "aborted")

    def _on_closed(self, event: Any) -> None:
        self._finish(event, "closed without release")
