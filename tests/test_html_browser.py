"""The HTML report in a real browser: headless Chromium renders it offline, on screen and in print.

Chromium is driven over its DevTools protocol on a pipe (``tests/chromium_cdp.py``): a fresh
profile, networking features off, a ``file://`` URL, so anything the page tried to fetch would
simply be missing.

* The rendered DOM is compared with the JSON report of the same check: the title, the summary
  numbers, every rule id, and the exact numbers of the ``data-*`` cells.
* On a 1400 px wide screen the verdict and the first finding that needs attention are in the
  first screenful, the passed rules are folded, and the page is a fraction of its former
  height (the sample with the built-in protocol was 23 900 px tall before the findings-first
  layout).
* In print (what "Save as PDF" lays out) on A4: the folded lists are open, nothing is wider
  than the page, cards, plots, table rows and the sign-off block are never split across
  pages, table headers repeat; the PDF is printed and its pages counted.
* The screenshots of the user guide (``docs/images/``) are taken here: set
  ``PLANCHECK_DOC_SCREENSHOTS=1`` to write them (otherwise they go to a temporary folder).

Skipped (with the reason) when ``chromium`` is not installed; CI installs it (``.ci/run``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from chromium_cdp import CHROMIUM, Browser
from plancheck.dicom import read_export
from plancheck.model.case import load_case
from plancheck.report import check_html, check_json
from plancheck.rules.runner import protocol_for_check, run_check
from test_reports import PATIENT_ID, PLANS, SAMPLE, write_protocols

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")

REPO = Path(__file__).resolve().parents[1]
DOC_IMAGES = REPO / "docs" / "images"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
GENERATED = dt.datetime(2025, 6, 2, 14, 30, tzinfo=dt.timezone.utc)  # a fixed time: reproducible screenshots
A4_CONTENT_PX = 718  # 210 mm − 2 × 11 mm page margins, at 96 px per inch


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
def browser(tmp_path_factory: pytest.TempPathFactory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, browser):
    """The small test protocol's report (see test_reports.py), rendered at 1400 px."""
    folder = tmp_path_factory.mktemp("browser")
    protocols = write_protocols(folder / "protocols")
    report = run_check(read_export(SAMPLE), protocol_for_check(str(protocols["test"])))
    page_file = folder / "report.html"
    page_file.write_text(check_html(report, generated=GENERATED), encoding="utf-8")
    doc = json.loads(check_json(report))
    page = browser.page(width=1400)
    page.load(page_file)
    dom = page.js("document.documentElement.outerHTML")
    parser = _Cells()
    parser.feed(dom)
    return {"folder": folder, "page": page, "doc": doc, "dom": dom, "cells": parser}


@pytest.fixture(scope="module")
def consensus(tmp_path_factory: pytest.TempPathFactory, browser):
    """The sample checked with the built-in protocol and its case file: the report a user sees."""
    folder = tmp_path_factory.mktemp("consensus")
    report = run_check(read_export(SAMPLE), protocol_for_check("esophagus-oligomet-2025"),
                       case=load_case(SAMPLE / "case.yaml"), case_source="sample_dicom/case.yaml")
    page_file = folder / "report.html"
    page_file.write_text(check_html(report, generated=GENERATED, export_path="sample_dicom"), encoding="utf-8")
    return {"file": page_file, "report": report, "page": browser.page(width=1400)}


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
    measured = [c for c in cells if c["attrs"].get("data-field") == "measured"]
    by_index = {int(c["attrs"]["data-result-index"]): c for c in measured}
    assert len(measured) == len(by_index) == len(doc["results"])  # every result exactly once
    assert sorted(by_index) == list(range(len(doc["results"])))
    for i, r in enumerate(doc["results"]):
        cell = by_index[i]
        assert cell["attrs"]["data-rule-id"] == r["rule_id"]
        if r["measured"] is None:
            assert cell["attrs"]["data-value"] == "" and cell["text"].strip() == "—"
        else:
            assert float(cell["attrs"]["data-value"]) == r["measured"]  # exact: the same float
            shown = float(cell["text"].split()[0])  # rounded for people
            assert shown == pytest.approx(r["measured"], rel=5e-3, abs=5e-3)
    statuses = {int(c["attrs"]["data-result-index"]): c["attrs"]["data-value"]
                for c in cells if c["attrs"].get("data-field") == "status"}
    assert statuses == {i: r["status"] for i, r in enumerate(doc["results"])}
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
    # no finding of the test protocol needs attention: the 4 panels (3 courses, the EQD2 composite)
    assert rendered["cells"].svgs == 4
    assert rendered["dom"].count('class="dvh-curve"') >= 6


# ----------------------------------------------------------------------------- layout on screen

def test_the_verdict_and_the_first_finding_come_first_and_the_passes_are_folded(consensus) -> None:
    page = consensus["page"]
    page.media("screen")
    page.load(consensus["file"])
    top = page.js("""(() => {
        const y = s => document.querySelector(s).getBoundingClientRect().top + window.scrollY;
        return {verdict: y('#verdict'), card: y('article.finding'), passed: y('#results'),
                height: document.documentElement.scrollHeight,
                open: document.querySelectorAll('details[open]').length,
                shownPassRows: [...document.querySelectorAll('details.category tbody tr')]
                               .filter(r => r.checkVisibility()).length,
                passRows: document.querySelectorAll('details.category tbody tr').length};
    })()""")
    assert top["verdict"] < 300 and top["card"] < 700  # within the first screenful (1000 px)
    assert top["card"] < top["passed"]
    report = consensus["report"]
    assert top["passRows"] == report.summary["pass"] and top["shownPassRows"] == 0 and top["open"] == 0
    # was 23 882 px before the findings-first layout (the same check, every rule in full)
    assert top["height"] < 8000, top["height"]


# ----------------------------------------------------------------------------- layout in print

def test_print_layout_on_a4(consensus) -> None:
    page = consensus["page"]
    page.set_viewport(A4_CONTENT_PX, 1000)
    page.media("print")
    page.load(consensus["file"])
    facts = page.js("""(() => {
        const style = s => getComputedStyle(document.querySelector(s));
        const rows = [...document.querySelectorAll('details.category tbody tr')];
        const page = document.documentElement.clientWidth;
        return {
            shownPassRows: rows.filter(r => r.checkVisibility()).length, passRows: rows.length,
            signoff: document.querySelector("#signoff").checkVisibility(),
            breakCard: style('article.finding').breakInside, breakRow: style('details.category tbody tr').breakInside,
            breakFigure: style('figure').breakInside, breakSignoff: style('#signoff').breakInside,
            thead: style('thead').display,
            widest: Math.max(...[...document.querySelectorAll('table, figure, article, section')]
                              .map(e => e.getBoundingClientRect().right)),
            page: page, scrollWidth: document.documentElement.scrollWidth};
    })()""")
    assert facts["passRows"] > 0 and facts["shownPassRows"] == facts["passRows"]  # folded lists print open
    assert facts["signoff"]
    assert {facts[k] for k in ("breakCard", "breakRow", "breakFigure", "breakSignoff")} == {"avoid-page"}
    assert facts["thead"] == "table-header-group"
    assert facts["scrollWidth"] <= facts["page"] and facts["widest"] <= facts["page"] + 0.5  # nothing cut at the right
    pdf = page.pdf()
    assert pdf.startswith(b"%PDF-")
    pages = pdf.count(b"/Type /Page\n") or pdf.count(b"/Type /Page ")
    assert 2 <= pages <= 14, pages
    (consensus["file"].parent / "report.pdf").write_bytes(pdf)


# ----------------------------------------------------------------------------- the user guide's screenshots

def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_screenshots_for_the_user_guide(consensus, tmp_path: Path) -> None:
    """docs/images/report-top.png (verdict and the first findings), report-panels.png (the passes
    folded and the DVH panels) and report-print.png (the first printed page's layout)."""
    out = DOC_IMAGES if os.environ.get("PLANCHECK_DOC_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    page = consensus["page"]
    page.set_viewport(1400, 1000)
    page.media("screen")
    page.load(consensus["file"])
    top = page.screenshot(height=1500)
    passed_y = int(page.js("document.querySelector('#results').getBoundingClientRect().top + window.scrollY")) - 10
    panels = page.screenshot(y=passed_y, height=1300)
    page.set_viewport(A4_CONTENT_PX, 1000)
    page.media("print")
    page.load(consensus["file"])
    printed = page.screenshot(height=1080)
    for name, data, width in (("report-top.png", top, 1400), ("report-panels.png", panels, 1400),
                              ("report-print.png", printed, A4_CONTENT_PX)):
        w, h = _png_size(data)
        assert w == width and h > 500
        assert len(data) > 40_000  # a rendered page, not a blank one
        (out / name).write_bytes(data)
