"""Can a student shape fit the teacher's E(V) curves at all? Train = test on the volume/scan frames of a few prototypes.

Takes the labelled distillation set of a finished run (``pretrain.extxyz``), keeps the ``volume`` and ``scan`` frames
of the given prototypes, trains a fresh student of the ``small`` preset with one field changed (``--set
num_bessel=16`` …) on them and prints its energy error (meV/atom) on those same frames, frame by frame. A shape that
cannot fit the frames it was trained on cannot reach the held-out target either. Writes ``OUT/fit_ev.json``.

Run (a minute or two per shape on 1 core)::

    python benchmarks/bench_student_fit_ev.py --pretrain runs/bench_distill/distill/pretrain.extxyz \\
        --prototypes PS-zincblende --set num_bessel=16 --out runs/fit_ev/bessel16
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrain", type=Path, required=True, help="pretrain.extxyz of a distillation run")
    ap.add_argument("--prototypes", required=True, help="comma-separated prototype names, e.g. PS-zincblende")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="MaceShape fields to change in the small preset (num_bessel=16, max_ell=3, channels=64 …)")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--stress-weight", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    import torch

    from firemlip import models
    from firemlip.distill import build_student
    from firemlip.foundation import load_model
    from firemlip.io import read_frames, write_frames, write_json
    from firemlip.training.api import finetune
    from firemlip.training.data import predict

    torch.set_num_threads(args.threads)
    from firemlip.cli import key_value
    from firemlip.errors import FiremlipError

    changes = {}
    for item in args.set:
        key, val = key_value(item) if "=" in item else (item, None)
        changes[key] = [int(v) for v in str(val).split(",")] if key == "radial_mlp" else val
    try:
        shape = models.override_shape(models.PRESETS["small"], changes, "bench_student_fit_ev: --set")
    except (FiremlipError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    protos = set(args.prototypes.split(","))
    pretrain = read_frames(args.pretrain, what="distillation set")
    frames = [a for a in pretrain
              if a.info.get("prototype") in protos and a.info.get("config_type") in ("volume", "scan")]
    if not frames:
        print(f"bench_student_fit_ev: no volume/scan frames of {sorted(protos)} in {args.pretrain}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    write_frames(args.out / "frames.extxyz", frames)
    elements = sorted({s for a in pretrain for s in a.get_chemical_symbols()})
    models.save_model(build_student(elements, frames, shape, 0, "float32"), args.out / "init.model")
    t0 = time.time()
    path = finetune("scratch", args.out / "init.model", args.out / "frames.extxyz", args.out / "frames.extxyz",
                    args.out / "train", epochs=args.epochs, lr=5e-3, batch_size=4, energy_weight=100.0,
                    forces_weight=10.0, stress_weight=args.stress_weight, dtype="float32", lr_schedule="cosine",
                    e0s="foundation", progress=False, patience=10 * args.epochs)
    wall = time.time() - t0
    model = load_model(path, dtype="float64")
    pred = predict(model, frames, compute_stress=False)
    err = np.array([(e - a.info["REF_energy"]) / len(a) for a, e in zip(frames, pred.energy, strict=True)]) * 1e3
    rows = sorted(({"prototype": a.info["prototype"], "scale": float(a.info["scale"]), "error_meV_atom": float(d)}
                   for a, d in zip(frames, err, strict=True)), key=lambda r: (r["prototype"], r["scale"]))
    res = {"shape": dataclasses.asdict(shape), "changes": changes, "n_frames": len(frames),
           "epochs": args.epochs, "stress_weight": args.stress_weight, "train_wall_s": round(wall, 1),
           "parameters": sum(p.numel() for p in model.parameters()),
           "energy_rmse_meV_atom": float(np.sqrt(np.mean(err ** 2))), "energy_max_meV_atom": float(np.abs(err).max()),
           "frames": rows}
    write_json(args.out / "fit_ev.json", res)
    print(f"{changes or 'small'}: {len(frames)} frames, {wall:.0f} s, train E RMSE {res['energy_rmse_meV_atom']:.1f} "
          f"meV/atom (max {res['energy_max_meV_atom']:.1f}), {res['parameters']:,} parameters")
    for r in rows:
        print(f"  {r['prototype']:<20}{r['scale']:8.3f}{r['error_meV_atom']:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
