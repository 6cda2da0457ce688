"""Screened-nuclear (ZBL) repulsion: the audit's reference curve and the ``finetune --zbl`` remedy.

Reference: the *universal* Ziegler–Biersack–Littmark potential (J. F. Ziegler, J. P. Biersack, U. Littmark,
*The Stopping and Range of Ions in Solids*, Pergamon 1985, ch. 2):

    V(r) = Z1 Z2 e² / (4π ε0 r) · φ(r / a),    a = 0.46850 Å / (Z1^0.23 + Z2^0.23),
    φ(x) = 0.18175 e^(−3.19980 x) + 0.50986 e^(−0.94229 x) + 0.28022 e^(−0.40290 x) + 0.02817 e^(−0.20162 x),

with e²/(4π ε0) = 14.399645 eV·Å. Energies in eV, distances in Å. The reference has no cut-off and no bonding: it
is what two nuclei feel when their electron clouds overlap strongly, the wall an MLIP must not tunnel through.

The remedy is mace-torch's own ZBL pair term (``mace.modules.radial.ZBLBasis``, enabled in a freshly built model by
``pair_repulsion=True``): :func:`add_zbl` attaches it to an existing model (a foundation trained without it) exactly
as ``MACE.__init__`` does, so the fine-tuned model carries the wall into ASE and LAMMPS.
"""

from __future__ import annotations

import numpy as np

COULOMB_EV_A = 14.399645  # e²/(4π ε0) in eV·Å
ZBL_COEFFS = (0.18175, 0.50986, 0.28022, 0.02817)
ZBL_EXPONENTS = (3.19980, 0.94229, 0.40290, 0.20162)
ZBL_LENGTH_A = 0.46850  # Å (0.8854 × Bohr radius)
MACE_BOHR_A = 0.529  # the Bohr radius (Å) as written in mace-torch's ZBLBasis


def zbl_screening_length(z1: int, z2: int) -> float:
    """Universal screening length a_u (Å) of a pair of nuclear charges."""
    return ZBL_LENGTH_A / (float(z1) ** 0.23 + float(z2) ** 0.23)


def zbl_energy(r: np.ndarray | float, z1: int, z2: int) -> np.ndarray:
    """Universal ZBL pair energy (eV) of nuclei ``z1``, ``z2`` at distance(s) ``r`` (Å, > 0)."""
    r = np.asarray(r, dtype=float)
    x = r / zbl_screening_length(z1, z2)
    phi = sum(c * np.exp(-e * x) for c, e in zip(ZBL_COEFFS, ZBL_EXPONENTS, strict=True))
    return COULOMB_EV_A * z1 * z2 / r * phi


def zbl_distance_at(energy_eV: float, z1: int, z2: int, r_lo: float = 0.05, r_hi: float = 10.0) -> float:
    """Distance (Å) at which the ZBL energy equals ``energy_eV`` (bisection; V is monotone decreasing).

    Returns ``r_lo`` if the energy is never reached above it and ``r_hi`` if it is exceeded even there.
    """
    if zbl_energy(r_hi, z1, z2) >= energy_eV:
        return r_hi
    if zbl_energy(r_lo, z1, z2) <= energy_eV:
        return r_lo
    lo, hi = r_lo, r_hi
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if zbl_energy(mid, z1, z2) > energy_eV:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def has_zbl(model) -> bool:
    """True when a mace-torch model carries the ZBL pair-repulsion term."""
    return hasattr(model, "pair_repulsion_fn") and hasattr(model, "pair_repulsion")


def add_zbl(model, screening: str = "universal") -> bool:
    """Attach mace-torch's ZBL pair repulsion to ``model`` in place; return False if it already has one.

    The term is built as in ``MACE.__init__`` (``ZBLBasis`` with the polynomial-envelope exponent of the model's
    radial cut-off, non-trainable), in the model's dtype and on its device. Like mace-torch's own term, its energy
    goes through the model's scale/shift block and is switched off smoothly at r_cov(A) + r_cov(B). Saved models
    keep it (``torch.save`` of the whole module), and ``mace.tools.scripts_utils.extract_config_mace_model``
    reports ``pair_repulsion=True`` for it.

    ``screening="universal"`` (default) sets the term's screening length to the universal ZBL value
    a_u = 0.46850 Å / (Z1^0.23 + Z2^0.23) (buffers ``a_prefactor`` = 0.46850/0.529, ``a_exp`` = 0.23);
    ``"mace"`` keeps mace-torch's default (0.4543 × 0.529 Å / (Z1^0.3 + Z2^0.3)), about 2.5× shorter for Cu–Cu,
    whose wall is a few eV only below ~1 Å — too soft to stop the collapses the audit finds at 1.2–1.6 Å.
    """
    import torch
    from mace.modules.radial import ZBLBasis

    if screening not in ("universal", "mace"):
        raise ValueError(f"add_zbl: screening must be 'universal' or 'mace', got {screening!r}")
    if has_zbl(model):
        return False
    param = next(model.parameters())
    try:
        p = int(model.radial_embedding.cutoff_fn.p)
    except AttributeError:
        p = 5
    prev = torch.get_default_dtype()
    torch.set_default_dtype(param.dtype)
    try:
        fn = ZBLBasis(p=p)
    finally:
        torch.set_default_dtype(prev)
    if screening == "universal":
        with torch.no_grad():
            fn.a_prefactor.fill_(ZBL_LENGTH_A / MACE_BOHR_A)
            fn.a_exp.fill_(0.23)
    model.pair_repulsion_fn = fn.to(device=param.device, dtype=param.dtype)
    model.pair_repulsion = True
    return True
