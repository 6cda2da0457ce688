"""``firemlip select``: SOAP → PCA → K-means selection (or random)."""

from __future__ import annotations

import argparse
import sys

from firemlip.options import SelectOptions
from firemlip.selection import select


def _cli(args: argparse.Namespace) -> int:
    from firemlip.options import options_from_args

    o = options_from_args(SelectOptions, args, args.parser)
    summary = select(args.pool, args.n, method=o.method, seed=o.seed, out_dir=args.output, species=args.species,
                     split=args.split, variance=o.variance, max_components=o.max_components,
                     minibatch_threshold=o.minibatch_threshold, progress=not args.quiet, **o.soap.model_dump())
    pca = summary["pca"]
    print(f"{summary['pool']}: {summary['pool_frames']} frames; PCA {pca['n_components']} components "
          f"({pca['variance_reached']:.3f} of variance); descriptors "
          f"{'reused' if summary['descriptors_reused'] else 'computed'} in {summary['timings']['descriptors_s']} s")
    if pca.get("warning"):
        print(f"warning: {pca['warning']}", file=sys.stderr)
    print(f"{'n':>7} {'method':>12} {'cov_mean':>10} {'cov_max':>10} {'random_mean':>12}  dir")
    for n, e in summary["sizes"].items():
        m = e["metrics"]
        rb = m.get("random_baseline", {}).get("coverage_mean")
        print(f"{n:>7} {m['method']:>12} {m['coverage_mean']:>10.4g} {m['coverage_max']:>10.4g} "
              f"{(f'{rb:.4g}' if rb is not None else '-'):>12}  {e['dir']}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``firemlip select``."""
    from firemlip.cli import nonneg_float, positive_int
    from firemlip.options import add_options

    p = subparsers.add_parser("select", help="select a diverse subset of a pool (SOAP → PCA → K-means)",
                              description="Select frames from a pool; writes DIR/n<size>/ per requested size.")
    p.add_argument("pool", help="pool of candidate frames (extxyz)")
    p.add_argument("-n", type=positive_int, action="append", required=True,
                   help="number of frames to select (repeat for several sizes; descriptors are reused)")
    p.add_argument("--split", type=nonneg_float, nargs=3, metavar=("TRAIN", "VALID", "TEST"),
                   help="also split each selection, stratified by cluster (e.g. 0.8 0.1 0.1)")
    p.add_argument("--species", nargs="+", help="SOAP species list (default: the pool's species)")
    add_options(p, SelectOptions)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.set_defaults(func=_cli, parser=p)
