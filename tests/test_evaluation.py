"""Evaluation: error metrics against known offsets, per config_type/element, parity PNG, forgetting, CLI."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _fixtures import emt_frames  # noqa: E402

from firemlip.cli import main  # noqa: E402
from firemlip.io import read_frames, write_frames  # noqa: E402

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

DE = 0.010   # eV/atom added to the model's own energies
DF = 0.020   # eV/Å added to the x force component


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny untrained MACE, and frames labelled by it plus known offsets (so the errors are known exactly)."""
    from firemlip.foundation import load_model
    from firemlip.models import build_mace, save_model
    from firemlip.training.data import label_with_model

    d = tmp_path_factory.mktemp("eval")
    mp = save_model(build_mace(["Al", "Cu"], "tiny", atomic_energies={"Al": -0.3, "Cu": -0.2}, seed=3),
                    d / "m.model")
    other = save_model(build_mace(["Al", "Cu"], "tiny", seed=4), d / "other.model")
    frames = label_with_model(load_model(mp), emt_frames(10, seed=11))
    shifted = []
    for a in frames:
        b = a.copy()
        b.info["REF_energy"] = a.info["REF_energy"] + DE * len(a)
        f = a.arrays["REF_forces"].copy()
        f[:, 0] += DF
        b.arrays["REF_forces"] = f
        shifted.append(b)
    return {"model": mp, "other": other, "exact": write_frames(d / "exact.extxyz", frames),
            "shifted": write_frames(d / "shifted.extxyz", shifted), "dir": d}


def test_metrics_match_known_offsets(setup, tmp_path):
    from firemlip.evaluation import evaluate

    res = evaluate(setup["model"], {"shifted": setup["shifted"], "exact": setup["exact"]}, tmp_path)
    m = res["datasets"]["shifted"]["overall"]
    assert m["energy_rmse_meV_atom"] == pytest.approx(DE * 1000, rel=1e-4)
    assert m["energy_mae_meV_atom"] == pytest.approx(DE * 1000, rel=1e-4)
    assert m["forces_rmse_meV_A"] == pytest.approx(DF * 1000 / np.sqrt(3), rel=1e-4)
    assert m["forces_mae_meV_A"] == pytest.approx(DF * 1000 / 3, rel=1e-4)
    assert m["stress_rmse_GPa"] == pytest.approx(0, abs=1e-4)
    assert res["datasets"]["exact"]["overall"]["forces_rmse_meV_A"] == pytest.approx(0, abs=1e-4)
    per_type = res["datasets"]["shifted"]["per_config_type"]
    assert set(per_type) <= {"alloy", "pure_cu"} and sum(v["n_frames"] for v in per_type.values()) == 10
    per_el = res["datasets"]["shifted"]["forces_per_element"]
    assert set(per_el) == {"Al", "Cu"}
    for v in per_el.values():
        assert v["forces_rmse_meV_A"] == pytest.approx(DF * 1000 / np.sqrt(3), rel=1e-4)
    assert (tmp_path / "parity.png").stat().st_size > 5000
    assert json.loads((tmp_path / "metrics.json").read_text())["datasets"]["shifted"]["overall"]["n_frames"] == 10
    assert "config_type=" in (tmp_path / "metrics.csv").read_text()


def test_forgetting_ratio(setup, tmp_path):
    from firemlip.evaluation import evaluate

    # same model as foundation: ratio 1 on a set with non-zero error
    res = evaluate(setup["model"], {"shifted": setup["shifted"]}, tmp_path / "a", foundation=setup["model"],
                   replay="shifted")
    assert res["forgetting"]["forgetting_ratio_forces"] == pytest.approx(1.0)
    assert res["forgetting"]["forgetting_ratio_energy"] == pytest.approx(1.0)
    # a different model vs the labelling model on its own (pseudo) labels: ratio undefined, deviation reported
    res = evaluate(setup["other"], {"exact": setup["exact"]}, tmp_path / "b", foundation=setup["model"],
                   replay=str(setup["exact"]))
    f = res["forgetting"]
    assert f["forgetting_ratio_forces"] is None
    assert f["deviation_from_foundation_forces_meV_A"] == pytest.approx(
        res["datasets"]["exact"]["overall"]["forces_rmse_meV_A"], rel=1e-4)
    assert f["deviation_from_foundation_forces_meV_A"] > 1.0


def test_cli_evaluate_and_errors(setup, tmp_path, capsys):
    rc = main(["evaluate", str(setup["model"]), f"s={setup['shifted']}", str(setup["exact"]), "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "s " in out and "exact" in out and "10.00" in out
    frames = read_frames(setup["exact"])
    frames[0][0].symbol = "Li"
    bad = write_frames(tmp_path / "li.extxyz", frames)
    rc = main(["evaluate", str(setup["model"]), str(bad), "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Li" in err and "li.extxyz" in err


def test_learning_curve(setup, tmp_path, capsys):
    d = setup["dir"]
    train = write_frames(d / "lc_train.extxyz", emt_frames(8, seed=21))
    test = write_frames(d / "lc_test.extxyz", emt_frames(4, seed=22))
    rc = main(["benchmark", "learning-curve", "--foundation", str(setup["model"]), "--train", str(train),
               "--test", str(test), "--sizes", "3", "6", "--strategies", "vanilla", "--epochs", "1",
               "--set", "progress=false", "--set", "stress_weight=0", "-o", str(tmp_path)])
    assert rc == 0
    rows = json.loads((tmp_path / "learning_curve.json").read_text())["rows"]
    assert [(r["strategy"], r["size"]) for r in rows] == [("foundation", 0), ("vanilla", 3), ("vanilla", 6)]
    assert all(np.isfinite(r["forces_rmse_meV_A"]) for r in rows)
    assert (tmp_path / "learning_curve.png").stat().st_size > 5000
    assert "vanilla" in (tmp_path / "learning_curve.csv").read_text()
