"""``plancheck watch``: check each patient's treatment as the planning system exports it to a folder.

* :class:`ExportFolder` decides when an export is complete and stable and checks each
  treatment version once (:mod:`plancheck.watch.folder`);
* :func:`watch` runs it with a file-system observer (watchdog: native events, or polling
  for network file systems) until asked to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from plancheck.protocol.loader import Protocol
from plancheck.watch.folder import ExportFolder, WatchOptions

__all__ = ["ExportFolder", "WatchOptions", "watch"]

log = logging.getLogger(__name__)


def watch(root: str | Path, reports_dir: str | Path, protocol: Protocol, options: WatchOptions = WatchOptions(), *,
          stop: threading.Event, poll: bool = False, poll_interval_s: float = 2.0, step_s: float = 0.5,
          rescan_s: float = 60.0) -> ExportFolder:
    """Watch ``root`` until ``stop`` is set; returns the folder state (its ``records``).

    Parameters
    ----------
    poll
        Poll the folder instead of waiting for native events (network file systems).
    poll_interval_s
        Seconds between two polls.
    step_s
        Seconds between two looks at the files that changed.
    rescan_s
        Seconds between two full rescans (a safety net for missed events).
    """
    from plancheck.analysis.check_treatment import warm_up
    from plancheck.watch.observer import start_observer

    folder = ExportFolder(root, reports_dir, protocol, options)
    if options.isolate:
        folder.checker.start_worker_server()
    else:
        warm_up()
    observer = start_observer(folder.root, folder.notify, poll=poll, poll_interval_s=poll_interval_s)
    try:
        found = folder.scan()
        log.info("watching %s (%s); %d file(s) there; reports in %s", folder.root,
                 "polling" if poll else "file-system events", found, reports_dir)
        last_scan = time.monotonic()
        while not stop.is_set():
            folder.step()
            if time.monotonic() - last_scan > rescan_s:
                folder.scan()
                last_scan = time.monotonic()
            stop.wait(step_s)
    finally:
        observer.stop()
        observer.join(timeout=10)
    return folder
