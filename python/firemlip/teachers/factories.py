"""ASE-calculator factories of the built-in teachers, imported *inside the teacher's own venv* by the worker.

Stand-alone on purpose: no firemlip import, so the teacher venv needs only the teacher's package (and its ase,
numpy, torch). Energies in eV, forces in eV/Å, stress in eV/Å³ (ASE convention) — what ASE calculators return.
"""

from __future__ import annotations

import os


def _threads() -> None:
    """Respect OMP_NUM_THREADS for torch's intra-op pool (the parent passes its own setting through)."""
    n = os.environ.get("OMP_NUM_THREADS")
    if n and n.isdigit():
        import torch

        torch.set_num_threads(int(n))


def sevenn(device: str = "cpu", model: str = "7net-0", modal: str | None = None, **kwargs):
    """SevenNet (default SevenNet-0, weights shipped in ``sevenn/pretrained_potentials``) as an ASE calculator."""
    _threads()
    from sevenn.calculator import SevenNetCalculator

    if modal is not None:
        kwargs["modal"] = modal
    return SevenNetCalculator(model=model, device=device, **kwargs)


def chgnet(device: str = "cpu", model: str | None = None, **kwargs):
    """CHGNet (default 0.3.0, weights shipped in ``chgnet/pretrained``) as an ASE calculator (stress in eV/Å³)."""
    _threads()
    from chgnet.model.dynamics import CHGNetCalculator

    if model is not None:
        from chgnet.model import CHGNet

        kwargs["model"] = CHGNet.load(model_name=model, use_device=device, verbose=False)
    return CHGNetCalculator(use_device=device, **kwargs)
