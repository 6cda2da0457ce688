"""Labelling stage: first-principles (or any ASE calculator) energies, forces and stresses for frames.

Labels are stored as ``REF_energy`` (eV), ``REF_forces`` (eV/Å) and ``REF_stress`` (eV/Å³, ASE sign, Voigt-6).
Each finished frame is cached on disk under a key made of the structure hash and the calculator settings, so
an interrupted run resumes without repeating or losing frames; a frame whose calculation fails is written to
``failed.extxyz`` with the reason and the run goes on. Frames run one a task, in this process, in a local
process pool (``workers``) or on an existing Dask distributed cluster (``dask_address``).

Built-in calculators: ``gpaw`` (PBE plane waves; the open first-principles labeller), ``vasp`` and
``espresso`` (through ASE; they need the user's binaries), ``emt`` and ``lj`` (cheap, for tests),
``mace:PATH`` (a MACE model as labeller) and ``python:module:function`` (any ASE calculator factory); worker
teachers (``sevenn``, ``chgnet``, ``worker:...``, :mod:`firemlip.teachers`). A calculator is one entry of the
registry: :func:`register_calculator` (name or ``prefix:``, factory, optionally its elements).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from firemlip.errors import FiremlipError
from firemlip.io import LabelResult, read_frames, set_labels, structure_hash, write_frames, write_text_atomic

EMT_ELEMENTS = frozenset({"H", "C", "N", "O", "Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"})
#: GPAW defaults: PBE, plane-wave cut-off (eV), k-point density (points per Å⁻¹), Fermi–Dirac width (eV).
GPAW_DEFAULTS: dict[str, Any] = {"xc": "PBE", "ecut_eV": 350.0, "kpt_density": 2.5, "smearing_eV": 0.1}


# ------------------------------------------------------------------------------------- calculators
def _gpaw_setup_dirs() -> list[Path]:
    env = os.environ.get("GPAW_SETUP_PATH", "")
    dirs = [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [Path("/usr/share/gpaw-setups"), Path.home() / ".gpaw" / "gpaw-setups"]
    return [d for d in dirs if d.is_dir()]


def _mace_elements(path: str) -> list[str]:
    """Chemical symbols a saved MACE model was trained for (read from its ``atomic_numbers`` buffer)."""
    import torch

    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
        zs = [int(z) for z in model.atomic_numbers]
    except Exception as exc:
        raise FiremlipError(f"{path}: not a MACE model file ({type(exc).__name__})") from None
    return [chemical_symbols[z] for z in zs]


#: a calculator factory: (the name as given, a fresh copy of its settings, the frame or None) → an ASE calculator
CalculatorFactory = Callable[[str, dict[str, Any], "Atoms | None"], Any]
#: what a calculator can label: (the name as given, its settings) → chemical symbols, or None when unknowable
ElementsOf = Callable[[str, Mapping[str, Any]], "set[str] | None"]


@dataclass(frozen=True)
class CalculatorEntry:
    """A registered calculator: its factory, optionally the elements it supports, and how its name is written in
    messages (``usage``, e.g. ``mace:PATH``)."""

    factory: CalculatorFactory
    elements: ElementsOf | None = None
    usage: str = ""


#: the registry, in registration order: exact names (``emt``) and prefixes ending in ``:`` (``mace:``)
_CALCULATORS: dict[str, CalculatorEntry] = {}


def register_calculator(name: str, factory: CalculatorFactory, elements: ElementsOf | None = None,
                        usage: str | None = None) -> None:
    """Make ``name`` known to :func:`make_calculator`: an exact name (``emt``) or a prefix ending in ``:``
    (``mace:`` serves ``mace:PATH``). ``elements`` tells :func:`supported_elements` what it can label; ``usage``
    is how messages write it (default ``name``). Registering a name again replaces it."""
    _CALCULATORS[name] = CalculatorEntry(factory, elements, usage or name)


def calculator_names() -> list[str]:
    """The registered calculators as messages list them (``gpaw``, …, ``mace:PATH``, ``python:module:function``)."""
    return [e.usage for e in _CALCULATORS.values()]


def _calculator_entry(name: str) -> CalculatorEntry | None:
    """The registry entry serving ``name``: its exact name, else the prefix it starts with."""
    if name in _CALCULATORS:
        return _CALCULATORS[name]
    for key, entry in _CALCULATORS.items():
        if key.endswith(":") and name.startswith(key):
            return entry
    return None


def supported_elements(name: str, settings: Mapping[str, Any] | None = None) -> set[str] | None:
    """Elements a calculator can label, or None when it cannot be known in advance (vasp, espresso, python)."""
    entry = _calculator_entry(name)
    if entry is None or entry.elements is None:
        return None
    return entry.elements(name, dict(settings or {}))


def make_calculator(name: str, settings: Mapping[str, Any] | None = None, atoms: Atoms | None = None):
    """Build an ASE calculator from a name and settings (``atoms`` lets GPAW pick k-points from its cell).

    Names: those of :func:`register_calculator` (``gpaw``, ``vasp``, ``espresso``, ``emt``, ``lj``,
    ``mace:PATH``, ``python:module:function``) and worker teachers (``sevenn``, ``chgnet``, ``worker:...``)."""
    s = dict(settings or {})
    entry = _calculator_entry(name)
    if entry is not None:
        return entry.factory(name, s, atoms)
    if _is_worker(name):  # a teacher in its own interpreter (firemlip.teachers)
        from firemlip.teachers import worker_calculator

        return worker_calculator(name, s)
    raise FiremlipError(f"calculator {name!r}: unknown; expected one of {', '.join(calculator_names())}")


# ---- the built-in calculators
def _emt(name: str, s: dict[str, Any], atoms: Atoms | None):
    """ASE's EMT (cheap; for tests)."""
    from ase.calculators.emt import EMT

    return EMT(**s)


def _lj(name: str, s: dict[str, Any], atoms: Atoms | None):
    """ASE's Lennard-Jones: σ 2.5 Å, ε 0.05 eV, cut-off 3σ, smooth, unless set."""
    from ase.calculators.lj import LennardJones

    s.setdefault("sigma", 2.5)
    s.setdefault("epsilon", 0.05)
    s.setdefault("rc", 3.0 * float(s["sigma"]))
    s.setdefault("smooth", True)
    return LennardJones(**s)


def _gpaw(name: str, s: dict[str, Any], atoms: Atoms | None):
    """GPAW over :data:`GPAW_DEFAULTS`: plane waves (``mode`` pw, ``ecut_eV``) or LCAO (dzp), k-points by density
    (Γ only for a non-periodic ``atoms``), Fermi–Dirac smearing (eV)."""
    os.environ.setdefault("GPAW_SETUP_PATH", "/usr/share/gpaw-setups")
    try:
        from gpaw import GPAW, PW
    except ImportError:
        raise FiremlipError("calculator gpaw: GPAW is not installed; run `make setup`") from None
    p = {**GPAW_DEFAULTS, **s}
    periodic = atoms is None or bool(np.all(atoms.pbc))
    kpts: Any = {"density": float(p.pop("kpt_density")), "gamma": True} if periodic else (1, 1, 1)
    mode = str(p.pop("mode", "pw"))
    kw = {k: v for k, v in p.items() if k not in ("ecut_eV", "smearing_eV")}
    kw.setdefault("txt", None)
    if mode == "lcao":  # atomic-orbital basis: much cheaper, no stress
        kw.setdefault("basis", "dzp")
        calc_mode: Any = "lcao"
    elif mode == "pw":
        calc_mode = PW(float(p["ecut_eV"]))
    else:
        raise FiremlipError(f"calculator gpaw: mode {mode!r}: expected pw or lcao")
    return GPAW(mode=calc_mode, kpts=kpts,
                occupations={"name": "fermi-dirac", "width": float(p["smearing_eV"])}, **kw)


def _gpaw_elements(name: str, settings: Mapping[str, Any]) -> set[str]:
    """Elements with a GPAW setup for the settings' functional (or LDA) in the setup directories."""
    xc = str(settings.get("xc", GPAW_DEFAULTS["xc"]))
    found: set[str] = set()
    for d in _gpaw_setup_dirs():
        for f in d.iterdir():
            parts = f.name.split(".")
            if len(parts) >= 2 and parts[1] in (xc, "LDA") and parts[0] in chemical_symbols:
                found.add(parts[0])
    return found


def _vasp(name: str, s: dict[str, Any], atoms: Atoms | None):
    """VASP through ASE (PBE, 520 eV, k-spacing 0.25 Å⁻¹ … unless set); needs the user's binary and POTCARs."""
    if not (s.get("command") or os.environ.get("ASE_VASP_COMMAND") or os.environ.get("VASP_COMMAND")
            or os.environ.get("VASP_SCRIPT")):
        raise FiremlipError("calculator vasp: set ASE_VASP_COMMAND (e.g. 'mpirun vasp_std') or pass "
                            "--set command=...; VASP_PP_PATH must point at the POTCARs")
    from ase.calculators.vasp import Vasp

    s.setdefault("xc", "PBE")
    s.setdefault("encut", 520)
    s.setdefault("kspacing", 0.25)
    s.setdefault("ismear", 0)
    s.setdefault("sigma", 0.05)
    s.setdefault("ediff", 1e-6)
    return Vasp(**s)


def _espresso(name: str, s: dict[str, Any], atoms: Atoms | None):
    """Quantum ESPRESSO through ASE (``pseudopotentials`` required; k-spacing 0.25 Å⁻¹, forces and stress)."""
    if "pseudopotentials" not in s:
        raise FiremlipError("calculator espresso: --set pseudopotentials={Li: li.UPF, ...} is required "
                            "(and pseudo_dir / command as needed)")
    from ase.calculators.espresso import Espresso, EspressoProfile

    cmd = s.pop("command", os.environ.get("ASE_ESPRESSO_COMMAND", "pw.x"))
    pseudo_dir = s.pop("pseudo_dir", os.environ.get("ESPRESSO_PSEUDO", "."))
    s.setdefault("kspacing", 0.25)
    s.setdefault("tprnfor", True)
    s.setdefault("tstress", True)
    return Espresso(profile=EspressoProfile(command=cmd, pseudo_dir=pseudo_dir), **s)


def _mace(name: str, s: dict[str, Any], atoms: Atoms | None):
    """``mace:PATH``: a MACE model as labeller (``device`` default cpu, ``dtype`` default float64)."""
    from mace.calculators import MACECalculator

    path = name[5:]
    return MACECalculator(model_paths=path, device=str(s.get("device", "cpu")),
                          default_dtype=str(s.get("dtype", "float64")))


def _python(name: str, s: dict[str, Any], atoms: Atoms | None):
    """``python:module:function``: any ASE calculator factory, called with the settings as keywords."""
    parts = name.split(":")
    if len(parts) != 3:
        raise FiremlipError(f"calculator {name!r}: expected python:module:function")
    try:
        mod = importlib.import_module(parts[1])
    except ImportError as exc:
        raise FiremlipError(f"calculator {name!r}: cannot import module {parts[1]!r} ({exc})") from None
    fn = getattr(mod, parts[2], None)
    if not callable(fn):
        raise FiremlipError(f"calculator {name!r}: {parts[1]} has no callable {parts[2]!r}")
    return fn(**s)


register_calculator("gpaw", _gpaw, _gpaw_elements)
register_calculator("vasp", _vasp)
register_calculator("espresso", _espresso)
register_calculator("emt", _emt, lambda name, settings: set(EMT_ELEMENTS))
register_calculator("lj", _lj, lambda name, settings: set(chemical_symbols[1:]))
register_calculator("mace:", _mace, lambda name, settings: set(_mace_elements(name[5:])), usage="mace:PATH")
register_calculator("python:", _python, usage="python:module:function")
#: the built-in calculator names (not the prefixes), e.g. to tell a name from a file name
BUILTIN = tuple(k for k in _CALCULATORS if not k.endswith(":"))


def validate_calculator(name: str, settings: Mapping[str, Any], frames: Sequence[Atoms], path: str) -> None:
    """Refuse, before any work, an unknown calculator or a frame element it cannot label (one-line errors)."""
    known = _calculator_entry(name) is not None
    if _is_worker(name):
        from firemlip.teachers import resolve_teacher

        resolve_teacher(name, settings)  # one-line error when its environment/interpreter is missing
        return
    if not known:
        make_calculator(name, settings)  # raises the unknown-name error
    if name.startswith("mace:") and not Path(name[5:]).exists():
        raise FiremlipError(f"calculator {name!r}: model file {name[5:]} not found")
    sup = supported_elements(name, settings)
    if sup is None:
        return
    present = {s for a in frames for s in a.get_chemical_symbols()}
    missing = sorted(present - sup)
    if missing:
        raise FiremlipError(f"{path}: element(s) {', '.join(missing)} not supported by calculator {name!r} "
                            f"(it supports {', '.join(sorted(sup)) if len(sup) < 40 else 'other elements'})")


def _is_worker(name: str) -> bool:
    """True for teachers served by a worker interpreter: ``sevenn``, ``chgnet``, ``worker:PYTHON:MODULE:FN``."""
    from firemlip.teachers import is_worker_name

    return is_worker_name(name)


# ------------------------------------------------------------------------------------- one frame
def calculator_key(name: str, settings: Mapping[str, Any]) -> str:
    """A stable hash of the calculator name and settings (part of each cache key)."""
    text = json.dumps({"name": name, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def frame_key(atoms: Atoms, calc_key: str) -> str:
    """Cache key of one frame under one calculator."""
    return hashlib.sha256((structure_hash(atoms) + calc_key).encode()).hexdigest()[:24]


def label_one(index: int, atoms: Atoms, name: str, settings: Mapping[str, Any]) -> LabelResult:
    """Compute energy, forces and (for 3D-periodic cells, where supported) stress; never raises."""
    t0 = time.time()
    a = atoms.copy()
    try:
        if name == "gpaw":
            # one BLAS thread per frame: OpenBLAS threads spin and slow GPAW several-fold on a shared machine;
            # parallelism comes from --workers (one frame per process)
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=int(settings.get("blas_threads", 1))):
                return _label_one(index, a, name, {k: v for k, v in settings.items() if k != "blas_threads"}, t0)
        return _label_one(index, a, name, settings, t0)
    except FiremlipError:
        raise
    except Exception as exc:  # an SCF that fails is recorded, not fatal
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return LabelResult(index, error=f"{type(exc).__name__}: {msg}", seconds=time.time() - t0)


def _label_one(index: int, a: Atoms, name: str, settings: Mapping[str, Any], t0: float) -> LabelResult:
    try:
        a.calc = make_calculator(name, settings, a)
        e = float(a.get_potential_energy())
        f = np.asarray(a.get_forces(), dtype=float)
        s = None
        if np.all(a.pbc) and "stress" in getattr(a.calc, "implemented_properties", ["stress"]):
            try:
                s = np.asarray(a.get_stress(voigt=True), dtype=float)
            except Exception:  # some calculators implement stress only for some settings
                s = None
        if not np.isfinite(e) or not np.all(np.isfinite(f)):
            raise ValueError("non-finite energy or forces")
        return LabelResult(index, e, f, s, None, time.time() - t0)
    except FiremlipError:
        raise
    except Exception as exc:  # an SCF that fails is recorded, not fatal
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return LabelResult(index, error=f"{type(exc).__name__}: {msg}", seconds=time.time() - t0)


# ------------------------------------------------------------------------------------- cache
class LabelCache:
    """One file per finished frame in ``directory``: ``<key>.extxyz`` (labelled) or ``<key>.failed.json``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> Atoms | dict[str, Any] | None:
        ok = self.dir / f"{key}.extxyz"
        if ok.exists():
            try:
                return read_frames(ok, index="0")[0]
            except FiremlipError:
                ok.unlink(missing_ok=True)  # a damaged entry is recomputed
                return None
        bad = self.dir / f"{key}.failed.json"
        if bad.exists():
            return json.loads(bad.read_text())
        return None

    def put(self, key: str, atoms: Atoms, res: LabelResult) -> Atoms | dict[str, Any]:
        if res.error is not None:
            rec = {"index": res.index, "error": res.error, "seconds": res.seconds}
            write_text_atomic(self.dir / f"{key}.failed.json", json.dumps(rec))
            return rec
        b = atoms.copy()
        set_labels(b, res.energy, res.forces, res.stress)  # type: ignore[arg-type]
        b.info["label_seconds"] = round(res.seconds, 3)
        write_frames(self.dir / f"{key}.extxyz", [b])
        return b


# ------------------------------------------------------------------------------------- driver
def _progress(total: int, initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="frame", dynamic_ncols=True)


def label_frames(frames: Sequence[Atoms], name: str, settings: Mapping[str, Any] | None = None,
                 cache_dir: str | os.PathLike[str] = ".label-cache", workers: int = 1,
                 dask_address: str | None = None, source_path: str = "input",
                 retry_failed: bool = False) -> tuple[list[Atoms], list[Atoms]]:
    """Label ``frames``; returns (labelled frames in input order, failed frames with ``label_error``).

    Finished frames are cached in ``cache_dir`` (one file each) as soon as they complete.
    """
    settings = dict(settings or {})
    validate_calculator(name, settings, frames, source_path)
    cache = LabelCache(cache_dir)
    ckey = calculator_key(name, settings)
    keys = [frame_key(a, ckey) for a in frames]
    done: dict[int, Atoms | dict[str, Any]] = {}
    todo: list[int] = []
    for i, k in enumerate(keys):
        hit = cache.get(k)
        if hit is not None and not (retry_failed and isinstance(hit, dict)):
            done[i] = hit
        else:
            todo.append(i)
    # identical frames are computed once
    first_of: dict[str, int] = {}
    unique_todo = []
    for i in todo:
        if keys[i] not in first_of:
            first_of[keys[i]] = i
            unique_todo.append(i)
    bar = _progress(len(frames), len(frames) - len(todo), f"label[{name.split(':')[0]}]")

    def record(res: LabelResult) -> None:
        i = res.index
        done[i] = cache.put(keys[i], frames[i], res)
        dup = [j for j in todo if keys[j] == keys[i] and j != i]
        for j in dup:
            done[j] = done[i]
        bar.update(1 + len(dup))

    try:
        if _is_worker(name):  # one live teacher process, frames sent in batches
            from firemlip.teachers import label_with_worker

            label_with_worker(unique_todo, frames, name, settings, record, log_dir=cache.dir)
        elif dask_address:
            _run_dask(unique_todo, frames, name, settings, dask_address, record)
        elif workers > 1 and len(unique_todo) > 1:
            _run_pool(unique_todo, frames, name, settings, workers, record)
        else:
            for i in unique_todo:
                record(label_one(i, frames[i], name, settings))
    finally:
        bar.close()
    labelled: list[Atoms] = []
    failed: list[Atoms] = []
    for i, a in enumerate(frames):
        r = done[i]
        if isinstance(r, dict):
            b = a.copy()
            b.info["label_error"] = r["error"]
            failed.append(b)
        else:
            b = r.copy()
            for k, v in a.info.items():  # keep the input's metadata (config_type, source …)
                b.info.setdefault(k, v)
            b.info["labeller"] = name
            labelled.append(b)
    return labelled, failed


def _run_pool(todo: list[int], frames: Sequence[Atoms], name: str, settings: Mapping[str, Any],
              workers: int, record: Callable[[LabelResult], None]) -> None:
    with ProcessPoolExecutor(max_workers=workers) as ex:
        pending = {ex.submit(label_one, i, frames[i], name, settings) for i in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                record(f.result())


def _run_dask(todo: list[int], frames: Sequence[Atoms], name: str, settings: Mapping[str, Any],
              address: str, record: Callable[[LabelResult], None]) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise FiremlipError("--dask needs dask[distributed]; pip install 'dask[distributed]'") from None
    try:
        client = Client(address, timeout="10s")
    except Exception as exc:
        raise FiremlipError(f"--dask {address}: cannot connect to the scheduler ({exc})") from None
    try:
        futs = [client.submit(label_one, i, frames[i], name, settings, pure=False) for i in todo]
        for fut in as_completed(futs):
            record(fut.result())
    finally:
        client.close()


def label_file(input_path: str, output_path: str, name: str, settings: Mapping[str, Any] | None = None,
               cache_dir: str | None = None, workers: int = 1, dask_address: str | None = None,
               failed_path: str | None = None, retry_failed: bool = False) -> dict[str, Any]:
    """Label every frame of ``input_path`` into ``output_path`` (and failures into ``failed_path``)."""
    frames = read_frames(input_path)
    out = Path(output_path)
    cache = cache_dir or str(out.parent / f".{out.stem}.label-cache")
    t0 = time.time()
    labelled, failed = label_frames(frames, name, settings, cache, workers, dask_address, input_path,
                                    retry_failed)
    write_frames(out, labelled)
    fpath = Path(failed_path) if failed_path else out.parent / "failed.extxyz"
    if failed:
        write_frames(fpath, failed)
    elif fpath.exists() and failed_path is None:
        fpath.unlink()
    return {"n_input": len(frames), "n_labelled": len(labelled), "n_failed": len(failed),
            "failed_path": str(fpath) if failed else None, "wall_time_s": round(time.time() - t0, 2),
            "calculator": name, "settings": dict(settings or {}), "cache_dir": cache}


def clear_cache(cache_dir: str) -> None:
    """Remove a label cache directory."""
    shutil.rmtree(cache_dir, ignore_errors=True)


def parse_settings(pairs: Iterable[tuple[str, Any]] | None) -> dict[str, Any]:
    """``--set key=value`` pairs as a dict."""
    return {k: v for k, v in (pairs or [])}
