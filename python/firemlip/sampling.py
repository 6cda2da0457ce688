"""MD sampling of the candidate pool (FIRE step 2): a MACE model drives NVT/NPT MD at several temperatures and
every K-th frame goes into ``pool.extxyz``.

Two engines give the same outputs:
  * ``lammps`` (production): renders ``templates/sample.in.j2`` and runs LAMMPS with the firemlip
    ``pair_style mace`` plugin (``firemlip.lammps``);
  * ``ase`` (fallback): ASE Langevin, Nosé–Hoover chain (NVT) or isotropic MTK (NPT) with mace-torch's
    ``MACECalculator``.

Every (structure, temperature) pair is one job; jobs run in parallel processes with ``workers > 1``. A
:class:`~firemlip.stability.StabilityGuard` stops a trajectory that explodes and keeps the frames before it; the
reason is recorded in ``<pool>.summary.json`` and the stage manifest. Each finished job is cached under
``<pool>.parts/`` so an interrupted run resumes where it stopped.

Units: temperatures in K, time step in fs, friction in 1/fs, pressure in GPa, energies in eV, lengths in Å.
Frame ``info`` keys: ``config_type`` (``md_600K``), ``temperature_K`` (thermostat target), ``step``, ``time_fs``,
``source`` (``file@index``), ``engine``, and for the ASE engine ``md_temperature_K`` / ``md_energy_eV``
(instantaneous values from the driving model; not reference labels).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import typing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from firemlip.errors import FiremlipError, require_file
from firemlip.io import elements_of, file_sha256, read_frames, structure_hash, write_frames
from firemlip.options import SampleOptions
from firemlip.stability import StabilityGuard

#: the defaults of :func:`sample` (defined once, in :class:`firemlip.options.SampleOptions`)
_SAMPLE = SampleOptions()
ENGINES = typing.get_args(SampleOptions.model_fields["engine"].annotation)
THERMOSTATS = typing.get_args(SampleOptions.model_fields["thermostat"].annotation)


@dataclass(frozen=True)
class ModelInfo:
    """Elements (symbols) and cut-off (Å) read from a MACE ``.model`` file."""

    path: str
    elements: tuple[str, ...]
    r_max: float | None


def model_info(model_path: str | os.PathLike[str]) -> ModelInfo:
    """Read the elements and cut-off radius (Å) of a MACE ``.model`` file; one-line error when unreadable."""
    import torch
    from ase.data import chemical_symbols

    require_file(model_path, "MACE model")
    try:
        model = torch.load(os.fspath(model_path), map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for bad files
        raise FiremlipError(f"{model_path}: cannot load MACE model ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    zs = getattr(model, "atomic_numbers", None)
    if zs is None:
        raise FiremlipError(f"{model_path}: not a MACE model (no atomic_numbers)")
    elements = tuple(chemical_symbols[int(z)] for z in np.asarray(zs.cpu() if hasattr(zs, "cpu") else zs))
    r_max = getattr(model, "r_max", None)
    r = float(r_max.item() if hasattr(r_max, "item") else r_max) if r_max is not None else None
    return ModelInfo(os.fspath(model_path), elements, r)


def _load_structures(structures: str | os.PathLike[str] | Atoms | Sequence[Any]) -> list[tuple[Atoms, str]]:
    """Normalise the ``structures`` argument into (Atoms, source label) pairs."""
    if isinstance(structures, Atoms):
        return [(structures.copy(), "input@0")]
    if isinstance(structures, (str, os.PathLike)):
        structures = [structures]
    out: list[tuple[Atoms, str]] = []
    for k, s in enumerate(structures):
        if isinstance(s, Atoms):
            out.append((s.copy(), f"input@{k}"))
        else:
            frames = read_frames(s, what="structure file")
            out.extend((a, f"{os.fspath(s)}@{i}") for i, a in enumerate(frames))
    if not out:
        raise FiremlipError("sample: no structures given")
    return out


def _job_key(job: dict) -> str:
    keep = {k: v for k, v in job.items() if k not in ("atoms", "parts_dir", "progress", "threads", "model")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _frame(atoms: Atoms, job: dict, step: int, extra: dict | None = None) -> Atoms:
    f = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    if f.pbc.any():
        f.wrap()
    T = float(job["temperature_K"])
    f.info.update({"config_type": f"md_{T:g}K", "temperature_K": T, "step": int(step),
                   "time_fs": float(step * job["timestep_fs"]), "source": job["source"], "engine": job["engine"]})
    f.info.update(extra or {})
    return f


def _mace_calculator(job: dict):
    """mace-torch's ASE calculator for the job's model, device and dtype (its import warnings silenced)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mace.calculators import MACECalculator

        return MACECalculator(model_paths=job["model"], device=job["device"], default_dtype=job["dtype"])


def _ase_dynamics(atoms: Atoms, job: dict, temperature_K: float, rng: np.random.Generator):
    """The job's ASE integrator: isotropic MTK NPT (``npt``), Nosé–Hoover chain NVT, or Langevin (friction 1/fs)
    with the centre of mass fixed."""
    from ase import units
    from ase.constraints import FixCom

    T = temperature_K
    dt = float(job["timestep_fs"]) * units.fs
    if job["ensemble"] == "npt":
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        return IsotropicMTKNPT(atoms, timestep=dt, temperature_K=T, pressure_au=job["pressure_GPa"] * units.GPa,
                               tdamp=100 * dt, pdamp=1000 * dt)
    if job["thermostat"] == "nose-hoover":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=T, tdamp=100 * dt)
    from ase.md.langevin import Langevin

    atoms.set_constraint(FixCom())  # no centre-of-mass drift (ASE's recommended replacement for fixcm)
    return Langevin(atoms, timestep=dt, temperature_K=T, friction=job["friction_per_fs"] / units.fs, rng=rng,
                    fixcm=False)


def _ase_md_frames(dyn, atoms: Atoms, job: dict, temperature_K: float) -> tuple[list[Atoms], dict | None]:
    """Run ``dyn`` for the job's steps, checking the stability guard every ``guard_every`` steps and keeping a
    frame every ``interval`` steps. Returns (frames, the guard's stop record or None)."""
    from tqdm import tqdm

    T = temperature_K
    guard = StabilityGuard(**job["guard"])
    guard.reset()
    steps, interval = int(job["steps"]), int(job["interval"])
    check_every = max(1, min(interval, int(job["guard_every"])))
    frames: list[Atoms] = []
    stopped = None
    bar = tqdm(total=steps, desc=f"{job['source']} {T:g} K", unit="step", disable=not job.get("progress"),
               leave=False)
    last = 0
    try:
        for _ in dyn.irun(steps):
            n = dyn.nsteps
            if n == 0 or (n % check_every and n % interval):
                continue
            try:
                epot = float(atoms.get_potential_energy())
            except Exception as exc:  # a model blow-up can surface as a numerical error
                stopped = {"kind": "calculator_error", "message": str(exc)[:200], "step": n}
                break
            ev = guard.check(atoms, epot, atoms.get_temperature(), T, step=n)
            if ev is not None:
                stopped = ev.to_dict()
                break
            if n % interval == 0:
                frames.append(_frame(atoms, job, n, {"md_temperature_K": float(atoms.get_temperature()),
                                                     "md_energy_eV": epot}))
            bar.update(n - last)
            last = n
    finally:
        bar.close()
    return frames, stopped


def _run_ase_job(job: dict) -> dict:
    """Run one (structure, temperature) ASE MD job; returns ``{"frames": [...], "summary": {...}}``."""
    import torch
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    calc = _mace_calculator(job)
    atoms = job["atoms"].copy()
    atoms.calc = calc
    T = float(job["temperature_K"])
    rng = np.random.default_rng(job["seed_seq"])
    thermalize_momenta(atoms, temperature_K=T, rng=rng)
    Stationary(atoms)
    dyn = _ase_dynamics(atoms, job, T, rng)
    t0 = time.time()
    frames, stopped = _ase_md_frames(dyn, atoms, job, T)
    return {"frames": frames, "summary": _summary(job, frames, stopped, steps_run=dyn.nsteps,
                                                  wall_s=time.time() - t0)}


def _summary(job: dict, frames: list[Atoms], stopped: dict | None, steps_run: int, wall_s: float) -> dict:
    return {"source": job["source"], "temperature_K": float(job["temperature_K"]), "engine": job["engine"],
            "thermostat": "nose-hoover" if job["engine"] == "lammps" else job["thermostat"],
            "ensemble": job["ensemble"],
            "steps_requested": int(job["steps"]), "steps_run": int(steps_run), "frames": len(frames),
            "stopped": stopped, "wall_s": round(wall_s, 3), "seed": list(job["seed_seq"])}


def _lammps_api():
    """The firemlip.lammps functions the LAMMPS engine needs, or a one-line error suggesting ``--engine ase``."""
    try:
        from firemlip import lammps as L
    except ImportError as exc:
        raise FiremlipError(f"--engine lammps needs the firemlip.lammps package ({exc}); use --engine ase") from None
    need = ("export_model", "render", "run_lammps", "plugin_path")
    missing = [n for n in need if not hasattr(L, n)]
    if missing:
        raise FiremlipError(f"--engine lammps: firemlip.lammps lacks {', '.join(missing)} in this build; "
                            f"use --engine ase")
    try:
        plugin = L.plugin_path()
    except Exception as exc:
        raise FiremlipError(f"--engine lammps: the pair_style mace plugin is not available ({exc}); build it "
                            f"or use --engine ase") from None
    if not plugin or not Path(plugin).exists():
        raise FiremlipError(f"--engine lammps: the pair_style mace plugin is not built ({plugin}); build it "
                            f"or use --engine ase")
    return L


def _dump_timesteps(path: Path) -> list[int]:
    steps: list[int] = []
    with open(path) as fh:
        for line in fh:
            if line.startswith("ITEM: TIMESTEP"):
                steps.append(int(next(fh).split()[0]))
    return steps


def _find_dump(run_dir: Path) -> Path:
    exact = run_dir / "dump.sample.lammpstrj"  # the name documented in templates/sample.in.j2
    if exact.is_file():
        return exact
    cands = [p for pat in ("*.lammpstrj", "dump.*", "*.dump") for p in sorted(run_dir.glob(pat)) if p.is_file()]
    if not cands:
        raise FiremlipError(f"{run_dir}: LAMMPS sampling run wrote no dump file")
    return cands[0]


def _thermo_by_step(log: dict) -> dict[int, dict[str, float]]:
    """``step → {column: value}`` from the last thermo block of a parsed LAMMPS log (firemlip.lammps.parse_log)."""
    blocks = (log or {}).get("thermo") or []
    if not blocks:
        return {}
    cols = [c.lower() for c in blocks[-1].get("columns", [])]
    if "step" not in cols:
        return {}
    out = {}
    for row in blocks[-1].get("rows", []):
        rec = dict(zip(cols, row, strict=False))
        out[int(rec["step"])] = {k: float(v) for k, v in rec.items()}
    return out


def _run_lammps_job(job: dict) -> dict:
    """Run one (structure, temperature) LAMMPS MD job with the plugin and convert its dump into pool frames.

    The guard checks every dumped frame (minimum distance) with the thermo temperature and potential energy of
    the same step when the log has them (``thermo_every`` = ``interval``).
    """
    from ase.io import read

    L = _lammps_api()
    run_dir = Path(job["parts_dir"]) / f"lammps_{_job_key(job)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    seed = int(np.random.default_rng(job["seed_seq"]).integers(1, 2**31 - 1))
    tvars: dict[str, Any] = {"temperature_K": float(job["temperature_K"]), "steps": int(job["steps"]),
                             "dump_every": int(job["interval"]), "seed": seed,
                             "timestep_fs": float(job["timestep_fs"]), "thermo_every": int(job["interval"]),
                             "ensemble": job["ensemble"]}
    if job["ensemble"] == "npt":
        tvars["pressure_bar"] = float(job["pressure_GPa"]) * 1.0e4
    inp = L.render("sample.in.j2", run_dir, job["atoms"], model=job["lammps_model"], **tvars)
    try:
        types = json.loads((run_dir / "render.json").read_text())["variables"]["elements"]
    except (OSError, KeyError, ValueError):
        types = list(job["elements"])
    log = L.run_lammps(run_dir, Path(inp).name, np=1, threads=job.get("threads"),
                       progress=bool(job.get("progress")))
    thermo = _thermo_by_step(log)
    dump = _find_dump(run_dir)
    try:
        raw = read(dump, index=":", format="lammps-dump-text", specorder=types)
    except Exception as exc:  # ASE raises many types for a truncated dump
        raise FiremlipError(f"{dump}: cannot read LAMMPS dump ({exc})") from None
    tsteps = _dump_timesteps(dump)
    guard = StabilityGuard(**job["guard"])
    frames: list[Atoms] = []
    stopped = None
    steps_run = tsteps[-1] if tsteps else 0
    for a, n in zip(raw, tsteps, strict=False):
        if not set(a.get_chemical_symbols()) <= set(types):  # dump without an element column: 1-based types
            a.set_chemical_symbols([types[int(t) - 1] for t in a.numbers])
        th = thermo.get(n, {})
        ev = guard.check(a, th.get("pe"), th.get("temp"), float(job["temperature_K"]), step=n)
        if ev is not None:
            stopped = ev.to_dict()
            steps_run = n
            break
        if n > 0 and n % int(job["interval"]) == 0:
            extra = {}
            if "temp" in th:
                extra["md_temperature_K"] = th["temp"]
            if "pe" in th:
                extra["md_energy_eV"] = th["pe"]
            frames.append(_frame(a, job, n, extra))
    return {"frames": frames, "summary": _summary(job, frames, stopped, steps_run, time.time() - t0)}


def _execute(job: dict) -> dict:
    return _run_lammps_job(job) if job["engine"] == "lammps" else _run_ase_job(job)


def _check_sample_options(engine: str, thermostat: str, ensemble: str, temperatures: Sequence[float], steps: int,
                          interval: int, timestep_fs: float, device: str) -> list[float]:
    """One-line errors for invalid options; returns the temperatures (K) as floats."""
    if engine not in ENGINES:
        raise FiremlipError(f"sample: engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if thermostat not in THERMOSTATS:
        raise FiremlipError(f"sample: thermostat must be one of {', '.join(THERMOSTATS)}, got {thermostat!r}")
    if ensemble not in ("nvt", "npt"):
        raise FiremlipError(f"sample: ensemble must be nvt or npt, got {ensemble!r}")
    temps = [float(t) for t in temperatures]
    if not temps or any(t <= 0 for t in temps):
        raise FiremlipError(f"sample: temperatures must be positive (K), got {temperatures}")
    if steps <= 0 or interval <= 0:
        raise FiremlipError(f"sample: steps and interval must be positive, got {steps} and {interval}")
    if interval > steps:
        raise FiremlipError(f"sample: --interval {interval} is larger than --steps {steps}: no frame would be kept")
    if timestep_fs <= 0:
        raise FiremlipError(f"sample: timestep must be positive (fs), got {timestep_fs}")
    _check_device(device)
    return temps


def _check_device(device: str) -> None:
    """A one-line error for a device other than cpu / cuda[:N], or cuda without a visible CUDA device."""
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise FiremlipError(f"sample: device must be cpu or cuda, got {device!r}")
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise FiremlipError("sample: --device cuda requested but no CUDA device is visible")


def _check_structures(model: str | os.PathLike[str], info: ModelInfo, structs: Sequence[tuple[Atoms, str]]) -> None:
    """One-line errors for a structure with an element the model lacks, or with no atoms."""
    for atoms, src in structs:
        missing = sorted(set(atoms.get_chemical_symbols()) - set(info.elements))
        if missing:
            raise FiremlipError(f"{model}: model lacks element(s) {', '.join(missing)} present in structure {src} "
                                f"(model elements: {' '.join(info.elements)})")
        if len(atoms) == 0:
            raise FiremlipError(f"{src}: structure has no atoms")


def _lammps_model(model: str | os.PathLike[str], model_sha: str, parts: Path, dtype: str) -> str:
    """The model exported for LAMMPS (``<parts>/model_<sha12>.lammps.pt``, exported once and reused)."""
    L = _lammps_api()
    lammps_model = str(parts / f"model_{model_sha[:12]}.lammps.pt")
    if not Path(lammps_model).exists():
        lammps_model = str(L.export_model(model, lammps_model, dtype))
    return lammps_model


def _make_jobs(structs: Sequence[tuple[Atoms, str]], temps: Sequence[float], seed: int,
               common: dict[str, Any]) -> list[dict]:
    """One job per (structure, temperature K): the ``common`` settings plus its atoms, structure hash, source,
    temperature and seed sequence ``[seed, structure index, temperature index]``."""
    return [{**common, "atoms": atoms, "structure_hash": structure_hash(atoms), "source": src, "temperature_K": T,
             "seed_seq": [int(seed), si, ti]}
            for si, (atoms, src) in enumerate(structs) for ti, T in enumerate(temps)]


def _sample_inputs(model: str | os.PathLike[str], structs: Sequence[tuple[Atoms, str]]) -> dict[str, str]:
    """The manifest's inputs: the model and each structure file (not in-memory structures)."""
    inputs: dict[str, str] = {"model": os.fspath(model)}
    for k, src in enumerate(sorted({s.rsplit("@", 1)[0] for _, s in structs if not s.startswith("input@")})):
        inputs[f"structure_{k}"] = src
    return inputs


def _run_jobs(jobs: list[dict], parts: Path, workers: int, resume: bool,
              progress: bool) -> tuple[list[Atoms], list[dict]]:
    """Run the jobs not cached in ``parts`` (with ``resume``), in ``workers`` spawned processes when more than one,
    caching each as it finishes. Returns all frames in job order and the jobs' summaries."""
    results: dict[int, dict] = {}
    todo = []
    for k, job in enumerate(jobs):
        cached = _load_part(parts, job) if resume else None
        if cached is not None:
            results[k] = cached
        else:
            todo.append(k)
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp

        from tqdm import tqdm

        with ProcessPoolExecutor(max_workers=min(workers, len(todo)),
                                 mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(_execute, jobs[k]): k for k in todo}
            for fut in tqdm(as_completed(futs), total=len(futs), desc="MD jobs", disable=not progress):
                k = futs[fut]
                results[k] = fut.result()
                _save_part(parts, jobs[k], results[k])
    else:
        for k in todo:
            results[k] = _execute(jobs[k])
            _save_part(parts, jobs[k], results[k])
    frames = [f for k in range(len(jobs)) for f in results[k]["frames"]]
    return frames, [results[k]["summary"] for k in range(len(jobs))]


def _write_pool(out: Path, parts: Path, frames: list[Atoms], summaries: list[dict],
                params: dict[str, Any]) -> dict:
    """Write the pool and ``<stem>.summary.json`` (frames, jobs, stopped jobs, parameters); an error when no
    trajectory produced a frame. Returns the summary."""
    from firemlip.io import write_json

    if not frames:
        raise FiremlipError(f"sample: every trajectory stopped before its first frame "
                            f"({summaries[0]['stopped']['message'] if summaries[0]['stopped'] else '?'}); "
                            f"see {parts}")
    write_frames(out, frames)
    summ = {"pool": str(out), "frames": len(frames), "jobs": summaries,
            "stopped": [s for s in summaries if s["stopped"]], "parameters": params}
    write_json(out.parent / f"{out.stem}.summary.json", summ)
    return summ


def sample(model: str | os.PathLike[str], structures: str | os.PathLike[str] | Atoms | Sequence[Any],
           temperatures: Sequence[float] = tuple(_SAMPLE.temperatures_K), steps: int = _SAMPLE.steps,
           interval: int = _SAMPLE.interval, engine: str = _SAMPLE.engine,
           out_path: str | os.PathLike[str] = "pool.extxyz", timestep_fs: float = _SAMPLE.timestep_fs,
           seed: int = _SAMPLE.seed, device: str = "cpu", workers: int = _SAMPLE.workers,
           thermostat: str = _SAMPLE.thermostat, friction_per_fs: float = _SAMPLE.friction_per_fs,
           ensemble: str = _SAMPLE.ensemble, pressure_GPa: float = _SAMPLE.pressure_GPa, dtype: str = _SAMPLE.dtype,
           guard: StabilityGuard | dict | None = None, guard_every: int = 10, progress: bool = True,
           manifest: bool = True, resume: bool = True) -> Path:
    """Run MD with a MACE model at each temperature (K) from each structure and write the pool (extxyz).

    Defaults: :class:`firemlip.options.SampleOptions`.

    ``steps`` MD steps of ``timestep_fs`` fs per job; a frame every ``interval`` steps (step 0 excluded).
    ``engine`` is ``ase`` or ``lammps``; ``thermostat`` ``langevin`` (friction in 1/fs) or ``nose-hoover``
    (ASE engine); ``ensemble="npt"`` runs isotropic MTK NPT at ``pressure_GPa``. The stability guard is checked
    every ``guard_every`` steps. Writes ``out_path``, ``<stem>.summary.json`` and (``manifest``) the stage
    ``manifest.json`` in the output directory. Returns ``out_path``.
    """
    temps = _check_sample_options(engine, thermostat, ensemble, temperatures, steps, interval, timestep_fs, device)
    guard = (StabilityGuard(**guard) if isinstance(guard, dict) else guard) or StabilityGuard()
    info = model_info(model)
    structs = _load_structures(structures)
    _check_structures(model, info, structs)
    out = Path(out_path)
    parts = out.parent / f"{out.stem}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    model_sha = file_sha256(model)
    workers = max(1, int(workers))
    guard_params = guard.params()
    common = {"engine": engine, "model": os.fspath(model), "model_sha256": model_sha, "steps": int(steps),
              "interval": int(interval), "timestep_fs": float(timestep_fs), "device": device, "dtype": dtype,
              "thermostat": thermostat, "friction_per_fs": float(friction_per_fs), "ensemble": ensemble,
              "pressure_GPa": float(pressure_GPa), "guard": guard_params, "guard_every": int(guard_every),
              "parts_dir": str(parts), "progress": progress and workers == 1,
              "threads": max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None,
              "lammps_model": _lammps_model(model, model_sha, parts, dtype) if engine == "lammps" else None,
              "elements": sorted(elements_of([a for a, _ in structs]))}
    jobs = _make_jobs(structs, temps, seed, common)
    params = {"engine": engine, "temperatures_K": temps, "steps": steps, "interval": interval,
              "timestep_fs": timestep_fs, "seed": seed, "thermostat": thermostat, "friction_per_fs": friction_per_fs,
              "ensemble": ensemble, "pressure_GPa": pressure_GPa, "dtype": dtype, "guard": guard_params,
              "guard_every": guard_every, "structures": [s for _, s in structs]}
    if not manifest:
        _write_pool(out, parts, *_run_jobs(jobs, parts, workers, resume, progress), params)
        return out
    from firemlip.workflow.manifest import stage_manifest

    with stage_manifest("sample", out.parent, _sample_inputs(model, structs), params) as rec:
        summ = _write_pool(out, parts, *_run_jobs(jobs, parts, workers, resume, progress), params)
        rec.outputs = [out.name, f"{out.stem}.summary.json"]
        rec.extra = {"frames": summ["frames"], "stopped": summ["stopped"]}
    return out


def _part_paths(parts: Path, job: dict) -> tuple[Path, Path]:
    key = _job_key(job)
    return parts / f"{key}.extxyz", parts / f"{key}.json"


def _save_part(parts: Path, job: dict, result: dict) -> None:
    from firemlip.io import write_json

    fx, fj = _part_paths(parts, job)
    if result["frames"]:
        write_frames(fx, result["frames"])
    write_json(fj, result["summary"])


def _load_part(parts: Path, job: dict) -> dict | None:
    fx, fj = _part_paths(parts, job)
    if not fj.exists():
        return None
    try:
        summary = json.loads(fj.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    frames = read_frames(fx) if summary.get("frames") else []
    if len(frames) != summary.get("frames"):
        return None
    return {"frames": frames, "summary": summary}
