"""Thresholds and sizes of the model audit, with their documented defaults and range checks.

Units: distances in Å, energies in eV, forces in eV/Å, temperatures in K, time step in fs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from firemlip.errors import FiremlipError, reject_unknown_fields


@dataclass
class AuditSettings:
    """Every knob of ``firemlip audit`` (defaults sized so a ~100-atom host audits in minutes on 2 CPU cores).

    Trusted range (coverage)
      * ``trust_margin`` (0.15): the repulsive-wall window starts this fraction below the shortest training
        distance of the pair, r_check = (1 − margin) × r_trust. A relative margin because an isolated dimer
        binds ~10–15 % shorter than the same pair in a solid (Cu₂ 2.22 Å vs 2.55 Å in fcc Cu), so a physical
        dimer minimum lies a little below a bulk-trained r_trust and must not be flagged.
      * ``default_trust_factor`` (1.0): without data for a pair, r_trust = factor × (r_cov(A) + r_cov(B)).

    Pair scans (isolated dimer, non-periodic, and host scans)
      * ``scan_start_A`` (0.5 Å) … cut-off, step ``scan_step_A`` (0.02 Å).
      * ``wall_height_eV`` (10 eV): the window ends where the ZBL reference reaches this height,
        r_stop = max(scan start, r where V_ZBL(r) = wall_height). MD never needs the model below r_stop.
      * ``force_tolerance_eV_A`` (0.1 eV/Å): inside [r_stop, r_check] the curve is *attractive* where
        dE/dr > tolerance (energy falls as the atoms approach).
      * ``min_rise_eV`` (1.0 eV): the curve is *flat* when E(r_stop) − E(r_check) < min_rise.
      * a *spurious minimum* is a local minimum of E below r_check, less than ``wall_height_eV`` above E(r_check).
      * ``host_scan_frames`` (1): host frames used for the in-host scans (one scan per element pair present).

    Hole hunt
      * ``hole_trials`` (12): half compressions, half insertions, from host frames in turn.
      * ``compression_range`` ((0.85, 0.95)): linear scale factors of cell and positions; plus a Gaussian
        rattle of ``rattle_A`` (0.1 Å).
      * insertions put one extra atom (of a random host element) at ``insert_factor_range`` ((0.65, 0.9)) × the
        sum of covalent radii from its nearest atom.
      * ``relax_steps`` (60) of FIRE with ``relax_fmax_eV_A`` (0.05 eV/Å), fixed cell.
      * ``hole_factor`` (0.6): a pair closer than factor × (r_cov(A) + r_cov(B)) after relaxation is a hole.

    MD stability grid (:class:`firemlip.stability.StabilityGuard` with its defaults)
      * ``md_temperatures_K`` ((300, 600, 1200)) × ``md_seeds`` (2) NVT runs of ``md_steps`` (400) steps of
        ``md_timestep_fs`` (1 fs); ``md_engine`` ``auto`` (LAMMPS when the plugin is built, else ASE),
        ``ase`` or ``lammps``; ``md_steps=0`` skips the grid.
      * ``min_stable_fraction`` (1.0): the grid passes when at least this fraction of runs finishes.
    """

    trust_margin: float = 0.15
    default_trust_factor: float = 1.0
    scan_start_A: float = 0.5
    scan_step_A: float = 0.02
    wall_height_eV: float = 10.0
    force_tolerance_eV_A: float = 0.1
    min_rise_eV: float = 1.0
    host_scan_frames: int = 1
    host_scan_step_A: float = 0.05
    hole_trials: int = 12
    compression_range: tuple[float, float] = (0.85, 0.95)
    rattle_A: float = 0.1
    insert_factor_range: tuple[float, float] = (0.65, 0.9)
    relax_steps: int = 60
    relax_fmax_eV_A: float = 0.05
    hole_factor: float = 0.6
    md_temperatures_K: tuple[float, ...] = (300.0, 600.0, 1200.0)
    md_seeds: int = 2
    md_steps: int = 400
    md_timestep_fs: float = 1.0
    md_engine: str = "auto"
    min_stable_fraction: float = 1.0
    seed: int = 0

    @classmethod
    def from_kwargs(cls, **kw: Any) -> AuditSettings:
        """Settings from keyword arguments (unknown names and out-of-range values raise one-line errors)."""
        reject_unknown_fields(cls, kw, "audit", noun="setting")
        for k in ("compression_range", "insert_factor_range", "md_temperatures_K"):
            if k in kw and kw[k] is not None:
                try:
                    kw[k] = tuple(float(v) for v in (kw[k] if not isinstance(kw[k], (int, float)) else [kw[k]]))
                except (TypeError, ValueError):
                    raise FiremlipError(f"audit: {k} must be a list of numbers, got {kw[k]!r}") from None
        s = cls(**kw)
        s.validate()
        return s

    def validate(self) -> None:
        """Raise :class:`FiremlipError` naming the first setting out of its allowed range."""
        def rng(name: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> None:
            v = getattr(self, name)
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise FiremlipError(f"audit: {name} must be a number, got {v!r}") from None
            ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
            if not ok:
                lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
                raise FiremlipError(f"audit: {name} = {v:g} is out of range {lb}{lo:g}, {hi:g}{rb}")

        rng("trust_margin", 0.0, 0.9)
        rng("default_trust_factor", 0.0, 3.0, lo_open=True)
        rng("scan_start_A", 0.05, 3.0)
        rng("scan_step_A", 0.0, 0.5, lo_open=True)
        rng("wall_height_eV", 0.0, 1000.0, lo_open=True)
        rng("force_tolerance_eV_A", 0.0, 100.0)
        rng("min_rise_eV", 0.0, 1000.0)
        rng("host_scan_frames", 0, 10**6)
        rng("host_scan_step_A", 0.0, 0.5, lo_open=True)
        rng("hole_trials", 0, 10**6)
        rng("rattle_A", 0.0, 1.0)
        rng("relax_steps", 0, 10**6)
        rng("relax_fmax_eV_A", 0.0, 100.0, lo_open=True)
        rng("hole_factor", 0.0, 1.5, lo_open=True)
        rng("md_seeds", 1, 10**4)
        rng("md_steps", 0, 10**9)
        rng("md_timestep_fs", 0.0, 10.0, lo_open=True)
        rng("min_stable_fraction", 0.0, 1.0)
        for name, lo, hi in (("compression_range", 0.5, 1.0), ("insert_factor_range", 0.1, 2.0)):
            v = getattr(self, name)
            if len(v) != 2 or not all(math.isfinite(x) for x in v) or not lo <= v[0] <= v[1] <= hi:
                raise FiremlipError(f"audit: {name} = {list(v)} must be two increasing numbers in [{lo:g}, {hi:g}]")
        if not self.md_temperatures_K or any(not math.isfinite(t) or t <= 0 or t > 1e5
                                             for t in self.md_temperatures_K):
            raise FiremlipError(f"audit: md_temperatures_K = {list(self.md_temperatures_K)} must be positive "
                                f"temperatures (K) up to 1e5")
        if self.md_engine not in ("auto", "ase", "lammps"):
            raise FiremlipError(f"audit: md_engine must be auto, ase or lammps, got {self.md_engine!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``audit.json`` and the manifest."""
        return asdict(self)
