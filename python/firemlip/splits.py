"""Train/valid/test splits of labelled frames: one module for every split firemlip makes.

- :func:`part_sizes` — how many frames each part gets for given fractions (the first part takes the rest).
- :func:`random_split` — a seeded random split (validation split-off of ``finetune``, distillation hold-outs).
- :func:`stratified_split` — a split stratified by K-means clusters of descriptor vectors, so that every part
  covers the same regions of configuration space (``select --split`` and the pipeline's ``label_selected``).
- :func:`descriptor_split` — the pipeline's split of labelled frames: by the selection's PCA coordinates when the
  frames carry the ``pool_index`` of that selection, else by SOAP → PCA coordinates of the frames themselves.

Seeds: every function takes ``seed`` (an int or a sequence of ints for :class:`numpy.random.default_rng`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from firemlip.errors import FiremlipError

Seed = int | Sequence[int]


def part_sizes(n: int, fractions: Sequence[float], *, min_size: Sequence[int] | None = None,
               what: str = "split") -> np.ndarray:
    """Frames per part: ``round(n × f)`` for all parts but the first, which takes the rest.

    ``min_size`` raises the later parts to at least that many frames. An error names ``what`` when the fractions
    are not non-negative and summing to 1, or leave the first part empty.
    """
    fr = np.asarray(fractions, dtype=float)
    if fr.ndim != 1 or len(fr) < 2 or fr.min() < 0 or not np.isclose(fr.sum(), 1.0):
        raise FiremlipError(f"{what}: expected non-negative fractions summing to 1, got "
                            f"{' '.join(f'{x:g}' for x in fr.ravel())}")
    sizes = np.array([0] + [int(round(n * f)) for f in fr[1:]])
    if min_size is not None:
        sizes[1:] = np.maximum(sizes[1:], np.asarray(min_size, dtype=int)[1:])
    sizes[0] = n - sizes[1:].sum()
    if sizes[0] < 1:
        raise FiremlipError(f"{what}: {n} frames are too few for the fractions "
                            f"{' '.join(f'{x:g}' for x in fr)} (no training frames left)")
    return sizes


def random_split(n: int, sizes: Sequence[int], seed: Seed = 0, *, order: Sequence[int] | None = None
                 ) -> list[np.ndarray]:
    """Positions ``0..n-1`` dealt into parts of ``sizes`` (summing to n) from a seeded permutation.

    The last part takes the first positions of the permutation, the part before it the next ones, and so on;
    part 0 (training) takes what is left. ``order`` replaces the permutation (e.g. one that puts the frames which
    must stay in training last). Returns sorted position arrays.
    """
    sizes = [int(s) for s in sizes]
    if sum(sizes) != n or min(sizes) < 0:
        raise FiremlipError(f"split: part sizes {sizes} do not add up to {n} frames")
    perm = np.asarray(order if order is not None else np.random.default_rng(seed).permutation(n), dtype=np.int64)
    parts: list[np.ndarray] = []
    start = 0
    for s in reversed(sizes[1:]):
        parts.append(perm[start:start + s])
        start += s
    parts.append(perm[start:])
    return [np.sort(p) for p in reversed(parts)]


def stratified_split(Z: np.ndarray, fractions: Sequence[float], seed: int = 0, group_size: int = 10
                     ) -> tuple[list[np.ndarray], np.ndarray]:
    """Split rows of ``Z`` (descriptor vectors) into len(fractions) parts, stratified by cluster.

    The rows are grouped by K-means into ``max(1, n // group_size)`` strata; rows are ordered by stratum (randomly
    within it) and dealt so that every part's running count follows its fraction as closely as possible. Part
    sizes are ``round(n × f)`` for all but the first part, which takes the rest. Returns (list of position
    arrays into ``Z``, stratum label per row).
    """
    from sklearn.cluster import KMeans

    n = len(Z)
    fr = np.asarray(fractions, dtype=float)
    targets = np.array([0] + [int(round(n * f)) for f in fr[1:]])
    targets[0] = n - targets[1:].sum()
    if targets[0] < 0:
        raise FiremlipError(f"--split {' '.join(map(str, fractions))}: fractions leave no training frames")
    g = max(1, n // group_size)
    strata = (KMeans(n_clusters=g, random_state=seed, n_init=3).fit_predict(Z) if g > 1
              else np.zeros(n, dtype=int))
    rng = np.random.default_rng(seed)
    perm_strata = rng.permutation(g)
    rank = np.empty(g, dtype=int)
    rank[perm_strata] = np.arange(g)
    order = np.lexsort((rng.random(n), rank[strata]))
    share = targets / max(n, 1)
    counts = np.zeros(len(fr), dtype=int)
    parts: list[list[int]] = [[] for _ in fr]
    for i, pos in enumerate(order):
        deficit = share * (i + 1) - counts
        deficit[counts >= targets] = -np.inf
        s = int(np.argmax(deficit))
        counts[s] += 1
        parts[s].append(int(pos))
    return [np.array(sorted(p), dtype=np.int64) for p in parts], strata


def descriptor_split(frames: Sequence[Any], fractions: Sequence[float], seed: int = 0, *,
                     pool_Z: np.ndarray | None = None, soap: dict[str, Any] | None = None,
                     what: str = "split") -> tuple[list[np.ndarray], dict[str, Any]]:
    """The pipeline's train/valid/test split of labelled ``frames`` (ASE Atoms), stratified in descriptor space.

    With ``pool_Z`` (the selection's PCA coordinates of its whole pool) and a ``pool_index`` in every frame's info,
    the rows of those frames are used; otherwise the frames' own averaged SOAP vectors (``soap``: SoapOptions
    fields), standardised and reduced by PCA. Every later part gets at least one frame. Returns (position arrays
    per part, a record of how the split was made).
    """
    n = len(frames)
    part_sizes(n, fractions, min_size=[0] + [1] * (len(fractions) - 1), what=what)
    idx = [f.info.get("pool_index") for f in frames]
    if pool_Z is not None and all(i is not None and 0 <= int(i) < len(pool_Z) for i in idx):
        Z, source = pool_Z[[int(i) for i in idx]], "selection PCA coordinates (pool_index)"
    else:
        from firemlip.io import elements_of
        from firemlip.options import SoapOptions
        from firemlip.selection import compute_soap, reduce_pca

        opts = SoapOptions.build(**{**(soap or {}), "n_jobs": 1})
        X = compute_soap(list(frames), elements_of(frames), opts)
        Z, source = reduce_pca(X, seed=seed).Z, "SOAP -> PCA of the labelled frames"
    parts, strata = stratified_split(Z, fractions, seed)
    for k in range(1, len(parts)):  # every later part gets a frame: move one from the largest part if needed
        if len(parts[k]) == 0:
            big = int(np.argmax([len(p) for p in parts]))
            parts[k], parts[big] = parts[big][-1:], parts[big][:-1]
    return parts, {"method": "stratified", "descriptors": source, "strata": int(strata.max() + 1),
                   "fractions": [float(x) for x in fractions], "sizes": [len(p) for p in parts]}
