"""Run a test's script in a fresh interpreter: forking is refused while other threads run (the
test runner's workers have some), so the tests of forked processes run their code there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def run_fresh(script: str, **extra_env: str) -> dict:
    """Run ``script`` in a fresh interpreter (one thread: forking allowed; ``PLANCHECK_THREADS``
    unset unless given) and return its last stdout line, parsed as JSON."""
    env = {**{k: v for k, v in os.environ.items() if k != "PLANCHECK_THREADS"}, **extra_env}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
