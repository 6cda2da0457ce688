"""Execute the stages of a run config in order inside a run directory.

Each stage has a subdirectory ``NN_<stage>/`` with its outputs and ``manifest.json``. A stage is skipped when
its manifest says it finished with the same input hashes and parameters; ``from_stage`` forces a stage and
every later one to rerun.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firemlip.config import RunConfig
from firemlip.errors import FiremlipError
from firemlip.options import ArrheniusOptions, DiffusionOptions, InterfaceOptions, SampleOptions
from firemlip.workflow.manifest import StageRecord, is_current, stage_manifest


@dataclass
class Context:
    """What stages share: the config and the run directory."""

    cfg: RunConfig
    run_dir: Path

    def stage_dir(self, name: str) -> Path:
        idx = [s.name for s in STAGES].index(name)
        return self.run_dir / f"{idx:02d}_{name}"

    def output(self, stage: str, role: str) -> Path:
        """The file that ``stage`` declares for ``role`` (see :attr:`Stage.outputs`), in its stage directory."""
        files = stage_by_name(stage).files(self.cfg)
        if role not in files:
            raise KeyError(f"stage {stage} declares no output {role!r} (it declares {', '.join(files)})")
        return self.stage_dir(stage) / files[role]


#: a stage's declared outputs: role -> file name in its directory (a mapping, or a function of the config for
#: outputs whose names depend on it); roles ending in "?" are optional (written only in some configurations)
Outputs = dict[str, str] | Callable[[RunConfig], dict[str, str]]


@dataclass
class Stage:
    """One step of a run: which files it reads, which parameters shape it, what it does and what it writes.

    ``outputs`` declares the files the stage writes (role -> file name); later stages read them through
    :meth:`Context.output` by role, and the runner checks after the body that the required ones exist and records
    them in the manifest.
    """

    name: str
    enabled: Callable[[RunConfig], bool]
    inputs: Callable[[Context], dict[str, Path]]
    params: Callable[[Context], dict[str, Any]]
    body: Callable[[Context, StageRecord], None]
    summary: str = ""
    outputs: Outputs = field(default_factory=dict)

    def files(self, cfg: RunConfig) -> dict[str, str]:
        """Declared outputs, role (without the optional marker) -> file name."""
        out = self.outputs(cfg) if callable(self.outputs) else self.outputs
        return {k.rstrip("?"): v for k, v in out.items()}

    def required(self, cfg: RunConfig) -> list[str]:
        """Roles of the outputs that must exist after the body ran."""
        out = self.outputs(cfg) if callable(self.outputs) else self.outputs
        return [k for k in out if not k.endswith("?")]


# ----------------------------------------------------------------------------------- stage bodies
def _structures_inputs(ctx: Context) -> dict[str, Path]:
    cfg = ctx.cfg
    out: dict[str, Path] = {}
    if cfg.interface is not None:
        out = {"substrate": cfg.path(cfg.interface.substrate), "film": cfg.path(cfg.interface.film)}
    return {**out, **{f"structure_{i}": cfg.path(p) for i, p in enumerate(cfg.structures)}}


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
        atoms, rep = build_interface(sub, film, **ic.model_dump(include=set(InterfaceOptions.model_fields)))
        frames = [atoms]
        from dataclasses import asdict

        rec.extra["interface"] = asdict(rep)
    else:
        frames = []
    if cfg.structures:  # further structures (e.g. the bulk phases of an interface) follow the interface
        frames += read_structures([str(cfg.path(p)) for p in cfg.structures])
    write_frames(ctx.output("structures", "structures"), frames)
    rec.extra["n_structures"] = len(frames)


def _perturb_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.io import read_frames, write_frames
    from firemlip.structures import perturb

    p = ctx.cfg.stages.perturb
    frames = read_frames(ctx.output("structures", "structures"))
    out, redraws = [], 0
    for k, a in enumerate(frames):
        f, r = perturb(a, p.n_configs, p.rattle, p.strain, p.seed + k, p.min_dist_factor)
        out.extend(f)
        redraws += r
    write_frames(ctx.output("perturb", "perturbed"), out)
    rec.extra["n_frames"] = len(out)
    rec.extra["redraws"] = redraws


def _label_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.labelling import label_file

    lab = ctx.cfg.labeller
    rep = label_file(str(ctx.output("perturb", "perturbed")), str(ctx.output("label", "labelled")),
                     lab.calculator, lab.settings, str(ctx.run_dir / "label-cache"), lab.workers, lab.dask,
                     str(ctx.output("label", "failed")), ctx.cfg.stages.label.retry_failed)
    rec.extra["labelling"] = rep


def _foundation_inputs(ctx: Context) -> dict[str, Path]:
    m = ctx.cfg.foundation.model
    if m and ctx.cfg.path(m).exists():
        return {"model": ctx.cfg.path(m)}
    return {}


def _foundation_params(ctx: Context) -> dict[str, Any]:
    return {**ctx.cfg.foundation.model_dump(), "device": ctx.cfg.device}


def _foundation_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.foundation import load_model, model_info, resolve_foundation

    fc = ctx.cfg.foundation
    if fc.model:
        name = fc.model
        local = ctx.cfg.path(name)
        src = resolve_foundation(str(local) if local.exists() else name)
        shutil.copy2(src, ctx.output("foundation", "model"))
        rec.extra["foundation"] = {"how": "file" if local.exists() else "named", "name": name, "path": str(src)}
    elif fc.distill is not None:
        from firemlip.distill import distill_foundation

        d = fc.distill
        dd = rec.stage_dir / "distill" if not d.cache_dir else ctx.cfg.path(d.cache_dir)
        report = distill_foundation(d.teacher, d.elements, dd,
                                    structures=[str(ctx.cfg.path(p)) for p in d.structures],
                                    size=d.size, budget_minutes=d.budget_minutes, device=ctx.cfg.device,
                                    seed=ctx.cfg.seed, **d.options)
        shutil.copy2(dd / "foundation.model", ctx.output("foundation", "model"))
        shutil.copy2(dd / "pretrain.extxyz", ctx.output("foundation", "pretrain"))
        for extra in ("parity.png", "report.json"):
            if (dd / extra).exists():
                shutil.copy2(dd / extra, rec.stage_dir / f"distill_{extra}")
                rec.outputs.append(f"distill_{extra}")
        rec.extra["foundation"] = {"how": "distilled", "teacher": d.teacher, "directory": str(dd),
                                   "heldout": report.get("heldout") or report.get("metrics")}
    else:
        raise FiremlipError("foundation: give foundation.model (a name such as mace-mp-0-small or a .model path) "
                            "or foundation.distill")
    info = model_info(load_model(ctx.output("foundation", "model")))
    rec.extra["model_info"] = info


def _replay_file(ctx: Context) -> Path | None:
    """The replay set: the config's file, else the distilled foundation's pretraining set, else None (pseudo)."""
    ft = ctx.cfg.stages.finetune
    if ft is not None and ft.replay:
        return ctx.cfg.path(ft.replay)
    pre = ctx.output("foundation", "pretrain")
    return pre if pre.exists() else None


def _training_inputs(ctx: Context, **data: Path) -> dict[str, Path]:
    """Inputs of a training stage: the foundation, the given data files (train, valid …) and the replay file."""
    inp = {"foundation": ctx.output("foundation", "model"), **data}
    rp = _replay_file(ctx)
    if rp is not None:
        inp["replay"] = rp
    return inp


def _prefit_inputs(ctx: Context) -> dict[str, Path]:
    return _training_inputs(ctx, train=ctx.output("label", "labelled"))


def _prefit_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.training.api import finetune

    st = ctx.cfg.stages.prefit
    assert st is not None
    inp = _prefit_inputs(ctx)
    model = finetune(st.strategy, inp["foundation"], inp["train"], None, rec.stage_dir / "train",
                     replay=inp.get("replay"), device=ctx.cfg.device, seed=st.seed, **st.training_options())
    shutil.copy2(model, ctx.output("prefit", "model"))


def _sampling_model(ctx: Context) -> Path:
    pre = ctx.cfg.stages.prefit
    if pre is not None and pre.enabled:
        return ctx.output("prefit", "model")
    return ctx.output("foundation", "model")


def _sample_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.sampling import sample

    st = ctx.cfg.stages.sample
    assert st is not None
    from firemlip.io import read_frames

    frames = read_frames(ctx.output("structures", "structures"))
    if st.structures is not None:
        bad = [i for i in st.structures if not 0 <= i < len(frames)]
        if bad:
            raise FiremlipError(f"stages.sample.structures: indices {bad} outside 0..{len(frames) - 1}")
        frames = [frames[i] for i in st.structures]
    opts = st.model_dump(include=set(SampleOptions.model_fields))
    sample(_sampling_model(ctx), frames, opts.pop("temperatures_K"), out_path=ctx.output("sample", "pool"),
           device=ctx.cfg.device, manifest=False, **opts)


def _select_body(ctx: Context, rec: StageRecord) -> None:
    import numpy as np

    from firemlip.io import atomic_path
    from firemlip.selection import select

    st = ctx.cfg.stages.select
    assert st is not None
    res = select(ctx.output("sample", "pool"), st.sizes, st.method, st.seed, rec.stage_dir,
                 split=st.split, variance=st.variance, max_components=st.max_components, manifest=False,
                 **st.soap.model_dump())
    warning = res.get("pca", {}).get("warning") if isinstance(res, dict) else None
    if warning:
        print(f"firemlip: select: warning: {warning}", file=sys.stderr)
    n = st.sizes[0]
    shutil.copy2(rec.stage_dir / f"n{n}" / "selected.extxyz", ctx.output("select", "selected"))
    with atomic_path(ctx.output("select", "pca")) as tmp, open(tmp, "wb") as fh:
        np.save(fh, res.pca.Z)  # the pool's PCA coordinates: label_selected splits the selection by them
    rec.outputs.append(f"n{n}/pca.png")
    rec.extra["selection"] = {k: v for k, v in res.items() if k != "frames"} if isinstance(res, dict) else {}


def _label_selected_inputs(ctx: Context) -> dict[str, Path]:
    st = ctx.cfg.stages.label_selected
    assert st is not None
    extra = {f"extra_train[{i}]": ctx.cfg.path(f) for i, f in enumerate(st.extra_train)}
    if st.data:
        return {"data": ctx.cfg.path(st.data), **extra}
    return {"selected": ctx.output("select", "selected"), "pca": ctx.output("select", "pca"), **extra}


def _label_selected_body(ctx: Context, rec: StageRecord) -> None:
    import numpy as np

    from firemlip.io import read_frames, require_labels, write_frames
    from firemlip.labelling import label_file
    from firemlip.splits import descriptor_split

    st = ctx.cfg.stages.label_selected
    assert st is not None
    pool_Z = None
    if st.data:
        src = ctx.cfg.path(st.data)
        frames = read_frames(src)
        require_labels(frames, str(src))
        rec.extra["labels"] = {"from": "bundled data", "path": str(src)}
    else:
        lab = ctx.cfg.labeller
        rep = label_file(str(ctx.output("select", "selected")), str(ctx.output("label_selected", "labelled")),
                         lab.calculator, lab.settings, str(ctx.run_dir / "label-cache"), lab.workers, lab.dask,
                         str(ctx.output("label_selected", "failed")))
        frames = read_frames(ctx.output("label_selected", "labelled"))
        rec.extra["labels"] = {"from": "labeller", **rep}
        pool_Z = np.load(ctx.output("select", "pca"))  # this run's selection: split by its PCA coordinates
    soap = ctx.cfg.stages.select.soap.model_dump() if ctx.cfg.stages.select is not None else None
    parts, how = descriptor_split(frames, st.split, st.seed, pool_Z=pool_Z, soap=soap,
                                  what="stages.label_selected.split")
    extra = _extra_train_frames(ctx, frames)
    for name, idx in zip(("train", "valid", "test"), parts, strict=True):
        write_frames(ctx.output("label_selected", name), [frames[i] for i in idx] + (extra if name == "train" else []))
    rec.extra["sizes"] = {name: len(p) + (len(extra) if name == "train" else 0)
                          for name, p in zip(("train", "valid", "test"), parts, strict=True)}
    rec.extra["split"] = how
    if extra:
        rec.extra["extra_train"] = {"files": list(ctx.cfg.stages.label_selected.extra_train), "frames": len(extra)}


def _extra_train_frames(ctx: Context, selected: list) -> list:
    """The frames of ``stages.label_selected.extra_train`` (training part only), checked for labels and for
    elements that the selected frames do not have."""
    from firemlip.io import elements_of, read_frames, require_labels

    st = ctx.cfg.stages.label_selected
    assert st is not None
    known = set(elements_of(selected))
    out = []
    for f in st.extra_train:
        src = ctx.cfg.path(f)
        frames = read_frames(src, what="stages.label_selected.extra_train file")
        require_labels(frames, str(src))
        new = sorted(set(elements_of(frames)) - known)
        if new:
            raise FiremlipError(f"{src}: stages.label_selected.extra_train has element(s) {', '.join(new)} that the "
                                f"selected frames ({', '.join(sorted(known))}) do not have")
        for a in frames:
            a.info.setdefault("config_type", "extra_train")
            a.info["extra_train_file"] = str(f)
        out.extend(frames)
    return out


def _finetune_inputs(ctx: Context) -> dict[str, Path]:
    return _training_inputs(ctx, train=ctx.output("label_selected", "train"),
                            valid=ctx.output("label_selected", "valid"))


def _finetune_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.training.api import finetune

    st = ctx.cfg.stages.finetune
    assert st is not None
    inp = _finetune_inputs(ctx)
    models = {}
    for strategy in [st.strategy, *[b for b in st.baselines if b != st.strategy]]:
        t0 = time.time()
        m = finetune(strategy, inp["foundation"], inp["train"], inp["valid"], rec.stage_dir / strategy,
                     replay=inp.get("replay"), device=ctx.cfg.device, seed=st.seed, **st.training_options())
        shutil.copy2(m, ctx.output("finetune", f"model_{strategy}"))
        models[strategy] = {"wall_time_s": round(time.time() - t0, 1)}
    rec.extra["models"] = models
    replay = inp.get("replay") or rec.stage_dir / st.strategy / "replay_pseudo.extxyz"
    if Path(replay).exists():
        shutil.copy2(replay, ctx.output("finetune", "replay"))


def _evaluate_inputs(ctx: Context) -> dict[str, Path]:
    st = ctx.cfg.stages.evaluate
    assert st is not None
    inp = {"test": ctx.cfg.path(st.test) if st.test else ctx.output("label_selected", "test"),
           "foundation": ctx.output("foundation", "model")}
    ft = ctx.cfg.stages.finetune
    assert ft is not None
    for s in [ft.strategy, *ft.baselines]:
        inp[f"model_{s}"] = ctx.output("finetune", f"model_{s}")
    rp = ctx.output("finetune", "replay")
    if rp.exists():
        inp["replay"] = rp
    return inp


def _evaluate_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.evaluation import evaluate
    from firemlip.io import write_json

    st = ctx.cfg.stages.evaluate
    assert st is not None
    inp = _evaluate_inputs(ctx)
    models = {k[6:]: v for k, v in inp.items() if k.startswith("model_")}
    if st.zero_shot:
        models = {"foundation": inp["foundation"], **models}
    table = {}
    for name, path in models.items():
        datasets = {"test": inp["test"]}
        if "replay" in inp:
            datasets["replay"] = inp["replay"]
        res = evaluate(path, datasets, rec.stage_dir / name, device=ctx.cfg.device,
                       foundation=inp["foundation"] if "replay" in inp else None,
                       replay="replay" if "replay" in inp else None)
        t = res["datasets"]["test"]
        row = {"test": t}
        if "forgetting" in res:
            row["forgetting"] = res["forgetting"]
        table[name] = row
        rec.outputs.append(f"{name}/metrics.json")
    write_json(ctx.output("evaluate", "comparison"), table)


def _export_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.lammps import export_model

    st = ctx.cfg.stages.export
    ft = ctx.cfg.stages.finetune
    assert st is not None and ft is not None
    export_model(ctx.output("finetune", "model"), ctx.output("export", "model"), dtype=st.dtype)


def _md_structure(ctx: Context):
    from firemlip.io import read_frames

    md = ctx.cfg.stages.md
    assert md is not None
    if md.elastic is not None and md.elastic.structure:
        return read_frames(ctx.cfg.path(md.elastic.structure))[0]
    return read_frames(ctx.output("structures", "structures"))[0]


def _md_body(ctx: Context, rec: StageRecord) -> None:
    import os
    from concurrent.futures import ThreadPoolExecutor

    from firemlip.io import read_frames
    from firemlip.lammps import render, run_lammps

    md = ctx.cfg.stages.md
    assert md is not None
    model = ctx.output("export", "model")
    jobs: list[tuple[str, dict[str, Any]]] = []  # (run directory name, what the manifest records)
    if md.diffusion is not None:
        d = md.diffusion
        atoms = read_frames(ctx.output("structures", "structures"))[0] * tuple(d.supercell)
        for T in d.temperatures_K:
            name = f"diffusion_{T:g}K"
            render("diffusion", rec.stage_dir / name, atoms, model=model, temperature_K=T, steps=d.steps,
                   equil_steps=d.equil_steps, dump_every=d.dump_every, timestep_fs=d.timestep_fs,
                   seed=md.seed + 1, thermo_every=max(1, d.steps // 20))
            jobs.append((name, {"temperature_K": T}))
    if md.elastic is not None:
        e = md.elastic
        render("elastic", rec.stage_dir / "elastic", _md_structure(ctx), model=model, strain=e.strain,
               temperature_K=0, timestep_fs=1.0, seed=md.seed + 1, thermo_every=100)
        jobs.append(("elastic", {}))
    n_at_once = max(1, min(md.concurrent, len(jobs)))
    threads = max(1, (os.cpu_count() or 1) // (n_at_once * md.np)) if n_at_once > 1 else None

    def one(job: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        name, info = job
        log = run_lammps(rec.stage_dir / name, np=md.np, threads=threads, progress=n_at_once == 1)
        return {**info, "timing": log.get("timing"), "warnings": log.get("warnings")}

    if n_at_once == 1:
        results = [one(j) for j in jobs]
    else:
        print(f"md: {len(jobs)} LAMMPS runs, {n_at_once} at a time with {threads} thread(s) each", file=sys.stderr)
        with ThreadPoolExecutor(n_at_once) as pool:
            results = list(pool.map(one, jobs))
    rec.extra["runs"] = {name: res for (name, _), res in zip(jobs, results, strict=True)}
    if n_at_once > 1:
        rec.extra["concurrent"] = {"runs_at_once": n_at_once, "threads_each": threads}


def _analyze_inputs(ctx: Context) -> dict[str, Path]:
    return {role: ctx.output("md", role) for role in stage_by_name("md").files(ctx.cfg)}


def _md_files(cfg: RunConfig) -> dict[str, str]:
    """The md stage's outputs: one dump per diffusion temperature (role ``diffusion_<T>K``) and the elastic
    stresses (role ``elastic``)."""
    md = cfg.stages.md
    out: dict[str, str] = {}
    if md is None:
        return out
    if md.diffusion is not None:
        out.update({f"diffusion_{T:g}K": f"diffusion_{T:g}K/dump.diffusion.lammpstrj"
                    for T in md.diffusion.temperatures_K})
    if md.elastic is not None:
        out["elastic"] = "elastic/elastic_stress.dat"
    return out


def _analyze_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.analysis.elastic import analyze_elastic

    an = ctx.cfg.stages.analyze
    md = ctx.cfg.stages.md
    assert an is not None and md is not None
    results: dict[str, Any] = {}
    if md.diffusion is not None:
        from firemlip.analysis.transport import analyze_temperatures, run_name
        from firemlip.io import read_frames

        # the starting crystal (as the MD stage built it) is the reference of the melting check
        reference = read_frames(ctx.output("structures", "structures"))[0] * tuple(md.diffusion.supercell)
        opts = an.model_dump(include=set(DiffusionOptions.model_fields))
        opts["seed"] = an.seed if "seed" in an.model_fields_set else ctx.cfg.seed
        temps = md.diffusion.temperatures_K
        res = analyze_temperatures({T: ctx.output("md", run_name(T)) for T in temps}, an.species,
                                   md.diffusion.timestep_fs, rec.stage_dir, reference=reference, region=an.region,
                                   charge=an.charge, haven=an.haven, diffusion=opts,
                                   arrhenius=an.model_dump(include=set(ArrheniusOptions.model_fields)))
        rec.outputs += [f"{run_name(T)}/{f}" for T in temps for f in ("diffusion.json", "msd.png")]
        left_out = res.pop("left_out")
        if left_out:
            rec.extra["arrhenius_left_out"] = left_out
        if "arrhenius" in res:
            rec.outputs.append("arrhenius/arrhenius.json")
            if not res["arrhenius"]["valid"]:
                rec.extra["arrhenius"] = "invalid: " + "; ".join(res["arrhenius"]["invalid_reasons"])
        results.update(res)
    if md.elastic is not None:
        results["elastic"] = analyze_elastic(ctx.output("md", "elastic").parent, rec.stage_dir / "elastic")
        rec.outputs.append("elastic/elastic.json")
    rec.extra["summary"] = {k: {kk: vv for kk, vv in v.items() if not isinstance(vv, (list, dict))}
                            for k, v in results.items() if isinstance(v, dict)}


def _audit_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.audit import audit

    st = ctx.cfg.stages.audit
    ft = ctx.cfg.stages.finetune
    assert st is not None and ft is not None
    res = audit(ctx.output("finetune", "model"), ctx.output("structures", "structures"),
                rec.stage_dir, train=ctx.output("label_selected", "train"), device=ctx.cfg.device,
                skip=tuple(st.skip), progress=False, **st.settings)
    rec.extra["audit_passed"] = bool(res.get("passed"))
    if st.fail_run and not res.get("passed"):
        raise FiremlipError(f"audit: the model failed a gate (see {rec.stage_dir / 'audit.json'})")


def _report_body(ctx: Context, rec: StageRecord) -> None:
    from firemlip.report import build_report

    md, ht = build_report(ctx.run_dir)
    shutil.copy2(md, ctx.output("report", "markdown"))
    shutil.copy2(ht, ctx.output("report", "html"))


def _enabled(name: str) -> Callable[[RunConfig], bool]:
    def check(c: RunConfig) -> bool:
        st = getattr(c.stages, name)
        return st is not None and st.enabled

    return check


def _needs_foundation(c: RunConfig) -> bool:
    return any(_enabled(n)(c) for n in ("prefit", "sample", "finetune"))


def _finetune_files(cfg: RunConfig) -> dict[str, str]:
    """The finetune stage's outputs: the main strategy's model (``model``), every strategy's (``model_<name>``)
    and the replay set that was used (optional)."""
    ft = cfg.stages.finetune
    if ft is None:
        return {}
    return {"model": f"{ft.strategy}.model", **{f"model_{s}": f"{s}.model" for s in [ft.strategy, *ft.baselines]},
            "replay?": "replay.extxyz"}


STAGES: list[Stage] = [
    Stage("structures", lambda c: True, _structures_inputs, _structures_params, _structures_body,
          "read or build the input structures", {"structures": "structures.extxyz"}),
    Stage("perturb", lambda c: c.stages.perturb.enabled,
          lambda ctx: {"structures": ctx.output("structures", "structures")},
          lambda ctx: ctx.cfg.stages.perturb.model_dump(), _perturb_body, "rattled/strained copies",
          {"perturbed": "perturbed.extxyz"}),
    Stage("label", lambda c: c.stages.label.enabled and c.stages.perturb.enabled,
          lambda ctx: {"perturbed": ctx.output("perturb", "perturbed")},
          lambda ctx: {"labeller": ctx.cfg.labeller.model_dump(exclude={"workers", "dask"}),
                       **ctx.cfg.stages.label.model_dump()},
          _label_body, "first-principles labels", {"labelled": "labelled.extxyz", "failed?": "failed.extxyz"}),
    Stage("foundation", _needs_foundation, _foundation_inputs, _foundation_params, _foundation_body,
          "resolve (download, verify) or distil the foundation model",
          {"model": "foundation.model", "pretrain?": "pretrain.extxyz"}),
    Stage("prefit", _enabled("prefit"), _prefit_inputs,
          lambda ctx: {**ctx.cfg.stages.prefit.model_dump(), "device": ctx.cfg.device}, _prefit_body,
          "pre-fine-tune the foundation on the labelled perturbed set", {"model": "prefit.model"}),
    Stage("sample", _enabled("sample"),
          lambda ctx: {"model": _sampling_model(ctx), "structures": ctx.output("structures", "structures")},
          lambda ctx: {**ctx.cfg.stages.sample.model_dump(exclude={"workers"}), "device": ctx.cfg.device},
          _sample_body, "MD sampling of the candidate pool", {"pool": "pool.extxyz"}),
    Stage("select", _enabled("select"), lambda ctx: {"pool": ctx.output("sample", "pool")},
          lambda ctx: ctx.cfg.stages.select.model_dump(), _select_body, "SOAP → PCA → K-means selection",
          {"selected": "selected.extxyz", "pca": "pca_coordinates.npy"}),
    Stage("label_selected", _enabled("label_selected"), _label_selected_inputs,
          lambda ctx: {**ctx.cfg.stages.label_selected.model_dump(),
                       "labeller": ctx.cfg.labeller.model_dump(exclude={"workers", "dask"})},
          _label_selected_body, "labels of the selected frames and the train/valid/test split",
          {"train": "train.extxyz", "valid": "valid.extxyz", "test": "test.extxyz",
           "labelled?": "labelled.extxyz", "failed?": "failed.extxyz"}),
    Stage("finetune", _enabled("finetune"), _finetune_inputs,
          lambda ctx: {**ctx.cfg.stages.finetune.model_dump(), "device": ctx.cfg.device}, _finetune_body,
          "fine-tune with replay (and baselines)", _finetune_files),
    Stage("evaluate", _enabled("evaluate"), _evaluate_inputs,
          lambda ctx: ctx.cfg.stages.evaluate.model_dump(), _evaluate_body,
          "RMSE on held-out data, parity plots, forgetting", {"comparison": "comparison.json"}),
    Stage("export", _enabled("export"),
          lambda ctx: {"model": ctx.output("finetune", "model")},
          lambda ctx: ctx.cfg.stages.export.model_dump(), _export_body, "export the model to LAMMPS",
          {"model": "fire.lammps.pt", "sidecar": "fire.lammps.json"}),
    Stage("audit", _enabled("audit"),
          lambda ctx: {"model": ctx.output("finetune", "model"),
                       "structures": ctx.output("structures", "structures")},
          lambda ctx: {**ctx.cfg.stages.audit.model_dump(), "device": ctx.cfg.device}, _audit_body,
          "audit the fine-tuned model (ZBL pair scans, holes, MD grid)", {"report": "audit.json"}),
    Stage("md", _enabled("md"),
          lambda ctx: {"model": ctx.output("export", "model"),
                       "structures": ctx.output("structures", "structures")},
          lambda ctx: ctx.cfg.stages.md.model_dump(), _md_body, "LAMMPS production MD (diffusion, elastic)",
          _md_files),
    Stage("analyze", _enabled("analyze"), _analyze_inputs,
          lambda ctx: ctx.cfg.stages.analyze.model_dump(), _analyze_body,
          "diffusion, Arrhenius, conductivity, elastic moduli"),
    Stage("report", lambda c: c.stages.report, lambda ctx: {}, lambda ctx: {}, _report_body,
          "report.md and report.html", {"markdown": "report.md", "html": "report.html"}),
]


def stage_by_name(name: str) -> Stage:
    """The stage called ``name``."""
    for st in STAGES:
        if st.name == name:
            return st
    raise KeyError(f"unknown stage {name!r}")


def _check_outputs(ctx: Context, st: Stage, rec: StageRecord) -> None:
    """Record the stage's declared outputs in its manifest; a required one that is missing is an error."""
    files = st.files(ctx.cfg)
    sd = ctx.stage_dir(st.name)
    missing = [f"{role} ({files[role]})" for role in st.required(ctx.cfg) if not (sd / files[role]).exists()]
    if missing:
        raise FiremlipError(f"stage {st.name}: declared output(s) not written: {', '.join(missing)}")
    declared = [name for name in files.values() if (sd / name).exists()]
    rec.outputs = list(dict.fromkeys(declared + list(rec.outputs)))


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
                _check_outputs(ctx, st, rec)
            log(f"{head} done in {time.time() - t0:.1f} s → {sd}")
            status[st.name] = "ran"
        if until == st.name:
            break
    status["wall_time_s"] = round(time.time() - t_run, 2)
    return status
