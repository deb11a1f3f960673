"""One-shot commands end without the interpreter's teardown (:func:`plancheck.cli.main.run`):
their whole output still arrives, with the exit code ``main`` returns, also through a pipe
that the reader closes early; a long-running command is not marked one-shot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from plancheck.cli.main import build_parser

SAMPLE = Path(__file__).resolve().parent.parent / "sample_dicom"


def _plancheck(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plancheck", *args], capture_output=True, timeout=300, **kw)


def test_the_whole_report_arrives_with_the_exit_code(tmp_path: Path) -> None:
    out = _plancheck("check", "--format", "json", str(SAMPLE))
    report = json.loads(out.stdout)  # complete: the last byte was flushed before the exit
    # exit code 1 when a rule FAILED or ERRORed, else 0 (plancheck.cli.exit_codes); nothing on stderr
    summary = report["summary"]
    assert out.returncode == (1 if summary["fail"] or summary["error"] else 0) and out.stderr == b""
    assert sum(summary.values()) > 100
    html = tmp_path / "report.html"
    written = _plancheck("check", "--format", "html", "--output", str(html), str(SAMPLE))
    assert written.returncode == out.returncode and html.read_text(encoding="utf-8").rstrip().endswith("</html>")


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "plancheck", "dvh", str(SAMPLE)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=300)
    assert b"Traceback" not in err


def test_only_the_one_shot_commands_skip_the_teardown() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # every subcommand's parser
    one_shot = {name for name, sub in commands.items() if sub.get_default("one_shot")}
    assert one_shot == {"check", "dvh"}
    assert {"serve", "watch", "batch"} <= set(commands)
