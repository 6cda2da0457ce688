"""LAMMPS ``pair_style mace device cuda`` against mace-torch's MACECalculator (CPU, float64) on a triclinic cell.

Acceptance of issue 21: forces within 1e-5 eV/Å with a float64 export, 1e-3 eV/Å with float32. Also times 200 MD
steps of a 1000-atom cell on the GPU. Writes JSON.

    python benchmarks/gpu/parity_cuda.py [--out runs/gpu/parity_cuda.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def single_point(work: Path, atoms, lmodel: Path, device: str) -> tuple[float, np.ndarray]:
    from ase.io import write

    from firemlip.lammps import plugin_path, run_lammps

    work.mkdir(parents=True, exist_ok=True)
    write(work / "data.sp", atoms, format="lammps-data", specorder=["Li", "Cl"], masses=True)
    (work / "in.sp").write_text(f"""units metal
atom_style atomic
plugin load {plugin_path()}
read_data data.sp
pair_style mace device {device}
pair_coeff * * {lmodel} Li Cl
dump d all custom 1 forces.dump id fx fy fz
dump_modify d sort id format float %.16g
run 0
print "$(pe:%.16g)" file energy.txt
""")
    run_lammps(work, "in.sp", threads=1, progress=False, timeout=600)
    return float((work / "energy.txt").read_text().split()[-1]), np.loadtxt(work / "forces.dump", skiprows=9)[:, 1:]


def md_ms_per_step(work: Path, atoms, lmodel: Path, device: str, steps: int = 200) -> float:
    from ase.io import write

    from firemlip.lammps import plugin_path, run_lammps

    work.mkdir(parents=True, exist_ok=True)
    write(work / "data.md", atoms, format="lammps-data", specorder=["Li", "Cl"], masses=True)
    (work / "in.md").write_text(f"""units metal
atom_style atomic
plugin load {plugin_path()}
read_data data.md
pair_style mace device {device}
pair_coeff * * {lmodel} Li Cl
velocity all create 300 1
fix f all nve
timestep 0.001
run 10
run {steps}
""")
    return run_lammps(work, "in.md", threads=1, progress=False, timeout=600)["timing"][-1]["ms_per_step"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/gpu/parity_cuda.json")
    ap.add_argument("--device", default="cuda", help="cpu to check this script on a machine without a GPU")
    args = ap.parse_args()
    from ase.build import bulk
    from mace.calculators import MACECalculator

    from firemlip.io import write_json
    from firemlip.lammps import export_model
    from firemlip.models import build_mace, save_model

    atoms = bulk("LiCl", "rocksalt", a=5.2, cubic=True).repeat((2, 1, 1))
    cell = np.array(atoms.cell)
    cell[1, 0] += 0.6
    cell[2, 0] -= 0.5
    cell[2, 1] += 0.4
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.15, seed=1)
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        m = build_mace(["Li", "Cl"], "tiny", atomic_energies={"Li": -1.5, "Cl": -2.5}, seed=3, dtype="float64")
        save_model(m, tmp / "m.model")
        ref = atoms.copy()
        ref.calc = MACECalculator(model_paths=str(tmp / "m.model"), device="cpu", default_dtype="float64")
        e_ref, f_ref = ref.get_potential_energy(), ref.get_forces()
        for dtype, tol in (("float64", 1e-5), ("float32", 1e-3)):
            lm = export_model(tmp / "m.model", tmp / f"m_{dtype}.lammps.pt", dtype=dtype)
            e, f = single_point(tmp / f"sp_{dtype}", atoms, lm, args.device)
            err = float(np.abs(f - f_ref).max())
            result[dtype] = {"energy_error_eV": abs(e - e_ref), "force_error_max_eV_A": err, "tolerance": tol,
                             "ok": err <= tol}
            big = bulk("LiCl", "rocksalt", a=5.14, cubic=True).repeat((5, 5, 5))
            big.rattle(0.05, seed=0)
            result[dtype][f"md_1000_atoms_ms_per_step_{args.device}"] = md_ms_per_step(tmp / f"md_{dtype}", big, lm,
                                                                                      args.device, 20)
            print(dtype, result[dtype], flush=True)
    write_json(args.out, result)
    return 0 if all(r["ok"] for r in result.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
