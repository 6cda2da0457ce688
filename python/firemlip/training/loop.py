"""Our fine-tuning loop (strategies ``fire``, ``vanilla``, ``scratch``) on mace-torch's model, data and loss pieces.

Every epoch trains on all task frames plus, for ``fire``, a fresh random draw of ``replay_ratio × n_task`` frames
from the replay pool (seeded by ``(seed, epoch)``), whose loss is multiplied by ``replay_weight``. The loss is
mace's weighted energy (per atom, eV²/atom²) + forces (eV²/Å²) + stress ((eV/Å³)²) mean-squared error; AMSGrad
Adam with weight decay, an exponential moving average of the weights (EMA), ReduceLROnPlateau on the validation
loss, gradient-norm clipping, an optional second stage with raised energy weight and lower learning rate (as
mace's SWA "stage two"), early stopping on the validation loss, a checkpoint every epoch (``--resume`` continues
after the last completed epoch) and the best (lowest validation loss, EMA weights) model saved whole with
``torch.save`` — the ``.model`` format read by ``mace.calculators.MACECalculator``.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import sys
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from firemlip.errors import FiremlipError
from firemlip.options import FinetuneOptions

STRATEGIES = ("fire", "vanilla", "scratch", "mace-multihead")
E0S_CHOICES = typing.get_args(FinetuneOptions.model_fields["e0s"].annotation)
LOG_FIELDS = ("epoch", "stage", "lr", "n_task", "n_replay", "train_loss", "valid_loss", "valid_rmse_e_meV_atom",
              "valid_rmse_f_meV_A", "replay_rmse_e_meV_atom", "replay_rmse_f_meV_A", "epoch_time_s", "epoch_wall_s",
              "best")


@dataclass
class Prepared:
    """Inputs of a run after reading and checking."""

    train: list
    valid: list
    replay: list
    replay_type: str
    replay_path: Path | None
    monitor: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------- helpers

def schedule_progress(epoch: int, epochs: int, t0_unix_s: float | None, now_unix_s: float,
                      deadline_unix_s: float | None, start_progress: float = 0.0) -> float:
    """Fraction (0–1) of a run done when ``epoch`` starts: ``epoch / epochs``, or — with a deadline — the progress
    reached when this call began (``start_progress``; 0 for a fresh run, the checkpoint's for a resumed one) plus
    the rest in proportion to the wall time from ``t0_unix_s`` to ``deadline_unix_s`` (s) already spent, whichever
    is larger.

    The cosine learning rate and the start of stage two follow it, so a budgeted run whose epochs turn out slower
    than its probe measured still anneals fully and reaches stage two before the deadline stops it, and a resumed
    one continues its schedule from where it stopped instead of warming up again.
    """
    p = epoch / max(epochs, 1)
    if deadline_unix_s is not None and t0_unix_s is not None and deadline_unix_s > t0_unix_s:
        p0 = min(max(float(start_progress), 0.0), 1.0)
        p = max(p, p0 + (1 - p0) * (now_unix_s - t0_unix_s) / (deadline_unix_s - t0_unix_s))
    return float(min(max(p, 0.0), 1.0))


def _loss_terms(batch, out, energy_w: float, forces_w: float, stress_w: float, with_stress: bool):
    """mace's weighted MSE terms (per-atom energy, forces, stress) combined with the given weights."""
    from mace.modules.loss import (
        mean_squared_error_forces,
        weighted_mean_squared_error_energy,
        weighted_mean_squared_stress,
    )

    loss = energy_w * weighted_mean_squared_error_energy(batch, out, ddp=False)
    loss = loss + forces_w * mean_squared_error_forces(batch, out, ddp=False)
    if with_stress and out.get("stress") is not None:
        loss = loss + stress_w * weighted_mean_squared_stress(batch, out, ddp=False)
    return loss


def _evaluate(model, graphs: Sequence, opts: FinetuneOptions, device: str, with_stress: bool,
              energy_weight: float | None = None) -> dict[str, float]:
    """Validation loss and RMSEs (energy meV/atom, forces meV/Å) over ``graphs``.

    The loss uses ``energy_weight`` (per-atom energy, default the stage-one ``opts.energy_weight``) and the options'
    force and stress weights, so that stage two is judged by the weights it trains with.
    """
    from firemlip.training.data import loader

    if not graphs:
        return {"loss": float("nan"), "rmse_e": float("nan"), "rmse_f": float("nan")}
    model.eval()
    tot_loss, n_graphs, se_e, se_f, n_f = 0.0, 0, 0.0, 0.0, 0
    e_w = opts.energy_weight if energy_weight is None else energy_weight
    for batch in loader(graphs, opts.batch_size):
        batch = batch.to(device)
        out = model(batch.to_dict(), training=False, compute_force=True, compute_stress=with_stress)
        loss = _loss_terms(batch, out, e_w, opts.forces_weight, opts.stress_weight, with_stress)
        ng = int(batch.num_graphs)
        tot_loss += float(loss.detach()) * ng
        n_graphs += ng
        nat = (batch.ptr[1:] - batch.ptr[:-1]).to(out["energy"].dtype)
        se_e += float((((out["energy"] - batch.energy) / nat) ** 2).sum().detach())
        se_f += float(((out["forces"] - batch.forces) ** 2).sum().detach())
        n_f += int(batch.forces.numel())
    model.train()
    return {"loss": tot_loss / n_graphs, "rmse_e": 1000 * math.sqrt(se_e / n_graphs),
            "rmse_f": 1000 * math.sqrt(se_f / max(n_f, 1))}


def _shift_energy(atoms, shift: dict[str, float]):
    """A copy of ``atoms`` with ``REF_energy`` moved by the sum of per-element shifts (eV)."""
    b = atoms.copy()
    b.info["REF_energy"] = float(atoms.info["REF_energy"]) + sum(shift.get(s, 0.0) for s in atoms.get_chemical_symbols())
    return b


def _composition_system(frames: Sequence, idx: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Atom counts per element (frames × elements) and the frames' ``REF_energy`` (eV)."""
    A = np.zeros((len(frames), len(idx)))
    y = np.zeros(len(frames))
    for r, a in enumerate(frames):
        for sym in a.get_chemical_symbols():
            A[r, idx[sym]] += 1
        y[r] = float(a.info["REF_energy"])
    return A, y


def refit_e0s(frames: Sequence, elements: Sequence[str], old: dict[str, float],
              predicted_eV: Sequence[float] | None = None) -> dict[str, float]:
    """E0s (eV) moved from ``old`` by the smallest per-element change that fits the frames' mean energy offset.

    Least squares on the residual ``REF_energy - sum(old E0)`` (``average``) or, given the foundation's predicted
    total energies ``predicted_eV`` of the same frames, on ``REF_energy - predicted`` (``estimated``: the offset
    between the task's labeller and the foundation, as mace-torch's ``E0s="estimated"``). Minimum-norm, so a task
    set of one composition (rank-deficient for separate E0s) shifts every element in proportion instead of
    arbitrarily.
    """
    idx = {el: i for i, el in enumerate(elements)}
    A, y = _composition_system(frames, idx)
    if predicted_eV is not None:
        y = y - np.asarray(predicted_eV, dtype=float)
    else:
        y = y - A @ np.array([old.get(el, 0.0) for el in elements])
    delta = np.linalg.lstsq(A, y, rcond=None)[0]
    present = A.sum(axis=0) > 0
    return {el: float(old.get(el, 0.0) + (delta[i] if present[i] else 0.0)) for el, i in idx.items()}


def least_squares_e0s(frames: Sequence, elements: Sequence[str]) -> dict[str, float]:
    """Isolated-atom reference energies E0 (eV) fitted by least squares to ``REF_energy`` of ``frames``."""
    idx = {el: i for i, el in enumerate(elements)}
    A, y = _composition_system(frames, idx)
    present = A.sum(axis=0) > 0
    x = np.zeros(len(elements))
    x[present] = np.linalg.lstsq(A[:, present], y, rcond=None)[0]
    return {el: float(x[i]) for el, i in idx.items() if present[i]}


def set_e0s(model, e0s: dict[str, float], head_index: int = 0) -> None:
    """Write E0s (eV) into the model's atomic-energies buffer (elements not given are kept)."""
    import torch

    from firemlip.foundation import model_elements

    buf = model.atomic_energies_fn.atomic_energies
    with torch.no_grad():
        for j, el in enumerate(model_elements(model)):
            if el in e0s:
                if buf.ndim == 2:
                    buf[head_index, j] = e0s[el]
                else:
                    buf[j] = e0s[el]


def fresh_like(model, seed: int, dtype: str):
    """The model's architecture freshly initialised (``scratch``), keeping E0s, scale/shift and heads."""
    import torch
    from mace.tools.scripts_utils import extract_config_mace_model

    from firemlip.training.data import default_dtype

    cfg = extract_config_mace_model(model)
    if "error" in cfg:
        raise FiremlipError(f"scratch: cannot re-initialise a {type(model).__name__} ({cfg['error']})")
    torch.manual_seed(seed)
    with default_dtype(dtype):
        new = type(model)(**cfg)
    return new.to(getattr(torch, dtype))


def _save_atomic(obj: Any, path: Path) -> None:
    import torch

    from firemlip.io import atomic_path

    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    from firemlip.io import write_text_atomic

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())


def plot_loss_curve(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Two-panel PNG: train/validation loss and validation/replay force RMSE (meV/Å) per epoch."""
    from firemlip.runtime import pyplot

    plt = pyplot()

    from firemlip.io import atomic_path

    ep = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].semilogy(ep, [r["train_loss"] for r in rows], label="train")
    ax[0].semilogy(ep, [r["valid_loss"] for r in rows], label="validation")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("loss")
    ax[0].legend()
    ax[1].plot(ep, [r["valid_rmse_f_meV_A"] for r in rows], label="validation")
    rep = [r.get("replay_rmse_f_meV_A") for r in rows]
    if any(v not in (None, "") and not (isinstance(v, float) and math.isnan(v)) for v in rep):
        ax[1].plot(ep, rep, label="replay monitor")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("force RMSE (meV/Å)")
    ax[1].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


# ------------------------------------------------------------------------------------------ the loop

@dataclass
class _Graphs:
    """The run's mace graphs — task training and validation, replay (``fire`` only, weighted) and the replay
    monitor — whether the loss (``with_stress``) and the validation (``valid_stress``) include stress, and how many
    replay graphs each epoch draws (``n_replay``)."""

    train: list
    valid: list
    replay: list
    monitor: list
    with_stress: bool
    valid_stress: bool
    n_replay: int


@dataclass
class _Optimiser:
    """AMSGrad Adam, its ReduceLROnPlateau scheduler and the EMA of the weights (None when ``ema_decay`` is 0)."""

    opt: Any
    sched: Any
    ema: Any


def _select_head(foundation_model, opts: FinetuneOptions) -> tuple[str, int]:
    """The head to train (``opts.head`` or the foundation's default) and its index among the model's heads."""
    from firemlip.foundation import default_head, model_heads

    heads = model_heads(foundation_model)
    head = opts.head or default_head(foundation_model)
    if head not in heads:
        raise FiremlipError(f"finetune: head {head!r} not in the foundation (heads: {', '.join(heads)})")
    return head, heads.index(head)


def _initial_model(strategy: str, foundation_model, opts: FinetuneOptions, seed: int, device: str):
    """The model to train: the foundation itself, or for ``scratch`` a fresh network of its shape; with ``zbl`` a
    ZBL wall added; in the run's dtype on ``device``."""
    import torch

    model = foundation_model if strategy != "scratch" else fresh_like(foundation_model, seed, opts.dtype)
    if opts.zbl:  # the audit's remedy: a ZBL wall at short range (scratch: fresh_like keeps an existing one)
        from firemlip.audit.zbl import add_zbl

        add_zbl(model)
    return model.to(getattr(torch, opts.dtype)).to(device)


def _refit_task_e0s(model, strategy: str, data: Prepared, opts: FinetuneOptions, head: str, head_index: int,
                    device: str) -> dict[str, float] | str:
    """With ``e0s`` = average | estimated, refit the head's per-element energies (eV) on the task frames and move
    the replay and monitor labels onto the new energy zero (``data`` is updated). Returns the new E0s, or
    ``"foundation"`` when the foundation's are kept."""
    from firemlip.foundation import model_elements

    if opts.e0s not in ("average", "estimated"):
        return "foundation"
    els = model_elements(model)
    old = model.atomic_energies_fn.atomic_energies.detach().cpu().double().numpy()
    old = old[head_index] if old.ndim == 2 else old
    old_e0 = {el: float(old[j]) for j, el in enumerate(els)}
    predicted = None
    if opts.e0s == "estimated" and strategy != "scratch":  # a fresh network predicts nothing to compare with
        from firemlip.training.data import predict

        predicted = predict(model, data.train, device=device, head=head, compute_stress=False).energy
    e0_info = refit_e0s(data.train, els, old_e0, predicted)
    set_e0s(model, e0_info, head_index)
    if data.replay:
        # the replay labels use the foundation's energy zero: move them onto the task's (per element,
        # E0_new - E0_old eV per atom), so replay constrains shapes, not the reference (forces unchanged).
        # Exact for `estimated`; for `average` the shift also carries the foundation's mean interaction
        # energy on the task frames, so there replay energies are consistent only if force-only.
        shift = {el: float(e0_info[el]) - old_e0[el] for el in els if el in e0_info}
        data.replay = [_shift_energy(a, shift) for a in data.replay]
        data.monitor = [_shift_energy(a, shift) for a in data.monitor]
    return e0_info


def _make_graphs(strategy: str, model, data: Prepared, opts: FinetuneOptions, head: str) -> _Graphs:
    """The run's graphs (replay frames weighted by ``replay_weight`` and ``replay_energy_weight``); stress enters
    the loss only when every frame is periodic and some carry ``REF_stress``."""
    from firemlip.training.data import frames_to_graphs, has_stress
    from firemlip.training.replay import replay_count

    train_g = frames_to_graphs(data.train, model, head=head, dtype=opts.dtype)
    valid_g = frames_to_graphs(data.valid, model, head=head, dtype=opts.dtype)
    replay_frames = data.replay
    if opts.replay_energy_weight != 1.0:
        replay_frames = [a.copy() for a in data.replay]
        for a in replay_frames:  # mace reads per-frame property weights from config_<name>_weight
            a.info["config_energy_weight"] = float(opts.replay_energy_weight)
    replay_g = frames_to_graphs(replay_frames, model, head=head, weight=opts.replay_weight, dtype=opts.dtype) \
        if strategy == "fire" else []
    monitor_g = frames_to_graphs(data.monitor, model, head=head, dtype=opts.dtype)
    all_frames = data.train + (data.replay if strategy == "fire" else [])
    with_stress = opts.stress_weight > 0 and all(all(a.pbc) for a in all_frames) and \
        any("REF_stress" in a.info for a in all_frames)
    valid_stress = with_stress and has_stress(data.valid)
    n_replay = replay_count(len(train_g), opts.replay_ratio) if replay_g else 0
    return _Graphs(train_g, valid_g, replay_g, monitor_g, with_stress, valid_stress, n_replay)


def _make_optimiser(model, opts: FinetuneOptions) -> _Optimiser:
    """AMSGrad Adam (``lr``, ``weight_decay``), ReduceLROnPlateau (``lr_factor``, ``scheduler_patience``) and the
    EMA (``ema_decay``) over the model's parameters."""
    import torch
    from torch_ema import ExponentialMovingAverage

    opt = torch.optim.Adam(model.parameters(), lr=opts.lr, amsgrad=True, weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=opts.lr_factor,
                                                       patience=opts.scheduler_patience)
    ema = ExponentialMovingAverage(model.parameters(), decay=opts.ema_decay) if opts.ema_decay else None
    return _Optimiser(opt, sched, ema)


def _fresh_state() -> dict[str, Any]:
    """The loop's state before its first epoch."""
    return {"epoch": -1, "history": [], "best_loss": float("inf"), "best_epoch": -1, "best_state": None,
            "bad_epochs": 0, "stage": 1, "done": False}


def _start_state(strategy: str, model, optim: _Optimiser, opts: FinetuneOptions, device: str, resume: bool,
                 ckpt_path: Path) -> dict[str, Any]:
    """A fresh state, or with ``resume`` the checkpoint's (model, optimiser, scheduler and EMA restored from it);
    a finished run that reached its epoch count is reopened when more epochs are asked for."""
    import torch

    if not resume:
        return _fresh_state()
    if not ckpt_path.exists():
        print(f"firemlip finetune: no checkpoint in {ckpt_path.parent}; starting from epoch 0", file=sys.stderr)
        return _fresh_state()
    try:
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
    except Exception as exc:
        raise FiremlipError(f"{ckpt_path}: unreadable checkpoint ({type(exc).__name__}); remove it to start "
                            f"again") from None
    if ck.get("strategy") != strategy:
        raise FiremlipError(f"{ckpt_path}: checkpoint is of strategy {ck.get('strategy')!r}, not {strategy!r}; "
                            f"use another output directory or drop --resume")
    model.load_state_dict(ck["model"])
    optim.opt.load_state_dict(ck["optimizer"])
    optim.sched.load_state_dict(ck["scheduler"])
    if optim.ema is not None and ck.get("ema") is not None:
        optim.ema.load_state_dict(ck["ema"])
    state = ck["state"]
    # a run that ended by reaching its epoch count can be extended by asking for more epochs
    if state["done"] and not state.get("stopped_early") and state["epoch"] < opts.epochs - 1:
        state["done"] = False
    print(f"firemlip finetune: resuming {strategy} after epoch {state['epoch']} from {ckpt_path}", file=sys.stderr)
    return state


def _deadline_stops(epoch: int, last_wall_s: float, opts: FinetuneOptions, state: dict[str, Any]) -> bool:
    """Whether the time budget ends before another epoch (lasting 1.1 × the last one's ``last_wall_s``, s) would;
    if so the state is marked done, stopped at the deadline."""
    if opts.deadline_unix_s is None or last_wall_s <= 0 or time.time() + 1.1 * last_wall_s <= opts.deadline_unix_s:
        return False
    state["done"] = True
    state["stopped_at_deadline"] = epoch
    print(f"firemlip finetune: stopping before epoch {epoch}: the time budget ends before another epoch "
          f"({last_wall_s:.1f} s) would", file=sys.stderr)
    return True


def _schedule_epoch(progress: float, opt, opts: FinetuneOptions, state: dict[str, Any]) -> tuple[int, float]:
    """Set the stage and learning rate for an epoch at schedule ``progress`` (0–1): stage two from
    ``stage_two_start`` on (with ``plateau``, its lower lr), the cosine lr from ``lr`` to ``lr``/100. Returns the
    stage and its per-atom energy weight."""
    state["progress"] = progress
    stage = 2 if state["stage"] == 2 or (opts.stage_two_start and progress >= opts.stage_two_start) else 1
    if stage == 2 and state["stage"] == 1:
        if opts.lr_schedule == "plateau":  # cosine keeps its own decay; stage two only reweights energies
            for g in opt.param_groups:
                g["lr"] = opts.stage_two_lr if opts.stage_two_lr else opts.lr / 10
        state["stage"] = 2
        state["bad_epochs"] = 0
        # stage two is chosen by its own loss (energy-heavy): a stage-one model would always win on the
        # stage-one loss as stage two trades some force error for energy, and the stage would be thrown away
        state["best_loss"] = float("inf")
    if opts.lr_schedule == "cosine":
        lr_min = opts.lr / 100
        for g in opt.param_groups:
            g["lr"] = lr_min + 0.5 * (opts.lr - lr_min) * (1 + math.cos(math.pi * progress))
    return stage, opts.stage_two_energy_weight if stage == 2 else opts.energy_weight


def _train_epoch(model, optim: _Optimiser, epoch_graphs: list, opts: FinetuneOptions, energy_weight: float,
                 with_stress: bool, device: str, seed: int, epoch: int) -> float:
    """One pass over ``epoch_graphs`` in a seeded order (gradient clipping, EMA update per step). Returns the
    mean training loss per graph."""
    import torch

    from firemlip.training.data import loader

    order = np.random.default_rng([int(seed), int(epoch), 1]).permutation(len(epoch_graphs))
    tot, ng = 0.0, 0
    for batch in loader(epoch_graphs, opts.batch_size, order):
        batch = batch.to(device)
        optim.opt.zero_grad(set_to_none=True)
        out = model(batch.to_dict(), training=True, compute_force=True, compute_stress=with_stress)
        loss = _loss_terms(batch, out, energy_weight, opts.forces_weight, opts.stress_weight, with_stress)
        if not torch.isfinite(loss):
            raise FiremlipError(f"finetune: loss became {float(loss)} at epoch {epoch} (lower --lr or check "
                                f"the labels' units)")
        loss.backward()
        if opts.clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), opts.clip_grad)
        optim.opt.step()
        if optim.ema is not None:
            optim.ema.update()
        tot += float(loss.detach()) * int(batch.num_graphs)
        ng += int(batch.num_graphs)
    return tot / max(ng, 1)


def _validate_epoch(model, ema, graphs: _Graphs, opts: FinetuneOptions, device: str, energy_weight: float,
                    state: dict[str, Any], epoch: int) -> tuple[dict[str, float], dict[str, float] | None, bool]:
    """Validation (and replay-monitor) loss and RMSEs with the EMA weights; a better validation loss makes these
    weights the best state. Returns (validation, monitor or None, improved)."""
    with ema.average_parameters() if ema is not None else _nullcontext():
        val = _evaluate(model, graphs.valid, opts, device, graphs.valid_stress, energy_weight)
        mon = _evaluate(model, graphs.monitor, opts, device, False) if graphs.monitor else None
        improved = val["loss"] < state["best_loss"]
        if improved:
            state["best_loss"] = val["loss"]
            state["best_epoch"] = epoch
            state["best_state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return val, mon, improved


def _log_row(epoch: int, stage: int, lr: float, n_task: int, n_replay: int, train_loss: float,
             val: dict[str, float], mon: dict[str, float] | None, epoch_time_s: float, epoch_wall_s: float,
             improved: bool) -> dict[str, Any]:
    """One epoch's row of ``log.csv`` (fields :data:`LOG_FIELDS`; RMSEs meV/atom and meV/Å, times s)."""
    return {"epoch": epoch, "stage": stage, "lr": lr, "n_task": n_task, "n_replay": n_replay,
            "train_loss": train_loss, "valid_loss": val["loss"],
            "valid_rmse_e_meV_atom": val["rmse_e"], "valid_rmse_f_meV_A": val["rmse_f"],
            "replay_rmse_e_meV_atom": mon["rmse_e"] if mon else "",
            "replay_rmse_f_meV_A": mon["rmse_f"] if mon else "", "epoch_time_s": epoch_time_s,
            "epoch_wall_s": epoch_wall_s, "best": int(improved)}


def _save_checkpoint(strategy: str, model, optim: _Optimiser, state: dict[str, Any], opts: FinetuneOptions,
                     seed: int, ckpt_path: Path) -> None:
    """The checkpoint ``--resume`` continues from: weights, optimiser, scheduler, EMA, loop state and options."""
    _save_atomic({"strategy": strategy, "model": model.state_dict(), "optimizer": optim.opt.state_dict(),
                  "scheduler": optim.sched.state_dict(),
                  "ema": optim.ema.state_dict() if optim.ema is not None else None,
                  "state": state, "options": opts.model_dump(), "seed": seed}, ckpt_path)


def _run_epochs(strategy: str, model, graphs: _Graphs, optim: _Optimiser, state: dict[str, Any],
                opts: FinetuneOptions, device: str, seed: int, out_dir: Path, ckpt_path: Path) -> None:
    """The epochs from the state's next one to ``epochs``, until early stopping or the deadline; each epoch is
    checkpointed and logged to ``log.csv``."""
    from tqdm import tqdm

    from firemlip.training.replay import draw_replay

    start = state["epoch"] + 1
    # with a deadline the schedule runs on wall time from here to the deadline (see schedule_progress)
    schedule_t0 = time.time() if opts.deadline_unix_s is not None else None
    start_progress = float(state.get("progress", 0.0))  # a resumed run's checkpoint has it; a fresh state not
    bar = tqdm(range(start, opts.epochs), desc=f"finetune {strategy}", disable=not opts.progress or state["done"],
               file=sys.stderr, initial=start, total=opts.epochs)
    last_wall = 0.0
    for epoch in bar:
        if state["done"] or _deadline_stops(epoch, last_wall, opts, state):
            break
        p = schedule_progress(epoch, opts.schedule_epochs or opts.epochs, schedule_t0, time.time(),
                              opts.deadline_unix_s, start_progress)
        stage, e_w = _schedule_epoch(p, optim.opt, opts, state)
        t0 = time.perf_counter()
        idx = draw_replay(len(graphs.replay), graphs.n_replay, seed, epoch)
        epoch_graphs = list(graphs.train) + [graphs.replay[i] for i in idx]
        train_loss = _train_epoch(model, optim, epoch_graphs, opts, e_w, graphs.with_stress, device, seed, epoch)
        epoch_time = time.perf_counter() - t0
        val, mon, improved = _validate_epoch(model, optim.ema, graphs, opts, device, e_w, state, epoch)
        last_wall = time.perf_counter() - t0
        if stage == 1 and opts.lr_schedule == "plateau":
            optim.sched.step(val["loss"])
        state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
        state["history"].append(_log_row(epoch, stage, float(optim.opt.param_groups[0]["lr"]), len(graphs.train),
                                         int(len(idx)), train_loss, val, mon, epoch_time, last_wall, improved))
        state["epoch"] = epoch
        stop = state["bad_epochs"] >= opts.patience and (not opts.stage_two_start or stage == 2)
        state["stopped_early"] = stop
        state["done"] = stop or epoch == opts.epochs - 1
        _save_checkpoint(strategy, model, optim, state, opts, seed, ckpt_path)
        _write_log(out_dir / "log.csv", state["history"])
        bar.set_postfix(valid_F=f"{val['rmse_f']:.1f}", valid_E=f"{val['rmse_e']:.1f}")
        if stop:
            print(f"firemlip finetune: early stop after epoch {epoch} ({opts.patience} epochs without a better "
                  f"validation loss)", file=sys.stderr)
            break
    bar.close()


def _save_best(model, ema, state: dict[str, Any], strategy: str, out_dir: Path, model_path: Path) -> None:
    """Save the best (EMA) weights — else the final EMA weights — as the whole model at ``model_path``, with
    ``log.csv`` and ``loss_curve.png`` in ``out_dir``."""
    from firemlip.models import save_model

    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    elif ema is not None:
        ema.copy_to(model.parameters())
    final = copy.deepcopy(model).to("cpu").eval()
    save_model(final, model_path)
    if state["history"]:
        _write_log(out_dir / "log.csv", state["history"])
        plot_loss_curve(state["history"], out_dir / "loss_curve.png", title=f"{strategy}: {model_path.name}")


def _summary(state: dict[str, Any], graphs: _Graphs, e0_info: dict[str, float] | str,
             data: Prepared) -> dict[str, Any]:
    """The run's summary: epochs run, best epoch and validation loss, mean epoch times (s), replay per epoch,
    E0s (eV), whether stress was in the loss, the deadline stop and the training elements."""
    from firemlip.io import elements_of

    times = [r["epoch_time_s"] for r in state["history"]]
    walls = [r.get("epoch_wall_s", r["epoch_time_s"]) for r in state["history"]]
    return {"epochs_run": len(state["history"]), "best_epoch": state["best_epoch"],
            "best_valid_loss": state["best_loss"], "epoch_time_s_mean": float(np.mean(times)) if times else None,
            "epoch_wall_s_mean": float(np.mean(walls)) if walls else None,
            "replay_per_epoch": graphs.n_replay, "e0s": e0_info, "stress_in_loss": graphs.with_stress,
            "stopped_at_deadline": state.get("stopped_at_deadline"),
            "train_elements": elements_of(data.train)}


def train_loop(strategy: str, foundation_model, data: Prepared, out_dir: Path, opts: FinetuneOptions,
               device: str, seed: int, resume: bool, model_path: Path) -> dict[str, Any]:
    """Run (or resume) the loop and save the best EMA model to ``model_path``. Returns a summary dict."""
    head, head_index = _select_head(foundation_model, opts)
    model = _initial_model(strategy, foundation_model, opts, seed, device)
    e0_info = _refit_task_e0s(model, strategy, data, opts, head, head_index, device)
    model = model.to(device)
    model.train()
    graphs = _make_graphs(strategy, model, data, opts, head)
    optim = _make_optimiser(model, opts)
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    state = _start_state(strategy, model, optim, opts, device, resume, ckpt_path)
    _run_epochs(strategy, model, graphs, optim, state, opts, device, seed, out_dir, ckpt_path)
    _save_best(model, optim.ema, state, strategy, out_dir, model_path)
    return _summary(state, graphs, e0_info, data)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
