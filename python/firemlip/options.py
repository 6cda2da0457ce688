"""Options of the stage commands, defined once.

Each command's settings are one pydantic model here (:class:`PerturbOptions`, :class:`FinetuneOptions`,
:class:`SampleOptions`, :class:`SoapOptions`, :class:`SelectOptions`, :class:`ExportOptions`,
:class:`DiffusionOptions`, :class:`ArrheniusOptions`). Their defaults are the only ones: the Python functions take
their keyword defaults from them, the command-line options are generated from them (:func:`add_options`,
:func:`options_from_args`) and the YAML run config's stages inherit from them (:mod:`firemlip.config`).

This module imports nothing of firemlip but :mod:`firemlip.errors`, so that every layer can use it.

Units: lengths in Å, times in fs, temperatures in K, pressures in GPa, learning rate per optimiser step.
"""

from __future__ import annotations

import argparse
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from firemlip.errors import FiremlipError

M = TypeVar("M", bound="Options")

#: the floating-point precisions a MACE model is run in
DTYPES = ("float64", "float32")


# ------------------------------------------------------------------------------------------------ base class
class Options(BaseModel):
    """Base of the option models: unknown fields are errors; :meth:`build` reports them as one line."""

    model_config = ConfigDict(extra="forbid")
    #: the command's name in messages (``finetune: lr must be positive``)
    command: ClassVar[str] = "options"
    #: fields that must be > 0 / >= 0 (None allowed where the type allows it); checked per field, so that errors
    #: carry the field's path (``stages.perturb.n_configs: expected a positive integer, got -3``)
    positive: ClassVar[tuple[str, ...]] = ()
    nonnegative: ClassVar[tuple[str, ...]] = ()

    @field_validator("*", mode="after")
    @classmethod
    def _ranges(cls, v: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            return v
        if name in cls.positive and not (v > 0 and math.isfinite(v)):
            raise ValueError(f"expected a positive integer, got {v!r}" if isinstance(v, int)
                             else f"{name.replace('_', ' ')} must be positive, got {v!r}")
        if name in cls.nonnegative and not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"{name.replace('_', ' ')} must be a non-negative number, got {v!r}")
        return v

    @classmethod
    def build(cls: type[M], **kw: Any) -> M:
        """Validated options from keyword arguments; a bad value is one :class:`FiremlipError` line."""
        bad = sorted(set(kw) - set(cls.model_fields))
        if bad:
            raise FiremlipError(f"{cls.command}: unknown option(s) {', '.join(bad)} "
                                f"(known: {', '.join(sorted(cls.model_fields))})")
        try:
            return cls.model_validate(kw)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = [str(x) for x in err.get("loc", ())]
            msg = _describe(err)
            if len(loc) == 1 and loc[0].replace("_", " ") in msg:
                raise FiremlipError(f"{cls.command}: {msg}") from None  # the message names the field already
            raise FiremlipError(f"{cls.command}: {format_validation_error(exc)}") from None

    @classmethod
    def default(cls, name: str) -> Any:
        """The default value of field ``name``."""
        return cls.model_fields[name].get_default(call_default_factory=True)

    def changed(self) -> dict[str, Any]:
        """The fields set explicitly (as a dict)."""
        return self.model_dump(include=self.model_fields_set)


def _describe(err: Mapping[str, Any]) -> str:
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
    if t == "less_than_equal":
        return f"expected a number <= {ctx.get('le')}, got {got!r}"
    if t in ("int_parsing", "int_type", "int_from_float"):
        return f"expected an integer, got {got!r}"
    if t in ("float_parsing", "float_type"):
        return f"expected a number, got {got!r}"
    if t == "literal_error":
        return f"expected one of {ctx.get('expected')}, got {got!r}"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{msg[0].lower() + msg[1:] if msg else msg}" + (f", got {got!r}" if t.endswith("_type") else "")


def format_validation_error(exc: ValidationError) -> str:
    """The first error of a pydantic ValidationError as ``dotted.path: what was expected, got X``.

    Errors of a whole model (its validators) have no path and read as the validator's message.
    """
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    more = len(exc.errors()) - 1
    text = f"{loc}: {_describe(err)}" if loc else _describe(err)
    return text + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


# ----------------------------------------------------------------------------------------------- the options
class PerturbOptions(Options):
    """Rattled/strained copies of the input structures (the pre-fine-tuning set)."""

    command: ClassVar[str] = "perturb"
    positive: ClassVar[tuple[str, ...]] = ("n_configs", "min_dist_factor")
    nonnegative: ClassVar[tuple[str, ...]] = ("rattle", "strain")
    n_configs: int = Field(30, description="copies per input frame", json_schema_extra={"flag": "-n"})
    rattle: float = Field(0.05, description="Gaussian displacement σ in Å")
    strain: float = Field(0.02, description="max symmetric strain component (dimensionless)")
    min_dist_factor: float = Field(0.6, description="redraw a copy with a pair closer than this × the sum of "
                                                    "covalent radii")
    seed: int = Field(0, description="random seed")


def miller(text: str) -> tuple[int, int, int]:
    """argparse type: Miller indices written ``110`` or ``1,1,0``."""
    digits = text.replace(",", " ").split() if ("," in text or " " in text) else list(text)
    try:
        m = tuple(int(x) for x in digits)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected Miller indices like 100 or 1,1,0, got {text!r}") from None
    if len(m) != 3:
        raise argparse.ArgumentTypeError(f"expected three Miller indices, got {text!r}")
    return m  # type: ignore[return-value]


class InterfaceOptions(Options):
    """An interface of two bulk structures (pymatgen's Zur–McGill lattice matching): slab thicknesses in layers,
    gap and vacuum in Å, area in Å²."""

    command: ClassVar[str] = "interface"
    positive: ClassVar[tuple[str, ...]] = ("substrate_layers", "film_layers", "max_atoms", "max_mismatch",
                                           "max_area_A2")
    nonnegative: ClassVar[tuple[str, ...]] = ("gap_A", "vacuum_A")
    substrate_miller: tuple[int, int, int] = Field((1, 0, 0), description="substrate surface (e.g. 110 or 1,1,0)",
                                                   json_schema_extra={"type": miller, "metavar": "HKL"})
    film_miller: tuple[int, int, int] = Field((1, 0, 0), description="film surface",
                                              json_schema_extra={"type": miller, "metavar": "HKL"})
    substrate_layers: int = Field(2, description="substrate thickness in layers")
    film_layers: int = Field(2, description="film thickness in layers")
    gap_A: float = Field(2.5, description="gap between the slabs in Å", json_schema_extra={"flag": "--gap"})
    vacuum_A: float = Field(0.0, description="vacuum above the film in Å", json_schema_extra={"flag": "--vacuum"})
    max_mismatch: float = Field(0.05, description="lattice mismatch tolerance")
    max_area_A2: float = Field(100.0, description="max interface area in Å²", json_schema_extra={"flag": "--max-area"})
    max_atoms: int = Field(64, description="max atoms of the interface cell")
    #: atoms removed from the middle of a slab, each ``SLAB:ELEMENT[:WYCKOFF]`` (e.g. ``substrate:Li:c``: a Li(2)
    #: vacancy of Li3N); see :func:`firemlip.structures.make_vacancies`
    vacancies: list[str] = Field(
        default_factory=list, description="remove the ELEMENT atom (on bulk Wyckoff site WYCKOFF) nearest the "
                                          "middle of the substrate or film slab, e.g. substrate:Li:c; repeatable",
        json_schema_extra={"flag": "--vacancy", "append": True, "metavar": "SLAB:ELEMENT[:WYCKOFF]"})


class FinetuneOptions(Options):
    """Settings of one fine-tuning run (learning rate per optimiser step; loss weights dimensionless)."""

    command: ClassVar[str] = "finetune"
    positive: ClassVar[tuple[str, ...]] = ("lr", "batch_size", "epochs", "schedule_epochs", "patience",
                                           "scheduler_patience", "replay_size")
    nonnegative: ClassVar[tuple[str, ...]] = ("monitor_size", "replay_ratio", "replay_weight", "replay_energy_weight",
                                              "energy_weight", "forces_weight", "stress_weight", "weight_decay",
                                              "replay_rattle_A", "replay_max_strain", "clip_grad",
                                              "stage_two_energy_weight", "stage_two_lr")
    epochs: int = Field(50, description="training epochs")
    batch_size: int = Field(4, description="frames per optimiser step")
    lr: float = Field(0.005, description="learning rate (Adam)")
    weight_decay: float = Field(5e-7, description="AdamW weight decay")
    energy_weight: float = Field(1.0, description="loss weight of energies (per atom)")
    forces_weight: float = Field(100.0, description="loss weight of forces")
    stress_weight: float = Field(1.0, description="loss weight of stresses (frames with REF_stress)")
    replay_ratio: float = Field(1.0, description="replay frames drawn per epoch, as a multiple of the task frames")
    replay_weight: float = Field(1.0, description="loss weight of replay frames")
    replay_energy_weight: float = Field(
        1.0, description="energy weight of replay frames relative to their forces (0 = force-only replay, for a "
                         "labeller whose energy zero differs from the foundation's)")
    replay_filter: Literal["none", "overlap", "subset"] = Field(
        "none", description="keep replay frames sharing an element with the task (overlap) or only task elements")
    replay_size: int | None = Field(None, description="pseudo-label replay pool size (none: max(20, 4 × ratio × "
                                                      "task frames))")
    replay_structures: tuple[str, ...] = Field(
        (), description="extra structure files (bulk phases, unselected pool frames) for pseudo-label replay",
        json_schema_extra={"metavar": "FILE"})
    replay_rattle_A: float = Field(0.05, description="rattle σ (Å) of pseudo-label replay structures")
    replay_max_strain: float = Field(0.03, description="max strain of pseudo-label replay structures")
    ema_decay: float | None = Field(0.99, description="exponential moving average of the weights (none = off)")
    clip_grad: float | None = Field(10.0, description="gradient-norm clip (none = off)")
    lr_factor: float = Field(0.8, description="factor of the plateau lr scheduler")
    scheduler_patience: int = Field(5, description="epochs without improvement before the plateau lr drops")
    lr_schedule: Literal["plateau", "cosine"] = Field(
        "plateau", description="plateau (ReduceLROnPlateau) or cosine (lr → lr/100 over the planned epochs)")
    patience: int = Field(30, description="early stopping: epochs without a better validation loss")
    stage_two_start: float | None = Field(
        None, description="start stage two (raised energy weight, lr/10) after this fraction of the epochs",
        json_schema_extra={"flag": "--stage-two", "metavar": "FRACTION"})
    stage_two_energy_weight: float = Field(1000.0, description="energy weight in stage two")
    stage_two_lr: float | None = Field(None, description="learning rate in stage two (default lr / 10)")
    dtype: Literal["float64", "float32"] = Field("float64", description="training precision")
    e0s: Literal["foundation", "average", "estimated"] = Field(
        "foundation", description="E0s from the foundation, least squares on the task (average), or the task's "
                                  "offset from the foundation's predictions (estimated; scratch: as average)")
    head: str | None = Field(None, description="foundation head to fine-tune (default: the model's default head)")
    valid_fraction: float = Field(0.1, description="fraction of the training frames held out for validation when "
                                                   "no validation file is given")
    monitor_size: int = Field(32, description="replay frames kept aside to log forgetting every epoch (0: none)")
    name: str | None = Field(None, description="output model file stem (default: the strategy)")
    progress: bool = Field(True, description="progress bar", json_schema_extra={"cli": False})
    mace_args: tuple[str, ...] = Field(
        (), description="extra argument for mace_run_train (mace-multihead), repeatable: --mace-arg=--swa",
        json_schema_extra={"flag": "--mace-arg", "append": True, "metavar": "ARG"})
    zbl: bool = Field(False, description="add MACE's ZBL pair repulsion (a short-range wall; see firemlip audit)")
    deadline_unix_s: float | None = Field(None, description="wall-clock time (time.time(), s) by which training "
                                                            "must stop", json_schema_extra={"cli": False})
    schedule_epochs: int | None = Field(
        None, description="epochs the cosine lr and stage two are planned over (default: epochs); a short probe "
                          "of a longer run passes the longer run's length", json_schema_extra={"cli": False})

    @field_validator("replay_structures", mode="before")
    @classmethod
    def _paths(cls, v: Any) -> Any:
        return tuple(os.fspath(x) for x in v) if isinstance(v, (list, tuple)) else v

    @model_validator(mode="after")
    def _check(self) -> FinetuneOptions:
        _need(self.stage_two_start is None or 0 < self.stage_two_start < 1,
              f"stage_two_start is a fraction in (0, 1), got {self.stage_two_start}")
        _need(self.ema_decay is None or 0 < self.ema_decay < 1, f"ema_decay must be in (0, 1), got {self.ema_decay}")
        _need(0 < self.valid_fraction < 1, f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        return self

    @classmethod
    def from_kwargs(cls, **kw: Any) -> FinetuneOptions:
        """Alias of :meth:`build` (the name used before the options moved here)."""
        return cls.build(**kw)


class SampleOptions(Options):
    """MD sampling of the candidate pool (temperatures in K, time step in fs, pressure in GPa)."""

    command: ClassVar[str] = "sample"
    positive: ClassVar[tuple[str, ...]] = ("steps", "interval", "workers", "timestep_fs")
    nonnegative: ClassVar[tuple[str, ...]] = ("friction_per_fs",)
    temperatures_K: list[float] = Field(
        default_factory=lambda: [300.0, 600.0, 900.0], description="thermostat temperatures in K",
        json_schema_extra={"flag": ["--temperatures", "-T"], "metavar": "K"})
    steps: int = Field(10000, description="MD steps per temperature")
    interval: int = Field(100, description="keep a frame every N steps")
    engine: Literal["ase", "lammps"] = Field(
        "ase", description="MD engine: ase (any MACE .model, all thermostats) or lammps (pair_style mace; "
                           "the model is exported first)")
    timestep_fs: float = Field(1.0, description="time step in fs")
    thermostat: Literal["langevin", "nose-hoover"] = Field("langevin", description="thermostat (ASE engine)")
    friction_per_fs: float = Field(0.01, description="Langevin friction in 1/fs")
    ensemble: Literal["nvt", "npt"] = Field("nvt", description="nvt, or npt (isotropic MTK, ASE engine)")
    pressure_GPa: float = Field(0.0, description="NPT pressure in GPa")
    dtype: Literal["float64", "float32"] = Field("float64", description="model precision")
    workers: int = Field(1, description="parallel MD jobs (processes)")
    seed: int = Field(0, description="random seed (velocities, thermostat)")

    @model_validator(mode="after")
    def _check(self) -> SampleOptions:
        _need(bool(self.temperatures_K) and all(t > 0 for t in self.temperatures_K),
              f"temperatures must be positive (K), got {self.temperatures_K}")
        return self


class GuardOptions(Options):
    """The stability guard of MD sampling (:class:`firemlip.stability.StabilityGuard`): a trajectory stops when a
    pair A–B is closer than ``max(distance_floor, distance_factor × (r_cov(A) + r_cov(B)))`` Å, the potential
    energy jumps by more than ``max_energy_jump_eV_per_atom`` between checks, or the temperature exceeds
    ``max(max_temperature_factor × target, target + max_temperature_margin_K)`` K."""

    command: ClassVar[str] = "sample"
    nonnegative: ClassVar[tuple[str, ...]] = ("distance_factor", "distance_floor", "max_energy_jump_eV_per_atom",
                                              "max_temperature_factor", "max_temperature_margin_K")
    distance_factor: float = Field(0.5, description="stop when a pair is closer than this × sum of covalent radii",
                                   json_schema_extra={"flag": "--guard-distance-factor"})
    distance_floor: float = Field(0.5, description="closest allowed pair distance in Å, whatever the radii",
                                  json_schema_extra={"flag": "--guard-distance-floor"})
    max_energy_jump_eV_per_atom: float = Field(
        1.0, description="stop when E_pot changes by more than this many eV/atom between checks",
        json_schema_extra={"flag": "--guard-energy-jump"})
    max_temperature_factor: float = Field(3.0, description="stop when T exceeds this × target",
                                          json_schema_extra={"flag": "--guard-temperature-factor"})
    max_temperature_margin_K: float = Field(500.0, description="… and target + this many K",
                                            json_schema_extra={"flag": "--guard-temperature-margin"})


class SoapOptions(Options):
    """SOAP descriptors (dscribe): cut-off ``r_cut`` (Å), radial ``n_max``, angular ``l_max``, Gaussian ``sigma``
    (Å); ``average`` ``inner`` (one averaged spectrum per frame) or ``species`` (per-species averages,
    concatenated); ``n_jobs`` worker processes (none = all cores) and ``chunk_size`` frames per dscribe call
    (bounds memory)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    command: ClassVar[str] = "select"
    positive: ClassVar[tuple[str, ...]] = ("n_jobs", "chunk_size", "n_max", "r_cut", "sigma")
    nonnegative: ClassVar[tuple[str, ...]] = ("l_max",)
    r_cut: float = Field(5.0, description="SOAP cut-off in Å")
    n_max: int = Field(8, description="SOAP radial basis size")
    l_max: int = Field(6, description="SOAP maximum angular degree")
    sigma: float = Field(0.5, description="SOAP Gaussian width in Å")
    average: Literal["inner", "species"] = Field(
        "inner", description="inner: one averaged SOAP per frame; species: per-species averages concatenated")
    n_jobs: int | None = Field(None, description="processes for SOAP (default: all cores)")
    chunk_size: int = Field(1000, description="frames per SOAP chunk")

    @model_validator(mode="after")
    def _check(self) -> SoapOptions:
        _need(self.r_cut > 0 and self.n_max >= 1 and self.l_max >= 0 and self.sigma > 0,
              f"invalid SOAP options {self.key_params()}")
        return self

    def key_params(self) -> dict[str, Any]:
        """The parameters that change the descriptor values (not n_jobs/chunk_size)."""
        return self.model_dump(exclude={"n_jobs", "chunk_size"})

    def jobs(self) -> int:
        """Worker processes: ``n_jobs``, or all cores when it is None."""
        return self.n_jobs or os.cpu_count() or 1


class SelectOptions(Options):
    """Selection of a diverse subset: SOAP → PCA → K-means (or random / farthest-point baselines)."""

    command: ClassVar[str] = "select"
    positive: ClassVar[tuple[str, ...]] = ("max_components", "minibatch_threshold")
    method: Literal["soap-kmeans", "random", "fps"] = Field("soap-kmeans", description="selection method")
    seed: int = Field(0, description="random seed")
    variance: float = Field(0.99, description="PCA explained-variance target")
    max_components: int = Field(100, description="PCA component cap; the summary warns when the cap stops PCA "
                                                 "before the --variance target")
    minibatch_threshold: int = Field(10000, description="pools larger than this use mini-batch K-means",
                                     json_schema_extra={"cli": False})
    soap: SoapOptions = Field(default_factory=SoapOptions, description="SOAP settings")

    @model_validator(mode="after")
    def _check(self) -> SelectOptions:
        _need(0 < self.variance <= 1, f"variance must be in (0, 1], got {self.variance}")
        return self


class ExportOptions(Options):
    """Export of a MACE .model to the LAMMPS plugin's TorchScript format."""

    command: ClassVar[str] = "export"
    dtype: Literal["float64", "float32"] = Field("float64", description="float64 (reference) or float32 (faster MD)")


class DiffusionOptions(Options):
    """Diffusion analysis of an MD run: MSD fit window, drift reference, error bars and the Haven ratio."""

    command: ClassVar[str] = "diffusion"
    positive: ClassVar[tuple[str, ...]] = ("end_fraction", "tolerance", "n_bootstrap", "n_blocks",
                                           "haven_max_rel_err")
    drift: Literal["framework", "system", "none"] = Field(
        "framework", description="centre of mass removed per frame: framework = the non-mobile atoms, as in the "
                                 "literature and kinisi; system = the whole cell's, which also cancels part of the "
                                 "mobile ions' collective motion and biases the charge MSD and Haven ratio; with no "
                                 "framework atoms system is used and recorded")
    end_fraction: float = Field(0.5, description="the fit window ends at this fraction of the run")
    tolerance: float = Field(0.15, description="tolerance of the linear-regime search (relative)",
                             json_schema_extra={"cli": False})
    n_bootstrap: int = Field(200, description="bootstrap resamples over atoms",
                             json_schema_extra={"flag": "--bootstrap"})
    n_blocks: int = Field(10, description="blocks of time origins for the charge-MSD error (the fit window is cut "
                                          "to a lag of at most run/(2×blocks+1))",
                          json_schema_extra={"flag": "--blocks"})
    haven_max_rel_err: float = Field(
        0.5, description="largest relative error of D_sigma for which the Haven ratio is reported; above it H_R is "
                         "null and the run length needed is estimated")
    seed: int = Field(0, description="random seed (bootstrap)")

    @model_validator(mode="after")
    def _check(self) -> DiffusionOptions:
        _need(self.end_fraction <= 1, f"end_fraction must be in (0, 1], got {self.end_fraction}")
        return self


class ArrheniusOptions(Options):
    """Arrhenius fit of D(T) and its extrapolation (temperatures in K)."""

    command: ClassVar[str] = "arrhenius"
    positive: ClassVar[tuple[str, ...]] = ("target_T_K", "confidence")
    target_T_K: float = Field(300.0, description="extrapolation temperature in K",
                              json_schema_extra={"flag": "--target-temperature"})
    confidence: float = Field(0.95, description="confidence level of the error bands")


# ------------------------------------------------------------------------------------------ CLI generation
def _unwrap(ann: Any) -> tuple[Any, bool]:
    """(inner annotation, optional?) of ``X | None``."""
    args = typing.get_args(ann)
    if typing.get_origin(ann) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else ann), True
    return ann, False


def _none_or(kind: type) -> Any:
    def parse(text: str) -> Any:
        if text.lower() in ("none", "off"):
            return None
        return kind(text)

    parse.__name__ = kind.__name__
    return parse


def add_options(parser: argparse.ArgumentParser | Any, model: type[Options], *, exclude: Iterable[str] = (),
                prefix: str = "", help_defaults: Mapping[str, str] | None = None) -> None:
    """Add one ``--field-name`` option per field of ``model`` to ``parser`` (nested models are flattened).

    Types, choices and help come from the field; argparse defaults are suppressed so that
    :func:`options_from_args` sees only what the user gave and the model's defaults apply (they are shown in the
    help). Field metadata (``json_schema_extra``): ``cli: False`` hides a field, ``flag`` renames its option
    (a string or a list of strings), ``metavar``, ``append`` (a repeatable option collecting a tuple).
    """
    skip = set(exclude)
    for name, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if name in skip or extra.get("cli") is False:
            continue
        ann, optional = _unwrap(f.annotation)
        if isinstance(ann, type) and issubclass(ann, Options):
            add_options(parser, ann, prefix=f"{prefix}{name}__")
            continue
        flags = extra.get("flag") or f"--{name.replace('_', '-')}"
        flags = [flags] if isinstance(flags, str) else list(flags)
        default = f.get_default(call_default_factory=True)
        shown = (help_defaults or {}).get(name)
        if shown is None:
            shown = "none" if default is None else (" ".join(map(str, default)) if isinstance(default, (list, tuple))
                                                    else str(default))
        text = f.description or name
        kw: dict[str, Any] = {"dest": f"{prefix}{name}", "default": argparse.SUPPRESS,
                              "help": text if "default" in text or ann is bool or shown == ""
                              else f"{text} (default {shown})"}
        if ann is not bool and typing.get_origin(ann) is not Literal:
            kw["metavar"] = extra.get("metavar") or name.upper()
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if ann is bool:
            if default:
                flags = [f"--no-{name.replace('_', '-')}"]
                kw.update(action="store_false")
            else:
                kw.update(action="store_true")
        elif origin is Literal:
            kw.update(choices=list(args), type=type(args[0]))
        elif callable(extra.get("type")):
            kw.update(type=extra["type"])
        elif origin in (list, tuple):
            item = args[0] if args else str
            if extra.get("append"):
                kw.update(action="append", type=item)
            elif origin is tuple and args and args[-1] is not Ellipsis:
                kw.update(nargs=len(args), type=item)
            else:
                kw.update(nargs="+", type=item)
        elif ann in (int, float, str):
            kw.update(type=_none_or(ann) if optional and ann is not str else ann)
        else:
            continue  # dicts and other structured fields: YAML only (or --set KEY=VALUE where offered)
        parser.add_argument(*flags, **kw)


def given_options(model: type[Options], args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The fields of ``model`` (nested ones as dicts) that the user gave on the command line."""
    ns = vars(args)
    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        ann, _ = _unwrap(f.annotation)
        if isinstance(ann, type) and issubclass(ann, Options):
            sub = given_options(ann, args, prefix=f"{prefix}{name}__")
            if sub:
                out[name] = sub
        elif f"{prefix}{name}" in ns:
            out[name] = ns[f"{prefix}{name}"]
    return out


def options_from_args(model: type[M], args: argparse.Namespace, parser: argparse.ArgumentParser | None = None,
                      **extra: Any) -> M:
    """Validated ``model`` options from parsed arguments (``extra``: further fields, e.g. from ``--set``).

    A bad value is an argument error of ``parser`` (one line, exit status 2) or, without a parser, a
    :class:`FiremlipError` line; either names the option as typed when the error belongs to one field.
    """
    given = given_options(model, args)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(given.get(k), dict):
            given[k] = {**v, **given[k]}
        else:
            given.setdefault(k, v)
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(x) for x in err.get("loc", ())]
        msg = _describe(err)
        if loc:  # name the option as the user typed it
            owner: type[BaseModel] = model
            for part in loc[:-1]:
                sub = owner.model_fields.get(part)
                inner = _unwrap(sub.annotation)[0] if sub is not None else None
                owner = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else owner
            f = owner.model_fields.get(loc[-1])
            meta = f.json_schema_extra if f is not None and isinstance(f.json_schema_extra, dict) else {}
            flag = meta.get("flag") or f"--{loc[-1].replace('_', '-')}"
            msg = f"{flag if isinstance(flag, str) else flag[0]}: {msg}"
        if parser is not None:
            parser.error(msg)
        raise FiremlipError(f"{model.command}: {msg}") from None
