"""A stability guard for molecular dynamics driven by a machine-learned potential.

An MLIP that leaves its training domain can let atoms collapse onto each other, the energy jump, or the
temperature run away. :class:`StabilityGuard` checks a frame for these three symptoms and returns a
:class:`StabilityEvent` saying why the trajectory should stop (or ``None`` when it looks sane). It is used by
``firemlip sample`` (stop a trajectory, keep the frames before it) and by the model audit.

Units: distances in Å, energies in eV, temperatures in K.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
from ase import Atoms

from firemlip.options import GuardOptions


@dataclass(frozen=True)
class StabilityEvent:
    """Why a frame failed the guard: ``kind`` is ``min_distance``, ``energy_jump``, ``temperature`` or
    ``non_finite``; ``value`` and ``threshold`` are in the units named by ``unit``."""

    kind: str
    message: str
    value: float
    threshold: float
    unit: str
    step: int | None = None

    def to_dict(self) -> dict:
        """Plain-dict form for JSON summaries and manifests."""
        return asdict(self)


def pair_thresholds(symbols: list[str], factor: float = 0.5, floor: float = 0.5,
                    overrides: Mapping[str, float] | None = None) -> dict[tuple[str, str], float]:
    """Species-aware minimum distances (Å): ``max(floor, factor × (r_cov(a) + r_cov(b)))`` per unordered pair.

    ``overrides`` maps ``"A-B"`` (either order) to an explicit distance in Å.
    """
    from ase.data import atomic_numbers, covalent_radii

    uniq = sorted(set(symbols))
    out: dict[tuple[str, str], float] = {}
    for i, a in enumerate(uniq):
        for b in uniq[i:]:
            d = max(floor, factor * (covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]]))
            out[(a, b)] = out[(b, a)] = float(d)
    for key, val in (overrides or {}).items():
        a, _, b = key.partition("-")
        out[(a, b)] = out[(b, a)] = float(val)
    return out


def min_distance_violation(atoms: Atoms, factor: float = 0.5, floor: float = 0.5,
                           overrides: Mapping[str, float] | None = None) -> tuple[float, float, str] | None:
    """The worst pair closer than its species threshold, as ``(distance Å, threshold Å, "A-B")``, or None.

    Periodic images are honoured (ASE neighbour list); "worst" is the smallest distance/threshold ratio.
    """
    from ase.neighborlist import neighbor_list

    symbols = atoms.get_chemical_symbols()
    if len(atoms) < 2 and not atoms.pbc.any():
        return None
    thr = pair_thresholds(symbols, factor, floor, overrides)
    cutoff = max(thr.values())
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    if len(d) == 0:
        return None
    sym = np.asarray(symbols)
    t = _vector_thresholds(sym, i, j, thr)
    ratio = d / t
    k = int(np.argmin(ratio))
    if ratio[k] >= 1.0:
        return None
    return float(d[k]), float(t[k]), f"{sym[i[k]]}-{sym[j[k]]}"


def _vector_thresholds(sym: np.ndarray, i: np.ndarray, j: np.ndarray,
                       thr: dict[tuple[str, str], float]) -> np.ndarray:
    uniq = sorted(set(sym.tolist()))
    idx = {s: n for n, s in enumerate(uniq)}
    table = np.array([[thr[(a, b)] for b in uniq] for a in uniq])
    codes = np.array([idx[s] for s in sym])
    return table[codes[i], codes[j]]


#: the guard's defaults (defined once, in :class:`firemlip.options.GuardOptions`)
_GUARD = GuardOptions()


@dataclass
class StabilityGuard:
    """Checks MD frames for collapse, energy jumps and temperature runaway.

    Parameters (all optional):
      * ``distance_factor``/``distance_floor``/``distance_overrides``: a pair A–B is too close below
        ``max(floor, factor × (r_cov(A) + r_cov(B)))`` Å (see :func:`pair_thresholds`).
      * ``max_energy_jump_eV_per_atom``: largest allowed change of potential energy per atom (eV/atom) between
        two consecutive checks.
      * ``max_temperature_factor``/``max_temperature_margin_K``: the instantaneous temperature may not exceed
        ``max(factor × target, target + margin)`` K.

    The guard is stateful only in the previous energy; call :meth:`reset` before a new trajectory.
    """

    distance_factor: float = _GUARD.distance_factor
    distance_floor: float = _GUARD.distance_floor
    distance_overrides: dict[str, float] = field(default_factory=dict)
    max_energy_jump_eV_per_atom: float = _GUARD.max_energy_jump_eV_per_atom
    max_temperature_factor: float = _GUARD.max_temperature_factor
    max_temperature_margin_K: float = _GUARD.max_temperature_margin_K
    _last_energy_per_atom: float | None = field(default=None, init=False, repr=False)

    def reset(self) -> None:
        """Forget the previous energy (start of a new trajectory)."""
        self._last_energy_per_atom = None

    def temperature_limit_K(self, target_K: float) -> float:
        """Highest allowed instantaneous temperature (K) for a thermostat target ``target_K``."""
        return max(self.max_temperature_factor * target_K, target_K + self.max_temperature_margin_K)

    def check(self, atoms: Atoms, potential_energy_eV: float | None = None, temperature_K: float | None = None,
              target_temperature_K: float | None = None, step: int | None = None) -> StabilityEvent | None:
        """Return why ``atoms`` is unstable, or None. Energies in eV (total), temperatures in K."""
        pos = atoms.get_positions()
        if not np.all(np.isfinite(pos)):
            return StabilityEvent("non_finite", "non-finite positions", math.nan, math.nan, "Å", step)
        if potential_energy_eV is not None and not math.isfinite(potential_energy_eV):
            return StabilityEvent("non_finite", "non-finite potential energy", float(potential_energy_eV),
                                  math.nan, "eV", step)
        bad = min_distance_violation(atoms, self.distance_factor, self.distance_floor, self.distance_overrides)
        if bad is not None:
            d, t, pair = bad
            return StabilityEvent("min_distance", f"{pair} distance {d:.3f} Å below {t:.3f} Å", d, t, "Å", step)
        if potential_energy_eV is not None and len(atoms):
            epa = float(potential_energy_eV) / len(atoms)
            prev = self._last_energy_per_atom
            self._last_energy_per_atom = epa
            if prev is not None and abs(epa - prev) > self.max_energy_jump_eV_per_atom:
                jump = abs(epa - prev)
                return StabilityEvent("energy_jump", f"potential energy jumped {jump:.3f} eV/atom between checks",
                                      jump, self.max_energy_jump_eV_per_atom, "eV/atom", step)
        if temperature_K is not None and target_temperature_K is not None:
            if not math.isfinite(temperature_K):
                return StabilityEvent("non_finite", "non-finite temperature", float(temperature_K), math.nan,
                                      "K", step)
            lim = self.temperature_limit_K(target_temperature_K)
            if temperature_K > lim:
                return StabilityEvent("temperature", f"temperature {temperature_K:.0f} K above {lim:.0f} K "
                                      f"(target {target_temperature_K:g} K)", float(temperature_K), lim, "K", step)
        return None

    def params(self) -> dict:
        """The guard's settings as a plain dict (for manifests)."""
        return {"distance_factor": self.distance_factor, "distance_floor": self.distance_floor,
                "distance_overrides": dict(self.distance_overrides),
                "max_energy_jump_eV_per_atom": self.max_energy_jump_eV_per_atom,
                "max_temperature_factor": self.max_temperature_factor,
                "max_temperature_margin_K": self.max_temperature_margin_K}
