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
from firemlip.options import (
    ArrheniusOptions,
    DiffusionOptions,
    ExportOptions,
    FinetuneOptions,
    InterfaceOptions,
    PerturbOptions,
    SampleOptions,
    SelectOptions,
    format_validation_error,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InterfaceConfig(InterfaceOptions):
    """Build the input structure as an interface of two bulk files (:class:`firemlip.options.InterfaceOptions`:
    thicknesses in layers, gaps in Å)."""

    substrate: str
    film: str

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


class PerturbStage(PerturbOptions):
    """Rattled/strained copies of the structures (:class:`firemlip.options.PerturbOptions`)."""

    enabled: bool = True


class LabelStage(_Strict):
    enabled: bool = True
    retry_failed: bool = False


class FinetuneStage(FinetuneOptions):
    """Fine-tuning (``prefit`` on the perturbed set, ``finetune`` on the selected set): the fields of
    :class:`firemlip.options.FinetuneOptions` (epochs, lr per step, …) plus the strategy, its baselines and the
    replay file; ``options`` takes the same fields as a mapping (as written before they were top-level)."""

    enabled: bool = True
    strategy: Literal["fire", "vanilla", "scratch", "mace-multihead"] = "fire"
    baselines: list[Literal["vanilla", "scratch", "mace-multihead"]] = Field(default_factory=list)
    replay: str | None = None
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_options(self) -> FinetuneStage:
        bad = sorted(set(self.options) - set(FinetuneOptions.model_fields))
        if bad:
            raise ValueError(f"options: unknown field(s) {', '.join(bad)}")
        try:
            FinetuneOptions.model_validate(self.training_options())
        except ValidationError as exc:
            raise ValueError(f"options: {format_validation_error(exc)}") from None
        return self

    def training_options(self) -> dict[str, Any]:
        """The :class:`FinetuneOptions` fields of this stage, ``options`` applied on top (for ``finetune``)."""
        return {**self.model_dump(include=set(FinetuneOptions.model_fields)), **self.options}


class LabelSelectedStage(_Strict):
    """Labels for the selected frames: from the labeller, or from an existing labelled file (``data``).

    ``extra_train``: labelled files (``REF_energy`` eV, ``REF_forces`` eV/Å) whose frames go into the training part
    only, never into validation or test — e.g. frames of a production MD run that went wrong, labelled with
    ``firemlip label`` to close the hole the selection missed (one round of active learning). The split of the
    selected frames, and so the test set, does not change when files are added here.
    """

    enabled: bool = True
    data: str | None = None
    extra_train: list[str] = Field(default_factory=list)
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0


class EvaluateStage(_Strict):
    """Held-out evaluation; ``test`` defaults to the selected set's test split (eV, eV/Å, GPa metrics)."""

    enabled: bool = True
    test: str | None = None
    zero_shot: bool = True


class ExportStage(ExportOptions):
    enabled: bool = True


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


class SampleStage(SampleOptions):
    """MD sampling of the candidate pool (:class:`firemlip.options.SampleOptions`: temperatures in K, time step in
    fs) from the run's structures (``structures``: their indices; default all)."""

    enabled: bool = True
    structures: list[int] | None = None


class SelectStage(SelectOptions):
    """Selection (:class:`firemlip.options.SelectOptions`, SOAP settings under ``soap``) of ``sizes`` frames; the
    first size is labelled and split (train, valid, test) by ``label_selected``."""

    enabled: bool = True
    sizes: list[PositiveInt] = Field(default_factory=lambda: [500])
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)


class AnalyzeStage(DiffusionOptions, ArrheniusOptions):
    """Analyses of the MD stage: diffusion (cm²/s), Arrhenius (eV), conductivity (S/cm), elastic (GPa); the
    fields of :class:`firemlip.options.DiffusionOptions` (drift reference, …) and
    :class:`firemlip.options.ArrheniusOptions` (``target_T_K``, …) plus the species, its charge and an assumed
    Haven ratio."""

    enabled: bool = True
    species: str = "Li"
    charge: float | None = None
    haven: float | None = None
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
