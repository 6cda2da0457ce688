"""Fine-tuning settings on a finished ``bench_distill.py`` run: fire (and scratch) variants, chosen by validation.

Reuses the run's student (``OUT/distill/foundation.model``), its replay data (``pretrain.extxyz``) and the 50
li_metal_mlearn training / validation frames it drew (``OUT/finetune/{train,valid}.extxyz``). Each variant is a JSON
object of :func:`firemlip.training.api.finetune` keywords over a base of 60 epochs, lr 1e-2, no stress, energy weight 1
(the engine's default; ``bench_distill.py`` now uses 10), ``e0s=estimated``; fire: Li-only replay at weight 0.1,
replay energies on; ``"strategy": "scratch"`` trains fresh
weights instead. Reports energy (meV/atom) and force (meV/Å) RMSE on the validation frames (choose by these) and on
``test.extxyz`` (report these), and the force RMSE on the teacher's held-out Li frames (forgetting). Results are
merged into ``OUT/fire_variants.json``.

Run (about 14 min per fire variant, 10 per scratch variant on 2 cores)::

    python benchmarks/bench_fire_variants.py runs/bench_distill '{"rw0.3": {"replay_weight": 0.3}}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="output directory of a finished bench_distill.py run")
    ap.add_argument("variants", help='JSON: {"name": {finetune keywords}, ...}')
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "li_metal_mlearn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        variants = json.loads(args.variants)
        assert isinstance(variants, dict) and all(isinstance(v, dict) for v in variants.values())
    except (json.JSONDecodeError, AssertionError):
        print('bench_fire_variants: variants must be a JSON object of objects, e.g. {"a": {"lr": 0.003}}',
              file=sys.stderr)
        return 2
    need = [args.run / "distill" / "foundation.model", args.run / "distill" / "pretrain.extxyz",
            args.run / "finetune" / "train.extxyz", args.run / "finetune" / "valid.extxyz",
            args.data / "test.extxyz"]
    missing = [os.fspath(p) for p in need if not p.exists()]
    if missing:
        print(f"bench_fire_variants: missing {', '.join(missing)} (run benchmarks/bench_distill.py first)",
              file=sys.stderr)
        return 2
    import torch
    from bench_distill import evaluate, read_mlearn

    from firemlip.io import read_frames, write_json
    from firemlip.training.api import finetune

    torch.set_num_threads(args.threads)
    run = args.run
    test = read_mlearn(args.data / "test.extxyz")
    valid = read_frames(run / "finetune" / "valid.extxyz")
    pretrain = run / "distill" / "pretrain.extxyz"
    old = [a for a in read_frames(pretrain) if a.info.get("distill_split") == "test"
           and set(a.get_chemical_symbols()) <= {"Li"}]
    res_path = run / "fire_variants.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else {}
    for name, kw in variants.items():
        kw = dict(kw)
        strategy = kw.pop("strategy", "fire")
        opts: dict = dict(epochs=60, device=args.device, seed=0, stress_weight=0.0, lr=1e-2, progress=False,
                          e0s="estimated")
        if strategy == "fire":
            opts.update(replay=pretrain, replay_filter="subset", replay_weight=0.1, replay_energy_weight=1.0)
        opts.update(kw)
        t0 = time.time()
        model = finetune(strategy, run / "distill" / "foundation.model", run / "finetune" / "train.extxyz",
                         run / "finetune" / "valid.extxyz", run / "finetune" / f"var_{name}", **opts)
        row = {"strategy": strategy, "changes": kw, "valid": evaluate(model, valid, args.device),
               "test": evaluate(model, test, args.device), "wall_time_s": round(time.time() - t0, 1),
               "replay_heldout_forces_rmse_meV_A": evaluate(model, old, args.device)["forces_rmse_meV_A"]}
        # merged into what is on disk now: another bench_fire_variants on the same run may have written meanwhile
        results = json.loads(res_path.read_text()) if res_path.exists() else {}
        results[name] = row
        write_json(res_path, results)
    print(f"{'variant':<16}{'strategy':>9}{'valid E':>9}{'F':>7}{'test E':>9}{'F':>7}{'old Li F':>10}")
    for name, r in results.items():
        v, t = r["valid"], r["test"]
        print(f"{name:<16}{r['strategy']:>9}{v['energy_rmse_meV_atom']:>9.1f}{v['forces_rmse_meV_A']:>7.1f}"
              f"{t['energy_rmse_meV_atom']:>9.1f}{t['forces_rmse_meV_A']:>7.1f}"
              f"{r['replay_heldout_forces_rmse_meV_A']:>10.1f}")
    print(f"results → {res_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
