"""Hole hunt: perturb host frames hard (compressions, inserted atoms), relax briefly, look for collapsed pairs.

A model with a "hole" (attraction at short range) lets the relaxation pull atoms together; a model with a proper
wall pushes them apart. A relaxed configuration with a pair closer than ``hole_factor`` × (r_cov(A) + r_cov(B)) is
reported and saved (``holes.extxyz``) for inspection and for labelling (``firemlip label holes.extxyz``) and
adding to the training data. Distances in Å, energies in eV, forces in eV/Å.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from ase import Atoms

from firemlip.audit.coverage import pair_key
from firemlip.audit.settings import AuditSettings


def min_distance_ratio(atoms: Atoms) -> tuple[float, float, str]:
    """The pair with the smallest d / (r_cov(A) + r_cov(B)): ``(ratio, distance Å, "A-B")``; (inf, inf, "") if none."""
    from ase.data import covalent_radii
    from ase.neighborlist import neighbor_list

    if len(atoms) < 2 and not atoms.pbc.any():
        return float("inf"), float("inf"), ""
    rc = covalent_radii[atoms.numbers]
    cutoff = 2.0 * float(rc.max()) * 1.5
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    keep = i != j
    i, j, d = i[keep], j[keep], d[keep]
    if len(d) == 0:
        return float("inf"), float("inf"), ""
    ratio = d / (rc[i] + rc[j])
    k = int(np.argmin(ratio))
    sym = atoms.get_chemical_symbols()
    return float(ratio[k]), float(d[k]), pair_key(sym[i[k]], sym[j[k]])


def compress(atoms: Atoms, rng: np.random.Generator, settings: AuditSettings) -> tuple[Atoms, dict]:
    """A copy scaled linearly by a factor in ``compression_range`` (cell and positions) and rattled."""
    s = float(rng.uniform(*settings.compression_range))
    b = atoms.copy()
    b.calc = None
    if b.pbc.any():
        b.set_cell(b.cell.array * s, scale_atoms=True)
    else:
        c = b.positions.mean(axis=0)
        b.positions = c + (b.positions - c) * s
    b.positions += rng.normal(0.0, settings.rattle_A, size=b.positions.shape)
    return b, {"scale": s}


def insert_atom(atoms: Atoms, rng: np.random.Generator, settings: AuditSettings) -> tuple[Atoms, dict]:
    """A copy with one extra atom (a random host element) placed next to a random host atom at a distance of
    ``insert_factor_range`` × the covalent-radius sum (the closest of 20 random tries to that band)."""
    from ase.data import atomic_numbers, covalent_radii

    elements = sorted(set(atoms.get_chemical_symbols()))
    el = str(rng.choice(elements))
    best, best_score, info = None, np.inf, {}
    lo, hi = settings.insert_factor_range
    for _ in range(20):
        k = int(rng.integers(len(atoms)))
        f = float(rng.uniform(lo, hi))
        d = f * (covalent_radii[atomic_numbers[el]] + covalent_radii[atoms.numbers[k]])
        v = rng.normal(size=3)
        v /= np.linalg.norm(v)
        b = atoms.copy()
        b.calc = None
        b.append(el)
        b.positions[-1] = atoms.positions[k] + d * v
        ratio = min_distance_ratio(b)[0]
        score = max(0.0, lo - ratio)  # 0 when no pair is closer than the lower end of the band
        if score < best_score:
            best, best_score, info = b, score, {"element": el, "next_to": k, "start_factor": f}
        if score == 0.0:
            break
    assert best is not None
    return best, info


def _calculator(model, device: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mace.calculators import MACECalculator

        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        return MACECalculator(models=model, device=device, default_dtype=dtype)


def relax(atoms: Atoms, calc, steps: int, fmax: float) -> dict:
    """Fixed-cell FIRE relaxation in place; returns ``{"steps", "energy_eV", "error"}`` (error None when fine)."""
    from ase.optimize import FIRE

    atoms.calc = calc
    err = None
    opt = FIRE(atoms, logfile=None)
    try:
        with np.errstate(all="ignore"):
            opt.run(fmax=fmax, steps=steps)
        energy = float(atoms.get_potential_energy())
        if not np.isfinite(energy) or not np.all(np.isfinite(atoms.positions)):
            err = "non-finite energy or positions"
    except Exception as exc:  # a collapsing model can fail numerically inside torch
        energy, err = float("nan"), f"{type(exc).__name__}: {str(exc)[:120]}"
    return {"steps": int(opt.nsteps), "energy_eV": energy, "error": err}


def hole_hunt(model, host: Sequence[Atoms], settings: AuditSettings, device: str = "cpu",
              progress: bool = True, calc=None) -> tuple[dict, list[Atoms]]:
    """Run ``hole_trials`` perturb-and-relax trials (even: compression, odd: insertion) over the host frames.

    Returns the gate record (``passed``, ``holes``, per-trial rows, the threshold) and the hole frames (unlabelled
    structures with ``config_type=audit_hole`` and the trial's details in ``info``). ``calc`` replaces the
    model by any ASE calculator (e.g. a reference potential, to calibrate the thresholds); ``model`` may then be
    None.
    """
    from tqdm import tqdm

    calc = calc if calc is not None else _calculator(model, device)
    rows: list[dict] = []
    holes: list[Atoms] = []
    hosts = list(host)
    for t in tqdm(range(settings.hole_trials), desc="hole hunt", unit="trial", disable=not progress, leave=False):
        rng = np.random.default_rng([int(settings.seed), 7, t])
        src = t % len(hosts)
        kind = "compression" if t % 2 == 0 else "insertion"
        b, info = (compress if kind == "compression" else insert_atom)(hosts[src], rng, settings)
        start_ratio = min_distance_ratio(b)[0]
        res = relax(b, calc, settings.relax_steps, settings.relax_fmax_eV_A)
        ratio, dist, pair = min_distance_ratio(b) if res["error"] is None else (0.0, float("nan"), "?")
        is_hole = ratio < settings.hole_factor or res["error"] is not None
        row = {"trial": t, "kind": kind, "host_frame": src, **info, "start_min_ratio": start_ratio,
               "min_ratio": ratio, "min_distance_A": dist, "pair": pair, "relax_steps": res["steps"],
               "energy_eV": res["energy_eV"], "error": res["error"], "hole": bool(is_hole)}
        rows.append(row)
        if is_hole:
            h = Atoms(numbers=b.numbers, positions=b.positions, cell=b.cell, pbc=b.pbc)
            h.info.update({"config_type": "audit_hole", "source": f"audit:hole_hunt:{t}", "audit_kind": kind,
                           "audit_trial": t, "audit_host_frame": src, "audit_min_ratio": ratio,
                           "audit_pair": pair})
            holes.append(h)
    n_holes = sum(r["hole"] for r in rows)
    finite = [r["min_ratio"] for r in rows if np.isfinite(r["min_ratio"])]
    rec = {"passed": n_holes == 0, "holes": n_holes, "trials": len(rows),
           "hole_factor": settings.hole_factor, "worst_min_ratio": min(finite) if finite else None,
           "rows": rows}
    return rec, holes
