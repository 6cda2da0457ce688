"""Import stage: VASP OUTCAR/vasprun.xml, DeePMD npy, extxyz with other keys → REF_* labels."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from conftest import SHARED_DATA
from firemlip.importing import import_paths
from firemlip.io import read_frames


def test_extxyz_custom_keys(tmp_path):
    a = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    a.rattle(0.05, seed=1)
    a.calc = EMT()
    e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
    b = a.copy()
    b.calc = None
    b.info["dft_energy"] = e
    b.arrays["dft_forces"] = f
    b.info["dft_stress"] = s
    write(tmp_path / "in.extxyz", [b])
    out = import_paths([str(tmp_path / "in.extxyz")], "dft_energy", "dft_forces", "dft_stress")
    assert np.isclose(out[0].info["REF_energy"], e)
    assert np.allclose(out[0].arrays["REF_forces"], f)
    assert np.allclose(out[0].info["REF_stress"], s)


def test_vasprun_and_outcar_roundtrip_through_ase(tmp_path):
    # ASE writes vasprun.xml-like data only through its readers, so check the reader path with extxyz that
    # carries calculator results (the same SinglePointCalculator route that OUTCAR/vasprun use).
    a = bulk("Cu", "fcc", a=3.6)
    a.calc = SinglePointCalculator(a, energy=-3.5, forces=np.zeros((1, 3)), stress=np.arange(6) * 1e-3)
    write(tmp_path / "calc.extxyz", [a, a])
    out = import_paths([str(tmp_path / "calc.extxyz")])
    assert len(out) == 2 and np.isclose(out[1].info["REF_energy"], -3.5)
    assert np.allclose(out[0].info["REF_stress"], np.arange(6) * 1e-3)


def test_deepmd_npy(tmp_path):
    d = tmp_path / "sys"
    (d / "set.000").mkdir(parents=True)
    (d / "type_map.raw").write_text("Li\nCl\n")
    (d / "type.raw").write_text("0\n1\n")
    box = np.tile(np.eye(3).ravel() * 4.0, (2, 1))
    coord = np.array([[0, 0, 0, 2, 2, 2], [0.1, 0, 0, 2, 2, 2]], dtype=float)
    energy = np.array([-5.0, -4.9])
    force = np.zeros((2, 6))
    virial = np.tile(np.eye(3).ravel() * 0.64, (2, 1))
    for n, arr in (("box", box), ("coord", coord), ("energy", energy), ("force", force), ("virial", virial)):
        np.save(d / "set.000" / f"{n}.npy", arr)
    out = import_paths([str(d)])
    assert len(out) == 2 and out[0].get_chemical_symbols() == ["Li", "Cl"]
    assert np.isclose(out[1].info["REF_energy"], -4.9)
    assert np.allclose(out[0].info["REF_stress"][:3], -0.64 / 64.0)  # stress = -virial / V


def test_cli_import_errors(tmp_path, cli):
    r = cli("import", tmp_path / "OUTCAR", "-o", tmp_path / "o.extxyz")
    assert r.returncode == 2 and "OUTCAR" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "e").mkdir()
    r = cli("import", tmp_path / "e", "-o", tmp_path / "o.extxyz")
    assert r.returncode == 2 and "DeePMD" in r.stderr


def test_mlearn_li_data():
    path = SHARED_DATA / "li_metal_mlearn" / "test.extxyz"
    if not path.exists():
        pytest.skip(f"{path} not present (shared data lives beside the repository)")
    out = import_paths([str(path)])
    assert len(out) == 29 and all("REF_forces" in a.arrays for a in out)
    assert read_frames(path)[0].get_chemical_symbols()[0] == "Li"
