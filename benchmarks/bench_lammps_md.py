"""MD speed: LAMMPS with pair_style mace (plugin) vs ASE MD with MACECalculator, same model.

Prints ms/step for LiCl rock-salt cells of 96 and 1000 atoms (rattled, 300 K, NVE), float64 and float32, and the
ratio ASE/LAMMPS (> 1: LAMMPS faster); writes the numbers to JSON (default runs/bench_lammps_md.json).
Both engines are warmed up first (TorchScript's first calls are slow). Model: 16x0e+16x1o, r_max 4.5 Å.

    python benchmarks/bench_lammps_md.py [--steps-small 20] [--steps-large 5] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

from firemlip.lammps import export_model, plugin_path, run_lammps  # noqa: E402
from firemlip.models import MaceShape, build_mace, save_model  # noqa: E402
from firemlip.workflow.manifest import write_json  # noqa: E402

SHAPE = MaceShape(channels=16, max_L=1, max_ell=2, r_max=4.5, radial_mlp=(16, 16))
SIZES = {96: (2, 2, 3), 1000: (5, 5, 5)}


def structure(natoms: int, seed: int = 0):
    a = bulk("LiCl", "rocksalt", a=5.14, cubic=True).repeat(SIZES[natoms])
    a.rattle(0.05, seed=seed)
    return a


def lammps_ms_per_step(work: Path, atoms, lmodel: Path, steps: int, threads: int, pair_options: str = "",
                       np_: int = 1) -> float:
    from ase.io import write

    work.mkdir(parents=True, exist_ok=True)
    write(work / "data.bench", atoms, format="lammps-data", specorder=["Li", "Cl"], masses=True)
    (work / "in.bench").write_text(f"""units metal
atom_style atomic
boundary p p p
plugin load {plugin_path()}
read_data data.bench
pair_style mace threads {max(1, threads // np_)} {pair_options}
pair_coeff * * {lmodel} Li Cl
neighbor 1.0 bin
timestep 0.001
velocity all create 300 1 mom yes rot no
fix md all nve
thermo {steps}
run 3
run {steps}
""")
    log = run_lammps(work, "in.bench", np=np_, threads=max(1, threads // np_), progress=False)
    return log["timing"][-1]["ms_per_step"]


def ase_ms_per_step(atoms, model: Path, dtype: str, steps: int, threads: int) -> float:
    import torch
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet
    from mace.calculators import MACECalculator

    torch.set_num_threads(threads)
    at = atoms.copy()
    at.calc = MACECalculator(model_paths=str(model), device="cpu", default_dtype=dtype)
    MaxwellBoltzmannDistribution(at, temperature_K=300, rng=np.random.default_rng(1))
    md = VelocityVerlet(at, timestep=1.0 * units.fs)
    md.run(3)  # warm-up
    t0 = time.perf_counter()
    md.run(steps)
    return 1000.0 * (time.perf_counter() - t0) / steps


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps-small", type=int, default=20, help="timed steps at 96 atoms")
    ap.add_argument("--steps-large", type=int, default=5, help="timed steps at 1000 atoms")
    ap.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads for both engines")
    ap.add_argument("--sizes", default="96,1000", help="comma-separated atom counts (96, 1000)")
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--out", default="runs/bench_lammps_md.json")
    ap.add_argument("--pair-options", default="", help="extra pair_style mace keywords, e.g. 'executor profiling "
                                                        "malloc default' (the plugin's settings before session 11)")
    ap.add_argument("--skip-ase", action="store_true", help="time LAMMPS only")
    ap.add_argument("--np", type=int, default=1, help="LAMMPS MPI ranks (the --threads are shared among them; "
                                                      "several ranks run pair_style mace mode mp)")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        nparams = 0
        for dtype in args.dtypes.split(","):
            mdl = tmp / f"bench_{dtype}.model"
            m = build_mace(["Li", "Cl"], SHAPE, atomic_energies={"Li": -1.9, "Cl": -1.8}, seed=0, dtype=dtype)
            save_model(m, mdl)
            nparams = sum(p.numel() for p in m.parameters())
            lmodel = export_model(mdl, tmp / f"bench_{dtype}.lammps.pt", dtype=dtype)
            for n in (int(s) for s in args.sizes.split(",")):
                steps = args.steps_small if n < 500 else args.steps_large
                atoms = structure(n)
                lmp = lammps_ms_per_step(tmp / f"lmp_{dtype}_{n}", atoms, lmodel, steps, args.threads,
                                         args.pair_options, args.np)
                ase_ms = float("nan") if args.skip_ase else ase_ms_per_step(atoms, mdl, dtype, steps, args.threads)
                rows.append({"atoms": n, "dtype": dtype, "steps": steps, "lammps_ranks": args.np,
                             "lammps_threads_per_rank": max(1, args.threads // args.np), "lammps_ms_per_step": lmp,
                             "ase_ms_per_step": ase_ms, "speedup_lammps_vs_ase": ase_ms / lmp})
                print(f"{n:6d} {dtype:8s} LAMMPS {lmp:9.1f} ms/step   ASE {ase_ms:9.1f} ms/step   "
                      f"ratio {ase_ms / lmp:5.2f}", flush=True)
    print("\n| atoms | dtype | LAMMPS ms/step | ASE ms/step | ASE/LAMMPS |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['atoms']} | {r['dtype']} | {r['lammps_ms_per_step']:.1f} | {r['ase_ms_per_step']:.1f} | "
              f"{r['speedup_lammps_vs_ase']:.2f} |")
    write_json(args.out, {"model": {"shape": SHAPE.__dict__, "parameters": nparams}, "threads": args.threads,
                          "pair_options": args.pair_options, "cpu_model": _cpu_model(),
                          "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "results": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
