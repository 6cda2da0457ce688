"""Frames → mace-torch graphs, batched prediction with a MACE model, and dtype handling.

Labels are read from the project's keys: ``REF_energy`` (eV), ``REF_forces`` (eV/Å), ``REF_stress``
(eV/Å³, Voigt-6, ASE sign). Predictions are returned in the same units.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


@contextlib.contextmanager
def default_dtype(dtype: str) -> Iterator[None]:
    """Temporarily set torch's default dtype (mace builds graph tensors in the default dtype)."""
    import torch

    prev = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        yield
    finally:
        torch.set_default_dtype(prev)


def key_specification():
    """mace ``KeySpecification`` for the project's ``REF_*`` keys."""
    from mace.data import KeySpecification
    from mace.data.utils import update_keyspec_from_kwargs

    return update_keyspec_from_kwargs(KeySpecification(), {
        "energy_key": "REF_energy", "forces_key": "REF_forces", "stress_key": "REF_stress",
        "virials_key": "REF_virials", "head_key": "head",
    })


def z_table_of(model):
    """mace ``AtomicNumberTable`` of a model."""
    from mace.tools.utils import AtomicNumberTable

    return AtomicNumberTable([int(z) for z in model.atomic_numbers])


def frames_to_graphs(frames: Sequence, model, head: str | None = None, weight: float = 1.0,
                     dtype: str = "float64") -> list:
    """Convert ASE frames to mace ``AtomicData`` graphs for ``model`` (its elements, r_max and heads).

    ``weight`` multiplies each frame's loss weight (replay frames use their own weight).
    """
    from mace.data import AtomicData, config_from_atoms

    from firemlip.foundation import default_head, model_heads

    heads = model_heads(model)
    head = head or default_head(model)
    ks = key_specification()
    zt = z_table_of(model)
    r_max = float(model.r_max)
    out = []
    with default_dtype(dtype):
        for a in frames:
            cfg = config_from_atoms(a, key_specification=ks, head_name=head)
            cfg.weight = float(cfg.weight) * float(weight)
            out.append(AtomicData.from_config(cfg, z_table=zt, cutoff=r_max, heads=heads))
    return out


def has_stress(frames: Sequence) -> bool:
    """True when every frame is periodic in 3D and carries ``REF_stress``."""
    return bool(frames) and all("REF_stress" in a.info and all(a.pbc) for a in frames)


def loader(graphs: Sequence, batch_size: int, order: Sequence[int] | None = None):
    """A mace ``DataLoader`` over ``graphs`` in ``order`` (no internal shuffling: the caller seeds the order)."""
    from mace.tools.torch_geometric import DataLoader

    items = list(graphs) if order is None else [graphs[i] for i in order]
    return DataLoader(items, batch_size=batch_size, shuffle=False, drop_last=False)


@dataclass
class Predictions:
    """Model outputs per frame: energy (eV), forces (eV/Å, one array per frame), stress (eV/Å³ Voigt-6)."""

    energy: np.ndarray
    forces: list[np.ndarray]
    stress: np.ndarray | None


def predict(model, frames: Sequence, device: str = "cpu", batch_size: int = 8, head: str | None = None,
            compute_stress: bool | None = None, dtype: str | None = None) -> Predictions:
    """Energies, forces and (for 3D-periodic frames) stress of ``frames`` with ``model``.

    The model's own dtype is used unless ``dtype`` is given. Gradients w.r.t. parameters are not kept.
    """
    param = next(model.parameters())
    dt = dtype or str(param.dtype).replace("torch.", "")
    if compute_stress is None:
        compute_stress = bool(frames) and all(all(a.pbc) for a in frames)
    graphs = frames_to_graphs(frames, model, head=head, dtype=dt)
    energies: list[float] = []
    forces: list[np.ndarray] = []
    stresses: list[np.ndarray] = []
    was_training = model.training
    model.eval()
    try:
        for batch in loader(graphs, batch_size):
            batch = batch.to(device)
            out = model(batch.to_dict(), training=False, compute_force=True, compute_stress=compute_stress)
            e = out["energy"].detach().cpu().double().numpy()
            f = out["forces"].detach().cpu().double().numpy()
            ptr = batch.ptr.cpu().numpy()
            energies.extend(e.tolist())
            forces.extend(f[ptr[i]:ptr[i + 1]] for i in range(len(ptr) - 1))
            if compute_stress and out.get("stress") is not None:
                s = out["stress"].detach().cpu().double().numpy()
                stresses.extend(np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]]) for m in s)
    finally:
        model.train(was_training)
    return Predictions(np.asarray(energies), forces, np.asarray(stresses) if stresses else None)


def label_with_model(model, frames: Sequence, device: str = "cpu", head: str | None = None,
                     batch_size: int = 8) -> list:
    """Copies of ``frames`` whose ``REF_*`` labels are the model's own predictions (pseudo-labels)."""
    from firemlip.io import set_labels

    pred = predict(model, frames, device=device, batch_size=batch_size, head=head)
    out = []
    for i, a in enumerate(frames):
        b = a.copy()
        b.calc = None
        for k in ("REF_energy", "REF_stress"):
            b.info.pop(k, None)
        b.arrays.pop("REF_forces", None)
        set_labels(b, float(pred.energy[i]), pred.forces[i],
                   pred.stress[i] if pred.stress is not None else None)
        out.append(b)
    return out
