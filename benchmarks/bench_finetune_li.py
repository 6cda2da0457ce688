"""Benchmark: fine-tuning strategies on real DFT data (VASP PBE Li metal, mlearn), 50 training frames.

What it does (honest set-up — no MACE-MP file can be downloaded on this machine):

* **Foundation**: a small MACE (firemlip.models.build_mace, default "tiny": 8 channels, L=1, r_max 4.5 Å)
  pre-trained here from a random initialisation on ``--pretrain-frames`` AIMD frames of ``training.extxyz``
  (PBE bcc Li, 53–54 atoms). Its pretraining data is therefore the AIMD group; it has never seen surfaces,
  vacancies or strained (elastic) cells.
* **Task**: 50 frames drawn (seeded) from the non-AIMD groups of ``training.extxyz`` (Elastic, Surface,
  Vacancy); the remaining non-AIMD frames are the validation set. A distribution shift from the foundation's data.
* **Test**: ``test.extxyz`` (29 frames, all groups): energy (meV/atom) and force (meV/Å) RMSE of the foundation
  zero-shot, ``scratch``, ``vanilla`` and ``fire`` (user replay = the foundation's AIMD pretraining frames).
* **Forgetting**: on the AIMD frames of ``test.extxyz`` (pretraining-like, unseen): RMSE(model) / RMSE(foundation)
  for vanilla and fire (see firemlip.evaluation).
* **Speed**: median wall time per epoch (training + validation) of our loop (fire) vs ``mace_run_train``
  multihead fine-tuning (replay subset of the same size) on the same data, model and device.

Run: ``python benchmarks/bench_finetune_li.py [--data ../shared/data/li_metal_mlearn] [--device cpu]``.
Writes ``runs/bench_finetune_li/results.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "li_metal_mlearn"


def load_li(path: Path) -> list:
    """Read an mlearn Li extxyz; move ``energy``/``forces`` to REF_energy (eV)/REF_forces (eV/Å)."""
    from ase.io import read

    from firemlip.io import set_labels

    out = []
    for a in read(path, ":"):
        if a.calc is not None:
            e, f = a.calc.results["energy"], a.calc.results["forces"]
        else:
            e, f = a.info["energy"], a.arrays["forces"]
        a.calc = None
        for k in ("energy",):
            a.info.pop(k, None)
        a.arrays.pop("forces", None)
        set_labels(a, float(e), np.asarray(f))
        a.info["config_type"] = str(a.info.get("group", "Default"))
        out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=HERE.parent / "runs" / "bench_finetune_li")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n-train", type=int, default=50)
    ap.add_argument("--pretrain-frames", type=int, default=60)
    ap.add_argument("--pretrain-epochs", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs per strategy")
    ap.add_argument("--mace-epochs", type=int, default=3, help="epochs of mace_run_train (timing)")
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--max-L", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    train_file, test_file = args.data / "training.extxyz", args.data / "test.extxyz"
    if not train_file.exists() or not test_file.exists():
        print(f"bench_finetune_li: data not found in {args.data} (needs training.extxyz and test.extxyz)")
        return 1

    from firemlip.evaluation import evaluate
    from firemlip.io import write_frames
    from firemlip.models import MaceShape, build_mace, save_model
    from firemlip.training import finetune

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    train_all, test = load_li(train_file), load_li(test_file)
    rng = np.random.default_rng(args.seed)
    aimd = [a for a in train_all if a.info["config_type"].startswith("AIMD")]
    other = [a for a in train_all if not a.info["config_type"].startswith("AIMD")]
    pre = [aimd[i] for i in sorted(rng.permutation(len(aimd))[:args.pretrain_frames])]
    pre_valid = [aimd[i] for i in sorted(rng.permutation(len(aimd))[-10:])]
    perm = rng.permutation(len(other))
    task, valid = [other[i] for i in perm[:args.n_train]], [other[i] for i in perm[args.n_train:]]
    if not valid:
        valid = [task.pop()]
    files = {
        "pretrain": write_frames(out / "pretrain_aimd.extxyz", pre),
        "pretrain_valid": write_frames(out / "pretrain_valid.extxyz", pre_valid),
        "task": write_frames(out / "task_train.extxyz", task),
        "valid": write_frames(out / "task_valid.extxyz", valid),
        "test": write_frames(out / "test.extxyz", test),
        "test_aimd": write_frames(out / "test_aimd.extxyz",
                                  [a for a in test if a.info["config_type"].startswith("AIMD")]),
    }

    # 1. the foundation: pre-trained here on AIMD frames only
    shape = MaceShape(channels=args.channels, max_L=args.max_L, r_max=4.5)
    init = save_model(build_mace(["Li"], shape, seed=args.seed, avg_num_neighbors=14.0), out / "init.model")
    t0 = time.perf_counter()
    found = finetune("vanilla", init, files["pretrain"], files["pretrain_valid"], out / "foundation",
                     epochs=args.pretrain_epochs, lr=args.lr, batch_size=args.batch_size, e0s="average",
                     forces_weight=10.0, stress_weight=0.0, device=args.device, seed=args.seed, name="foundation",
                     progress=False)
    t_found = time.perf_counter() - t0
    print(f"[bench] foundation pre-trained in {t_found:.0f} s", flush=True)

    common = {"lr": args.lr, "batch_size": args.batch_size, "forces_weight": 10.0, "stress_weight": 0.0,
              "device": args.device, "seed": args.seed, "epochs": args.epochs, "progress": False}
    models = {"foundation (zero-shot)": found}
    walls: dict[str, float] = {}
    for strat in ("scratch", "vanilla", "fire"):
        t0 = time.perf_counter()
        models[strat] = finetune(strat, found, files["task"], files["valid"], out / strat,
                                 replay=files["pretrain"] if strat == "fire" else None, replay_ratio=1.0, **common)
        walls[strat] = time.perf_counter() - t0
        print(f"[bench] {strat} done in {walls[strat]:.0f} s", flush=True)
    t0 = time.perf_counter()
    mh = finetune("mace-multihead", found, files["task"], files["valid"], out / "mace-multihead",
                  replay=files["pretrain"], replay_ratio=1.0, **{**common, "epochs": args.mace_epochs})
    walls["mace-multihead"] = time.perf_counter() - t0
    print(f"[bench] mace-multihead done in {walls['mace-multihead']:.0f} s", flush=True)
    models[f"mace-multihead ({args.mace_epochs} ep)"] = mh

    rows = []
    for name, mp in models.items():
        kw = {}
        if name in ("vanilla", "fire"):
            kw = {"foundation": found, "replay": "test_aimd"}
        res = evaluate(mp, {"test": files["test"], "test_aimd": files["test_aimd"]}, out / "eval" /
                       name.split()[0], device=args.device, **kw)
        m = res["datasets"]["test"]["overall"]
        f = res.get("forgetting", {})
        rows.append((name, m["energy_rmse_meV_atom"], m["forces_rmse_meV_A"],
                     f.get("forgetting_ratio_energy"), f.get("forgetting_ratio_forces")))

    def epoch_median(d: Path) -> float:
        man = json.loads((d / "manifest.json").read_text())
        s = man["summary"]
        if "epoch_wall_s" in s:
            return float(np.median(s["epoch_wall_s"])) if s["epoch_wall_s"] else float("nan")
        import csv

        return float(np.median([float(r["epoch_wall_s"]) for r in csv.DictReader(open(d / "log.csv"))]))

    ours, theirs = epoch_median(out / "fire"), epoch_median(out / "mace-multihead")

    print()
    print(f"Li metal (mlearn, VASP PBE). Foundation: MACE {shape.channels}ch L={shape.max_L} r_max {shape.r_max} Å "
          f"pre-trained here on {len(pre)} AIMD frames for {args.pretrain_epochs} epochs ({t_found:.0f} s).")
    print(f"Task: {len(task)} non-AIMD training frames (Elastic/Surface/Vacancy), {len(valid)} validation; "
          f"test: {len(test)} frames of test.extxyz; fine-tuning {args.epochs} epochs, device {args.device}.")
    print(f"{'model':<26}{'E RMSE meV/atom':>16}{'F RMSE meV/Å':>14}{'forget E':>10}{'forget F':>10}")
    for name, e, fr, fe, ff in rows:
        fmt = (lambda v: "-" if v is None else f"{v:.2f}")  # noqa: E731
        print(f"{name:<26}{e:>16.2f}{fr:>14.1f}{fmt(fe):>10}{fmt(ff):>10}")
    print("forget = RMSE on the AIMD frames of test.extxyz (pretraining-like) / the foundation's RMSE there")
    print(f"wall time per epoch (median, train + validation): our loop (fire, {len(task)}+{len(task)} frames) "
          f"{ours:.2f} s, mace_run_train multihead {theirs:.2f} s, ratio ours/mace {ours / theirs:.2f}")
    print(f"total wall time {time.perf_counter() - t_all:.0f} s")
    from firemlip.io import write_json

    write_json(out / "results.json", {
        "rows": [dict(zip(("model", "energy_rmse_meV_atom", "forces_rmse_meV_A", "forgetting_ratio_energy",
                           "forgetting_ratio_forces"), r, strict=True)) for r in rows],
        "epoch_wall_s_median": {"firemlip_fire": ours, "mace_run_train": theirs}, "strategy_wall_s": walls,
        "foundation": {"frames": len(pre), "epochs": args.pretrain_epochs, "channels": shape.channels,
                       "max_L": shape.max_L, "r_max_A": shape.r_max}, "args": {k: str(v) for k, v in vars(args).items()},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
