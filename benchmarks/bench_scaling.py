"""Size scaling of LAMMPS + ``pair_style mace`` as users run it: ``firemlip lammps render scaling`` → ``lmp`` →
``firemlip analyze scaling``, bcc Li from 16 to 3456 atoms (replicates 2³ … 12³ of the 2-atom cubic cell, a = 3.44 Å).

Model shapes: ``--shape tiny`` (8x0e+8x1o, the CPU default: minutes on 2 cores) or ``--shape mp0-small``
(MACE-MP-0-small's shapes: 128x0e, L = 0, max_ell 3, r_max 6 Å, 2 interactions, correlation 3; random weights — speed
does not depend on them), exported in ``--dtype`` (float32 by default, as production MD). ``--device cuda`` runs
``pair_style mace device cuda`` (the plugin must be built against a CUDA torch). Writes ``scaling.json`` (ms/step
and µs/atom/step per size, fitted exponent) and ``scaling.png`` (log–log) under ``--out``, plus a summary JSON.

Reference (issue 21): ASE + mace-torch MACECalculator on one H100 (e3nn, float32, MACE-MP-0-small shapes, bcc Li):
24 / 38 / 69 / 129 / 231 ms/step at 128 / 432 / 1024 / 2000 / 3456 atoms (67 µs/atom/step at 3456); goal ≤ 10.

    python benchmarks/bench_scaling.py [--shape tiny|mp0-small] [--device cpu|cuda] [--steps 5] [--max-atoms 3456]
        [--threads 2] [--out runs/bench_scaling]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

from bench_lammps_md import _cpu_model  # noqa: E402

REFERENCE_ASE_H100_MS = {128: 24.0, 432: 38.0, 1024: 69.0, 2000: 129.0, 3456: 231.0}
SIZES = {16: 2, 128: 4, 432: 6, 1024: 8, 2000: 10, 3456: 12}  # atoms: replicate n of the 2-atom cell


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="tiny", choices=("tiny", "mp0-small"))
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--steps", type=int, default=5, help="timed steps per size (after 3 warm-up steps)")
    ap.add_argument("--max-atoms", type=int, default=3456)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--np", type=int, default=1, help="MPI ranks")
    ap.add_argument("--out", default="runs/bench_scaling")
    args = ap.parse_args()

    from ase.build import bulk

    from firemlip.analysis.scaling import analyze_scaling
    from firemlip.io import write_json
    from firemlip.lammps import export_model, render, run_lammps
    from firemlip.models import MaceShape, build_mace, save_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shape = "tiny" if args.shape == "tiny" else MaceShape(channels=128, max_L=0, max_ell=3, r_max=6.0,
                                                            correlation=3, num_interactions=2, num_bessel=8,
                                                            radial_mlp=(64, 64, 64))
    model = build_mace(["Li"], shape, atomic_energies={"Li": -1.9}, seed=0, dtype=args.dtype)
    save_model(model, out / "model.model")
    lmodel = export_model(out / "model.model", out / "model.lammps.pt", dtype=args.dtype)
    reps = [f"{n} {n} {n}" for atoms, n in SIZES.items() if atoms <= args.max_atoms]
    cell = bulk("Li", "bcc", a=3.44, cubic=True)
    inp = render("scaling", out / "run", cell, model=lmodel, pair_style=f"mace device {args.device}",
                 replicates=reps, steps=args.steps, warmup_steps=3, thermo_every=args.steps)
    run_lammps(inp.parent, np=args.np, threads=args.threads, progress=True, timeout=3600)
    label = f"LAMMPS pair_style mace, {args.shape}, {args.dtype}, {args.device}, {args.np} rank(s)"
    res = analyze_scaling([inp.parent], out / "analysis", label=label)
    rows = res["runs"]
    print(f"\n{label}\n| atoms | ms/step | µs/atom/step | ASE + MACECalculator on H100 (ms/step) |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        ref = REFERENCE_ASE_H100_MS.get(r["atoms"])
        print(f"| {r['atoms']} | {r['ms_per_step']:.1f} | {r['us_per_atom_step']:.1f} | "
              f"{'' if ref is None else f'{ref:.0f}'} |")
    write_json(out / "summary.json", {"label": label, "shape": args.shape, "dtype": args.dtype,
                                      "device": args.device, "np": args.np, "threads": args.threads,
                                      "cpu_model": _cpu_model(), "runs": rows, "exponent": res.get("exponent"),
                                      "reference_ase_h100_ms_per_step": REFERENCE_ASE_H100_MS,
                                      "goal_us_per_atom_step_at_3456": 10.0})
    print(f"wrote {out / 'summary.json'} and {out / 'analysis' / 'scaling.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
