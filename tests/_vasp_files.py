"""Write small VASP ``OUTCAR`` and ``vasprun.xml`` files in the layout VASP itself prints.

Only the blocks that readers of VASP output use are written (species, ions per type, lattice, positions and total
forces, energies, stress in kB), with VASP's own units and sign conventions, so that an importer is tested on the
same text it meets in real runs. Inputs are in ASE conventions: energies eV, forces eV/Å, stress eV/Å³ (ASE sign,
Voigt xx yy zz yz xz xy); the writers convert stress to VASP's kB with the opposite sign.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.units import GPa

KBAR_PER_EV_A3 = 1.0 / (0.1 * GPa)  # 1 eV/Å³ = 1602.18 kB


def _species_blocks(atoms: Atoms) -> tuple[list[str], list[int]]:
    """Element order and counts as in a POSCAR (atoms of one element must be contiguous)."""
    syms = atoms.get_chemical_symbols()
    order: list[str] = []
    counts: list[int] = []
    for s in syms:
        if order and order[-1] == s:
            counts[-1] += 1
        else:
            assert s not in order, "atoms of one element must be contiguous, as VASP orders them"
            order.append(s)
            counts.append(1)
    return order, counts


def _vasp_stress_kbar(stress_voigt_ev_a3: np.ndarray) -> np.ndarray:
    """ASE Voigt stress (eV/Å³) → VASP's 3×3 stress in kB (VASP prints −σ: positive = compressive)."""
    xx, yy, zz, yz, xz, xy = np.asarray(stress_voigt_ev_a3, dtype=float)
    s = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return -s * KBAR_PER_EV_A3


def write_outcar(path: str | Path, frames: Sequence[Atoms], energies_eV: Sequence[float],
                 forces_eV_A: Sequence[np.ndarray], stresses_ev_a3: Sequence[np.ndarray],
                 free_energy_offset_eV: float = 0.01) -> Path:
    """An OUTCAR of one ionic step per frame. ``energy(sigma->0)`` = energy; TOTEN = energy + offset."""
    order, counts = _species_blocks(frames[0])
    lines = [" vasp.6.3.2 18Feb22 (build Mar 01 2022) complex", ""]
    lines += [f"   POTCAR:    PAW_PBE {s} 06Sep2000" for s in order] * 2
    lines += ["   ISPIN  =      1    spin polarized calculation?",
              f"   ions per type =  {'  '.join(str(c) for c in counts)}",
              "   Dimension of arrays:",
              "   k-points           NKPTS =      1   k-points in BZ     NKDIM =      1   number of bands    NBANDS= 16",
              "",
              " k-points in reciprocal lattice and weights: KPOINTS created by firemlip tests",
              "   0.00000000  0.00000000  0.00000000       1.000", ""]
    for a, e, f, s in zip(frames, energies_eV, forces_eV_A, stresses_ev_a3, strict=True):
        k = _vasp_stress_kbar(s)
        lines += ["", "--------------------------------------- Iteration      1(   1)  ---------------------------------------",
                  "  FORCE on cell =-STRESS in cart. coord.  units (eV):",
                  f"  in kB  {k[0, 0]:12.5f}{k[1, 1]:12.5f}{k[2, 2]:12.5f}{k[0, 1]:12.5f}{k[1, 2]:12.5f}{k[0, 2]:12.5f}",
                  "",
                  " VOLUME and BASIS-vectors are now :",
                  f"  volume of cell :      {a.get_volume():.2f}",
                  "      direct lattice vectors                 reciprocal lattice vectors"]
        rec = np.linalg.inv(a.cell.array).T
        for i in range(3):
            c, r = a.cell.array[i], rec[i]
            lines.append(f"    {c[0]:13.9f}{c[1]:13.9f}{c[2]:13.9f}    {r[0]:13.9f}{r[1]:13.9f}{r[2]:13.9f}")
        lines += ["", " POSITION                                       TOTAL-FORCE (eV/Angst)",
                  " -----------------------------------------------------------------------------------"]
        for p, fv in zip(a.positions, np.asarray(f), strict=True):
            lines.append(f"     {p[0]:12.5f}{p[1]:12.5f}{p[2]:12.5f}     {fv[0]:14.6f}{fv[1]:14.6f}{fv[2]:14.6f}")
        lines += [" -----------------------------------------------------------------------------------",
                  "", "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)", "  ---------------------------------------------------",
                  f"  free  energy   TOTEN  =     {e + free_energy_offset_eV:18.8f} eV", "",
                  f"  energy  without entropy=    {e + 2 * free_energy_offset_eV:18.8f}  energy(sigma->0) =    {e:18.8f}",
                  ""]
    p = Path(path)
    p.write_text("\n".join(lines) + "\n")
    return p


def write_vasprun(path: str | Path, frames: Sequence[Atoms], energies_eV: Sequence[float],
                  forces_eV_A: Sequence[np.ndarray], stresses_ev_a3: Sequence[np.ndarray]) -> Path:
    """A vasprun.xml with one ``<calculation>`` per frame; e_0_energy = e_fr_energy = energy (eV)."""
    def varray(name: str, rows: np.ndarray) -> str:
        body = "".join(f"    <v> {r[0]:16.8f} {r[1]:16.8f} {r[2]:16.8f} </v>\n" for r in rows)
        return f'   <varray name="{name}" >\n{body}   </varray>\n'

    def structure(a: Atoms, name: str | None = None) -> str:
        tag = f'<structure name="{name}" >' if name else "<structure>"
        return (f"  {tag}\n   <crystal>\n{varray('basis', a.cell.array)}   </crystal>\n"
                f"{varray('positions', a.get_scaled_positions(wrap=False))}  </structure>\n")

    syms = frames[0].get_chemical_symbols()
    atoms_rows = "".join(f"    <rc><c>{s:2s}</c><c>   1</c></rc>\n" for s in syms)
    out = ['<?xml version="1.0" encoding="ISO-8859-1"?>\n<modeling>\n',
           ' <parameters>\n  <separator name="electronic" >\n   <i name="PREC">normal</i>\n  </separator>\n'
           ' </parameters>\n',
           ' <kpoints>\n  <generation param="Gamma" >\n   <v type="int" name="divisions">  1 1 1 </v>\n  </generation>\n'
           '  <varray name="kpointlist" >\n   <v> 0.0 0.0 0.0 </v>\n  </varray>\n'
           '  <varray name="weights" >\n   <v> 1.0 </v>\n  </varray>\n </kpoints>\n',
           f' <atominfo>\n  <atoms>{len(syms)}</atoms>\n  <array name="atoms" >\n   <dimension dim="1">ion</dimension>\n'
           f'   <field type="string">element</field>\n   <field type="int">atomtype</field>\n   <set>\n{atoms_rows}'
           '   </set>\n  </array>\n </atominfo>\n',
           structure(frames[0], "initialpos")]
    for a, e, f, s in zip(frames, energies_eV, forces_eV_A, stresses_ev_a3, strict=True):
        items = (f'    <i name="e_fr_energy"> {e:16.8f} </i>\n    <i name="e_wo_entrp"> {e:16.8f} </i>\n'
                 f'    <i name="e_0_energy"> {e:16.8f} </i>\n')
        out.append(f" <calculation>\n  <scstep>\n   <energy>\n{items}   </energy>\n  </scstep>\n{structure(a)}"
                   f"{varray('forces', np.asarray(f))}{varray('stress', _vasp_stress_kbar(s))}"
                   f"  <energy>\n{items}  </energy>\n </calculation>\n")
    out.append("</modeling>\n")
    p = Path(path)
    p.write_text("".join(out))
    return p
