"""Per-frame errors of MACE models on labelled frames, grouped by frame kind: where an RMSE comes from.

An energy RMSE over a few dozen frames is often carried by one or two of them (an unseen slab facet in a distillation
set, two surface frames in a DFT test set). This script predicts each file's frames with each model and prints, per
group, the number of frames, the mean and RMS per-atom energy error (model - reference, meV/atom) and the force RMSE
(meV/Å, over force components as in the distillation report), then the worst frames and the energy RMSE without
the single worst frame.

Frames are firemlip extxyz (``REF_energy``/``REF_forces``) or mlearn extxyz (``energy``/``forces`` with a ``group``
key, read as in ``bench_distill.py``). Groups are formed from ``--keys`` (default ``config_type`` plus, where present,
``prototype`` and ``miller``).

Run::

    python benchmarks/bench_distill_frames.py --models student=runs/bench_distill/distill/foundation.model \\
        --frames runs/bench_distill/distill/work/test.extxyz --out runs/bench_distill/frames.json
    python benchmarks/bench_distill_frames.py --models fire=runs/X/finetune/fire/fire.model \\
        scratch=runs/X/finetune/scratch/scratch.model --frames ../shared/data/li_metal_mlearn/test.extxyz
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def read_any(path: Path) -> list:
    """firemlip frames (``REF_energy``) as they are, mlearn frames through ``bench_distill.read_mlearn``."""
    from ase.io import read

    first = read(path, 0)
    if "REF_energy" in first.info:
        from firemlip.io import read_frames

        return read_frames(path)
    from bench_distill import read_mlearn

    return read_mlearn(path)


def group_name(atoms, keys: list[str]) -> str:
    parts = [str(atoms.info[k]) for k in keys if k in atoms.info]
    return "/".join(parts) or "all"


def frame_errors(model_path: Path, frames: list, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame per-atom energy error (meV/atom) and per-frame force RMSE (meV/Å) of one model."""
    from firemlip.foundation import load_model
    from firemlip.training.data import predict

    model = load_model(model_path, device=device, dtype="float64")
    pred = predict(model, frames, device=device, compute_stress=False)
    de = np.array([(e - a.info["REF_energy"]) / len(a) * 1000 for e, a in zip(pred.energy, frames, strict=True)])
    df = np.array([np.sqrt(np.mean((f - a.arrays["REF_forces"]) ** 2)) * 1000
                   for f, a in zip(pred.forces, frames, strict=True)])
    return de, df


def summarise(frames: list, de: np.ndarray, df: np.ndarray, keys: list[str], worst: int) -> dict:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(frames):
        groups[group_name(a, keys)].append(i)
    n_at = np.array([len(a) for a in frames], dtype=float)

    def f_rmse(idx) -> float:  # over force components, as in the distillation report (atoms weigh equally)
        return float(np.sqrt(np.sum(df[idx] ** 2 * n_at[idx]) / np.sum(n_at[idx])))

    every = np.arange(len(frames))
    out = {"energy_rmse_meV_atom": float(np.sqrt(np.mean(de ** 2))), "forces_rmse_meV_A": f_rmse(every),
           "n_frames": len(frames), "groups": {}, "worst": []}
    order = np.argsort(-np.abs(de))
    out["energy_rmse_without_worst_meV_atom"] = float(np.sqrt(np.mean(np.delete(de, order[0]) ** 2))) \
        if len(de) > 1 else None
    for g, idx in sorted(groups.items()):
        out["groups"][g] = {"n": len(idx), "energy_mean_meV_atom": float(de[idx].mean()),
                            "energy_rms_meV_atom": float(np.sqrt(np.mean(de[idx] ** 2))),
                            "forces_rmse_meV_A": f_rmse(idx)}
    for i in order[:worst]:
        a = frames[int(i)]
        out["worst"].append({"index": int(i), "group": group_name(a, keys), "n_atoms": len(a),
                             "formula": a.get_chemical_formula(), "energy_error_meV_atom": float(de[i]),
                             "forces_rmse_meV_A": float(df[i])})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True, help="NAME=PATH of MACE .model files")
    ap.add_argument("--frames", nargs="+", type=Path, required=True, help="labelled extxyz files")
    ap.add_argument("--keys", default="config_type,prototype,miller", help="info keys that form the groups")
    ap.add_argument("--worst", type=int, default=5, help="worst frames listed per model and file")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="JSON with every figure printed")
    args = ap.parse_args(argv)
    keys = [k for k in args.keys.split(",") if k]
    models = {}
    for spec in args.models:
        name, _, path = spec.rpartition("=")
        models[name or Path(path).stem] = Path(path)
    for p in [*models.values(), *args.frames]:
        if not p.exists():
            print(f"bench_distill_frames: {p} not found", file=sys.stderr)
            return 2
    results: dict[str, dict] = {}
    for fpath in args.frames:
        frames = read_any(fpath)
        for name, mpath in models.items():
            de, df = frame_errors(mpath, frames, args.device)
            s = summarise(frames, de, df, keys, args.worst)
            results[f"{name} @ {fpath.name}"] = s
            print(f"\n== {name} on {fpath} ({len(frames)} frames): E {s['energy_rmse_meV_atom']:.2f} meV/atom "
                  f"(without the worst frame {s['energy_rmse_without_worst_meV_atom'] or float('nan'):.2f}), "
                  f"F {s['forces_rmse_meV_A']:.1f} meV/Å")
            print(f"{'group':40s} {'n':>4s} {'mean dE':>9s} {'rms dE':>9s} {'F rmse':>8s}")
            for g, r in s["groups"].items():
                print(f"{g:40s} {r['n']:4d} {r['energy_mean_meV_atom']:9.2f} {r['energy_rms_meV_atom']:9.2f} "
                      f"{r['forces_rmse_meV_A']:8.1f}")
            print("worst:", "; ".join(f"#{w['index']} {w['group']} {w['formula']} {w['energy_error_meV_atom']:+.1f}"
                                      for w in s["worst"]))
    if args.out:
        from firemlip.io import write_json

        write_json(args.out, {"models": {k: str(v) for k, v in models.items()},
                              "frames": [str(p) for p in args.frames], "keys": keys, "results": results})
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
