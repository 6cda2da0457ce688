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


# ------------------------------------------------------------------------------------------------ issue 22
def collective_walk(n_frames: int = 4000, n_li: int = 20, n_f: int = 12, seed: int = 0, step_A: float = 0.1,
                    collective_share: float = 0.05, v_A_per_frame: float = 0.02) -> tuple[np.ndarray, list, dict]:
    """Li moving collectively inside an F framework that drifts at constant velocity (a run whose momentum was
    not removed). Each Li displacement is a shared random walk c(t) plus its own a_i(t): with per-frame steps of
    variance s_c² and s_a² per component, D_c = s_c²/2, D_a = s_a²/2 (Å²/frame), so that
    D* = D_a + D_c and D_σ = ⟨|Σ Δr|²⟩/(6 N t) = D_a + N D_c, i.e. H_R = (D_a + D_c)/(D_a + N D_c)."""
    rng = np.random.default_rng(seed)
    s_c = step_A * np.sqrt(collective_share)
    c = np.cumsum(rng.normal(0, s_c, (n_frames, 1, 3)), axis=0)
    a = np.cumsum(rng.normal(0, step_A, (n_frames, n_li, 3)), axis=0)
    drift = v_A_per_frame * np.arange(n_frames)[:, None, None] * np.array([1.0, 0.5, -0.3])
    li = rng.uniform(0, L_BOX, (1, n_li, 3)) + c + a + drift
    f = rng.uniform(0, L_BOX, (1, n_f, 3)) + rng.normal(0, 0.05, (n_frames, n_f, 3)) + drift
    D_a, D_c = step_A ** 2 / 2, s_c ** 2 / 2
    to_cm2_s = 0.1 / (DT_FS * EVERY)  # Å²/frame → cm²/s
    truth = {"D_tracer_cm2_s": (D_a + D_c) * to_cm2_s, "D_charge_cm2_s": (D_a + n_li * D_c) * to_cm2_s,
             "haven": (D_a + D_c) / (D_a + n_li * D_c)}
    return np.concatenate([li, f], axis=1), ["Li"] * n_li + ["F"] * n_f, truth


@pytest.fixture(scope="module")
def collective_dump(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("collective")
    pos, el, truth = collective_walk()
    write_dump(d / "dump.lammpstrj", pos, el)
    return d / "dump.lammpstrj", truth


def test_default_drift_recovers_known_haven_ratio(collective_dump, tmp_path: Path) -> None:
    """Default settings (framework reference, all-origin charge MSD with block errors) give the known H_R."""
    dump, truth = collective_dump
    res = analyze_diffusion(dump, "Li", 600.0, DT_FS, tmp_path / "fw", n_bootstrap=50)
    assert res["drift_correction"] == "framework" and res["drift_requested"] == "framework"
    assert res["haven_source"] == "computed from the charge MSD"
    h, he = res["haven_ratio"], res["haven_ratio_err"]
    assert truth["haven"] == pytest.approx(0.525)
    assert 0 < he < 0.25 * h, (h, he)
    assert abs(h - truth["haven"]) < 2 * he, (h, he, truth["haven"])
    assert abs(res["diffusivity_cm2_s"] - truth["D_tracer_cm2_s"]) < 0.05 * truth["D_tracer_cm2_s"]
    Dc, Dce = res["charge_diffusivity_cm2_s"], res["charge_diffusivity_err_cm2_s"]
    assert abs(Dc - truth["D_charge_cm2_s"]) < 2 * Dce and res["charge_diffusivity_rel_err"] < 0.5
    assert len(res["charge_diffusivity_blocks_cm2_s"]) == 10
    # the charge window is cut so that 10 blocks of origins each span at least twice its longest lag
    assert res["charge_fit_window_fs"][1] <= (4000 - 1) / 21 * DT_FS * EVERY
    assert res["valid"] and res["invalid_reasons"] == []
    # 5 of the 12 random F sites have no neighbour within 1.2 × the shortest distance: too sparse to check
    assert res["structure_check"]["checked"] is False and "too sparse" in res["structure_check"]["note"]
    assert res["conductivity"]["sigma_charge_S_cm"] == pytest.approx(res["conductivity"]["sigma_tracer_S_cm"] / h,
                                                                     rel=0.01)
    # drift=system also removes the share f = N m_Li / M of the Li collective displacement, so D_σ shrinks by
    # (1 − f)² (0.387 for 20 Li / 12 F) and H_R comes out far above the truth
    sysr = analyze_diffusion(dump, "Li", 600.0, DT_FS, tmp_path / "sys", n_bootstrap=50, drift="system",
                             check_structure=False)
    f = 20 * 6.94 / (20 * 6.94 + 12 * 18.998)
    assert sysr["charge_diffusivity_cm2_s"] / Dc == pytest.approx((1 - f) ** 2, rel=0.03)
    assert sysr["haven_ratio"] - truth["haven"] > 2 * sysr["haven_ratio_err"]
    # no drift removal at all: the framework's momentum makes the Li MSD ballistic, flagged invalid
    none = analyze_diffusion(dump, "Li", 600.0, DT_FS, tmp_path / "none", n_bootstrap=20, drift="none",
                             check_structure=False)
    assert not none["diffusive"] and not none["valid"]
    assert any("not diffusive" in r for r in none["invalid_reasons"])


def test_only_mobile_atoms_fall_back_to_system_drift(tmp_path: Path) -> None:
    pos, el = random_walk(n_frames=100, n_li=16, n_host=0, seed=2)
    write_dump(tmp_path / "li.dump", pos, el)
    res = analyze_diffusion(tmp_path / "li.dump", "Li", 500, DT_FS, tmp_path / "o", n_bootstrap=10)
    assert res["drift_requested"] == "framework" and res["drift_correction"] == "system"
    assert "no framework atoms" in res["drift_note"]
    assert res["structure_check"]["sublattice"] == "all atoms (no framework)"
    assert json.loads((tmp_path / "o" / "diffusion.json").read_text())["drift_correction"] == "system"


def test_noisy_charge_msd_gives_null_haven_with_needed_run_length(collective_dump, tmp_path: Path) -> None:
    dump, _ = collective_dump
    # a 5 % target cannot be met by this run: H_R is not reported, the needed length scales as (rel/target)²
    res = analyze_diffusion(dump, "Li", 600.0, DT_FS, tmp_path / "a", n_bootstrap=20, haven_max_rel_err=0.05,
                            check_structure=False)
    rel = res["charge_diffusivity_rel_err"]
    assert rel > 0.05 and res["haven_ratio"] is None and res["haven_ratio_err"] is None
    assert res["haven_source"].startswith("not computed: charge MSD too noisy")
    assert res["haven_required_duration_ps"] == pytest.approx(res["duration_ps"] * (rel / 0.05) ** 2)
    assert res["conductivity"]["sigma_charge_S_cm"] is None
    saved = json.loads((tmp_path / "a" / "diffusion.json").read_text())
    assert saved["haven_ratio"] is None and "ps" in saved["haven_source"]
    # a user value is used, labelled as assumed
    res2 = analyze_diffusion(dump, "Li", 600.0, DT_FS, tmp_path / "b", n_bootstrap=20, haven_max_rel_err=0.05,
                             haven=0.4, check_structure=False)
    assert res2["haven_ratio"] == 0.4 and res2["haven_source"] == "assumed (user value)"
    assert res2["conductivity"]["sigma_charge_S_cm"] == pytest.approx(res2["conductivity"]["sigma_tracer_S_cm"] / 0.4)
    # a window starting beyond what the blocks allow: no D_σ at all, a lower bound on the run length instead
    res3 = analyze_diffusion(dump, "Li", 600.0, DT_FS, tmp_path / "c", n_bootstrap=20, window_fs=(5000, 8000),
                             check_structure=False)
    assert res3["haven_ratio"] is None and "too short" in res3["haven_source"]
    assert res3["haven_required_duration_ps"] > res3["duration_ps"]


def vibrating(n_frames: int = 200, n_li: int = 32, n_host: int = 16, seed: int = 4) -> tuple[np.ndarray, list]:
    """Every atom vibrates around a fixed site: the MSD saturates (log–log slope ≈ 0), nothing diffuses."""
    rng = np.random.default_rng(seed)
    sites = rng.uniform(0, L_BOX, (1, n_li + n_host, 3))
    return sites + rng.normal(0, 0.3, (n_frames, n_li + n_host, 3)), ["Li"] * n_li + ["Pb"] * n_host


def test_guard_non_diffusive_msd_is_invalid_and_excluded_from_arrhenius(tmp_path: Path) -> None:
    pos, el = vibrating()
    write_dump(tmp_path / "vib.dump", pos, el)
    res = analyze_diffusion(tmp_path / "vib.dump", "Li", 800.0, DT_FS, tmp_path / "vib", n_bootstrap=20)
    assert not res["diffusive"] and res["loglog_exponent"] < 0.8
    saved = json.loads((tmp_path / "vib" / "diffusion.json").read_text())
    assert saved["valid"] is False and any("not diffusive" in r for r in saved["invalid_reasons"])
    # three good temperatures plus the vibrating one: it is left out and counted, the fit stays valid
    good = [_diffusion_row(T) for T in (500.0, 600.0, 700.0)]
    arr = analyze_arrhenius([*good, tmp_path / "vib" / "diffusion.json"], tmp_path / "arr")
    assert arr["n_temperatures"] == 3 and arr["n_excluded"] == 1 and arr["valid"], arr["invalid_reasons"]
    assert arr["excluded"][0]["temperature_K"] == 800.0 and "not diffusive" in arr["excluded"][0]["reasons"][0]
    assert arr["activation_energy_eV"] == pytest.approx(0.3, abs=1e-6)


def _diffusion_row(T: float, Ea: float = 0.3, D0: float = 1e-2, n: float = 2e22, **extra) -> dict:
    """A diffusion result on an exact Arrhenius line (2 % error bars)."""
    D = D0 * np.exp(-Ea / (8.617333262e-5 * T))
    return {"species": "Li", "temperature_K": T, "diffusivity_cm2_s": D, "diffusivity_err_cm2_s": 0.02 * D,
            "number_density_cm3": n, "diffusive": True, "loglog_exponent": 1.0, **extra}


def test_guard_fewer_than_three_temperatures(tmp_path: Path, capsys) -> None:
    rows = [_diffusion_row(T) for T in (600.0, 800.0)]
    for i, r in enumerate(rows):
        (tmp_path / f"d{i}.json").write_text(json.dumps(r))
    arr = analyze_arrhenius([tmp_path / "d0.json", tmp_path / "d1.json"], tmp_path / "a")
    assert arr["activation_energy_eV"] == pytest.approx(0.3, abs=1e-6)  # still fitted, but flagged
    assert arr["valid"] is False and any("only 2 diffusive" in r for r in arr["invalid_reasons"])
    assert json.loads((tmp_path / "a" / "arrhenius.json").read_text())["valid"] is False
    # the CLI says so on stderr too
    assert main(["analyze", "arrhenius", str(tmp_path / "d0.json"), str(tmp_path / "d1.json"), "-o",
                 str(tmp_path / "cli")]) == 0
    assert "INVALID Arrhenius fit: only 2 diffusive" in capsys.readouterr().err
    # three temperatures of which one is invalid leave two: invalid, and nothing is fitted from one
    one = analyze_arrhenius([_diffusion_row(600.0), _diffusion_row(700.0, diffusive=False, loglog_exponent=0.1)],
                            tmp_path / "b")
    assert one["valid"] is False and one["activation_energy_eV"] is None and one["n_excluded"] == 1
    assert json.loads((tmp_path / "b" / "arrhenius.json").read_text())["activation_energy_eV"] is None


def test_guard_negative_activation_energy(tmp_path: Path) -> None:
    rows = [_diffusion_row(T, Ea=-0.1) for T in (500.0, 600.0, 700.0, 800.0)]  # D decreases with T
    arr = analyze_arrhenius(rows, tmp_path)
    assert arr["activation_energy_eV"] < 0 and arr["valid"] is False
    assert any("Ea = " in r and "<= 0" in r for r in arr["invalid_reasons"])
    assert json.loads((tmp_path / "arrhenius.json").read_text())["invalid_reasons"] == arr["invalid_reasons"]


def test_guard_conductivity_outside_physical_range(tmp_path: Path) -> None:
    # Ea = 1.5 eV: σ(300 K) ~ 1e-22 S/cm, far below anything measurable
    low = analyze_arrhenius([_diffusion_row(T, Ea=1.5, D0=1.0) for T in (900.0, 1000.0, 1100.0)], tmp_path / "lo")
    assert low["sigma_tracer_target_S_cm"] < 1e-12 and low["valid"] is False
    assert any("outside the physical range" in r for r in low["invalid_reasons"])
    # a huge prefactor: σ(300 K) > 10 S/cm
    high = analyze_arrhenius([_diffusion_row(T, Ea=0.05, D0=10.0) for T in (500.0, 600.0, 700.0)], tmp_path / "hi")
    assert high["sigma_tracer_target_S_cm"] > 10 and high["valid"] is False
    assert any("tracer sigma(300 K)" in r for r in high["invalid_reasons"])
    # a sane line is valid
    ok = analyze_arrhenius([_diffusion_row(T) for T in (500.0, 600.0, 700.0)], tmp_path / "ok")
    assert ok["valid"] and ok["invalid_reasons"] == [] and 1e-12 < ok["sigma_tracer_target_S_cm"] < 10


def _hard_core_sites(n: int, dmin: float, seed: int) -> np.ndarray:
    """n random points in the L_BOX cube no closer than dmin (periodic): a liquid-like arrangement."""
    rng = np.random.default_rng(seed)
    pts = np.empty((0, 3))
    while len(pts) < n:
        p = rng.uniform(0, L_BOX, 3)
        d = pts - p
        d -= L_BOX * np.round(d / L_BOX)
        if not len(pts) or np.sqrt((d * d).sum(1)).min() > dmin:
            pts = np.vstack([pts, p])
    return pts


def test_guard_melted_framework_is_invalid_and_excluded(tmp_path: Path) -> None:
    from ase.build import bulk

    crystal = bulk("Pb", "fcc", a=5.0, cubic=True).repeat(4)  # 256 atoms, a 20 Å cube like the dumps
    rng = np.random.default_rng(9)
    n_frames, n_li = 60, 16
    step = np.sqrt(2 * D_TRUE / 0.1 * DT_FS * EVERY)
    li = rng.uniform(0, L_BOX, (1, n_li, 3)) + np.cumsum(rng.normal(0, step, (n_frames, n_li, 3)), axis=0)
    results = {}
    for name, sites in (("crystal", crystal.get_positions()), ("melt", _hard_core_sites(256, 2.7, seed=1))):
        fw = sites[None] + rng.normal(0, 0.05, (n_frames, 256, 3))
        write_dump(tmp_path / f"{name}.dump", np.concatenate([li, fw], axis=1), ["Li"] * n_li + ["Pb"] * 256)
        results[name] = analyze_diffusion(tmp_path / f"{name}.dump", "Li", 900.0, DT_FS, tmp_path / name,
                                          n_bootstrap=20, reference=crystal)
    ok, melt = results["crystal"], results["melt"]
    assert ok["structure_check"]["checked"] and not ok["structure_check"]["melted"]
    assert ok["structure_check"]["sublattice"] == "framework (Pb)"
    assert ok["valid"], ok["invalid_reasons"]
    assert melt["structure_check"]["melted"] and melt["valid"] is False
    assert any("melted or amorphised" in r for r in melt["invalid_reasons"])
    saved = json.loads((tmp_path / "melt" / "diffusion.json").read_text())
    assert saved["valid"] is False and "q6" in saved["invalid_reasons"][0]
    # in an Arrhenius fit the melted temperature is excluded with its reason
    good = [_diffusion_row(T) for T in (500.0, 600.0, 700.0)]
    arr = analyze_arrhenius([*good, tmp_path / "melt" / "diffusion.json"], tmp_path / "arr")
    assert arr["n_excluded"] == 1 and any("melted" in r for r in arr["excluded"][0]["reasons"])


def test_region_selects_the_electrolyte_slab(tmp_path: Path) -> None:
    """Li diffusing in a Pb-framework slab (z < 10 Å) beside a slab of immobile Li: the region gives D of the
    slab's Li, their density in the slab's volume, and melt checks of the slab framework and of the rest."""
    from ase import Atoms

    rng = np.random.default_rng(5)
    n_frames, n_li, n_metal = 200, 32, 32
    planes = np.array([0.5, 3.0, 5.5, 8.0])  # the slab's atomic planes, 2.5 Å apart: thickness 10 Å
    pb0 = np.array([[x, y, z] for z in planes for x in np.arange(0, 20, 4.0) for y in np.arange(0, 20, 4.0)])
    li0 = np.column_stack([rng.uniform(0, L_BOX, (n_li, 2)), rng.choice(planes, n_li)])
    m0 = np.array([[x + 1, y + 1, z] for z in (11.0, 14.0, 17.0, 19.5) for x in (0, 5, 10, 15) for y in (0, 10)])
    step = np.sqrt(2 * D_TRUE / 0.1 * DT_FS * EVERY)
    li = li0[None] + np.cumsum(rng.normal(0, step, (n_frames, n_li, 3)), axis=0)
    metal = m0[None] + rng.normal(0, 0.05, (n_frames, n_metal, 3))
    pb = pb0[None] + rng.normal(0, 0.05, (n_frames, len(pb0), 3))
    el = ["Li"] * (n_li + n_metal) + ["Pb"] * len(pb0)
    write_dump(tmp_path / "d.dump", np.concatenate([li, metal, pb], axis=1), el)
    ref = Atoms(el, positions=np.concatenate([li0, m0, pb0]), cell=[L_BOX] * 3, pbc=True)
    ref.arrays["interface_label"] = np.array(["substrate"] * n_li + ["film"] * n_metal + ["substrate"] * len(pb0))
    every = analyze_diffusion(tmp_path / "d.dump", "Li", 400.0, DT_FS, tmp_path / "all", n_bootstrap=20,
                              reference=ref)
    res = {spec: analyze_diffusion(tmp_path / "d.dump", "Li", 400.0, DT_FS, tmp_path / spec.replace(":", "_"),
                                   n_bootstrap=20, reference=ref, region=spec)
           for spec in ("substrate", "z:0:10", "zf:0:0.5")}
    for spec, r in res.items():
        assert r["n_ions"] == n_li, spec
        assert abs(r["diffusivity_cm2_s"] / D_TRUE - 1) < 0.25, (spec, r["diffusivity_cm2_s"])
        assert abs(r["region"]["thickness_A"] - 10.0) < 1e-6, spec
        assert np.isclose(r["number_density_cm3"], n_li / (L_BOX * L_BOX * 10.0 * 1e-24)), spec
        assert r["structure_check"]["sublattice"].startswith(f"framework of region {spec} (Pb)")
        assert r["structure_check_outside"]["sublattice"].startswith(f"all atoms of outside {spec} (Li)")
        assert not r["structure_check"]["melted"] and not r["structure_check_outside"]["melted"]
        assert r["valid"], r["invalid_reasons"]
    assert every["diffusivity_cm2_s"] < 0.7 * res["substrate"]["diffusivity_cm2_s"]  # diluted by the metal
    assert json.loads((tmp_path / "substrate" / "diffusion.json").read_text())["region"]["spec"] == "substrate"
    assert res["substrate"]["outside"]["n_ions"] == n_metal and res["substrate"]["outside"]["diffusivity_cm2_s"] < 1e-6
    with pytest.raises(FiremlipError, match="region 'bulk'"):
        analyze_diffusion(tmp_path / "d.dump", "Li", 400.0, DT_FS, tmp_path / "x", reference=ref, region="bulk")
    with pytest.raises(FiremlipError, match="slab regions need the starting interface"):
        analyze_diffusion(tmp_path / "d.dump", "Li", 400.0, DT_FS, tmp_path / "x", region="film")
    with pytest.raises(FiremlipError, match="no atom lies in it"):
        analyze_diffusion(tmp_path / "d.dump", "Li", 400.0, DT_FS, tmp_path / "x", reference=ref,
                          region="z:9.0:10.0")


def test_a_liquid_metal_beside_the_region_is_reported_melted(tmp_path: Path) -> None:
    """Every atom of the Li metal outside the region diffuses (a liquid): its melt check says melted by diffusion
    (per-atom bond order cannot tell in a thin slab), which is information only; the region stays valid. Analysed
    as the region itself (no framework), the same liquid makes the result invalid."""
    from ase import Atoms

    rng = np.random.default_rng(7)
    n_frames, n_li, n_metal = 200, 32, 32
    planes = np.array([0.5, 3.0, 5.5, 8.0])
    pb0 = np.array([[x, y, z] for z in planes for x in np.arange(0, 20, 4.0) for y in np.arange(0, 20, 4.0)])
    li0 = np.column_stack([rng.uniform(0, L_BOX, (n_li, 2)), rng.choice(planes, n_li)])
    m0 = np.array([[x + 1, y + 1, z] for z in (11.0, 14.0, 17.0, 19.5) for x in (0, 5, 10, 15) for y in (0, 10)])
    step = np.sqrt(2 * D_TRUE / 0.1 * DT_FS * EVERY)
    li = li0[None] + np.cumsum(rng.normal(0, step, (n_frames, n_li, 3)), axis=0)
    metal = m0[None] + np.cumsum(rng.normal(0, 2 * step, (n_frames, n_metal, 3)), axis=0)  # liquid: 4 × D
    pb = pb0[None] + rng.normal(0, 0.05, (n_frames, len(pb0), 3))
    el = ["Li"] * (n_li + n_metal) + ["Pb"] * len(pb0)
    write_dump(tmp_path / "d.dump", np.concatenate([li, metal, pb], axis=1), el)
    ref = Atoms(el, positions=np.concatenate([li0, m0, pb0]), cell=[L_BOX] * 3, pbc=True)
    ref.arrays["interface_label"] = np.array(["substrate"] * n_li + ["film"] * n_metal + ["substrate"] * len(pb0))
    sub = analyze_diffusion(tmp_path / "d.dump", "Li", 400.0, DT_FS, tmp_path / "s", n_bootstrap=20,
                            reference=ref, region="substrate")
    out = sub["structure_check_outside"]
    assert out["melted"] and "liquid-like" in out["melted_by"] and "melted" in sub["outside_note"]
    assert sub["outside"]["diffusivity_cm2_s"] > 1e-6 and sub["valid"], sub["invalid_reasons"]
    film = analyze_diffusion(tmp_path / "d.dump", "Li", 400.0, DT_FS, tmp_path / "f", n_bootstrap=20,
                             reference=ref, region="film")
    assert film["structure_check"]["melted"] and not film["valid"]
    assert any("liquid-like" in r for r in film["invalid_reasons"])


def test_guard_unresolved_activation_energy(tmp_path: Path) -> None:
    """Three noisy D over 600-700 K (as the Li | Li3N default demo measured: 1.34, 1.94, 1.63e-5 cm²/s, 10-15 %
    errors) give Ea = 0.06 ± 0.09 eV and a σ(300 K) band of twenty decades: flagged, never reported as a result."""
    rows = [{**_diffusion_row(T), "diffusivity_cm2_s": D, "diffusivity_err_cm2_s": e}
            for T, D, e in ((600.0, 1.34e-5, 1.8e-6), (650.0, 1.94e-5, 2.8e-6), (700.0, 1.63e-5, 1.6e-6))]
    arr = analyze_arrhenius(rows, tmp_path / "noisy")
    assert 0 < arr["activation_energy_eV"] < arr["activation_energy_err_eV"] and arr["valid"] is False
    assert arr["activation_energy_valid"] is False and arr["extrapolation_valid"] is False
    assert any("not resolved" in r for r in arr["invalid_reasons"])
    assert any("decades" in r for r in arr["invalid_reasons"])
    # the same temperatures on an exact 0.3 eV line with 2 % errors are resolved and valid
    ok = analyze_arrhenius([_diffusion_row(T) for T in (600.0, 650.0, 700.0)], tmp_path / "ok")
    assert ok["valid"], ok["invalid_reasons"]


def test_resolved_activation_energy_with_an_uninformative_extrapolation(tmp_path: Path) -> None:
    """Ea = 0.34 ± 0.18 eV over 600-700 K (the quick Li | Li3N demo's numbers) is resolved and can be quoted,
    while the extrapolation to 300 K (a band of several decades) is flagged: activation_energy_valid is true,
    extrapolation_valid and valid are false, and the reasons name the band only."""
    rows = [{**_diffusion_row(T), "diffusivity_cm2_s": D, "diffusivity_err_cm2_s": e}
            for T, D, e in ((600.0, 7.24e-6, 5.1e-6), (650.0, 1.70e-5, 3.4e-6), (700.0, 2.43e-5, 4.3e-6))]
    arr = analyze_arrhenius(rows, tmp_path / "a")
    assert arr["activation_energy_err_eV"] < arr["activation_energy_eV"]
    assert arr["activation_energy_valid"] is True
    assert arr["extrapolation_valid"] is False and arr["valid"] is False
    assert arr["invalid_reasons"] and all("decades" in r for r in arr["invalid_reasons"])
    from firemlip.demo import transport_summary

    an = tmp_path / "run" / "13_analyze"
    (an / "arrhenius").mkdir(parents=True)
    (an / "manifest.json").write_text("{}")
    (an / "arrhenius" / "arrhenius.json").write_text(json.dumps(arr))
    text = "\n".join(transport_summary(tmp_path / "run"))
    assert f"Ea = {arr['activation_energy_eV']:.3f} ± {arr['activation_energy_err_eV']:.3f} eV" in text
    # its band (about 1e-6 to 3 S/cm) is physical everywhere: σ is shown as an order of magnitude, flagged
    assert arr["extrapolation_indicative"] is True
    assert f"= {arr['sigma_tracer_target_S_cm']:.2g} S/cm" in text and "INDICATIVE ONLY" in text
    assert "decades" in text.split("INDICATIVE ONLY")[1]


def test_extrapolation_beyond_the_physical_range_is_not_shown(tmp_path: Path) -> None:
    """The quick Li | Li3N demo measured Ea = 0.29 ± 0.25 eV over 600, 650 and 750 K (one degree of freedom): Ea
    can be quoted, but the band of σ(300 K) spans tens of decades, past any physical conductivity, so the summary
    prints no σ at all, only NOT CONVERGED."""
    rows = [{**_diffusion_row(T), "diffusivity_cm2_s": D, "diffusivity_err_cm2_s": e}
            for T, D, e in ((600.0, 4.08e-6, 1.9e-6), (650.0, 1.70e-5, 3.2e-6), (750.0, 2.31e-5, 6.2e-6))]
    arr = analyze_arrhenius(rows, tmp_path / "a")
    assert arr["activation_energy_valid"] is True and arr["extrapolation_valid"] is False
    assert arr["extrapolation_indicative"] is False
    from firemlip.demo import transport_summary

    an = tmp_path / "run" / "13_analyze"
    (an / "arrhenius").mkdir(parents=True)
    (an / "manifest.json").write_text("{}")
    (an / "arrhenius" / "arrhenius.json").write_text(json.dumps(arr))
    text = "\n".join(transport_summary(tmp_path / "run"))
    assert "σ(300 K): NOT CONVERGED" in text and "S/cm (" not in text and "INDICATIVE" not in text


def test_error_bar_covers_a_run_whose_halves_differ() -> None:
    """Walkers that diffuse with D in the first half of the run and 4 D in the second (a burst of hops, as a few
    collective events make in a small cell): the bootstrap over atoms alone is far smaller than the difference; the
    reported error is half the difference of the two half-run values and covers the gap to both of them."""
    rng = np.random.default_rng(3)
    n_frames, n_li = 400, 96
    step = np.sqrt(2 * D_TRUE / 0.1 * DT_FS * EVERY)
    steps = rng.normal(0, step, (n_frames, n_li, 3))
    steps[n_frames // 2:] *= 2.0  # 4 x D in the second half
    pos = np.cumsum(steps, axis=0)
    tr = tracer_diffusion(pos, DT_FS * EVERY, n_bootstrap=50)
    d1, d2 = tr["halves_cm2_s"]
    assert 2.5 < d2 / d1 < 6.0, (d1, d2)
    assert tr["err_atoms_cm2_s"] < 0.5 * tr["err_halves_cm2_s"]
    f = tr["fit"]
    assert f.diffusivity_err_cm2_s == pytest.approx(abs(d2 - d1) / 2)
    assert f.diffusivity_cm2_s - f.diffusivity_err_cm2_s < max(d1, d2)
    # a stationary walk keeps the bootstrap's error bar where the halves agree within it
    st = tracer_diffusion(np.cumsum(rng.normal(0, step, (n_frames, n_li, 3)), axis=0), DT_FS * EVERY, n_bootstrap=50)
    assert st["fit"].diffusivity_err_cm2_s == pytest.approx(max(st["err_atoms_cm2_s"], st["err_halves_cm2_s"]))
