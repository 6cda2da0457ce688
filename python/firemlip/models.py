"""Building MACE models of a chosen size (tiny ones for tests, MACE-MP-0-like presets for distillation/scratch).

Models are mace-torch ``ScaleShiftMACE`` modules saved whole with ``torch.save`` — the ``.model`` format that
``mace.calculators.MACECalculator`` and mace's LAMMPS exporter read. Energies in eV, r_max in Å.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class MaceShape:
    """Architecture preset: channels of the hidden irreps, highest L, interactions, correlation order, r_max (Å)."""

    channels: int = 8
    max_L: int = 1
    num_interactions: int = 2
    correlation: int = 2
    r_max: float = 4.5
    max_ell: int = 2
    num_bessel: int = 6
    radial_mlp: tuple[int, ...] = (16, 16)


PRESETS: dict[str, MaceShape] = {
    "tiny": MaceShape(channels=8, max_L=1, max_ell=2, radial_mlp=(16, 16)),
    # MACE-MP-0 small's 128x0e, but spherical harmonics to l=2: on 2 CPU cores an epoch costs the same as with the
    # former 64x0e/l=3 (35.5 vs 35.8 s on 773 Li-P-S-Cl frames), and distilling SevenNet-0 it reached 205 meV/Å
    # after 391 s where 64x0e/l=3 ended at 286 meV/Å after 433 s (benchmarks/bench_student_shapes.py for costs)
    # 8 radial Bessel functions: 16 fit PS zincblende's 8 volume-scan frames alone better (train = test: 4.5 against
    # 14.4 meV/atom, benchmarks/bench_student_fit_ev.py), but on the whole 465-frame distillation set they learn
    # slower (validation after 10 epochs 47 against 30-35 meV/atom; a 60-min run stayed 6-8 meV/atom behind)
    "small": MaceShape(channels=128, max_L=0, max_ell=2, correlation=3, r_max=5.0, num_bessel=8,
                       radial_mlp=(64, 64, 64)),
    "medium": MaceShape(channels=128, max_L=1, max_ell=3, correlation=3, r_max=5.0, num_bessel=8,
                        radial_mlp=(64, 64, 64)),
}


def override_shape(base: MaceShape, changes: Mapping[str, object], where: str = "shape") -> MaceShape:
    """``base`` with some fields replaced (r_max in Å); unknown fields or non-positive numbers raise a one-line
    :class:`~firemlip.errors.FiremlipError` naming ``where``. Numbers take the base field's type."""
    from firemlip.errors import FiremlipError

    known = {f.name for f in dataclasses.fields(base)}
    bad = sorted(set(changes) - known)
    if bad:
        raise FiremlipError(f"{where}: unknown field(s) {', '.join(bad)}; expected some of {', '.join(sorted(known))}")
    over = dict(changes)
    if "radial_mlp" in over:
        over["radial_mlp"] = tuple(int(x) for x in over["radial_mlp"])  # type: ignore[union-attr]
    for k, v in over.items():
        ref = getattr(base, k)
        if isinstance(ref, (int, float)) and not isinstance(ref, bool):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise FiremlipError(f"{where}.{k} must be a positive number, got {v!r}")
            over[k] = type(ref)(v)
    return dataclasses.replace(base, **over)


def hidden_irreps(shape: MaceShape) -> str:
    """e3nn irreps string of the hidden features, e.g. ``8x0e+8x1o`` for channels=8, max_L=1."""
    parts = []
    for L in range(shape.max_L + 1):
        parity = "e" if L % 2 == 0 else "o"
        parts.append(f"{shape.channels}x{L}{parity}")
    return "+".join(parts)


def build_mace(elements: Sequence[str], shape: MaceShape | str = "tiny",
               atomic_energies: Mapping[str, float] | None = None, avg_num_neighbors: float = 10.0,
               scale: float = 1.0, shift: float = 0.0, seed: int = 0, dtype: str = "float64",
               pair_repulsion: bool = False):
    """A freshly initialised ``ScaleShiftMACE`` for ``elements``.

    ``atomic_energies`` are the isolated-atom reference energies E0 (eV) per element (default 0);
    ``scale``/``shift`` (eV) scale the interaction energy; ``pair_repulsion`` adds MACE's ZBL term.
    """
    import torch
    from ase.data import atomic_numbers as Z
    from e3nn import o3
    from mace.modules import ScaleShiftMACE, gate_dict, interaction_classes

    if isinstance(shape, str):
        shape = PRESETS[shape]
    torch.manual_seed(seed)
    zs = sorted(Z[s] for s in elements)
    sym = {Z[s]: s for s in elements}
    e0 = np.array([float((atomic_energies or {}).get(sym[z], 0.0)) for z in zs])
    prev = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        model = ScaleShiftMACE(
            r_max=shape.r_max, num_bessel=shape.num_bessel, num_polynomial_cutoff=5, max_ell=shape.max_ell,
            interaction_cls=interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=interaction_classes["RealAgnosticResidualInteractionBlock"],
            num_interactions=shape.num_interactions, num_elements=len(zs),
            hidden_irreps=o3.Irreps(hidden_irreps(shape)), MLP_irreps=o3.Irreps("16x0e"),
            atomic_energies=e0, avg_num_neighbors=avg_num_neighbors, atomic_numbers=zs,
            correlation=shape.correlation, gate=gate_dict["silu"], pair_repulsion=pair_repulsion,
            radial_MLP=list(shape.radial_mlp), radial_type="bessel",
            atomic_inter_scale=scale, atomic_inter_shift=shift,
        )
    finally:
        torch.set_default_dtype(prev)
    return model.to(getattr(torch, dtype))


def save_model(model, path: str | os.PathLike[str]) -> Path:
    """Save a whole MACE module to ``path`` atomically (``.model`` file)."""
    import torch

    from firemlip.io import atomic_path

    with atomic_path(path, suffix=".model") as tmp:
        torch.save(model, tmp)
    return Path(path)
