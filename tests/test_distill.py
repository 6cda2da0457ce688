"""Distillation: a tiny MACE student from a cheap teacher (EMT on Cu/Al), its outputs, manifest and resume; the
worker teacher and time-budget path through the CLI; structure generation pieces. Real mace-torch, no mocks."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from firemlip.cli import main
from firemlip.distill import (
    DistillSettings,
    Prototype,
    _epoch_cost,
    derived_frames,
    distill_foundation,
    distill_from_config,
    energies_above_hull,
    equilibrium_scales,
    make_prototypes,
    min_distance_ok,
    parse_elements,
    supercell,
    unbound_prototypes,
)
from firemlip.errors import FiremlipError
from firemlip.io import file_sha256, read_frames, write_frames

TINY = dict(size="tiny", max_atoms=8, scan_points=5, volume_points=3, n_alloys=1, n_rattle=1, n_strain=1,
            n_vacancy=1, n_slab=1, md_structures=1, md_temperatures=(600.0,), md_steps=10, md_interval=5,
            batch_size=8, lr=1e-2, progress=False, threads=1)  # 1 thread: tiny models on a shared 2-core box


@pytest.mark.slow
def test_distill_tiny_student_from_emt(tmp_path):
    t0 = time.time()
    out = tmp_path / "found"
    rep = distill_foundation("emt", "Cu,Al", out, epochs=8, **TINY)
    assert time.time() - t0 < 120
    for f in ("foundation.model", "pretrain.extxyz", "report.json", "parity.png", "manifest.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    # the pretraining set: labelled teacher frames of every kind, all past the minimum-distance filter
    pre = read_frames(out / "pretrain.extxyz")
    assert len(pre) == rep["n_frames"]["total"] > 50
    kinds = {a.info["config_type"] for a in pre}
    assert {"scan", "volume", "rattle", "strain", "vacancy", "slab", "md"} <= kinds
    assert {a.info["distill_split"] for a in pre} == {"train", "valid", "test"}
    assert sum(a.info["distill_split"] == "test" for a in pre) == rep["n_frames"]["test"]
    assert all("REF_energy" in a.info and a.arrays["REF_forces"].shape == (len(a), 3) for a in pre)
    assert all(min_distance_ok(a, 0.5) for a in pre)
    assert {s for a in pre for s in a.get_chemical_symbols()} == {"Cu", "Al"}
    assert any(set(a.get_chemical_symbols()) == {"Cu", "Al"} for a in pre)  # binaries/alloys, not elements only
    # manifest: done, records the pretraining/replay data and the teacher
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "done" and man["stage"] == "distill"
    assert man["pretraining_data"] == man["replay_data"] == "pretrain.extxyz"
    assert man["output_sha256"]["pretrain.extxyz"] == file_sha256(out / "pretrain.extxyz")
    assert man["foundation"]["teacher"] == "emt" and man["foundation"]["made_by"] == "distill"
    assert man["parameters"]["elements"] == ["Cu", "Al"]
    # the student: a real MACE model for Al, Cu that learned something (better than predicting zero forces)
    h = rep["heldout"]
    assert rep["student"]["elements"] == ["Al", "Cu"] and rep["student"]["channels"] == 8
    assert np.isfinite(h["energy_rmse_meV_atom"]) and np.isfinite(h["forces_rmse_meV_A"])
    # the student learned (8 epochs only): its energies fit the training frames better than the freshly initialised
    # one it started from (the 7 held-out frames are too few for an 8-epoch model: one rattled frame decides them)
    from firemlip.distill import rmse_report
    from firemlip.foundation import load_model
    from firemlip.training.data import predict

    seen = [a for a in pre if a.info["distill_split"] == "train"]
    init = rmse_report(predict(load_model(out / "work" / "student_init.model", dtype="float64"), seen), seen)
    fit = rmse_report(predict(load_model(out / "foundation.model", dtype="float64"), seen), seen)
    assert fit["energy_rmse_meV_atom"] < 0.8 * init["energy_rmse_meV_atom"]
    assert h["forces_rmse_meV_A"] < 2 * h["teacher_forces_rms_meV_A"]
    from mace.calculators import MACECalculator

    calc = MACECalculator(model_paths=str(out / "foundation.model"), device="cpu", default_dtype="float64")
    a = bulk("Cu", "fcc", a=3.6).repeat(2)
    a.calc = calc
    assert np.isfinite(a.get_potential_energy())

    # rerun: labels from the cache, the trained student reused; same outputs
    sha = file_sha256(out / "pretrain.extxyz")
    model_sha = file_sha256(out / "foundation.model")
    t1 = time.time()
    rep2 = distill_foundation("emt", "Cu,Al", out, epochs=8, **TINY)
    assert file_sha256(out / "pretrain.extxyz") == sha
    assert file_sha256(out / "foundation.model") == model_sha
    assert rep2["timings_s"]["train_s"] < 5 and time.time() - t1 < time.time() - t0
    # a different student shape on the same frames is trained afresh, not taken from the finished run
    rep3 = distill_foundation("emt", "Cu,Al", out, epochs=1, student_shape={"num_bessel": 4}, **TINY)
    assert rep3["student_shape"]["num_bessel"] == 4 and rep["student_shape"]["num_bessel"] == 6
    assert file_sha256(out / "pretrain.extxyz") == sha and file_sha256(out / "foundation.model") != model_sha
    assert rep3["training"]["summary"]["epochs_run"] == 1


@pytest.mark.slow  # a worker teacher in its own process: ~7 s
def test_distill_cli_worker_teacher_budget_and_user_structures(tmp_path, capsys):
    user = bulk("Cu", "fcc", a=3.6, cubic=True)
    write_frames(tmp_path / "mine.extxyz", [user])
    out = tmp_path / "found"
    teacher = f"worker:{sys.executable}:ase.calculators.emt:EMT"
    args = ["foundation", "distill", "--teacher", teacher, "--elements", "Cu", "--structures",
            str(tmp_path / "mine.extxyz"), "--size", "tiny", "--budget-minutes", "0.6", "--max-atoms", "4",
            "--temperatures", "500", "-o", str(out),
            "--set", "scan_points=4", "--set", "volume_points=2", "--set", "n_rattle=1", "--set", "n_strain=0",
            "--set", "n_slab=0", "--set", "n_vacancy=0", "--set", "md_structures=1", "--set", "md_steps=4",
            "--set", "md_interval=2", "--set", "n_user_copies=2", "--set", "max_epochs=3",
            "--set", "probe_epochs=1", "--threads", "1", "--shape", "r_max=4.0"]
    rc = main([*args, "-q"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "held-out energy RMSE" in captured.out
    rep = json.loads((out / "report.json").read_text())
    assert rep["teacher"] == teacher and rep["teacher_versions"]["ase"]
    assert rep["n_user_structures"] == 1
    assert rep["student_shape"]["r_max"] == rep["student"]["r_max_A"] == 4.0
    assert rep["training"]["plan"]["how"] == "budget" and 1 <= rep["training"]["plan"]["epochs"] <= 3
    assert rep["training"]["plan"]["probe_epoch_s"] > 0 and rep["training"]["plan"]["setup_s"] >= 0
    pre = read_frames(out / "pretrain.extxyz")
    assert any(a.info["config_type"] == "user" for a in pre)
    md = [a for a in pre if a.info["config_type"] == "md"]
    assert md and all(a.info["temperature_K"] == 500.0 for a in md)
    assert list((out / "work" / "label-cache").glob("teacher-*.log"))  # the worker's stderr is kept
    # an interrupted budgeted training (its manifest not done, a checkpoint left) resumes towards this call's
    # deadline, not towards the first call's epoch estimate
    tm = json.loads((out / "work" / "train" / "manifest.json").read_text())
    tm["status"] = "running"
    (out / "work" / "train" / "manifest.json").write_text(json.dumps(tm))
    assert (out / "work" / "train" / "checkpoints" / "last.pt").is_file()
    rc = main(args)  # not quiet: the resume message is checked
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "resuming the student's budgeted training until this run's deadline" in captured.err
    assert json.loads((out / "work" / "train" / "manifest.json").read_text())["status"] == "done"


def test_epoch_cost_takes_the_last_probe_epoch_and_books_setup_apart(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,epoch_time_s,epoch_wall_s\n0,30.0,40.0\n1,28.0,32.0\n")
    per_epoch, setup = _epoch_cost(log, 2, 90.0)
    assert per_epoch == pytest.approx(1.03 * 32.0)  # not (90 s / 2): the first epoch warms up, setup is apart
    assert setup == pytest.approx(90.0 - 72.0)
    assert _epoch_cost(tmp_path / "missing.csv", 2, 90.0) == (pytest.approx(1.05 * 45.0), 0.0)


def test_distill_input_errors(tmp_path, capsys):
    with pytest.raises(FiremlipError, match="'Xx' is not a chemical symbol"):
        parse_elements("Li,Xx")
    assert parse_elements("Li, P,S,Cl,Li") == ["Li", "P", "S", "Cl"]
    rc = main(["foundation", "distill", "--teacher", "emt", "--elements", "Li,Cu", "--size", "tiny",
               "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Li" in err[0] and "emt" in err[0]
    write_frames(tmp_path / "s.extxyz", [bulk("Al", "fcc", a=4.05)])
    with pytest.raises(FiremlipError, match="s.extxyz: frame 0 has element"):
        distill_foundation("emt", "Cu", tmp_path / "o2", structures=[tmp_path / "s.extxyz"], size="tiny")
    with pytest.raises(FiremlipError, match="unknown option"):
        DistillSettings.from_kwargs(no_such=1)
    with pytest.raises(FiremlipError, match="student_shape: unknown field.*num_besel.*expected some of"):
        DistillSettings.from_kwargs(student_shape={"num_besel": 16})
    with pytest.raises(FiremlipError, match="student_shape.r_max must be a positive number"):
        DistillSettings.from_kwargs(student_shape={"r_max": "far"})
    with pytest.raises(FiremlipError, match="foundation.distill.elements"):
        distill_from_config({"teacher": "emt", "elements": []}, tmp_path / "o3")


def test_structure_generation_pieces():
    s = DistillSettings(max_atoms=24, n_alloys=2)
    protos = make_prototypes(["Li", "P", "S", "Cl"], s)
    names = {p.name for p in protos}
    assert {"Li-bcc", "S-fcc", "LiS-rocksalt", "Li2S-antifluorite", "LiCl-cesiumchloride",
            "LiS2-fluorite", "PSCl3-perovskite"} <= names
    assert sum(p.kind == "ternary" for p in protos) == 12 and sum(p.kind == "alloy" for p in protos) == 2
    li2s = next(p for p in protos if p.name == "Li2S-antifluorite").atoms
    assert li2s.get_chemical_symbols().count("Li") == 2 * li2s.get_chemical_symbols().count("S")
    assert all(min_distance_ok(p.atoms, 0.5) for p in protos)  # prototypes start at tabulated radii
    squashed = bulk("Li", "bcc", a=1.2)
    assert not min_distance_ok(squashed, 0.5)
    sc = supercell(bulk("Li", "bcc", a=3.44), 16)
    assert len(sc) <= 16 and len(sc) >= 8
    # the equilibrium scan finds a parabola's minimum between grid points
    p = Prototype("x", "element", bulk("Cu", "fcc", a=3.6))
    frames = []
    for sc_ in np.linspace(0.9, 1.1, 5):
        a = p.atoms.copy()
        a.info.update(prototype="x", scale=float(sc_), REF_energy=float((sc_ - 1.03) ** 2 * 10 - 3.5))
        frames.append(a)
    (s_best, e_best), = equilibrium_scales([p], frames).values()
    assert s_best == pytest.approx(1.03, abs=1e-3) and e_best == pytest.approx(-3.5, abs=1e-4)
    rng = np.random.default_rng(0)
    der = derived_frames(p, 1.0, DistillSettings(max_atoms=8, n_rattle=2, n_strain=1), 4.5, rng)
    kinds = [a.info["config_type"] for a in der]
    assert kinds.count("volume") == 5 and kinds.count("rattle") == 2 and "vacancy" in kinds
    assert all(all(a.pbc) for a in der)


def test_energy_above_hull_marks_structures_that_only_beat_poor_elemental_references():
    """A compound below the line between its elements is on the hull; one above a stabler compound is not."""
    def proto(name, formula):
        return Prototype(name, "x", Atoms(formula, positions=np.zeros((len(Atoms(formula)), 3)), cell=np.eye(3)))

    protos = [proto("A", "Li"), proto("B", "Cl"), proto("AB-good", "LiCl"), proto("AB-bad", "LiCl"),
              proto("AB2", "LiCl2")]
    eq = {"A": (1.0, -2.0), "B": (1.0, -1.0), "AB-good": (1.0, -3.5), "AB-bad": (1.0, -2.0), "AB2": (1.0, -2.2)}
    eh = energies_above_hull(protos, eq)
    assert eh["A"] == pytest.approx(0) and eh["B"] == pytest.approx(0) and eh["AB-good"] == pytest.approx(0)
    # AB-bad has a negative formation energy against the elements (-0.5 eV/atom) but lies 1.5 above AB-good
    assert eh["AB-bad"] == pytest.approx(1.5)
    # AB2 = 1/3 A + 2/3 B: hull from AB-good (2/3) + B (1/3) = -2.667; -2.2 is 0.467 above it
    assert eh["AB2"] == pytest.approx(-2.2 - (2 / 3 * -3.5 + 1 / 3 * -1.0), abs=1e-9)


def test_dimer_references_make_bulk_forms_of_molecular_elements_implausible():
    protos = make_prototypes(["Li", "Cl"], DistillSettings(ternaries=False, n_alloys=0))
    mol = {p.name: p for p in protos if p.kind == "molecule"}
    assert set(mol) == {"Li2-molecule", "Cl2-molecule"}
    cl2 = mol["Cl2-molecule"].atoms
    assert cl2.get_distance(0, 1) == pytest.approx(2 * 1.02, abs=0.01) and cl2.cell[0, 0] > 11.5
    # teacher-like energies (eV/atom): bulk Cl sits far above the Cl2 molecule, LiCl far below both references
    eq = {"Li-bcc": (1.0, -1.9), "Li2-molecule": (1.0, -0.8), "Cl-bcc": (1.0, -0.9), "Cl2-molecule": (1.0, -1.8),
          "LiCl-rocksalt": (1.0, -3.4)}
    eh = energies_above_hull([p for p in protos if p.name in eq], eq)
    assert eh["Cl-bcc"] == pytest.approx(0.9) and eh["LiCl-rocksalt"] == pytest.approx(0.0)
    assert not DistillSettings(molecule_references=False).molecule_references
    # a cell whose energy is lowest at the largest scan factor keeps expanding: no equilibrium to rattle about
    unbound = unbound_prototypes({"a": (1.22, -1.0), "b": (1.1834, -2.0)}, DistillSettings())
    assert unbound == {"a"}
    assert not [p for p in make_prototypes(["Cl"], DistillSettings(molecule_references=False)) if p.kind == "molecule"]


KILLER = '''
import os
import signal

from ase.calculators.emt import EMT


def make(counter, kill_after, marker):
    """EMT that counts its calculations and SIGKILLs its own worker process once, after ``kill_after``."""
    calc = EMT()
    plain = calc.calculate
    done = [0]

    def calculate(atoms=None, properties=("energy",), system_changes=()):
        done[0] += 1
        with open(counter, "a") as fh:
            fh.write("x\\n")
        if done[0] > kill_after and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return plain(atoms, properties, system_changes)

    calc.calculate = calculate
    return calc
'''


def test_distill_teacher_killed_mid_run_then_resumes(tmp_path, capsys):
    fac = tmp_path / "killer.py"
    fac.write_text(KILLER)
    teacher = f"worker:{sys.executable}:{fac}:make"
    counter = tmp_path / "calls.txt"
    args = ["foundation", "distill", "--teacher", teacher, "--elements", "Cu", "--size", "tiny", "--epochs", "1",
            "--max-atoms", "4", "--threads", "1", "-q", "-o", str(tmp_path / "found"),
            "--teacher-set", f"counter={counter}", "--teacher-set", "kill_after=12",
            "--teacher-set", f"marker={tmp_path / 'killed'}",
            "--set", "scan_points=4", "--set", "volume_points=2", "--set", "n_rattle=1", "--set", "n_strain=0",
            "--set", "n_slab=0", "--set", "n_vacancy=0", "--set", "md_structures=0"]
    rc = main(args)
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"firemlip: error: teacher {teacher}: worker process") and "SIGKILL" in err[0]
    assert not (tmp_path / "found" / "foundation.model").exists()
    cached = len(list((tmp_path / "found" / "work" / "label-cache").glob("*.extxyz")))
    assert cached == 8  # the first batch of the volume scan survived the kill
    first = len(counter.read_text().splitlines())

    rc = main(args)
    assert rc == 0, capsys.readouterr().err
    labelled = len(list((tmp_path / "found" / "work" / "label-cache").glob("*.extxyz")))
    second = len(counter.read_text().splitlines()) - first
    assert second == labelled - cached  # every frame computed once: the cached ones were not recomputed
    assert len(read_frames(tmp_path / "found" / "pretrain.extxyz")) >= 10
    man = json.loads((tmp_path / "found" / "manifest.json").read_text())
    assert man["status"] == "done" and man["foundation"]["teacher"] == teacher


def test_schottky_vacancies_and_lowest_polymorphs():
    from firemlip.distill import Prototype, formula_unit, lowest_polymorphs, schottky_sites

    salt = bulk("LiCl", "rocksalt", a=5.1).repeat(2)
    assert formula_unit(salt) == {"Li": 1, "Cl": 1} and formula_unit(bulk("Li", "bcc", a=3.4)) == {"Li": 1}
    anti = bulk("SLi2", "fluorite", a=5.7).repeat(2)
    assert formula_unit(anti) == {"S": 1, "Li": 2}
    gone = schottky_sites(anti, formula_unit(anti), 0)
    assert sorted(anti.get_chemical_symbols()[i] for i in gone) == ["Li", "Li", "S"] and 0 in gone
    # the two Li removed are the S atom's nearest Li (Li-S in antifluorite: a√3/4 ≈ 2.47 Å)
    assert max(anti.get_distances(0, gone, mic=True)) < 2.5
    protos = [Prototype("LiCl-rocksalt", "binary", salt), Prototype("LiCl-cesiumchloride", "binary",
              bulk("LiCl", "cesiumchloride", a=3.2)), Prototype("Li-bcc", "element", bulk("Li", "bcc", a=3.4)),
              Prototype("Li-fcc", "element", bulk("Li", "fcc", a=4.3))]
    low = lowest_polymorphs(protos, {"LiCl-rocksalt": 0.02, "LiCl-cesiumchloride": 0.27, "Li-bcc": 0.0,
                                     "Li-fcc": 0.006})
    assert low == {"LiCl-rocksalt", "Li-bcc"}
    rng = np.random.default_rng(0)
    settings = DistillSettings(max_atoms=16, n_rattle=1, n_strain=1, n_vacancy=2, n_slab=1)
    with_d = derived_frames(protos[0], 1.0, settings, 4.5, rng)
    vac = [a for a in with_d if a.info["config_type"] == "vacancy"]
    assert len(vac) == 2 and all(a.info["removed"] == 2 and formula_unit(a) == {"Li": 1, "Cl": 1} for a in vac)
    # three slabs are the three distinct low-index facets (two used to repeat (110))
    three = derived_frames(protos[2], 1.0, DistillSettings(max_atoms=16, n_rattle=1, n_strain=1, n_slab=3), 4.5, rng)
    assert sorted(a.info["miller"] for a in three if a.info["config_type"] == "slab") == ["100", "110", "111"]
    without = derived_frames(protos[1], 1.0, settings, 4.5, rng, defects=False)
    assert not {"vacancy", "slab"} & {a.info["config_type"] for a in without}
    with pytest.raises(FiremlipError, match="vacancy_kind"):
        DistillSettings(vacancy_kind="pairs").validate()


def test_split_keeps_every_kind_in_training() -> None:
    """Held-out and validation frames are drawn so that every (config_type, prototype) kind keeps a training frame;
    a plain random draw loses a two-frame kind for some seeds."""
    from ase import Atoms

    from firemlip.distill import DistillSettings, frame_kind, split_frames

    frames = []
    for proto, n in (("A", 30), ("B", 2), ("C", 2), ("D", 3), ("E", 1)):
        for i in range(n):
            frames.append(Atoms("Li", info={"config_type": "vacancy" if n < 5 else "rattle", "prototype": proto,
                                            "i": i}))
    kinds = {frame_kind(a) for a in frames}
    lost_random = 0
    for seed in range(20):
        for mode in ("every_kind", "random"):
            settings = DistillSettings(seed=seed, split_mode=mode, holdout_fraction=0.2, valid_fraction=0.2)
            split = split_frames(frames, settings)
            assert split.count("test") == 8 and split.count("valid") == 6
            covered = {frame_kind(a) for a, s in zip(frames, split, strict=True) if s == "train"}
            if mode == "every_kind":
                assert covered == kinds, seed
            else:
                lost_random += covered != kinds
    assert lost_random > 0
    with pytest.raises(FiremlipError, match="split_mode"):
        DistillSettings(split_mode="kfold").validate()
