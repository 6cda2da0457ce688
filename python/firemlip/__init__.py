"""firemlip: FIRE (Fine-tuning with Integrated Replay and Efficiency) for MACE potentials, LAMMPS-centric.

Stages (one module each): structures, labelling, importing, foundation, training, evaluation, sampling,
selection, lammps, analysis, audit, workflow. Units: ASE units (eV, Å, fs, K) throughout.

The stage functions are importable from the package itself (loaded on first use, so ``import firemlip`` stays
light)::

    from firemlip import perturb, label_frames, finetune, sample, select, evaluate, export_model, render, run_lammps

They take files or data held in memory and return small result objects: :class:`FinetuneResult` (``finetune``),
:class:`Selection` (``select``) and, for diffusion, :class:`DiffusionAnalysis` → :class:`DiffusionResult`.
"""

from __future__ import annotations

import importlib
from typing import Any

from firemlip.runtime import allow_full_torch_load

__version__ = "0.1.0"

# MACE .model files and e3nn's constants are whole pickles: torch >= 2.6 refuses them by default. Set once here
# (a user's own TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is kept); child processes inherit it.
allow_full_torch_load()

#: public name -> module that defines it (one line per stage, in pipeline order)
_API = {
    "read_frames": "firemlip.io", "write_frames": "firemlip.io",
    "perturb": "firemlip.structures",
    "label_frames": "firemlip.labelling", "import_paths": "firemlip.importing",
    "finetune": "firemlip.training.api", "FinetuneResult": "firemlip.training.api",
    "sample": "firemlip.sampling",
    "select": "firemlip.selection", "Selection": "firemlip.selection",
    "evaluate": "firemlip.evaluation",
    "export_model": "firemlip.lammps.export", "render": "firemlip.lammps.render", "run_lammps": "firemlip.lammps.runner",
    "analyze_diffusion": "firemlip.analysis.diffusion", "DiffusionAnalysis": "firemlip.analysis.diffusion",
    "DiffusionResult": "firemlip.analysis.diffusion", "analyze_arrhenius": "firemlip.analysis.arrhenius",
    "analyze_elastic": "firemlip.analysis.elastic", "elastic_tensor_ase": "firemlip.analysis.elastic",
    "analyze_scaling": "firemlip.analysis.scaling",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'firemlip' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
