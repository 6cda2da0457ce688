"""Import existing first-principles data into the canonical ``REF_*`` extended XYZ.

Readers: VASP ``OUTCAR`` and ``vasprun.xml`` (every ionic step), DeePMD ``npy`` systems (``type.raw``,
``type_map.raw``, ``set.*/{box,coord,energy,force,virial}.npy``; stress = −virial / volume, eV/Å³), and
extended XYZ with arbitrary key names (``--energy-key`` …). Units: eV, eV/Å, eV/Å³ (ASE sign convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from firemlip.errors import FiremlipError, InputFileError
from firemlip.io import read_frames, set_labels


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


def _parse_type_map(type_map: str | Sequence[str] | None, where: str) -> list[str] | None:
    """``"Li,Ge,P,S"`` or a list → checked element symbols; None passes through."""
    from ase.data import chemical_symbols

    if type_map is None:
        return None
    names = [t.strip() for t in (type_map.replace(",", " ").split() if isinstance(type_map, str) else type_map)]
    names = [t for t in names if t]
    if not names:
        raise FiremlipError(f"{where}: empty type map (expected element symbols, e.g. Li,Ge,P,S)")
    bad = [t for t in names if t not in chemical_symbols[1:]]
    if bad:
        raise FiremlipError(f"{where}: unknown element {bad[0]!r} in the type map (expected element symbols, "
                            f"e.g. Li,Ge,P,S)")
    return names


def read_deepmd(directory: str | Path, type_map: str | Sequence[str] | None = None) -> list[Atoms]:
    """Frames of a DeePMD ``npy`` system directory (energies eV, forces eV/Å, stress = −virial/V eV/Å³).

    ``type_map`` (e.g. ``"Li,Ge,P,S"``) names the element of each type index of ``type.raw``; it is needed for
    systems without ``type_map.raw`` (DP-GEN's ``data.init`` keeps the map in its ``param.json``) and overrides the
    file when both are there. Indices may be sparse (``type.raw`` using 0, 2, 4, 5 of a longer map).
    """
    d = Path(directory)
    if not (d / "type.raw").exists():
        raise InputFileError(f"{d}: not a DeePMD system (missing type.raw)")
    names = _parse_type_map(type_map, "--type-map")
    if names is None:
        if not (d / "type_map.raw").exists():
            raise InputFileError(f"{d}: DeePMD system without type_map.raw: give the elements of its type "
                                 f"indices with --type-map (e.g. --type-map Li,Ge,P,S)")
        names = _parse_type_map((d / "type_map.raw").read_text().split(), f"{d / 'type_map.raw'}")
    try:
        types = np.loadtxt(d / "type.raw", dtype=int, ndmin=1)
    except ValueError as exc:
        raise InputFileError(f"{d / 'type.raw'}: expected one integer type index per atom ({exc})") from None
    if types.size == 0 or types.min() < 0 or types.max() >= len(names):
        raise InputFileError(f"{d / 'type.raw'}: type index {int(types.max()) if types.size else '?'} has no "
                             f"element in the type map {','.join(names)} ({len(names)} entries)")
    symbols = [names[t] for t in types]
    sets = sorted(p for p in d.glob("set.*") if p.is_dir())
    if not sets:
        raise InputFileError(f"{d}: DeePMD system has no set.* directories")
    n = len(types)
    frames: list[Atoms] = []
    for sd in sets:
        try:
            box = np.load(sd / "box.npy").reshape(-1, 3, 3)
            coord = np.load(sd / "coord.npy").reshape(-1, n, 3)
            energy = np.load(sd / "energy.npy").reshape(-1)
            force = np.load(sd / "force.npy").reshape(-1, n, 3) if (sd / "force.npy").exists() else None
            virial = np.load(sd / "virial.npy").reshape(-1, 3, 3) if (sd / "virial.npy").exists() else None
        except FileNotFoundError as exc:
            raise InputFileError(f"{sd}: missing {Path(exc.filename).name}") from None
        except ValueError as exc:
            raise InputFileError(f"{sd}: arrays do not match {n} atoms from type.raw ({exc})") from None
        if not (len(box) == len(coord) == len(energy)) or (force is not None and len(force) != len(energy)):
            raise InputFileError(f"{sd}: box/coord/energy/force hold different numbers of frames "
                                 f"({len(box)}/{len(coord)}/{len(energy)}/{'-' if force is None else len(force)})")
        for k in range(len(energy)):
            a = Atoms(symbols, positions=coord[k], cell=box[k], pbc=True)
            stress = None
            if virial is not None:
                stress = -virial[k] / a.get_volume()
            set_labels(a, float(energy[k]), None if force is None else force[k], stress)
            a.info["source"] = f"{d.name}/{sd.name}:{k}"
            a.info["config_type"] = "deepmd"
            frames.append(a)
    return frames


def deepmd_systems(root: str | Path) -> list[Path]:
    """Every DeePMD system (a directory with ``type.raw`` and ``set.*``) at or below ``root``, sorted."""
    r = Path(root)
    return sorted({x.parent for x in r.rglob("type.raw") if any(x.parent.glob("set.*"))})


def import_paths(paths: Sequence[str], energy_key: str = "energy", forces_key: str = "forces",
                 stress_key: str = "stress", stress_unit: float = 1.0,
                 type_map: str | Sequence[str] | None = None,
                 report: dict[str, int] | None = None) -> list[Atoms]:
    """Read every path (OUTCAR, vasprun.xml, DeePMD system or a tree of them, extxyz) into ``REF_*`` frames.

    A directory imports every DeePMD system found in it (as dpdata does); ``type_map`` names the type indices of
    systems that lack ``type_map.raw``. ``report``, when given, receives the frame count of each system/file.
    """
    out: list[Atoms] = []
    counts: dict[str, int] = {} if report is None else report
    for p in paths:
        pp = Path(p)
        if pp.is_dir():
            systems = deepmd_systems(pp)
            if not systems:
                raise InputFileError(f"{p}: directory holds no DeePMD system (type.raw with set.*)")
            for s in systems:
                frames = read_deepmd(s, type_map)
                if s != pp:
                    rel = s.relative_to(pp).as_posix()
                    for a in frames:
                        a.info["source"] = f"{rel}/{a.info['source'].split('/', 1)[1]}"
                counts[str(s)] = len(frames)
                out.extend(frames)
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
        got = _from_ase_frames(frames, p, energy_key, forces_key, stress_key, stress_unit)
        counts[str(pp)] = len(got)
        out.extend(got)
    return out
