"""``finetune()``: one entry point for the four strategies (fire, vanilla, scratch, mace-multihead)."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from firemlip.errors import FiremlipError
from firemlip.splits import random_split
from firemlip.training.loop import STRATEGIES, FinetuneOptions, Prepared, train_loop

if TYPE_CHECKING:
    from ase import Atoms

PathLike = str | os.PathLike[str]


@dataclass(eq=False)
class FinetuneResult(os.PathLike):
    """What :func:`finetune` returns: the trained model's path plus its training record.

    ``model_path``: the ``.model`` written; ``history``: the per-epoch log (one dict per epoch, the columns of
    ``log.csv``: ``epoch``, ``stage``, ``lr``, ``train_loss``, ``valid_loss``, ``valid_rmse_e_meV_atom`` (meV/atom),
    ``valid_rmse_f_meV_A`` (meV/Å), ``replay_rmse_*``, ``epoch_time_s`` (s), ...; for ``mace-multihead`` the
    evaluation lines of mace-torch's ``results/*_train.txt``, or ``[]``); ``summary``: the training summary
    (``manifest.json``'s ``summary``: best epoch, E0s (eV), wall times (s), ...); ``manifest``: the rest of the
    manifest's provenance (strategy, replay_type, frame counts, foundation); ``out_dir``: the run directory.

    The result stands in for the model's path wherever a path was accepted before (it is ``os.PathLike``, ``str()``
    gives the path, and path attributes such as ``name``, ``exists()``, ``parent``, ``stem``, ``suffix`` are
    forwarded to ``model_path``), so ``sample(result, ...)``, ``export_model(result)`` and ``Path(result)`` work.
    """

    model_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    out_dir: Path = Path(".")
    manifest: dict[str, Any] = field(default_factory=dict)

    def load(self, device: str = "cpu", dtype: str | None = "float64"):
        """The trained MACE model (``torch.nn.Module``) on ``device`` in ``dtype`` (None keeps the file's)."""
        from firemlip.foundation import load_model

        return load_model(self.model_path, device=device, dtype=dtype)

    def __fspath__(self) -> str:
        return os.fspath(self.model_path)

    def __str__(self) -> str:
        return str(self.model_path)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FinetuneResult):
            return self.model_path == other.model_path and self.out_dir == other.out_dir
        if isinstance(other, (str, os.PathLike)):
            return self.model_path == Path(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.model_path)

    def __getattr__(self, name: str) -> Any:
        # only called for attributes the dataclass lacks: forward Path API (name, exists, parent, stem, ...)
        if name.startswith("_") or "model_path" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.__dict__["model_path"], name)


def _number(text: str) -> Any:
    """A ``log.csv`` cell as int, float or the text itself (empty → None)."""
    if text is None or text == "":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def read_history(out_dir: PathLike, strategy: str = "fire") -> list[dict[str, Any]]:
    """The per-epoch training log of a :func:`finetune` directory as a list of dicts (numbers parsed).

    ``log.csv`` for fire/vanilla/scratch; for ``mace-multihead`` the ``"mode": "eval"`` JSON lines of
    ``mace_run/results/*_train.txt`` (mace-torch's own log). Missing files give ``[]``.
    """
    out = Path(out_dir)
    if strategy == "mace-multihead":
        rows: list[dict[str, Any]] = []
        for p in sorted((out / "mace_run" / "results").glob("*_train.txt")):
            for line in p.read_text(errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and row.get("mode") == "eval":
                    rows.append(row)
        return rows
    log = out / "log.csv"
    if not log.is_file():
        return []
    with open(log, newline="") as fh:
        return [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def _as_path(data: PathLike | Sequence[Atoms] | Atoms | None, out: Path, name: str) -> PathLike | None:
    """A path as given, or in-memory Atoms written to ``out/name`` (extxyz) so the manifest can hash them."""
    from ase import Atoms

    from firemlip.io import write_frames

    if data is None or isinstance(data, (str, os.PathLike)):
        return data
    frames = [data] if isinstance(data, Atoms) else list(data)
    if not frames or not all(isinstance(a, Atoms) for a in frames):
        raise FiremlipError(f"finetune: {name.split('.')[0]} must be an extxyz path or a non-empty list of ASE "
                            f"Atoms with REF_energy/REF_forces labels")
    return write_frames(out / name, frames)


def _foundation_path(foundation: Any, out: Path) -> tuple[PathLike, str]:
    """(path or name to resolve, name recorded): a loaded model is saved to ``out/foundation.model``."""
    if isinstance(foundation, (str, os.PathLike)):
        return foundation, os.fspath(foundation)
    from firemlip.foundation import is_mace_model
    from firemlip.models import save_model

    if not is_mace_model(foundation):
        raise FiremlipError(f"finetune: foundation must be a .model path, a foundation name or a loaded MACE model, "
                            f"got {type(foundation).__name__}")
    return save_model(foundation, out / "foundation.model"), f"<in-memory {type(foundation).__name__}>"


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
    tr, va = random_split(len(frames), [len(frames) - n_valid, n_valid], [int(seed), 31])
    return [frames[i] for i in tr], [frames[i] for i in va]


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


def finetune(strategy: str, foundation: PathLike | Any, train: PathLike | Sequence[Atoms] | Atoms,
             valid: PathLike | Sequence[Atoms] | Atoms | None = None, out_dir: PathLike | None = None,
             replay: PathLike | Sequence[Atoms] | Atoms | None = None,
             replay_ratio: float = FinetuneOptions.default("replay_ratio"),
             epochs: int = FinetuneOptions.default("epochs"), device: str = "cpu", seed: int = 0, resume: bool = False,
             **opts: Any) -> FinetuneResult:
    """Fine-tune ``foundation`` on ``train`` with one strategy; return a :class:`FinetuneResult`.

    Strategies: ``fire`` (task frames + a fresh draw of ``replay_ratio × n_task`` replay frames every epoch),
    ``vanilla`` (task frames only), ``scratch`` (the foundation's architecture freshly initialised, task only),
    ``mace-multihead`` (mace-torch's ``mace_run_train`` multihead fine-tuning, one fixed replay subset).

    ``foundation`` is a ``.model`` path, a name (see :mod:`firemlip.foundation`) or an already loaded MACE model
    (``torch.nn.Module``, saved as ``out_dir/foundation.model`` so the manifest can hash it). ``train``/``valid``/
    ``replay`` are extxyz files or lists of ASE Atoms with ``REF_energy`` (eV) and ``REF_forces`` (eV/Å)
    (``REF_stress`` eV/Å³ optional); frames held in memory are written to ``out_dir/train.extxyz``,
    ``valid.extxyz``, ``replay.extxyz`` first (calculator results are not labels: set the ``REF_*`` keys). Without
    ``valid`` a seeded ``valid_fraction`` of ``train`` is split off. Without ``replay``, ``fire`` and
    ``mace-multihead`` build pseudo-label replay (task frames strained/rattled, labelled by the foundation).
    For ``vanilla``/``scratch`` a given ``replay`` is only monitored (forgetting column of the log).
    Further options: the fields of :class:`firemlip.training.loop.FinetuneOptions` (``lr``, ``batch_size``,
    ``replay_weight``, ``replay_filter``, ``stage_two_start``, ``dtype``, ``e0s``, ``ema_decay``, ...).

    Writes into ``out_dir`` (default None: a fresh temporary directory ``firemlip-finetune-*``, recorded in the
    result; pass ``"finetune"`` for the former default): ``<strategy>.model`` (or ``<name>.model``), ``log.csv``,
    ``loss_curve.png``, ``checkpoints/last.pt``, ``manifest.json`` (with ``replay_type``: user | pseudo-label |
    monitor-only | none), and ``replay_pseudo.extxyz`` when pseudo-label replay was built. ``resume=True``
    continues after the last checkpointed epoch.

    The returned :class:`FinetuneResult` holds ``model_path``, ``history`` (per-epoch log), ``summary``,
    ``out_dir`` and ``load()``; it is ``os.PathLike`` (the model's path), so code that used the returned ``Path``
    keeps working.
    """
    from firemlip.foundation import load_model, model_info, resolve_foundation
    from firemlip.io import write_frames
    from firemlip.workflow.manifest import stage_manifest

    if strategy not in STRATEGIES:
        raise FiremlipError(f"finetune: unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
    options = FinetuneOptions.from_kwargs(replay_ratio=replay_ratio, epochs=epochs, **opts)
    if options.zbl and strategy == "mace-multihead":
        raise FiremlipError("finetune: --zbl is not available with mace-multihead (use fire, vanilla or scratch)")
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="firemlip-finetune-"))
    out.mkdir(parents=True, exist_ok=True)
    foundation, foundation_name = _foundation_path(foundation, out)
    train = _as_path(train, out, "train.extxyz")
    valid = _as_path(valid, out, "valid.extxyz")
    replay = _as_path(replay, out, "replay.extxyz")
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
    params = {"strategy": strategy, "seed": seed, "device": device, **options.model_dump()}
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
            "foundation": {"path": str(foundation_path), "name": foundation_name,
                           **{k: info[k] for k in ("elements", "r_max_A", "channels", "L", "heads", "parameters")}},
            "model": model_path.name, "summary": summary,
        }
    return FinetuneResult(model_path, read_history(out, strategy), dict(summary), out,
                          {k: v for k, v in rec.extra.items() if k != "summary"})


def strategies() -> Sequence[str]:
    """The strategy names accepted by :func:`finetune`."""
    return STRATEGIES
