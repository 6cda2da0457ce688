"""The run configuration: one YAML file validated by pydantic; invalid fields are reported by their path.

Example (see ``examples/*/config.yaml``)::

    run_dir: runs/cu_ni
    structures: [structure.extxyz]
    labeller: {calculator: emt}
    stages:
      perturb: {n_configs: 20, rattle: 0.05, strain: 0.02}
      label: {}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from firemlip.errors import ConfigError, require_file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InterfaceConfig(_Strict):
    """Build the input structure as an interface of two bulk files (thicknesses in layers, gaps in Å)."""

    substrate: str
    film: str
    substrate_miller: tuple[int, int, int] = (1, 0, 0)
    film_miller: tuple[int, int, int] = (1, 0, 0)
    substrate_layers: PositiveInt = 2
    film_layers: PositiveInt = 2
    gap_A: float = Field(2.5, ge=0)
    vacuum_A: float = Field(0.0, ge=0)
    max_mismatch: PositiveFloat = 0.05
    max_area_A2: PositiveFloat = 100.0
    max_atoms: PositiveInt = 64
    #: atoms removed from the middle of a slab, each ``SLAB:ELEMENT[:WYCKOFF]`` (e.g. ``substrate:Li:c``: a Li(2)
    #: vacancy of Li3N); see :func:`firemlip.structures.make_vacancies`
    vacancies: list[str] = Field(default_factory=list)

    @field_validator("vacancies")
    @classmethod
    def _vacancy_syntax(cls, v: list[str]) -> list[str]:
        from firemlip.structures import parse_vacancy

        for text in v:
            try:
                parse_vacancy(text)
            except Exception as exc:
                raise ValueError(str(exc)) from None
        return v


class LabellerConfig(_Strict):
    """Which ASE calculator labels frames (see ``firemlip label``)."""

    calculator: str = "gpaw"
    settings: dict[str, Any] = Field(default_factory=dict)
    workers: PositiveInt = 1
    dask: str | None = None


class DistillConfig(_Strict):
    """Distil a compact MACE foundation from a universal teacher (see ``firemlip foundation distill``)."""

    teacher: str = "sevenn"
    elements: list[str] = Field(default_factory=list)
    structures: list[str] = Field(default_factory=list)
    size: Literal["tiny", "small", "medium"] = "small"
    budget_minutes: PositiveFloat = 60
    cache_dir: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class FoundationConfig(_Strict):
    """A MACE foundation by name (mace-mp-0-small …) or path, or a distilled one."""

    model: str | None = None
    distill: DistillConfig | None = None


class PerturbStage(_Strict):
    enabled: bool = True
    n_configs: PositiveInt = 30
    rattle: float = Field(0.05, ge=0, description="Gaussian displacement σ (Å)")
    strain: float = Field(0.02, ge=0, description="max symmetric strain component")
    min_dist_factor: PositiveFloat = 0.6
    seed: int = 0


class LabelStage(_Strict):
    enabled: bool = True
    retry_failed: bool = False


class FinetuneStage(_Strict):
    """Fine-tuning (``prefit`` on the perturbed set, ``finetune`` on the selected set); epochs, lr per step."""

    enabled: bool = True
    strategy: Literal["fire", "vanilla", "scratch", "mace-multihead"] = "fire"
    baselines: list[Literal["vanilla", "scratch", "mace-multihead"]] = Field(default_factory=list)
    epochs: PositiveInt = 50
    replay: str | None = None
    replay_ratio: float = Field(1.0, ge=0)
    batch_size: PositiveInt = 4
    lr: PositiveFloat = 0.005
    dtype: Literal["float64", "float32"] = "float64"
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)


class LabelSelectedStage(_Strict):
    """Labels for the selected frames: from the labeller, or from an existing labelled file (``data``)."""

    enabled: bool = True
    data: str | None = None
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0


class EvaluateStage(_Strict):
    """Held-out evaluation; ``test`` defaults to the selected set's test split (eV, eV/Å, GPa metrics)."""

    enabled: bool = True
    test: str | None = None
    zero_shot: bool = True


class ExportStage(_Strict):
    enabled: bool = True
    dtype: Literal["float64", "float32"] = "float64"


class DiffusionRun(_Strict):
    temperatures_K: list[PositiveFloat] = Field(default_factory=lambda: [600.0, 800.0])
    steps: PositiveInt = 2000
    equil_steps: PositiveInt = 200
    dump_every: PositiveInt = 10
    timestep_fs: PositiveFloat = 1.0
    species: str = "Li"
    supercell: tuple[int, int, int] = (1, 1, 1)


class ElasticRun(_Strict):
    strain: PositiveFloat = 0.005
    structure: str | None = None


class MDStage(_Strict):
    """Production MD in LAMMPS with the exported model: diffusion at several temperatures and elastic constants."""

    enabled: bool = True
    diffusion: DiffusionRun | None = Field(default_factory=DiffusionRun)
    elastic: ElasticRun | None = Field(default_factory=ElasticRun)
    np: PositiveInt = 1
    #: LAMMPS runs (the diffusion temperatures and the elastic run) executed at the same time, each with
    #: cores / concurrent threads: on a few cores two serial runs of a small cell finish sooner than one after the
    #: other with twice the threads
    concurrent: PositiveInt = 1
    seed: int = 0


class SampleStage(_Strict):
    """MD sampling of the candidate pool (temperatures in K, timestep in fs)."""

    enabled: bool = True
    temperatures_K: list[PositiveFloat] = Field(default_factory=lambda: [300.0, 600.0, 900.0])
    steps: PositiveInt = 1000
    interval: PositiveInt = 10
    timestep_fs: PositiveFloat = 1.0
    engine: Literal["lammps", "ase"] = "lammps"
    structures: list[int] | None = None  # indices of the run's structures to sample from (default: all)
    dtype: Literal["float64", "float32"] = "float64"
    workers: PositiveInt = 1
    seed: int = 0


class SelectStage(_Strict):
    enabled: bool = True
    sizes: list[PositiveInt] = Field(default_factory=lambda: [500])
    method: Literal["soap-kmeans", "random", "fps"] = "soap-kmeans"
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    soap: dict[str, Any] = Field(default_factory=dict)
    variance: float = Field(0.99, gt=0, le=1)  # PCA explained-variance target
    max_components: PositiveInt = 100  # PCA component cap (selection.DEFAULT_MAX_COMPONENTS)


class AnalyzeStage(_Strict):
    """Analyses of the MD stage: diffusion (cm²/s), Arrhenius (eV), conductivity (S/cm), elastic (GPa)."""

    enabled: bool = True
    species: str = "Li"
    charge: float | None = None
    haven: float | None = None
    target_T_K: PositiveFloat = 300.0
    #: centre of mass removed from the displacements: the framework's (non-mobile atoms; the literature's and
    #: kinisi's reference, falls back to system when there is none), the whole cell's, or none
    drift: Literal["framework", "system", "none"] = "framework"
    #: mobile atoms analysed: all of ``species`` (None), or those initially in a region of the starting structure:
    #: ``substrate`` / ``film`` (a slab of the interface), ``z:LO:HI`` (Å along the stacking axis) or
    #: ``zf:LO:HI`` (fractional); the melt check then looks at that region (see firemlip.analysis.diffusion)
    region: str | None = None

    @field_validator("region")
    @classmethod
    def _region_syntax(cls, v: str | None) -> str | None:
        if v is not None:
            from firemlip.analysis.diffusion import parse_region

            try:
                parse_region(v)
            except Exception as exc:
                raise ValueError(str(exc)) from None
        return v


class AuditStage(_Strict):
    """Model audit after fine-tuning (pair scans vs ZBL, hole hunt, MD stability grid); see ``firemlip audit``."""

    enabled: bool = True
    skip: list[str] = Field(default_factory=list)
    fail_run: bool = False
    settings: dict[str, Any] = Field(default_factory=dict)


class Stages(_Strict):
    perturb: PerturbStage = Field(default_factory=PerturbStage)
    label: LabelStage = Field(default_factory=LabelStage)
    prefit: FinetuneStage | None = None
    sample: SampleStage | None = None
    select: SelectStage | None = None
    label_selected: LabelSelectedStage | None = None
    finetune: FinetuneStage | None = None
    evaluate: EvaluateStage | None = None
    export: ExportStage | None = None
    audit: AuditStage | None = None
    md: MDStage | None = None
    analyze: AnalyzeStage | None = None
    report: bool = True


class RunConfig(_Strict):
    """A whole FIRE run. Paths are relative to the config file's directory."""

    run_dir: str = "runs/fire"
    structures: list[str] = Field(default_factory=list)
    interface: InterfaceConfig | None = None
    labeller: LabellerConfig = Field(default_factory=LabellerConfig)
    foundation: FoundationConfig = Field(default_factory=FoundationConfig)
    device: Literal["cpu", "cuda"] = "cpu"
    seed: int = 0
    stages: Stages = Field(default_factory=Stages)
    base_dir: str = Field(".", exclude=True)

    @model_validator(mode="after")
    def _need_structures(self) -> RunConfig:
        if not self.structures and self.interface is None:
            raise ValueError("give `structures` (a list of files) or an `interface` section")
        return self

    def path(self, p: str) -> Path:
        """A config path resolved against the config file's directory."""
        q = Path(os.path.expanduser(p))
        return q if q.is_absolute() else Path(self.base_dir) / q


def _describe(err: dict[str, Any]) -> str:
    t = err.get("type", "")
    ctx = err.get("ctx", {}) or {}
    got = err.get("input")
    if t == "extra_forbidden":
        return "unknown field"
    if t == "missing":
        return "required field is missing"
    if t == "greater_than" and ctx.get("gt") == 0 and isinstance(got, int):
        return f"expected a positive integer, got {got!r}"
    if t == "greater_than":
        return f"expected a number > {ctx.get('gt')}, got {got!r}"
    if t == "greater_than_equal":
        return f"expected a number >= {ctx.get('ge')}, got {got!r}"
    if t in ("int_parsing", "int_type", "int_from_float"):
        return f"expected an integer, got {got!r}"
    if t in ("float_parsing", "float_type"):
        return f"expected a number, got {got!r}"
    if t == "literal_error":
        return f"expected one of {ctx.get('expected')}, got {got!r}"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{msg[0].lower() + msg[1:] if msg else msg}" + (f", got {got!r}" if t.endswith("_type") else "")


def format_validation_error(exc: ValidationError) -> str:
    """The first error of a pydantic ValidationError as ``dotted.path: what was expected, got X``."""
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
    more = len(exc.errors()) - 1
    return f"{loc}: {_describe(err)}" + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a YAML run config; errors are one line naming the file and the field path."""
    require_file(path, "config file")
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation_error(exc)}") from None
    cfg.base_dir = str(Path(path).resolve().parent)
    return cfg
