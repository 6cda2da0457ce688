"""``firemlip audit``: physical checks of a model before production MD."""

from __future__ import annotations

import argparse

from firemlip.audit.api import audit
from firemlip.audit.report import GATES
from firemlip.audit.settings import AuditSettings

#: ``firemlip audit`` option name -> AuditSettings field
_FLAG_TO_SETTING = {
    "trust_margin": "trust_margin", "wall_height": "wall_height_eV", "force_tolerance": "force_tolerance_eV_A",
    "min_rise": "min_rise_eV", "scan_start": "scan_start_A", "scan_step": "scan_step_A",
    "host_scan_frames": "host_scan_frames", "hole_factor": "hole_factor", "hole_trials": "hole_trials",
    "relax_steps": "relax_steps", "temperatures": "md_temperatures_K", "seeds": "md_seeds", "md_steps": "md_steps",
    "timestep_fs": "md_timestep_fs", "md_engine": "md_engine", "min_stable_fraction": "min_stable_fraction",
    "seed": "seed",
}


def _cmd_audit(args: argparse.Namespace) -> int:
    kw: dict = dict(args.set or [])
    for flag, name in _FLAG_TO_SETTING.items():
        v = getattr(args, flag)
        if v is not None:
            kw[name] = v
    result = audit(args.model, args.structures, args.output, train=args.train, device=args.device,
                   skip=tuple(args.skip or ()), progress=not args.quiet, threads=args.threads, **kw)
    print(result["summary"])
    return 0 if result["passed"] else 1


def register_cli(subparsers) -> None:
    """Add ``firemlip audit``."""
    from firemlip.cli import key_value, positive_int

    d = AuditSettings()
    p = subparsers.add_parser(
        "audit", help="audit a model before deployment: pair scans vs ZBL, hole hunt, MD stability grid",
        description="Audit a MACE model for short-range holes and MD stability. Writes DIR/audit.json (per gate: "
                    "pass/fail, numbers, thresholds), PNGs and holes.extxyz; prints a summary. Exit status 0 when "
                    "every gate passes, 1 when one fails, 2 for bad input.")
    p.add_argument("model", help="MACE .model file (or a foundation name)")
    p.add_argument("--structures", required=True, help="host frames the model will run on (extxyz, any ASE format)")
    p.add_argument("--train", help="training data (extxyz): the shortest distance per pair is the trusted range "
                                   "(default: the host's)")
    p.add_argument("-o", "--output", default="audit", help="output directory (default audit/)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device (default cpu)")
    p.add_argument("--threads", type=positive_int, help="torch/OpenMP threads (default: torch's; 1 is often "
                                                        "fastest on a machine shared with other work)")
    p.add_argument("--skip", nargs="+", choices=GATES, metavar="GATE", help=f"gates to skip ({', '.join(GATES)})")
    p.add_argument("--trust-margin", type=float, help=f"fraction below the shortest training distance where the "
                                                       f"wall window starts (default {d.trust_margin})")
    p.add_argument("--wall-height", type=float, help=f"eV of the ZBL reference where the window ends "
                                                      f"(default {d.wall_height_eV})")
    p.add_argument("--force-tolerance", type=float, help=f"dE/dr above this (eV/Å) in the window is attractive "
                                                          f"(default {d.force_tolerance_eV_A})")
    p.add_argument("--min-rise", type=float, help=f"a wall rising less than this (eV) is flat "
                                                   f"(default {d.min_rise_eV})")
    p.add_argument("--scan-start", type=float, help=f"shortest scanned distance in Å (default {d.scan_start_A})")
    p.add_argument("--scan-step", type=float, help=f"dimer scan step in Å (default {d.scan_step_A})")
    p.add_argument("--host-scan-frames", type=int, help=f"host frames scanned (default {d.host_scan_frames})")
    p.add_argument("--hole-factor", type=float, help=f"a pair closer than this × the covalent-radius sum is a hole "
                                                      f"(default {d.hole_factor})")
    p.add_argument("--hole-trials", type=int, help=f"compression/insertion trials (default {d.hole_trials})")
    p.add_argument("--relax-steps", type=int, help=f"FIRE steps per trial (default {d.relax_steps})")
    p.add_argument("--temperatures", "-T", type=float, nargs="+",
                   help=f"MD grid temperatures in K (default {' '.join(f'{t:g}' for t in d.md_temperatures_K)})")
    p.add_argument("--seeds", type=int, help=f"MD runs per temperature (default {d.md_seeds})")
    p.add_argument("--md-steps", type=int, help=f"MD steps per run, 0 skips the grid (default {d.md_steps})")
    p.add_argument("--timestep-fs", type=float, help=f"MD time step in fs (default {d.md_timestep_fs})")
    p.add_argument("--md-engine", choices=("auto", "ase", "lammps"),
                   help="MD engine (default auto: LAMMPS when the pair_style mace plugin is built, else ASE)")
    p.add_argument("--min-stable-fraction", type=float,
                   help=f"fraction of MD runs that must finish (default {d.min_stable_fraction})")
    p.add_argument("--seed", type=int, help="random seed (hole hunt, MD)")
    p.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                   help="any other AuditSettings field, e.g. compression_range=[0.8,0.9]")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_audit)
