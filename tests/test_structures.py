"""Structures stage: readers, perturbation, interface building."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write

from firemlip.errors import FiremlipError
from firemlip.io import read_frames
from firemlip.structures import build_interface, make_vacancies, perturb, read_structures, too_close


def test_readers_cif_poscar_extxyz_lammps(tmp_path):
    a = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    write(tmp_path / "x.cif", a)
    write(tmp_path / "POSCAR", a, format="vasp")
    write(tmp_path / "x.extxyz", [a, a])
    write(tmp_path / "x.data", a, format="lammps-data", masses=True)
    for name, n in (("x.cif", 1), ("POSCAR", 1), ("x.extxyz", 2), ("x.data", 1)):
        frames = read_structures([str(tmp_path / name)])
        assert len(frames) == n
        assert len(frames[0]) == 8
        assert np.allclose(frames[0].cell.lengths(), 5.64)


def test_perturb_seeded_and_filtered():
    a = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    f1, r1 = perturb(a, 10, rattle=0.1, strain=0.03, seed=3)
    f2, _ = perturb(a, 10, rattle=0.1, strain=0.03, seed=3)
    f3, _ = perturb(a, 10, rattle=0.1, strain=0.03, seed=4)
    assert len(f1) == 10
    assert np.allclose(f1[5].positions, f2[5].positions)
    assert not np.allclose(f1[5].positions, f3[5].positions)
    assert not np.allclose(f1[0].cell.array, a.cell.array)
    assert max(abs(np.asarray(f.info["strain_voigt"])).max() for f in f1) <= 0.03 + 1e-12
    assert all(not too_close(f)[0] for f in f1)
    # a huge rattle forces redraws, and the count is reported
    _, r = perturb(a, 3, rattle=0.6, strain=0.0, seed=0, max_redraws=100000)
    assert r > 0


def test_perturb_bad_counts():
    a = bulk("Cu", "fcc", a=3.6)
    with pytest.raises(FiremlipError, match="positive integer"):
        perturb(a, -3)


def test_interface_cu_ni():
    sub = bulk("Cu", "fcc", a=3.61, cubic=True)
    film = bulk("Ni", "fcc", a=3.52, cubic=True)
    atoms, rep = build_interface(sub, film, (1, 0, 0), (1, 0, 0), 2, 2, gap_A=2.0, max_mismatch=0.05,
                                 max_atoms=32)
    assert set(atoms.get_chemical_symbols()) == {"Cu", "Ni"}
    assert len(atoms) <= 32
    assert abs(rep.mismatch_percent[0] - 100 * (3.52 / 3.61 - 1)) < 0.5
    assert rep.film_von_mises_strain_percent > 0
    assert not too_close(atoms)[0]  # the periodic image interface keeps a gap too


def test_interface_vacancy_in_the_middle_of_a_slab():
    sub = bulk("Cu", "fcc", a=3.61, cubic=True)
    film = bulk("Ni", "fcc", a=3.52, cubic=True)
    full, _ = build_interface(sub, film, (1, 0, 0), (1, 0, 0), 3, 2, gap_A=2.0, max_mismatch=0.05, max_atoms=48)
    atoms, rep = build_interface(sub, film, (1, 0, 0), (1, 0, 0), 3, 2, gap_A=2.0, max_mismatch=0.05,
                                 max_atoms=48, vacancies=["substrate:Cu"])
    assert len(atoms) == len(full) - 1 and atoms.get_chemical_symbols().count("Ni") == full.get_chemical_symbols().count("Ni")
    (v,) = rep.vacancies
    z = full.positions[:, 2][np.asarray(full.arrays["interface_label"]) == "substrate"]
    mid = 0.5 * (z.min() + z.max())
    assert v["element"] == "Cu" and v["slab"] == "substrate"
    assert abs(v["position_A"][2] - mid) <= min(abs(z - mid)) + 0.01  # a middle-plane atom
    assert np.allclose(np.delete(full.positions, v["index"], axis=0), atoms.positions)
    assert "interface_label" in atoms.arrays and len(atoms.arrays["interface_label"]) == len(atoms)
    with pytest.raises(FiremlipError, match="Wyckoff b"):
        make_vacancies(full, ["substrate:Cu:b"])
    with pytest.raises(FiremlipError, match="SLAB:ELEMENT"):
        make_vacancies(full, ["bulk:Cu"])
    with pytest.raises(FiremlipError, match="no Ni atom"):
        make_vacancies(full, ["substrate:Ni"])


def test_cli_perturb_and_errors(tmp_path, cli):
    write(tmp_path / "cu.extxyz", bulk("Cu", "fcc", a=3.6) * (2, 2, 2))
    r = cli("perturb", tmp_path / "cu.extxyz", "-n", "4", "--seed", "1", "-o", tmp_path / "p.extxyz")
    assert r.returncode == 0, r.stderr
    assert len(read_frames(tmp_path / "p.extxyz")) == 4
    r = cli("perturb", tmp_path / "cu.extxyz", "-n", "-3", "-o", tmp_path / "q.extxyz")
    assert r.returncode == 2 and "positive integer" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli("perturb", tmp_path / "missing.cif", "-o", tmp_path / "q.extxyz")
    assert r.returncode == 2 and "missing.cif" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad.cif").write_text("data_x\n_cell_length_a 3\nloop_\n_atom_site_label\n???\n")
    r = cli("perturb", tmp_path / "bad.cif", "-o", tmp_path / "q.extxyz")
    assert r.returncode == 2 and "bad.cif" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "q.extxyz").exists()
