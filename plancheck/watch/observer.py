"""File-system events for a watched export folder (the only module importing watchdog).

watchdog's native observer (inotify on Linux, FSEvents on macOS, ReadDirectoryChangesW on
Windows) reports changes as they happen; on network file systems (SMB, NFS) those events
do not arrive, so ``poll=True`` uses its polling observer, which compares directory
snapshots every ``poll_interval_s`` seconds. Either way :class:`plancheck.watch.folder.ExportFolder`
also rescans the folder now and then, so a missed event delays a check but never loses one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

__all__ = ["start_observer"]


class _Forward(FileSystemEventHandler):
    def __init__(self, notify: Callable[[str], None]) -> None:
        self.notify = notify

    #: Events that say a file's content or place changed (not "opened" or "closed without
    #: writing": plancheck's own reads of the files would feed back as changes).
    CHANGES = frozenset({"created", "modified", "moved", "deleted", "closed"})

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in self.CHANGES:
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self.notify(path if isinstance(path, str) else path.decode(errors="surrogateescape"))


def start_observer(root: Path, notify: Callable[[str], None], *, poll: bool = False,
                   poll_interval_s: float = 2.0):
    """Start watching ``root`` recursively; ``notify(path)`` is called (in the observer's
    thread) for every file created, changed, moved (both ends) or deleted.

    Returns
    -------
    object
        The running observer; call ``stop()`` then ``join()`` on it.
    """
    observer = PollingObserver(timeout=poll_interval_s) if poll else Observer()
    observer.schedule(_Forward(notify), str(root), recursive=True)
    observer.daemon = True
    observer.start()
    return observer
