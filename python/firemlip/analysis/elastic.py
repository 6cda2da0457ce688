"""Elastic constants C_ij (GPa) from finite strains, stability and polycrystalline moduli.

Sources of stress–strain data:

* ``templates/elastic.in.j2`` runs (LAMMPS, 0 K minimised or finite-T NVT averages) write ``elastic_stress.dat``:
  the pressure tensor (bar, P = −σ) of the reference and of ± strains along the six Voigt directions
  (xx yy zz yz xz xy; shears are engineering strains). C_ij = ∂σ_i/∂ε_j by central differences.
* :func:`elastic_tensor_ase` does the same with any ASE calculator (no LAMMPS needed); :func:`calculator_from_spec`
  builds one from any labeller spec of ``firemlip label`` (``emt``, ``lj``, ``mace:PATH``,
  ``python:module:function``, …) or a MACE ``.model`` path.

Derived quantities (our own formulas, tested against pymatgen and closed forms): Voigt and Reuss bounds
(Voigt 1928; Reuss 1929) of bulk B and shear G from C and S = C⁻¹, Hill averages, E = 9BG/(3B+G),
ν = (3B−2G)/(2(3B+G)), the universal anisotropy index A_U = 5 G_V/G_R + B_V/B_R − 6 (Ranganathan &
Ostoja-Starzewski, PRL 101, 055504 (2008)), Zener's A = 2C44/(C11−C12) for cubic crystals, and the general
Born criterion: C (symmetrised) positive definite (Mouhat & Coudert, PRB 90, 224104 (2014)).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from firemlip.analysis._common import BAR_TO_GPA, EV_A3_TO_GPA, mpl, save_figure, write_result
from firemlip.errors import FiremlipError

STRESS_FILE = "elastic_stress.dat"
VOIGT = ("xx", "yy", "zz", "yz", "xz", "xy")


# ---------------------------------------------------------------------------------------------- reading / C_ij
def read_stress_file(path: str | os.PathLike[str]) -> tuple[dict[str, float], np.ndarray]:
    """Parse ``elastic_stress.dat``: header values (``temperature_K``, ``strain``, ``volume_A3`` …) and the rows
    (direction, sign, strain, pxx, pyy, pzz, pyz, pxz, pxy) with pressures in bar."""
    p = Path(path)
    if not p.is_file():
        raise FiremlipError(f"{p}: no {STRESS_FILE} (run templates/elastic.in.j2 in that directory first)")
    meta: dict[str, float] = {}
    rows = []
    for ln, line in enumerate(p.read_text().splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            parts = s[1:].split()
            if len(parts) == 2:
                try:
                    meta[parts[0]] = float(parts[1])
                except ValueError:
                    pass
            continue
        parts = s.split()
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            raise FiremlipError(f"{p}:{ln}: expected 9 numbers (direction sign strain pxx pyy pzz pyz pxz pxy)") \
                from None
        if len(vals) != 9:
            raise FiremlipError(f"{p}:{ln}: expected 9 columns (direction sign strain pxx pyy pzz pyz pxz pxy), "
                                f"got {len(vals)}")
        rows.append(vals)
    if not rows:
        raise FiremlipError(f"{p}: no stress rows (did the LAMMPS run finish?)")
    return meta, np.asarray(rows)


def elastic_tensor_from_rows(rows: np.ndarray, source: str = "stress data") -> np.ndarray:
    """C (6×6, GPa) from rows of (direction, sign, strain, pxx … pxy in bar): C[:, j] = −ΔP/Δε_j.

    Central differences when both signs are present, else one-sided against the reference (direction 0).
    """
    C = np.zeros((6, 6))
    ref = rows[rows[:, 0] == 0]
    for j in range(6):
        r = rows[rows[:, 0] == j + 1]
        plus, minus = r[r[:, 2] > 0], r[r[:, 2] < 0]
        if len(plus) and len(minus):
            a, b = plus[-1], minus[-1]
        elif len(plus) and len(ref):
            a, b = plus[-1], ref[-1]
        elif len(minus) and len(ref):
            a, b = ref[-1], minus[-1]
        else:
            raise FiremlipError(f"{source}: no strained states for Voigt direction {j + 1} ({VOIGT[j]})")
        de = a[2] - b[2]
        if de == 0:
            raise FiremlipError(f"{source}: zero strain difference for direction {j + 1}")
        C[:, j] = -(a[3:9] - b[3:9]) / de * BAR_TO_GPA
    return C


# ---------------------------------------------------------------------------------------------- properties
def vrh_moduli(C: np.ndarray) -> dict[str, float]:
    """Voigt, Reuss and Hill bulk (B) and shear (G) moduli, Young's E and Poisson's ν for each (GPa)."""
    C = np.asarray(C, float)
    S = np.linalg.inv(C)
    d, o, s = np.trace(C[:3, :3]), C[0, 1] + C[1, 2] + C[0, 2], C[3, 3] + C[4, 4] + C[5, 5]
    Sd, So, Ss = np.trace(S[:3, :3]), S[0, 1] + S[1, 2] + S[0, 2], S[3, 3] + S[4, 4] + S[5, 5]
    out = {"B_voigt_GPa": (d + 2 * o) / 9.0, "G_voigt_GPa": (d - o + 3 * s) / 15.0,
           "B_reuss_GPa": 1.0 / (Sd + 2 * So), "G_reuss_GPa": 15.0 / (4 * Sd - 4 * So + 3 * Ss)}
    out["B_hill_GPa"] = 0.5 * (out["B_voigt_GPa"] + out["B_reuss_GPa"])
    out["G_hill_GPa"] = 0.5 * (out["G_voigt_GPa"] + out["G_reuss_GPa"])
    for k in ("voigt", "reuss", "hill"):
        B, G = out[f"B_{k}_GPa"], out[f"G_{k}_GPa"]
        out[f"E_{k}_GPa"] = 9 * B * G / (3 * B + G)
        out[f"poisson_{k}"] = (3 * B - 2 * G) / (2 * (3 * B + G))
    return {k: float(v) for k, v in out.items()}


def youngs_poisson(B: float, G: float) -> tuple[float, float]:
    """E = 9BG/(3B+G) (GPa) and ν = (3B−2G)/(2(3B+G)) from bulk and shear moduli (GPa)."""
    return 9 * B * G / (3 * B + G), (3 * B - 2 * G) / (2 * (3 * B + G))


def isotropic_tensor(E_GPa: float, poisson: float) -> np.ndarray:
    """The 6×6 stiffness (GPa) of an isotropic solid with Young's modulus E and Poisson's ratio ν."""
    lam = E_GPa * poisson / ((1 + poisson) * (1 - 2 * poisson))
    mu = E_GPa / (2 * (1 + poisson))
    C = np.zeros((6, 6))
    C[:3, :3] = lam
    C[np.arange(3), np.arange(3)] = lam + 2 * mu
    C[np.arange(3, 6), np.arange(3, 6)] = mu
    return C


def cubic_tensor(c11: float, c12: float, c44: float) -> np.ndarray:
    """The 6×6 stiffness (GPa) of a cubic crystal."""
    C = np.zeros((6, 6))
    C[:3, :3] = c12
    C[np.arange(3), np.arange(3)] = c11
    C[np.arange(3, 6), np.arange(3, 6)] = c44
    return C


def elastic_properties(C: np.ndarray, symmetry_tolerance: float = 0.05) -> dict[str, Any]:
    """Everything derived from a 6×6 C (GPa): symmetry check, Born stability, VRH moduli, E, ν, anisotropy.

    The raw C is reported; derived quantities use the symmetrised (C + Cᵀ)/2. ``symmetric`` is False when
    max|C − Cᵀ| exceeds ``symmetry_tolerance`` × max|C|.
    """
    C = np.asarray(C, float)
    if C.shape != (6, 6) or not np.all(np.isfinite(C)):
        raise FiremlipError("elastic: C must be a finite 6×6 matrix")
    asym = float(np.abs(C - C.T).max() / max(np.abs(C).max(), 1e-30))
    Cs = 0.5 * (C + C.T)
    eig = np.linalg.eigvalsh(Cs)
    stable = bool(eig.min() > 0)
    res: dict[str, Any] = {
        "C_GPa": C.tolist(), "C_symmetrised_GPa": Cs.tolist(),
        "symmetry_deviation": asym, "symmetric": asym <= symmetry_tolerance,
        "eigenvalues_GPa": eig.tolist(), "born_stable": stable,
        "C11_GPa": float(Cs[0, 0]), "C12_GPa": float(Cs[0, 1]), "C44_GPa": float(Cs[3, 3]),
    }
    if not stable:
        res["note_stability"] = (f"not Born-stable: smallest eigenvalue of C is {eig.min():.3g} GPa "
                                 "(mechanically unstable structure or a failed run)")
        try:
            res.update(vrh_moduli(Cs))
        except np.linalg.LinAlgError:
            pass
        return res
    m = vrh_moduli(Cs)
    res.update(m)
    au = 5 * m["G_voigt_GPa"] / m["G_reuss_GPa"] + m["B_voigt_GPa"] / m["B_reuss_GPa"] - 6
    res["universal_anisotropy"] = float(max(au, 0.0))
    d = np.diag(Cs)
    cubic = (np.ptp(d[:3]) <= 0.02 * d[:3].mean() and np.ptp(d[3:]) <= 0.02 * max(d[3:].mean(), 1e-9)
             and np.ptp([Cs[0, 1], Cs[0, 2], Cs[1, 2]]) <= 0.02 * max(abs(Cs[0, 1]), 1e-9)
             and np.abs(Cs[:3, 3:]).max() <= 0.02 * d.max() and abs(Cs[3, 4]) + abs(Cs[3, 5]) + abs(Cs[4, 5])
             <= 0.02 * d.max())
    res["cubic"] = bool(cubic)
    if cubic and abs(Cs[0, 0] - Cs[0, 1]) > 1e-12:
        res["zener_anisotropy"] = float(2 * Cs[3, 3] / (Cs[0, 0] - Cs[0, 1]))
    if res["universal_anisotropy"] > 0.1:
        res["note_anisotropy"] = (f"anisotropic crystal (A_U = {res['universal_anisotropy']:.2f}"
                                  + (f", Zener A = {res['zener_anisotropy']:.2f}" if "zener_anisotropy" in res else "")
                                  + "): polycrystalline B, G, E, ν are Voigt–Reuss–Hill estimates; the Voigt and "
                                    "Reuss bounds differ")
    else:
        res["note_anisotropy"] = f"nearly isotropic (A_U = {res['universal_anisotropy']:.3f})"
    return res


# ---------------------------------------------------------------------------------------------- ASE path
def elastic_tensor_ase(atoms: Any, calc: Any, strain: float = 1e-3, relax_ions: bool = True,
                       fmax: float = 1e-4, max_steps: int = 500) -> np.ndarray:
    """C (6×6, GPa) by central finite differences of the stress of any ASE calculator (0 K, relaxed ions).

    Each Voigt strain ±``strain`` (engineering shears, applied as symmetric strains) deforms the cell of
    ``atoms`` (not modified); with ``relax_ions`` the atoms are relaxed at fixed cell (BFGS to ``fmax`` eV/Å).
    ASE stresses are in eV/Å³ with tension positive: C_ij = Δσ_i/Δε_j. The cell should already be relaxed.
    """
    from ase.optimize import BFGS

    C = np.zeros((6, 6))
    cell0 = np.array(atoms.get_cell())
    for j in range(6):
        sig = []
        for sgn in (1, -1):
            e = np.zeros(6)
            e[j] = sgn * strain
            eps = np.array([[e[0], e[5] / 2, e[4] / 2], [e[5] / 2, e[1], e[3] / 2], [e[4] / 2, e[3] / 2, e[2]]])
            a = atoms.copy()
            a.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
            a.calc = calc
            if relax_ions and len(a) > 1:
                BFGS(a, logfile=None).run(fmax=fmax, steps=max_steps)
            sig.append(a.get_stress(voigt=True))
        C[:, j] = (sig[0] - sig[1]) / (2 * strain) * EV_A3_TO_GPA
    return C


# ---------------------------------------------------------------------------------------------- stage
def analyze_elastic(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    symmetry_tolerance: float = 0.05) -> dict[str, Any]:
    """Elastic stage: read ``RUN_DIR/elastic_stress.dat`` (from ``templates/elastic.in.j2``), write
    ``elastic.json`` (C_ij and moduli in GPa) and ``elastic.png`` in ``out_dir``; return the JSON content."""
    rd = Path(run_dir)
    path = rd / STRESS_FILE if rd.is_dir() else rd
    meta, rows = read_stress_file(path)
    C = elastic_tensor_from_rows(rows, str(path))
    res = {"analysis": "elastic", "source": str(path), "method": "LAMMPS finite strains (elastic.in.j2)",
           "temperature_K": meta.get("temperature_K"), "strain": meta.get("strain"),
           "volume_A3": meta.get("volume_A3"), "natoms": meta.get("natoms"),
           **elastic_properties(C, symmetry_tolerance)}
    if meta.get("temperature_K", 0) > 0:
        res["note_uncertainty"] = ("finite-T constants from time-averaged stresses; the deviation from symmetry "
                                   f"({res['symmetry_deviation']:.1%}) indicates their statistical error")
    return _finish(res, out_dir)


def calculator_from_spec(spec: str, settings: dict[str, Any] | None = None, atoms: Any = None,
                         device: str = "cpu") -> tuple[Any, str]:
    """An ASE calculator from a labeller spec, as ``firemlip label --calculator`` takes it, and the spec used.

    ``spec``: ``emt``, ``lj``, ``gpaw``, ``vasp``, ``espresso``, ``mace:PATH``, ``python:module:function``, a
    teacher name, or a path to a MACE ``.model`` file (read as ``mace:PATH``, on ``device`` in float64).
    ``settings`` are the calculator's keyword settings (``--set``). The elements of ``atoms`` are checked
    against what the calculator supports before it is built (one-line error).
    Built by :func:`firemlip.labelling.make_calculator`.
    """
    from firemlip.errors import require_file
    from firemlip.labelling import BUILTIN, make_calculator, validate_calculator

    s = dict(settings or {})
    name = str(spec)
    if name not in BUILTIN and ":" not in name and (name.endswith(".model") or Path(name).is_file()):
        name = f"mace:{name}"
    if name.startswith("mace:"):
        require_file(name[5:], "MACE model")
        s.setdefault("device", device)
        s.setdefault("dtype", "float64")
    validate_calculator(name, s, [atoms] if atoms is not None else [], "structure")
    return make_calculator(name, s, atoms), name


def analyze_elastic_ase(atoms: Any, calc: Any, out_dir: str | os.PathLike[str], strain: float = 1e-3,
                        relax_ions: bool = True, fmax: float = 1e-4, calculator: str | None = None) -> dict[str, Any]:
    """ASE-only elastic stage (machines without the LAMMPS plugin): :func:`elastic_tensor_ase` + moduli.

    ``calc``: any ASE calculator (see :func:`calculator_from_spec`); ``calculator``: its spec, recorded."""
    C = elastic_tensor_ase(atoms, calc, strain=strain, relax_ions=relax_ions, fmax=fmax)
    res = {"analysis": "elastic", "method": f"ASE finite differences ({type(calc).__name__})",
           "calculator": calculator or type(calc).__name__,
           "temperature_K": 0.0, "strain": strain, "volume_A3": float(atoms.get_volume()), "natoms": len(atoms),
           **elastic_properties(C)}
    return _finish(res, out_dir)


def _finish(res: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    res["units"] = {"C": "GPa", "moduli": "GPa", "poisson": "dimensionless", "temperature": "K",
                    "volume": "A^3"}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_elastic(res, out / "elastic.png")
    res["plot"] = "elastic.png"
    write_result(out / "elastic.json", res)
    return res


def plot_elastic(res: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Heat map of C_ij with values, and Voigt/Reuss/Hill B, G, E bars."""
    plt = mpl()
    C = np.asarray(res["C_GPa"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    vmax = np.abs(C).max() or 1.0
    im = a1.imshow(C, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    for i in range(6):
        for j in range(6):
            a1.text(j, i, f"{C[i, j]:.1f}", ha="center", va="center", fontsize=7)
    a1.set_xticks(range(6), [f"{k}\n{j + 1}" for j, k in enumerate(VOIGT)], fontsize=7)
    a1.set_yticks(range(6), [f"{j + 1} {k}" for j, k in enumerate(VOIGT)], fontsize=7)
    fig.colorbar(im, ax=a1, label="C$_{ij}$ (GPa)")
    T = res.get("temperature_K") or 0
    a1.set_title(f"C$_{{ij}}$ at {T:g} K ({'Born-stable' if res['born_stable'] else 'UNSTABLE'})")
    if "B_hill_GPa" in res:
        names = ["B", "G", "E"]
        x = np.arange(3)
        for k, (avg, off) in enumerate((("voigt", -0.25), ("reuss", 0.0), ("hill", 0.25))):
            a2.bar(x + off, [res[f"{n}_{avg}_GPa"] for n in names], width=0.25, label=avg.capitalize(),
                   color=f"C{k}")
        a2.set_xticks(x, ["bulk modulus B", "shear modulus G", "Young's modulus E"], fontsize=8)
        a2.set_ylabel("modulus (GPa)")
        a2.set_title(f"Poisson's ratio ν (Hill) = {res['poisson_hill']:.3f}")
        a2.legend(fontsize=8)
    save_figure(fig, path)
