"""The first epochs of student variants on the frames of a finished distillation run: which change learns faster?

Builds each variant's student (the ``small`` preset with ``MaceShape`` fields replaced) on the run's
``work/train.extxyz`` and trains it for ``--epochs`` (10) epochs with the run's training settings, a learning-rate
schedule planned for ``--plan`` (146) epochs as in a budgeted run, and any :class:`firemlip.training.loop.
FinetuneOptions` changes the variant gives. Prints the validation energy (meV/atom) and force (meV/Å) RMSE per
epoch, also of the finished run's own log for comparison, and writes them to ``OUT/start.json``.

Run (about 4 min per variant on 2 cores)::

    python benchmarks/bench_student_start.py runs/bench_distill/distill \\
        '{"b16": {"shape": {"num_bessel": 16}}, "w10": {"energy_weight": 10.0}}' --out runs/student_start
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def _curve(log: Path, n: int) -> list[list[float]]:
    """[[energy meV/atom, forces meV/Å], ...] of the first n epochs of a training log.csv."""
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    return [[round(float(r["valid_rmse_e_meV_atom"]), 2), round(float(r["valid_rmse_f_meV_A"]), 1)] for r in rows]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path, help="distill directory of a finished run (with work/train.extxyz)")
    ap.add_argument("variants", help='JSON: {"name": {"shape": {MaceShape fields}, other FinetuneOptions}, ...}')
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--plan", type=int, default=146, help="epochs the learning-rate schedule is planned for")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/student_start"))
    args = ap.parse_args(argv)
    work = args.base / "work"
    report = args.base / "report.json"
    if not (work / "train.extxyz").exists() or not report.exists():
        print(f"bench_student_start: {work / 'train.extxyz'} or {report} not found (a finished distill run?)",
              file=sys.stderr)
        return 2
    try:
        variants = json.loads(args.variants)
        assert isinstance(variants, dict) and all(isinstance(v, dict) for v in variants.values())
    except (json.JSONDecodeError, AssertionError):
        print('bench_student_start: variants must be a JSON object of objects, e.g. {"b16": {"shape": '
              '{"num_bessel": 16}}}', file=sys.stderr)
        return 2
    import torch

    from firemlip.distill import DistillSettings, build_student
    from firemlip.io import read_frames, write_json
    from firemlip.models import PRESETS, override_shape, save_model
    from firemlip.training.api import finetune

    torch.set_num_threads(args.threads)
    rep = json.loads(report.read_text())
    train = read_frames(work / "train.extxyz")
    args.out.mkdir(parents=True, exist_ok=True)
    curves = {"base run": _curve(work / "train" / "log.csv", args.epochs)}
    for name, v in variants.items():
        v = dict(v)
        shape = override_shape(PRESETS[rep.get("size", "small")], v.pop("shape", {}), f"variant {name}: shape")
        template = args.out / f"{name}.model"
        save_model(build_student(rep["elements"], train, shape, 0, "float32"), template)
        opts = {**DistillSettings().student_options(), **v, "progress": False}
        finetune("scratch", template, work / "train.extxyz", work / "valid.extxyz", args.out / name,
                 epochs=args.epochs, schedule_epochs=args.plan, device="cpu", seed=0, **opts)
        curves[name] = _curve(args.out / name / "log.csv", args.epochs)
    write_json(args.out / "start.json", {"base": os.fspath(args.base), "variants": variants, "plan": args.plan,
                                         "valid_E_meV_atom_F_meV_A_per_epoch": curves})
    for name, c in curves.items():
        print(f"{name:<14}" + " ".join(f"{e:.1f}/{f:.0f}" for e, f in c))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
