"""How far a distillation teacher is from the task's DFT, per configuration group (zero-shot, no fine-tuning).

Labels every frame of DFT extxyz files (default: ``li_metal_mlearn`` training + test) with a teacher through
firemlip's labelling stage (cached, so a rerun is instant), removes one per-atom energy offset fitted on the bulk
group (the teacher's and the DFT's energy zeros differ), and prints per group the mean and RMS per-atom energy error
(meV/atom) and the force RMSE (meV/Å). A teacher that underbinds surfaces or vacancies (the "systematic softening"
of universal potentials) passes that error to its student and to FIRE's replay data.

Run (about 2 minutes for SevenNet-0 on 270 Li frames on 2 idle cores)::

    python benchmarks/bench_teacher_vs_dft.py --teacher sevenn --out benchmarks/results/teacher_vs_dft_sevenn_li.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = HERE.parent.parent / "shared" / "data" / "li_metal_mlearn"
    ap.add_argument("--files", nargs="+", type=Path, default=[data / "training.extxyz", data / "test.extxyz"],
                    help="DFT extxyz files with energies and forces (mlearn's 'group' key names the groups)")
    ap.add_argument("--teacher", default="sevenn", help="any labeller name: sevenn, chgnet, mace:PATH, worker:...")
    ap.add_argument("--bulk-group", default="AIMD-NVT", help="group whose mean error defines the energy offset")
    ap.add_argument("--cache", type=Path, default=Path("runs/teacher_vs_dft_cache"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="JSON with the per-group figures")
    args = ap.parse_args(argv)
    from ase import Atoms
    from bench_distill import read_mlearn

    from firemlip.io import write_json
    from firemlip.labelling import label_frames

    frames = [a for f in args.files for a in read_mlearn(f)]
    plain = [Atoms(a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc) for a in frames]
    lab, failed = label_frames(plain, args.teacher, {"device": args.device}, args.cache, source_path="teacher check")
    if failed:
        print(f"bench_teacher_vs_dft: the teacher failed on {len(failed)} frames", file=sys.stderr)
        return 1
    groups = np.array([a.info["config_type"] for a in frames])
    de = np.array([(b.info["REF_energy"] - a.info["REF_energy"]) / len(a) for a, b in zip(frames, lab, strict=True)])
    if not np.any(groups == args.bulk_group):
        print(f"bench_teacher_vs_dft: no frame of group {args.bulk_group!r} (groups: {sorted(set(groups))})",
              file=sys.stderr)
        return 2
    offset = float(np.mean(de[groups == args.bulk_group]))
    de = (de - offset) * 1000
    res: dict = {"teacher": args.teacher, "files": [os.fspath(f) for f in args.files], "bulk_group": args.bulk_group,
                 "offset_eV_atom": offset, "groups": {}}
    print(f"teacher {args.teacher}: per-atom energy offset (teacher − DFT) on {args.bulk_group}: {offset * 1000:.1f} "
          "meV/atom, removed below")
    print(f"{'group':<12} {'n':>4} {'E mean':>9} {'E RMSE':>9} {'F RMSE':>9}   (meV/atom, meV/Å)")
    for g in sorted(set(groups)):
        idx = np.flatnonzero(groups == g)
        f_err = np.concatenate([(lab[i].arrays["REF_forces"] - frames[i].arrays["REF_forces"]).ravel() for i in idx])
        row = {"n_frames": int(len(idx)), "energy_mean_meV_atom": float(de[idx].mean()),
               "energy_rmse_meV_atom": float(np.sqrt(np.mean(de[idx] ** 2))),
               "forces_rmse_meV_A": float(np.sqrt(np.mean(f_err ** 2)) * 1000)}
        res["groups"][g] = row
        print(f"{g:<12} {row['n_frames']:>4} {row['energy_mean_meV_atom']:>9.1f} {row['energy_rmse_meV_atom']:>9.1f} "
              f"{row['forces_rmse_meV_A']:>9.1f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, res)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
