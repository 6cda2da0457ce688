"""``firemlip import``: existing DFT data (extxyz, VASP, DeePMD) into labelled extxyz."""

from __future__ import annotations

import argparse

from firemlip.errors import FiremlipError
from firemlip.importing import import_paths
from firemlip.io import write_frames


def _cmd_import(args: argparse.Namespace) -> int:
    counts: dict[str, int] = {}
    frames = import_paths(args.paths, args.energy_key, args.forces_key, args.stress_key, args.stress_unit,
                          type_map=args.type_map, report=counts)
    if not frames:
        raise FiremlipError(f"{', '.join(args.paths)}: no frames found to import")
    write_frames(args.output, frames)
    if len(counts) > 1:
        for src, n in counts.items():
            print(f"  {n:6d} frames  {src}")
    print(f"imported {len(frames)} frames from {len(counts)} source(s) → {args.output}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import OUTCAR / vasprun.xml / DeePMD npy / extxyz into REF_* extxyz")
    p.add_argument("paths", nargs="+")
    p.add_argument("--energy-key", default="energy", help="extxyz info key of the energy (eV)")
    p.add_argument("--forces-key", default="forces", help="extxyz array key of the forces (eV/Å)")
    p.add_argument("--stress-key", default="stress", help="extxyz info key of the stress")
    p.add_argument("--stress-unit", type=float, default=1.0,
                   help="factor converting the stored stress to eV/Å³ (e.g. -1/1602.1766 for VASP kBar)")
    p.add_argument("--type-map", help="elements of the DeePMD type indices, comma-separated (e.g. Li,Ge,P,S); "
                                      "needed for systems without type_map.raw, overrides it otherwise")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_import)
