"""Impedance fit, scaling timings and local-structure checks (analysis stage), with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import write

from firemlip.analysis.impedance import analyze_impedance
from firemlip.analysis.scaling import analyze_scaling, parse_lammps_log
from firemlip.analysis.structure import structure_check
from firemlip.cli import main
from firemlip.errors import FiremlipError

TRUE = [15.0, 800.0, 1e-9, 0.9, 5e-6, 0.85]  # R0, R1 (Ω), Q1, α1, Q2, α2


def synthetic_spectrum(path: Path, noise: float = 0.005, minus_zim: bool = True) -> None:
    from impedance.models.circuits import CustomCircuit

    c = CustomCircuit("R0-p(R1,CPE1)-CPE2", initial_guess=TRUE)
    f = np.logspace(8, -1, 70)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Z = c.predict(f, use_initial=True)
    rng = np.random.default_rng(0)
    Z = Z * (1 + noise * rng.normal(size=f.size))
    zi = -Z.imag if minus_zim else Z.imag
    path.write_text("frequency_Hz,Zre_ohm,-Zim_ohm\n" + "\n".join(f"{a:.6e},{b:.6e},{c:.6e}"
                                                                  for a, b, c in zip(f, Z.real, zi, strict=False)) + "\n")


def test_impedance_fit_recovers_conductivity(tmp_path: Path) -> None:
    synthetic_spectrum(tmp_path / "eis.csv")
    res = analyze_impedance(tmp_path / "eis.csv", 0.1, 0.5, tmp_path / "out", temperature_K=298)
    true_sigma = 0.1 / ((TRUE[0] + TRUE[1]) * 0.5)
    assert res["sigma_S_cm"] == pytest.approx(true_sigma, rel=0.02)
    assert abs(res["sigma_S_cm"] - true_sigma) < 3 * res["sigma_err_S_cm"] + 0.005 * true_sigma
    assert "flipped" in res["sign_convention"]
    assert (tmp_path / "out" / "nyquist.png").exists()
    # the same data with Z'' negative (as measured) gives the same answer
    synthetic_spectrum(tmp_path / "eis2.csv", minus_zim=False)
    res2 = analyze_impedance(tmp_path / "eis2.csv", 0.1, 0.5, tmp_path / "out2")
    assert res2["sigma_S_cm"] == pytest.approx(res["sigma_S_cm"], rel=1e-6)


def test_impedance_comparison_table_and_bad_columns(tmp_path: Path, capsys) -> None:
    synthetic_spectrum(tmp_path / "eis.csv")
    sim = tmp_path / "conductivity.json"
    sim.write_text(json.dumps({"temperature_K": 300, "sigma_tracer_S_cm": 1e-3, "sigma_tracer_err_S_cm": 1e-4,
                               "sigma_charge_S_cm": 2e-3, "sigma_charge_err_S_cm": 3e-4, "haven_source": "assumed"}))
    assert main(["analyze", "impedance", str(tmp_path / "eis.csv"), "--thickness-cm", "0.1", "--area-cm2", "0.5",
                 "--simulated", str(sim), "-o", str(tmp_path / "o")]) == 0
    table = json.loads((tmp_path / "o" / "impedance.json").read_text())["comparison"]
    assert len(table) == 3 and table[0]["source"].startswith("measured")
    (tmp_path / "bad.csv").write_text("f,Zre\n" + "\n".join(f"{i + 1},{i}" for i in range(20)))
    with pytest.raises(FiremlipError, match="expected 3 columns"):
        analyze_impedance(tmp_path / "bad.csv", 0.1, 0.5, tmp_path / "o")
    capsys.readouterr()
    assert main(["analyze", "impedance", str(tmp_path / "bad.csv"), "--thickness-cm", "0.1", "--area-cm2", "0.5",
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected 3 columns" in err[0]


LOG = """LAMMPS (22 Jul 2025)
Loop time of 0.5 on 1 procs for 10 steps with {n} atoms
Performance: ...
Loop time of {t} on 1 procs for 100 steps with {n} atoms
"""


def test_scaling_from_logs_tables_and_run_dirs(tmp_path: Path) -> None:
    for n, t in ((16, 1.0), (128, 1.1), (1024, 1.6)):
        d = tmp_path / f"run{n}"
        d.mkdir()
        (d / "log.lammps").write_text(LOG.format(n=n, t=t))
    (tmp_path / "t.csv").write_text("atoms,ms_per_step\n3456,30.0\n")
    (tmp_path / "t.json").write_text(json.dumps({"runs": [{"atoms": 8192, "loop_time_s": 5.0, "steps": 100}]}))
    assert parse_lammps_log(tmp_path / "run16" / "log.lammps")["ms_per_step"] == pytest.approx(10.0)
    res = analyze_scaling([tmp_path / "run1024", tmp_path / "run16", tmp_path / "run128", tmp_path / "t.csv",
                           tmp_path / "t.json"], tmp_path / "out", label="test")
    atoms = [r["atoms"] for r in res["runs"]]
    assert atoms == [16, 128, 1024, 3456, 8192]
    assert res["runs"][0]["us_per_atom_step"] == pytest.approx(10.0 * 1000 / 16)
    assert res["runs"][-1]["ms_per_step"] == pytest.approx(50.0)
    assert 0 < res["exponent"] < 1
    assert (tmp_path / "out" / "scaling.png").exists()
    (tmp_path / "empty.log").write_text("LAMMPS\nERROR: something\n")
    with pytest.raises(FiremlipError, match="no 'Loop time"):
        analyze_scaling([tmp_path / "empty.log"], tmp_path / "o2")


def _liquid_like(ref: Atoms, seed: int = 0, dmin: float = 1.9) -> Atoms:
    """Random positions at the reference density with a hard-core minimum distance (disordered; cubic cell)."""
    rng = np.random.default_rng(seed)
    L = ref.cell.lengths()
    pos = np.empty((0, 3))
    while len(pos) < len(ref):
        p = rng.uniform(0, 1, 3) * L
        d = pos - p
        d -= L * np.round(d / L)
        if not len(pos) or np.sqrt((d * d).sum(1)).min() > dmin:
            pos = np.vstack([pos, p])
    return Atoms(ref.get_chemical_symbols(), positions=pos, cell=ref.cell, pbc=True)


def test_structure_check_flags_melted_and_collapsed_frames(tmp_path: Path) -> None:
    ref = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    rattled = ref.copy()
    rattled.rattle(0.05, seed=1)
    melted = _liquid_like(ref)
    squeezed = ref.copy()
    squeezed.set_cell(ref.cell * 0.6, scale_atoms=True)
    rows = structure_check([ref, rattled, melted, squeezed], ref)
    assert rows[0]["ok"] and rows[1]["ok"], rows[1]["reasons"]
    assert rows[0]["cn"]["Cu"] == pytest.approx(12.0) and rows[0]["q6"] == pytest.approx(0.5745, abs=1e-3)
    assert "melted" in rows[2]["flags"], rows[2]
    assert "collapsed" in rows[3]["flags"]
    write(tmp_path / "frames.extxyz", [ref, rattled, melted, squeezed])
    write(tmp_path / "ref.extxyz", ref)
    assert main(["analyze", "structure", str(tmp_path / "frames.extxyz"), "--reference", str(tmp_path / "ref.extxyz"),
                 "-o", str(tmp_path / "s")]) == 0
    res = json.loads((tmp_path / "s" / "structure.json").read_text())
    assert res["flagged_frames"] == [2, 3] and (tmp_path / "s" / "structure.png").exists()
    with pytest.raises(FiremlipError):
        structure_check([], ref)


def test_report_flags_invalid_transport_results_and_names_moduli(tmp_path: Path) -> None:
    """report.md/.html: invalid diffusion rows and an invalid Arrhenius fit are flagged (red in HTML), old files
    without `valid` are re-checked, moduli carry their names and every table header its unit."""
    from firemlip.analysis.arrhenius import analyze_arrhenius
    from firemlip.analysis.elastic import cubic_tensor, elastic_properties
    from firemlip.report import build_report

    an = tmp_path / "run" / "14_analyze"
    kB = 8.617333262e-5
    rows = []
    for T, ok in ((600.0, True), (800.0, False)):
        D = 1e-2 * np.exp(-0.3 / (kB * T))
        d = {"species": "Li", "temperature_K": T, "diffusivity_cm2_s": D, "diffusivity_err_cm2_s": 0.02 * D,
             "number_density_cm3": 2e22, "loglog_exponent": 1.0 if ok else 0.1, "diffusive": ok,
             "haven_ratio": None, "haven_source": "not computed: charge MSD too noisy",
             "conductivity": {"sigma_tracer_S_cm": 1e-2, "sigma_tracer_err_S_cm": 1e-3}}
        d["invalid_reasons"] = [] if ok else ["MSD not diffusive: log-log slope 0.10"]
        d["valid"] = ok
        (an / f"diffusion_{T:g}K").mkdir(parents=True)
        (an / f"diffusion_{T:g}K" / "diffusion.json").write_text(json.dumps(d))
        rows.append(an / f"diffusion_{T:g}K" / "diffusion.json")
    arr = analyze_arrhenius(rows, an / "arrhenius")
    assert arr["valid"] is False and arr["n_excluded"] == 1
    (an / "elastic").mkdir()
    (an / "elastic" / "elastic.json").write_text(json.dumps(elastic_properties(cubic_tensor(170.0, 122.0, 75.0))))
    md_path, html_path = build_report(tmp_path / "run")
    md, html = md_path.read_text(), html_path.read_text()
    for text in (md, html):
        for header in ("T (K)", "D* (cm²/s)", "σ tracer (S/cm)", "Ea (eV)", "σ tracer(300 K) (S/cm, band)",
                       "bulk modulus B (GPa)", "shear modulus G (GPa)", "Young's modulus E (GPa)",
                       "Poisson's ratio ν", "C_ij (GPa)", "Hill (average)", "Voigt (bound)", "Reuss (bound)"):
            assert header.replace("'", "&#x27;") in text or header in text, header
    assert "INVALID Arrhenius fit / extrapolation: only 1 diffusive temperature(s)" in md
    assert "| ⚠ 800 |" in md and "| 600 |" in md and "MSD not diffusive" in md
    assert html.count('<tr class="invalid">') == 3  # the 800 K row, the fit row, the excluded-temperature row
    assert '<p class="invalid">' in html and ".invalid,tr.invalid td{color:#c00" in html
    # an Arrhenius file from before the guards (no `valid` key) with Ea < 0 is still flagged
    old = {"n_temperatures": 4, "activation_energy_eV": -0.1, "activation_energy_err_eV": 0.01,
           "target_temperature_K": 300.0, "sigma_tracer_target_S_cm": 50.0, "temperatures_K": [500, 600, 700, 800]}
    (an / "arrhenius" / "arrhenius.json").write_text(json.dumps(old))
    md = build_report(tmp_path / "run")[0].read_text()
    assert "INVALID Arrhenius fit / extrapolation: Ea = -0.1 eV <= 0" in md and "outside the physical range" in md
    assert "| 50 (INVALID) |" in md
    # a resolved Ea whose σ(300 K) band is too wide but physical everywhere: σ shown with its band, marked
    shown = {**old, "activation_energy_eV": 0.3, "activation_energy_err_eV": 0.1, "sigma_tracer_target_S_cm": 1e-3,
             "sigma_tracer_target_band_S_cm": [1e-6, 1.0], "valid": False, "activation_energy_valid": True,
             "extrapolation_valid": False, "extrapolation_indicative": True,
             "invalid_reasons": ["the 95% band of D(300 K) spans 6.0 decades (> 3)"]}
    (an / "arrhenius" / "arrhenius.json").write_text(json.dumps(shown))
    md = build_report(tmp_path / "run")[0].read_text()
    assert "| 1.000e-03 (1.000e-06–1) (INDICATIVE: band too wide) |" in md and "| 0.3 ± 0.1 |" in md
