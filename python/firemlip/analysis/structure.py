"""Local-structure checks of sampled or production frames against a reference structure.

Per frame: mean coordination number per species (neighbours within a cut-off, Å), mean Steinhardt bond-
orientational order q4 and q6 (Steinhardt, Nelson & Ronchetti, PRB 28, 784 (1983)), both from pyscal3, the
shortest interatomic distance (Å, ASE neighbour list) and the volume ratio to the reference. A frame is flagged

* ``collapsed`` — atoms closer than ``min_distance_ratio`` × the reference's shortest distance, a volume below
  (1 − ``volume_tolerance``) × reference, or a species over-coordinated by more than ``cn_tolerance`` (relative);
* ``melted`` — mean q6 below (1 − ``q6_drop``) × the reference's (long-range bond order lost);
* ``expanded`` — volume above (1 + ``volume_tolerance``) × reference or a species under-coordinated by more than
  ``cn_tolerance``.

:func:`structure_check` is what the sampling stability guard and the run summary call.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from firemlip.analysis._common import mpl, save_figure, write_result
from firemlip.errors import FiremlipError


def _descriptors(atoms: Atoms, cutoff_A: float) -> dict[str, Any]:
    import pyscal3
    from ase.neighborlist import neighbor_list

    a = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.get_cell(), pbc=True)
    if a.cell.rank < 3:
        raise FiremlipError("structure check needs periodic frames with a 3-D cell")
    pyscal3.find_neighbors(a, method="cutoff", cutoff=cutoff_A)
    q4, q6 = pyscal3.steinhardt_parameter(a, l=[4, 6])
    cn = np.asarray(pyscal3.coordination_number(a), float)
    sym = np.array(a.get_chemical_symbols())
    d = neighbor_list("d", a, cutoff_A)
    return {"cn": {s: float(cn[sym == s].mean()) for s in sorted(set(sym))},
            # an atom with no neighbour within the cut-off has no bond order (NaN): a few such atoms are left out
            # of the mean (e.g. one atom of a region's selection that wandered into the other slab); when more
            # than a quarter of the atoms lack one, the sublattice is too sparse for a bond-order check (NaN)
            "q4": _bonded_mean(q4), "q6": _bonded_mean(q6),
            "min_distance_A": float(d.min()) if d.size else float("inf"),
            "volume_A3": float(a.get_volume())}


def _bonded_mean(q: Any) -> float:
    """Mean bond order over the atoms that have one, NaN when fewer than three quarters of them do."""
    q = np.asarray(q, float)
    ok = np.isfinite(q)
    return float(q[ok].mean()) if q.size and 4 * ok.sum() >= 3 * q.size else float("nan")


def default_cutoff(reference: Atoms, factor: float = 1.2) -> float:
    """Neighbour cut-off (Å): ``factor`` × the reference's shortest interatomic distance."""
    from ase.neighborlist import neighbor_list

    a = reference.copy()
    a.pbc = True
    for rc in (4.0, 6.0, 10.0):
        d = neighbor_list("d", a, rc)
        if d.size:
            return float(factor * d.min())
    raise FiremlipError("reference structure has no neighbours within 10 Å")


def structure_check(frames: Sequence[Atoms], reference: Atoms, *, cutoff_A: float | None = None,
                    cn_tolerance: float = 0.25, q6_drop: float = 0.3, min_distance_ratio: float = 0.6,
                    volume_tolerance: float = 0.3) -> list[dict[str, Any]]:
    """Compare every frame's local structure with ``reference``; one dict per frame.

    Keys: ``index``, ``cn`` (species → mean coordination), ``q4``, ``q6``, ``min_distance_A``, ``volume_ratio``,
    ``flags`` (subset of collapsed / melted / expanded), ``ok`` (no flags), ``reasons`` (human-readable).
    The reference's own values are those of the same function on the reference (cut-off: ``cutoff_A`` or
    1.2 × its shortest distance).
    """
    if len(frames) == 0:
        raise FiremlipError("structure check: no frames given")
    rc = float(cutoff_A) if cutoff_A else default_cutoff(reference)
    ref = _descriptors(reference, rc)
    ref_vol_per_atom = ref["volume_A3"] / len(reference)
    out = []
    for i, fr in enumerate(frames):
        d = _descriptors(fr, rc)
        vr = (d["volume_A3"] / len(fr)) / ref_vol_per_atom
        flags, reasons = set(), []
        if d["min_distance_A"] < min_distance_ratio * ref["min_distance_A"]:
            flags.add("collapsed")
            reasons.append(f"shortest distance {d['min_distance_A']:.2f} Å < {min_distance_ratio:g} × "
                           f"{ref['min_distance_A']:.2f} Å")
        if vr < 1 - volume_tolerance:
            flags.add("collapsed")
            reasons.append(f"volume ratio {vr:.2f}")
        if vr > 1 + volume_tolerance:
            flags.add("expanded")
            reasons.append(f"volume ratio {vr:.2f}")
        for s, c0 in ref["cn"].items():
            c = d["cn"].get(s)
            if c is None or c0 <= 0:
                continue
            if c > c0 * (1 + cn_tolerance):
                flags.add("collapsed")
                reasons.append(f"{s} coordination {c:.2f} vs {c0:.2f}")
            elif c < c0 * (1 - cn_tolerance):
                flags.add("expanded")
                reasons.append(f"{s} coordination {c:.2f} vs {c0:.2f}")
        if ref["q6"] > 0 and d["q6"] < (1 - q6_drop) * ref["q6"]:
            flags.add("melted")
            reasons.append(f"q6 {d['q6']:.3f} vs {ref['q6']:.3f}")
        out.append({"index": i, "cn": d["cn"], "q4": d["q4"], "q6": d["q6"], "min_distance_A": d["min_distance_A"],
                    "volume_ratio": vr, "flags": sorted(flags), "ok": not flags, "reasons": reasons,
                    "reference": {"cn": ref["cn"], "q4": ref["q4"], "q6": ref["q6"],
                                  "min_distance_A": ref["min_distance_A"]}, "cutoff_A": rc})
    return out


def analyze_structure(frames_file: str | os.PathLike[str], reference_file: str | os.PathLike[str],
                      out_dir: str | os.PathLike[str], *, cutoff_A: float | None = None, every: int = 1,
                      **tolerances: float) -> dict[str, Any]:
    """Structure stage: read frames (any ASE format, e.g. extxyz or a LAMMPS dump) and a reference, run
    :func:`structure_check`, write ``structure.json`` and ``structure.png``."""
    from tqdm import tqdm

    from firemlip.io import read_frames

    frames = read_frames(frames_file, what="frames")[::max(every, 1)]
    ref = read_frames(reference_file, index=0, what="reference structure")[0]
    rows = structure_check(list(tqdm(frames, desc="frames", disable=len(frames) < 50)), ref, cutoff_A=cutoff_A,
                           **tolerances)
    bad = [r["index"] * max(every, 1) for r in rows if not r["ok"]]
    res = {"analysis": "structure", "frames_file": str(frames_file), "reference_file": str(reference_file),
           "every": every, "n_frames": len(rows), "n_flagged": len(bad), "flagged_frames": bad,
           "cutoff_A": rows[0]["cutoff_A"], "reference": rows[0]["reference"], "tolerances": tolerances,
           "frames": [{k: v for k, v in r.items() if k not in ("reference", "cutoff_A")} for r in rows],
           "units": {"distance": "A", "cutoff": "A", "volume_ratio": "per-atom volume / reference"}}
    plt = mpl()
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    idx = np.array([r["index"] for r in rows]) * max(every, 1)
    for s in rows[0]["reference"]["cn"]:
        a1.plot(idx, [r["cn"].get(s, np.nan) for r in rows], ".-", label=f"CN {s}")
    a1.set_ylabel("mean coordination")
    a1.legend(fontsize=7)
    a2.plot(idx, [r["q6"] for r in rows], ".-", label="q6")
    a2.plot(idx, [r["q4"] for r in rows], ".-", label="q4")
    a2.axhline(rows[0]["reference"]["q6"], color="k", ls=":", lw=1, label="reference q6")
    for b in bad:
        a1.axvline(b, color="r", alpha=0.3)
        a2.axvline(b, color="r", alpha=0.3)
    a2.set_xlabel("frame")
    a2.set_ylabel("bond order")
    a2.legend(fontsize=7)
    out = Path(out_dir)
    save_figure(fig, out / "structure.png")
    res["plot"] = "structure.png"
    write_result(out / "structure.json", res)
    return res
