"""Reading and writing frames in the project's exchange format (extended XYZ with ``REF_*`` labels).

Conventions (see DESIGN.md): ``REF_energy`` in eV (``atoms.info``), ``REF_forces`` in eV/Å (``atoms.arrays``),
``REF_stress`` in eV/Å³ with ASE's sign convention, Voigt order xx yy zz yz xz xy (``atoms.info``).
Every write goes to a temporary file in the destination directory and is renamed into place, so an
interrupted write never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from firemlip.errors import FiremlipError, InputFileError, require_file

ENERGY_KEY = "REF_energy"
FORCES_KEY = "REF_forces"
STRESS_KEY = "REF_stress"


def current_umask() -> int:
    """The process's file-mode creation mask (e.g. 0o022), read without changing it where the OS allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS …): read by setting and restoring
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """Mode a plain ``open(path, "w")`` would give a new file: 0o666 without the umask bits (0o644 at umask 022)."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    The file that lands at ``path`` gets the mode a normal write would give it (0o666 minus the umask), not the
    0o600 of :func:`tempfile.mkstemp`, so that exported models and data stay readable by a group on a cluster.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suf = suffix if suffix is not None else "".join(dest.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=suf, dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):
            os.chmod(tmp, default_file_mode())
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_frames(path: str | os.PathLike[str], index: str | int = ":", what: str = "structure file") -> list[Atoms]:
    """Read all frames of any ASE-readable file (extxyz, CIF, POSCAR, LAMMPS data …) as a list.

    Raises a one-line :class:`InputFileError` when the file is missing, empty or unreadable.
    """
    from ase.io import read

    require_file(path, what)
    p = os.fspath(path)
    if os.path.getsize(p) == 0:
        raise InputFileError(f"{p}: {what} is empty")
    try:
        frames = read(p, index=index, **_format_kwargs(p))
    except Exception as exc:  # ASE raises many exception types for malformed files
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(f"{p}: cannot read {what} ({msg})") from None
    if isinstance(frames, Atoms):
        frames = [frames]
    frames = list(frames)
    if not frames:
        raise InputFileError(f"{p}: {what} holds no structures")
    return frames


def _format_kwargs(path: str) -> dict:
    name = os.path.basename(path).lower()
    if name.endswith((".data", ".lmp", ".lammps")) or name.startswith("data."):
        return {"format": "lammps-data", "atom_style": "atomic"}
    if name.startswith(("poscar", "contcar")) or name.endswith(".vasp"):
        return {"format": "vasp"}
    return {}


def write_frames(path: str | os.PathLike[str], frames: Sequence[Atoms] | Atoms) -> Path:
    """Write frames to extended XYZ atomically. Calculator results are not written (labels live in ``REF_*``)."""
    from ase.io import write

    if isinstance(frames, Atoms):
        frames = [frames]
    out = []
    for a in frames:
        b = a.copy()
        b.calc = None
        out.append(b)
    dest = Path(path)
    with atomic_path(dest, suffix=".extxyz") as tmp:
        write(tmp, out, format="extxyz")
    return dest


def has_labels(atoms: Atoms, forces: bool = True) -> bool:
    """True when ``atoms`` carries ``REF_energy`` (and ``REF_forces`` when ``forces``)."""
    ok = ENERGY_KEY in atoms.info
    if forces:
        ok = ok and FORCES_KEY in atoms.arrays
    return ok


def require_labels(frames: Sequence[Atoms], path: str, forces: bool = True, stress: bool = False) -> None:
    """Raise a one-line error naming ``path`` and the first frame that lacks a required ``REF_*`` key."""
    for i, a in enumerate(frames):
        if ENERGY_KEY not in a.info:
            raise FiremlipError(f"{path}: frame {i} has no {ENERGY_KEY} (eV); label it with `firemlip label` "
                                f"or import it with `firemlip import --energy-key`")
        if forces and FORCES_KEY not in a.arrays:
            raise FiremlipError(f"{path}: frame {i} has no {FORCES_KEY} (eV/Å) per-atom array")
        if stress and STRESS_KEY not in a.info:
            raise FiremlipError(f"{path}: frame {i} has no {STRESS_KEY} (eV/Å³)")


def set_labels(atoms: Atoms, energy: float, forces: np.ndarray | None = None,
               stress: np.ndarray | None = None) -> Atoms:
    """Store reference labels on ``atoms`` under the canonical keys (eV, eV/Å, eV/Å³ Voigt-6, ASE sign)."""
    atoms.info[ENERGY_KEY] = float(energy)
    if forces is not None:
        atoms.arrays[FORCES_KEY] = np.asarray(forces, dtype=float).reshape(len(atoms), 3)
    if stress is not None:
        s = np.asarray(stress, dtype=float)
        if s.shape == (3, 3):
            s = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        atoms.info[STRESS_KEY] = s.reshape(6)
    return atoms


def structure_hash(atoms: Atoms) -> str:
    """sha256 of numbers, positions (Å, rounded to 1e-6), cell and pbc — a stable key for caches.

    The rounding makes the key insensitive to last-bit differences between machines (and to the precision
    of extended XYZ files), so labels made on one machine are found again on another.
    """
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update((np.round(np.asarray(atoms.positions, dtype=float), 6) + 0.0).tobytes())
    h.update((np.round(np.asarray(atoms.cell.array, dtype=float), 6) + 0.0).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def elements_of(frames: Sequence[Atoms]) -> list[str]:
    """Sorted chemical symbols present in ``frames``."""
    return sorted({s for a in frames for s in a.get_chemical_symbols()})


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy values, tuples and paths converted to plain JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except Exception:
            pass
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically with numpy values converted."""
    write_text_atomic(path, json.dumps(jsonable(data), indent=2) + "\n")


@dataclass
class LabelResult:
    """Result of labelling one frame: energy (eV), forces (eV/Å), stress (eV/Å³ Voigt-6) or an error."""

    index: int
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    error: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
