"""Structures stage: read input structures, build solid–solid interfaces, and make perturbed copies.

Readers go through ASE (CIF, POSCAR/CONTCAR, extended XYZ, LAMMPS data). Interfaces use pymatgen's
``CoherentInterfaceBuilder`` (Zur–McGill lattice matching); perturbations are seeded Gaussian displacements
(Å) plus random symmetric cell strains (dimensionless), with a species-aware minimum-distance filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from firemlip.errors import FiremlipError
from firemlip.io import read_frames
from firemlip.options import InterfaceOptions, PerturbOptions

#: Minimum allowed distance between two atoms, as a fraction of the sum of their covalent radii.
#: defaults defined once, in :mod:`firemlip.options`
_PERTURB, _IFACE = PerturbOptions(), InterfaceOptions()
DEFAULT_MIN_DIST_FACTOR = _PERTURB.min_dist_factor


def read_structures(paths: Sequence[str], index: str = ":") -> list[Atoms]:
    """Read every frame of every file (CIF, POSCAR/CONTCAR, extxyz, LAMMPS data); records ``source`` in info."""
    out: list[Atoms] = []
    for p in paths:
        frames = read_frames(p, index=index)
        for i, a in enumerate(frames):
            for s in set(a.get_chemical_symbols()):
                if s not in atomic_numbers or atomic_numbers[s] == 0:
                    raise FiremlipError(f"{p}: frame {i} has an unknown element {s!r}")
            a.info.setdefault("source", f"{Path(p).name}:{i}")
        out.extend(frames)
    return out


def min_distance_threshold(sym_a: str, sym_b: str, factor: float = DEFAULT_MIN_DIST_FACTOR) -> float:
    """Species-aware minimum distance (Å): ``factor`` × (covalent radius A + covalent radius B)."""
    return factor * (covalent_radii[atomic_numbers[sym_a]] + covalent_radii[atomic_numbers[sym_b]])


def too_close(atoms: Atoms, factor: float = DEFAULT_MIN_DIST_FACTOR) -> tuple[bool, float]:
    """Whether any pair is closer than its species-aware threshold; also the smallest ratio d / threshold."""
    from ase.neighborlist import neighbor_list

    if len(atoms) < 2:
        return False, np.inf
    radii = covalent_radii[atoms.numbers]
    cutoff = float(2 * factor * radii.max()) + 1e-6
    i, j, d = neighbor_list("ijd", atoms, cutoff, self_interaction=False)
    if len(d) == 0:
        return False, np.inf
    ratio = d / (factor * (radii[i] + radii[j]))
    r = float(ratio.min())
    return r < 1.0, r


def perturb(atoms: Atoms, n: int = _PERTURB.n_configs, rattle: float = _PERTURB.rattle,
            strain: float = _PERTURB.strain, seed: int = _PERTURB.seed,
            min_dist_factor: float = DEFAULT_MIN_DIST_FACTOR, max_redraws: int = 1000) -> tuple[list[Atoms], int]:
    """``n`` perturbed copies of ``atoms``.

    Each copy gets a random symmetric strain ε (entries uniform in ±``strain``, applied to the cell with
    scaled positions kept) and Gaussian displacements of standard deviation ``rattle`` (Å). Copies with a
    pair closer than ``min_dist_factor`` × (sum of covalent radii) are redrawn. Returns (frames, redraws).
    """
    if n <= 0:
        raise FiremlipError(f"n_configs: expected a positive integer, got {n}")
    if rattle < 0 or strain < 0:
        raise FiremlipError("rattle and strain must be non-negative (Å and fraction)")
    rng = np.random.default_rng(seed)
    frames: list[Atoms] = []
    redraws = 0
    while len(frames) < n:
        a = atoms.copy()
        a.calc = None
        if any(a.pbc) and strain > 0:
            eps = rng.uniform(-strain, strain, size=(3, 3))
            eps = 0.5 * (eps + eps.T)
            a.set_cell(a.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            a.info["strain_voigt"] = np.array([eps[0, 0], eps[1, 1], eps[2, 2], eps[1, 2], eps[0, 2], eps[0, 1]])
        if rattle > 0:
            a.positions += rng.normal(0.0, rattle, size=a.positions.shape)
        bad, _ = too_close(a, min_dist_factor)
        if bad:
            redraws += 1
            if redraws > max_redraws:
                raise FiremlipError(f"perturb: more than {max_redraws} redraws; rattle={rattle} Å is too large "
                                    f"for this structure (or the input already has atoms too close)")
            continue
        a.info["config_type"] = "perturbed"
        a.info["perturb_index"] = len(frames)
        a.info["rattle_A"] = rattle
        a.info["strain_max"] = strain
        a.info["seed"] = seed
        a.info.setdefault("source", atoms.info.get("source", "input"))
        frames.append(a)
    return frames, redraws


@dataclass
class InterfaceReport:
    """Lattice match of an interface: in-plane mismatch (%) and strain applied to each side (%)."""

    film_miller: tuple[int, int, int]
    substrate_miller: tuple[int, int, int]
    n_atoms: int
    area_A2: float
    mismatch_percent: list[float]
    film_von_mises_strain_percent: float
    substrate_strain_percent: float
    termination: list[str]
    #: atoms removed by ``vacancies``: their index in the complete interface, element, slab, bulk Wyckoff letter
    #: and position (Å)
    vacancies: list[dict[str, Any]] = field(default_factory=list)


def parse_vacancy(text: str) -> tuple[str, str, str | None]:
    """``SLAB:ELEMENT[:WYCKOFF]`` (e.g. ``substrate:Li:c``) as (slab, element, Wyckoff letter or None)."""
    parts = [x.strip() for x in str(text).split(":")]
    if len(parts) not in (2, 3) or parts[0] not in ("substrate", "film") or parts[1] not in atomic_numbers:
        raise FiremlipError(f"vacancy {text!r}: expected SLAB:ELEMENT[:WYCKOFF] with SLAB substrate or film, "
                            f"e.g. substrate:Li:c")
    return parts[0], parts[1], (parts[2] or None) if len(parts) == 3 else None


def make_vacancies(atoms: Atoms, vacancies: Sequence[str]) -> tuple[Atoms, list[dict[str, Any]]]:
    """Remove one atom per ``SLAB:ELEMENT[:WYCKOFF]`` entry: the matching atom nearest the slab's mid-plane.

    ``SLAB`` is ``substrate`` or ``film`` (the ``interface_label`` of :func:`build_interface`), ``WYCKOFF`` the
    Wyckoff letter of the atom's site in its bulk crystal (e.g. ``c`` for Li(2) of Li3N, the site of its native
    vacancies). Candidates are ranked by their distance (Å, along the stacking axis) from the middle of their
    slab's z range, ties (within 0.01 Å) by index, so the choice is deterministic. Vacancies are bulk-like
    defects away from both interfaces; a slab with no matching atom is an error.
    """
    labels = atoms.arrays.get("interface_label")
    if labels is None:
        raise FiremlipError("vacancies need an interface built by build_interface (no interface_label array)")
    wyck = atoms.arrays.get("bulk_wyckoff")
    keep = np.ones(len(atoms), dtype=bool)
    removed: list[dict[str, Any]] = []
    z = atoms.positions[:, 2]
    sym = np.asarray(atoms.get_chemical_symbols())
    for text in vacancies:
        slab, element, letter = parse_vacancy(text)
        in_slab = np.asarray(labels) == slab
        ok = in_slab & (sym == element) & keep
        if letter is not None:
            if wyck is None:
                raise FiremlipError(f"vacancy {text!r}: the interface has no bulk_wyckoff array")
            ok &= np.asarray(wyck).astype(str) == letter
        if not ok.any():
            raise FiremlipError(f"vacancy {text!r}: no {element} atom{' on Wyckoff ' + letter if letter else ''} "
                                f"left in the {slab} slab")
        mid = 0.5 * (z[in_slab].min() + z[in_slab].max())
        cand = np.flatnonzero(ok)
        dist = np.round(np.abs(z[cand] - mid), 2)
        i = int(cand[np.lexsort((cand, dist))[0]])
        keep[i] = False
        removed.append({"index": i, "element": element, "slab": slab,
                        "wyckoff": str(wyck[i]) if wyck is not None else None,
                        "position_A": [round(float(x), 4) for x in atoms.positions[i]]})
    out = atoms[keep]
    out.info = dict(atoms.info)
    return out, removed


def build_interface(substrate: Atoms, film: Atoms, substrate_miller: tuple[int, int, int] = _IFACE.substrate_miller,
                    film_miller: tuple[int, int, int] = _IFACE.film_miller,
                    substrate_layers: int = _IFACE.substrate_layers, film_layers: int = _IFACE.film_layers,
                    gap_A: float = _IFACE.gap_A, vacuum_A: float = _IFACE.vacuum_A,
                    max_mismatch: float = _IFACE.max_mismatch, max_area_A2: float = _IFACE.max_area_A2,
                    max_atoms: int = _IFACE.max_atoms, vacancies: Sequence[str] = ()) -> tuple[Atoms, InterfaceReport]:
    """Stack a film slab on a substrate slab along z with pymatgen's coherent interface builder.

    In-plane supercells are chosen by Zur–McGill lattice matching with length tolerance ``max_mismatch``
    (fraction); the film takes the strain, the substrate keeps its lattice. Among the matches, the smallest
    cell with at most ``max_atoms`` atoms is returned, with ``gap_A`` (Å) between the slabs and ``vacuum_A``
    (Å) above the film (0 gives a periodic superlattice with a second interface). ``vacancies``
    (``SLAB:ELEMENT[:WYCKOFF]`` entries, see :func:`make_vacancies`) then removes atoms from the middle of a slab;
    ``max_atoms`` applies to the complete interface.
    """
    from pymatgen.analysis.interfaces.coherent_interfaces import CoherentInterfaceBuilder
    from pymatgen.analysis.interfaces.zsl import ZSLGenerator
    from pymatgen.io.ase import AseAtomsAdaptor

    ad = AseAtomsAdaptor()
    zsl = ZSLGenerator(max_area_ratio_tol=0.09, max_area=max_area_A2, max_length_tol=max_mismatch,
                       max_angle_tol=0.01, bidirectional=True)
    try:
        builder = CoherentInterfaceBuilder(ad.get_structure(substrate), ad.get_structure(film),
                                           tuple(film_miller), tuple(substrate_miller), zslgen=zsl)
    except Exception as exc:  # pymatgen raises ValueError/IndexError on impossible requests
        raise FiremlipError(f"interface: cannot match {film_miller} on {substrate_miller}: {exc}") from None
    if not builder.zsl_matches or not builder.terminations:
        raise FiremlipError(f"interface: no lattice match within {max_mismatch:.1%} mismatch and "
                            f"{max_area_A2} Å² area; raise max_mismatch or max_area_A2")
    best: tuple[Any, Any] | None = None
    # with no vacuum the cell is a periodic superlattice: the second (periodic) interface gets the same gap
    over_film = vacuum_A if vacuum_A > 0 else gap_A
    for term in builder.terminations:
        gen = builder.get_interfaces(term, gap=gap_A, vacuum_over_film=over_film,
                                     film_thickness=film_layers, substrate_thickness=substrate_layers)
        for k, iface in enumerate(gen):
            if len(iface) <= max_atoms and (best is None or len(iface) < len(best[0])):
                best = (iface, term)
            if k >= 50:  # matches come roughly by increasing area; the smallest cells are among the first
                break
    if best is None:
        raise FiremlipError(f"interface: every match has more than {max_atoms} atoms; lower the layer counts "
                            f"or raise max_atoms")
    iface, term = best
    props = iface.interface_properties
    fv = np.asarray(props["film_sl_vectors"], dtype=float)
    sv = np.asarray(props["substrate_sl_vectors"], dtype=float)
    mismatch = [float(100 * (np.linalg.norm(fv[k]) / np.linalg.norm(sv[k]) - 1)) for k in range(2)]
    atoms = ad.get_atoms(iface)
    atoms.info = {"config_type": "interface", "source": "build_interface"}
    removed: list[dict[str, Any]] = []
    if vacancies:
        atoms, removed = make_vacancies(atoms, vacancies)
        atoms.info["vacancies"] = " ".join(f"{v['element']}{v['index']}" for v in removed)
    rep = InterfaceReport(tuple(film_miller), tuple(substrate_miller), len(atoms),
                          float(np.linalg.norm(np.cross(sv[0], sv[1]))), mismatch,
                          float(100 * props["von_mises_strain"]), 0.0, [str(t) for t in term], removed)
    return atoms, rep
