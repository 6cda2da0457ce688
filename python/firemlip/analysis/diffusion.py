"""Tracer and charge diffusion from LAMMPS dumps: MSD by FFT, diffusive window, D with uncertainty.

Units: positions in Å, time in fs, D in cm²/s (1 Å²/fs = 0.1 cm²/s), volume in Å³, number density in cm⁻³.

* Dumps are read with MDAnalysis (``LAMMPSDUMP``); they must hold unwrapped coordinates (``xu yu zu`` or
  ``xsu ysu zsu``) or wrapped ones with image flags (``ix iy iz``, unwrapped by MDAnalysis). Wrapped-only
  dumps are refused because their MSD is meaningless.
* The MSD is computed with the FFT algorithm (Calandrini et al., Collection SFN 12, 201 (2011); all time
  origins, O(T log T)) — our own numpy code, because MDAnalysis' ``EinsteinMSD(fft=True)`` needs the
  ``tidynamics`` package.
* The tracer diffusivity is D* = lim MSD(t)/(2 d t) (Einstein), fitted as a straight line with intercept on a
  window where the log–log slope of the MSD is ≈ 1 (the ballistic/caged start skipped). Its uncertainty is a
  bootstrap over atoms.
* The charge (centre-of-mass) diffusivity D_σ = lim ⟨|Σ_i Δr_i(t)|²⟩ / (2 d N t) of the mobile species gives the
  Haven ratio H_R = D*/D_σ; its uncertainty comes from block averaging over time (one collective walker).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firemlip.analysis._common import A2_PER_FS_TO_CM2_PER_S, mpl, save_figure, write_result
from firemlip.errors import FiremlipError, require_file

MIN_FRAMES = 20
MIN_FIT_POINTS = 5
_DIRS = ("x", "y", "z")


# ----------------------------------------------------------------------------------------------------- reading
@dataclass
class Trajectory:
    """Unwrapped positions of a LAMMPS run.

    positions: (n_frames, n_atoms, 3) Å, atoms sorted by id; steps: (n_frames,) MD step numbers;
    elements: (n_atoms,) symbols; masses: (n_atoms,) amu; volumes_A3: (n_frames,) cell volumes.
    """

    positions: np.ndarray
    steps: np.ndarray
    elements: np.ndarray
    masses: np.ndarray
    volumes_A3: np.ndarray
    sources: list[str]


def _dump_columns(path: str) -> list[str]:
    with open(path, errors="replace") as fh:
        for i, line in enumerate(fh):
            if line.startswith("ITEM: ATOMS"):
                return line.split()[2:]
            if i > 50:
                break
    raise FiremlipError(f"{path}: not a LAMMPS text dump (no 'ITEM: ATOMS' header line)")


def _convention(path: str, cols: Sequence[str]) -> tuple[str, bool]:
    c = set(cols)
    if {"xu", "yu", "zu"} <= c:
        return "unwrapped", False
    if {"xsu", "ysu", "zsu"} <= c:
        return "scaled_unwrapped", False
    if {"ix", "iy", "iz"} <= c and {"x", "y", "z"} <= c:
        return "unscaled", True
    if {"ix", "iy", "iz"} <= c and {"xs", "ys", "zs"} <= c:
        return "scaled", True
    raise FiremlipError(
        f"{path}: dump has only wrapped coordinates (columns: {' '.join(cols)}); diffusion needs unwrapped "
        "coordinates: dump 'xu yu zu' (or add image flags 'ix iy iz')")


def read_dump(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
              elements: Sequence[str] | None = None) -> Trajectory:
    """Read one or more LAMMPS text dumps (consecutive segments of one run) into a :class:`Trajectory`.

    ``elements`` maps LAMMPS types 1, 2, … to symbols when the dump has no ``element`` column.
    A frame whose step repeats the previous segment's last step is dropped.
    """
    import MDAnalysis as mda
    from ase.data import atomic_masses, atomic_numbers

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    pos_list, steps_list, vol_list = [], [], []
    elem_ref: np.ndarray | None = None
    for p in map(os.fspath, paths):
        require_file(p, "LAMMPS dump")
        cols = _dump_columns(p)
        conv, unwrap = _convention(p, cols)
        if "id" not in cols:
            raise FiremlipError(f"{p}: dump has no 'id' column; dump 'id type element xu yu zu'")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                u = mda.Universe(p, format="LAMMPSDUMP", topology_format="LAMMPSDUMP",
                                 lammps_coordinate_convention=conv, unwrap_images=unwrap)
        except Exception as exc:  # MDAnalysis raises many types on malformed files
            raise FiremlipError(f"{p}: cannot read LAMMPS dump ({str(exc).splitlines()[0] if str(exc) else exc!r})") \
                from None
        if "element" in cols and all(getattr(u.atoms, "elements", [""])):
            elem = np.array([str(e) for e in u.atoms.elements])
        else:
            types = np.array([int(t) for t in u.atoms.types])
            if not elements:
                raise FiremlipError(f"{p}: dump has no 'element' column; give the elements in type order "
                                    "(--elements Li P S …)")
            if types.max() > len(elements):
                raise FiremlipError(f"{p}: dump has atom type {types.max()} but only {len(elements)} elements given")
            elem = np.array([elements[t - 1] for t in types])
        if elem_ref is None:
            elem_ref = elem
        elif len(elem) != len(elem_ref) or np.any(elem != elem_ref):
            raise FiremlipError(f"{p}: atoms differ from those of {paths[0]}; dumps must be segments of one run")
        pos, steps, vols = [], [], []
        warnings.filterwarnings("ignore", message="Reader has no dt information")
        for ts in u.trajectory:
            pos.append(np.array(ts.positions, dtype=np.float64))
            steps.append(int(ts.data.get("step", ts.frame)))
            a, b, c, al, be, ga = (float(x) for x in ts.dimensions)
            ca, cb, cg = np.cos(np.radians([al, be, ga]))
            vols.append(a * b * c * np.sqrt(max(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg, 0.0)))
        if steps_list and steps_list[-1].size and steps and steps[0] == steps_list[-1][-1]:
            pos, steps, vols = pos[1:], steps[1:], vols[1:]
        if pos:
            pos_list.append(np.asarray(pos))
            steps_list.append(np.asarray(steps))
            vol_list.append(np.asarray(vols))
    assert elem_ref is not None
    for e in set(elem_ref):
        if e not in atomic_numbers:
            raise FiremlipError(f"{paths[0]}: unknown element {e!r} in dump")
    masses = np.array([atomic_masses[atomic_numbers[e]] for e in elem_ref])
    return Trajectory(np.concatenate(pos_list), np.concatenate(steps_list), elem_ref, masses,
                      np.concatenate(vol_list), [os.fspath(p) for p in paths])


# ----------------------------------------------------------------------------------------------------- MSD
def msd_fft(x: np.ndarray) -> np.ndarray:
    """Mean squared displacement of every coordinate for all lags, averaged over time origins, by FFT.

    ``x``: (T, ...) trajectory (time first). Returns (T, ...) with ``out[m] = mean_t (x[t+m] - x[t])²``.
    Uses MSD(m) = S1(m) − 2 S2(m), S2 the autocorrelation computed with a zero-padded FFT.
    """
    x = np.asarray(x, dtype=np.float64)
    T = x.shape[0]
    n = 1 << int(np.ceil(np.log2(2 * T)))
    f = np.fft.rfft(x, n=n, axis=0)
    counts = (T - np.arange(T)).reshape((T,) + (1,) * (x.ndim - 1))
    s2 = np.fft.irfft(f * f.conj(), n=n, axis=0)[:T] / counts
    sq = x * x
    c = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(sq, axis=0)])
    m = np.arange(T)
    s1 = (c[T - m] + (c[T] - c[m])) / counts
    out = s1 - 2.0 * s2
    out[0] = 0.0
    return np.maximum(out, 0.0)


def remove_drift(positions: np.ndarray, masses: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Subtract, frame by frame, the mass-weighted centre-of-mass displacement of the ``reference`` atoms
    (a boolean mask; all atoms when None). ``positions``: (T, N, 3) Å."""
    sel = np.ones(len(masses), bool) if reference is None else np.asarray(reference, bool)
    w = masses[sel] / masses[sel].sum()
    com = np.einsum("tnk,n->tk", positions[:, sel], w)
    return positions - (com - com[0])[:, None, :]


def _linear_fit(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    A = np.vstack([t, np.ones_like(t)]).T
    (slope, icpt), *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(slope), float(icpt)


def _loglog_slope(t: np.ndarray, y: np.ndarray) -> float:
    ok = (t > 0) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(t[ok]), np.log(y[ok]), 1)[0])


def choose_fit_window(t_fs: np.ndarray, msd: np.ndarray, end_fraction: float = 0.5, tolerance: float = 0.15,
                      ) -> tuple[int, int, float, bool]:
    """Pick the diffusive window [i0, i1] (lag indices) of an MSD curve.

    The window ends at ``end_fraction`` of the run (long lags have few time origins). Its start is the
    earliest log-spaced lag from which the power-law exponent of MSD ∝ t^α over [start, end] is within
    ``tolerance`` of 1 (so the ballistic, α≈2, and caged, α<1, parts are skipped). Returns
    (i0, i1, α, diffusive); when no start qualifies, the last fifth of the window is used and diffusive=False.
    """
    T = len(t_fs)
    i1 = max(int(end_fraction * (T - 1)), MIN_FIT_POINTS)
    if i1 >= T or i1 < MIN_FIT_POINTS:
        raise FiremlipError(f"too few frames for a fit ({T}; need at least {MIN_FRAMES})")
    starts = np.unique(np.geomspace(1, max(i1 // 3, 1), num=24).astype(int))
    best = None
    for i0 in starts:
        if i1 - i0 + 1 < MIN_FIT_POINTS:
            break
        idx = np.unique(np.geomspace(i0, i1, 32).astype(int))
        alpha = _loglog_slope(t_fs[idx], msd[idx])
        if np.isfinite(alpha) and abs(alpha - 1.0) <= tolerance:
            return int(i0), int(i1), alpha, True
        if best is None or (np.isfinite(alpha) and abs(alpha - 1) < abs(best[2] - 1)):
            best = (int(i0), i1, alpha)
    i0 = max(1, int(0.8 * i1)) if i1 - int(0.8 * i1) + 1 >= MIN_FIT_POINTS else max(1, i1 - MIN_FIT_POINTS + 1)
    idx = np.arange(i0, i1 + 1)
    return i0, i1, _loglog_slope(t_fs[idx], msd[idx]), False


# ----------------------------------------------------------------------------------------------------- results
@dataclass
class DiffusionFit:
    """D from an MSD curve: values in cm²/s, the window in fs."""

    diffusivity_cm2_s: float
    diffusivity_err_cm2_s: float
    window_fs: tuple[float, float]
    loglog_exponent: float
    diffusive: bool


def _species_mask(traj: Trajectory, species: str, path: str) -> np.ndarray:
    mask = traj.elements == species
    if not mask.any():
        raise FiremlipError(f"{path}: dump has no atoms of species {species!r} "
                            f"(it has {', '.join(sorted(set(traj.elements.tolist())))})")
    return mask


def tracer_diffusion(positions: np.ndarray, frame_interval_fs: float, *, end_fraction: float = 0.5,
                     tolerance: float = 0.15, window_fs: tuple[float, float] | None = None,
                     n_bootstrap: int = 200, seed: int = 0) -> dict[str, Any]:
    """Tracer diffusivity of a set of atoms. ``positions``: (T, N, 3) unwrapped, drift-corrected, Å.

    Returns a dict with ``t_fs``, ``msd_A2`` (T, total) and ``msd_dir_A2`` (T, 3), the fit (``fit``:
    :class:`DiffusionFit` for 3-D D*), per-direction fits ``fit_dir`` (D from MSD_k/(2t)) and ``window``.
    The uncertainty is the standard deviation of D over ``n_bootstrap`` resamplings of the atoms.
    """
    T, N, _ = positions.shape
    if T < MIN_FRAMES:
        raise FiremlipError(f"too few frames for a fit ({T}; need at least {MIN_FRAMES})")
    disp = positions - positions[0]
    msd_atoms = np.empty((T, N, 3))
    chunk = max(1, int(2e7 // (T * 3)))
    for a in range(0, N, chunk):
        msd_atoms[:, a:a + chunk] = msd_fft(disp[:, a:a + chunk])
    t = np.arange(T) * frame_interval_fs
    msd_dir = msd_atoms.mean(axis=1)
    msd = msd_dir.sum(axis=1)
    if window_fs is not None:
        i0 = int(np.searchsorted(t, window_fs[0]))
        i1 = int(np.searchsorted(t, window_fs[1], side="right")) - 1
        if i1 - i0 + 1 < MIN_FIT_POINTS:
            raise FiremlipError(f"fit window {window_fs} fs holds fewer than {MIN_FIT_POINTS} lags")
        alpha = _loglog_slope(t[i0:i1 + 1], msd[i0:i1 + 1])
        diffusive = abs(alpha - 1) <= tolerance
    else:
        i0, i1, alpha, diffusive = choose_fit_window(t, msd, end_fraction, tolerance)
    sl = slice(i0, i1 + 1)
    tw = t[sl]
    rng = np.random.default_rng(seed)
    per_atom = msd_atoms[sl]  # (L, N, 3)
    # Bootstrap: resample atoms with replacement; fit each resampled mean MSD (a linear map of it).
    A = np.vstack([tw, np.ones_like(tw)]).T
    pinv = np.linalg.pinv(A)[0]  # slope = pinv @ y
    counts = rng.multinomial(N, np.full(N, 1.0 / N), size=n_bootstrap) / N  # (B, N)
    per_atom_slope = np.einsum("lnk,l->nk", per_atom, pinv)  # (N, 3) each atom's MSD slope, Å²/fs
    slopes_boot = counts @ per_atom_slope  # (B, 3) slope of the resampled mean MSD per direction

    def fit(y: np.ndarray, dims: int, boot: np.ndarray) -> DiffusionFit:
        slope, _ = _linear_fit(tw, y[sl])
        conv = A2_PER_FS_TO_CM2_PER_S / (2 * dims)
        return DiffusionFit(slope * conv, float(np.std(boot, ddof=1)) * conv,
                            (float(t[i0]), float(t[i1])), float(alpha), bool(diffusive))

    total = fit(msd, 3, slopes_boot.sum(axis=1))
    dirs = {k: fit(msd_dir[:, j], 1, slopes_boot[:, j]) for j, k in enumerate(_DIRS)}
    return {"t_fs": t, "msd_A2": msd, "msd_dir_A2": msd_dir, "fit": total, "fit_dir": dirs, "window": (i0, i1)}


def charge_diffusion(positions: np.ndarray, frame_interval_fs: float, window_fs: tuple[float, float],
                     n_blocks: int = 10, block_end_fraction: float = 0.2) -> dict[str, Any]:
    """Charge (centre-of-mass) diffusivity D_σ = ⟨|Σ_i Δr_i|²⟩/(6 N t) of N like ions, in cm²/s.

    The run is cut into ``n_blocks`` blocks; in each the collective MSD (FFT, all origins) is fitted on
    ``window_fs`` clipped to ``block_end_fraction`` of the block. Returns the block mean, its standard error,
    the block values, the window used and ``reliable`` (≥ 5 valid blocks, relative error < 0.3).
    """
    T, N, _ = positions.shape
    R = (positions - positions[0]).sum(axis=1)  # (T, 3) collective displacement, Å
    bl = T // max(n_blocks, 1)
    t_block = np.arange(bl) * frame_interval_fs
    i0 = int(np.searchsorted(t_block, window_fs[0]))
    i1 = min(int(np.searchsorted(t_block, window_fs[1], side="right")) - 1, int(block_end_fraction * (bl - 1)))
    vals: list[float] = []
    curve = None
    if bl >= MIN_FRAMES and i1 - i0 + 1 >= MIN_FIT_POINTS:
        for b in range(n_blocks):
            seg = R[b * bl:(b + 1) * bl]
            m = msd_fft(seg).sum(axis=1)
            curve = m if curve is None else curve + m
            slope, _ = _linear_fit(t_block[i0:i1 + 1], m[i0:i1 + 1])
            vals.append(slope / (6.0 * N) * A2_PER_FS_TO_CM2_PER_S)
    arr = np.asarray(vals)
    if len(arr) >= 2:
        mean, err = float(arr.mean()), float(arr.std(ddof=1) / np.sqrt(len(arr)))
    else:
        mean, err = float("nan"), float("nan")
    reliable = bool(len(arr) >= 5 and mean > 0 and err / mean < 0.3)
    return {"diffusivity_cm2_s": mean, "diffusivity_err_cm2_s": err, "block_values_cm2_s": arr.tolist(),
            "n_blocks": len(arr), "window_fs": (float(t_block[i0]) if i0 < bl else float("nan"),
                                                float(t_block[i1]) if 0 <= i1 < bl else float("nan")),
            "reliable": reliable, "t_fs": t_block,
            "msd_A2": None if curve is None else curve / len(arr) / N}


def haven_ratio(d_tracer: float, d_tracer_err: float, d_charge: float, d_charge_err: float) -> tuple[float, float]:
    """H_R = D*/D_σ with first-order error propagation (independent errors)."""
    h = d_tracer / d_charge
    err = abs(h) * np.sqrt((d_tracer_err / d_tracer) ** 2 + (d_charge_err / d_charge) ** 2)
    return float(h), float(err)


# ----------------------------------------------------------------------------------------------------- stage
def analyze_diffusion(dumps: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], species: str,
                      temperature_K: float, timestep_fs: float, out_dir: str | os.PathLike[str], *,
                      elements: Sequence[str] | None = None, drift: str = "system", end_fraction: float = 0.5,
                      tolerance: float = 0.15, window_fs: tuple[float, float] | None = None,
                      n_bootstrap: int = 200, n_blocks: int = 10, charge: float | None = None,
                      haven: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Diffusion analysis of LAMMPS dumps; writes ``diffusion.json`` and ``msd.png`` in ``out_dir``.

    species: the mobile element; temperature_K: the run's temperature (K); timestep_fs: the MD time step (fs),
    frames are ``step`` numbers apart. drift: ``system`` (remove the whole cell's centre-of-mass drift per
    frame), ``framework`` (that of all atoms except ``species``) or ``none``. The result also holds the
    Nernst–Einstein conductivity (see :func:`firemlip.analysis.conductivity.conductivity_from_diffusion`)
    when the species' formal charge is known or ``charge`` is given; ``haven`` is used only when the charge
    MSD is too noisy to give H_R. Returns the JSON content as a dict.
    """
    from firemlip.analysis.conductivity import conductivity_from_diffusion

    if temperature_K is None or not np.isfinite(temperature_K) or temperature_K <= 0:
        raise FiremlipError("diffusion: a positive temperature in K is required (--temperature)")
    if timestep_fs is None or timestep_fs <= 0:
        raise FiremlipError("diffusion: a positive MD time step in fs is required (--timestep-fs)")
    traj = read_dump(dumps, elements)
    src = traj.sources[0]
    mask = _species_mask(traj, species, src)
    if len(traj.steps) < MIN_FRAMES:
        raise FiremlipError(f"{src}: too few frames for a fit ({len(traj.steps)}; need at least {MIN_FRAMES})")
    dsteps = np.diff(traj.steps)
    if np.any(dsteps <= 0) or np.any(dsteps != dsteps[0]):
        raise FiremlipError(f"{src}: frames are not evenly spaced in steps ({sorted(set(dsteps.tolist()))[:5]})")
    dt_frame = float(dsteps[0]) * timestep_fs
    if drift == "system":
        pos = remove_drift(traj.positions, traj.masses)
    elif drift == "framework":
        if mask.all():
            raise FiremlipError("drift=framework needs atoms other than the mobile species")
        pos = remove_drift(traj.positions, traj.masses, ~mask)
    elif drift == "none":
        pos = traj.positions
    else:
        raise FiremlipError(f"drift must be system, framework or none, got {drift!r}")
    pos = pos[:, mask]
    tr = tracer_diffusion(pos, dt_frame, end_fraction=end_fraction, tolerance=tolerance, window_fs=window_fs,
                          n_bootstrap=n_bootstrap, seed=seed)
    f = tr["fit"]
    ch = charge_diffusion(pos, dt_frame, f.window_fs, n_blocks=n_blocks)
    volume = float(traj.volumes_A3.mean())
    n_ions = int(mask.sum())
    result: dict[str, Any] = {
        "analysis": "diffusion",
        "dumps": traj.sources,
        "species": species,
        "temperature_K": float(temperature_K),
        "timestep_fs": float(timestep_fs),
        "frame_interval_fs": dt_frame,
        "n_frames": int(len(traj.steps)),
        "duration_ps": dt_frame * (len(traj.steps) - 1) / 1000.0,
        "n_ions": n_ions,
        "n_atoms": int(len(traj.elements)),
        "volume_A3": volume,
        "number_density_cm3": n_ions / (volume * 1e-24),
        "drift_correction": drift,
        "fit_window_fs": list(f.window_fs),
        "loglog_exponent": f.loglog_exponent,
        "diffusive": f.diffusive,
        "diffusivity_cm2_s": f.diffusivity_cm2_s,
        "diffusivity_err_cm2_s": f.diffusivity_err_cm2_s,
        "uncertainty_method": f"bootstrap over {n_ions} {species} atoms ({n_bootstrap} resamples), 1 sigma",
        "diffusivity_directional_cm2_s": {k: v.diffusivity_cm2_s for k, v in tr["fit_dir"].items()},
        "diffusivity_directional_err_cm2_s": {k: v.diffusivity_err_cm2_s for k, v in tr["fit_dir"].items()},
        "charge_diffusivity_cm2_s": ch["diffusivity_cm2_s"],
        "charge_diffusivity_err_cm2_s": ch["diffusivity_err_cm2_s"],
        "charge_diffusivity_blocks_cm2_s": ch["block_values_cm2_s"],
        "charge_msd_reliable": ch["reliable"],
        "units": {"diffusivity": "cm^2/s", "time": "fs", "volume": "A^3", "number_density": "cm^-3",
                  "temperature": "K", "duration": "ps"},
    }
    if not f.diffusive:
        result["warning"] = (f"MSD is not diffusive in the fit window (log-log slope {f.loglog_exponent:.2f}); "
                             "D is an upper bound or the run is too short")
    if ch["reliable"]:
        h, he = haven_ratio(f.diffusivity_cm2_s, f.diffusivity_err_cm2_s, ch["diffusivity_cm2_s"],
                            ch["diffusivity_err_cm2_s"])
        result.update(haven_ratio=h, haven_ratio_err=he, haven_source="computed from the charge MSD")
    elif haven is not None:
        result.update(haven_ratio=float(haven), haven_ratio_err=None, haven_source="assumed (user value)")
    else:
        result.update(haven_ratio=None, haven_ratio_err=None,
                      haven_source="not available: charge MSD too noisy and no --haven given")
    try:
        result["conductivity"] = conductivity_from_diffusion(result, charge=charge, haven=haven)
    except FiremlipError as exc:
        result["conductivity"] = None
        result["conductivity_note"] = str(exc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_msd(tr, ch, species, temperature_K, out / "msd.png")
    result["plot"] = "msd.png"
    write_result(out / "diffusion.json", result)
    return result


def plot_msd(tr: dict[str, Any], ch: dict[str, Any], species: str, temperature_K: float,
             path: str | os.PathLike[str]) -> None:
    """MSD (total, per direction, charge MSD per ion) vs time with the fit window shaded."""
    plt = mpl()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    t_ps = tr["t_fs"] / 1000.0
    ax.plot(t_ps, tr["msd_A2"], "k-", lw=1.5, label=f"{species} MSD")
    for j, k in enumerate(_DIRS):
        ax.plot(t_ps, 3 * tr["msd_dir_A2"][:, j], lw=0.8, alpha=0.7, label=f"3×MSD$_{k}$")
    if ch.get("msd_A2") is not None:
        ax.plot(ch["t_fs"] / 1000.0, ch["msd_A2"], lw=0.8, color="gray", ls="--", label="charge MSD / N")
    f = tr["fit"]
    ax.axvspan(f.window_fs[0] / 1000.0, f.window_fs[1] / 1000.0, color="C2", alpha=0.15, label="fit window")
    tt = np.linspace(f.window_fs[0], f.window_fs[1], 50)
    i0, i1 = tr["window"]
    slope, icpt = _linear_fit(tr["t_fs"][i0:i1 + 1], tr["msd_A2"][i0:i1 + 1])
    ax.plot(tt / 1000.0, slope * tt + icpt, "r--", lw=1.2,
            label=f"D = {f.diffusivity_cm2_s:.3g} ± {f.diffusivity_err_cm2_s:.2g} cm²/s")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("MSD (Å²)")
    ax.set_title(f"{species} at {temperature_K:g} K")
    ax.legend(fontsize=7)
    save_figure(fig, path)
