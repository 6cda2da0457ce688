"""Options defined once: the CLI, the YAML stages and the Python functions agree on every default."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
from ase.build import bulk

from conftest import REPO
from firemlip.cli import build_parser
from firemlip.errors import FiremlipError
from firemlip.options import (
    DiffusionOptions,
    FinetuneOptions,
    GuardOptions,
    InterfaceOptions,
    PerturbOptions,
    SampleOptions,
    SelectOptions,
    options_from_args,
)

BASE_ARGS = {
    "finetune": ["finetune", "--foundation", "f.model", "--train", "t.extxyz", "-o", "out"],
    "sample": ["sample", "m.model", "s.extxyz"],
    "select": ["select", "pool.extxyz", "-n", "5", "-o", "out"],
    "perturb": ["perturb", "s.cif", "-o", "p.extxyz"],
    "interface": ["interface", "a.cif", "b.cif", "-o", "i.extxyz"],
    "analyze diffusion": ["analyze", "diffusion", "d.dump", "--species", "Li", "--temperature", "600",
                          "--timestep-fs", "1"],
}
MODELS = {"finetune": FinetuneOptions, "sample": SampleOptions, "select": SelectOptions, "perturb": PerturbOptions,
          "interface": InterfaceOptions, "analyze diffusion": DiffusionOptions}


@pytest.mark.parametrize("command", list(MODELS))
def test_cli_defaults_are_the_model_defaults(command):
    args = build_parser().parse_args(BASE_ARGS[command])
    model = MODELS[command]
    assert options_from_args(model, args) == model()


def test_cli_values_reach_the_model_and_bad_values_are_one_line(capsys):
    p = build_parser()
    args = p.parse_args(BASE_ARGS["finetune"] + ["--lr", "0.01", "--ema-decay", "none", "--mace-arg=--swa",
                                                 "--replay-structures", "a.cif", "b.cif", "--stage-two", "0.7"])
    o = options_from_args(FinetuneOptions, args)
    assert o.lr == 0.01 and o.ema_decay is None and o.mace_args == ("--swa",)
    assert o.replay_structures == ("a.cif", "b.cif") and o.stage_two_start == 0.7
    args = p.parse_args(BASE_ARGS["select"] + ["--r-cut", "4.5", "--n-jobs", "1"])
    o = options_from_args(SelectOptions, args)
    assert o.soap.r_cut == 4.5 and o.soap.n_jobs == 1 and o.soap.n_max == SelectOptions().soap.n_max
    args = p.parse_args(BASE_ARGS["sample"] + ["--guard-energy-jump", "0.5", "-T", "300", "400"])
    assert options_from_args(GuardOptions, args).max_energy_jump_eV_per_atom == 0.5
    assert options_from_args(SampleOptions, args).temperatures_K == [300.0, 400.0]
    args = p.parse_args(BASE_ARGS["interface"] + ["--substrate-miller", "110", "--vacancy", "substrate:Li:c"])
    o = options_from_args(InterfaceOptions, args)
    assert o.substrate_miller == (1, 1, 0) and o.vacancies == ["substrate:Li:c"]
    with pytest.raises(SystemExit) as ei:
        options_from_args(FinetuneOptions, p.parse_args(BASE_ARGS["finetune"] + ["--epochs", "0"]), parser=p)
    assert ei.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--epochs" in err and "positive integer" in err
    with pytest.raises(FiremlipError, match=r"sample: --steps: expected a positive integer, got -3"):
        options_from_args(SampleOptions, p.parse_args(BASE_ARGS["sample"] + ["--steps", "-3"]))


def test_python_defaults_come_from_the_models():
    from firemlip.analysis.diffusion import analyze_diffusion
    from firemlip.sampling import sample
    from firemlip.selection import select
    from firemlip.structures import build_interface, perturb
    from firemlip.training.api import finetune

    def defaults(fn):
        return {k: v.default for k, v in inspect.signature(fn).parameters.items()
                if v.default is not inspect.Parameter.empty}

    s = defaults(sample)
    for k, v in SampleOptions().model_dump().items():
        assert s["temperatures" if k == "temperatures_K" else k] == (tuple(v) if isinstance(v, list) else v), k
    sel = defaults(select)
    for k in ("method", "seed", "variance", "max_components", "minibatch_threshold"):
        assert sel[k] == getattr(SelectOptions(), k), k
    p = defaults(perturb)
    po = PerturbOptions()
    assert (p["n"], p["rattle"], p["strain"], p["seed"], p["min_dist_factor"]) == (
        po.n_configs, po.rattle, po.strain, po.seed, po.min_dist_factor)
    bi = defaults(build_interface)
    for k, v in InterfaceOptions().model_dump().items():
        if k != "vacancies":
            assert bi[k] == v, k
    f = defaults(finetune)
    assert (f["epochs"], f["replay_ratio"]) == (FinetuneOptions().epochs, FinetuneOptions().replay_ratio)
    d = defaults(analyze_diffusion)
    for k, v in DiffusionOptions().model_dump().items():
        assert d[k] == v, k


def test_config_stages_inherit_the_options(tmp_path):
    from firemlip.config import load_config

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("structures: [a.cif]\nstages:\n  finetune: {epochs: 3, options: {e0s: average}}\n"
                        "  sample: {}\n  select: {soap: {r_cut: 4.0}}\n")
    cfg = load_config(cfg_path)
    assert cfg.stages.finetune.training_options() == {**FinetuneOptions().model_dump(), "epochs": 3,
                                                      "e0s": "average"}
    assert cfg.stages.sample.model_dump(include=set(SampleOptions.model_fields)) == SampleOptions().model_dump()
    assert cfg.stages.select.soap.r_cut == 4.0 and cfg.stages.select.soap.n_max == SelectOptions().soap.n_max
    assert cfg.stages.perturb.model_dump(exclude={"enabled"}) == PerturbOptions().model_dump()
    cfg_path.write_text("structures: [a.cif]\nstages:\n  finetune: {options: {lr: -1}}\n")
    with pytest.raises(FiremlipError, match=r"stages.finetune: options: lr.*got -1"):
        load_config(cfg_path)


def test_each_default_is_written_once():
    """The option defaults that used to disagree between the CLI, the API and the config are literals only in
    options.py (defaults elsewhere refer to the models)."""
    src = {p.relative_to(REPO).as_posix(): p.read_text() for p in (REPO / "python" / "firemlip").rglob("*.py")}
    patterns = {  # a keyword/field default or a CLI default of that value
        "lr 0.005": r"\blr\b[^\n=]{0,15}=\s*(Field\()?0\.005\b",  # (distill's student lr is its own setting)
        "batch size 4": r"batch_size\b[^\n=]{0,15}=\s*(Field\()?4\b",
        "SOAP r_cut 5.0": r"r_cut\b[^\n=]{0,15}=\s*(Field\()?5\.0\b",
        "sample engine": r"engine\b[^\n=]{0,40}=\s*(Field\()?\s*[\"'](ase|lammps)[\"']",
        "sample steps 10000": r"\bsteps\b[^\n=]{0,15}=\s*(Field\()?10000\b",
        "rattle 0.05": r"\brattle\b[^\n=]{0,15}=\s*(Field\()?0\.05\b",
        "drift framework": r"\bdrift\b[^\n=]{0,60}=\s*(Field\()?\s*[\"']framework[\"']",
    }
    # distill.py's DistillSettings has its own lr and batch size (the student's training, another command)
    own = {"lr 0.005": {"python/firemlip/distill.py"}, "batch size 4": {"python/firemlip/distill.py"}}
    for what, pat in patterns.items():
        where = [f for f, text in src.items() if re.search(pat, text) and f not in own.get(what, set())]
        assert where == ["python/firemlip/options.py"], (what, where)


def test_splits_module():
    from firemlip.splits import descriptor_split, part_sizes, random_split, stratified_split

    assert part_sizes(20, [0.5, 0.1, 0.4]).tolist() == [10, 2, 8]
    with pytest.raises(FiremlipError, match="summing to 1"):
        part_sizes(20, [0.5, 0.6])
    parts = random_split(10, [6, 2, 2], seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(10)) and [len(p) for p in parts] == [6, 2, 2]
    assert all((a == b).all() for a, b in zip(parts, random_split(10, [6, 2, 2], seed=3), strict=True))
    # stratified: two well-separated clusters, both present in every part
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.normal(0, 0.1, (30, 2)), rng.normal(5, 0.1, (30, 2))])
    parts, strata = stratified_split(Z, [0.6, 0.2, 0.2], seed=1)
    assert [len(p) for p in parts] == [36, 12, 12]
    for p in parts:
        assert (p < 30).sum() > 0 and (p >= 30).sum() > 0
    # descriptor_split: by the selection's PCA rows when every frame has a pool_index, else by SOAP of the frames
    frames = []
    for k in range(12):
        a = bulk("Cu", "fcc", a=3.6, cubic=True)
        a.rattle(0.01 + 0.02 * k, seed=k)
        a.info["pool_index"] = 2 * k
        frames.append(a)
    pool_Z = rng.normal(size=(30, 3))
    parts, how = descriptor_split(frames, [0.5, 0.25, 0.25], 0, pool_Z=pool_Z)
    assert how["descriptors"].startswith("selection PCA") and [len(p) for p in parts] == [6, 3, 3]
    parts, how = descriptor_split(frames, [0.5, 0.25, 0.25], 0, soap={"r_cut": 3.5, "n_max": 2, "l_max": 2})
    assert how["descriptors"].startswith("SOAP") and sorted(np.concatenate(parts).tolist()) == list(range(12))


def test_a_stage_that_does_not_write_its_declared_output_fails(tmp_path):
    from firemlip.config import RunConfig
    from firemlip.workflow.manifest import StageRecord
    from firemlip.workflow.run import Context, Stage, _check_outputs

    cfg = RunConfig(structures=["a.cif"])
    ctx = Context(cfg, tmp_path)
    st = Stage("structures", lambda c: True, lambda c: {}, lambda c: {}, lambda c, r: None, "",
               {"structures": "structures.extxyz", "extra?": "extra.json"})
    rec = StageRecord("structures", tmp_path / "00_structures", {}, {})
    with pytest.raises(FiremlipError, match=r"stage structures: declared output\(s\) not written: structures"):
        _check_outputs(ctx, st, rec)
    (tmp_path / "00_structures").mkdir()
    (tmp_path / "00_structures" / "structures.extxyz").write_text("")
    _check_outputs(ctx, st, rec)
    assert rec.outputs == ["structures.extxyz"]
