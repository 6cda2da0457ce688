"""Replay-augmented fine-tuning of MACE foundation models (FIRE) and its baselines.

Python: :func:`finetune` (strategies ``fire``, ``vanilla``, ``scratch``, ``mace-multihead``), options in
:class:`FinetuneOptions`; pseudo-label replay in :mod:`firemlip.training.replay`.
CLI: ``firemlip finetune --strategy fire --foundation M --train T [--valid V] [--replay R] -o OUT/``.
"""

from __future__ import annotations

import argparse

from firemlip.training.api import finetune, prepare, strategies
from firemlip.training.loop import E0S_CHOICES, STRATEGIES, FinetuneOptions

__all__ = ["finetune", "prepare", "strategies", "STRATEGIES", "FinetuneOptions", "register_cli"]


def _cmd_finetune(args: argparse.Namespace) -> int:
    from firemlip.errors import FiremlipError

    opts: dict = dict(args.set or [])
    for k in ("batch_size", "lr", "energy_weight", "forces_weight", "stress_weight", "replay_weight",
              "replay_energy_weight", "replay_filter", "replay_size", "clip_grad", "patience", "dtype", "e0s", "head", "name",
              "stage_two_energy_weight", "stage_two_lr", "weight_decay", "valid_fraction"):
        v = getattr(args, k)
        if v is not None:
            opts[k] = v
    if args.stage_two is not None:
        opts["stage_two_start"] = args.stage_two
    if args.no_ema:
        opts["ema_decay"] = None
    elif args.ema_decay is not None:
        opts["ema_decay"] = args.ema_decay
    if args.replay_structures:
        opts["replay_structures"] = tuple(args.replay_structures)
    if args.mace_arg:
        opts["mace_args"] = tuple(args.mace_arg)
    if args.quiet:
        opts["progress"] = False
    if args.zbl:
        opts["zbl"] = True
    if "replay_ratio" in opts or "epochs" in opts:
        raise FiremlipError("--set: give replay_ratio and epochs with --replay-ratio and --epochs")
    path = finetune(args.strategy, args.foundation, args.train, args.valid, args.out, replay=args.replay,
                    replay_ratio=args.replay_ratio, epochs=args.epochs, device=args.device, seed=args.seed,
                    resume=args.resume, **opts)
    print(path)
    return 0


def register_cli(subparsers) -> None:
    """Add ``firemlip finetune``."""
    from firemlip.cli import key_value, nonneg_float, positive_int

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
    p.add_argument("--replay-ratio", type=nonneg_float, default=1.0,
                   help="replay frames drawn per epoch, as a multiple of the task frames (default 1)")
    p.add_argument("--replay-weight", type=nonneg_float, help="loss weight of replay frames (default 1)")
    p.add_argument("--replay-energy-weight", type=nonneg_float,
                   help="energy weight of replay frames relative to their forces (0 = force-only replay, for a "
                        "labeller whose energy zero differs from the foundation's; default 1)")
    p.add_argument("--replay-filter", choices=("none", "overlap", "subset"),
                   help="keep replay frames sharing an element with the task (overlap) or only task elements")
    p.add_argument("--replay-size", type=positive_int, help="pseudo-label replay pool size")
    p.add_argument("--replay-structures", nargs="+", metavar="FILE",
                   help="extra structures (bulk phases, unselected pool frames) for pseudo-label replay")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--epochs", type=positive_int, default=50)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=nonneg_float, help="learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=nonneg_float)
    p.add_argument("--energy-weight", type=nonneg_float)
    p.add_argument("--forces-weight", type=nonneg_float)
    p.add_argument("--stress-weight", type=nonneg_float)
    p.add_argument("--stage-two", type=float, metavar="FRACTION",
                   help="start stage two (raised energy weight, lr/10) after this fraction of the epochs")
    p.add_argument("--stage-two-energy-weight", type=nonneg_float)
    p.add_argument("--stage-two-lr", type=nonneg_float)
    p.add_argument("--ema-decay", type=float)
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--clip-grad", type=nonneg_float)
    p.add_argument("--patience", type=positive_int, help="early stopping patience in epochs (default 30)")
    p.add_argument("--valid-fraction", type=float)
    p.add_argument("--dtype", choices=("float64", "float32"))
    p.add_argument("--e0s", choices=E0S_CHOICES,
                   help="E0s from the foundation (default), least squares on the task (average), or the task's "
                        "offset from the foundation's predictions (estimated; scratch: as average)")
    p.add_argument("--head", help="foundation head to fine-tune (default: the model's default head)")
    p.add_argument("--name", help="output model stem (default: the strategy)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue after the last checkpointed epoch")
    p.add_argument("--mace-arg", action="append", metavar="ARG",
                   help="extra argument for mace_run_train (mace-multihead), repeatable: --mace-arg=--swa")
    p.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                   help="any other FinetuneOptions field")
    p.add_argument("--zbl", action="store_true",
                   help="add MACE's ZBL pair repulsion (a short-range wall; see firemlip audit)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_finetune)
