"""``firemlip finetune``: FIRE (replay), vanilla and from-scratch training."""

from __future__ import annotations

import argparse
import os

from firemlip.options import FinetuneOptions
from firemlip.training.api import finetune
from firemlip.training.loop import STRATEGIES


def _cmd_finetune(args: argparse.Namespace) -> int:
    from firemlip.options import options_from_args

    extra: dict = dict(args.set or [])
    if args.no_ema:
        extra["ema_decay"] = None
    if args.quiet:
        extra["progress"] = False
    opts = options_from_args(FinetuneOptions, args, args.parser, **extra)
    result = finetune(args.strategy, args.foundation, args.train, args.valid, args.out, replay=args.replay,
                      device=args.device, seed=args.seed, resume=args.resume, **opts.changed())
    print(os.fspath(result))
    return 0


def register_cli(subparsers) -> None:
    """Add ``firemlip finetune`` (its training options are generated from :class:`FinetuneOptions`)."""
    from firemlip.cli import key_value
    from firemlip.options import add_options

    p = subparsers.add_parser(
        "finetune", help="fine-tune a MACE foundation: fire | vanilla | scratch | mace-multihead",
        description="Fine-tune a MACE foundation model on task data. fire = every epoch all task frames plus a "
                    "fresh random draw of replay-ratio x n_task replay frames (pseudo-label replay when no "
                    "--replay is given).")
    p.add_argument("--strategy", choices=STRATEGIES, default="fire")
    p.add_argument("--foundation", required=True, help="a .model path or a foundation name (mace-mpa-0-medium, ...)")
    p.add_argument("--train", required=True, help="extxyz with REF_energy (eV) and REF_forces (eV/Å)")
    p.add_argument("--valid", help="validation extxyz (default: split --valid-fraction off --train)")
    p.add_argument("--replay", help="replay/pretraining extxyz (default for fire: pseudo-label replay)")
    p.add_argument("-o", "--out", required=True, help="output directory")
    add_options(p, FinetuneOptions)
    p.add_argument("--no-ema", action="store_true", help="no weight averaging (as --ema-decay none)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue after the last checkpointed epoch")
    p.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                   help="any FinetuneOptions field (YAML value)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_finetune, parser=p)
