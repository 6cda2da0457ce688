"""``firemlip evaluate`` and ``firemlip learning-curve``."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from firemlip.evaluation import CURVE_STRATEGIES, evaluate, learning_curve
from firemlip.options import FinetuneOptions


def _dataset_arg(text: str) -> tuple[str, str]:
    if "=" in text and not os.path.exists(text):
        k, v = text.split("=", 1)
        return k, v
    return Path(text).stem, text


def _cmd_evaluate(args: argparse.Namespace) -> int:
    datasets: dict[str, str] = {}
    for text in args.data:
        name, path = _dataset_arg(text)
        if name in datasets:
            name = f"{name}_{len(datasets)}"
        datasets[name] = path
    res = evaluate(args.model, datasets, args.out, device=args.device, foundation=args.foundation,
                   replay=args.replay, head=args.head, dtype=args.dtype)
    print(f"{'dataset':<16}{'frames':>7}{'E RMSE meV/at':>15}{'E MAE':>9}{'F RMSE meV/Å':>14}{'F MAE':>9}"
          f"{'S RMSE GPa':>12}")
    for name, d in res["datasets"].items():
        m = d["overall"]
        s = m.get("stress_rmse_GPa")
        print(f"{name:<16}{m['n_frames']:>7}{m['energy_rmse_meV_atom']:>15.2f}{m['energy_mae_meV_atom']:>9.2f}"
              f"{m['forces_rmse_meV_A']:>14.1f}{m['forces_mae_meV_A']:>9.1f}"
              f"{(f'{s:.3f}' if s is not None else '-'):>12}")
    if "forgetting" in res:
        f = res["forgetting"]

        def fmt(v: float | None) -> str:
            return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

        print(f"forgetting on {f['replay']}: ratio E {fmt(f['forgetting_ratio_energy'])}, "
              f"F {fmt(f['forgetting_ratio_forces'])}; deviation from foundation F "
              f"{f['deviation_from_foundation_forces_meV_A']:.1f} meV/Å")
    print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


def _cmd_learning_curve(args: argparse.Namespace) -> int:
    opts = dict(args.set or [])
    rows = learning_curve(args.foundation, args.train, args.test, args.out, args.sizes, args.strategies,
                          valid=args.valid, replay=args.replay, epochs=args.epochs, device=args.device,
                          seed=args.seed, **opts)
    print(f"{'strategy':<16}{'size':>6}{'E RMSE meV/at':>15}{'F RMSE meV/Å':>14}{'wall s':>9}")
    for r in rows:
        print(f"{r['strategy']:<16}{r['size']:>6}{r['energy_rmse_meV_atom']:>15.2f}{r['forces_rmse_meV_A']:>14.1f}"
              f"{r['wall_time_s']:>9.1f}")
    return 0


def register_cli(subparsers) -> None:
    """Add ``firemlip evaluate`` and ``firemlip benchmark learning-curve``."""
    from firemlip.cli import command_group, key_value, positive_int
    from firemlip.training.loop import STRATEGIES

    p = subparsers.add_parser("evaluate", help="errors (meV/atom, meV/Å, GPa), parity plots and forgetting",
                              description="Evaluate a MACE model on labelled extxyz files.")
    p.add_argument("model", help="a .model path or a foundation name")
    p.add_argument("data", nargs="+", metavar="DATA", help="extxyz files, optionally NAME=PATH")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--foundation", help="foundation for the forgetting ratio")
    p.add_argument("--replay", help="replay/pretraining-like set (a DATA name or a path) for the forgetting ratio")
    p.add_argument("--head", help="model head to evaluate (default: the model's default head)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=_cmd_evaluate)

    group = command_group(subparsers, "benchmark", "benchmarks: learning curves and more")
    q = group.add_parser("learning-curve", help="fine-tune at several training-set sizes per strategy and plot "
                                                "test RMSE vs size")
    q.add_argument("--foundation", required=True)
    q.add_argument("--train", required=True, help="pool of labelled training frames")
    q.add_argument("--test", required=True, help="held-out labelled frames")
    q.add_argument("--valid", help="validation frames (default: split off each subset)")
    q.add_argument("--replay", help="replay data for fire (default: pseudo-label replay)")
    q.add_argument("--sizes", nargs="+", type=positive_int, required=True)
    q.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(CURVE_STRATEGIES))
    q.add_argument("--epochs", type=positive_int, default=FinetuneOptions.default("epochs"),
                   help="training epochs of each fine-tuning")
    q.add_argument("--device", default="cpu")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE", help="FinetuneOptions field")
    q.add_argument("-o", "--out", required=True)
    q.set_defaults(func=_cmd_learning_curve)
