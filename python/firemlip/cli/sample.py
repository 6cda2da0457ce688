"""``firemlip sample``: MD sampling of a candidate pool."""

from __future__ import annotations

import argparse
import json

from firemlip.options import GuardOptions, SampleOptions
from firemlip.sampling import sample
from firemlip.stability import StabilityGuard


def _cli(args: argparse.Namespace) -> int:
    from firemlip.options import options_from_args

    o = options_from_args(SampleOptions, args, args.parser)
    guard = StabilityGuard(**options_from_args(GuardOptions, args, args.parser).model_dump())
    kw = o.model_dump()
    out = sample(args.model, args.structure, kw.pop("temperatures_K"), out_path=args.output, device=args.device,
                 guard=guard, progress=not args.quiet, resume=not args.no_resume, **kw)
    summ = json.loads((out.parent / f"{out.stem}.summary.json").read_text())
    print(f"{out}: {summ['frames']} frames from {len(summ['jobs'])} MD jobs"
          + (f"; {len(summ['stopped'])} stopped by the stability guard" if summ["stopped"] else ""))
    for s in summ["stopped"]:
        print(f"  stopped {s['source']} {s['temperature_K']:g} K at step {s['stopped'].get('step')}: "
              f"{s['stopped'].get('message')}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``firemlip sample`` (options generated from :class:`SampleOptions` and :class:`GuardOptions`)."""
    from firemlip.options import add_options

    p = subparsers.add_parser("sample", help="MD sampling of a candidate pool with a MACE model",
                              description="Run MD at several temperatures (K) and keep every K-th frame.")
    p.add_argument("model", help="MACE .model file")
    p.add_argument("structure", nargs="+", help="structure file(s) (any ASE format; all frames are used)")
    add_options(p, SampleOptions)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device (default cpu)")
    add_options(p, GuardOptions)
    p.add_argument("--no-resume", action="store_true", help="ignore cached finished jobs in <pool>.parts/")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", default="pool.extxyz", help="output pool (extxyz, default pool.extxyz)")
    p.set_defaults(func=_cli, parser=p)
