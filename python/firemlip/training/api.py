"""``finetune()``: one entry point for the four strategies (fire, vanilla, scratch, mace-multihead)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from firemlip.errors import FiremlipError
from firemlip.training.loop import STRATEGIES, FinetuneOptions, Prepared, train_loop

PathLike = str | os.PathLike[str]


def _read_labelled(path: PathLike, what: str, model, stress: bool = False) -> list:
    from firemlip.foundation import check_elements
    from firemlip.io import read_frames, require_labels

    frames = read_frames(path, what=what)
    require_labels(frames, os.fspath(path), forces=True, stress=stress)
    check_elements(model, frames, path)
    return frames


def _split(frames: list, fraction: float, seed: int) -> tuple[list, list]:
    if len(frames) < 2:
        raise FiremlipError("finetune: need a --valid file or at least 2 training frames to split off validation")
    n_valid = min(len(frames) - 1, max(1, int(round(fraction * len(frames)))))
    perm = np.random.default_rng([int(seed), 31]).permutation(len(frames))
    vset = set(perm[:n_valid].tolist())
    return [a for i, a in enumerate(frames) if i not in vset], [a for i, a in enumerate(frames) if i in vset]


def prepare(strategy: str, model, train: PathLike, valid: PathLike | None, out_dir: Path,
            replay: PathLike | None, opts: FinetuneOptions, seed: int, device: str, reuse: bool) -> Prepared:
    """Read, check and split the inputs; build pseudo-label replay where ``fire``/``mace-multihead`` has none."""
    from firemlip.foundation import check_elements
    from firemlip.io import elements_of, read_frames, write_frames
    from firemlip.training.replay import build_pseudo_label_replay, filter_pool

    train_frames = _read_labelled(train, "training file", model)
    if valid is not None:
        valid_frames = _read_labelled(valid, "validation file", model)
    else:
        train_frames, valid_frames = _split(train_frames, opts.valid_fraction, seed)
    pool: list = []
    replay_type = "none"
    replay_path: Path | None = None
    uses_replay = strategy in ("fire", "mace-multihead")
    if replay is not None:
        pool = _read_labelled(replay, "replay file", model)
        keep = filter_pool(pool, elements_of(train_frames), opts.replay_filter)
        if not keep:
            raise FiremlipError(f"{os.fspath(replay)}: no replay frame left after the {opts.replay_filter!r} "
                                f"element filter (task elements {', '.join(elements_of(train_frames))})")
        pool = [pool[i] for i in keep]
        replay_type = "user" if uses_replay else "monitor-only"
        replay_path = Path(replay)
    elif uses_replay:
        replay_path = out_dir / "replay_pseudo.extxyz"
        if reuse and replay_path.exists():
            pool = read_frames(replay_path, what="pseudo-label replay")
        else:
            extra: list = []
            for p in opts.replay_structures:
                fr = read_frames(p, what="replay structure file")
                check_elements(model, fr, p)
                extra.extend(fr)
            pool = build_pseudo_label_replay(model, train_frames, n_frames=opts.replay_size, structures=extra,
                                             rattle_A=opts.replay_rattle_A, max_strain=opts.replay_max_strain,
                                             seed=seed, device=device, head=opts.head,
                                             replay_ratio=opts.replay_ratio)
            write_frames(replay_path, pool)
        replay_type = "pseudo-label"
    monitor: list = []
    if pool:
        pick = np.random.default_rng([int(seed), 97]).permutation(len(pool))[:opts.monitor_size]
        monitor = [pool[i] for i in sorted(pick.tolist())]
    return Prepared(train_frames, valid_frames, pool if uses_replay else [], replay_type, replay_path, monitor)


def finetune(strategy: str, foundation: PathLike, train: PathLike, valid: PathLike | None = None,
             out_dir: PathLike = "finetune", replay: PathLike | None = None, replay_ratio: float = 1.0,
             epochs: int = 50, device: str = "cpu", seed: int = 0, resume: bool = False, **opts: Any) -> Path:
    """Fine-tune ``foundation`` on ``train`` with one strategy; return the path of the ``.model`` written.

    Strategies: ``fire`` (task frames + a fresh draw of ``replay_ratio × n_task`` replay frames every epoch),
    ``vanilla`` (task frames only), ``scratch`` (the foundation's architecture freshly initialised, task only),
    ``mace-multihead`` (mace-torch's ``mace_run_train`` multihead fine-tuning, one fixed replay subset).

    ``foundation`` is a ``.model`` path or a name (see :mod:`firemlip.foundation`); ``train``/``valid``/``replay``
    are extxyz files with ``REF_energy`` (eV) and ``REF_forces`` (eV/Å) (``REF_stress`` eV/Å³ optional). Without
    ``valid`` a seeded ``valid_fraction`` of ``train`` is split off. Without ``replay``, ``fire`` and
    ``mace-multihead`` build pseudo-label replay (task frames strained/rattled, labelled by the foundation).
    For ``vanilla``/``scratch`` a given ``replay`` is only monitored (forgetting column of the log).
    Further options: the fields of :class:`firemlip.training.loop.FinetuneOptions` (``lr``, ``batch_size``,
    ``replay_weight``, ``replay_filter``, ``stage_two_start``, ``dtype``, ``e0s``, ``ema_decay``, ...).

    Writes into ``out_dir``: ``<strategy>.model`` (or ``<name>.model``), ``log.csv``, ``loss_curve.png``,
    ``checkpoints/last.pt``, ``manifest.json`` (with ``replay_type``: user | pseudo-label | monitor-only | none),
    and ``replay_pseudo.extxyz`` when pseudo-label replay was built. ``resume=True`` continues after the last
    checkpointed epoch.
    """
    from firemlip.foundation import load_model, model_info, resolve_foundation
    from firemlip.io import write_frames
    from firemlip.workflow.manifest import stage_manifest

    if strategy not in STRATEGIES:
        raise FiremlipError(f"finetune: unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
    options = FinetuneOptions.from_kwargs(replay_ratio=replay_ratio, epochs=epochs, **opts)
    if options.zbl and strategy == "mace-multihead":
        raise FiremlipError("finetune: --zbl is not available with mace-multihead (use fire, vanilla or scratch)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    foundation_path = resolve_foundation(foundation)
    model = load_model(foundation_path, device=device, dtype=options.dtype)
    info = model_info(model)
    model_path = out / f"{options.name or strategy}.model"
    data = prepare(strategy, model, train, valid, out, replay, options, seed, device, reuse=resume)

    inputs: dict[str, PathLike] = {"foundation": foundation_path, "train": train}
    if valid is not None:
        inputs["valid"] = valid
    if replay is not None:
        inputs["replay"] = replay
    params = {"strategy": strategy, "seed": seed, "device": device, **asdict(options)}
    params.pop("progress", None)
    with stage_manifest("finetune", out, inputs, params) as rec:
        if strategy == "mace-multihead":
            from firemlip.training.multihead import run_multihead
            from firemlip.training.replay import replay_count

            tr, va = Path(train), Path(valid) if valid is not None else None
            if va is None:
                tr = write_frames(out / "train_split.extxyz", data.train)
                va = write_frames(out / "valid_split.extxyz", data.valid)
            assert data.replay_path is not None
            stress = options.stress_weight > 0 and all("REF_stress" in a.info and all(a.pbc)
                                                       for a in data.train + data.valid)
            summary = run_multihead(
                foundation_path, tr, va, data.replay_path, out, model_path,
                pseudo=data.replay_type == "pseudo-label",
                n_samples_pt=replay_count(len(data.train), options.replay_ratio) or 1,
                epochs=options.epochs, batch_size=options.batch_size, lr=options.lr, device=device,
                dtype=options.dtype, seed=seed, energy_weight=options.energy_weight,
                forces_weight=options.forces_weight, stress_weight=options.stress_weight,
                weight_pt=options.replay_weight, stress=stress,
                extra=tuple(options.mace_args) + (("--restart_latest",) if resume else ()))
            rec.outputs = [model_path.name, "mace_run_train.log"]
        else:
            summary = train_loop(strategy, model, data, out, options, device, seed, resume, model_path)
            rec.outputs = [model_path.name, "log.csv", "loss_curve.png"]
        if data.replay_type == "pseudo-label":
            rec.outputs.append("replay_pseudo.extxyz")
        rec.extra = {
            "strategy": strategy, "replay_type": data.replay_type,
            "replay_file": str(data.replay_path) if data.replay_path else None,
            "n_train": len(data.train), "n_valid": len(data.valid), "n_replay_pool": len(data.replay),
            "foundation": {"path": str(foundation_path), "name": os.fspath(foundation),
                           **{k: info[k] for k in ("elements", "r_max_A", "channels", "L", "heads", "parameters")}},
            "model": model_path.name, "summary": summary,
        }
    return model_path


def strategies() -> Sequence[str]:
    """The strategy names accepted by :func:`finetune`."""
    return STRATEGIES
