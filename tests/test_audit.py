"""Model audit (firemlip.audit): a tiny MACE trained on Cu without short distances is flagged; the same training
with ``--zbl`` passes; bad input gives one-line errors (exit status 2).

The models are real mace-torch models trained for a few epochs with our fine-tuning engine on EMT-labelled, gently
rattled fcc Cu (shortest training distance ≈ 2.4 Å), so nothing tells them what happens below ~2 Å.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

FAST = {"hole_trials": 4, "relax_steps": 40}


def _cu_frames(n: int, seed: int) -> list:
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from firemlip.io import set_labels

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        eps = rng.uniform(-0.02, 0.02, size=(3, 3))
        a.set_cell(a.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        a.positions += rng.normal(0.0, 0.05, size=(len(a), 3))
        a.calc = EMT()
        set_labels(a, a.get_potential_energy(), a.get_forces())
        a.calc = None
        out.append(a)
    return out


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models on 16 atoms gain nothing from threads; on a shared 2-core machine 2 threads thrash."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """Training data, a 16-atom fcc Cu host, and two tiny models: plain and with the ZBL wall."""
    from ase.build import bulk

    from firemlip.io import write_frames
    from firemlip.models import build_mace, save_model
    from firemlip.training import finetune

    root = tmp_path_factory.mktemp("audit")
    write_frames(root / "train.extxyz", _cu_frames(10, 1))
    write_frames(root / "valid.extxyz", _cu_frames(3, 2))
    write_frames(root / "host.extxyz", [bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))])
    save_model(build_mace(["Cu"], "tiny", seed=0), root / "init.model")
    paths = {"root": root, "train": root / "train.extxyz", "host": root / "host.extxyz"}
    for tag, zbl in (("plain", False), ("zbl", True)):
        paths[tag] = finetune("vanilla", root / "init.model", root / "train.extxyz", root / "valid.extxyz",
                              root / f"ft_{tag}", epochs=8, lr=0.02, batch_size=5, e0s="average",
                              forces_weight=10.0, stress_weight=0.0, ema_decay=0.9, progress=False, name=tag,
                              zbl=zbl)
    return paths


def test_zbl_reference_and_mace_term():
    """The reference is the universal ZBL formula; add_zbl gives a model that term (universal screening)."""
    from ase.data import covalent_radii

    from firemlip.audit import add_zbl, has_zbl, zbl_energy
    from firemlip.audit.pairs import dimer_scan
    from firemlip.models import build_mace

    # hand-evaluated universal ZBL: Z1 = Z2 = 29 at 1.0 Å
    a = 0.46850 / (2 * 29 ** 0.23)
    x = 1.0 / a
    phi = (0.18175 * np.exp(-3.19980 * x) + 0.50986 * np.exp(-0.94229 * x) + 0.28022 * np.exp(-0.40290 * x)
           + 0.02817 * np.exp(-0.20162 * x))
    assert zbl_energy(1.0, 29, 29) == pytest.approx(14.399645 * 29 * 29 * phi, rel=1e-12)
    assert np.all(np.diff(zbl_energy(np.linspace(0.3, 4, 50), 3, 16)) < 0)

    plain = build_mace(["Cu"], "tiny", seed=3)
    walled = build_mace(["Cu"], "tiny", seed=3)
    assert add_zbl(walled) and has_zbl(walled) and not has_zbl(plain)
    assert add_zbl(walled) is False  # idempotent
    r = np.array([0.7, 1.2, 1.8, 2.5, 3.0])
    e0, _ = dimer_scan(plain, "Cu", "Cu", r, 6.0)
    e1, _ = dimer_scan(walled, "Cu", "Cu", r, 6.0)
    rm = 2 * covalent_radii[29]  # mace's ZBL envelope ends at the covalent-radius sum (p = 5)
    u = np.minimum(r / rm, 1.0)
    env = 1 - 21 * u ** 5 + 35 * u ** 6 - 15 * u ** 7
    np.testing.assert_allclose(e1 - e0, zbl_energy(r, 29, 29) * env, rtol=1e-3, atol=1e-6)


def test_plain_model_is_flagged(setup, capsys):
    """Pair scan and hole hunt flag the model trained without short distances; CLI exit status 1."""
    from ase.io import read

    from firemlip.cli import main

    out = setup["root"] / "audit_plain"
    rc = main(["audit", str(setup["plain"]), "--structures", str(setup["host"]), "--train", str(setup["train"]),
               "-o", str(out), "--skip", "md_grid", "--hole-trials", "4", "--relax-steps", "40", "-q"])
    text = capsys.readouterr().out
    assert rc == 1, text
    res = json.loads((out / "audit.json").read_text())
    g = res["gates"]
    assert res["passed"] is False
    assert g["coverage"]["passed"] and g["coverage"]["pairs"]["Cu-Cu"]["source"] == "train"
    assert 2.2 < g["coverage"]["pairs"]["Cu-Cu"]["r_trust_A"] < 2.6
    cu = g["pair_scan"]["pairs"]["Cu-Cu"]
    assert g["pair_scan"]["passed"] is False and cu["flags"], cu["flags"]
    assert g["pair_scan"]["thresholds"]["wall_height_eV"] == 10.0
    assert g["hole_hunt"]["passed"] is False and g["hole_hunt"]["holes"] >= 1
    assert g["hole_hunt"]["worst_min_ratio"] < 0.6
    assert g["md_grid"]["status"] == "skipped"
    holes = read(out / "holes.extxyz", ":")
    assert len(holes) == g["hole_hunt"]["holes"]
    assert all(h.info["config_type"] == "audit_hole" for h in holes)
    for png in ("pair_scans.png", "host_scans.png", "holes.png"):
        assert (out / png).stat().st_size > 1000
    assert "pair_scan  FAIL" in text and "hole_hunt  FAIL" in text and "overall: FAIL" in text
    assert json.loads((out / "manifest.json").read_text())["status"] == "done"


def test_zbl_model_passes(setup):
    """The same training with --zbl passes the pair scan, host scan, hole hunt and a short MD grid."""
    import torch

    from firemlip.audit import audit, has_zbl

    assert has_zbl(torch.load(setup["zbl"], weights_only=False))
    res = audit(setup["zbl"], setup["host"], setup["root"] / "audit_zbl", train=setup["train"], progress=False,
                md_temperatures_K=[600.0], md_seeds=1, md_steps=10, md_engine="ase", **FAST)
    g = res["gates"]
    assert g["pair_scan"]["passed"], g["pair_scan"]["pairs"]["Cu-Cu"]["flags"]
    assert g["pair_scan"]["pairs"]["Cu-Cu"]["rise_eV"] > 1.0
    assert g["host_scan"]["passed"], g["host_scan"]["failed_scans"]
    assert g["hole_hunt"]["passed"] and g["hole_hunt"]["holes"] == 0
    assert g["hole_hunt"]["worst_min_ratio"] > 0.6
    assert g["md_grid"]["passed"] and g["md_grid"]["rows"][0]["steps_run"] == 10
    assert res["passed"] and res["model"]["zbl"]
    assert not (setup["root"] / "audit_zbl" / "holes.extxyz").exists()
    assert "overall: PASS" in res["summary"]


def test_md_grid_reports_first_failure(setup):
    """Runs from a frame with two overlapping atoms are unstable, each with its first failure named."""
    from ase.io import read

    from firemlip.audit.mdgrid import md_grid
    from firemlip.audit.settings import AuditSettings

    s = AuditSettings(md_temperatures_K=(300.0,), md_seeds=2, md_steps=10, md_engine="ase",
                      min_stable_fraction=0.5)
    host = read(setup["host"])
    host.positions[1] = host.positions[0] + [0.3, 0.0, 0.0]  # an overlapping pair from the start
    rec = md_grid(setup["zbl"], host, s, setup["root"] / "grid_bad", progress=False)
    assert rec["runs"] == 2 and rec["stable_fraction"] == 0.0 and rec["passed"] is False
    assert all(r["first_failure"]["kind"] and r["first_failure"]["message"] for r in rec["rows"])


@pytest.mark.parametrize("case", ["element", "empty", "threshold", "range", "unknown"])
def test_bad_input_one_line_errors(setup, case, capsys, tmp_path):
    from ase.build import bulk

    from firemlip.cli import main
    from firemlip.io import write_frames

    host = str(setup["host"])
    extra: list[str] = []
    if case == "element":
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a[0].symbol = "Al"
        host = str(write_frames(tmp_path / "alhost.extxyz", [a]))
    elif case == "empty":
        (tmp_path / "empty.extxyz").write_text("")
        host = str(tmp_path / "empty.extxyz")
    elif case == "threshold":
        extra = ["--hole-factor", "5"]
    elif case == "range":
        extra = ["--set", "compression_range=[0.9,0.8]"]
    else:
        extra = ["--set", "no_such_threshold=1"]
    rc = main(["audit", str(setup["plain"]), "--structures", host, "-o", str(tmp_path / "o"), "-q", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("firemlip: error:"), err
    expect = {"element": "Al", "empty": "empty", "threshold": "hole_factor", "range": "compression_range",
              "unknown": "no_such_threshold"}[case]
    assert expect in err


def test_finetune_zbl_flag_and_multihead_refusal(setup):
    from firemlip.cli import build_parser
    from firemlip.errors import FiremlipError
    from firemlip.training import finetune

    args = build_parser().parse_args(["finetune", "--foundation", "x.model", "--train", "t.extxyz", "-o", "o",
                                      "--zbl"])
    assert args.zbl is True
    with pytest.raises(FiremlipError, match="zbl"):
        finetune("mace-multihead", setup["root"] / "init.model", setup["train"], out_dir=setup["root"] / "mh",
                 zbl=True)
