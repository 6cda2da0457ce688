"""Fine-tuning engine: FIRE replay vs vanilla forgetting, resume after a kill, all strategies, bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _fixtures import build_tiny_setup, emt_frames  # noqa: E402

from firemlip.cli import main  # noqa: E402
from firemlip.errors import FiremlipError  # noqa: E402
from firemlip.io import read_frames, write_frames  # noqa: E402

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

FAST = {"lr": 0.01, "batch_size": 4, "forces_weight": 10.0, "stress_weight": 0.0, "progress": False}


@pytest.fixture(scope="session")
def setup(tmp_path_factory):
    return build_tiny_setup(tmp_path_factory.getbasetemp() / "tiny_foundation")


@pytest.fixture(scope="session")
def fire_vs_vanilla(setup, tmp_path_factory):
    """Fine-tune the same foundation on the shifted task with fire and vanilla, same epochs and seed."""
    from firemlip.evaluation import evaluate
    from firemlip.training import finetune

    out = {}
    for strat in ("vanilla", "fire"):
        d = tmp_path_factory.mktemp(strat)
        mp = finetune(strat, setup.foundation, setup.task_train, setup.task_valid, d, replay=setup.pretrain,
                      replay_ratio=1.0, epochs=10, seed=0, **FAST)
        res = evaluate(mp, {"replay": setup.replay_test, "task": setup.task_test}, d / "eval",
                       foundation=setup.foundation, replay="replay")
        out[strat] = (mp, res)
    from firemlip.evaluation import evaluate as ev

    out["foundation"] = (setup.foundation, ev(setup.foundation, {"replay": setup.replay_test,
                                                                  "task": setup.task_test},
                                               tmp_path_factory.mktemp("found_eval")))
    return out


def _f(res, name):
    return res["datasets"][name]["overall"]["forces_rmse_meV_A"]


def test_fire_forgets_less_than_vanilla(fire_vs_vanilla):
    fire, van, found = (fire_vs_vanilla[k][1] for k in ("fire", "vanilla", "foundation"))
    # fire keeps the pretraining-like (replay) error clearly lower than vanilla
    assert _f(fire, "replay") < 0.7 * _f(van, "replay"), (_f(fire, "replay"), _f(van, "replay"))
    assert fire["forgetting"]["forgetting_ratio_forces"] < van["forgetting"]["forgetting_ratio_forces"]
    # both beat the untouched foundation on the (shifted) task
    assert _f(fire, "task") < 0.5 * _f(found, "task"), (_f(fire, "task"), _f(found, "task"))
    assert _f(van, "task") < 0.5 * _f(found, "task")


def test_outputs_log_manifest_and_calculator(fire_vs_vanilla, setup):
    from mace.calculators import MACECalculator

    from firemlip.foundation import load_model
    from firemlip.training.data import predict

    mp = fire_vs_vanilla["fire"][0]
    d = mp.parent
    rows = list(csv.DictReader(open(d / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(10))
    assert all(int(r["n_replay"]) == 12 for r in rows)  # replay_ratio 1 x 12 task frames
    assert (d / "loss_curve.png").stat().st_size > 1000
    man = json.loads((d / "manifest.json").read_text())
    assert man["status"] == "done" and man["replay_type"] == "user" and man["strategy"] == "fire"
    assert man["inputs"]["replay"]["sha256"]
    frames = read_frames(setup.task_test)
    calc = MACECalculator(model_paths=str(mp), device="cpu", default_dtype="float64")
    e_calc = []
    for a in frames:
        a.calc = calc
        e_calc.append(a.get_potential_energy())
    pred = predict(load_model(mp), frames)
    np.testing.assert_allclose(e_calc, pred.energy, rtol=0, atol=1e-6)


def test_replay_draw_is_fresh_each_epoch():
    from firemlip.training.replay import draw_replay, filter_pool, replay_count

    a, b = draw_replay(100, 20, seed=0, epoch=0), draw_replay(100, 20, seed=0, epoch=1)
    assert len(set(a)) == 20 and set(a) != set(b)
    np.testing.assert_array_equal(a, draw_replay(100, 20, seed=0, epoch=0))
    assert replay_count(12, 0.5) == 6 and replay_count(12, 0) == 0
    frames = emt_frames(6, seed=9)
    cu = emt_frames(2, seed=9, cu_only=True)
    pool = frames + cu
    assert len(filter_pool(pool, ["Cu"], "subset")) == sum(set(x.get_chemical_symbols()) == {"Cu"} for x in pool)
    assert len(filter_pool(pool, ["Cu"], "none")) == len(pool)
    with pytest.raises(FiremlipError):
        replay_count(5, -1.0)


def test_schedule_follows_wall_time_towards_a_deadline():
    from firemlip.training.loop import schedule_progress

    assert schedule_progress(5, 10, None, 123.0, None) == 0.5  # no deadline: by epochs
    # epochs slower than planned: half the time gone at epoch 2 of 10 → the schedule is half way, not a fifth
    assert schedule_progress(2, 10, 1000.0, 1050.0, 1100.0) == pytest.approx(0.5)
    # epochs faster than planned: the epoch count leads
    assert schedule_progress(8, 10, 1000.0, 1010.0, 1100.0) == pytest.approx(0.8)
    assert schedule_progress(3, 10, 1000.0, 2000.0, 1100.0) == 1.0
    # resumed at 60 % of its schedule: continues from there, the rest spread over the new deadline's wall time
    assert schedule_progress(30, 400, 1000.0, 1000.0, 1100.0, start_progress=0.6) == pytest.approx(0.6)
    assert schedule_progress(31, 400, 1000.0, 1050.0, 1100.0, start_progress=0.6) == pytest.approx(0.8)


def test_pseudo_label_replay_and_options(setup, tmp_path):
    """fire without a replay file builds pseudo-label replay (foundation labels); float32 + stage two work."""
    from firemlip.foundation import load_model, model_info
    from firemlip.training import finetune
    from firemlip.training.data import predict

    mp = finetune("fire", setup.foundation, setup.task_train, None, tmp_path, epochs=2, dtype="float32",
                  stage_two_start=0.5, replay_size=10, **FAST)
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["replay_type"] == "pseudo-label" and man["n_replay_pool"] == 10
    replay = read_frames(tmp_path / "replay_pseudo.extxyz")
    found = load_model(setup.foundation)
    pred = predict(found, replay)
    np.testing.assert_allclose([a.info["REF_energy"] for a in replay], pred.energy, atol=1e-5)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["stage"] for r in rows] == ["1", "2"]
    # stage two is judged by its own (energy-heavy) loss, so its first epoch replaces stage one's best
    assert rows[1]["best"] == "1" and man["summary"]["best_epoch"] == 1
    assert model_info(load_model(mp, dtype=None))["dtype"] == "float32"


def test_estimated_e0s_carry_the_task_offset_from_the_foundation(setup, tmp_path):
    """e0s=estimated moves E0 by the task labeller's offset from the foundation's own predictions (per atom)."""
    from firemlip.foundation import load_model, model_elements
    from firemlip.training import finetune
    from firemlip.training.data import predict

    found = load_model(setup.foundation)
    task = read_frames(setup.task_train)
    pred = predict(found, task, compute_stress=False)
    for a, e in zip(task, pred.energy, strict=True):  # a labeller whose zero sits 0.37 eV/atom above
        a.info["REF_energy"] = float(e) + 0.37 * len(a)
    write_frames(tmp_path / "shifted.extxyz", task)
    e0_old = dict(zip(model_elements(found), found.atomic_energies_fn.atomic_energies.detach().numpy().ravel(),
                      strict=True))
    finetune("fire", setup.foundation, tmp_path / "shifted.extxyz", None, tmp_path / "est", epochs=1,
             e0s="estimated", replay=setup.pretrain, **FAST)
    e0 = json.loads((tmp_path / "est" / "manifest.json").read_text())["summary"]["e0s"]
    assert e0["Cu"] == pytest.approx(e0_old["Cu"] + 0.37, abs=1e-6)  # the task is Cu only
    assert e0["Al"] == pytest.approx(e0_old["Al"], abs=1e-9)


@pytest.mark.slow
def test_scratch_and_mace_multihead(setup, tmp_path):
    """scratch re-initialises the foundation's architecture; mace-multihead runs mace_run_train offline."""
    import torch

    from firemlip.evaluation import evaluate
    from firemlip.foundation import load_model, model_info
    from firemlip.training import finetune

    sp = finetune("scratch", setup.foundation, setup.task_train, setup.task_valid, tmp_path / "s", epochs=3,
                  lr_schedule="cosine", stage_two_start=0.5, **FAST)
    rows = list(csv.DictReader(open(tmp_path / "s" / "log.csv")))
    # cosine from lr to lr/100 over the epochs; stage two (energy reweighting) keeps the cosine's lr
    lr = FAST["lr"]

    def cosine(n: int) -> list[float]:  # lr at the start of each of n planned epochs
        return [lr / 100 + 0.5 * (lr - lr / 100) * (1 + np.cos(np.pi * k / n)) for k in range(n)]

    np.testing.assert_allclose([float(r["lr"]) for r in rows], cosine(3), rtol=1e-9)
    assert [r["stage"] for r in rows] == ["1", "1", "2"]
    # a 2-epoch probe of a 4-epoch plan follows the plan's schedule (no stage two at its own half-way point);
    # resumed to the plan, it reaches stage two at the plan's half
    finetune("scratch", setup.foundation, setup.task_train, setup.task_valid, tmp_path / "p", epochs=2,
             schedule_epochs=4, lr_schedule="cosine", stage_two_start=0.5, **FAST)
    finetune("scratch", setup.foundation, setup.task_train, setup.task_valid, tmp_path / "p", epochs=4,
             resume=True, lr_schedule="cosine", stage_two_start=0.5, **FAST)
    rows = list(csv.DictReader(open(tmp_path / "p" / "log.csv")))
    assert [r["stage"] for r in rows] == ["1", "1", "2", "2"]
    np.testing.assert_allclose([float(r["lr"]) for r in rows], cosine(4), rtol=1e-5)  # log.csv keeps 6 digits
    # a wall-clock deadline stops training between epochs and still saves the best model
    dp = finetune("scratch", setup.foundation, setup.task_train, setup.task_valid, tmp_path / "d", epochs=5,
                  deadline_unix_s=time.time() + 0.5, **FAST)
    man = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert man["summary"]["stopped_at_deadline"] == man["summary"]["epochs_run"] < 5 and dp.exists()
    a, b = load_model(sp), load_model(setup.foundation)
    assert model_info(a)["parameters"] == model_info(b)["parameters"]
    w_a = next(p for n, p in a.named_parameters() if "weight" in n)
    w_b = next(p for n, p in b.named_parameters() if "weight" in n)
    assert not torch.allclose(w_a, w_b)

    mp = finetune("mace-multihead", setup.foundation, setup.task_train, setup.task_valid, tmp_path / "m",
                  epochs=2, batch_size=4, lr=0.01)
    man = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert man["replay_type"] == "pseudo-label" and "--pt_train_file" in man["summary"]["mace_command"]
    assert len(man["summary"]["epoch_wall_s"]) >= 1
    res = evaluate(mp, {"task": setup.task_test}, tmp_path / "m_eval")
    assert np.isfinite(res["datasets"]["task"]["overall"]["forces_rmse_meV_A"])


@pytest.mark.slow
def test_resume_after_kill(setup, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "firemlip", "finetune", "--strategy", "vanilla", "--foundation",
           str(setup.foundation), "--train", str(setup.task_train), "--valid", str(setup.task_valid), "-o",
           str(out), "--epochs", "8", "--lr", "0.01", "--batch-size", "2", "--stress-weight", "0", "-q"]
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "log.csv"
    t0 = time.time()
    try:
        while time.time() - t0 < 120:
            if log.exists() and len(log.read_text().splitlines()) >= 3 and (out / "checkpoints" / "last.pt").exists():
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = list(csv.DictReader(open(log)))
    last = int(before[-1]["epoch"])
    assert 1 <= last < 7
    assert not (out / "vanilla.model").exists()
    res = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resuming vanilla after epoch {last}" in res.stderr
    after = list(csv.DictReader(open(log)))
    assert [int(r["epoch"]) for r in after] == list(range(8))
    assert [r["train_loss"] for r in after[:last + 1]] == [r["train_loss"] for r in before]
    assert (out / "vanilla.model").exists()


def _one_line_error(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("firemlip: error:"), err
    return err


def test_bad_inputs(setup, tmp_path, capsys):
    base = ["finetune", "--foundation", str(setup.foundation), "--valid", str(setup.task_valid),
            "-o", str(tmp_path / "o"), "--epochs", "1", "-q"]
    # a model file that is not a MACE model
    bad_model = tmp_path / "bad.model"
    bad_model.write_text("not a model\n")
    err = _one_line_error(capsys, ["finetune", "--foundation", str(bad_model), "--train", str(setup.task_train),
                                   "-o", str(tmp_path / "o1"), "-q"])
    assert "not a MACE model" in err and "bad.model" in err
    # a train file without REF_forces
    frames = read_frames(setup.task_train)
    for a in frames:
        del a.arrays["REF_forces"]
    nof = write_frames(tmp_path / "noforces.extxyz", frames)
    err = _one_line_error(capsys, base + ["--train", str(nof)])
    assert "REF_forces" in err and "noforces.extxyz" in err
    # replay data with an element outside the model
    fe = read_frames(setup.pretrain)[:3]
    fe[0][0].symbol = "Fe"
    fe_path = write_frames(tmp_path / "fe_replay.extxyz", fe)
    err = _one_line_error(capsys, base + ["--train", str(setup.task_train), "--replay", str(fe_path)])
    assert "Fe" in err and "fe_replay.extxyz" in err
    # a negative ratio (argparse) and through the Python API
    with pytest.raises(SystemExit) as exc:
        main(base + ["--train", str(setup.task_train), "--replay-ratio", "-0.5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "-0.5" in err
    from firemlip.training import finetune

    with pytest.raises(FiremlipError, match="replay ratio"):
        finetune("fire", setup.foundation, setup.task_train, None, tmp_path / "o2", replay_ratio=-1.0)
