"""Tracer and charge diffusion from LAMMPS dumps: MSD by FFT, diffusive window, D with uncertainty, validity.

Units: positions in Å, time in fs, D in cm²/s (1 Å²/fs = 0.1 cm²/s), volume in Å³, number density in cm⁻³.

* Dumps are read with MDAnalysis (``LAMMPSDUMP``); they must hold unwrapped coordinates (``xu yu zu`` or
  ``xsu ysu zsu``) or wrapped ones with image flags (``ix iy iz``, unwrapped by MDAnalysis). Wrapped-only
  dumps are refused because their MSD is meaningless.
* Drift reference (``drift``): by default displacements are measured relative to the centre of mass of the
  *framework* (every atom that is not the mobile species), as in the literature and in kinisi. Removing the
  whole cell's centre of mass instead (``drift="system"``) also subtracts a share N m_ion / M of every
  collective displacement of the mobile ions (in a momentum-conserving run the framework recoils; in a run
  with drifting momentum the whole cell moves), which for light or numerous mobile ions cancels much of the
  charge (collective) MSD: on a 20 Li / 12 F cell it is 2.6× too small. With no framework atoms (only the
  mobile species) the ``system`` reference is used and the result says so (``drift_correction``).
* The MSD is computed with the FFT algorithm (Calandrini et al., Collection SFN 12, 201 (2011); all time
  origins, O(T log T)) — our own numpy code, because MDAnalysis' ``EinsteinMSD(fft=True)`` needs the
  ``tidynamics`` package.
* The tracer diffusivity is D* = lim MSD(t)/(2 d t) (Einstein), fitted as a straight line with intercept on a
  window where the log–log slope of the MSD is ≈ 1 (the ballistic/caged start skipped). Its uncertainty is the
  larger of a bootstrap over atoms and half the difference between the D values of the run's two halves: the
  bootstrap alone misses the scatter between trajectories when few ions hop (two 25–30 ps runs of the Li | Li3N
  example at 600 K gave D values three times apart, each with a ±15–45 % bootstrap error). The run is
  ``diffusive`` when that slope lies in [``DIFFUSIVE_SLOPE_MIN``, ``DIFFUSIVE_SLOPE_MAX``]; otherwise D is not a
  diffusivity and the result is marked invalid.
* The charge (collective) diffusivity D_σ = lim ⟨|Σ_i Δr_i(t)|²⟩ / (2 d N t) of the N mobile ions gives the
  Haven ratio H_R = D*/D_σ. The collective MSD is computed over the whole run with all (overlapping) time
  origins by FFT and fitted on the tracer's window, cut at a lag m_max so that the run holds ``n_blocks``
  blocks of at least 2 m_max frames. Its 1-σ uncertainty comes from block averaging over time origins: the
  fitted slope is a mean over origins t of g(t) = Σ_m w_m |R(t+m) − R(t)|² (w the least-squares slope
  weights), g is correlated over at most m_max frames, and the standard error of the mean of g follows from
  the means of ``n_blocks`` contiguous blocks of origins (Flyvbjerg & Petersen, J. Chem. Phys. 91, 461
  (1989); n_blocks − 1 degrees of freedom). When the relative error of D_σ exceeds ``HAVEN_MAX_REL_ERR`` the
  Haven ratio is not reported (null) and the run length that would be needed is estimated from the 1/√T
  scaling of the error: T_needed ≈ T × (rel_err / HAVEN_MAX_REL_ERR)².
* Validity: a result is ``valid: false`` (with ``invalid_reasons``) when the MSD is not diffusive, D ≤ 0, the
  framework melted or collapsed in the final frames (pyscal3 check of :mod:`firemlip.analysis.structure`), or
  σ lies outside [``SIGMA_MIN_S_CM``, ``SIGMA_MAX_S_CM``].
"""

from __future__ import annotations

import os
import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from firemlip.analysis._common import (
    A2_PER_FS_TO_CM2_PER_S,
    SIGMA_MAX_S_CM,
    SIGMA_MIN_S_CM,
    mpl,
    save_figure,
    sigma_is_physical,
    write_result,
)
from firemlip.errors import FiremlipError, require_file
from firemlip.options import DiffusionOptions

MIN_FRAMES = 20
MIN_FIT_POINTS = 5
#: The MSD counts as diffusive when its log–log slope in the fit window lies in this range.
DIFFUSIVE_SLOPE_MIN = 0.8
DIFFUSIVE_SLOPE_MAX = 1.2
#: the defaults of the analysis (defined once, in :class:`firemlip.options.DiffusionOptions`)
_D = DiffusionOptions()
#: Above this relative (1-σ) error of the charge diffusivity D_σ the Haven ratio is not reported.
HAVEN_MAX_REL_ERR = _D.haven_max_rel_err
#: Default drift reference: the framework's centre of mass (see the module docstring).
DEFAULT_DRIFT = _D.drift
DRIFT_CHOICES = typing.get_args(DiffusionOptions.model_fields["drift"].annotation)
#: Lags used (at most) in the charge-MSD fit and its block analysis.
CHARGE_MAX_LAGS = 200
#: Fewest atoms outside a region for its separate melt check (``structure_check_outside``).
MIN_CHECK_ATOMS = 8
#: A selection made only of the mobile species (no framework: e.g. the Li metal beside an electrolyte) whose atoms
#: all diffuse with at least this D* (cm²/s) is liquid, whatever its bond order says: liquid metals and molten salts
#: have D ~ 1e-5–1e-4 cm²/s, solids near their melting point ~ 1e-8–1e-7 cm²/s, and a solid without a framework
#: cannot let all its atoms diffuse (per-atom q6 of a thin slab stays high when it melts).
LIQUID_MIN_D_CM2_S = 1e-6
#: Final frames of a run checked for melting/collapse of the framework (taken from its last fifth).
STRUCTURE_CHECK_FRAMES = 5
_DIRS = ("x", "y", "z")


# ----------------------------------------------------------------------------------------------------- reading
@dataclass
class Trajectory:
    """Unwrapped positions of a LAMMPS run.

    positions: (n_frames, n_atoms, 3) Å, atoms sorted by id; steps: (n_frames,) MD step numbers;
    elements: (n_atoms,) symbols; masses: (n_atoms,) amu; volumes_A3: (n_frames,) cell volumes;
    cells_A: (n_frames, 3, 3) cell vectors (rows, Å, LAMMPS orientation) when known.
    """

    positions: np.ndarray
    steps: np.ndarray
    elements: np.ndarray
    masses: np.ndarray
    volumes_A3: np.ndarray
    sources: list[str]
    cells_A: np.ndarray | None = None


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
    pos_list, steps_list, vol_list, cell_list = [], [], [], []
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
        warnings.filterwarnings("ignore", message="Reader has no dt information")
        pos, steps, vols, cells = _universe_frames(u)
        if steps_list and steps_list[-1].size and steps and steps[0] == steps_list[-1][-1]:
            pos, steps, vols, cells = pos[1:], steps[1:], vols[1:], cells[1:]
        if pos:
            pos_list.append(np.asarray(pos))
            steps_list.append(np.asarray(steps))
            vol_list.append(np.asarray(vols))
            cell_list.append(np.asarray(cells))
    assert elem_ref is not None
    for e in set(elem_ref):
        if e not in atomic_numbers:
            raise FiremlipError(f"{paths[0]}: unknown element {e!r} in dump")
    masses = np.array([atomic_masses[atomic_numbers[e]] for e in elem_ref])
    return Trajectory(np.concatenate(pos_list), np.concatenate(steps_list), elem_ref, masses,
                      np.concatenate(vol_list), [os.fspath(p) for p in paths], np.concatenate(cell_list))


def _universe_frames(u: Any) -> tuple[list[np.ndarray], list[int], list[float], list[np.ndarray]]:
    """Positions (Å, float64), step numbers (``ts.data['step']``, else the frame index), cell volumes (Å³) and
    cell matrices (rows, Å) of every frame of an MDAnalysis Universe's trajectory (NaN volume, no cell when a frame
    has no box)."""
    from ase.geometry import cellpar_to_cell

    pos, steps, vols, cells = [], [], [], []
    for ts in u.trajectory:
        pos.append(np.array(ts.positions, dtype=np.float64))
        steps.append(int(ts.data.get("step", ts.frame)))
        dims = ts.dimensions
        if dims is None or not np.all(np.isfinite(dims)) or np.any(np.asarray(dims[:3]) <= 0):
            vols.append(float("nan"))
            cells.append(np.full((3, 3), np.nan))
            continue
        a, b, c, al, be, ga = (float(x) for x in dims)
        ca, cb, cg = np.cos(np.radians([al, be, ga]))
        vols.append(a * b * c * np.sqrt(max(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg, 0.0)))
        cells.append(cellpar_to_cell([a, b, c, al, be, ga]))
    return pos, steps, vols, cells


def trajectory_from_positions(positions_A: Any, elements: Sequence[str], cells_A: Any = None,
                              masses: Sequence[float] | None = None, steps: Sequence[int] | None = None,
                              source: str = "<positions>") -> Trajectory:
    """A :class:`Trajectory` from arrays held in memory.

    ``positions_A``: (n_frames, n_atoms, 3) unwrapped positions, Å; ``elements``: n_atoms symbols; ``cells_A``:
    one (3, 3) cell or (n_frames, 3, 3) cells (rows are the cell vectors, Å), or None (no volume: no number
    density, σ or melting check); ``masses``: amu (default: ASE's standard atomic masses); ``steps``: the frames'
    step numbers (default 0, 1, 2, ...).
    """
    from ase.data import atomic_masses, atomic_numbers

    pos = np.asarray(positions_A, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise FiremlipError(f"{source}: positions must be an (n_frames, n_atoms, 3) array in Å, got shape {pos.shape}")
    T, N, _ = pos.shape
    elem = np.array([str(e) for e in elements])
    if len(elem) != N:
        raise FiremlipError(f"{source}: {len(elem)} elements for {N} atoms")
    unknown = sorted(set(elem.tolist()) - set(atomic_numbers))
    if unknown:
        raise FiremlipError(f"{source}: unknown element(s) {', '.join(unknown)}")
    if masses is None:
        m = np.array([atomic_masses[atomic_numbers[e]] for e in elem])
    else:
        m = np.asarray(masses, dtype=np.float64)
        if m.shape != (N,) or np.any(m <= 0):
            raise FiremlipError(f"{source}: masses must be {N} positive values (amu)")
    if cells_A is None:
        cells, vols = None, np.full(T, np.nan)
    else:
        c = np.asarray(cells_A, dtype=np.float64)
        if c.shape == (3, 3):
            c = np.broadcast_to(c, (T, 3, 3)).copy()
        if c.shape != (T, 3, 3):
            raise FiremlipError(f"{source}: cells must be one (3, 3) cell or ({T}, 3, 3), got shape {c.shape}")
        cells, vols = c, np.abs(np.linalg.det(c))
    st = np.arange(T) if steps is None else np.asarray(steps, dtype=np.int64)
    if st.shape != (T,):
        raise FiremlipError(f"{source}: {len(st)} step numbers for {T} frames")
    return Trajectory(pos, st, elem, m, vols, [source], cells)


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


def is_diffusive(loglog_exponent: float) -> bool:
    """True when an MSD's log–log slope lies in [DIFFUSIVE_SLOPE_MIN, DIFFUSIVE_SLOPE_MAX] (≈ 1: Fickian)."""
    return bool(np.isfinite(loglog_exponent) and DIFFUSIVE_SLOPE_MIN <= loglog_exponent <= DIFFUSIVE_SLOPE_MAX)


def _linear_fit(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    A = np.vstack([t, np.ones_like(t)]).T
    (slope, icpt), *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(slope), float(icpt)


def _loglog_slope(t: np.ndarray, y: np.ndarray) -> float:
    ok = (t > 0) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(t[ok]), np.log(y[ok]), 1)[0])


def choose_fit_window(t_fs: np.ndarray, msd: np.ndarray, end_fraction: float = _D.end_fraction,
                      tolerance: float = _D.tolerance,
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


#: Region names that select the atoms of one slab of an interface (``interface_label`` of the reference).
REGION_SLABS = ("substrate", "film")
#: Gap (Å) along the stacking axis that separates two atomic planes of a slab (region thickness estimate).
PLANE_GAP_A = 0.5


def parse_region(text: str) -> tuple[str, float | None, float | None]:
    """A region spec as (kind, lo, hi): ``substrate`` / ``film`` → (name, None, None); ``z:LO:HI`` → ('z', LO, HI)
    in Å along the stacking axis (the normal of the first two cell vectors); ``zf:LO:HI`` → ('zf', LO, HI) as
    fractions of the third cell vector. LO > HI wraps through the periodic boundary."""
    t = str(text).strip()
    if t in REGION_SLABS:
        return t, None, None
    parts = t.split(":")
    if len(parts) == 3 and parts[0] in ("z", "zf"):
        try:
            lo, hi = float(parts[1]), float(parts[2])
        except ValueError:
            lo = hi = float("nan")
        if np.isfinite(lo) and np.isfinite(hi) and lo != hi and (parts[0] == "z" or (0 <= lo <= 1 and 0 <= hi <= 1)):
            return parts[0], lo, hi
    raise FiremlipError(f"region {text!r}: expected substrate, film, z:LO:HI (Å) or zf:LO:HI (fractions 0-1), "
                        "e.g. substrate or z:2.0:11.5")


def _stacking(cell: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit normal of the plane of cell vectors a, b and the cell height along it (Å)."""
    n = np.cross(cell[0], cell[1])
    n = n / np.linalg.norm(n)
    return n, float(abs(np.dot(cell[2], n)))


def _slab_thickness(h: np.ndarray, height: float) -> tuple[float, int]:
    """Thickness (Å) of a slab from its atoms' heights ``h`` (Å, wrapped into [0, height)) and its plane count.

    The slab is unwrapped at the largest periodic gap, its atoms grouped into planes (gaps > PLANE_GAP_A), and
    the thickness is the extent × n/(n − 1) for n planes, i.e. n interplanar spacings (the share of the cell a
    bulk slab of n planes fills). One plane: 0 (the caller falls back to an atom-count share).
    """
    z = np.sort(np.mod(h, height))
    gaps = np.diff(np.concatenate([z, [z[0] + height]]))
    k = int(np.argmax(gaps))
    z = np.sort(np.where(np.arange(len(z)) > k, z - height, z)) if k < len(z) - 1 else z
    planes = 1 + int(np.sum(np.diff(z) > PLANE_GAP_A))
    if planes < 2:
        return 0.0, planes
    return float((z[-1] - z[0]) * planes / (planes - 1)), planes


def select_region(spec: str, traj: Trajectory, reference: Any = None) -> dict[str, Any]:
    """Atoms initially in a region (:func:`parse_region`) and the region's share of the cell volume.

    Initial positions are those of ``reference`` (ASE Atoms of the starting structure, atoms in dump-id order)
    when it has as many atoms as the dump with the same elements, else the run's first frame; slab names need
    the reference's ``interface_label`` array (written by ``firemlip interface``). Returns ``mask`` (bool per
    atom), ``thickness_A`` and ``volume_fraction`` (of the cell, for the number density of the region's ions)
    and how they were obtained.
    """
    kind, lo, hi = parse_region(spec)
    n_atoms = len(traj.elements)
    ref_ok = (reference is not None and len(reference) == n_atoms
              and list(reference.get_chemical_symbols()) == traj.elements.tolist())
    if ref_ok:
        pos0, cell0, src = reference.get_positions(), np.asarray(reference.get_cell()), "reference structure"
    else:
        if traj.cells_A is None:
            raise FiremlipError(f"region {spec!r}: the trajectory has no cell and no matching reference was given")
        pos0, cell0, src = traj.positions[0], np.asarray(traj.cells_A[0]), "first frame of the run"
    normal, height = _stacking(cell0)
    frac = np.mod(np.linalg.solve(cell0.T, pos0.T).T[:, 2], 1.0)
    h = frac * height
    out: dict[str, Any] = {"spec": spec, "positions_from": src}
    if kind in REGION_SLABS:
        if not ref_ok or "interface_label" not in reference.arrays:
            why = ("the reference has no interface_label array (build it with `firemlip interface`)" if ref_ok
                   else "no reference structure with the dump's atoms was given")
            raise FiremlipError(f"region {spec!r}: slab regions need the starting interface: {why}")
        mask = np.asarray(reference.arrays["interface_label"]).astype(str) == kind
        if not mask.any():
            raise FiremlipError(f"region {spec!r}: no atom of the reference is labelled {kind!r}")
        thick, planes = _slab_thickness(h[mask], height)
        if thick > 0:
            out.update(thickness_A=thick, volume_fraction=min(thick / height, 1.0),
                       volume_method=f"{planes} atomic planes of the {kind} slab × their spacing")
        else:
            out.update(thickness_A=None, volume_fraction=float(mask.sum()) / n_atoms,
                       volume_method=f"single-plane {kind} slab: its share of the atoms")
    else:
        f_lo, f_hi = (lo / height, hi / height) if kind == "z" else (lo, hi)
        mask = (frac >= f_lo) & (frac < f_hi) if f_lo < f_hi else (frac >= f_lo) | (frac < f_hi)
        width = (f_hi - f_lo) % 1.0 if kind == "zf" or abs(f_hi - f_lo) < 1 else 1.0
        out.update(thickness_A=width * height, volume_fraction=min(width, 1.0),
                   volume_method=f"slab {lo:g}-{hi:g} {'Å' if kind == 'z' else '(fractional)'} of the cell height "
                                 f"{height:.3f} Å")
        if not mask.any():
            raise FiremlipError(f"region {spec!r}: no atom lies in it (cell height {height:.3f} Å)")
    out["mask"] = mask
    out["cell_height_A"] = height
    return out


def tracer_diffusion(positions: np.ndarray, frame_interval_fs: float, *, end_fraction: float = _D.end_fraction,
                     tolerance: float = _D.tolerance, window_fs: tuple[float, float] | None = None,
                     n_bootstrap: int = _D.n_bootstrap, seed: int = _D.seed) -> dict[str, Any]:
    """Tracer diffusivity of a set of atoms. ``positions``: (T, N, 3) unwrapped, drift-corrected, Å.

    Returns a dict with ``t_fs``, ``msd_A2`` (T, total) and ``msd_dir_A2`` (T, 3), the fit (``fit``:
    :class:`DiffusionFit` for 3-D D*), per-direction fits ``fit_dir`` (D from MSD_k/(2t)) and ``window``.
    The uncertainty of D* is the larger of the standard deviation of D over ``n_bootstrap`` resamplings of the atoms
    (``err_atoms_cm2_s``) and half the difference of the two half-run values (``err_halves_cm2_s``,
    :func:`_half_run_diffusivities`); the per-direction errors are the bootstrap's. The window
    is chosen with ``tolerance`` on the log–log slope; ``diffusive`` uses :func:`is_diffusive` (0.8–1.2).
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
    else:
        i0, i1, alpha, _ = choose_fit_window(t, msd, end_fraction, tolerance)
    diffusive = is_diffusive(alpha)
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
    err_atoms = total.diffusivity_err_cm2_s
    halves = _half_run_diffusivities(disp, t, i0, i1)
    err_halves = abs(halves[0] - halves[1]) / 2 if halves is not None else None
    if err_halves is not None and err_halves > err_atoms:
        total.diffusivity_err_cm2_s = err_halves
    return {"t_fs": t, "msd_A2": msd, "msd_dir_A2": msd_dir, "fit": total, "fit_dir": dirs, "window": (i0, i1),
            "err_atoms_cm2_s": err_atoms, "err_halves_cm2_s": err_halves,
            "halves_cm2_s": list(halves) if halves is not None else None}


def _half_run_diffusivities(disp: np.ndarray, t: np.ndarray, i0: int, i1: int) -> tuple[float, float] | None:
    """D* (cm²/s) of the first and of the second half of a run, each fitted on the lags [i0, min(i1, half − 1)].

    ``disp``: (T, N, 3) displacements (Å); ``t``: lag times (fs). Their difference measures the run-to-run scatter
    that a bootstrap over the atoms of one trajectory misses (few, collective hops): for two halves the standard
    error of the whole run's D is |D1 − D2| / 2. None when a half is too short for MIN_FIT_POINTS lags.
    """
    T = disp.shape[0]
    half = T // 2
    end = min(i1, half - 1)
    if end - i0 + 1 < MIN_FIT_POINTS:
        return None
    out = []
    for seg in (disp[:half], disp[half:2 * half]):
        m = msd_fft(seg - seg[0]).mean(axis=1).sum(axis=1)  # (half,) Å²
        slope, _ = _linear_fit(t[i0:end + 1], m[i0:end + 1])
        out.append(slope * A2_PER_FS_TO_CM2_PER_S / 6)
    return out[0], out[1]


def charge_diffusion(positions: np.ndarray, frame_interval_fs: float, window_fs: tuple[float, float],
                     n_blocks: int = _D.n_blocks, max_rel_err: float = HAVEN_MAX_REL_ERR,
                     max_lags: int = CHARGE_MAX_LAGS) -> dict[str, Any]:
    """Charge (collective) diffusivity D_σ = ⟨|Σ_i Δr_i|²⟩/(6 N t) of N like ions, in cm²/s, with a 1-σ error.

    ``positions``: (T, N, 3) unwrapped, drift-corrected, Å. The collective displacement R(t) = Σ_i Δr_i(t) gives
    one MSD curve over the whole run (FFT, all overlapping time origins), fitted by least squares on the lags
    of ``window_fs`` (at most ``max_lags`` of them, evenly spread) that end at m_max ≤ (T − 1)/(2 n_blocks + 1),
    so that ``n_blocks`` contiguous blocks of time origins are each at least 2 m_max long. The fitted slope is
    the mean over origins t ∈ [0, T − m_max) of g(t) = Σ_m w_m |R(t+m) − R(t)|²; its standard error is the
    standard deviation of the ``n_blocks`` block means of g over √n_blocks (block averaging, Flyvbjerg &
    Petersen 1989). Returns the estimate, its error, its relative error ``rel_err`` (inf when D_σ ≤ 0 or
    the window holds fewer than MIN_FIT_POINTS lags), the block values (as D_σ), the window used, the curve
    (``t_fs``, ``msd_A2`` = collective MSD / N) and ``reliable`` (rel_err ≤ ``max_rel_err`` and D_σ > 0).
    """
    T, N, _ = positions.shape
    nb = max(int(n_blocks), 2)
    R = (positions - positions[0]).sum(axis=1)  # (T, 3) collective displacement, Å
    t = np.arange(T) * frame_interval_fs
    curve = msd_fft(R).sum(axis=1)  # (T,) Å², all origins
    conv = A2_PER_FS_TO_CM2_PER_S / (6.0 * N)
    i0 = max(int(np.searchsorted(t, window_fs[0])), 1)
    m_cap = (T - 1) // (2 * nb + 1)
    i1 = min(int(np.searchsorted(t, window_fs[1], side="right")) - 1, m_cap)
    out: dict[str, Any] = {"t_fs": t, "msd_A2": curve / N, "n_blocks": nb, "max_lag_cap": int(m_cap),
                           "window_fs": (float(t[min(i0, T - 1)]), float(t[max(i1, 0)])), "window_lags": (i0, i1),
                           "method": (f"collective MSD over all time origins (FFT); 1-sigma error from {nb} blocks "
                                      "of time origins")}
    if i1 - i0 + 1 < MIN_FIT_POINTS:
        # the window does not fit: the run needs (2 n_blocks + 1) × (i0 + MIN_FIT_POINTS − 1) frames at least
        need = (2 * nb + 1) * (i0 + MIN_FIT_POINTS - 1) + 1
        out.update(diffusivity_cm2_s=float("nan"), diffusivity_err_cm2_s=float("nan"), rel_err=float("inf"),
                   block_values_cm2_s=[], reliable=False, frames_needed_at_least=int(need),
                   note=(f"run too short for the charge MSD: the diffusive window starts at lag {i0} but blocks "
                         f"allow lags up to {m_cap}"))
        return out
    lags = np.arange(i0, i1 + 1)
    if len(lags) > max_lags:
        lags = np.unique(np.linspace(i0, i1, max_lags).round().astype(int))
    tl = t[lags]
    A = np.vstack([tl, np.ones_like(tl)]).T
    w = np.linalg.pinv(A)[0]  # slope = w @ y
    slope = float(w @ curve[lags])  # Å²/fs
    n_orig = T - int(lags[-1])
    g = np.zeros(n_orig)
    for wk, m in zip(w, lags, strict=True):
        d = R[m:m + n_orig] - R[:n_orig]
        g += wk * np.einsum("ij,ij->i", d, d)
    bl = n_orig // nb
    block_means = g[:bl * nb].reshape(nb, bl).mean(axis=1)
    err = float(block_means.std(ddof=1) / np.sqrt(nb))
    D, Derr = slope * conv, err * conv
    rel = Derr / D if D > 0 else float("inf")
    out.update(diffusivity_cm2_s=D, diffusivity_err_cm2_s=Derr, rel_err=float(rel),
               block_values_cm2_s=(block_means * conv).tolist(),
               window_fs=(float(tl[0]), float(tl[-1])), window_lags=(int(lags[0]), int(lags[-1])),
               reliable=bool(D > 0 and rel <= max_rel_err))
    return out


def haven_ratio(d_tracer: float, d_tracer_err: float, d_charge: float, d_charge_err: float) -> tuple[float, float]:
    """H_R = D*/D_σ with first-order error propagation (independent errors)."""
    h = d_tracer / d_charge
    err = abs(h) * np.sqrt((d_tracer_err / d_tracer) ** 2 + (d_charge_err / d_charge) ** 2)
    return float(h), float(err)


# ----------------------------------------------------------------------------------------------------- checks
def final_structure_check(traj: Trajectory, mobile: np.ndarray, reference: Any = None,
                          n_frames: int = STRUCTURE_CHECK_FRAMES, atoms: np.ndarray | None = None,
                          label: str | None = None) -> dict[str, Any]:
    """Melting/collapse check (:func:`firemlip.analysis.structure.structure_check`, pyscal3) of a run's last frames.

    Only the framework sublattice (atoms not in the boolean mask ``mobile``) is compared, because the mobile
    sublattice of a superionic conductor is liquid-like by design; with no framework atoms all atoms are.
    ``n_frames`` frames evenly spread over the last fifth of the run are compared with ``reference`` (ASE Atoms
    of the starting structure, of which the same sublattice is taken) or, without one, with the run's first
    frame. A run is ``melted`` / ``collapsed`` when more than half of the checked frames carry that flag.

    ``atoms`` (a boolean mask over all atoms, e.g. the framework of one region) replaces the framework choice; the
    reference then must list the dump's atoms in order (else the first frame is the reference), and ``label``
    names the selection in the result.
    """
    from ase import Atoms

    from firemlip.analysis.structure import structure_check

    if traj.cells_A is None:
        return {"checked": False, "note": "no cell in the trajectory"}
    if atoms is not None:
        sub = np.asarray(atoms, bool)
        if not sub.any():
            return {"checked": False, "note": "no atoms selected for the structure check"}
        label = label or f"selected atoms ({', '.join(sorted(set(traj.elements[sub].tolist())))})"
    else:
        sub = ~mobile if (~mobile).any() else np.ones_like(mobile)
        label = (f"framework ({', '.join(sorted(set(traj.elements[sub].tolist())))})" if (~mobile).any()
                 else "all atoms (no framework)")
    mob = sorted(set(traj.elements[mobile].tolist()))
    T = len(traj.steps)
    idx = np.unique(np.linspace(int(0.8 * (T - 1)), T - 1, max(n_frames, 1)).round().astype(int))

    def frame(i: int) -> Atoms:
        return Atoms(traj.elements[sub].tolist(), positions=traj.positions[i, sub], cell=traj.cells_A[i], pbc=True)

    if atoms is not None:
        same = reference is not None and list(reference.get_chemical_symbols()) == traj.elements.tolist()
        ref, ref_src = (reference[np.flatnonzero(sub)], "given reference structure") if same else \
            (frame(0), "first frame of the run")
    elif reference is None:
        ref, ref_src = frame(0), "first frame of the run"
    else:
        keep = [k for k, e in enumerate(reference.get_chemical_symbols())
                if (e not in mob) or not (~mobile).any()]
        if not keep:
            return {"checked": False, "note": "reference structure has no framework atoms"}
        ref, ref_src = reference[keep], "given reference structure"
    try:
        rows = structure_check([frame(int(i)) for i in idx], ref)
    except Exception as exc:  # pyscal3 raises many types; the check is then reported as not done
        return {"checked": False, "note": f"structure check failed ({type(exc).__name__}: {exc})"}
    n = len(rows)
    q6_ref = rows[0]["reference"]["q6"]
    if not np.isfinite(q6_ref):
        return {"checked": False, "sublattice": label, "reference": ref_src,
                "note": f"{label} too sparse for a bond-order check (no neighbours within the "
                        f"{rows[0]['cutoff_A']:.2f} Å cut-off in the reference)"}
    melted = [r for r in rows if "melted" in r["flags"]]
    collapsed = [r for r in rows if "collapsed" in r["flags"]]
    return {"checked": True, "sublattice": label, "reference": ref_src, "frames": idx.tolist(),
            "steps": traj.steps[idx].tolist(), "q6": [r["q6"] for r in rows],
            "q6_reference": q6_ref, "cutoff_A": rows[0]["cutoff_A"], "flags": [r["flags"] for r in rows],
            "reasons": [r["reasons"] for r in rows], "n_melted": len(melted), "n_collapsed": len(collapsed),
            "melted": 2 * len(melted) > n, "collapsed": 2 * len(collapsed) > n}


def diffusion_validity(result: dict[str, Any]) -> list[str]:
    """Reasons why a ``diffusion.json`` content cannot be trusted (empty when it can).

    Checks: the MSD is diffusive (log–log slope in [DIFFUSIVE_SLOPE_MIN, DIFFUSIVE_SLOPE_MAX]), D > 0, the
    framework neither melted nor collapsed, σ within [SIGMA_MIN_S_CM, SIGMA_MAX_S_CM]. Works on results
    written before these keys existed (the missing ones are not checked).
    """
    reasons: list[str] = []
    a = result.get("loglog_exponent")
    if result.get("diffusive") is False or (a is not None and not is_diffusive(float(a))):
        reasons.append("MSD not diffusive: log-log slope " + (f"{a:.2f}" if a is not None else "?")
                       + f" in the fit window is outside {DIFFUSIVE_SLOPE_MIN:g}-{DIFFUSIVE_SLOPE_MAX:g} "
                       "(caged/vibrating atoms, ballistic motion or a too-short run)")
    D = result.get("diffusivity_cm2_s")
    if D is None or not D > 0:
        reasons.append(f"D = {D} cm^2/s is not positive")
    sc = result.get("structure_check") or {}
    if sc.get("melted") and sc.get("melted_by"):
        reasons.append(f"{sc.get('sublattice', 'structure')} melted: {sc['melted_by']}")
    elif sc.get("melted"):
        reasons.append(f"{sc.get('sublattice', 'structure')} melted or amorphised: {sc.get('n_melted')} of "
                       f"{len(sc.get('frames', []))} final frames lost bond order (q6 "
                       f"{np.mean(sc['q6']):.3f} vs {sc['q6_reference']:.3f} in the {sc.get('reference')})")
    if sc.get("collapsed"):
        first = next((r for f, r in zip(sc.get("flags", []), sc.get("reasons", []), strict=False)
                      if "collapsed" in f), [])
        reasons.append(f"{sc.get('sublattice', 'structure')} collapsed in {sc.get('n_collapsed')} of "
                       f"{len(sc.get('frames', []))} final frames ({'; '.join(first)})")
    c = (result.get("conductivity") or {}) if D is not None and D > 0 else {}
    for key in ("sigma_tracer_S_cm", "sigma_charge_S_cm"):
        v = c.get(key)
        if v is not None and not sigma_is_physical(v):
            reasons.append(f"{key} = {v:.3g} S/cm outside the physical range {SIGMA_MIN_S_CM:g}-"
                           f"{SIGMA_MAX_S_CM:g} S/cm")
    return reasons


# ----------------------------------------------------------------------------------------------------- stage
def analyze_diffusion(dumps: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], species: str,
                      temperature_K: float, timestep_fs: float, out_dir: str | os.PathLike[str], *,
                      elements: Sequence[str] | None = None, drift: str = _D.drift,
                      end_fraction: float = _D.end_fraction, tolerance: float = _D.tolerance,
                      window_fs: tuple[float, float] | None = None, n_bootstrap: int = _D.n_bootstrap,
                      n_blocks: int = _D.n_blocks, charge: float | None = None,
                      haven: float | None = None, haven_max_rel_err: float = HAVEN_MAX_REL_ERR,
                      reference: Any = None, check_structure: bool = True, region: str | None = None,
                      seed: int = _D.seed) -> dict[str, Any]:
    """Diffusion analysis of LAMMPS dumps; writes ``diffusion.json`` and ``msd.png`` in ``out_dir``.

    species: the mobile element; temperature_K: the run's temperature (K); timestep_fs: the MD time step (fs),
    frames are ``step`` numbers apart. drift: the centre of mass removed frame by frame — ``framework`` (the
    default: all atoms except ``species``, the reference of the literature and kinisi; falls back to ``system``
    when there are no such atoms, recorded in ``drift_correction``), ``system`` (the whole cell; it also
    removes part of the mobile ions' collective motion and so biases the charge MSD and H_R) or ``none``.

    The Haven ratio is computed from the charge MSD (:func:`charge_diffusion`, ``n_blocks`` blocks) when the
    relative error of D_σ is at most ``haven_max_rel_err``; otherwise ``haven_ratio`` is null, ``haven_source``
    says the charge MSD is too noisy and ``haven_required_duration_ps`` estimates the run length that would be
    needed — unless ``haven`` is given, which is then used and labelled "assumed (user value)". The result holds
    the Nernst–Einstein conductivity (see :func:`firemlip.analysis.conductivity.conductivity_from_diffusion`)
    when the species' formal charge is known or ``charge`` is given.

    With ``check_structure`` the framework of the final frames is compared with ``reference`` (ASE Atoms or a
    structure file; default: the first frame) by :func:`final_structure_check`. ``valid`` / ``invalid_reasons``
    follow :func:`diffusion_validity`. Returns the JSON content as a dict.

    ``region`` (:func:`parse_region`: ``substrate``, ``film``, ``z:LO:HI`` Å or ``zf:LO:HI``) restricts the
    analysis to the ``species`` atoms initially in that region of ``reference`` (e.g. the electrolyte slab of an
    interface, see :func:`select_region`): their MSD, D*, D_σ and Haven ratio, their number density in the region's
    volume (for σ), the drift reference (the region's non-mobile atoms when it has any) and the melting check (the
    region's framework, or all its atoms when it holds only the mobile species). The rest of the cell is checked
    too and reported as ``structure_check_outside`` (information, not a validity criterion).
    """
    _check_arguments(temperature_K, timestep_fs, drift, haven_max_rel_err)
    reference = _reference_atoms(reference)
    traj = read_dump(dumps, elements)
    return analyze_trajectory(traj, species, temperature_K, timestep_fs, out_dir, drift=drift,
                              end_fraction=end_fraction, tolerance=tolerance, window_fs=window_fs,
                              n_bootstrap=n_bootstrap, n_blocks=n_blocks, charge=charge, haven=haven,
                              haven_max_rel_err=haven_max_rel_err, reference=reference,
                              check_structure=check_structure, region=region, seed=seed)


def _check_arguments(temperature_K: float, timestep_fs: float, drift: str, haven_max_rel_err: float) -> None:
    """One-line errors for a missing/non-positive temperature (K) or time step (fs), an unknown drift reference or
    a non-positive Haven error threshold."""
    if temperature_K is None or not np.isfinite(temperature_K) or temperature_K <= 0:
        raise FiremlipError("diffusion: a positive temperature in K is required (--temperature)")
    if timestep_fs is None or timestep_fs <= 0:
        raise FiremlipError("diffusion: a positive MD time step in fs is required (--timestep-fs)")
    if drift not in DRIFT_CHOICES:
        raise FiremlipError(f"drift must be one of {', '.join(DRIFT_CHOICES)}, got {drift!r}")
    if not 0 < haven_max_rel_err:
        raise FiremlipError(f"haven_max_rel_err must be positive, got {haven_max_rel_err}")


def _reference_atoms(reference: Any) -> Any:
    """The reference structure as ASE Atoms (the first frame of a file), or as given."""
    if isinstance(reference, (str, os.PathLike)):
        from firemlip.io import read_frames

        return read_frames(reference, index=0, what="reference structure")[0]
    return reference


def analyze_trajectory(traj: Trajectory, species: str, temperature_K: float, timestep_fs: float,
                       out_dir: str | os.PathLike[str] | None = None, **options: Any) -> dict[str, Any]:
    """:func:`analyze_diffusion` of a :class:`Trajectory` already in memory (frames ``steps`` apart, each step
    ``timestep_fs`` fs); ``options`` are its keyword options (``drift``, ``window_fs``, ``n_bootstrap``, ...).

    Writes ``diffusion.json`` and ``msd.png`` into ``out_dir`` when one is given (then the result has
    ``"plot": "msd.png"``); with ``out_dir=None`` nothing is written. Returns the result dict.
    """
    result, tr, ch = _analyze(traj, species, temperature_K, timestep_fs, **options)
    if out_dir is not None:
        _write(result, tr, ch, Path(out_dir))
    return result


def _write(result: dict[str, Any], tr: dict[str, Any], ch: dict[str, Any], out: Path) -> None:
    """``msd.png`` and ``diffusion.json`` (with ``"plot": "msd.png"``) of a result into ``out``."""
    region = (result.get("region") or {}).get("spec")
    species = result["species"]
    out.mkdir(parents=True, exist_ok=True)
    plot_msd(tr, ch, species if region is None else f"{species} in {region}", result["temperature_K"],
             out / "msd.png", invalid=result["invalid_reasons"])
    result["plot"] = "msd.png"
    write_result(out / "diffusion.json", result)


def _analyze(traj: Trajectory, species: str, temperature_K: float, timestep_fs: float, *,
             drift: str = _D.drift, end_fraction: float = _D.end_fraction, tolerance: float = _D.tolerance,
             window_fs: tuple[float, float] | None = None, n_bootstrap: int = _D.n_bootstrap,
             n_blocks: int = _D.n_blocks,
             charge: float | None = None, haven: float | None = None,
             haven_max_rel_err: float = HAVEN_MAX_REL_ERR, reference: Any = None, check_structure: bool = True,
             region: str | None = None, seed: int = _D.seed) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The diffusion analysis of :func:`analyze_diffusion` on a trajectory: (result dict, tracer fit of
    :func:`tracer_diffusion`, charge fit of :func:`charge_diffusion`). Writes nothing."""
    from firemlip.analysis.conductivity import conductivity_from_diffusion

    _check_arguments(temperature_K, timestep_fs, drift, haven_max_rel_err)
    reference = _reference_atoms(reference)
    src = traj.sources[0]
    species_mask = _species_mask(traj, species, src)
    mask, framework, reg, in_region = species_mask, ~species_mask, None, None
    if region is not None:
        reg = select_region(region, traj, reference)
        in_region = reg.pop("mask")
        mask = species_mask & in_region
        if not mask.any():
            raise FiremlipError(f"region {region!r}: no {species} atom is initially in it")
        if (framework & in_region).any():
            framework = framework & in_region
    if len(traj.steps) < MIN_FRAMES:
        raise FiremlipError(f"{src}: too few frames for a fit ({len(traj.steps)}; need at least {MIN_FRAMES})")
    dsteps = np.diff(traj.steps)
    if np.any(dsteps <= 0) or np.any(dsteps != dsteps[0]):
        raise FiremlipError(f"{src}: frames are not evenly spaced in steps ({sorted(set(dsteps.tolist()))[:5]})")
    dt_frame = float(dsteps[0]) * timestep_fs
    used, drift_note = drift, None
    if drift == "framework" and not framework.any():
        used = "system"
        drift_note = (f"no framework atoms (only {species}): drift removed relative to the whole system "
                      "instead of the framework")
    if used == "system":
        pos = remove_drift(traj.positions, traj.masses)
    elif used == "framework":
        pos = remove_drift(traj.positions, traj.masses, framework)
    else:
        pos = traj.positions
    pos_all, pos = pos, pos[:, mask]
    tr = tracer_diffusion(pos, dt_frame, end_fraction=end_fraction, tolerance=tolerance, window_fs=window_fs,
                          n_bootstrap=n_bootstrap, seed=seed)
    f = tr["fit"]
    ch = charge_diffusion(pos, dt_frame, f.window_fs, n_blocks=n_blocks, max_rel_err=haven_max_rel_err)
    volume = float(traj.volumes_A3.mean()) * (reg["volume_fraction"] if reg is not None else 1.0)
    n_ions = int(mask.sum())
    density = n_ions / (volume * 1e-24) if np.isfinite(volume) and volume > 0 else None
    duration_ps = dt_frame * (len(traj.steps) - 1) / 1000.0
    result: dict[str, Any] = {
        "analysis": "diffusion",
        "dumps": traj.sources,
        "species": species,
        "temperature_K": float(temperature_K),
        "timestep_fs": float(timestep_fs),
        "frame_interval_fs": dt_frame,
        "n_frames": int(len(traj.steps)),
        "duration_ps": duration_ps,
        "n_ions": n_ions,
        "n_atoms": int(len(traj.elements)),
        "volume_A3": volume if density is not None else None,
        "number_density_cm3": density,
        "drift_requested": drift,
        "drift_correction": used,
        "fit_window_fs": list(f.window_fs),
        "loglog_exponent": f.loglog_exponent,
        "diffusive": f.diffusive,
        "diffusive_slope_range": [DIFFUSIVE_SLOPE_MIN, DIFFUSIVE_SLOPE_MAX],
        "diffusivity_cm2_s": f.diffusivity_cm2_s,
        "diffusivity_err_cm2_s": f.diffusivity_err_cm2_s,
        "uncertainty_method": (f"the larger of half the difference of the two half-run D values and a bootstrap "
                               f"over {n_ions} {species} atoms ({n_bootstrap} resamples), 1 sigma"),
        "diffusivity_err_atoms_cm2_s": tr["err_atoms_cm2_s"],
        "diffusivity_err_halves_cm2_s": tr["err_halves_cm2_s"],
        "diffusivity_halves_cm2_s": tr["halves_cm2_s"],
        "diffusivity_directional_cm2_s": {k: v.diffusivity_cm2_s for k, v in tr["fit_dir"].items()},
        "diffusivity_directional_err_cm2_s": {k: v.diffusivity_err_cm2_s for k, v in tr["fit_dir"].items()},
        "charge_diffusivity_cm2_s": ch["diffusivity_cm2_s"],
        "charge_diffusivity_err_cm2_s": ch["diffusivity_err_cm2_s"],
        "charge_diffusivity_rel_err": ch["rel_err"],
        "charge_diffusivity_blocks_cm2_s": ch["block_values_cm2_s"],
        "charge_fit_window_fs": list(ch["window_fs"]),
        "charge_uncertainty_method": ch["method"],
        "charge_msd_reliable": ch["reliable"],
        "haven_max_rel_err": haven_max_rel_err,
        "units": {"diffusivity": "cm^2/s", "time": "fs", "volume": "A^3", "number_density": "cm^-3",
                  "temperature": "K", "duration": "ps"},
    }
    if drift_note:
        result["drift_note"] = drift_note
    if reg is not None:
        rest = species_mask & ~in_region
        if rest.sum() >= 2:  # the other side of the interface: is its mobile species moving (a liquid metal …)?
            try:
                fo = tracer_diffusion(pos_all[:, rest], dt_frame, end_fraction=end_fraction, tolerance=tolerance,
                                      window_fs=window_fs, n_bootstrap=min(n_bootstrap, 50), seed=seed)["fit"]
                result["outside"] = {"n_ions": int(rest.sum()), "diffusivity_cm2_s": fo.diffusivity_cm2_s,
                                     "diffusivity_err_cm2_s": fo.diffusivity_err_cm2_s,
                                     "loglog_exponent": fo.loglog_exponent, "diffusive": fo.diffusive,
                                     "note": f"{species} atoms initially outside {region} (information only)"}
            except FiremlipError as exc:
                result["outside"] = {"note": str(exc)}
        result["region"] = {**reg, "n_ions": n_ions, "n_framework": int((framework & in_region).sum()),
                            "n_atoms": int(in_region.sum()), "cell_volume_A3": float(traj.volumes_A3.mean()),
                            "note": f"{species} atoms initially in {region}; volume_A3 and the number density "
                                    "are those of the region"}
    if not f.diffusive:
        result["warning"] = (f"MSD is not diffusive in the fit window (log-log slope {f.loglog_exponent:.2f}); "
                             "D is an upper bound or the run is too short")
    if ch["reliable"]:
        h, he = haven_ratio(f.diffusivity_cm2_s, f.diffusivity_err_cm2_s, ch["diffusivity_cm2_s"],
                            ch["diffusivity_err_cm2_s"])
        result.update(haven_ratio=h, haven_ratio_err=he, haven_source="computed from the charge MSD")
    else:
        rel = ch["rel_err"]
        if not np.isfinite(rel) and np.isfinite(ch["diffusivity_err_cm2_s"]) and f.diffusivity_cm2_s > 0:
            rel = ch["diffusivity_err_cm2_s"] / f.diffusivity_cm2_s  # D_σ ≤ 0: measure the noise against D*
        if np.isfinite(rel):
            need_ps = duration_ps * (rel / haven_max_rel_err) ** 2
            why = (f"charge MSD too noisy (D_sigma relative error {rel:.0%} > {haven_max_rel_err:.0%}); "
                   f"a run of about {need_ps:.3g} ps (now {duration_ps:.3g} ps) would be needed")
        else:
            need_ps = (ch.get("frames_needed_at_least", 0) - 1) * dt_frame / 1000.0
            why = (f"charge MSD too noisy: {ch.get('note', 'no estimate')}; a run of at least {need_ps:.3g} ps "
                   f"(now {duration_ps:.3g} ps) would be needed")
        result.update(haven_required_duration_ps=need_ps, haven_note=why)
        if haven is not None:
            result.update(haven_ratio=float(haven), haven_ratio_err=None, haven_source="assumed (user value)")
        else:
            result.update(haven_ratio=None, haven_ratio_err=None, haven_source=f"not computed: {why}")
    try:
        result["conductivity"] = conductivity_from_diffusion(result, charge=charge, haven=haven)
    except FiremlipError as exc:
        result["conductivity"] = None
        result["conductivity_note"] = str(exc)
    if check_structure and in_region is None:
        result["structure_check"] = final_structure_check(traj, mask, reference)
    elif check_structure:
        for key, sel, where in (("structure_check", in_region, f"region {region}"),
                                ("structure_check_outside", ~in_region, f"outside {region}")):
            if not sel.any() or (key.endswith("outside") and sel.sum() < MIN_CHECK_ATOMS):
                continue
            fw = sel & ~species_mask
            # the framework of the region; outside it only when it is not a sparse remnant (a z-range region
            # leaves a few framework atoms of the same slab outside): else all atoms outside
            atoms = fw if fw.any() and (key == "structure_check" or fw.sum() >= MIN_CHECK_ATOMS) else sel
            name = (f"framework of {where} ({', '.join(sorted(set(traj.elements[atoms].tolist())))})" if fw.any()
                    else f"all atoms of {where} ({', '.join(sorted(set(traj.elements[atoms].tolist())))})")
            result[key] = final_structure_check(traj, species_mask, reference, atoms=atoms, label=name)
            if not fw.any():  # only the mobile species: all its atoms diffusing means a liquid
                moving = result.get("outside") if key.endswith("outside") else \
                    {"diffusivity_cm2_s": f.diffusivity_cm2_s, "diffusive": f.diffusive}
                _liquid_by_diffusion(result[key], moving or {})
        out_sc = result.get("structure_check_outside") or {}
        if out_sc.get("melted"):
            why = out_sc.get("melted_by") or (f"q6 {np.mean(out_sc['q6']):.3f} vs {out_sc['q6_reference']:.3f}")
            result["outside_note"] = (f"{out_sc.get('sublattice')} melted or amorphised ({why}); the region's result "
                                      f"does not depend on it")
    reasons = diffusion_validity(result)
    result["valid"] = not reasons
    result["invalid_reasons"] = reasons
    return result, tr, ch


def _liquid_by_diffusion(check: dict[str, Any], moving: dict[str, Any]) -> None:
    """Mark a melt check of a selection without framework atoms as melted when its atoms diffuse like a liquid
    (diffusive MSD with D* >= :data:`LIQUID_MIN_D_CM2_S`); the reason is recorded in ``melted_by``."""
    D = moving.get("diffusivity_cm2_s")
    if not check.get("checked") or D is None or not moving.get("diffusive") or D < LIQUID_MIN_D_CM2_S:
        return
    check["melted"] = True
    check["melted_by"] = (f"every atom is of the mobile species and they diffuse with D* = {D:.2g} cm²/s "
                          f">= {LIQUID_MIN_D_CM2_S:g} cm²/s: liquid-like, whatever the bond order")


def plot_msd(tr: dict[str, Any], ch: dict[str, Any], species: str, temperature_K: float,
             path: str | os.PathLike[str], invalid: Sequence[str] = ()) -> None:
    """MSD (total, per direction, charge MSD per ion) vs time with the fit window shaded; ``invalid`` reasons
    are written in red on the plot."""
    plt = mpl()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    t_ps = tr["t_fs"] / 1000.0
    ax.plot(t_ps, tr["msd_A2"], "k-", lw=1.5, label=f"{species} MSD")
    for j, k in enumerate(_DIRS):
        ax.plot(t_ps, 3 * tr["msd_dir_A2"][:, j], lw=0.8, alpha=0.7, label=f"3×MSD$_{k}$")
    f = tr["fit"]
    if ch.get("msd_A2") is not None:
        keep = ch["t_fs"] <= f.window_fs[1]  # beyond the tracer window the one collective walker is too noisy
        ax.plot(ch["t_fs"][keep] / 1000.0, ch["msd_A2"][keep], lw=0.8, color="gray", ls="--",
                label="charge MSD / N")
        if np.isfinite(ch.get("diffusivity_cm2_s", np.nan)):
            w0, w1 = ch["window_fs"]
            ax.axvspan(w0 / 1000.0, w1 / 1000.0, color="gray", alpha=0.15, label="charge fit window")
    ax.axvspan(f.window_fs[0] / 1000.0, f.window_fs[1] / 1000.0, color="C2", alpha=0.15, label="fit window")
    tt = np.linspace(f.window_fs[0], f.window_fs[1], 50)
    i0, i1 = tr["window"]
    slope, icpt = _linear_fit(tr["t_fs"][i0:i1 + 1], tr["msd_A2"][i0:i1 + 1])
    ax.plot(tt / 1000.0, slope * tt + icpt, "r--", lw=1.2,
            label=f"D = {f.diffusivity_cm2_s:.3g} ± {f.diffusivity_err_cm2_s:.2g} cm²/s")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("MSD (Å²)")
    ax.set_title(f"{species} at {temperature_K:g} K" + (" — INVALID" if invalid else ""),
                 color="red" if invalid else "black")
    if invalid:
        ax.text(0.02, 0.98, "\n".join(r[:90] for r in invalid), transform=ax.transAxes, va="top", fontsize=6,
                color="red")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------- Python API
class MSDCurve(NamedTuple):
    """An MSD curve: lag times (fs) and the mean squared displacement (Å²) at each."""

    time_fs: np.ndarray
    msd_A2: np.ndarray


#: Keyword options of :meth:`DiffusionAnalysis.run` (those of :func:`analyze_diffusion` after its out_dir).
ANALYSIS_OPTIONS = ("drift", "end_fraction", "tolerance", "window_fs", "n_bootstrap", "n_blocks", "charge", "haven",
                    "haven_max_rel_err", "reference", "check_structure", "region", "seed")


@dataclass
class DiffusionResult:
    """What :meth:`DiffusionAnalysis.run` returns.

    ``D_cm2_s`` ± ``D_err_cm2_s``: tracer diffusivity D* (cm²/s, 1-σ bootstrap over atoms); ``msd``: the tracer MSD
    (``time_fs``, ``msd_A2``); ``charge_msd``: the collective MSD per ion (same units); ``window_fs``: the fit
    window (fs); ``haven_ratio`` ± ``haven_ratio_err``: H_R = D*/D_σ (None when the charge MSD is too noisy and none
    was given); ``sigma_S_cm`` ± ``sigma_err_S_cm``: the Nernst–Einstein conductivity with that Haven ratio (S/cm,
    None without a Haven ratio or a cell volume); ``sigma_tracer_S_cm``: the same with H_R = 1; ``valid`` /
    ``invalid_reasons`` (:func:`diffusion_validity`); ``data``: the full result dict (the content of
    ``diffusion.json``, also reachable as ``result["key"]``); ``out_dir``: where the files were written (None: nowhere).
    """

    D_cm2_s: float
    D_err_cm2_s: float
    msd: MSDCurve
    window_fs: tuple[float, float]
    haven_ratio: float | None
    haven_ratio_err: float | None
    sigma_S_cm: float | None
    valid: bool
    invalid_reasons: list[str]
    data: dict[str, Any]
    sigma_err_S_cm: float | None = None
    sigma_tracer_S_cm: float | None = None
    charge_msd: MSDCurve | None = None
    out_dir: Path | None = None
    _curves: tuple[dict[str, Any], dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_analysis(cls, data: dict[str, Any], tr: dict[str, Any], ch: dict[str, Any],
                      out_dir: Path | None = None) -> DiffusionResult:
        """Build the result from :func:`_analyze`'s (result dict, tracer fit, charge fit)."""
        cond = data.get("conductivity") or {}
        f = tr["fit"]
        return cls(D_cm2_s=float(f.diffusivity_cm2_s), D_err_cm2_s=float(f.diffusivity_err_cm2_s),
                   msd=MSDCurve(tr["t_fs"], tr["msd_A2"]), window_fs=tuple(f.window_fs),
                   haven_ratio=data.get("haven_ratio"), haven_ratio_err=data.get("haven_ratio_err"),
                   sigma_S_cm=cond.get("sigma_charge_S_cm"), valid=bool(data["valid"]),
                   invalid_reasons=list(data["invalid_reasons"]), data=data,
                   sigma_err_S_cm=cond.get("sigma_charge_err_S_cm"),
                   sigma_tracer_S_cm=cond.get("sigma_tracer_S_cm"),
                   charge_msd=MSDCurve(ch["t_fs"], ch["msd_A2"]), out_dir=out_dir, _curves=(tr, ch))

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None) -> Any:
        """``data.get(key, default)``."""
        return self.data.get(key, default)

    def keys(self) -> Any:
        """The keys of ``data``."""
        return self.data.keys()

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Write the MSD plot (as ``msd.png`` of :func:`analyze_diffusion`) to ``path`` (PNG) and return it."""
        if self._curves is None:
            raise FiremlipError("this DiffusionResult holds no MSD curves to plot")
        region = (self.data.get("region") or {}).get("spec")
        species = self.data["species"]
        plot_msd(*self._curves, species if region is None else f"{species} in {region}", self.data["temperature_K"],
                 path, invalid=self.invalid_reasons)
        return Path(path)


class DiffusionAnalysis:
    """Tracer/charge diffusion of one run, kinisi-style: build it from dumps, arrays or an MDAnalysis Universe,
    then :meth:`run` it::

        res = DiffusionAnalysis.from_dump("dump.lammpstrj", "Li", 600.0, timestep_fs=1.0).run()
        res.D_cm2_s, res.D_err_cm2_s, res.haven_ratio, res.sigma_S_cm, res.valid

    ``options`` given here are the defaults of :meth:`run` (:data:`ANALYSIS_OPTIONS`: ``drift``, ``window_fs``
    (fs), ``n_bootstrap``, ``charge`` (e), ``haven``, ``reference``, ``region``, ``seed``, ... as in
    :func:`analyze_diffusion`). Frames are ``trajectory.steps`` apart, each step ``timestep_fs`` fs.
    """

    def __init__(self, trajectory: Trajectory, species: str, temperature_K: float, timestep_fs: float,
                 **options: Any) -> None:
        self.trajectory = trajectory
        self.species = species
        self.temperature_K = temperature_K
        self.timestep_fs = timestep_fs
        self.options = self._checked(options)
        _check_arguments(temperature_K, timestep_fs, self.options.get("drift", DEFAULT_DRIFT),
                         self.options.get("haven_max_rel_err", HAVEN_MAX_REL_ERR))

    @staticmethod
    def _checked(options: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(options) - set(ANALYSIS_OPTIONS))
        if bad:
            raise FiremlipError(f"diffusion: unknown option(s) {', '.join(bad)} (known: {', '.join(ANALYSIS_OPTIONS)})")
        return dict(options)

    @classmethod
    def from_dump(cls, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], species: str,
                  temperature_K: float, timestep_fs: float, elements: Sequence[str] | None = None,
                  **kw: Any) -> DiffusionAnalysis:
        """From LAMMPS text dumps (consecutive segments of one run, unwrapped coordinates; see :func:`read_dump`);
        ``timestep_fs``: the MD time step (fs), ``elements``: symbols of types 1, 2, ... without an element column."""
        _check_arguments(temperature_K, timestep_fs, kw.get("drift", DEFAULT_DRIFT),
                         kw.get("haven_max_rel_err", HAVEN_MAX_REL_ERR))
        cls._checked(kw)
        return cls(read_dump(paths, elements), species, temperature_K, timestep_fs, **kw)

    @classmethod
    def from_positions(cls, positions_A: Any, elements: Sequence[str], frame_interval_fs: float,
                       temperature_K: float, species: str, cells_A: Any = None, masses: Sequence[float] | None = None,
                       **kw: Any) -> DiffusionAnalysis:
        """From arrays: ``positions_A`` (n_frames × n_atoms × 3, unwrapped, Å) ``frame_interval_fs`` fs apart,
        ``elements`` (one symbol per atom), ``cells_A`` (one (3, 3) cell or one per frame, Å; without it no number
        density, σ or melting check), ``masses`` (amu, default ASE's)."""
        if frame_interval_fs is None or not frame_interval_fs > 0:
            raise FiremlipError("diffusion: a positive frame interval in fs is required")
        traj = trajectory_from_positions(positions_A, elements, cells_A, masses)
        return cls(traj, species, temperature_K, float(frame_interval_fs), **kw)

    @classmethod
    def from_universe(cls, universe: Any, species: str, temperature_K: float, *, timestep_fs: float | None = None,
                      frame_interval_fs: float | None = None, elements: Sequence[str] | None = None,
                      **kw: Any) -> DiffusionAnalysis:
        """From an MDAnalysis ``Universe`` whose positions are unwrapped (Å) — e.g. a LAMMPS dump with ``xu yu zu``,
        or a wrapped trajectory with ``MDAnalysis.transformations.NoJump`` added.

        Time between frames: ``timestep_fs`` × the step difference when given (steps from ``ts.data['step']``, as
        LAMMPS dumps carry), else ``frame_interval_fs``, else the trajectory's ``dt`` (ps → fs). Elements from the
        topology's ``elements``, else ``elements`` in type order (types 1, 2, ...).
        """
        from ase.data import atomic_numbers

        atoms = universe.atoms
        try:
            elem = [str(e) for e in atoms.elements]
        except AttributeError:  # MDAnalysis' NoDataError is an AttributeError
            elem = []
        if not elem or not all(e.capitalize() in atomic_numbers for e in elem):
            if not elements:
                raise FiremlipError("diffusion: the Universe has no element symbols; give elements=[...] in type order")
            types = [int(t) for t in atoms.types]
            if max(types) > len(elements):
                raise FiremlipError(f"diffusion: atom type {max(types)} but only {len(elements)} elements given")
            elem = [elements[t - 1] for t in types]
        elem = [e.capitalize() for e in elem]
        pos, steps, vols, cells = _universe_frames(universe)
        if not pos:
            raise FiremlipError("diffusion: the Universe's trajectory has no frames")
        if timestep_fs is not None:
            dt = float(timestep_fs)
        else:
            steps = list(range(len(pos)))
            dt = float(frame_interval_fs) if frame_interval_fs is not None else float(universe.trajectory.dt) * 1000.0
        name = getattr(universe, "filename", None) or getattr(universe.trajectory, "filename", None) or "<universe>"
        has_cell = bool(np.all(np.isfinite(vols)))
        traj = trajectory_from_positions(np.asarray(pos), elem, np.asarray(cells) if has_cell else None,
                                         steps=steps, source=str(name))
        return cls(traj, species, temperature_K, dt, **kw)

    def run(self, out_dir: str | os.PathLike[str] | None = None, **options: Any) -> DiffusionResult:
        """Analyse the run (:func:`analyze_diffusion`'s analysis; ``options`` override the constructor's).

        With ``out_dir`` writes ``diffusion.json`` and ``msd.png`` there (the same content as
        :func:`analyze_diffusion`); with ``out_dir=None`` (the default) nothing is written — the MSD curves stay in
        the result (``res.plot(path)`` draws ``msd.png`` on demand).
        """
        opts = {**self.options, **self._checked(options)}
        data, tr, ch = _analyze(self.trajectory, self.species, self.temperature_K, self.timestep_fs, **opts)
        out = Path(out_dir) if out_dir is not None else None
        if out is not None:
            _write(data, tr, ch, out)
        return DiffusionResult.from_analysis(data, tr, ch, out)
