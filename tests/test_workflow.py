"""Config validation and the run directory: manifests, resume, --from."""

from __future__ import annotations

import json
import os
import time

import pytest
from ase.build import bulk
from ase.io import write

from firemlip.config import load_config
from firemlip.errors import ConfigError
from firemlip.io import read_frames
from firemlip.workflow.run import run

CONFIG = """
run_dir: run
structures: [cu.extxyz]
labeller: {calculator: emt}
stages:
  perturb: {n_configs: 5, rattle: 0.04, strain: 0.01}
  label: {}
"""


@pytest.mark.parametrize("text,expected", [
    ("structures: [a]\nstages:\n  perturb: {n_configs: -3}\n",
     "stages.perturb.n_configs: expected a positive integer, got -3"),
    ("structures: [a]\nbogus: 1\n", "bogus: unknown field"),
    ("structures: [a]\nstages:\n  perturb: {nconfigs: 3}\n", "stages.perturb.nconfigs: unknown field"),
    ("structures: [a]\ndevice: tpu\n", "device: expected one of"),
    ("structures: [a\n", "not valid YAML"),
    ("interface: {substrate: a, film: b, vacancies: [middle:Li]}\n", "interface.vacancies: vacancy 'middle:Li'"),
    ("structures: [a]\nstages:\n  analyze: {region: 'z:3'}\n", "stages.analyze.region: region 'z:3'"),
])
def test_config_errors_name_the_field(tmp_path, text, expected):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert expected in str(ei.value)
    assert "\n" not in str(ei.value)


def test_run_resume_and_from(tmp_path, cli):
    write(tmp_path / "cu.extxyz", bulk("Cu", "fcc", a=3.6) * (2, 1, 1))
    (tmp_path / "config.yaml").write_text(CONFIG)
    cfg = load_config(tmp_path / "config.yaml")
    st = run(cfg, log=lambda s: None)
    assert st["perturb"] == "ran" and st["label"] == "ran"
    rd = tmp_path / "run"
    lab = rd / "02_label" / "labelled.extxyz"
    assert len(read_frames(lab)) == 5
    m = json.loads((rd / "02_label" / "manifest.json").read_text())
    assert m["status"] == "done" and "sha256" in m["inputs"]["perturbed"] and "ase" in m["versions"]
    assert m["wall_time_s"] >= 0
    mtime = os.path.getmtime(lab)
    time.sleep(0.05)
    st = run(load_config(tmp_path / "config.yaml"), log=lambda s: None)
    assert st["perturb"] == "cached" and st["label"] == "cached"
    assert os.path.getmtime(lab) == mtime
    # a changed parameter reruns that stage and the later ones
    (tmp_path / "config.yaml").write_text(CONFIG.replace("n_configs: 5", "n_configs: 6"))
    st = run(load_config(tmp_path / "config.yaml"), log=lambda s: None)
    assert st["structures"] == "cached" and st["perturb"] == "ran" and st["label"] == "ran"
    assert len(read_frames(lab)) == 6
    st = run(load_config(tmp_path / "config.yaml"), from_stage="label", log=lambda s: None)
    assert st["perturb"] == "cached" and st["label"] == "ran"
    r = cli("run", tmp_path / "config.yaml", "--from", "nosuch")
    assert r.returncode == 2 and "unknown stage" in r.stderr
    r = cli("run", tmp_path / "config.yaml")
    assert r.returncode == 0 and "skipped" in r.stdout
