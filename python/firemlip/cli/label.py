"""``firemlip label``: DFT (or any calculator) labels for a frame file."""

from __future__ import annotations

import argparse

from firemlip.errors import FiremlipError
from firemlip.labelling import label_file, parse_settings


def _cmd_label(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise FiremlipError(f"--workers: expected a positive integer, got {args.workers}")
    rep = label_file(args.input, args.output, args.calculator, parse_settings(args.set), args.cache,
                     args.workers, args.dask, args.failed, args.retry_failed)
    msg = f"labelled {rep['n_labelled']}/{rep['n_input']} frames → {args.output}"
    if rep["n_failed"]:
        msg += f"; {rep['n_failed']} failed → {rep['failed_path']}"
    print(msg)
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    from firemlip.cli import key_value

    p = sub.add_parser("label", help="label frames with energies/forces/stress from an ASE calculator")
    p.add_argument("input", help="extxyz (or any ASE-readable) file of frames")
    p.add_argument("--calculator", "-c", required=True,
                   help="gpaw | vasp | espresso | emt | lj | mace:PATH | python:module:function | "
                        "sevenn | chgnet | worker:/path/to/python:module:function")
    p.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                   help="calculator setting (repeatable), e.g. ecut_eV=400 kpt_density=3")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--cache", help="cache directory (default: .<output>.label-cache beside the output)")
    p.add_argument("--failed", help="where failed frames go (default: failed.extxyz beside the output)")
    p.add_argument("--workers", type=int, default=1, help="frames labelled in parallel on this machine")
    p.add_argument("--dask", metavar="ADDRESS", help="Dask scheduler address (tcp://host:8786)")
    p.add_argument("--retry-failed", action="store_true", help="recompute frames that failed before")
    p.set_defaults(func=_cmd_label)
