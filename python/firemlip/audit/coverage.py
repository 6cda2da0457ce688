"""Data coverage: the shortest distance of each element pair in a set of frames — the model's trusted range.

A model has only seen pair distances down to the shortest one in its training data; below that (minus a margin)
it extrapolates. Distances in Å; periodic images are honoured (ASE neighbour list).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations_with_replacement

import numpy as np
from ase import Atoms


def pair_key(a: str, b: str) -> str:
    """Canonical ``"A-B"`` name of an unordered element pair (alphabetical)."""
    x, y = sorted((a, b))
    return f"{x}-{y}"


def element_pairs(elements: Sequence[str]) -> list[str]:
    """All unordered pairs (with A-A) of ``elements``, as ``"A-B"`` keys."""
    return [pair_key(a, b) for a, b in combinations_with_replacement(sorted(set(elements)), 2)]


def covalent_sum(key: str) -> float:
    """Sum of the covalent radii (Å, ASE's table) of the pair ``"A-B"``."""
    from ase.data import atomic_numbers, covalent_radii

    a, b = key.split("-")
    return float(covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])


def shortest_pair_distances(frames: Sequence[Atoms], cutoff: float) -> dict[str, dict]:
    """Per pair ``"A-B"``: ``{"min_A", "frame", "count_within_cutoff"}`` over all frames (distances < ``cutoff`` Å).

    Pairs never seen within ``cutoff`` are absent. Self-image pairs of small periodic cells count as A-A pairs.
    """
    from ase.neighborlist import neighbor_list

    out: dict[str, dict] = {}
    for k, atoms in enumerate(frames):
        if len(atoms) < 2 and not atoms.pbc.any():
            continue
        i, j, d = neighbor_list("ijd", atoms, cutoff)
        if len(d) == 0:
            continue
        keep = i < j
        keep |= (i == j)  # an atom and its own periodic image
        i, j, d = i[keep], j[keep], d[keep]
        sym = np.asarray(atoms.get_chemical_symbols())
        names = np.array([pair_key(a, b) for a, b in zip(sym[i], sym[j], strict=True)])
        for key in np.unique(names):
            sel = d[names == key]
            m = float(sel.min())
            rec = out.setdefault(key, {"min_A": m, "frame": k, "count_within_cutoff": 0})
            rec["count_within_cutoff"] += int(len(sel))
            if m < rec["min_A"]:
                rec["min_A"], rec["frame"] = m, k
    return out


def trusted_ranges(model_elements: Sequence[str], cutoff: float, train: Sequence[Atoms] | None,
                   host: Sequence[Atoms], default_factor: float = 1.0) -> dict[str, dict]:
    """The trusted lower distance r_trust (Å) of every model pair, with where it came from.

    ``source`` is ``train`` (shortest training distance), ``host`` (no training file given: shortest host
    distance, an optimistic stand-in) or ``default`` (pair never seen: ``default_factor`` × covalent-radius sum).
    """
    seen = shortest_pair_distances(train, cutoff) if train is not None else {}
    host_seen = shortest_pair_distances(host, cutoff)
    out: dict[str, dict] = {}
    for key in element_pairs(model_elements):
        if train is not None and key in seen:
            out[key] = {"r_trust_A": seen[key]["min_A"], "source": "train",
                        "count_within_cutoff": seen[key]["count_within_cutoff"]}
        elif train is None and key in host_seen:
            out[key] = {"r_trust_A": host_seen[key]["min_A"], "source": "host",
                        "count_within_cutoff": host_seen[key]["count_within_cutoff"]}
        else:
            out[key] = {"r_trust_A": default_factor * covalent_sum(key), "source": "default",
                        "count_within_cutoff": 0}
        out[key]["in_host"] = key in host_seen
        out[key]["host_min_A"] = host_seen[key]["min_A"] if key in host_seen else None
    return out


def coverage_gate(ranges: dict[str, dict], have_train: bool) -> dict:
    """Gate: with training data, every pair that occurs in the host must occur in the training data.

    Without training data the gate is ``skipped`` (pass, with the host's shortest distances as trusted range).
    """
    missing = sorted(k for k, v in ranges.items() if v["in_host"] and v["source"] == "default")
    if not have_train:
        return {"status": "skipped", "passed": True, "reason": "no --train file: trusted range taken from the host",
                "pairs": ranges}
    return {"status": "pass" if not missing else "fail", "passed": not missing,
            "host_pairs_without_training_data": missing, "pairs": ranges}
