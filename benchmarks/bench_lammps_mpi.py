"""MPI scaling of ``pair_style mace``: ms/step and peak memory per rank on 1, 2 (and 4) ranks, modes mp and ghost.

Rock-salt LiCl, rattled, NVE from 300 K; model 16x0e+16x1o, 2 interactions, r_max 4.5 Å (float64), as in
bench_lammps_md.py. Every configuration uses the same total number of threads (``--threads``, default the machine's
cores): 1 rank × T threads against R ranks × T/R threads. The plugin prints its peak resident memory per rank
(VmHWM) at the end of each run; the timed run follows a short warm-up. Prints a table with the speed-up over one
rank and writes JSON.

    python benchmarks/bench_lammps_mpi.py [--atoms 1000,4000] [--ranks 1,2] [--modes mp,ghost] [--steps 10]
        [--out benchmarks/results/bench_lammps_mpi_2cpu.json]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

from ase.build import bulk  # noqa: E402
from bench_lammps_md import SHAPE, _cpu_model  # noqa: E402

from firemlip.lammps import export_model, plugin_path, run_lammps  # noqa: E402
from firemlip.models import build_mace, save_model  # noqa: E402
from firemlip.workflow.manifest import write_json  # noqa: E402

REPEATS = {1000: (5, 5, 5), 4000: (10, 10, 5), 8000: (10, 10, 10)}  # conventional 8-atom cells
_HWM = re.compile(r"peak memory per rank \(VmHWM\): max ([0-9.]+) MiB, mean ([0-9.]+) MiB")
_MODE = re.compile(r"pair_style mace: (.*?) graph mode")


def structure(natoms: int):
    a = bulk("LiCl", "rocksalt", a=5.14, cubic=True).repeat(REPEATS[natoms])
    a.rattle(0.05, seed=0)
    return a


def run_case(work: Path, atoms, lmodel: Path, ranks: int, threads: int, mode: str, steps: int) -> dict:
    from ase.io import write

    work.mkdir(parents=True, exist_ok=True)
    write(work / "data.b", atoms, format="lammps-data", specorder=["Li", "Cl"], masses=True)
    (work / "in.b").write_text(f"""units metal
atom_style atomic
plugin load {plugin_path()}
read_data data.b
pair_style mace mode {mode} threads {threads}
pair_coeff * * {lmodel} Li Cl
neighbor 1.0 bin
timestep 0.001
velocity all create 300 1 mom yes rot no
fix md all nve
thermo {steps}
run 2
run {steps}
""")
    log = run_lammps(work, "in.b", np=ranks, threads=threads, progress=False, timeout=3600)
    text = (work / "log.lammps").read_text()
    hwm = _HWM.findall(text)
    graph_mode = _MODE.search(text)
    return {"ms_per_step": log["timing"][-1]["ms_per_step"],
            "peak_rss_per_rank_MiB_max": float(hwm[-1][0]) if hwm else None,
            "peak_rss_per_rank_MiB_mean": float(hwm[-1][1]) if hwm else None,
            "graph_mode": graph_mode.group(1) if graph_mode else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", default="1000,4000", help="comma-separated: 1000, 4000, 8000")
    ap.add_argument("--ranks", default="1,2" + (",4" if (os.cpu_count() or 1) >= 4 else ""))
    ap.add_argument("--modes", default="mp,ghost", help="modes for several ranks (one rank runs mode local)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="total threads of every run")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="runs/bench_lammps_mpi.json")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        m = build_mace(["Li", "Cl"], SHAPE, atomic_energies={"Li": -1.9, "Cl": -1.8}, seed=0, dtype="float64")
        save_model(m, tmp / "b.model")
        lmodel = export_model(tmp / "b.model", tmp / "b.lammps.pt", dtype="float64")
        for n in (int(x) for x in args.atoms.split(",")):
            atoms = structure(n)
            base = None
            for ranks in (int(x) for x in args.ranks.split(",")):
                for mode in (["local"] if ranks == 1 else args.modes.split(",")):
                    threads = max(1, args.threads // ranks)
                    r = run_case(tmp / f"{n}_{ranks}_{mode}", atoms, lmodel, ranks, threads, mode, args.steps)
                    if ranks == 1:
                        base = r["ms_per_step"]
                    r.update(atoms=n, ranks=ranks, threads_per_rank=threads, mode=mode,
                             speedup_vs_1_rank=(base / r["ms_per_step"]) if base else None)
                    rows.append(r)
                    print(f"{n:6d} atoms  {ranks} rank(s) x {threads} thread(s)  {mode:6s} {r['ms_per_step']:9.1f} "
                          f"ms/step  speed-up {r['speedup_vs_1_rank'] or float('nan'):5.2f}  peak "
                          f"{r['peak_rss_per_rank_MiB_max'] or float('nan'):7.0f} MiB/rank", flush=True)
    print("\n| atoms | ranks × threads | mode | ms/step | speed-up vs 1 rank | peak MiB per rank |")
    print("|---:|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['atoms']} | {r['ranks']} × {r['threads_per_rank']} | {r['mode']} | {r['ms_per_step']:.1f} | "
              f"{r['speedup_vs_1_rank']:.2f} | {r['peak_rss_per_rank_MiB_max']:.0f} |")
    write_json(args.out, {"model": {"shape": SHAPE.__dict__, "dtype": "float64"}, "steps": args.steps,
                          "total_threads": args.threads, "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
                          "load_average_at_end": os.getloadavg(), "results": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
