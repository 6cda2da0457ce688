"""Selection of a compact, diverse subset of a candidate pool (FIRE step 3): SOAP → PCA → K-means.

Pipeline (DESIGN.md, "Selection"):
  1. SOAP power spectra from dscribe with ``periodic=True`` (``r_cut`` Å, ``n_max``, ``l_max``, Gaussian width
     ``sigma`` Å), averaged per frame (``average="inner"``) or averaged per species and concatenated
     (``average="species"``); computed in chunks with ``n_jobs`` processes and cached in ``DIR/descriptors.npy``
     keyed by the pool's content hash and the SOAP parameters.
  2. ``StandardScaler`` → PCA keeping the fewest components whose explained variance reaches ``variance``
     (default 0.99), capped at ``max_components`` (default 100; the summary records the variance reached and
     warns when the cap stops PCA short of the target).
  3. ``soap-kmeans``: K-means with k = requested size (MiniBatchKMeans above ``minibatch_threshold`` frames), and the
     frame **nearest each centroid** (an empty cluster takes the nearest unselected frame). Baselines on the same
     PCA space: ``random`` and ``fps`` (farthest-point sampling).
  4. Per size, ``DIR/n<size>/``: ``selected.extxyz`` (info ``pool_index``, ``selection_method``), ``indices.json``,
     ``pca.png`` (all frames grey, selected in colour), ``metrics.json`` with the coverage (mean and max distance in
     PCA space from each pool frame to its nearest selected frame; lower is better), and with ``split`` a
     train/valid/test split stratified by cluster (``train.extxyz``, ``valid.extxyz``, ``test.extxyz``,
     ``split.json``).

Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from firemlip.errors import FiremlipError
from firemlip.io import elements_of, read_frames, structure_hash, write_frames
from firemlip.options import SelectOptions, SoapOptions
from firemlip.splits import stratified_split  # noqa: F401 (used by select; importable from here as before)

#: the defaults of :func:`select` (defined once, in :class:`firemlip.options.SelectOptions`)
_SEL = SelectOptions()
METHODS = typing.get_args(SelectOptions.model_fields["method"].annotation)
#: PCA component cap. 50 stopped a 2960-frame LGPS-like pool at 0.776 of the variance (target 0.99); K-means cost
#: grows linearly with the components, so the cap stays finite and the summary warns when it binds.
DEFAULT_MAX_COMPONENTS = _SEL.max_components
AVERAGES = typing.get_args(SoapOptions.model_fields["average"].annotation)


# ------------------------------------------------------------------------------------------------ descriptors
def _soap(species: Sequence[str], opts: SoapOptions, periodic: bool, average: str):
    from dscribe.descriptors import SOAP

    return SOAP(species=list(species), r_cut=opts.r_cut, n_max=opts.n_max, l_max=opts.l_max, sigma=opts.sigma,
                periodic=periodic, average=average, sparse=False, dtype="float32")


def compute_soap(frames: Sequence[Atoms], species: Sequence[str], opts: SoapOptions | None = None,
                 progress: bool = False) -> np.ndarray:
    """Per-frame SOAP descriptors, shape ``(n_frames, n_features)`` (float32).

    Fully periodic frames use ``periodic=True``; frames without periodic boundaries use ``periodic=False``.
    ``average="species"`` concatenates, in ``species`` order, the mean per-atom spectrum over the atoms of each
    species (zeros for a species absent from a frame).
    """
    from tqdm import tqdm

    opts = opts or SoapOptions()
    if opts.average not in AVERAGES:
        raise FiremlipError(f"SOAP average must be one of {', '.join(AVERAGES)}, got {opts.average!r}")
    species = list(species)
    dsc_avg = "inner" if opts.average == "inner" else "off"
    soaps = {True: _soap(species, opts, True, dsc_avg), False: _soap(species, opts, False, dsc_avg)}
    nfeat = soaps[True].get_number_of_features()
    width = nfeat * (len(species) if opts.average == "species" else 1)
    X = np.zeros((len(frames), width), dtype=np.float32)
    periodic = np.array([bool(np.all(a.pbc)) and a.cell.rank == 3 for a in frames])
    chunk = max(1, int(opts.chunk_size))
    n_jobs = opts.jobs()
    for start in tqdm(range(0, len(frames), chunk), desc="SOAP", unit="chunk", disable=not progress):
        stop = min(start + chunk, len(frames))
        for per in (True, False):
            idx = [i for i in range(start, stop) if periodic[i] == per]
            if not idx:
                continue
            sub = [frames[i] for i in idx]
            nj = n_jobs if len(sub) >= 4 * n_jobs else 1
            out = soaps[per].create(sub, n_jobs=nj)
            if opts.average == "inner":
                X[idx] = np.asarray(out, dtype=np.float32).reshape(len(sub), nfeat)
            else:
                if len(sub) == 1 and not isinstance(out, list):
                    out = [out]
                for row, a, per_atom in zip(idx, sub, out, strict=True):
                    sym = np.asarray(a.get_chemical_symbols())
                    for k, s in enumerate(species):
                        mask = sym == s
                        if mask.any():
                            X[row, k * nfeat:(k + 1) * nfeat] = np.asarray(per_atom)[mask].mean(axis=0)
    return X


def pool_hash(frames: Sequence[Atoms]) -> str:
    """sha256 over the structure hashes of all frames (order matters)."""
    h = hashlib.sha256()
    for a in frames:
        h.update(structure_hash(a).encode())
    return h.hexdigest()


def index_extxyz(path: str | os.PathLike[str]) -> tuple[np.ndarray, list[str]] | None:
    """Byte offsets of the frames of a plain (extended) XYZ file (N + 1 values: each frame's start, then the end)
    and the sorted species in it; None when the file does not look like one (the caller then reads it whole)."""
    import re

    offsets: list[int] = []
    species: set[bytes] = set()
    with open(path, "rb") as fh:
        pos = 0
        while True:
            line = fh.readline()
            if not line:
                break
            if not line.strip():
                pos += len(line)
                continue
            try:
                nat = int(line.split()[0])
            except ValueError:
                return None
            comment = fh.readline()
            col = 0
            m = re.search(rb"Properties=(\S+)", comment)
            if m:
                fields = m.group(1).split(b":")
                col, found = 0, False
                for k in range(0, len(fields) - 2, 3):
                    if fields[k] == b"species":
                        found = True
                        break
                    col += int(fields[k + 2])
                if not found:
                    return None
            for _ in range(nat):
                atom = fh.readline().split()
                if len(atom) <= col:
                    return None
                species.add(atom[col])
            offsets.append(pos)
            pos = fh.tell()
    if not offsets:
        return None
    offsets.append(pos)
    return np.asarray(offsets, dtype=np.int64), sorted(s.decode() for s in species)


def frames_at(path: str | os.PathLike[str], offsets: np.ndarray, indices: Sequence[int]) -> list[Atoms]:
    """Read only the frames ``indices`` of an indexed extxyz file (see :func:`index_extxyz`)."""
    import io

    from ase.io import read

    out = []
    with open(path, "rb") as fh:
        for i in indices:
            fh.seek(int(offsets[i]))
            text = fh.read(int(offsets[i + 1] - offsets[i])).decode()
            out.append(read(io.StringIO(text), index=0, format="extxyz"))
    return out


def _soap_file_chunk(path: str, start: int, end: int, species: list[str], opts: dict) -> np.ndarray:
    """Worker: parse one byte range of an extxyz file and return its SOAP rows."""
    import io

    from ase.io import read

    with open(path, "rb") as fh:
        fh.seek(start)
        text = fh.read(end - start).decode()
    try:
        frames = read(io.StringIO(text), index=":", format="extxyz")
    except Exception as exc:  # ASE raises many types for malformed frames
        raise FiremlipError(f"{path}: cannot read frames at bytes {start}-{end} ({exc})") from None
    frames = [frames] if isinstance(frames, Atoms) else frames
    return compute_soap(frames, species, SoapOptions(**{**opts, "n_jobs": 1, "chunk_size": len(frames)}))


def compute_soap_file(path: str | os.PathLike[str], offsets: np.ndarray, species: Sequence[str],
                      opts: SoapOptions | None = None, progress: bool = False) -> np.ndarray:
    """SOAP descriptors of an indexed extxyz pool; ``opts.n_jobs`` processes each parse and describe their own
    chunks of frames, so reading is parallel too and the frames never all sit in memory."""
    from tqdm import tqdm

    opts = opts or SoapOptions()
    n = len(offsets) - 1
    n_jobs = opts.jobs()
    chunk = max(1, min(int(opts.chunk_size), -(-n // (4 * n_jobs))))
    starts = list(range(0, n, chunk))
    width = None
    X: np.ndarray | None = None
    args = [(os.fspath(path), int(offsets[s]), int(offsets[min(s + chunk, n)]), list(species), opts.model_dump())
            for s in starts]
    bar = tqdm(total=n, desc="SOAP", unit="frame", disable=not progress)

    def place(k: int, rows: np.ndarray) -> None:
        nonlocal X, width
        if X is None:
            width = rows.shape[1]
            X = np.zeros((n, width), dtype=np.float32)
        X[starts[k]:starts[k] + len(rows)] = rows
        bar.update(len(rows))

    try:
        if n_jobs == 1 or len(starts) == 1:
            for k, a in enumerate(args):
                place(k, _soap_file_chunk(*a))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn")) as ex:
                futs = {ex.submit(_soap_file_chunk, *a): k for k, a in enumerate(args)}
                for fut in as_completed(futs):
                    place(futs[fut], fut.result())
    finally:
        bar.close()
    assert X is not None
    return X


def cached_descriptors(key: dict, out_dir: Path, compute: Callable[[], np.ndarray], n_frames: int
                       ) -> tuple[np.ndarray, bool]:
    """Descriptors from ``out_dir/descriptors.npy`` when ``out_dir/descriptors.json`` equals ``key`` (pool hash,
    species, SOAP parameters, dscribe version), else ``compute()`` saved there. Returns ``(X, reused)``."""
    from firemlip.io import atomic_path, write_json

    npy, meta = out_dir / "descriptors.npy", out_dir / "descriptors.json"
    if npy.exists() and meta.exists():
        try:
            if json.loads(meta.read_text()) == key:
                X = np.load(npy)
                if X.shape[0] == n_frames:
                    return X, True
        except (OSError, ValueError):
            pass
    X = compute()
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(npy, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, X)
    write_json(meta, key)
    return X, False


# -------------------------------------------------------------------------------------------------------- PCA
@dataclass
class PcaResult:
    """PCA coordinates ``Z`` (n_frames × n_components) and the explained-variance record."""

    Z: np.ndarray
    n_components: int
    explained_variance_ratio: list[float]
    variance_target: float
    variance_reached: float
    max_components: int = DEFAULT_MAX_COMPONENTS

    @property
    def capped(self) -> bool:
        """True when the component cap stopped PCA before the variance target."""
        return self.variance_reached < self.variance_target - 1e-9

    def warning(self) -> str | None:
        """A one-line warning when the cap was reached before the target, else None."""
        if not self.capped:
            return None
        return (f"PCA stopped at its cap of {self.max_components} components with {self.variance_reached:.3f} of "
                f"the variance explained (target {self.variance_target}); raise --max-components (or "
                f"stages.select.max_components) to reach it, or lower --variance")

    def record(self) -> dict[str, Any]:
        """The explained-variance record written into the selection summary."""
        return {"n_components": self.n_components, "max_components": self.max_components,
                "variance_target": self.variance_target, "variance_reached": self.variance_reached,
                "capped": self.capped, "warning": self.warning(),
                "explained_variance_ratio": self.explained_variance_ratio}


def reduce_pca(X: np.ndarray, variance: float = _SEL.variance, max_components: int = _SEL.max_components,
               seed: int = 0) -> PcaResult:
    """Standardise the features, then PCA to the fewest components reaching ``variance`` (≤ ``max_components``)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if not 0 < variance <= 1:
        raise FiremlipError(f"PCA variance target must be in (0, 1], got {variance}")
    n, f = X.shape
    Xs = StandardScaler().fit_transform(np.asarray(X, dtype=np.float64 if n * f < 5e7 else np.float32))
    n_fit = int(max(1, min(max_components, n, f)))
    if n < 2:
        return PcaResult(np.zeros((n, 1)), 1, [1.0], variance, 1.0, max_components)
    pca = PCA(n_components=n_fit, random_state=seed, svd_solver="full" if n * f < 4e6 else "randomized")
    Z = pca.fit_transform(Xs)
    ratio = np.nan_to_num(pca.explained_variance_ratio_, nan=0.0)
    cum = np.cumsum(ratio)
    k = int(np.searchsorted(cum, variance - 1e-12) + 1) if cum[-1] >= variance else n_fit
    k = max(1, min(k, n_fit))
    return PcaResult(np.ascontiguousarray(Z[:, :k], dtype=np.float64), k, ratio[:k].tolist(), variance,
                     float(cum[k - 1]), max_components)


# -------------------------------------------------------------------------------------------------- selection
def nearest_to_centroids(Z: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """For each centre, the index of the frame nearest to it among its cluster's members.

    A centre with no members takes the nearest frame not already chosen. Returns one index per centre, all
    distinct (in centre order).
    """
    k = len(centers)
    d = np.linalg.norm(Z - centers[labels], axis=1)
    order = np.lexsort((np.arange(len(Z)), d, labels))  # by cluster, then distance, then index (ties)
    first = np.ones(len(order), dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    chosen = np.full(k, -1, dtype=np.int64)
    chosen[labels[order][first]] = order[first]
    taken = np.zeros(len(Z), dtype=bool)
    taken[chosen[chosen >= 0]] = True
    for c in np.flatnonzero(chosen < 0):
        dist = np.linalg.norm(Z - centers[c], axis=1)
        dist[taken] = np.inf
        j = int(np.argmin(dist))
        chosen[c] = j
        taken[j] = True
    return chosen


def kmeans_select(Z: np.ndarray, n: int, seed: int = 0, minibatch_threshold: int = _SEL.minibatch_threshold
                  ) -> tuple[np.ndarray, np.ndarray]:
    """K-means with k = ``n`` on ``Z``; returns (selected indices, cluster label of every frame).

    Uses ``KMeans`` (k-means++; 3 inits for small problems, else 1) up to ``minibatch_threshold`` frames, ``MiniBatchKMeans`` above.
    """
    import warnings

    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    N = len(Z)
    if n >= N:
        return np.arange(N), np.arange(N)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if N > minibatch_threshold:
            batch = int(max(2048, 3 * n))
            km = MiniBatchKMeans(n_clusters=n, random_state=seed, batch_size=batch, n_init=1,
                                 init_size=min(N, max(3 * batch, 3 * n)), max_no_improvement=20, max_iter=100)
        else:
            km = KMeans(n_clusters=n, random_state=seed, n_init=3 if N * n <= 2_000_000 else 1)
        km.fit(Z)
    centers = km.cluster_centers_
    labels = km.predict(Z)
    chosen = nearest_to_centroids(Z, labels, centers)
    return chosen, labels


def fps_select(Z: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Farthest-point sampling in ``Z``: a seeded random start, then repeatedly the frame farthest from the set."""
    N = len(Z)
    rng = np.random.default_rng(seed)
    chosen = np.empty(min(n, N), dtype=np.int64)
    chosen[0] = int(rng.integers(N))
    dmin = np.linalg.norm(Z - Z[chosen[0]], axis=1)
    for k in range(1, len(chosen)):
        j = int(np.argmax(dmin))
        chosen[k] = j
        np.minimum(dmin, np.linalg.norm(Z - Z[j], axis=1), out=dmin)
    return chosen


def random_select(N: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct frames of ``N`` drawn uniformly with a seeded generator."""
    return np.random.default_rng(seed).choice(N, size=min(n, N), replace=False)


def coverage(Z: np.ndarray, selected: Sequence[int]) -> dict[str, float]:
    """Distances (PCA units) from every pool frame to its nearest selected frame: mean, 95th percentile, max."""
    from sklearn.metrics import pairwise_distances_argmin_min

    _, d = pairwise_distances_argmin_min(Z, Z[np.asarray(selected)])
    return {"coverage_mean": float(d.mean()), "coverage_p95": float(np.percentile(d, 95)),
            "coverage_max": float(d.max())}


# --------------------------------------------------------------------------------------------------- plotting
def plot_pca(Z: np.ndarray, selected: Sequence[int], path: Path, title: str) -> None:
    """PCA map: every pool frame grey, selected frames in colour (PC1 vs PC2), written atomically as PNG."""
    from firemlip.runtime import pyplot

    plt = pyplot()

    from firemlip.io import atomic_path

    x = Z[:, 0]
    y = Z[:, 1] if Z.shape[1] > 1 else np.zeros(len(Z))
    sel = np.asarray(selected)
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=150)
    ax.scatter(x, y, s=3, c="0.75", lw=0, label=f"pool ({len(Z)})", rasterized=True)
    ax.scatter(x[sel], y[sel], s=9, c="tab:red", lw=0, label=f"selected ({len(sel)})", rasterized=True)
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2" if Z.shape[1] > 1 else "")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=8, markerscale=2)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------- API
@dataclass
class _Pool:
    """A pool seen through what selection needs: size, species, content hash, descriptors and chosen frames."""

    label: str
    n: int
    species: list[str]
    sha256: str
    get: Callable[[Sequence[int]], list[Atoms]]
    describe: Callable[[Sequence[str], SoapOptions, bool], np.ndarray]


def _load_pool(pool: str | os.PathLike[str] | Sequence[Atoms]) -> _Pool:
    """Index an extxyz pool file (frames read lazily, in parallel) or wrap frames/other formats held in memory."""
    from firemlip.errors import require_file
    from firemlip.io import file_sha256

    if isinstance(pool, (str, os.PathLike)):
        path = os.fspath(pool)
        require_file(path, "pool")
        if os.path.getsize(path) == 0:
            raise FiremlipError(f"{path}: pool is empty (no frames)")
        indexed = index_extxyz(path) if path.lower().endswith((".xyz", ".extxyz")) else None
        if indexed is not None:
            offsets, species = indexed
            return _Pool(path, len(offsets) - 1, species, "file:" + file_sha256(path),
                         lambda idx: frames_at(path, offsets, idx),
                         lambda sp, o, pr: compute_soap_file(path, offsets, sp, o, pr))
        frames = read_frames(path, what="pool")
        label = path
    else:
        frames = list(pool)
        label = "<frames>"
    if not frames:
        raise FiremlipError(f"{label}: pool is empty (no frames)")
    return _Pool(label, len(frames), elements_of(frames), pool_hash(frames),
                 lambda idx: [frames[int(i)] for i in idx],
                 lambda sp, o, pr: compute_soap(frames, sp, o, pr))


def choose(Z: np.ndarray, n: int, method: str, seed: int = 0, minibatch_threshold: int = _SEL.minibatch_threshold
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Pick ``n`` frames of ``Z`` by ``method``; returns (indices, K-means labels or None)."""
    if method == "soap-kmeans":
        return kmeans_select(Z, n, seed, minibatch_threshold)
    if method == "fps":
        return fps_select(Z, n, seed), None
    if method == "random":
        return random_select(len(Z), n, seed), None
    raise FiremlipError(f"select: method must be one of {', '.join(METHODS)}, got {method!r}")


def select(pool: str | os.PathLike[str] | Sequence[Atoms], sizes: int | Sequence[int], method: str = _SEL.method,
           seed: int = _SEL.seed, out_dir: str | os.PathLike[str] | None = None, species: Sequence[str] | None = None,
           split: Sequence[float] | None = None, variance: float = _SEL.variance,
           max_components: int = _SEL.max_components, minibatch_threshold: int = _SEL.minibatch_threshold,
           progress: bool = True, manifest: bool = True,
           **soap_opts: Any) -> Selection:
    """Select ``sizes`` frames from ``pool`` (extxyz path or Atoms list) and write ``out_dir/n<size>/``.

    ``soap_opts`` are :class:`SoapOptions` fields (``r_cut`` Å, ``n_max``, ``l_max``, ``sigma`` Å, ``average``,
    ``n_jobs``, ``chunk_size``). ``species`` (default: the pool's) fixes the SOAP species list; a pool species not
    in it is an error. ``split`` = (train, valid, test) fractions. ``out_dir`` None (the default) writes into a
    fresh temporary directory ``firemlip-select-*`` (``result.out_dir``); pass ``"selection"`` for the former
    default.

    Returns a :class:`Selection`: the summary dict (per size the selected pool indices, output paths and metrics,
    e.g. ``res["sizes"]["5"]["indices"]``) with attributes for the first size — ``indices``, ``frames`` (the
    selected Atoms, info ``pool_index``), ``coverage`` (PCA-space distances) — and ``pca`` (:class:`PcaResult`).
    """
    import tempfile

    t_start = time.time()
    if method not in METHODS:
        raise FiremlipError(f"select: method must be one of {', '.join(METHODS)}, got {method!r}")
    bad = set(soap_opts) - set(SoapOptions.model_fields)
    if bad:
        raise FiremlipError(f"select: unknown SOAP option(s) {', '.join(sorted(bad))}")
    opts = SoapOptions.build(**soap_opts)
    if opts.r_cut <= 0 or opts.n_max < 1 or opts.l_max < 0 or opts.sigma <= 0:
        raise FiremlipError(f"select: invalid SOAP options {opts.key_params()}")
    sizes = [int(sizes)] if isinstance(sizes, (int, np.integer)) else [int(s) for s in sizes]
    if not sizes or any(s <= 0 for s in sizes):
        raise FiremlipError(f"select: sizes (-n) must be positive integers, got {sizes}")
    if split is not None:
        split = [float(x) for x in split]
        if len(split) != 3 or any(x < 0 for x in split) or abs(sum(split) - 1.0) > 1e-6:
            raise FiremlipError(f"--split expects three non-negative fractions summing to 1 (train valid test), "
                                f"got {' '.join(map(str, split))}")
    P = _load_pool(pool)
    pool_path = P.label
    too_big = [s for s in sizes if s > P.n]
    if too_big:
        raise FiremlipError(f"{pool_path}: -n {max(too_big)} is larger than the pool ({P.n} frames)")
    pool_species = P.species
    if species:
        species = list(dict.fromkeys(species))
        missing = sorted(set(pool_species) - set(species))
        if missing:
            raise FiremlipError(f"{pool_path}: pool contains species {', '.join(missing)} missing from --species "
                                f"{' '.join(species)}")
    else:
        species = pool_species
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="firemlip-select-"))
    params = {"sizes": sizes, "method": method, "seed": seed, "species": list(species), "soap": opts.key_params(),
              "variance": variance, "max_components": max_components, "split": split,
              "minibatch_threshold": minibatch_threshold}

    kept: dict[str, Any] = {"frames": {}}  # the in-memory part of the result: PCA and selected frames per size

    def body() -> dict:
        timings: dict[str, float] = {}
        import dscribe

        t0 = time.time()
        phash = P.sha256
        key = {"pool_sha256": phash, "species": list(species), "soap": opts.key_params(),
               "dscribe": getattr(dscribe, "__version__", "?"), "n_frames": P.n}
        X, reused = cached_descriptors(key, out, lambda: P.describe(species, opts, progress), P.n)
        timings["descriptors_s"] = round(time.time() - t0, 3)
        t0 = time.time()
        pca = reduce_pca(X, variance, max_components, seed)
        kept["pca"] = pca
        del X
        timings["pca_s"] = round(time.time() - t0, 3)
        Z = pca.Z
        summary: dict[str, Any] = {"pool": pool_path, "pool_frames": P.n, "pool_sha256": phash,
                                   "method": method, "seed": seed, "species": list(species),
                                   "soap": opts.key_params(), "descriptors_reused": reused,
                                   "pca": pca.record(),
                                   "sizes": {}, "timings": timings}
        from firemlip.io import write_json

        for n in sizes:
            t0 = time.time()
            idx, _ = choose(Z, n, method, seed, minibatch_threshold)
            t_sel = time.time() - t0
            sd = out / f"n{n}"
            sd.mkdir(parents=True, exist_ok=True)
            cov = coverage(Z, idx)
            metrics: dict[str, Any] = {"method": method, "size": n, "pool_frames": P.n, "seed": seed,
                                       "pca_components": pca.n_components, **cov, "select_s": round(t_sel, 3)}
            if method != "random":
                metrics["random_baseline"] = coverage(Z, random_select(len(Z), n, seed))
            sel_frames = []
            for j, a in zip(idx, P.get(idx), strict=True):
                a = a.copy()
                a.info["pool_index"] = int(j)
                a.info["selection_method"] = method
                sel_frames.append(a)
            write_frames(sd / "selected.extxyz", sel_frames)
            kept["frames"].setdefault(n, sel_frames)
            write_json(sd / "indices.json", {"pool": pool_path, "pool_sha256": phash, "method": method,
                                             "seed": seed, "size": n, "indices": [int(j) for j in idx]})
            plot_pca(Z, idx, sd / "pca.png", f"{method}, n = {n} of {P.n}; "
                     f"coverage mean {cov['coverage_mean']:.3g}, max {cov['coverage_max']:.3g}")
            entry: dict[str, Any] = {"dir": str(sd), "indices": [int(j) for j in idx], "metrics": metrics}
            if split is not None:
                parts, strata = stratified_split(Z[idx], split, seed)
                names = ("train", "valid", "test")
                split_rec = {"fractions": split, "strata": int(strata.max() + 1)}
                for name, pos in zip(names, parts, strict=True):
                    write_frames(sd / f"{name}.extxyz", [sel_frames[int(p)] for p in pos])
                    split_rec[name] = [int(idx[int(p)]) for p in pos]
                write_json(sd / "split.json", split_rec)
                metrics["split_counts"] = {nm: len(p) for nm, p in zip(names, parts, strict=True)}
                entry["split"] = {nm: split_rec[nm] for nm in names}
            else:  # no stale split of an earlier call beside this selection
                for stale in ("train.extxyz", "valid.extxyz", "test.extxyz", "split.json"):
                    (sd / stale).unlink(missing_ok=True)
            write_json(sd / "metrics.json", metrics)
            summary["sizes"][str(n)] = entry
        timings["total_s"] = round(time.time() - t_start, 3)
        write_json(out / "summary.json", {k: v for k, v in summary.items() if k != "sizes"} |
                   {"sizes": {k: v["metrics"] for k, v in summary["sizes"].items()}})
        return summary

    if manifest:
        from firemlip.workflow.manifest import stage_manifest

        inputs = {"pool": pool_path} if pool_path != "<frames>" else {}
        with stage_manifest("select", out, inputs, params) as rec:
            summary = body()
            outs = ["summary.json", "descriptors.npy"]
            for n in sizes:
                outs += [f"n{n}/selected.extxyz", f"n{n}/indices.json", f"n{n}/metrics.json", f"n{n}/pca.png"]
                if split is not None:
                    outs += [f"n{n}/train.extxyz", f"n{n}/valid.extxyz", f"n{n}/test.extxyz", f"n{n}/split.json"]
            rec.outputs = outs
            rec.extra = {"metrics": {k: v["metrics"] for k, v in summary["sizes"].items()},
                         "pca_components": summary["pca"]["n_components"]}
    else:
        summary = body()
    return Selection(summary, kept["frames"], kept["pca"], out)


class Selection(dict):
    """What :func:`select` returns: its summary dict (unchanged keys: ``pool``, ``pca``, ``sizes``, ``timings``,
    ...) plus the in-memory results.

    Attributes (first requested size unless noted): ``indices`` (selected pool indices), ``frames`` (the selected
    Atoms, ``info["pool_index"]`` set), ``coverage`` (``coverage_mean``/``_p95``/``_max``: distances in PCA units
    from every pool frame to its nearest selected one), ``size``; ``sizes`` (the per-size dict, keyed by the size
    as a string), ``frames_by_size`` (size → Atoms list), ``pca`` (:class:`PcaResult`, with the coordinates ``Z``),
    ``summary`` (the plain dict), ``out_dir`` (where the files were written).
    """

    def __init__(self, summary: dict[str, Any], frames_by_size: dict[int, list[Atoms]], pca: PcaResult | None,
                 out_dir: Path) -> None:
        super().__init__(summary)
        self.frames_by_size = frames_by_size
        self.pca = pca
        self.out_dir = out_dir

    @property
    def summary(self) -> dict[str, Any]:
        """The summary as a plain dict (what :func:`select` returned before it returned a Selection)."""
        return dict(self)

    @property
    def sizes(self) -> dict[str, dict[str, Any]]:
        """Per size (key: the size as a string): ``dir``, ``indices``, ``metrics`` and, with a split, ``split``."""
        return self["sizes"]

    @property
    def size(self) -> int:
        """The first requested size."""
        return int(next(iter(self["sizes"])))

    @property
    def indices(self) -> list[int]:
        """Selected pool indices of the first size."""
        return list(self["sizes"][str(self.size)]["indices"])

    @property
    def frames(self) -> list[Atoms]:
        """Selected frames of the first size (copies, ``info["pool_index"]`` and ``info["selection_method"]``)."""
        return self.frames_by_size[self.size]

    @property
    def coverage(self) -> dict[str, float]:
        """Coverage of the first size: mean, 95th percentile and max distance (PCA units) to the selection."""
        m = self["sizes"][str(self.size)]["metrics"]
        return {k: m[k] for k in ("coverage_mean", "coverage_p95", "coverage_max")}
