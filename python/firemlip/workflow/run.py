"""Execute the stages of a run config in order inside a run directory.

Each stage has a subdirectory ``NN_<stage>/`` with its outputs and ``manifest.json``. A stage is skipped when
its manifest says it finished with the same input hashes and parameters; ``from_stage`` forces a stage and
every later one to rerun.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firemlip.config import RunConfig
from firemlip.errors import FiremlipError
from firemlip.workflow.manifest import StageRecord, is_current, stage_manifest


@dataclass
class Context:
    """What stages share: the config and the run directory."""

    cfg: RunConfig
    run_dir: Path

    def stage_dir(self, name: str) -> Path:
        idx = [s.name for s in STAGES].index(name)
        return self.run_dir / f"{idx:02d}_{name}"

    def output(self, stage: str, name: str) -> Path:
        return self.stage_dir(stage) / name


@dataclass
class Stage:
    """One step of a run: which files it reads, which parameters shape it, and what it does."""

    name: str
    enabled: Callable[[RunConfig], bool]
    inputs: Callable[[Context], dict[str, Path]]
    params: Callable[[Context], dict[str, Any]]
    body: Callable[[Context, StageRecord], None]
    summary: str = ""


# ----------------------------------------------------------------------------------- stage bodies
def _structures_inputs(ctx: Context) -> dict[str, Path]:
    cfg = ctx.cfg
    if cfg.interface is not None:
        return {"substrate": cfg.path(cfg.interface.substrate), "film": cfg.path(cfg.interface.film)}
    return {f"structure_{i}": cfg.path(p) for i, p in enumerate(cfg.structures)}


def _structures_params(ctx: Context) -> dict[str, Any]:
    return {"interface": ctx.cfg.interface.model_dump() if ctx.cfg.interface else None}


def _structures_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.io import write_frames
    from firemlip.structures import build_interface, read_structures

    cfg = ctx.cfg
    if cfg.interface is not None:
        ic = cfg.interface
        sub = read_structures([str(cfg.path(ic.substrate))], index="0")[0]
        film = read_structures([str(cfg.path(ic.film))], index="0")[0]
        atoms, rep = build_interface(sub, film, ic.substrate_miller, ic.film_miller, ic.substrate_layers,
                                     ic.film_layers, ic.gap_A, ic.vacuum_A, ic.max_mismatch, ic.max_area_A2,
                                     ic.max_atoms)
        frames = [atoms]
        from dataclasses import asdict

        rec.extra["interface"] = asdict(rep)
    else:
        frames = read_structures([str(cfg.path(p)) for p in cfg.structures])
    write_frames(rec.stage_dir / "structures.extxyz", frames)
    rec.outputs.append("structures.extxyz")
    rec.extra["n_structures"] = len(frames)


def _perturb_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.io import read_frames, write_frames
    from firemlip.structures import perturb

    p = ctx.cfg.stages.perturb
    frames = read_frames(ctx.output("structures", "structures.extxyz"))
    out, redraws = [], 0
    for k, a in enumerate(frames):
        f, r = perturb(a, p.n_configs, p.rattle, p.strain, p.seed + k, p.min_dist_factor)
        out.extend(f)
        redraws += r
    write_frames(rec.stage_dir / "perturbed.extxyz", out)
    rec.outputs.append("perturbed.extxyz")
    rec.extra["n_frames"] = len(out)
    rec.extra["redraws"] = redraws


def _label_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.labelling import label_file

    lab = ctx.cfg.labeller
    rep = label_file(str(ctx.output("perturb", "perturbed.extxyz")), str(rec.stage_dir / "labelled.extxyz"),
                     lab.calculator, lab.settings, str(ctx.run_dir / "label-cache"), lab.workers, lab.dask,
                     str(rec.stage_dir / "failed.extxyz"), ctx.cfg.stages.label.retry_failed)
    rec.outputs.append("labelled.extxyz")
    if rep["n_failed"]:
        rec.outputs.append("failed.extxyz")
    rec.extra["labelling"] = rep


STAGES: list[Stage] = [
    Stage("structures", lambda c: True, _structures_inputs, _structures_params, _structures_body,
          "read or build the input structures"),
    Stage("perturb", lambda c: c.stages.perturb.enabled,
          lambda ctx: {"structures": ctx.output("structures", "structures.extxyz")},
          lambda ctx: ctx.cfg.stages.perturb.model_dump(), _perturb_body, "rattled/strained copies"),
    Stage("label", lambda c: c.stages.label.enabled and c.stages.perturb.enabled,
          lambda ctx: {"perturbed": ctx.output("perturb", "perturbed.extxyz")},
          lambda ctx: {"labeller": ctx.cfg.labeller.model_dump(exclude={"workers", "dask"}),
                       **ctx.cfg.stages.label.model_dump()},
          _label_body, "first-principles labels"),
]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def run(cfg: RunConfig, run_dir: str | Path | None = None, from_stage: str | None = None,
        until: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every enabled stage in order; returns {stage: 'ran' | 'cached' | 'disabled'} and timings (s)."""
    names = stage_names()
    for opt, val in (("--from", from_stage), ("--until", until)):
        if val is not None and val not in names:
            raise FiremlipError(f"{opt} {val}: unknown stage; expected one of {', '.join(names)}")
    rd = Path(run_dir) if run_dir is not None else cfg.path(cfg.run_dir)
    rd.mkdir(parents=True, exist_ok=True)
    ctx = Context(cfg, rd)
    force = False
    status: dict[str, Any] = {}
    active = [s for s in STAGES if s.enabled(cfg)]
    t_run = time.time()
    for k, st in enumerate(active, 1):
        if from_stage == st.name:
            force = True
        sd = ctx.stage_dir(st.name)
        inputs = st.inputs(ctx)
        for role, p in inputs.items():
            if not Path(p).exists():
                raise FiremlipError(f"stage {st.name}: input {role} {p} not found")
        params = st.params(ctx)
        head = f"[{k}/{len(active)}] {st.name:<12}"
        if not force and is_current(sd, inputs, params):
            log(f"{head} up to date, skipped ({sd})")
            status[st.name] = "cached"
        else:
            force = True  # everything after a rerun stage reruns too
            if sd.exists():
                shutil.rmtree(sd / "tmp", ignore_errors=True)
            log(f"{head} {st.summary} …")
            t0 = time.time()
            with stage_manifest(st.name, sd, inputs, params) as rec:
                st.body(ctx, rec)
            log(f"{head} done in {time.time() - t0:.1f} s → {sd}")
            status[st.name] = "ran"
        if until == st.name:
            break
    status["wall_time_s"] = round(time.time() - t_run, 2)
    return status
