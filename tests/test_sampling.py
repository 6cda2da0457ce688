"""Tests of MD sampling (firemlip.sampling) and the stability guard with a real tiny mace-torch model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from firemlip.cli import main
from firemlip.errors import FiremlipError
from firemlip.io import read_frames, write_frames
from firemlip.stability import StabilityGuard, min_distance_violation, pair_thresholds

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

E0 = {"Li": -1.9, "Cl": -1.8}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    from firemlip.models import build_mace, save_model

    d = tmp_path_factory.mktemp("model")
    return save_model(build_mace(["Li", "Cl"], "tiny", atomic_energies=E0, seed=0), d / "tiny.model")


@pytest.fixture(scope="module")
def li_only_model(tmp_path_factory) -> Path:
    from firemlip.models import build_mace, save_model

    d = tmp_path_factory.mktemp("model_li")
    return save_model(build_mace(["Li"], "tiny", atomic_energies=E0, seed=0), d / "li.model")


@pytest.fixture(scope="module")
def structure(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("structure")
    return write_frames(d / "li16.extxyz", bulk("Li", "bcc", a=3.45, cubic=True).repeat(2))


# --------------------------------------------------------------------------------------------------- guard
def test_guard_min_distance_species_aware() -> None:
    a = Atoms("LiCl", positions=[[0, 0, 0], [0.9, 0, 0]], cell=[8, 8, 8], pbc=True)
    thr = pair_thresholds(["Li", "Cl"], factor=0.5)
    assert thr[("Li", "Li")] > thr[("Li", "Cl")] == thr[("Cl", "Li")] > thr[("Cl", "Cl")]  # r_cov Li > Cl
    bad = min_distance_violation(a)
    assert bad is not None and bad[2] in ("Li-Cl", "Cl-Li") and bad[0] == pytest.approx(0.9)
    a.positions[1, 0] = 2.4
    assert min_distance_violation(a) is None
    # periodic images count: atoms near opposite faces are close through the boundary
    b = Atoms("Li2", positions=[[0.1, 0, 0], [7.6, 0, 0]], cell=[8, 8, 8], pbc=True)
    assert min_distance_violation(b) is not None
    ev = StabilityGuard().check(b, step=7)
    assert ev.kind == "min_distance" and ev.step == 7 and ev.unit == "Å"


def test_guard_energy_jump_temperature_and_nan() -> None:
    a = bulk("Li", "bcc", a=3.45, cubic=True)
    g = StabilityGuard(max_energy_jump_eV_per_atom=0.5)
    assert g.check(a, potential_energy_eV=-4.0) is None
    assert g.check(a, potential_energy_eV=-3.8) is None
    ev = g.check(a, potential_energy_eV=-1.0)
    assert ev.kind == "energy_jump" and ev.value == pytest.approx(1.4)
    g.reset()
    assert g.check(a, potential_energy_eV=-1.0) is None
    assert g.temperature_limit_K(300.0) == 900.0  # max(3 × 300, 300 + 500)
    assert g.temperature_limit_K(100.0) == 600.0
    assert g.check(a, temperature_K=850.0, target_temperature_K=300.0) is None
    assert g.check(a, temperature_K=1000.0, target_temperature_K=300.0).kind == "temperature"
    assert g.check(a, potential_energy_eV=float("nan")).kind == "non_finite"


# ---------------------------------------------------------------------------------------------------- MD
def test_sample_two_temperatures_then_select(model_path, structure, tmp_path) -> None:
    from firemlip.sampling import sample
    from firemlip.selection import select

    out = sample(model_path, structure, [300, 900], steps=20, interval=5, engine="ase",
                 out_path=tmp_path / "pool.extxyz", timestep_fs=1.0, seed=1, progress=False)
    frames = read_frames(out)
    assert len(frames) == 8
    assert [f.info["config_type"] for f in frames] == ["md_300K"] * 4 + ["md_900K"] * 4
    assert [int(f.info["step"]) for f in frames] == [5, 10, 15, 20] * 2
    for f in frames:
        assert f.info["source"] == f"{structure}@0"
        assert f.info["engine"] == "ase"
        assert np.isfinite(f.info["md_energy_eV"])
        assert len(f) == 16
    assert not np.allclose(frames[0].positions, frames[4].positions)
    summary = json.loads((tmp_path / "pool.summary.json").read_text())
    assert summary["frames"] == 8 and summary["stopped"] == []
    assert [j["temperature_K"] for j in summary["jobs"]] == [300.0, 900.0]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stage"] == "sample" and manifest["status"] == "done"

    # resume: finished jobs come from pool.parts/ and give the same pool
    again = read_frames(sample(model_path, structure, [300, 900], steps=20, interval=5,
                               out_path=tmp_path / "pool.extxyz", seed=1, progress=False))
    np.testing.assert_allclose(again[-1].positions, frames[-1].positions)

    res = select(out, [3], seed=0, out_dir=tmp_path / "sel", progress=False, r_cut=4.0, n_max=3, l_max=2)
    res2 = select(out, [3], seed=0, out_dir=tmp_path / "sel2", progress=False, r_cut=4.0, n_max=3, l_max=2)
    assert res["sizes"]["3"]["indices"] == res2["sizes"]["3"]["indices"]
    sel = read_frames(tmp_path / "sel" / "n3" / "selected.extxyz")
    assert all(s.info["config_type"].startswith("md_") for s in sel)


def test_guard_stops_trajectory_and_keeps_earlier_frames(model_path, structure, tmp_path) -> None:
    from firemlip.sampling import sample

    guard = StabilityGuard(max_energy_jump_eV_per_atom=0.0)  # any energy change between checks trips it
    out = sample(model_path, structure, [600], steps=30, interval=5, out_path=tmp_path / "pool.extxyz",
                 guard=guard, guard_every=5, progress=False)
    frames = read_frames(out)
    assert [int(f.info["step"]) for f in frames] == [5]
    summary = json.loads((tmp_path / "pool.summary.json").read_text())
    stop = summary["stopped"][0]["stopped"]
    assert stop["kind"] == "energy_jump" and stop["step"] == 10
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stopped"][0]["stopped"]["kind"] == "energy_jump"


def test_parallel_workers_match_serial(model_path, structure, tmp_path) -> None:
    from firemlip.sampling import sample

    kw = dict(steps=6, interval=3, seed=5, progress=False, thermostat="nose-hoover")
    serial = read_frames(sample(model_path, structure, [300, 500], out_path=tmp_path / "s" / "pool.extxyz", **kw))
    par = read_frames(sample(model_path, structure, [300, 500], out_path=tmp_path / "p" / "pool.extxyz",
                             workers=2, **kw))
    assert len(serial) == len(par) == 4
    for a, b in zip(serial, par, strict=True):
        assert a.info["config_type"] == b.info["config_type"]
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-6)


def test_sample_one_line_errors(li_only_model, model_path, tmp_path, capsys) -> None:
    licl = write_frames(tmp_path / "licl.extxyz", bulk("LiCl", "rocksalt", a=5.14))
    rc = main(["sample", str(li_only_model), str(licl), "--temperatures", "300", "--steps", "4", "--interval", "2",
               "-o", str(tmp_path / "pool.extxyz")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lacks element(s) Cl" in err
    from firemlip.sampling import sample

    with pytest.raises(FiremlipError, match="interval"):
        sample(model_path, licl, [300], steps=2, interval=5, out_path=tmp_path / "p.extxyz")
    with pytest.raises(FiremlipError, match="not found"):
        sample(tmp_path / "missing.model", licl, [300], steps=2, interval=1, out_path=tmp_path / "p.extxyz")


def _lammps_ready() -> str | None:
    """None when the LAMMPS engine can run here, else why not."""
    try:
        from firemlip.sampling import _lammps_api

        _lammps_api()
    except FiremlipError as exc:
        return str(exc)
    return None


def test_lammps_engine(model_path, structure, tmp_path) -> None:
    why = _lammps_ready()
    if why:
        pytest.skip(f"LAMMPS engine not available: {why}")
    from firemlip.sampling import sample

    out = sample(model_path, structure, [300], steps=20, interval=5, engine="lammps",
                 out_path=tmp_path / "pool.extxyz", progress=False)
    frames = read_frames(out)
    assert [int(f.info["step"]) for f in frames] == [5, 10, 15, 20]
    assert all(f.info["engine"] == "lammps" and f.get_chemical_symbols() == ["Li"] * 16 for f in frames)
