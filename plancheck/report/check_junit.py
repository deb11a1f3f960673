"""JUnit XML of ``plancheck check`` for CI dashboards.

One ``<testsuite>`` per category, one ``<testcase>`` per finding, named by the
rule id and its subject (structures, courses): FAIL → ``<failure>``, ERROR →
``<error>``, NOT_EVALUATED → ``<skipped>``, WARN → a passing test with the
message in ``<system-out>``. Rules that do not apply are skipped test cases of a
``not-applicable`` suite.

References
----------
The de-facto JUnit XML format as read by Jenkins, GitLab and pytest's
``--junitxml`` (``testsuites/testsuite/testcase`` with ``failure``, ``error``,
``skipped`` and ``system-out``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from plancheck.report.check_json import group_by_category
from plancheck.report.check_text import format_value
from plancheck.rules.findings import Finding, Status
from plancheck.rules.runner import CheckReport

__all__ = ["check_junit", "testcase_name"]

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _c(text: str) -> str:
    """Text XML 1.0 can hold (DICOM strings may carry control characters)."""
    return _NOT_XML.sub("\ufffd", text)


def testcase_name(f: Finding) -> str:
    """``OAR-CORD [SpinalCord_PRV05 @ C1_Eso]`` (rule id plus what it is about)."""
    subject = ", ".join(f.structures)
    if f.courses:
        subject += (" @ " if subject else "") + ", ".join(f.courses)
    return _c(f"{f.rule_id} [{subject}]" if subject else f.rule_id)


def _text(f: Finding) -> str:
    p = f.provenance
    lines = [
        f"{f.title}",
        f"status: {f.status.value}",
        f"measured: {format_value(f.measured, f.unit)}",
        f"limit: {f.limit or '-'}",
        f"message: {f.message}",
        f"source: {p.source}, {p.section} (confidence: {p.confidence}; protocol: {p.protocol})",
    ]
    return _c("\n".join(lines))


def check_junit(report: CheckReport) -> str:
    """The JUnit XML document (UTF-8, with an XML declaration)."""
    s = report.summary
    root = ET.Element("testsuites", {
        "name": f"plancheck {report.protocol.id}",
        "tests": str(len(report.findings) + len(report.not_applicable)),
        "failures": str(s["fail"]),
        "errors": str(s["error"]),
        "skipped": str(s["not_evaluated"] + len(report.not_applicable)),
        "time": f"{report.elapsed_s:.3f}",
    })
    for category, findings in group_by_category(list(report.findings)):
        suite = ET.SubElement(root, "testsuite", {
            "name": category,
            "tests": str(len(findings)),
            "failures": str(sum(f.status is Status.FAIL for f in findings)),
            "errors": str(sum(f.status is Status.ERROR for f in findings)),
            "skipped": str(sum(f.status is Status.NOT_EVALUATED for f in findings)),
            "time": "0",
        })
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", {"name": "protocol", "value": f"{report.protocol.id} {report.protocol.version}"})
        ET.SubElement(props, "property", {"name": "volume_model", "value": _c("; ".join(report.export.volume_model_descriptions))})
        for f in findings:
            case = ET.SubElement(suite, "testcase", {
                "classname": f"plancheck.{category}.{f.rule_id}",
                "name": testcase_name(f),
                "time": "0",
            })
            if f.status is Status.FAIL:
                ET.SubElement(case, "failure", {"message": _c(f.message), "type": "FAIL"}).text = _text(f)
            elif f.status is Status.ERROR:
                ET.SubElement(case, "error", {"message": _c(f.message), "type": "ERROR"}).text = _text(f)
            elif f.status is Status.NOT_EVALUATED:
                ET.SubElement(case, "skipped", {"message": _c(f"NOT EVALUATED: {f.message}")})
                ET.SubElement(case, "system-out").text = _text(f)
            else:
                ET.SubElement(case, "system-out").text = _text(f)
    if report.not_applicable:
        suite = ET.SubElement(root, "testsuite", {
            "name": "not-applicable", "tests": str(len(report.not_applicable)), "failures": "0", "errors": "0",
            "skipped": str(len(report.not_applicable)), "time": "0",
        })
        for n in report.not_applicable:
            case = ET.SubElement(suite, "testcase", {"classname": f"plancheck.not-applicable.{n.rule_id}",
                                                     "name": n.rule_id, "time": "0"})
            ET.SubElement(case, "skipped", {"message": _c(f"not applicable: {n.reason}")})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True).replace(
        "<?xml version='1.0' encoding='utf-8'?>", '<?xml version="1.0" encoding="UTF-8"?>', 1) + "\n"
