"""Replay data for FIRE: the pool, its element filter, the fresh per-epoch draw and pseudo-label replay.

FIRE (fine-tuning with integrated replay) adds to every epoch a *new* random draw of
``replay_ratio × n_task`` frames from a replay pool, so that over the run the model sees much more of the
pretraining distribution than one fixed subset would show it (mace's own multihead fine-tuning fixes one subset).

The pool is either the user's pretraining-like data (e.g. an MPtrj subset in extxyz with ``REF_*`` labels:
``replay_type = "user"``) or **pseudo-label replay** (``replay_type = "pseudo-label"``): structures related to the
task — the task frames and any given structures (bulk phases, unselected pool frames), randomly strained and
rattled — labelled by the frozen foundation itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from firemlip.errors import FiremlipError

FILTERS = ("none", "overlap", "subset")


def filter_pool(frames: Sequence, task_elements: Sequence[str], mode: str = "none") -> list[int]:
    """Indices of pool frames kept by ``mode``.

    ``none`` keeps all; ``overlap`` keeps frames sharing at least one element with the task; ``subset`` keeps
    frames made only of the task's elements.
    """
    if mode not in FILTERS:
        raise FiremlipError(f"replay filter: expected one of {', '.join(FILTERS)}, got {mode!r}")
    task = set(task_elements)
    keep = []
    for i, a in enumerate(frames):
        els = set(a.get_chemical_symbols())
        if mode == "none" or (mode == "overlap" and els & task) or (mode == "subset" and els <= task):
            keep.append(i)
    return keep


def replay_count(n_task: int, ratio: float) -> int:
    """Frames drawn per epoch: ``round(ratio × n_task)`` (at least 1 when ratio > 0)."""
    if ratio < 0:
        raise FiremlipError(f"replay ratio: expected a non-negative number, got {ratio}")
    if ratio == 0:
        return 0
    return max(1, int(round(ratio * n_task)))


def draw_replay(n_pool: int, n_draw: int, seed: int, epoch: int) -> np.ndarray:
    """A fresh random draw of ``n_draw`` pool indices for ``epoch`` (seeded by ``(seed, epoch)``).

    Without replacement while the pool is large enough, with replacement beyond it.
    """
    if n_draw <= 0 or n_pool <= 0:
        return np.zeros(0, dtype=int)
    rng = np.random.default_rng([int(seed), int(epoch), 7919])
    return rng.choice(n_pool, size=n_draw, replace=n_draw > n_pool)


def random_strain(rng: np.random.Generator, max_strain: float) -> np.ndarray:
    """A random symmetric strain tensor with components uniform in ±max_strain."""
    e = rng.uniform(-max_strain, max_strain, size=(3, 3))
    return 0.5 * (e + e.T)


def perturbed_copies(sources: Sequence, n_frames: int, rattle_A: float = 0.05, max_strain: float = 0.03,
                     seed: int = 0) -> list:
    """``n_frames`` copies of ``sources`` (cycled), each strained (3D-periodic ones, ≤ max_strain) and rattled
    (Gaussian, σ = rattle_A Å). Labels of the sources are dropped."""
    rng = np.random.default_rng([int(seed), 4241])
    out = []
    for i in range(n_frames):
        a = sources[i % len(sources)].copy()
        a.calc = None
        for k in ("REF_energy", "REF_stress", "energy", "stress", "free_energy"):
            a.info.pop(k, None)
        for k in ("REF_forces", "forces"):
            a.arrays.pop(k, None)
        if all(a.pbc) and max_strain > 0:
            eps = random_strain(rng, max_strain)
            a.set_cell(a.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        if rattle_A > 0:
            a.positions = a.positions + rng.normal(0.0, rattle_A, size=a.positions.shape)
        a.info["config_type"] = "replay_pseudo"
        a.info["source"] = f"pseudo-label replay of frame {i % len(sources)}"
        out.append(a)
    return out


def build_pseudo_label_replay(model, task_frames: Sequence, n_frames: int | None = None,
                              structures: Sequence = (), rattle_A: float = 0.05, max_strain: float = 0.03,
                              seed: int = 0, device: str = "cpu", head: str | None = None,
                              replay_ratio: float = 1.0) -> list:
    """Pseudo-label replay: task-related structures labelled by the frozen foundation ``model``.

    Sources are ``task_frames`` plus ``structures`` (bulk phases, unselected pool frames, user structures);
    each replay frame is a strained and rattled copy labelled with the model's energy (eV), forces (eV/Å) and,
    for 3D-periodic frames, stress (eV/Å³). Default size: ``max(20, 4 × replay_ratio × n_task)`` frames so that
    per-epoch draws differ.
    """
    from firemlip.training.data import label_with_model

    sources = list(task_frames) + list(structures)
    if not sources:
        raise FiremlipError("pseudo-label replay: no task frames or structures to build it from")
    if n_frames is None:
        n_frames = max(20, int(math.ceil(4 * max(replay_ratio, 0.25) * len(task_frames))))
    copies = perturbed_copies(sources, n_frames, rattle_A=rattle_A, max_strain=max_strain, seed=seed)
    return label_with_model(model, copies, device=device, head=head)
