"""Shared test data for the foundation/training/evaluation tests: a tiny MACE "foundation" pre-trained in seconds.

Pretraining data: 4-atom fcc Cu/Al cells (random composition, ±3 % strain, 0.1 Å rattle) labelled by ASE's EMT.
The foundation is a tiny mace-torch ScaleShiftMACE (8 channels, L=1) trained on them with our own loop
(strategy ``vanilla`` from a random initialisation). The *task* is pure Cu with shifted labels: EMT energies and
forces scaled by 1.4 — a different "level of theory" — so fine-tuning must move away from the foundation.
Files are built once per pytest session under the session's base temporary directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

TASK_SCALE = 1.4


@dataclass
class TinySetup:
    root: Path
    foundation: Path       # tiny pre-trained foundation (.model)
    pretrain: Path         # its pretraining data = replay pool (EMT labels)
    replay_test: Path      # held-out pretraining-like frames (EMT labels)
    task_train: Path       # pure Cu, labels = TASK_SCALE x EMT
    task_valid: Path
    task_test: Path


def emt_frames(n: int, seed: int, cu_only: bool = False, scale: float = 1.0) -> list:
    """``n`` labelled 4-atom fcc cells (Å, eV, eV/Å, eV/Å³), labels = ``scale`` × EMT."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from firemlip.io import set_labels

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Cu", "fcc", a=3.70, cubic=True)
        if not cu_only:
            for j in range(len(a)):
                if rng.random() < 0.5:
                    a[j].symbol = "Al"
        eps = rng.uniform(-0.03, 0.03, size=(3, 3))
        a.set_cell(a.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        a.positions += rng.normal(0, 0.1, size=(len(a), 3))
        a.calc = EMT()
        set_labels(a, scale * a.get_potential_energy(), scale * a.get_forces(), scale * a.get_stress())
        a.calc = None
        a.info["config_type"] = "task" if cu_only else ("pure_cu" if set(a.get_chemical_symbols()) == {"Cu"}
                                                        else "alloy")
        out.append(a)
    return out


def build_tiny_setup(root: Path) -> TinySetup:
    """Build (once) the tiny foundation and the data files under ``root``."""
    from firemlip.io import write_frames
    from firemlip.models import build_mace, save_model
    from firemlip.training import finetune

    root.mkdir(parents=True, exist_ok=True)
    s = TinySetup(root, root / "foundation.model", root / "pretrain.extxyz", root / "replay_test.extxyz",
                  root / "task_train.extxyz", root / "task_valid.extxyz", root / "task_test.extxyz")
    if s.foundation.exists():
        return s
    write_frames(s.pretrain, emt_frames(48, seed=1))
    write_frames(s.replay_test, emt_frames(16, seed=2))
    write_frames(s.task_train, emt_frames(12, seed=3, cu_only=True, scale=TASK_SCALE))
    write_frames(s.task_valid, emt_frames(4, seed=4, cu_only=True, scale=TASK_SCALE))
    write_frames(s.task_test, emt_frames(8, seed=5, cu_only=True, scale=TASK_SCALE))
    init = build_mace(["Al", "Cu"], "tiny", seed=0)
    save_model(init, root / "init.model")
    path = finetune("vanilla", root / "init.model", s.pretrain, s.replay_test, root / "pretrain_run", epochs=30,
                    lr=0.02, batch_size=8, e0s="average", forces_weight=10.0, stress_weight=0.0, name="foundation",
                    progress=False, scheduler_patience=3, ema_decay=0.9)
    os.replace(path, s.foundation)
    return s
