"""``plancheck protocols`` (list the installed protocols, print the file format's JSON
Schema) and ``plancheck explain RULE_ID`` (a rule, its provenance and origin)."""

from __future__ import annotations

import argparse
import difflib
import io
import json
import sys
from typing import TYPE_CHECKING, Any

from plancheck.cli.defaults import DEFAULT_PROTOCOL
from plancheck.cli.exit_codes import ExitCode
from plancheck.errors import ProtocolError, UsageError

if TYPE_CHECKING:
    from plancheck.protocol.loader import Protocol, ResolvedRule

__all__ = ["register", "run_protocols", "run_explain", "explain_text", "protocol_rows"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocols", help="list the installed protocols, or print the protocol file JSON Schema",
                       description="List the built-in protocols (id, title, version, number of rules, extends chain).")
    p.add_argument("--schema", action="store_true", help="print the JSON Schema of the protocol file format (for editors)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=run_protocols)

    e = sub.add_parser("explain", help="show a rule: its fields, provenance and which protocol file defined it",
                       description="Show one rule of a protocol as YAML, its provenance (source, section, confidence) "
                                   "and which protocol file defined it and which overrode it.")
    e.add_argument("rule_id", metavar="RULE_ID")
    e.add_argument("--protocol", default=DEFAULT_PROTOCOL, metavar="NAME|FILE",
                   help=f"built-in protocol id or a protocol file (default: {DEFAULT_PROTOCOL}; plan-integrity rules included)")
    e.set_defaults(handler=run_explain)


def protocol_rows() -> list[dict[str, Any]]:
    """One row per built-in protocol: id, title, version, rules (resolved count), chain,
    or ``error`` when the file does not load."""
    from plancheck.protocol.loader import builtin_protocol_ids, load_protocol

    rows = []
    for pid in builtin_protocol_ids():
        try:
            p = load_protocol(pid)
        except ProtocolError as exc:
            rows.append({"id": pid, "title": None, "version": None, "rules": None, "chain": [], "error": str(exc)})
            continue
        rows.append({"id": p.id, "title": p.title, "version": p.version, "rules": len(p.rules), "chain": list(p.chain),
                     "error": None})
    return rows


def run_protocols(args: argparse.Namespace) -> int:
    if args.schema:
        from plancheck.protocol.loader import protocol_json_schema

        sys.stdout.write(protocol_json_schema() + "\n")
        return ExitCode.OK
    rows = protocol_rows()
    if args.format == "json":
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        color = sys.stdout.isatty()
        console = Console(record=True, width=160, file=io.StringIO(), color_system="standard" if color else None,
                          force_terminal=color, highlight=False)
        if not rows:
            console.print("no built-in protocols are installed")
        table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
        for col, kw in (("Id", {"no_wrap": True}), ("Version", {}), ("Rules", {"justify": "right"}), ("Title", {}), ("Chain", {})):
            table.add_column(col, **kw)
        for r in rows:
            if r["error"]:
                table.add_row(escape(r["id"]), "—", "—", escape(f"does not load: {r['error']}"), "—")
            else:
                table.add_row(escape(r["id"]), escape(r["version"]), str(r["rules"]), escape(r["title"]),
                              escape(" → ".join(r["chain"])))
        if rows:
            console.print(table)
        text = console.export_text(styles=color)
        sys.stdout.write(text if color else "\n".join(line.rstrip() for line in text.splitlines()) + "\n")
    return ExitCode.INPUT_ERROR if any(r["error"] for r in rows) else ExitCode.OK


def _origin_lines(protocol: Protocol, resolved: ResolvedRule) -> list[str]:
    from plancheck.protocol.loader import builtin_protocol_ids

    builtin = set(builtin_protocol_ids())

    def where(pid: str) -> str:
        if pid == protocol.id and protocol.path != pid:
            return f"{pid} (file {protocol.path})"
        if pid in builtin:
            return f"{pid} (built-in: constraints/protocols/{pid}.yaml)"
        return pid

    lines = [f"defined in:  {where(resolved.defined_in)}"]
    if resolved.changed_by:
        lines.append(f"overridden by: {', '.join(where(p) for p in resolved.changed_by)}")
    else:
        lines.append("overridden by: none")
    lines.append(f"protocol chain: {' → '.join(protocol.chain)}")
    return lines


def explain_text(protocol: Protocol, rule_id: str) -> str:
    """The explanation of one rule of a resolved protocol.

    Raises
    ------
    UsageError
        When the protocol has no such rule (with the closest ids).
    """
    import yaml

    from plancheck.report.check_json import CONFIDENCE_LEGEND

    try:
        resolved = protocol.rule(rule_id)
    except KeyError:
        ids = [r.rule.id for r in protocol.rules]
        close = difflib.get_close_matches(rule_id, ids, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; its rules are: {', '.join(ids) or 'none'}"
        raise UsageError(f"protocol {protocol.id} has no rule {rule_id!r}{hint}") from None
    rule = resolved.rule
    fields = rule.model_dump(mode="python", exclude_none=True)
    prov = rule.provenance
    meaning = dict(CONFIDENCE_LEGEND).get(prov.confidence, "")
    out = [f"{rule.id}: {rule.title}", "", "Rule (as resolved, all fields):"]
    try:
        body = yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    except yaml.representer.RepresenterError:  # a plug-in kind with values YAML cannot represent
        body = yaml.safe_dump(rule.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True,
                              default_flow_style=False, width=100)
    out += ["  " + line for line in body.rstrip().splitlines()]
    out += ["", "Provenance:", f"  source:      {prov.source}", f"  section:     {prov.section}",
            f"  confidence:  {prov.confidence}" + (f": {meaning}" if meaning else "")]
    if prov.note:
        out.append(f"  note:        {prov.note}")
    out += ["", "Origin:"] + ["  " + line for line in _origin_lines(protocol, resolved)]
    return "\n".join(out) + "\n"


def run_explain(args: argparse.Namespace) -> int:
    from plancheck.rules.runner import protocol_for_check

    protocol = protocol_for_check(args.protocol)
    sys.stdout.write(explain_text(protocol, args.rule_id))
    return ExitCode.OK
