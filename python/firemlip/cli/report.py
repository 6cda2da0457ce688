"""``firemlip report``: the HTML report of a run directory."""

from __future__ import annotations

import argparse

from firemlip.report import build_report


def _cmd_report(args: argparse.Namespace) -> int:
    md, ht = build_report(args.run_dir)
    print(f"wrote {md} and {ht}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write report.md and report.html for a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=_cmd_report)
