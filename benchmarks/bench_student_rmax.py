"""Head-to-head: the distilled ``small`` student with another cut-off, on the frames of a finished distillation run.

Copies the teacher's label cache and MD snapshots of a ``bench_distill.py`` run (so the generated frames and their
train/valid/held-out split are identical), sets the ``small`` student's ``r_max`` (Å) by ``student_shape`` and distils again with a
budget that leaves the same training time as the base run had (its ``train_s`` plus the time the cached stages
take). Prints and writes the held-out and validation errors (meV/atom, meV/Å) of both students.

Run (about an hour on 2 cores)::

    python benchmarks/bench_student_rmax.py --base runs/bench_distill/distill --r-max 6 --out runs/h2h_r6/distill
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="distill directory of a finished bench_distill run")
    ap.add_argument("--r-max", type=float, required=True, help="cut-off of the new student (Å)")
    ap.add_argument("--out", type=Path, required=True, help="distill directory of the new student")
    ap.add_argument("--cached-minutes", type=float, default=1.5,
                    help="allowance for the cached scan/label/MD stages on top of the base's training time (1.5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="results file (default OUT/../rmax_h2h.json)")
    args = ap.parse_args(argv)

    base_report = args.base / "report.json"
    if not base_report.exists():
        print(f"bench_student_rmax: {base_report} not found (run benchmarks/bench_distill.py first)", file=sys.stderr)
        return 2
    base = json.loads(base_report.read_text())
    import torch

    from firemlip.distill import distill_foundation

    torch.set_num_threads(args.threads)
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("label-cache", "md"):
        if not (work / sub).exists():
            shutil.copytree(args.base / "work" / sub, work / sub)
    budget = base["timings_s"]["train_s"] / 60 + args.cached_minutes
    rep = distill_foundation(base["teacher"], base["elements"], args.out, [], size="small", budget_minutes=budget,
                             student_shape={"r_max": float(args.r_max)},
                             seed=0)
    rows = {f"r_max {base['student']['r_max_A']:g} Å (base)": base, f"r_max {args.r_max:g} Å": rep}
    out = {"base": os.fspath(args.base), "budget_minutes": budget,
           # training time from the training's own summary (a rerun that reuses a trained student reports 0 s)
           "students": {k: {"heldout": r["heldout"], "valid": r["valid"],
                            "epochs": r["training"]["summary"].get("epochs_run"),
                            "epoch_wall_s_mean": r["training"]["summary"].get("epoch_wall_s_mean"),
                            "train_s": r["training"]["summary"].get("epochs_run", 0)
                            * (r["training"]["summary"].get("epoch_wall_s_mean") or 0.0)}
                        for k, r in rows.items()}}
    from firemlip.io import write_json

    path = args.json or args.out.parent / "rmax_h2h.json"
    write_json(path, out)
    print(f"{'student':<22}{'epochs':>7}{'train min':>10}{'held-out E':>12}{'F':>8}{'valid E':>10}{'F':>8}")
    for k, r in out["students"].items():
        print(f"{k:<22}{r['epochs']:>7}{r['train_s'] / 60:>10.1f}{r['heldout']['energy_rmse_meV_atom']:>12.1f}"
              f"{r['heldout']['forces_rmse_meV_A']:>8.1f}{r['valid']['energy_rmse_meV_atom']:>10.1f}"
              f"{r['valid']['forces_rmse_meV_A']:>8.1f}")
    print(f"results → {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
