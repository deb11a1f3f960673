"""The allocator settings of one-shot processes (plancheck.allocator): they take effect (a freed
large array's memory is reused without new page faults) and step aside for the user's own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

GLIBC = bool(getattr(os, "confstr", None)) and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")

# Three 16 MB arrays allocated, touched and freed, three times over; the page faults of the
# last round counted. glibc's defaults give part of the freed memory back to the system (and
# map some arrays afresh), so the last round faults pages in again; kept memory is reused.
_PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from plancheck.allocator import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
    def round_():
        arrays = [np.ones(2 * 1024 * 1024) for _ in range(3)]
        del arrays
    round_(); round_()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    round_()
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _probe(mode: str, **env: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env})
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc's")
def test_freed_memory_is_reused_without_page_faults() -> None:
    applied, tuned_faults = _probe("tuned")
    assert applied
    _, default_faults = _probe("default")
    pages = 3 * 16 * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE")
    assert default_faults >= pages // 50  # the premise: with glibc's defaults pages fault in again
    assert tuned_faults <= pages // 500


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc's")
def test_the_users_own_glibc_settings_are_kept() -> None:
    applied, faults = _probe("tuned", MALLOC_TRIM_THRESHOLD_="131072")
    assert not applied
