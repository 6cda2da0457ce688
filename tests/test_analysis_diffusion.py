"""Diffusion, Haven ratio, conductivity and Arrhenius analyses on synthetic data with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from firemlip.analysis.arrhenius import analyze_arrhenius, arrhenius_fit
from firemlip.analysis.conductivity import analyze_conductivity, nernst_einstein
from firemlip.analysis.diffusion import (
    analyze_diffusion,
    charge_diffusion,
    haven_ratio,
    msd_fft,
    tracer_diffusion,
)
from firemlip.cli import main
from firemlip.errors import FiremlipError

D_TRUE = 2e-5  # cm²/s
DT_FS = 1.0
EVERY = 10
L_BOX = 20.0


def write_dump(path: Path, pos: np.ndarray, elements: list[str], every: int = EVERY, mode: str = "unwrapped",
               with_element: bool = True) -> None:
    """Write a LAMMPS text dump (orthogonal box L_BOX) of positions (T, N, 3) in one of several conventions."""
    types = {e: i + 1 for i, e in enumerate(dict.fromkeys(elements))}
    lines = []
    N = pos.shape[1]
    for t, x in enumerate(pos):
        lines += ["ITEM: TIMESTEP", str(t * every), "ITEM: NUMBER OF ATOMS", str(N),
                  "ITEM: BOX BOUNDS pp pp pp"] + [f"0.0 {L_BOX}"] * 3
        img = np.floor(x / L_BOX).astype(int)
        w = x - img * L_BOX
        if mode == "unwrapped":
            cols = "id type element xu yu zu" if with_element else "id type xu yu zu"
            rows = [f"{i + 1} {types[e]} {e} {a:.6f} {b:.6f} {c:.6f}" if with_element else
                    f"{i + 1} {types[e]} {a:.6f} {b:.6f} {c:.6f}" for i, (e, (a, b, c)) in enumerate(zip(elements, x, strict=False))]
        elif mode == "images":
            cols = "id type element x y z ix iy iz"
            rows = [f"{i + 1} {types[e]} {e} {a:.6f} {b:.6f} {c:.6f} {p} {q} {r}"
                    for i, (e, (a, b, c), (p, q, r)) in enumerate(zip(elements, w, img, strict=False))]
        else:
            cols = "id type element x y z"
            rows = [f"{i + 1} {types[e]} {e} {a:.6f} {b:.6f} {c:.6f}" for i, (e, (a, b, c)) in enumerate(zip(elements, w, strict=False))]
        lines.append(f"ITEM: ATOMS {cols}")
        lines += rows
    path.write_text("\n".join(lines) + "\n")


def random_walk(n_frames: int = 400, n_li: int = 96, n_host: int = 48, seed: int = 0) -> tuple[np.ndarray, list]:
    """Li random walkers with D_TRUE among heavy host atoms vibrating around fixed sites (Å)."""
    rng = np.random.default_rng(seed)
    step = np.sqrt(2 * D_TRUE / 0.1 * DT_FS * EVERY)  # Å per Cartesian component per frame
    li = rng.uniform(0, L_BOX, (1, n_li, 3)) + np.cumsum(rng.normal(0, step, (n_frames, n_li, 3)), axis=0)
    host = rng.uniform(0, L_BOX, (1, n_host, 3)) + rng.normal(0, 0.05, (n_frames, n_host, 3))
    return np.concatenate([li, host], axis=1), ["Li"] * n_li + ["Pb"] * n_host


@pytest.fixture(scope="module")
def walk_dump(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("walk")
    pos, el = random_walk()
    write_dump(d / "dump.lammpstrj", pos, el)
    return d / "dump.lammpstrj"


def test_msd_fft_matches_direct() -> None:
    x = np.random.default_rng(1).normal(size=(60, 5, 3)).cumsum(0)
    direct = np.array([((x[m:] - x[:60 - m]) ** 2).mean(0) for m in range(60)])
    assert np.allclose(msd_fft(x), direct, atol=1e-9)


def test_random_walk_dump_gives_D_back(walk_dump: Path, tmp_path: Path) -> None:
    res = analyze_diffusion(walk_dump, "Li", 600.0, DT_FS, tmp_path, n_bootstrap=100)
    D, err = res["diffusivity_cm2_s"], res["diffusivity_err_cm2_s"]
    assert 0 < err < 0.2 * D
    assert abs(D - D_TRUE) < 3 * err, (D, err)
    for k in "xyz":
        assert abs(res["diffusivity_directional_cm2_s"][k] - D_TRUE) < 4 * res["diffusivity_directional_err_cm2_s"][k]
    assert res["diffusive"] and abs(res["loglog_exponent"] - 1) < 0.15
    assert res["n_ions"] == 96 and res["frame_interval_fs"] == 10.0
    assert res["number_density_cm3"] == pytest.approx(96 / (L_BOX ** 3 * 1e-24))
    saved = json.loads((tmp_path / "diffusion.json").read_text())
    assert saved["units"]["diffusivity"] == "cm^2/s" and (tmp_path / "msd.png").stat().st_size > 1000
    cond = saved["conductivity"]
    assert cond["sigma_tracer_S_cm"] == pytest.approx(
        nernst_einstein(res["number_density_cm3"], 1, D, 600.0), rel=1e-12)


def test_image_flags_and_type_only_dumps_agree(tmp_path: Path) -> None:
    pos, el = random_walk(n_frames=120, n_li=32, n_host=16, seed=3)
    write_dump(tmp_path / "a.dump", pos, el)
    write_dump(tmp_path / "b.dump", pos, el, mode="images")
    write_dump(tmp_path / "c.dump", pos, el, with_element=False)
    ra = analyze_diffusion(tmp_path / "a.dump", "Li", 500, DT_FS, tmp_path / "a", n_bootstrap=20)
    rb = analyze_diffusion(tmp_path / "b.dump", "Li", 500, DT_FS, tmp_path / "b", n_bootstrap=20)
    rc = analyze_diffusion(tmp_path / "c.dump", "Li", 500, DT_FS, tmp_path / "c", n_bootstrap=20,
                           elements=["Li", "Pb"])
    assert rb["diffusivity_cm2_s"] == pytest.approx(ra["diffusivity_cm2_s"], rel=1e-3)
    assert rc["diffusivity_cm2_s"] == pytest.approx(ra["diffusivity_cm2_s"], rel=1e-9)


def test_two_dump_segments_are_joined(tmp_path: Path) -> None:
    pos, el = random_walk(n_frames=60, n_li=16, n_host=8, seed=5)
    write_dump(tmp_path / "whole.dump", pos, el)
    write_dump(tmp_path / "s1.dump", pos[:31], el)
    # second segment restarts at the last step of the first
    txt = (tmp_path / "whole.dump").read_text().split("ITEM: TIMESTEP\n")[1:]
    (tmp_path / "s2.dump").write_text("".join("ITEM: TIMESTEP\n" + t for t in txt[30:]))
    r1 = analyze_diffusion(tmp_path / "whole.dump", "Li", 500, DT_FS, tmp_path / "w", n_bootstrap=10)
    r2 = analyze_diffusion([tmp_path / "s1.dump", tmp_path / "s2.dump"], "Li", 500, DT_FS, tmp_path / "s",
                           n_bootstrap=10)
    assert r2["n_frames"] == 60 and r2["diffusivity_cm2_s"] == pytest.approx(r1["diffusivity_cm2_s"], rel=1e-9)


def test_correlated_pairs_give_haven_ratio_one_half() -> None:
    """Ions moving in rigid pairs: D_σ = 2 D*, so H_R = 0.5 by construction."""
    rng = np.random.default_rng(7)
    dt = 10.0
    step = np.sqrt(2 * 1e-4 * dt)  # D = 1e-4 Å²/fs
    g = rng.normal(0, step, (20000, 32, 3)).cumsum(0)
    pos = np.repeat(g, 2, axis=1)
    tr = tracer_diffusion(pos, dt, n_bootstrap=50)
    ch = charge_diffusion(pos, dt, tr["fit"].window_fs)
    assert ch["reliable"]
    h, he = haven_ratio(tr["fit"].diffusivity_cm2_s, tr["fit"].diffusivity_err_cm2_s, ch["diffusivity_cm2_s"],
                        ch["diffusivity_err_cm2_s"])
    assert h + 2 * he < 1.0
    assert abs(h - 0.5) < 3 * he and he < 0.15, (h, he)
    # independent walkers: H_R ≈ 1
    ind = rng.normal(0, step, (20000, 64, 3)).cumsum(0)
    tr1 = tracer_diffusion(ind, dt, n_bootstrap=50)
    ch1 = charge_diffusion(ind, dt, tr1["fit"].window_fs)
    h1, he1 = haven_ratio(tr1["fit"].diffusivity_cm2_s, tr1["fit"].diffusivity_err_cm2_s,
                          ch1["diffusivity_cm2_s"], ch1["diffusivity_err_cm2_s"])
    assert abs(h1 - 1.0) < 3 * he1, (h1, he1)


def test_nernst_einstein_known_value() -> None:
    # n = 1e22 cm⁻³, z = 1, D = 1e-6 cm²/s, T = 300 K: σ = n e² D / (k_B T) = 0.061975 S/cm
    assert nernst_einstein(1e22, 1, 1e-6, 300.0) == pytest.approx(0.0619750, rel=1e-5)
    assert nernst_einstein(1e22, 2, 1e-6, 300.0, haven=0.5) == pytest.approx(8 * 0.0619750, rel=1e-5)


def test_conductivity_stage_with_assumed_haven(walk_dump: Path, tmp_path: Path) -> None:
    analyze_diffusion(walk_dump, "Li", 600.0, DT_FS, tmp_path / "d", n_bootstrap=20)
    res = analyze_conductivity(tmp_path / "d" / "diffusion.json", tmp_path / "c", haven=0.4)
    if res["haven_source"].startswith("assumed"):
        assert res["sigma_charge_S_cm"] == pytest.approx(res["sigma_tracer_S_cm"] / 0.4)
    assert (tmp_path / "c" / "conductivity.json").exists() and (tmp_path / "c" / "conductivity.png").exists()


def test_arrhenius_recovers_activation_energy(tmp_path: Path) -> None:
    kB = 8.617333262e-5
    Ea, D0 = 0.25, 1e-3
    T = np.array([500.0, 600, 700, 800, 900, 1000])
    rng = np.random.default_rng(11)
    Dtrue = D0 * np.exp(-Ea / (kB * T))
    err = 0.05 * Dtrue
    D = Dtrue + rng.normal(0, 1, T.size) * err
    fit = arrhenius_fit(T, D, err, target_T_K=300)
    assert abs(fit["activation_energy_eV"] - Ea) < 2 * fit["activation_energy_err_eV"]
    assert fit["activation_energy_err_eV"] < 0.02
    lo, hi = fit["diffusivity_target_band_cm2_s"]
    assert lo < D0 * np.exp(-Ea / (kB * 300)) < hi
    files = []
    for t, d, e in zip(T, D, err, strict=False):
        p = tmp_path / f"d{int(t)}.json"
        p.write_text(json.dumps({"species": "Li", "temperature_K": t, "diffusivity_cm2_s": d,
                                 "diffusivity_err_cm2_s": e, "number_density_cm3": 2e22}))
        files.append(p)
    res = analyze_arrhenius(files, tmp_path / "arr", haven=0.5)
    assert res["activation_energy_eV"] == pytest.approx(fit["activation_energy_eV"])
    assert res["sigma_charge_target_S_cm"] == pytest.approx(2 * res["sigma_tracer_target_S_cm"])
    assert (tmp_path / "arr" / "arrhenius.png").exists()


def test_bad_inputs_give_one_line_errors(walk_dump: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(FiremlipError, match="no atoms of species 'Na'"):
        analyze_diffusion(walk_dump, "Na", 600, DT_FS, tmp_path)
    pos, el = random_walk(n_frames=10, n_li=4, n_host=2)
    write_dump(tmp_path / "short.dump", pos, el)
    with pytest.raises(FiremlipError, match="too few frames"):
        analyze_diffusion(tmp_path / "short.dump", "Li", 600, DT_FS, tmp_path)
    write_dump(tmp_path / "wrapped.dump", pos, el, mode="wrapped")
    with pytest.raises(FiremlipError, match="xu yu zu"):
        analyze_diffusion(tmp_path / "wrapped.dump", "Li", 600, DT_FS, tmp_path)
    with pytest.raises(FiremlipError, match="temperature"):
        analyze_diffusion(walk_dump, "Li", None, DT_FS, tmp_path)  # type: ignore[arg-type]
    (tmp_path / "noT.json").write_text(json.dumps({"species": "Li", "diffusivity_cm2_s": 1e-6}))
    (tmp_path / "T.json").write_text(json.dumps({"species": "Li", "diffusivity_cm2_s": 1e-6, "temperature_K": 500}))
    with pytest.raises(FiremlipError, match="no temperature_K"):
        analyze_arrhenius([tmp_path / "T.json", tmp_path / "noT.json"], tmp_path)
    with pytest.raises(FiremlipError, match="too few"):
        arrhenius_fit([500.0], [1e-6], [1e-7])
    # CLI: a missing temperature and a missing species are one line on stderr, exit status 2
    with pytest.raises(SystemExit) as ex:
        main(["analyze", "diffusion", str(walk_dump), "--species", "Li", "--timestep-fs", "1"])
    assert ex.value.code == 2
    assert main(["analyze", "diffusion", str(walk_dump), "--species", "K", "--temperature", "600",
                 "--timestep-fs", "1", "-o", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "temperature" in err[0] and "no atoms of species 'K'" in err[1]


def test_cli_diffusion_and_arrhenius(walk_dump: Path, tmp_path: Path) -> None:
    for T in (600, 700):
        assert main(["analyze", "diffusion", str(walk_dump), "--species", "Li", "--temperature", str(T),
                     "--timestep-fs", "1", "--bootstrap", "20", "-o", str(tmp_path / f"d{T}")]) == 0
    assert main(["analyze", "arrhenius", str(tmp_path / "d600" / "diffusion.json"),
                 str(tmp_path / "d700" / "diffusion.json"), "-o", str(tmp_path / "a")]) == 0
    res = json.loads((tmp_path / "a" / "arrhenius.json").read_text())
    assert abs(res["activation_energy_eV"]) < 0.05  # same D at both T → Ea ≈ 0
