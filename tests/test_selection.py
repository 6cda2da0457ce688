"""Tests of SOAP → PCA → K-means selection (firemlip.selection) with real dscribe and scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from firemlip.cli import main
from firemlip.errors import FiremlipError
from firemlip.io import read_frames, write_frames
from firemlip.selection import (
    SoapOptions,
    compute_soap,
    coverage,
    fps_select,
    kmeans_select,
    nearest_to_centroids,
    random_select,
    reduce_pca,
    select,
    stratified_split,
)

SMALL_SOAP = {"r_cut": 4.0, "n_max": 3, "l_max": 2, "n_jobs": 1}


def _blobs(k: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated clusters whose exact centroid is itself a frame; returns (Z, index of that frame per blob)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=50.0, size=(k, 4))
    rows, center_rows = [], []
    for c in range(k):
        center_rows.append(len(rows))
        rows.append(centers[c])
        for _ in range(3 + 2 * c):  # unequal sizes; symmetric pairs keep the centroid exactly at the centre
            v = rng.normal(size=4)
            v *= rng.uniform(0.5, 2.0) / np.linalg.norm(v)
            rows += [centers[c] + v, centers[c] - v]
    Z = np.array(rows)
    perm = rng.permutation(len(Z))
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(Z))
    return Z[perm], inv[np.array(center_rows)]


@pytest.mark.parametrize("threshold", [10_000, 10])  # KMeans, then MiniBatchKMeans
def test_kmeans_picks_frame_nearest_each_centroid(threshold: int) -> None:
    Z, truth = _blobs()
    idx, labels = kmeans_select(Z, 6, seed=0, minibatch_threshold=threshold)
    assert sorted(idx.tolist()) == sorted(truth.tolist())
    assert len(set(labels.tolist())) == 6


def test_kmeans_deterministic_for_a_seed() -> None:
    Z = np.random.default_rng(3).normal(size=(300, 5))
    a, _ = kmeans_select(Z, 20, seed=7)
    b, _ = kmeans_select(Z, 20, seed=7)
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == 20


def test_nearest_to_centroids_fills_empty_cluster() -> None:
    Z = np.array([[0.0], [0.1], [5.0], [5.2], [9.0]])
    labels = np.array([0, 0, 1, 1, 1])
    centers = np.array([[0.05], [5.1], [100.0]])  # third centre has no members
    chosen = nearest_to_centroids(Z, labels, centers)
    assert chosen.tolist()[:2] in ([0, 2], [1, 2], [0, 3], [1, 3])
    assert chosen[2] == 4  # nearest frame not already chosen
    assert len(set(chosen.tolist())) == 3


def test_fps_random_and_coverage() -> None:
    Z, _ = _blobs()
    f = fps_select(Z, 6, seed=0)
    assert len(set(f.tolist())) == 6
    r = random_select(len(Z), 6, seed=0)
    assert len(set(r.tolist())) == 6 and r.tolist() == random_select(len(Z), 6, seed=0).tolist()
    km, _ = kmeans_select(Z, 6, seed=0)
    cov_km, cov_r = coverage(Z, km), coverage(Z, r)
    assert cov_km["coverage_mean"] < 2.5  # one pick per blob: every frame within its blob radius
    assert cov_km["coverage_mean"] <= cov_r["coverage_mean"]
    assert coverage(Z, np.arange(len(Z)))["coverage_max"] == 0.0


def test_stratified_split_counts_and_strata() -> None:
    Z, _ = _blobs(k=5)
    parts, strata = stratified_split(Z, [0.8, 0.1, 0.1], seed=0, group_size=5)
    n = len(Z)
    assert sum(len(p) for p in parts) == n
    assert sorted(np.concatenate(parts).tolist()) == list(range(n))
    assert len(parts[1]) == round(0.1 * n) and len(parts[2]) == round(0.1 * n)
    # every stratum large enough to hold a validation frame contributes to training
    for s in np.unique(strata):
        members = set(np.flatnonzero(strata == s).tolist())
        if len(members) >= 3:
            assert members & set(parts[0].tolist())


def test_reduce_pca_variance_target() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 3))
    X = np.hstack([base, base @ rng.normal(size=(3, 20)) + 1e-6 * rng.normal(size=(200, 20))])
    res = reduce_pca(X, variance=0.99, max_components=10)
    assert res.n_components == 3
    assert res.variance_reached >= 0.99
    capped = reduce_pca(X, variance=0.99, max_components=2)
    assert capped.n_components == 2 and capped.variance_reached < 0.99


# --------------------------------------------------------------------------------------------- on frames
def _pool(n_each: int = 12, seed: int = 0) -> list[Atoms]:
    """Two phases (bcc Li, rock-salt LiCl), rattled and strained: a pool with known structure."""
    rng = np.random.default_rng(seed)
    frames = []
    for proto in (bulk("Li", "bcc", a=3.45, cubic=True).repeat(2), bulk("LiCl", "rocksalt", a=5.14)):
        for k in range(n_each):
            a = proto.copy()
            a.set_cell(a.cell * (1 + rng.uniform(-0.04, 0.04)), scale_atoms=True)
            a.rattle(0.05 + 0.01 * k, rng=rng)
            a.info["config_type"] = "test"
            frames.append(a)
    return frames


def test_compute_soap_inner_and_species() -> None:
    frames = _pool(3)
    inner = compute_soap(frames, ["Cl", "Li"], SoapOptions(**SMALL_SOAP))
    per = compute_soap(frames, ["Cl", "Li"], SoapOptions(**SMALL_SOAP, average="species"))
    assert inner.shape[0] == per.shape[0] == 6
    assert per.shape[1] == 2 * inner.shape[1]
    assert np.all(per[:3, : inner.shape[1]] == 0.0)  # no Cl in the bcc Li frames
    # chunking does not change the values
    chunked = compute_soap(frames, ["Cl", "Li"], SoapOptions(**SMALL_SOAP, chunk_size=2))
    np.testing.assert_allclose(chunked, inner, rtol=1e-5, atol=1e-6)


def test_file_pool_descriptors_match_in_memory(tmp_path) -> None:
    from firemlip.selection import compute_soap_file, frames_at, index_extxyz

    frames = _pool(5)
    path = write_frames(tmp_path / "pool.extxyz", frames)
    offsets, species = index_extxyz(path)
    assert len(offsets) == len(frames) + 1 and species == ["Cl", "Li"]
    ref = compute_soap(frames, species, SoapOptions(**SMALL_SOAP))
    par = compute_soap_file(path, offsets, species, SoapOptions(**{**SMALL_SOAP, "n_jobs": 2, "chunk_size": 3}))
    np.testing.assert_allclose(par, ref, rtol=1e-5, atol=1e-6)
    again = frames_at(path, offsets, [7, 2])
    np.testing.assert_allclose(again[0].positions, frames[7].positions, atol=1e-7)
    assert len(again[1]) == 16


def test_select_outputs_reproducible_and_cached(tmp_path) -> None:
    pool = tmp_path / "pool.extxyz"
    write_frames(pool, _pool())
    s1 = select(pool, [4, 8], method="soap-kmeans", seed=0, out_dir=tmp_path / "a", split=[0.5, 0.25, 0.25],
                progress=False, **SMALL_SOAP)
    s2 = select(read_frames(pool), [4, 8], method="soap-kmeans", seed=0, out_dir=tmp_path / "b", progress=False,
                **SMALL_SOAP)  # the same pool held in memory
    assert s1["sizes"]["4"]["indices"] == s2["sizes"]["4"]["indices"]
    assert s1["sizes"]["8"]["indices"] == s2["sizes"]["8"]["indices"]
    # a 4-frame selection from two phases takes frames of both
    sel = read_frames(tmp_path / "a" / "n4" / "selected.extxyz")
    assert len(sel) == 4 and {len(a) for a in sel} == {16, 2}
    assert [a.info["pool_index"] for a in sel] == s1["sizes"]["4"]["indices"]
    for name in ("indices.json", "metrics.json", "pca.png", "train.extxyz", "valid.extxyz", "test.extxyz"):
        assert (tmp_path / "a" / "n8" / name).is_file(), name
    split = json.loads((tmp_path / "a" / "n8" / "split.json").read_text())
    assert sorted(split["train"] + split["valid"] + split["test"]) == sorted(s1["sizes"]["8"]["indices"])
    assert (len(split["train"]), len(split["valid"]), len(split["test"])) == (4, 2, 2)
    m = json.loads((tmp_path / "a" / "n8" / "metrics.json").read_text())
    assert m["coverage_mean"] <= m["coverage_max"]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["stage"] == "select"
    # same directory again: the descriptors are reused
    s3 = select(pool, [4], method="fps", seed=0, out_dir=tmp_path / "a", progress=False, **SMALL_SOAP)
    assert s3["descriptors_reused"] and not s1["descriptors_reused"]
    assert not (tmp_path / "a" / "n4" / "split.json").exists()  # stale split of the earlier call removed
    # a different SOAP setting is not served from the cache
    s4 = select(pool, [4], method="random", seed=0, out_dir=tmp_path / "a", progress=False,
                **{**SMALL_SOAP, "r_cut": 3.5})
    assert not s4["descriptors_reused"]


def test_select_cli_and_one_line_errors(tmp_path, capsys) -> None:
    pool = tmp_path / "pool.extxyz"
    write_frames(pool, _pool(4))
    rc = main(["select", str(pool), "-n", "3", "--method", "random", "--r-cut", "4", "--n-max", "3", "--l-max", "2",
               "--n-jobs", "1", "--quiet", "-o", str(tmp_path / "sel")])
    assert rc == 0
    assert (tmp_path / "sel" / "n3" / "selected.extxyz").is_file()
    capsys.readouterr()

    def err(argv: list[str]) -> str:
        assert main(argv) == 2
        e = capsys.readouterr().err.strip()
        assert len(e.splitlines()) == 1, e
        return e

    assert "larger than the pool" in err(["select", str(pool), "-n", "9", "-o", str(tmp_path / "x")])
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    assert "empty" in err(["select", str(empty), "-n", "1", "-o", str(tmp_path / "x")])
    assert "Cl" in err(["select", str(pool), "-n", "2", "--species", "Li", "-o", str(tmp_path / "x")])
    with pytest.raises(FiremlipError, match="empty"):
        select([], [1], out_dir=tmp_path / "y", progress=False)
    with pytest.raises(FiremlipError, match="split"):
        select(pool, [2], split=[0.5, 0.5, 0.5], out_dir=tmp_path / "y", progress=False)


def test_pca_cap_reported_and_warned(tmp_path, capsys) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 40))  # isotropic: no few components reach 0.99
    rec = reduce_pca(X, variance=0.99, max_components=5).record()
    assert rec["capped"] is True and rec["max_components"] == 5 and rec["n_components"] == 5
    assert rec["variance_reached"] < 0.99 and "cap of 5 components" in rec["warning"]
    assert reduce_pca(X, variance=0.99, max_components=60).record()["warning"] is None
    pool = tmp_path / "pool.extxyz"
    write_frames(pool, _pool(6))
    argv = ["select", str(pool), "-n", "3", "--r-cut", "4", "--n-max", "3", "--l-max", "2", "--n-jobs", "1",
            "--quiet", "--max-components", "1", "-o", str(tmp_path / "sel")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "warning: PCA stopped at its cap of 1 components" in captured.err
    summary = json.loads((tmp_path / "sel" / "summary.json").read_text())
    assert summary["pca"]["capped"] is True and summary["pca"]["max_components"] == 1
