"""The package-level Python API: every stage function importable from ``firemlip``, loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk

import firemlip


def test_public_names_resolve_to_the_stage_functions():
    for name in firemlip.__all__[1:]:
        fn = getattr(firemlip, name)
        assert callable(fn) and fn.__name__ == name, name
    assert set(firemlip.__all__) <= set(dir(firemlip))


def test_import_firemlip_stays_light():
    code = "import sys, firemlip; print(int(any(m.startswith(('torch', 'mace', 'lammps')) for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_select_in_memory_from_the_package(tmp_path):
    rng = np.random.default_rng(0)
    pool = []
    for k in range(8):
        a = bulk("Cu", "fcc", a=3.6, cubic=True)
        a.rattle(0.02 + 0.02 * k, rng=rng)
        pool.append(a)
    res = firemlip.select(pool, 3, out_dir=tmp_path / "sel", progress=False, r_cut=3.5, n_max=2, l_max=2, n_jobs=1)
    idx = res["sizes"]["3"]["indices"]
    assert len(idx) == 3 and len(set(idx)) == 3


def test_readme_python_session_with_emt_and_a_tiny_model(tmp_path, monkeypatch):
    """The README's Python session, with EMT labels on Cu and a tiny foundation instead of GPAW and MACE-MP-0."""
    from firemlip.models import build_mace, save_model

    monkeypatch.chdir(tmp_path)
    save_model(build_mace(["Cu"], "tiny", atomic_energies={"Cu": -0.1}, seed=1), "found.model")
    host = bulk("Cu", "fcc", a=3.6, cubic=True)
    frames, _ = firemlip.perturb(host, 6, rattle=0.05, strain=0.02)
    labelled, failed = firemlip.label_frames(frames, "emt")
    assert len(labelled) == 6 and not failed
    fit = firemlip.finetune("fire", "found.model", labelled, out_dir="ft", epochs=2, progress=False)
    assert fit.model_path.resolve() == (tmp_path / "ft" / "fire.model").resolve() and np.isfinite(fit.history[-1]["valid_rmse_f_meV_A"])
    pool = firemlip.sample(fit, host, temperatures=[300, 600], steps=40, interval=4, engine="lammps",
                           progress=False)
    subset = firemlip.select(pool, 5, progress=False, n_jobs=1)
    assert len(subset.indices) == 5 and len(subset.frames) == 5 and subset.coverage["coverage_mean"] > 0
    lmp_model = firemlip.export_model(fit)
    assert fit.name == "fire.model" and lmp_model.name == "fire.lammps.pt" and lmp_model.exists()
    assert len(firemlip.read_frames(pool)) == 20 and subset["sizes"]["5"]["indices"] == subset.indices


def test_finetune_in_memory_frames_and_model_without_out_dir(tmp_path, monkeypatch):
    """Atoms lists and a loaded model go in, a FinetuneResult comes out; the files land in a fresh temp dir."""
    import json
    import os
    import tempfile

    from firemlip.foundation import is_mace_model
    from firemlip.models import build_mace

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the default out_dir is made under it
    monkeypatch.chdir(tmp_path)  # the labeller's cache
    found = build_mace(["Cu"], "tiny", atomic_energies={"Cu": -0.1}, seed=1)
    w0 = {n: p.detach().clone() for n, p in found.named_parameters()}
    frames, _ = firemlip.perturb(bulk("Cu", "fcc", a=3.6, cubic=True), 6, rattle=0.05, strain=0.02, seed=3)
    labelled, failed = firemlip.label_frames(frames, "emt")
    assert len(labelled) == 6 and not failed
    res = firemlip.finetune("fire", found, labelled[:4], valid=labelled[4:], replay=labelled, epochs=2,
                            batch_size=2, progress=False)
    assert isinstance(res, firemlip.FinetuneResult)
    out = res.out_dir
    assert out.parent == tmp_path and out.name.startswith("firemlip-finetune-")
    assert res.model_path == out / "fire.model" and res.exists() and res.name == "fire.model"
    assert os.fspath(res) == str(res) == str(out / "fire.model") and res.parent == out and res.suffix == ".model"
    man = json.loads((out / "manifest.json").read_text())
    # the in-memory inputs were written beside the model and hashed by the manifest
    assert set(man["inputs"]) == {"foundation", "train", "valid", "replay"}
    assert man["inputs"]["train"]["path"] == str(out / "train.extxyz")
    assert man["inputs"]["foundation"]["path"] == str(out / "foundation.model")
    assert len(firemlip.read_frames(out / "train.extxyz")) == 4
    assert (man["n_train"], man["n_valid"], man["replay_type"]) == (4, 2, "user")
    assert man["foundation"]["name"].startswith("<in-memory")
    # history = log.csv as numbers, summary = the manifest's
    assert [r["epoch"] for r in res.history] == [0, 1]
    assert all(np.isfinite(r["valid_loss"]) and r["n_task"] == 4 for r in res.history)
    assert res.summary == man["summary"] and res.manifest["n_train"] == 4
    trained = res.load()
    assert is_mace_model(trained)
    assert any(not np.allclose(p.detach().numpy(), w0[n].numpy()) for n, p in trained.named_parameters())


def test_finetune_result_stands_in_for_the_model_path(tmp_path):
    """Everything callers did with the returned Path works with the FinetuneResult."""
    import os
    import pickle
    from pathlib import Path

    from firemlip.training.api import FinetuneResult, read_history

    (tmp_path / "fire.model").write_bytes(b"x")
    (tmp_path / "log.csv").write_text("epoch,stage,lr,valid_loss,best\n1,1,0.01,0.5,1\n2,1,0.01,0.25,\n")
    r = FinetuneResult(tmp_path / "fire.model", read_history(tmp_path), {}, tmp_path)
    assert Path(r) == tmp_path / "fire.model" and r == tmp_path / "fire.model" and r == str(tmp_path / "fire.model")
    assert r.stem == "fire" and r.with_suffix(".lammps.pt").name == "fire.lammps.pt" and r.read_bytes() == b"x"
    assert os.path.exists(r) and pickle.loads(pickle.dumps(r)).name == "fire.model"
    assert r.history == [{"epoch": 1, "stage": 1, "lr": 0.01, "valid_loss": 0.5, "best": 1},
                         {"epoch": 2, "stage": 1, "lr": 0.01, "valid_loss": 0.25, "best": None}]


def test_select_in_memory_without_out_dir_returns_a_selection(tmp_path, monkeypatch):
    import json
    import tempfile

    from firemlip.selection import kmeans_select

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rng = np.random.default_rng(0)
    pool = []
    for k in range(8):
        a = bulk("Cu", "fcc", a=3.6, cubic=True)
        a.rattle(0.02 + 0.02 * k, rng=rng)
        pool.append(a)
    res = firemlip.select(pool, [3, 5], progress=False, r_cut=3.5, n_max=2, l_max=2, n_jobs=1)
    assert isinstance(res, firemlip.Selection) and isinstance(res, dict)
    assert res.out_dir.parent == tmp_path and (res.out_dir / "n3" / "selected.extxyz").is_file()
    assert res.size == 3 and res.indices == res["sizes"]["3"]["indices"] == res.sizes["3"]["indices"]
    assert len(set(res.indices)) == 3 and len(res.frames_by_size[5]) == 5
    assert [a.info["pool_index"] for a in res.frames] == res.indices
    for a in res.frames:
        np.testing.assert_allclose(a.positions, pool[a.info["pool_index"]].positions)
    # the PCA coordinates are those the selection was made in: K-means on them picks the same frames
    assert res.pca.Z.shape == (8, res["pca"]["n_components"])
    assert kmeans_select(res.pca.Z, 3, seed=0)[0].tolist() == res.indices
    assert res.coverage == {k: res.sizes["3"]["metrics"][k] for k in ("coverage_mean", "coverage_p95", "coverage_max")}
    assert 0 < res.coverage["coverage_mean"] <= res.coverage["coverage_max"]
    assert "pca" in res and res.get("pool") == "<frames>" and res.summary == dict(res)
    assert json.loads(json.dumps(res))["sizes"]["5"]["indices"] == res.sizes["5"]["indices"]


def _li_walk(n_frames: int, n_li: int, n_host: int, d_cm2_s: float, dt_fs: float, box_A: float, seed: int = 0):
    """Li random walkers with diffusivity d_cm2_s among host atoms vibrating around fixed sites (Å)."""
    rng = np.random.default_rng(seed)
    step = np.sqrt(2 * d_cm2_s / 0.1 * dt_fs)  # Å per Cartesian component per frame (1 Å²/fs = 0.1 cm²/s)
    li = rng.uniform(0, box_A, (1, n_li, 3)) + np.cumsum(rng.normal(0, step, (n_frames, n_li, 3)), axis=0)
    host = rng.uniform(0, box_A, (1, n_host, 3)) + rng.normal(0, 0.05, (n_frames, n_host, 3))
    return np.concatenate([li, host], axis=1), ["Li"] * n_li + ["Pb"] * n_host


def test_diffusion_analysis_from_positions_recovers_D(tmp_path):
    from firemlip.analysis.conductivity import nernst_einstein

    d_true, dt, box = 2e-5, 10.0, 20.0
    pos, el = _li_walk(300, 64, 32, d_true, dt, box)
    ana = firemlip.DiffusionAnalysis.from_positions(pos, el, dt, 600.0, "Li", cells_A=np.eye(3) * box,
                                                    n_bootstrap=100)
    res = ana.run()
    assert isinstance(res, firemlip.DiffusionResult)
    assert 0 < res.D_err_cm2_s < 0.2 * d_true and abs(res.D_cm2_s - d_true) < 3 * res.D_err_cm2_s
    assert res.valid and res.invalid_reasons == [] and res["diffusive"]
    assert res["n_ions"] == 64 and res["frame_interval_fs"] == dt and res.data["diffusivity_cm2_s"] == res.D_cm2_s
    t, msd = res.msd
    assert len(t) == 300 and t[1] == dt and msd[0] == 0.0
    i = int(np.searchsorted(t, res.window_fs[1]))  # MSD ≈ 6 D t in the window (D in Å²/fs = 10 × cm²/s)
    assert msd[i] == pytest.approx(6 * d_true * 10 * t[i], rel=0.25)
    n = 64 / (box ** 3 * 1e-24)
    assert res["number_density_cm3"] == pytest.approx(n)
    assert res.sigma_tracer_S_cm == pytest.approx(nernst_einstein(n, 1, res.D_cm2_s, 600.0), rel=1e-12)
    if res.haven_ratio is not None:  # computed from the charge MSD: σ = σ_tracer / H_R
        assert res.sigma_S_cm == pytest.approx(res["conductivity"]["sigma_charge_S_cm"])
    assert res.out_dir is None and "plot" not in res and not list(tmp_path.iterdir())  # nothing written
    # with an out_dir the files of analyze_diffusion are written; run() options override the constructor's
    res2 = ana.run(tmp_path / "d", n_bootstrap=20)
    assert (tmp_path / "d" / "diffusion.json").is_file() and (tmp_path / "d" / "msd.png").is_file()
    assert res2.D_cm2_s == res.D_cm2_s and res2["uncertainty_method"].endswith("(20 resamples), 1 sigma")
    # no cell: D as before, no number density and no σ
    bare = firemlip.DiffusionAnalysis.from_positions(pos, el, dt, 600.0, "Li", n_bootstrap=20).run()
    assert bare.D_cm2_s == pytest.approx(res.D_cm2_s, rel=1e-12) and bare.sigma_S_cm is None
    assert bare["number_density_cm3"] is None and bare.sigma_tracer_S_cm is None


def test_diffusion_analysis_from_universe_matches_from_positions():
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    pos, el = _li_walk(120, 24, 12, 2e-5, 10.0, 20.0, seed=5)
    u = mda.Universe.empty(len(el), trajectory=True)
    u.add_TopologyAttr("elements", el)
    u.load_new(pos.astype(np.float32), format=MemoryReader, dt=0.01,  # ps: 10 fs between frames
               dimensions=np.array([20.0, 20.0, 20.0, 90.0, 90.0, 90.0], dtype=np.float32))
    a = firemlip.DiffusionAnalysis.from_universe(u, "Li", 700.0, n_bootstrap=20).run()
    b = firemlip.DiffusionAnalysis.from_positions(pos, el, 10.0, 700.0, "Li", cells_A=np.eye(3) * 20.0,
                                                  n_bootstrap=20).run()
    assert a["frame_interval_fs"] == pytest.approx(10.0) and a["n_ions"] == 24
    assert a.D_cm2_s == pytest.approx(b.D_cm2_s, rel=1e-4)
    assert a["number_density_cm3"] == pytest.approx(b["number_density_cm3"], rel=1e-6)
