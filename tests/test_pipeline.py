"""End-to-end `firemlip run` with every stage on a tiny system (EMT Cu labels, tiny MACE foundation)."""

from __future__ import annotations

import json

import pytest
from ase.build import bulk
from ase.io import write

from firemlip.config import load_config
from firemlip.io import read_frames
from firemlip.models import build_mace, save_model
from firemlip.workflow.run import run

CONFIG = """
run_dir: run
structures: [cu.extxyz]
labeller: {calculator: emt}
foundation: {model: foundation.model}
stages:
  perturb: {n_configs: 6, rattle: 0.05, strain: 0.02}
  label: {}
  prefit: {epochs: 2, batch_size: 3, options: {progress: false}}
  sample: {temperatures_K: [300, 600], steps: 40, interval: 4, engine: ase, timestep_fs: 1.0}
  select: {sizes: [12], method: soap-kmeans, soap: {r_cut: 4.0, n_max: 3, l_max: 2, n_jobs: 1}}
  label_selected: {split: [0.6, 0.2, 0.2]}
  finetune: {strategy: fire, baselines: [vanilla], epochs: 2, batch_size: 3, options: {progress: false}}
  evaluate: {}
  export: {}
  audit: {skip: [hole_hunt, md_grid]}
  md:
    diffusion: {temperatures_K: [600, 900], steps: 200, equil_steps: 20, dump_every: 5, species: Cu,
                supercell: [1, 2, 2]}
    elastic: {strain: 0.005}
  analyze: {species: Cu, haven: 1.0}
"""


@pytest.mark.slow
def test_full_run_and_resume(tmp_path):
    write(tmp_path / "cu.extxyz", bulk("Cu", "fcc", a=3.6) * (2, 1, 1))
    save_model(build_mace(["Cu"], "tiny", atomic_energies={"Cu": -0.1}, seed=1), tmp_path / "foundation.model")
    (tmp_path / "config.yaml").write_text(CONFIG)
    st = run(load_config(tmp_path / "config.yaml"), log=lambda s: None)
    ran = [k for k, v in st.items() if v == "ran"]
    assert ran == ["structures", "perturb", "label", "foundation", "prefit", "sample", "select",
                   "label_selected", "finetune", "evaluate", "export", "audit", "md", "analyze", "report"]
    rd = tmp_path / "run"
    pool = read_frames(next(rd.glob("*_sample")) / "pool.extxyz")
    assert len(pool) >= 12 and {a.info["temperature_K"] for a in pool} == {300.0, 600.0}
    comp = json.loads((next(rd.glob("*_evaluate")) / "comparison.json").read_text())
    assert set(comp) == {"foundation", "fire", "vanilla"}
    for strategy in ("foundation", "fire", "vanilla"):  # every model was scored on the held-out split
        f_rmse = comp[strategy]["test"]["overall"]["forces_rmse_meV_A"]
        assert 0 < f_rmse < 5000, (strategy, f_rmse)
    assert (next(rd.glob("*_export")) / "fire.lammps.pt").exists()
    html = (rd / "report.html").read_text()
    assert "data:image/png;base64" in html and "F RMSE" in html and "Elastic" in html and "Model audit" in html
    an = next(rd.glob("*_analyze"))
    arr = json.loads((an / "arrhenius" / "arrhenius.json").read_text())
    # two temperatures of a tiny run: the fit is refused (fewer than 3 diffusive temperatures), with the reason
    assert arr["valid"] is False and arr["invalid_reasons"]
    el = json.loads((an / "elastic" / "elastic.json").read_text())
    C = el["C_GPa"]
    assert len(C) == 6 and all(len(row) == 6 for row in C)
    # any equivariant model gives a cubic crystal a cubic tensor, trained or not: C11 = C22 = C33, C12 = C13
    assert C[0][0] != 0 and C[1][1] == pytest.approx(C[0][0], rel=0.1, abs=2.0)
    assert C[2][2] == pytest.approx(C[0][0], rel=0.1, abs=2.0) and C[0][2] == pytest.approx(C[0][1], rel=0.1, abs=2.0)
    st = run(load_config(tmp_path / "config.yaml"), log=lambda s: None)
    assert all(v == "cached" for k, v in st.items() if k != "wall_time_s")
