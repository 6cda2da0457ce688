"""``firemlip demo``: the bundled example, end to end."""

from __future__ import annotations

import argparse

from firemlip.cli import positive_int
from firemlip.demo import LITERATURE, run_demo, transport_summary


def _cmd_demo(args: argparse.Namespace) -> int:
    status = run_demo(args.run_dir, quick=args.quick, relabel=args.relabel, foundation=args.foundation,
                      md_steps=args.md_steps)
    for line in transport_summary(args.run_dir, quick=args.quick):
        print(f"firemlip demo: {line}")
    print(f"firemlip demo:   {LITERATURE}")
    print(f"demo finished in {status['wall_time_s']} s; outputs in {args.run_dir}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run FIRE on the bundled Li | Li3N interface example")
    p.add_argument("--quick", action="store_true", help="the short profile (minutes on 2 cores)")
    p.add_argument("--relabel", action="store_true", help="recompute the DFT labels instead of the bundled ones")
    p.add_argument("--run-dir", default="runs/demo")
    p.add_argument("--md-steps", type=positive_int, metavar="N",
                   help="production MD steps per diffusion temperature instead of the profile's (a smoke run)")
    p.add_argument("--foundation", help="foundation name (mace-mp-0-small …) or .model path; default: MACE-MP-0 "
                                        "small for the default profile when it can be downloaded, else (and for "
                                        "--quick) the bundled foundation distilled from SevenNet-0")
    p.set_defaults(func=_cmd_demo)
