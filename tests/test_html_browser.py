"""The HTML report in a real browser: headless Chromium renders it offline.

``--dump-dom`` gives the DOM after rendering: the title, the summary numbers, every rule id
and the numbers of the ``data-*`` cells are compared with the JSON report of the same check;
``--screenshot`` must give a PNG. The browser runs with networking features off and a fresh
profile, on a ``file://`` URL, so anything the page tried to fetch would simply be missing.

Skipped (with the reason) when ``chromium`` is not installed; CI installs it (``.ci/run``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from plancheck.dicom import read_export
from plancheck.report import check_html, check_json
from plancheck.rules.runner import protocol_for_check, run_check
from test_reports import PATIENT_ID, PLANS, SAMPLE, write_protocols

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def chromium(profile: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, timeout=timeout)


class _Cells(HTMLParser):
    """Collects the title, elements with ``data-field``/``data-summary`` and their text."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.cells: list[dict] = []
        self.summary: dict[str, str] = {}
        self.svgs = 0
        self._stack: list[tuple[str, dict | None, str | None]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cell = {"attrs": a, "text": ""} if "data-field" in a else None
        if cell is not None:
            self.cells.append(cell)
        if tag == "svg":
            self.svgs += 1
        if tag not in VOID:
            self._stack.append((tag, cell, a.get("data-summary")))

    def handle_endtag(self, tag):
        while self._stack:
            t, _, _ = self._stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for t, cell, summary in self._stack:
            if cell is not None:
                cell["text"] += data
            if summary is not None:
                self.summary[summary] = self.summary.get(summary, "") + data
        if [t for t, _, _ in self._stack] == ["html", "head", "title"]:
            self.title += data


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("browser")
    protocols = write_protocols(folder / "protocols")
    report = run_check(read_export(SAMPLE), protocol_for_check(str(protocols["test"])))
    page = folder / "report.html"
    page.write_text(check_html(report), encoding="utf-8")
    doc = json.loads(check_json(report))
    proc = chromium(folder / "profile", "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    dom = proc.stdout.decode("utf-8")
    parser = _Cells()
    parser.feed(dom)
    return {"folder": folder, "page": page, "doc": doc, "dom": dom, "cells": parser}


def test_the_page_renders_with_its_title_and_header(rendered) -> None:
    cells, dom = rendered["cells"], rendered["dom"]
    assert cells.title == f"plancheck: {', '.join(PLANS)} (test-protocol)"
    assert "PLANCHECK, SAMPLE" in dom and PATIENT_ID in dom
    assert 'id="verdict">NOT FULLY EVALUATED<' in dom


def test_summary_numbers_equal_the_json(rendered) -> None:
    summary = {k: int(v) for k, v in rendered["cells"].summary.items()}
    expected = dict(rendered["doc"]["summary"], not_applicable=len(rendered["doc"]["not_applicable"]))
    assert summary == expected


def test_every_rule_id_is_on_the_page(rendered) -> None:
    dom = rendered["dom"]
    for r in rendered["doc"]["results"]:
        assert f'data-rule-id="{r["rule_id"]}"' in dom
    for n in rendered["doc"]["not_applicable"]:
        assert f'data-not-applicable="{n["rule_id"]}"' in dom


def test_numeric_cells_equal_the_json_values(rendered) -> None:
    doc, cells = rendered["doc"], rendered["cells"].cells
    measured = {int(c["attrs"]["data-result-index"]): c for c in cells if c["attrs"].get("data-field") == "measured"}
    assert sorted(measured) == list(range(len(doc["results"])))
    for i, r in enumerate(doc["results"]):
        cell = measured[i]
        assert cell["attrs"]["data-rule-id"] == r["rule_id"]
        if r["measured"] is None:
            assert cell["attrs"]["data-value"] == "" and cell["text"].strip() == "—"
        else:
            assert float(cell["attrs"]["data-value"]) == r["measured"]  # exact: the same float
            shown = float(cell["text"].split()[0])  # rounded for people
            assert shown == pytest.approx(r["measured"], rel=5e-3, abs=5e-3)
    statuses = [c for c in cells if c["attrs"].get("data-field") == "status"]
    assert [c["attrs"]["data-value"] for c in statuses] == [r["status"] for r in doc["results"]]
    plans = {p["label"]: p for p in doc["plans"]}
    plan_cells = [c for c in cells if "data-plan-label" in c["attrs"]]
    assert len(plan_cells) == 6 * len(plans)
    for c in plan_cells:
        expected = plans[c["attrs"]["data-plan-label"]][c["attrs"]["data-field"]]
        if isinstance(expected, (int, float)):
            assert float(c["attrs"]["data-value"]) == expected
        else:
            assert c["attrs"]["data-value"] == expected


def test_dvh_plots_are_rendered_inline(rendered) -> None:
    assert rendered["cells"].svgs == 4
    assert rendered["dom"].count('class="dvh-curve"') >= 6


def test_screenshot_is_a_png(rendered) -> None:
    shot = rendered["folder"] / "report.png"
    proc = chromium(rendered["folder"] / "profile-shot", "--hide-scrollbars", "--window-size=1400,3000",
                    f"--screenshot={shot}", rendered["page"].as_uri())
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 3000)
    assert len(data) > 50_000  # a rendered page, not a blank one
