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


def _emt_labelled(atoms_list, tag):
    from ase.calculators.emt import EMT

    from firemlip.io import set_labels

    out = []
    for i, a in enumerate(atoms_list):
        a = a.copy()
        a.calc = EMT()
        set_labels(a, a.get_potential_energy(), a.get_forces())
        a.calc = None
        a.info["config_type"] = tag
        a.info["tag_index"] = i
        out.append(a)
    return out


def test_extra_train_frames_go_to_training_only(tmp_path):
    """``label_selected.extra_train``: every added frame lands in train.extxyz, the selection's split (and so the
    test set) is the same as without it, and a file with an element the selection lacks is refused by name."""
    import numpy as np

    from firemlip.errors import FiremlipError

    rng = np.random.default_rng(0)
    base = bulk("Cu", "fcc", a=3.6) * (2, 2, 1)
    sel, hot = [], []
    for k in range(10):
        a = base.copy()
        a.rattle(0.05, seed=k)
        sel.append(a)
    for _ in range(3):
        a = base.copy()
        a.positions += rng.normal(0, 0.2, a.positions.shape)
        hot.append(a)
    write(tmp_path / "sel.extxyz", _emt_labelled(sel, "selected"))
    write(tmp_path / "hot.extxyz", _emt_labelled(hot, "md_hot"))
    text = ("run_dir: run\nstructures: [cu.extxyz]\nlabeller: {calculator: emt}\nstages:\n"
            "  perturb: {enabled: false}\n  label: {enabled: false}\n"
            "  label_selected: {data: sel.extxyz, split: [0.6, 0.2, 0.2]%s}\n")
    write(tmp_path / "cu.extxyz", base)
    parts = {}
    for name, extra in (("plain", ""), ("extra", ", extra_train: [hot.extxyz]")):
        (tmp_path / "config.yaml").write_text(text % extra)
        run(load_config(tmp_path / "config.yaml"), run_dir=tmp_path / name, until="label_selected", log=lambda s: None)
        d = next((tmp_path / name).glob("*_label_selected"))
        parts[name] = {p: read_frames(d / f"{p}.extxyz") for p in ("train", "valid", "test")}
    tags = [a.info["config_type"] for a in parts["extra"]["train"]]
    assert tags.count("md_hot") == 3 and len(parts["extra"]["train"]) == len(parts["plain"]["train"]) + 3
    for p in ("valid", "test"):  # the selection's split is unchanged
        assert [a.info["tag_index"] for a in parts["extra"][p]] == [a.info["tag_index"] for a in parts["plain"][p]]
        assert all(a.info["config_type"] == "selected" for a in parts["extra"][p])
    m = json.loads(next((tmp_path / "extra").glob("*_label_selected/manifest.json")).read_text())
    assert "extra_train[0]" in m["inputs"]
    au = bulk("Au", "fcc", a=4.1)
    write(tmp_path / "au.extxyz", _emt_labelled([au], "md_hot"))
    (tmp_path / "config.yaml").write_text(text % ", extra_train: [au.extxyz]")
    with pytest.raises(FiremlipError, match=r"au\.extxyz: stages\.label_selected\.extra_train has element\(s\) Au"):
        run(load_config(tmp_path / "config.yaml"), run_dir=tmp_path / "au", until="label_selected", log=lambda s: None)
