"""``firemlip foundation distill``: an offline foundation from a universal teacher."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from firemlip.distill import SIZES, distill_foundation


def _cmd_distill(args: argparse.Namespace) -> int:
    opts: dict[str, Any] = dict(args.set or [])
    for k in ("size", "budget_minutes", "device", "seed", "epochs", "max_atoms", "threads"):
        v = getattr(args, k)
        if v is not None:
            opts[k] = v
    if args.temperatures:
        opts["md_temperatures"] = tuple(args.temperatures)
    if args.teacher_set:
        opts["teacher_settings"] = dict(args.teacher_set)
    if args.shape:
        opts["student_shape"] = dict(args.shape)
    if args.quiet:
        opts["progress"] = False
    for k in ("scan_range", "md_temperatures"):
        if k in opts and isinstance(opts[k], list):
            opts[k] = tuple(opts[k])
    rep = distill_foundation(args.teacher, args.elements, args.out, args.structures or (), **opts)
    h = rep["heldout"]
    print(f"{Path(args.out) / 'foundation.model'}: held-out energy RMSE {h['energy_rmse_meV_atom']:.2f} meV/atom, "
          f"forces RMSE {h['forces_rmse_meV_A']:.1f} meV/Å ({rep['n_frames']['total']} frames, "
          f"{rep['wall_time_s'] / 60:.1f} min)")
    return 0


def register_distill(group) -> None:
    """Add ``distill`` to the ``firemlip foundation`` sub-command group (idempotent)."""
    from firemlip.cli import key_value, nonneg_float, positive_int

    if "distill" in getattr(group, "choices", {}):
        return
    p = group.add_parser(
        "distill", help="distil a compact MACE foundation from a universal teacher (offline)",
        description="Generate structures for the element set, label them with a teacher (SevenNet-0, CHGNet, any "
                    "ASE calculator or MACE model; cached, resumable) and train a MACE student from scratch. "
                    "Writes foundation.model, pretrain.extxyz (its replay data), report.json, parity.png.")
    p.add_argument("--teacher", default="sevenn",
                   help="sevenn (default) | chgnet | mace:PATH | python:module:function | "
                        "worker:/path/to/python:module:function | emt | lj | gpaw")
    p.add_argument("--elements", required=True, help="comma-separated symbols, e.g. Li,P,S,Cl")
    p.add_argument("--structures", nargs="+", metavar="FILE", help="extra bulk structures of the chemistry")
    p.add_argument("--size", choices=SIZES, help="student preset (default small)")
    p.add_argument("--budget-minutes", type=nonneg_float, help="time for the whole run (default 60)")
    p.add_argument("--epochs", type=positive_int, help="train exactly this many epochs (default: fill the budget)")
    p.add_argument("--max-atoms", type=positive_int, help="largest generated supercell (default 24)")
    p.add_argument("--temperatures", type=nonneg_float, nargs="+", metavar="K",
                   help="teacher MD temperatures (default 300 800 1500)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="teacher and student device (default cpu)")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=positive_int, help="torch threads for the student (default: torch's own)")
    p.add_argument("--teacher-set", action="append", type=key_value, metavar="KEY=VALUE",
                   help="teacher setting (factory keyword), repeatable, e.g. model=7net-0")
    p.add_argument("--shape", action="append", type=key_value, metavar="KEY=VALUE",
                   help="student architecture field over the --size preset, repeatable, e.g. r_max=6.0 "
                        "num_bessel=16 channels=64 (firemlip.models.MaceShape; r_max in Å)")
    p.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                   help="any other DistillSettings field, e.g. n_rattle=5 md_steps=50")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_distill)


def register_cli(subparsers) -> None:
    """Add ``firemlip foundation distill`` (for cli.COMMAND_MODULES; shares the group with foundation.py)."""
    from firemlip.cli import command_group

    register_distill(command_group(subparsers, "foundation", "foundation models: inspect, download (and distill)"))
