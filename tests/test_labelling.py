"""Labelling stage: real calculators (GPAW, EMT), caching, resume after SIGKILL, failures, workers, Dask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from conftest import TESTS_DIR
from firemlip.errors import FiremlipError
from firemlip.io import read_frames
from firemlip.labelling import label_file, label_frames
from firemlip.structures import perturb


def _cu_frames(n: int, seed: int = 0):
    frames, _ = perturb(bulk("Cu", "fcc", a=3.6) * (2, 1, 1), n, rattle=0.05, strain=0.01, seed=seed)
    return frames


def test_emt_labels_match_direct_calculation(tmp_path):
    frames = _cu_frames(3)
    out, failed = label_frames(frames, "emt", cache_dir=tmp_path / "cache")
    assert not failed and len(out) == 3
    for a, b in zip(frames, out, strict=True):
        c = a.copy()
        c.calc = EMT()
        assert np.isclose(b.info["REF_energy"], c.get_potential_energy())
        assert np.allclose(b.arrays["REF_forces"], c.get_forces())
        assert np.allclose(b.info["REF_stress"], c.get_stress())
        assert b.info["config_type"] == "perturbed"
    # second call is served from the cache (files per frame)
    assert len(list((tmp_path / "cache").glob("*.extxyz"))) == 3


@pytest.mark.slow
def test_gpaw_bcc_li(tmp_path):
    pytest.importorskip("gpaw")
    li = bulk("Li", "bcc", a=3.44, cubic=True)
    write(tmp_path / "li.extxyz", li)
    rep = label_file(str(tmp_path / "li.extxyz"), str(tmp_path / "out.extxyz"), "gpaw",
                     {"ecut_eV": 300, "kpt_density": 2.0})
    assert rep["n_labelled"] == 1
    a = read_frames(tmp_path / "out.extxyz")[0]
    # PBE total energy of bcc Li (GPAW PAW reference, eV per cell of 2 atoms): negative, a few eV
    assert -5.0 < a.info["REF_energy"] < -2.0
    assert np.abs(a.arrays["REF_forces"]).max() < 1e-3  # symmetric cell: no forces
    s = np.asarray(a.info["REF_stress"])
    assert s.shape == (6,) and np.allclose(s[0], s[1:3], atol=1e-4) and np.abs(s[3:]).max() < 1e-6


@pytest.mark.slow  # a GPAW subprocess killed mid-run: ~7 s
def test_label_resume_after_sigkill(tmp_path):
    frames = _cu_frames(20, seed=5)
    write(tmp_path / "in.extxyz", frames)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "firemlip", "label", str(tmp_path / "in.extxyz"), "-c",
           "python:slow_calculators:slow_emt", "--set", "delay=0.25", "-o", str(tmp_path / "out.extxyz"),
           "--cache", str(tmp_path / "cache")]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "cache").glob("*.extxyz"))) < 5:
        time.sleep(0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    n_cached = len(list((tmp_path / "cache").glob("*.extxyz")))
    assert 5 <= n_cached < 20, "the run should have been killed mid-way"
    assert not (tmp_path / "out.extxyz").exists()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = read_frames(tmp_path / "out.extxyz")
    assert len(out) == 20
    energies = [a.info["REF_energy"] for a in out]
    assert len(set(np.round(energies, 10))) == 20  # no duplicates
    ref = []
    for a in frames:
        a.calc = EMT()
        ref.append(a.get_potential_energy())
    assert np.allclose(energies, ref)  # same order as the input


def test_failed_frames_recorded(tmp_path):
    frames = _cu_frames(6, seed=1)
    for k, a in enumerate(frames):
        a.positions[0, 0] = 1.0 if k % 3 == 0 else 0.0
    write(tmp_path / "in.extxyz", frames)
    import importlib

    sys.path.insert(0, str(TESTS_DIR))
    importlib.import_module("slow_calculators")
    rep = label_file(str(tmp_path / "in.extxyz"), str(tmp_path / "out.extxyz"),
                     "python:slow_calculators:failing_emt")
    assert rep["n_labelled"] == 4 and rep["n_failed"] == 2
    failed = read_frames(tmp_path / "failed.extxyz")
    assert len(failed) == 2 and "SCF did not converge" in failed[0].info["label_error"]


def test_workers_and_dask_localcluster(tmp_path):
    frames = _cu_frames(6, seed=2)
    ref, _ = label_frames(frames, "emt", cache_dir=tmp_path / "c0")
    pooled, _ = label_frames(frames, "emt", cache_dir=tmp_path / "c1", workers=2)
    assert np.allclose([a.info["REF_energy"] for a in ref], [a.info["REF_energy"] for a in pooled])
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as lc:
        dasked, _ = label_frames(frames, "emt", cache_dir=tmp_path / "c2", dask_address=lc.scheduler_address)
    assert np.allclose([a.info["REF_energy"] for a in ref], [a.info["REF_energy"] for a in dasked])


def test_label_errors_one_line(tmp_path, cli):
    write(tmp_path / "li.extxyz", bulk("Li", "bcc", a=3.44))
    cases = [
        (("label", tmp_path / "nope.extxyz", "-c", "emt", "-o", tmp_path / "o.extxyz"), "not found"),
        (("label", tmp_path / "li.extxyz", "-c", "nosuchcalc", "-o", tmp_path / "o.extxyz"), "unknown"),
        (("label", tmp_path / "li.extxyz", "-c", "emt", "-o", tmp_path / "o.extxyz"), "Li not supported"),
    ]
    for args, text in cases:
        r = cli(*args)
        assert r.returncode == 2, r.stderr
        assert text in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.extxyz").exists()
    with pytest.raises(FiremlipError, match="supported"):
        label_frames([bulk("Zz", "fcc", a=4.0) if False else bulk("Ar", "fcc", a=5.2)], "emt",
                     cache_dir=tmp_path / "c")
