"""Benchmark of ``firemlip audit`` with default settings: a small MACE on a 108-atom fcc Cu host.

1. Trains a small MACE (16x0e+16x1o, r_max 4.5 Å, 8.4k parameters; ``--channels``) for a few epochs on 12
   EMT-labelled, gently rattled 4-atom fcc Cu cells with our fine-tuning engine (``--zbl`` adds the ZBL wall).
   Training time is reported but is not part of the target.
2. Runs ``firemlip audit MODEL --structures HOST --train TRAIN -o OUT/audit`` as a subprocess with the default
   thresholds and sizes (pair scans, host scans, 12 hole-hunt trials, MD grid 3 temperatures × 2 seeds × 400 steps;
   LAMMPS when the ``pair_style mace`` plugin is built, else ASE) and reports its wall time and CPU time (s) and
   the per-gate wall times from ``audit.json``. Target: < 600 s on 2 CPU cores. On a loaded machine the audit runs
   with ``--threads 1`` (two OpenMP threads competing with other work for two cores were measured 15× slower).

Writes ``OUT/bench_audit.json`` and prints a table. On a machine shared with other work the wall times are upper
bounds (CPU time / cores estimates the idle-machine wall time); say so when quoting them.

Usage: ``python benchmarks/bench_audit.py [--out DIR] [--repeat 3] [--channels 16] [--zbl] [--engine auto]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def cu_frames(n: int, seed: int) -> list:
    """``n`` EMT-labelled 4-atom fcc Cu cells (±2 % strain, 0.05 Å rattle)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from firemlip.io import set_labels

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        eps = rng.uniform(-0.02, 0.02, size=(3, 3))
        a.set_cell(a.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        a.positions += rng.normal(0.0, 0.05, size=(len(a), 3))
        a.calc = EMT()
        set_labels(a, a.get_potential_energy(), a.get_forces())
        a.calc = None
        out.append(a)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_audit_out", help="output directory")
    ap.add_argument("--repeat", type=int, default=3, help="host = fcc Cu conventional cell repeated N³ (4N³ atoms)")
    ap.add_argument("--channels", type=int, default=16, help="MACE channels (L=1)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--zbl", action="store_true", help="train with the ZBL pair repulsion")
    ap.add_argument("--engine", default="auto", choices=("auto", "ase", "lammps"), help="MD grid engine")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch/OpenMP threads of the audit (default: 1 when the 1-min load average exceeds 1, "
                         "else torch's default)")
    args = ap.parse_args()

    from ase.build import bulk

    from firemlip.io import write_frames
    from firemlip.models import MaceShape, build_mace, save_model
    from firemlip.training import finetune

    threads = args.threads if args.threads is not None else (1 if os.getloadavg()[0] > 1.0 else None)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    write_frames(out / "train.extxyz", cu_frames(12, 1))
    write_frames(out / "valid.extxyz", cu_frames(3, 2))
    host = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((args.repeat,) * 3)
    write_frames(out / "host.extxyz", [host])
    shape = MaceShape(channels=args.channels, max_L=1, r_max=4.5)
    init = build_mace(["Cu"], shape, seed=0)
    n_params = sum(p.numel() for p in init.parameters())
    save_model(init, out / "init.model")
    t0 = time.perf_counter()
    model = finetune("vanilla", out / "init.model", out / "train.extxyz", out / "valid.extxyz", out / "ft",
                     epochs=args.epochs, lr=0.02, batch_size=4, e0s="average", forces_weight=10.0,
                     stress_weight=0.0, ema_decay=0.9, progress=False, name="model", zbl=args.zbl)
    train_s = time.perf_counter() - t0

    cmd = [sys.executable, "-m", "firemlip", "audit", str(model), "--structures", str(out / "host.extxyz"),
           "--train", str(out / "train.extxyz"), "-o", str(out / "audit"), "--md-engine", args.engine, "-q"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if proc.returncode not in (0, 1):
        print(proc.stderr[-2000:], file=sys.stderr)
        return proc.returncode
    res = json.loads((out / "audit" / "audit.json").read_text())
    gates = {k: {"status": v["status"], "wall_s": round(v.get("wall_s", 0.0), 1)} for k, v in res["gates"].items()}
    load = os.getloadavg()
    summary = {"atoms": len(host), "model_parameters": n_params, "channels": args.channels, "zbl": args.zbl,
               "threads": threads, "train_s": round(train_s, 1), "audit_wall_s": round(wall, 1), "audit_cpu_s": round(cpu, 1),
               "target_s": 600, "within_target": wall < 600, "exit_status": proc.returncode,
               "md_engine": res["gates"].get("md_grid", {}).get("engine"), "gates": gates,
               "passed": res["passed"], "load_average": [round(x, 2) for x in load], "cpus": os.cpu_count()}
    (out / "bench_audit.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(proc.stdout)
    print(f"host {len(host)} atoms, model {n_params} parameters (channels {args.channels}, zbl {args.zbl}); "
          f"training {train_s:.1f} s (not in the target)")
    print(f"{'gate':<11} {'status':<8} wall_s")
    for k, v in gates.items():
        print(f"{k:<11} {v['status']:<8} {v['wall_s']}")
    print(f"audit total: {wall:.1f} s wall, {cpu:.1f} s CPU (target < 600 s); load average {load[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
