"""`firemlip demo --quick` on the bundled Li | Li3N example: no DFT (bundled labels hit the cache), full report,
and a transport summary that never prints an Ea or σ the analysis marked invalid."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from firemlip.demo import EXAMPLE, transport_summary


def test_bundled_example_is_li_li3n_with_its_data():
    from firemlip.config import load_config

    cfg = load_config(EXAMPLE / "config.yaml")
    assert EXAMPLE.name == "li_li3n"
    assert cfg.interface is not None and cfg.interface.vacancies == ["substrate:Li:c"]
    assert cfg.stages.analyze is not None and cfg.stages.analyze.region == "substrate"
    assert len(cfg.stages.md.diffusion.temperatures_K) >= 3
    assert max(cfg.stages.md.diffusion.temperatures_K) < 1086  # below the melting point of Li3N
    for f in ("foundation/foundation.model", "foundation/pretrain.extxyz", "selected_labelled.extxyz"):
        assert (EXAMPLE / "data" / f).exists(), f
    assert len(list((EXAMPLE / "data" / "label-cache").glob("*.extxyz"))) == 24
    # the active-learning frames (750 K run whose N framework collapsed) go to training only
    extra = cfg.stages.label_selected.extra_train
    assert extra and all((EXAMPLE / f).exists() for f in extra), extra


def _analyze_dir(tmp_path, arrhenius: dict) -> None:
    an = tmp_path / "13_analyze"
    (an / "arrhenius").mkdir(parents=True)
    (an / "manifest.json").write_text("{}")
    for T, D in ((500.0, 4e-6), (600.0, 1e-5), (650.0, 2e-5)):
        (an / f"diffusion_{T:g}K").mkdir()
        (an / f"diffusion_{T:g}K" / "diffusion.json").write_text(json.dumps(
            {"species": "Li", "temperature_K": T, "diffusivity_cm2_s": D, "diffusivity_err_cm2_s": D / 5,
             "loglog_exponent": 0.95, "valid": True, "invalid_reasons": [], "region": {"spec": "substrate"},
             "structure_check": {"checked": True, "sublattice": "framework of region substrate (N)",
                                 "melted": False}}))
    (an / "arrhenius" / "arrhenius.json").write_text(json.dumps(arrhenius))


def test_transport_summary_valid_and_not_converged(tmp_path):
    ok = {"valid": True, "activation_energy_eV": 0.21, "activation_energy_err_eV": 0.04, "n_temperatures": 3,
          "target_temperature_K": 300.0, "sigma_tracer_target_S_cm": 2e-3,
          "sigma_tracer_target_band_S_cm": [5e-4, 8e-3], "units": {"band": "95% confidence"},
          "haven_ratio": None, "haven_source": "not available (charge MSD too noisy in every run)"}
    _analyze_dir(tmp_path / "a", ok)
    text = "\n".join(transport_summary(tmp_path / "a"))
    assert "Li initially in the substrate region" in text and "500 K: D* = 4e-06" in text
    assert "Ea = 0.210 ± 0.040 eV" in text and "0.002 S/cm" in text and "band 0.0005–0.008" in text
    assert "Haven ratio: not available" in text and "framework of region substrate solid" in text
    bad = {**ok, "valid": False, "activation_energy_eV": -0.3,
           "invalid_reasons": ["only 2 diffusive temperature(s) in the fit (need at least 3)"]}
    _analyze_dir(tmp_path / "b", bad)
    text = "\n".join(transport_summary(tmp_path / "b", quick=True))
    assert "NOT CONVERGED" in text and "run the default profile" in text
    assert "Ea = -0.3" not in text and "S/cm (" not in text


@pytest.mark.slow
def test_quick_demo_runs_on_bundled_data(tmp_path, cli):
    # a smoke run of the whole example (3 ps of MD per temperature): `make demo` runs the full quick profile
    r = cli("demo", "--quick", "--md-steps", "1500", "--run-dir", tmp_path / "demo", cwd=REPO, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    rd = tmp_path / "demo"
    lab = json.loads(next(rd.glob("*_label")).joinpath("manifest.json").read_text())
    assert lab["wall_time_s"] < 30, "bundled GPAW labels were not found in the cache"
    comp = json.loads(next(rd.glob("*_evaluate")).joinpath("comparison.json").read_text())
    f = {k: v["test"]["overall"]["forces_rmse_meV_A"] if "overall" in v["test"] else v["test"]["forces_rmse_meV_A"]
         for k, v in comp.items()}
    assert set(f) == {"foundation", "fire", "vanilla", "scratch"}
    assert f["fire"] < f["foundation"]
    html = (rd / "report.html").read_text()
    for section in ("Foundation", "Accuracy on held-out DFT frames", "Selection", "Transport",
                    "Elastic constants", "Stages, timings and provenance"):
        assert section in html
    # the transport summary: Li of the Li3N slab, and either a positive Ea or a "not converged" line
    assert "transport (Li initially in the substrate region)" in r.stdout
    assert "experiment, Li3N perpendicular to c: Ea ≈ 0.29 eV" in r.stdout
    arr = json.loads(next(rd.glob("*_analyze")).joinpath("arrhenius", "arrhenius.json").read_text())
    if arr["valid"]:
        assert arr["activation_energy_eV"] > 0 and "Ea = " in r.stdout
    else:
        assert "NOT CONVERGED" in r.stdout
