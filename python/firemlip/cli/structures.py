"""``firemlip perturb`` and ``firemlip interface``: input structures."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from ase import Atoms

from firemlip.io import write_frames
from firemlip.options import InterfaceOptions, PerturbOptions, add_options, options_from_args
from firemlip.structures import build_interface, perturb, read_structures


def _cmd_perturb(args: argparse.Namespace) -> int:
    o = options_from_args(PerturbOptions, args, args.parser)
    frames = read_structures([args.structure])
    out: list[Atoms] = []
    total_redraws = 0
    for k, a in enumerate(frames):
        f, r = perturb(a, o.n_configs, o.rattle, o.strain, o.seed + k, o.min_dist_factor)
        out.extend(f)
        total_redraws += r
    write_frames(args.output, out)
    print(f"wrote {len(out)} perturbed frames to {args.output} ({total_redraws} redrawn for short distances)")
    return 0


def _cmd_interface(args: argparse.Namespace) -> int:
    sub = read_structures([args.substrate], index="0")[0]
    film = read_structures([args.film], index="0")[0]
    atoms, rep = build_interface(sub, film, **options_from_args(InterfaceOptions, args, args.parser).model_dump())
    write_frames(args.output, [atoms])
    from firemlip.io import write_json

    write_json(Path(args.output).with_suffix(".json"), asdict(rep))
    print(f"wrote {args.output}: {rep.n_atoms} atoms, mismatch {rep.mismatch_percent[0]:+.2f}% / "
          f"{rep.mismatch_percent[1]:+.2f}%, film strain {rep.film_von_mises_strain_percent:.2f}% "
          f"(substrate unstrained)" + "".join(f"; vacancy: {v['element']} ({v['wyckoff']}) of the {v['slab']} at "
                                             f"z = {v['position_A'][2]:.2f} Å" for v in rep.vacancies))
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser("perturb", help="rattled and strained copies of a structure")
    p.add_argument("structure", help="CIF, POSCAR, extxyz or LAMMPS data file")
    add_options(p, PerturbOptions)
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_perturb, parser=p)

    q = sub.add_parser("interface", help="stack two bulk structures into a lattice-matched interface")
    q.add_argument("substrate")
    q.add_argument("film")
    add_options(q, InterfaceOptions)
    q.add_argument("-o", "--output", required=True)
    q.set_defaults(func=_cmd_interface, parser=q)
