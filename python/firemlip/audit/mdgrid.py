"""MD stability grid: short NVT runs over temperatures × seeds with the sampling stage's stability guard.

Each run is one :func:`firemlip.sampling.sample` job (LAMMPS with the ``pair_style mace`` plugin when it is built,
else ASE Langevin MD) from the first host frame. A run is *stable* when it reaches its last step without the
:class:`~firemlip.stability.StabilityGuard` stopping it (atoms too close, energy jump, temperature runaway) and
without an engine error. Runs are cached under ``<dir>/pool.parts/`` (a rerun with the same model resumes).
Temperatures in K, time step in fs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ase import Atoms

from firemlip.audit.settings import AuditSettings
from firemlip.errors import FiremlipError


def choose_engine(requested: str = "auto") -> str:
    """``lammps`` when the plugin is built (``firemlip.lammps.plugin_path()`` succeeds), else ``ase``."""
    if requested != "auto":
        return requested
    try:
        from firemlip.lammps import plugin_path

        p = plugin_path()
        return "lammps" if p and Path(p).exists() else "ase"
    except Exception:  # no plugin, no lammps package: the ASE fallback
        return "ase"


def _part_summary(parts: Path, temperature: float, seed: int, steps: int, engine: str) -> dict | None:
    """The newest cached job summary of (temperature, seed) in ``parts`` (written even when sample() fails)."""
    best, best_t = None, -1.0
    for p in parts.glob("*.json"):
        try:
            s = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(s, dict) or "steps_requested" not in s:
            continue
        if (abs(float(s.get("temperature_K", -1)) - temperature) < 1e-9 and list(s.get("seed", []))[:1] == [seed]
                and int(s["steps_requested"]) == steps and s.get("engine") == engine):
            t = p.stat().st_mtime
            if t > best_t:
                best, best_t = s, t
    return best


def md_grid(model_path: str | os.PathLike[str], structure: Atoms, settings: AuditSettings, out_dir: Path,
            device: str = "cpu", progress: bool = True) -> dict:
    """Run the grid; return the gate record with one row per (temperature, seed) and the stable fraction."""
    from firemlip.sampling import sample
    from firemlip.stability import StabilityGuard

    engine = choose_engine(settings.md_engine)
    out_dir.mkdir(parents=True, exist_ok=True)
    pool = out_dir / "pool.extxyz"
    parts = out_dir / "pool.parts"
    steps = int(settings.md_steps)
    interval = max(1, steps // 20)
    guard = StabilityGuard()
    rows: list[dict] = []
    for T in settings.md_temperatures_K:
        for s in range(settings.md_seeds):
            seed = int(settings.seed) * 1000 + s
            stopped, steps_run, wall = None, None, None
            summary_file = out_dir / "pool.summary.json"
            if summary_file.exists():
                summary_file.unlink()
            try:
                sample(model_path, structure, [T], steps, interval, engine=engine, out_path=pool,
                       timestep_fs=settings.md_timestep_fs, seed=seed, device=device, guard=guard,
                       guard_every=min(10, interval), progress=progress, manifest=False, resume=True)
                job = json.loads(summary_file.read_text())["jobs"][0]
            except FiremlipError as exc:
                job = _part_summary(parts, float(T), seed, steps, engine)
                if job is None:
                    job = {"stopped": {"kind": "engine_error", "message": str(exc)[:300], "step": None},
                           "steps_run": None, "wall_s": None}
            stopped, steps_run, wall = job.get("stopped"), job.get("steps_run"), job.get("wall_s")
            rows.append({"temperature_K": float(T), "seed": seed, "engine": engine, "steps_requested": steps,
                         "steps_run": steps_run, "stable": stopped is None, "first_failure": stopped,
                         "wall_s": wall})
    n_stable = sum(r["stable"] for r in rows)
    frac = n_stable / len(rows) if rows else 1.0
    return {"passed": frac >= settings.min_stable_fraction, "engine": engine, "stable_fraction": frac,
            "runs": len(rows), "stable_runs": n_stable, "min_stable_fraction": settings.min_stable_fraction,
            "timestep_fs": settings.md_timestep_fs, "steps": steps, "guard": guard.params(),
            "structure": "host frame 0", "rows": rows}
