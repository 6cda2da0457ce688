"""Pair scans: isolated dimers against the ZBL reference, and one host atom pushed towards a neighbour.

Every curve E(r) (eV, r in Å, ascending) is judged inside its *wall window* [r_stop, r_check]:
r_check = (1 − margin) × r_trust is where the model starts to extrapolate (r_trust: shortest training distance of the
pair) and r_stop is where the ZBL reference reaches ``wall_height_eV`` — no thermal MD gets closer. Inside the
window the energy must rise as the atoms approach. Flags (see :func:`assess_curve`):

* ``attractive``: dE/dr > ``force_tolerance_eV_A`` somewhere in the window (the model pulls the atoms together);
* ``flat``: E(r_stop) − E(r_check) < ``min_rise_eV`` (no wall worth the name);
* ``spurious_minimum``: a local minimum of E below r_check (down to the scan start), at least 0.01 eV deep and
  less than ``wall_height_eV`` above E(r_check) — a well that MD atoms can fall into.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms

from firemlip.audit.coverage import covalent_sum, pair_key
from firemlip.audit.settings import AuditSettings
from firemlip.audit.zbl import zbl_distance_at, zbl_energy

MIN_WELL_DEPTH_EV = 0.01


def model_energies(model, frames: Sequence[Atoms], device: str = "cpu", batch_size: int = 16) -> np.ndarray:
    """Total energies (eV) of ``frames`` predicted by a MACE model (batched)."""
    from firemlip.training.data import predict

    if not frames:
        return np.zeros(0)
    return predict(model, frames, device=device, batch_size=batch_size, compute_stress=False).energy


def wall_stop(key: str, settings: AuditSettings) -> float:
    """Inner end r_stop (Å) of the wall window of pair ``key``: where V_ZBL reaches the wall height."""
    from ase.data import atomic_numbers

    a, b = key.split("-")
    return max(settings.scan_start_A, zbl_distance_at(settings.wall_height_eV, atomic_numbers[a], atomic_numbers[b]))


def assess_curve(r: np.ndarray, energy: np.ndarray, r_check: float, r_stop: float, settings: AuditSettings) -> dict:
    """Judge an energy curve (eV) on ascending distances ``r`` (Å) inside the window [r_stop, r_check].

    Returns the flags, ``passed`` and the numbers behind them (window, worst slope in eV/Å and where, rise in eV,
    spurious minima as ``{"r_A", "depth_eV"}`` with depth relative to E(r_check)).
    """
    r = np.asarray(r, dtype=float)
    e = np.asarray(energy, dtype=float)
    out: dict = {"r_check_A": float(r_check), "r_stop_A": float(r_stop)}
    if not np.all(np.isfinite(e)):
        bad = float(r[~np.isfinite(e)][0])
        out.update({"passed": False, "flags": ["non_finite"], "non_finite_at_A": bad})
        return out
    flags: list[str] = []
    e_check = float(np.interp(r_check, r, e))
    if r_stop < r_check and len(r) >= 3:
        slope = np.gradient(e, r)
        win = (r >= r_stop - 1e-9) & (r <= r_check + 1e-9)
        if win.any():
            k = int(np.argmax(np.where(win, slope, -np.inf)))
            out["max_slope_eV_A"] = float(slope[k])
            out["max_slope_at_A"] = float(r[k])
            if slope[k] > settings.force_tolerance_eV_A:
                flags.append("attractive")
        rise = float(np.interp(r_stop, r, e)) - e_check
        out["rise_eV"] = rise
        if rise < settings.min_rise_eV:
            flags.append("flat")
    else:
        out["window"] = "empty (the data already reach the ZBL wall height)"
    minima = []
    below = np.nonzero(r < r_check)[0]
    for k in below:
        left = e[k - 1] if k > 0 else np.inf  # the scan start counts as a minimum when E falls into it
        right = e[k + 1] if k + 1 < len(e) else np.inf
        if e[k] < left and e[k] <= right:
            upto = (r >= r[k]) & (r <= r_check)
            barrier = float(np.max(e[upto])) - float(e[k]) if upto.any() else 0.0
            depth = float(e[k]) - e_check
            if barrier >= MIN_WELL_DEPTH_EV and depth < settings.wall_height_eV:
                minima.append({"r_A": float(r[k]), "depth_eV": depth, "barrier_eV": barrier})
    out["spurious_minima"] = minima
    if minima:
        flags.append("spurious_minimum")
    out["flags"] = flags
    out["passed"] = not flags
    return out


def dimer_scan(model, a: str, b: str, r: np.ndarray, r_far: float, device: str = "cpu") -> tuple[np.ndarray, float]:
    """Energies (eV) of an isolated, non-periodic a–b dimer at distances ``r`` (Å), relative to the pair at
    ``r_far`` (beyond the cut-off: two free atoms). Returns (E(r) − E(r_far), E(r_far))."""
    frames = [Atoms([a, b], positions=[[0, 0, 0], [0, 0, float(x)]], pbc=False) for x in r]
    frames.append(Atoms([a, b], positions=[[0, 0, 0], [0, 0, float(r_far)]], pbc=False))
    e = model_energies(model, frames, device)
    return e[:-1] - e[-1], float(e[-1])


def pair_scans(model, ranges: dict[str, dict], settings: AuditSettings, device: str = "cpu") -> dict:
    """Dimer scans of every model pair from ``scan_start_A`` to the cut-off, judged against their trusted ranges.

    Returns ``{"passed", "failed_pairs", "pairs": {key: {r_A, energy_eV, zbl_eV, assessment, ...}}}``.
    """
    from ase.data import atomic_numbers

    r_cut = float(model.r_max)
    r = np.arange(settings.scan_start_A, r_cut + 1e-9, settings.scan_step_A)
    pairs: dict[str, dict] = {}
    for key, tr in ranges.items():
        a, b = key.split("-")
        e, _ = dimer_scan(model, a, b, r, r_cut + 1.0, device)
        r_check = max(settings.scan_start_A, (1.0 - settings.trust_margin) * tr["r_trust_A"])
        r_stop = wall_stop(key, settings)
        assessment = assess_curve(r, e, r_check, r_stop, settings)
        pairs[key] = {"r_A": r.tolist(), "energy_eV": e.tolist(),
                      "zbl_eV": zbl_energy(r, atomic_numbers[a], atomic_numbers[b]).tolist(),
                      "r_trust_A": tr["r_trust_A"], "trust_source": tr["source"], **assessment}
    failed = sorted(k for k, v in pairs.items() if not v["passed"])
    return {"passed": not failed, "failed_pairs": failed, "pairs": pairs}


def _closest_pairs(atoms: Atoms, cutoff: float) -> dict[str, tuple[int, int, float, np.ndarray]]:
    """For each element pair in ``atoms``: the closest (i, j, d, vector i→j) within ``cutoff`` Å."""
    from ase.neighborlist import neighbor_list

    i, j, d, D = neighbor_list("ijdD", atoms, cutoff)
    sym = atoms.get_chemical_symbols()
    best: dict[str, tuple[int, int, float, np.ndarray]] = {}
    for n in np.argsort(d, kind="stable"):
        if i[n] == j[n]:
            continue
        key = pair_key(sym[i[n]], sym[j[n]])
        if key not in best:
            best[key] = (int(i[n]), int(j[n]), float(d[n]), D[n].copy())
    return best


def host_scans(model, host: Sequence[Atoms], ranges: dict[str, dict], settings: AuditSettings,
               device: str = "cpu") -> dict:
    """In-host scans: in each of the first ``host_scan_frames`` host frames, for each element pair present, the
    closest pair (i, j); atom i moves along the bond towards j (others fixed) from the host distance d0 down to
    ``scan_start_A``. The total energy relative to the unperturbed frame (eV) is judged in the window
    [r_stop, min(d0, (1 − margin) r_trust)]."""
    out: dict[str, dict] = {}
    r_cut = float(model.r_max)
    for f, atoms in enumerate(list(host)[: settings.host_scan_frames]):
        for key, (i, j, d0, vec) in sorted(_closest_pairs(atoms, r_cut).items()):
            u = vec / d0
            r = np.arange(settings.scan_start_A, d0, settings.host_scan_step_A)
            r = np.append(r, d0)
            frames = []
            for x in r:
                b = atoms.copy()
                b.calc = None
                b.positions[i] = atoms.positions[i] + (d0 - x) * u
                frames.append(b)
            e = model_energies(model, frames, device)
            e = e - e[-1]
            tr = ranges.get(key, {"r_trust_A": covalent_sum(key)})
            r_check = max(settings.scan_start_A, min(d0, (1.0 - settings.trust_margin) * tr["r_trust_A"]))
            assessment = assess_curve(r, e, r_check, wall_stop(key, settings), settings)
            out[f"frame{f}:{key}"] = {"frame": f, "pair": key, "atoms": [i, j], "d0_A": d0, "r_A": r.tolist(),
                                      "energy_eV": e.tolist(), **assessment}
    failed = sorted(k for k, v in out.items() if not v["passed"])
    return {"passed": not failed, "failed_scans": failed, "scans": out}
