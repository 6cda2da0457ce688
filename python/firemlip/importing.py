"""Import existing first-principles data into the canonical ``REF_*`` extended XYZ.

Readers: VASP ``OUTCAR`` and ``vasprun.xml`` (every ionic step), DeePMD ``npy`` systems (``type.raw``,
``type_map.raw``, ``set.*/{box,coord,energy,force,virial}.npy``; stress = −virial / volume, eV/Å³), and
extended XYZ with arbitrary key names (``--energy-key`` …). Units: eV, eV/Å, eV/Å³ (ASE sign convention).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from firemlip.errors import FiremlipError, InputFileError
from firemlip.io import read_frames, set_labels, write_frames


def _calc_results(a: Atoms) -> dict:
    return dict(getattr(a.calc, "results", {}) or {}) if a.calc is not None else {}


def _from_ase_frames(frames: Sequence[Atoms], path: str, energy_key: str = "energy",
                     forces_key: str = "forces", stress_key: str = "stress",
                     stress_unit: float = 1.0) -> list[Atoms]:
    """Move energy/forces/stress found under the given keys (info, arrays or calculator) to ``REF_*``."""
    out = []
    for i, a in enumerate(frames):
        res = _calc_results(a)
        e = a.info.get(energy_key, res.get(energy_key if energy_key != "energy" else "energy"))
        if e is None and energy_key == "energy":
            e = res.get("free_energy")
        if e is None:
            raise FiremlipError(f"{path}: frame {i} has no energy under key {energy_key!r} "
                                f"(info keys: {', '.join(sorted(a.info)) or 'none'})")
        f = a.arrays.get(forces_key)
        if f is None:
            f = res.get(forces_key)
        s = a.info.get(stress_key)
        if s is None:
            s = res.get(stress_key)
        b = Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)
        b.info = {k: v for k, v in a.info.items() if k not in (energy_key, stress_key)}
        stress = None
        if s is not None:
            s = np.asarray(s, dtype=float) * stress_unit
            stress = s.reshape(3, 3) if s.size == 9 else s.reshape(6)
        set_labels(b, float(e), None if f is None else np.asarray(f, dtype=float), stress)
        b.info.setdefault("source", f"{Path(path).name}:{i}")
        b.info.setdefault("config_type", str(a.info.get("group", "imported")))
        out.append(b)
    return out


def read_deepmd(directory: str | Path) -> list[Atoms]:
    """Frames of a DeePMD ``npy`` system directory (energies eV, forces eV/Å, stress = −virial/V eV/Å³)."""
    d = Path(directory)
    for need in ("type.raw", "type_map.raw"):
        if not (d / need).exists():
            raise InputFileError(f"{d}: not a DeePMD system (missing {need})")
    types = np.loadtxt(d / "type.raw", dtype=int, ndmin=1)
    type_map = (d / "type_map.raw").read_text().split()
    sets = sorted(d.glob("set.*"))
    if not sets:
        raise InputFileError(f"{d}: DeePMD system has no set.* directories")
    n = len(types)
    frames: list[Atoms] = []
    for sd in sets:
        try:
            box = np.load(sd / "box.npy").reshape(-1, 3, 3)
            coord = np.load(sd / "coord.npy").reshape(-1, n, 3)
            energy = np.load(sd / "energy.npy").reshape(-1)
        except FileNotFoundError as exc:
            raise InputFileError(f"{sd}: missing {Path(exc.filename).name}") from None
        except ValueError as exc:
            raise InputFileError(f"{sd}: arrays do not match {n} atoms from type.raw ({exc})") from None
        force = np.load(sd / "force.npy").reshape(-1, n, 3) if (sd / "force.npy").exists() else None
        virial = np.load(sd / "virial.npy").reshape(-1, 3, 3) if (sd / "virial.npy").exists() else None
        for k in range(len(energy)):
            a = Atoms([type_map[t] for t in types], positions=coord[k], cell=box[k], pbc=True)
            stress = None
            if virial is not None:
                stress = -virial[k] / a.get_volume()
            set_labels(a, float(energy[k]), None if force is None else force[k], stress)
            a.info["source"] = f"{d.name}/{sd.name}:{k}"
            a.info["config_type"] = "deepmd"
            frames.append(a)
    return frames


def import_paths(paths: Sequence[str], energy_key: str = "energy", forces_key: str = "forces",
                 stress_key: str = "stress", stress_unit: float = 1.0) -> list[Atoms]:
    """Read every path (OUTCAR, vasprun.xml, DeePMD directory, extxyz) into frames with ``REF_*`` labels."""
    out: list[Atoms] = []
    for p in paths:
        pp = Path(p)
        if pp.is_dir():
            if (pp / "type.raw").exists():
                out.extend(read_deepmd(pp))
            else:
                systems = sorted({x.parent for x in pp.rglob("type.raw")})
                if not systems:
                    raise InputFileError(f"{p}: directory holds no DeePMD system (type.raw)")
                for s in systems:
                    out.extend(read_deepmd(s))
            continue
        if not pp.exists():
            raise InputFileError(f"{p}: input file not found")
        name = pp.name.lower()
        if "outcar" in name:
            frames = read_frames(p, what="VASP OUTCAR")
        elif name.endswith(".xml"):
            frames = read_frames(p, what="vasprun.xml")
        else:
            frames = read_frames(p, what="extended XYZ file")
        out.extend(_from_ase_frames(frames, p, energy_key, forces_key, stress_key, stress_unit))
    return out


def _cmd_import(args: argparse.Namespace) -> int:
    frames = import_paths(args.paths, args.energy_key, args.forces_key, args.stress_key, args.stress_unit)
    write_frames(args.output, frames)
    print(f"imported {len(frames)} frames → {args.output}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import OUTCAR / vasprun.xml / DeePMD npy / extxyz into REF_* extxyz")
    p.add_argument("paths", nargs="+")
    p.add_argument("--energy-key", default="energy", help="extxyz info key of the energy (eV)")
    p.add_argument("--forces-key", default="forces", help="extxyz array key of the forces (eV/Å)")
    p.add_argument("--stress-key", default="stress", help="extxyz info key of the stress")
    p.add_argument("--stress-unit", type=float, default=1.0,
                   help="factor converting the stored stress to eV/Å³ (e.g. -1/1602.1766 for VASP kBar)")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_import)
