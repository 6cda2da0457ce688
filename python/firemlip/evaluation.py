"""Evaluation of MACE models on labelled data: errors, parity plots, forgetting, learning curves.

Errors (model − reference): energy RMSE/MAE in meV/atom (total energy divided by the number of atoms), force
RMSE/MAE in meV/Å (over all Cartesian components), stress RMSE in GPa (over the six Voigt components;
1 eV/Å³ = 160.2177 GPa) — overall, per ``config_type`` and (forces) per element.

**Forgetting ratio.** For a replay / pretraining-like set R with reference labels,
``forgetting_ratio_X = RMSE_X(fine-tuned model, R) / RMSE_X(foundation, R)`` for X = energy (meV/atom) and
forces (meV/Å). 1 means nothing was forgotten, > 1 that the fine-tuned model is worse than the foundation on
the data it was pretrained on. When R carries the foundation's own pseudo-labels the denominator is ~0; the ratio
is then reported as None and ``deviation_from_foundation`` (the model's RMSE against the foundation's
predictions) measures the forgetting instead.

CLI: ``firemlip evaluate MODEL DATA... -o DIR`` and ``firemlip benchmark learning-curve ...``.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from firemlip.errors import FiremlipError
from firemlip.options import FinetuneOptions

EV_A3_TO_GPA = 160.21766208
PathLike = str | os.PathLike[str]


def _rmse(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else float("nan")


def _mae(x: np.ndarray) -> float:
    return float(np.mean(np.abs(x))) if x.size else float("nan")


def error_metrics(frames: Sequence, pred) -> dict[str, Any]:
    """Energy (meV/atom), force (meV/Å) and stress (GPa) errors of predictions against ``REF_*`` labels."""
    nat = np.array([len(a) for a in frames], dtype=float)
    e_ref = np.array([a.info["REF_energy"] for a in frames], dtype=float)
    de = (np.asarray(pred.energy) - e_ref) / nat * 1000.0
    df = np.concatenate([(pred.forces[i] - a.arrays["REF_forces"]).ravel() for i, a in enumerate(frames)]) * 1000.0
    out: dict[str, Any] = {"n_frames": len(frames), "n_atoms": int(nat.sum()),
                           "energy_rmse_meV_atom": _rmse(de), "energy_mae_meV_atom": _mae(de),
                           "forces_rmse_meV_A": _rmse(df), "forces_mae_meV_A": _mae(df)}
    if pred.stress is not None:
        ds = [(pred.stress[i] - np.asarray(a.info["REF_stress"], dtype=float).reshape(6)) * EV_A3_TO_GPA
              for i, a in enumerate(frames) if "REF_stress" in a.info]
        if ds:
            out["stress_rmse_GPa"] = _rmse(np.concatenate(ds))
    return out


def _subset_pred(pred, idx: Sequence[int]):
    from firemlip.training.data import Predictions

    return Predictions(np.asarray(pred.energy)[list(idx)], [pred.forces[i] for i in idx],
                       None if pred.stress is None else np.asarray(pred.stress)[list(idx)])


def dataset_metrics(frames: Sequence, pred) -> dict[str, Any]:
    """Overall, per ``config_type`` and per-element force errors of one dataset."""
    res = {"overall": error_metrics(frames, pred)}
    types: dict[str, list[int]] = {}
    for i, a in enumerate(frames):
        types.setdefault(str(a.info.get("config_type", "Default")), []).append(i)
    res["per_config_type"] = {t: error_metrics([frames[i] for i in idx], _subset_pred(pred, idx))
                              for t, idx in sorted(types.items())}
    per_el: dict[str, list[np.ndarray]] = {}
    for i, a in enumerate(frames):
        d = (pred.forces[i] - a.arrays["REF_forces"]) * 1000.0
        for s, row in zip(a.get_chemical_symbols(), d, strict=True):
            per_el.setdefault(s, []).append(row)
    res["forces_per_element"] = {s: {"forces_rmse_meV_A": _rmse(np.concatenate(v)),
                                     "forces_mae_meV_A": _mae(np.concatenate(v)), "n_atoms": len(v)}
                                 for s, v in sorted(per_el.items())}
    return res


def _load_dataset(path: PathLike, model) -> list:
    from firemlip.foundation import check_elements
    from firemlip.io import read_frames, require_labels

    frames = read_frames(path, what="dataset")
    require_labels(frames, os.fspath(path), forces=True)
    check_elements(model, frames, path)
    return frames


def parity_plot(panels: Mapping[str, tuple[Sequence, Any]], path: PathLike, title: str = "") -> None:
    """PNG with one column per dataset: energy per atom (eV/atom) and force components (eV/Å), predicted vs
    reference."""
    from firemlip.runtime import pyplot

    plt = pyplot()

    from firemlip.io import atomic_path

    n = max(1, len(panels))
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 7), squeeze=False)
    for j, (name, (frames, pred)) in enumerate(panels.items()):
        nat = np.array([len(a) for a in frames], dtype=float)
        er = np.array([a.info["REF_energy"] for a in frames]) / nat
        ep = np.asarray(pred.energy) / nat
        fr = np.concatenate([a.arrays["REF_forces"].ravel() for a in frames])
        fp = np.concatenate([f.ravel() for f in pred.forces])
        for ax, x, y, unit, what in ((axes[0, j], er, ep, "eV/atom", "energy"),
                                     (axes[1, j], fr, fp, "eV/Å", "force")):
            ax.scatter(x, y, s=6, alpha=0.6)
            lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            rmse = _rmse((y - x) * 1000.0)
            ax.set_title(f"{name}: {what} RMSE {rmse:.1f} m{unit}", fontsize=9)
            ax.set_xlabel(f"reference ({unit})")
            ax.set_ylabel(f"predicted ({unit})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _forgetting(model_m: Mapping[str, Any], found_m: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, tol in (("energy_rmse_meV_atom", 1e-3), ("forces_rmse_meV_A", 1e-3)):
        den = found_m.get(key)
        num = model_m.get(key)
        short = key.split("_")[0]
        out[f"foundation_{key}"] = den
        out[f"model_{key}"] = num
        out[f"forgetting_ratio_{short}"] = (num / den) if den is not None and den > tol else None
    return out


def evaluate(model_path: PathLike, datasets: Mapping[str, PathLike], out_dir: PathLike, device: str = "cpu",
             foundation: PathLike | None = None, replay: str | PathLike | None = None, head: str | None = None,
             dtype: str = "float64", batch_size: int = 8, plot: bool = True) -> dict[str, Any]:
    """Evaluate ``model_path`` on each labelled dataset; write ``metrics.json``, ``metrics.csv``, ``parity.png``.

    ``datasets`` maps a name to an extxyz with ``REF_energy``/``REF_forces`` (``REF_stress`` optional).
    ``replay`` (a key of ``datasets`` or a path) with ``foundation`` (path or name) adds ``result["forgetting"]``:
    ``forgetting_ratio_X = RMSE_X(model, replay) / RMSE_X(foundation, replay)`` for X = energy (meV/atom) and
    forces (meV/Å) — 1: nothing forgotten, > 1: worse than the foundation on pretraining-like data; None when
    the foundation's own RMSE is ~0 (pseudo-labelled replay), where ``deviation_from_foundation_*`` (RMSE of
    the model against the foundation's predictions) measures forgetting instead.
    Returns the dict written to ``metrics.json``.
    """
    from firemlip.foundation import load_model, resolve_foundation
    from firemlip.io import write_json
    from firemlip.training.data import predict

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not datasets:
        raise FiremlipError("evaluate: no datasets given")
    model = load_model(model_path, device=device, dtype=dtype)
    result: dict[str, Any] = {"model": str(resolve_foundation(model_path, download=False)), "datasets": {}}
    panels: dict[str, tuple[Sequence, Any]] = {}
    loaded: dict[str, list] = {}
    for name, path in datasets.items():
        frames = _load_dataset(path, model)
        loaded[name] = frames
        pred = predict(model, frames, device=device, head=head, batch_size=batch_size)
        panels[name] = (frames, pred)
        result["datasets"][name] = {"path": os.fspath(path), **dataset_metrics(frames, pred)}
    if replay is not None:
        if foundation is None:
            raise FiremlipError("evaluate: --replay needs --foundation (the forgetting ratio compares to it)")
        rname = os.fspath(replay)
        if rname in loaded:
            rframes, rpred = panels[rname]
        else:
            rframes = _load_dataset(rname, model)
            rpred = predict(model, rframes, device=device, head=head, batch_size=batch_size)
        fmodel = load_model(foundation, device=device, dtype=dtype)
        fpred = predict(fmodel, rframes, device=device, batch_size=batch_size)
        mm, fm = error_metrics(rframes, rpred), error_metrics(rframes, fpred)
        forget = {"replay": rname, "foundation": str(resolve_foundation(foundation, download=False)),
                  **_forgetting(mm, fm)}
        nat = np.array([len(a) for a in rframes], dtype=float)
        forget["deviation_from_foundation_energy_meV_atom"] = _rmse(
            (np.asarray(rpred.energy) - np.asarray(fpred.energy)) / nat * 1000)
        forget["deviation_from_foundation_forces_meV_A"] = _rmse(
            np.concatenate([(a - b).ravel() for a, b in zip(rpred.forces, fpred.forces, strict=True)]) * 1000)
        result["forgetting"] = forget
    write_json(out / "metrics.json", result)
    _write_metrics_csv(out / "metrics.csv", result)
    if plot:
        parity_plot(panels, out / "parity.png", title=Path(os.fspath(model_path)).name)
    return result


def _write_metrics_csv(path: Path, result: Mapping[str, Any]) -> None:
    from firemlip.io import write_text_atomic

    cols = ["dataset", "subset", "n_frames", "n_atoms", "energy_rmse_meV_atom", "energy_mae_meV_atom",
            "forces_rmse_meV_A", "forces_mae_meV_A", "stress_rmse_GPa"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for name, d in result["datasets"].items():
        w.writerow({"dataset": name, "subset": "all", **d["overall"]})
        for t, m in d["per_config_type"].items():
            w.writerow({"dataset": name, "subset": f"config_type={t}", **m})
    write_text_atomic(path, buf.getvalue())


# ------------------------------------------------------------------------------------------ learning curves

#: The strategies a learning curve compares by default: FIRE and its two baselines.
CURVE_STRATEGIES: tuple[str, ...] = ("fire", "vanilla", "scratch")

def learning_curve(foundation: PathLike, train: PathLike, test: PathLike, out_dir: PathLike,
                   sizes: Sequence[int], strategies: Sequence[str] = CURVE_STRATEGIES,
                   valid: PathLike | None = None, replay: PathLike | None = None,
                   epochs: int = FinetuneOptions.default("epochs"),
                   device: str = "cpu", seed: int = 0, **opts: Any) -> list[dict[str, Any]]:
    """For each size and strategy fine-tune on the same first ``size`` frames of a seeded permutation of
    ``train`` (nested subsets), evaluate on ``test``; record wall time (s). Writes ``learning_curve.csv``,
    ``learning_curve.json`` and ``learning_curve.png`` (energy and force RMSE vs training-set size, one line per
    strategy, the foundation's zero-shot error as a dashed line). Returns the table rows."""
    from firemlip.foundation import load_model
    from firemlip.io import read_frames, write_frames, write_json
    from firemlip.training import finetune
    from firemlip.training.data import predict

    out = Path(out_dir)
    frames = read_frames(train, what="training file")
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] <= 0:
        raise FiremlipError("learning-curve: sizes must be positive integers")
    if sizes[-1] > len(frames):
        raise FiremlipError(f"{os.fspath(train)}: {len(frames)} frames, fewer than the largest size {sizes[-1]}")
    perm = np.random.default_rng([int(seed), 53]).permutation(len(frames))
    fmodel = load_model(foundation, device=device, dtype=opts.get("dtype", "float64"))
    tframes = _load_dataset(test, fmodel)
    zs = error_metrics(tframes, predict(fmodel, tframes, device=device))
    rows: list[dict[str, Any]] = [{"strategy": "foundation", "size": 0, "wall_time_s": 0.0,
                                   "energy_rmse_meV_atom": zs["energy_rmse_meV_atom"],
                                   "forces_rmse_meV_A": zs["forces_rmse_meV_A"]}]
    for n in sizes:
        sub = write_frames(out / f"n{n}" / "train.extxyz", [frames[i] for i in perm[:n]])
        for strat in strategies:
            t0 = time.perf_counter()
            mp = finetune(strat, foundation, sub, valid, out / f"n{n}" / strat, replay=replay, epochs=epochs,
                          device=device, seed=seed, **opts)
            wall = time.perf_counter() - t0
            res = evaluate(mp, {"test": test}, out / f"n{n}" / strat / "eval", device=device, plot=False)
            m = res["datasets"]["test"]["overall"]
            rows.append({"strategy": strat, "size": n, "wall_time_s": wall,
                         "energy_rmse_meV_atom": m["energy_rmse_meV_atom"], "forces_rmse_meV_A": m["forces_rmse_meV_A"]})
            _write_curve(out, rows)
    _write_curve(out, rows)
    write_json(out / "learning_curve.json", {"foundation": os.fspath(foundation), "train": os.fspath(train),
                                             "test": os.fspath(test), "sizes": sizes, "rows": rows})
    return rows


def _write_curve(out: Path, rows: list[dict[str, Any]]) -> None:
    from firemlip.runtime import pyplot

    plt = pyplot()

    from firemlip.io import atomic_path, write_text_atomic

    cols = ["strategy", "size", "energy_rmse_meV_atom", "forces_rmse_meV_A", "wall_time_s"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(out / "learning_curve.csv", buf.getvalue())
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    for k, (key, label) in enumerate((("energy_rmse_meV_atom", "energy RMSE (meV/atom)"),
                                      ("forces_rmse_meV_A", "force RMSE (meV/Å)"))):
        for strat in dict.fromkeys(r["strategy"] for r in rows):
            pts = sorted((r["size"], r[key]) for r in rows if r["strategy"] == strat)
            if strat == "foundation":
                ax[k].axhline(pts[0][1], color="k", ls="--", lw=1, label="foundation (zero-shot)")
            else:
                ax[k].plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=strat)
        ax[k].set_xscale("log")
        ax[k].set_yscale("log")
        ax[k].set_xlabel("training frames")
        ax[k].set_ylabel(label)
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "learning_curve.png", suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
