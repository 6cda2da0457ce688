""":func:`audit`: run the gates on a model and write ``audit.json``, PNGs, ``holes.extxyz`` and the manifest."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firemlip.audit.report import GATES
from firemlip.audit.settings import AuditSettings
from firemlip.errors import FiremlipError

PathLike = str | os.PathLike[str]


def _read_host(path: PathLike, model) -> list:
    from firemlip.foundation import check_elements
    from firemlip.io import read_frames

    frames = read_frames(path, what="host structure file")
    for k, a in enumerate(frames):
        if len(a) == 0:
            raise FiremlipError(f"{os.fspath(path)}: frame {k} has no atoms")
    check_elements(model, frames, path)
    return frames


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch/OpenMP threads (also ``OMP_NUM_THREADS`` for LAMMPS children); None: unchanged.

    On a machine whose cores are shared with other work, one thread can be many times faster than two for
    ~100-atom cells (OpenMP threads spin waiting for a busy core).
    """
    if threads is None:
        yield
        return
    import torch

    if threads < 1:
        raise FiremlipError(f"audit: threads must be a positive integer, got {threads}")
    prev, prev_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(int(threads))
    os.environ["OMP_NUM_THREADS"] = str(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(prev)
        if prev_env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = prev_env


def audit(model: PathLike, structures: PathLike, out_dir: PathLike = "audit", train: PathLike | None = None,
          device: str = "cpu", skip: Sequence[str] = (), progress: bool = True,
          settings: AuditSettings | None = None, threads: int | None = None, **thresholds: Any) -> dict:
    """Audit a MACE model for deployment and return the result dict (also written to ``out_dir/audit.json``).

    ``model``: a ``.model`` path or foundation name; ``structures``: host frames (extxyz or any ASE format) the
    model will run on; ``train``: the training data (extxyz) defining each pair's trusted range (without it the
    host's shortest distances are used). Gates (``skip`` any of them): ``coverage``, ``pair_scan``,
    ``host_scan``, ``hole_hunt``, ``md_grid``. Thresholds are the fields of :class:`AuditSettings`, given as
    ``settings`` or keywords. Result: ``passed`` (every gate that ran), ``gates`` (pass/fail, numbers and
    thresholds per gate), ``model``, ``host``, ``settings``, ``outputs``. Outputs in ``out_dir``:
    ``audit.json``, ``pair_scans.png``, ``host_scans.png``, ``holes.png``, ``md_grid.png``, ``holes.extxyz`` (only
    when holes were found; unlabelled frames for ``firemlip label``), ``md_grid/`` (MD runs), ``manifest.json``.
    ``threads``: torch/OpenMP threads for the whole audit (default: leave torch's setting).
    """
    with torch_threads(threads):
        return _audit(model, structures, out_dir, train, device, skip, progress, settings, thresholds)


@dataclass
class _AuditRun:
    """What the gates share: the loaded model (``net``, from ``model_path``), the host frames, the trusted pair
    ranges (Å), the settings, the device, the output directory, whether training data was given and the list of
    files written to the output directory so far."""

    net: Any
    model_path: PathLike
    host: list
    ranges: dict[str, dict]
    settings: AuditSettings
    device: str
    progress: bool
    out: Path
    have_train: bool
    outputs: list[str] = field(default_factory=lambda: ["audit.json"])


def _skipped(reason: str = "skipped on request") -> dict:
    """The record of a gate that did not run (it counts as passed)."""
    return {"status": "skipped", "passed": True, "reason": reason}


def _resolve_settings(settings: AuditSettings | None, thresholds: dict, skip: Sequence[str]) -> AuditSettings:
    """The audit's settings (given, or built from keyword ``thresholds``), validated; an error for both at once or
    for an unknown gate in ``skip``."""
    if settings is None:
        settings = AuditSettings.from_kwargs(**thresholds)
    elif thresholds:
        raise FiremlipError("audit: give thresholds either as settings or as keywords, not both")
    else:
        settings.validate()
    unknown = sorted(set(skip) - set(GATES))
    if unknown:
        raise FiremlipError(f"audit: unknown gate(s) to skip {', '.join(unknown)} (gates: {', '.join(GATES)})")
    return settings


def _load_audited_model(model: PathLike, device: str, settings: AuditSettings) -> tuple[PathLike, Any]:
    """Resolve and load the model (float64, eval mode); an error when the scans would start at or beyond its
    cut-off (Å). Returns (its path, the model)."""
    from firemlip.foundation import load_model, resolve_foundation

    model_path = resolve_foundation(model)
    net = load_model(model_path, device=device, dtype="float64")
    net.eval()
    r_cut = float(net.r_max)
    if settings.scan_start_A >= r_cut:
        raise FiremlipError(f"audit: scan_start_A = {settings.scan_start_A:g} Å is not below the model's cut-off "
                            f"{r_cut:g} Å")
    return model_path, net


def _read_train(train: PathLike | None, net) -> list | None:
    """The training frames (their elements checked against the model), or None without a training file."""
    from firemlip.foundation import check_elements
    from firemlip.io import read_frames

    if train is None:
        return None
    train_frames = read_frames(train, what="training file")
    check_elements(net, train_frames, train)
    return train_frames


def _curve_thresholds(settings: AuditSettings) -> dict[str, float]:
    """The thresholds the pair and host scans share (Å, eV, eV/Å)."""
    return {"trust_margin": settings.trust_margin, "wall_height_eV": settings.wall_height_eV,
            "force_tolerance_eV_A": settings.force_tolerance_eV_A, "min_rise_eV": settings.min_rise_eV,
            "scan_start_A": settings.scan_start_A}


def _coverage(run: _AuditRun) -> dict:
    """Gate ``coverage``: every host pair has training data."""
    from firemlip.audit.coverage import coverage_gate

    g = coverage_gate(run.ranges, run.have_train)
    g["thresholds"] = {"trust_margin": run.settings.trust_margin,
                       "default_trust_factor": run.settings.default_trust_factor}
    return g


def _pair_scan(run: _AuditRun) -> dict:
    """Gate ``pair_scan``: dimer scans of every element pair (``pair_scans.png``)."""
    from firemlip.audit.pairs import pair_scans
    from firemlip.audit.report import plot_pair_scans

    t1 = time.time()
    g = pair_scans(run.net, run.ranges, run.settings, run.device)
    g["wall_s"] = time.time() - t1
    g["thresholds"] = {**_curve_thresholds(run.settings), "scan_step_A": run.settings.scan_step_A}
    plot_pair_scans(g, run.out / "pair_scans.png", run.settings.wall_height_eV)
    run.outputs.append("pair_scans.png")
    return g


def _host_scan(run: _AuditRun) -> dict:
    """Gate ``host_scan``: pair approaches inside host frames (``host_scans.png`` when any were scanned)."""
    from firemlip.audit.pairs import host_scans
    from firemlip.audit.report import plot_host_scans

    t1 = time.time()
    g = host_scans(run.net, run.host, run.ranges, run.settings, run.device)
    g["wall_s"] = time.time() - t1
    g["thresholds"] = {**_curve_thresholds(run.settings), "host_scan_step_A": run.settings.host_scan_step_A,
                       "host_scan_frames": run.settings.host_scan_frames}
    if g["scans"]:
        plot_host_scans(g, run.out / "host_scans.png", run.settings.wall_height_eV)
        run.outputs.append("host_scans.png")
    return g


def _hole_hunt(run: _AuditRun) -> dict:
    """Gate ``hole_hunt``: compressed, rattled and inserted frames relaxed in search of holes (``holes.png``;
    ``holes.extxyz`` when any were found)."""
    from firemlip.audit.holes import hole_hunt
    from firemlip.audit.report import plot_holes
    from firemlip.io import write_frames

    holes_path = run.out / "holes.extxyz"
    t1 = time.time()
    g, holes = hole_hunt(run.net, run.host, run.settings, run.device, run.progress)
    g["wall_s"] = time.time() - t1
    g["thresholds"] = {k: getattr(run.settings, k) for k in (
        "hole_factor", "hole_trials", "compression_range", "rattle_A", "insert_factor_range",
        "relax_steps", "relax_fmax_eV_A")}
    g["holes_file"] = None
    if holes:
        write_frames(holes_path, holes)
        g["holes_file"] = str(holes_path)
        run.outputs.append(holes_path.name)
    plot_holes(g, run.out / "holes.png")
    run.outputs.append("holes.png")
    return g


def _md_grid(run: _AuditRun) -> dict:
    """Gate ``md_grid``: MD of the first host frame over temperatures and seeds (``md_grid/``, ``md_grid.png``)."""
    from firemlip.audit.mdgrid import md_grid
    from firemlip.audit.report import plot_md_grid

    t1 = time.time()
    g = md_grid(run.model_path, run.host[0], run.settings, run.out / "md_grid", run.device, run.progress)
    g["wall_s"] = time.time() - t1
    g["thresholds"] = {k: getattr(run.settings, k) for k in (
        "md_temperatures_K", "md_seeds", "md_steps", "md_timestep_fs", "min_stable_fraction")}
    plot_md_grid(g, run.out / "md_grid.png")
    run.outputs.append("md_grid.png")
    return g


def _skip_reason(gate: str, skip: Sequence[str], settings: AuditSettings) -> str | None:
    """Why ``gate`` does not run (asked to skip, or its size setting is 0), or None when it runs."""
    if gate in skip:
        return "skipped on request"
    size = {"host_scan": "host_scan_frames", "hole_hunt": "hole_trials", "md_grid": "md_steps"}.get(gate)
    if size is not None and getattr(settings, size) == 0:
        return f"{size} = 0"
    return None


#: the gates in the order they run (names as in :data:`firemlip.audit.report.GATES`)
_GATE_RUNNERS: dict[str, Callable[[_AuditRun], dict]] = {
    "coverage": _coverage, "pair_scan": _pair_scan, "host_scan": _host_scan, "hole_hunt": _hole_hunt,
    "md_grid": _md_grid}


def _run_gates(run: _AuditRun, skip: Sequence[str]) -> dict[str, dict]:
    """Every gate in order, each either run or recorded as skipped; each gets its ``status`` (pass | fail |
    skipped)."""
    holes_path = run.out / "holes.extxyz"
    if holes_path.exists():
        holes_path.unlink()  # a stale file from an earlier audit would mislead
    gates: dict[str, dict] = {}
    for name, gate in _GATE_RUNNERS.items():
        reason = _skip_reason(name, skip, run.settings)
        gates[name] = _skipped(reason) if reason else gate(run)
    for v in gates.values():
        v.setdefault("status", "pass" if v["passed"] else "fail")
    return gates


def _audit(model: PathLike, structures: PathLike, out_dir: PathLike, train: PathLike | None, device: str,
           skip: Sequence[str], progress: bool, settings: AuditSettings | None, thresholds: dict) -> dict:
    """:func:`audit` inside the thread setting: load and check the inputs, run the gates in the stage's manifest
    and write ``audit.json``."""
    from firemlip.audit.coverage import trusted_ranges
    from firemlip.audit.report import summary_text
    from firemlip.audit.zbl import has_zbl
    from firemlip.foundation import model_elements
    from firemlip.io import write_json
    from firemlip.workflow.manifest import stage_manifest

    settings = _resolve_settings(settings, thresholds, skip)
    t0 = time.time()
    model_path, net = _load_audited_model(model, device, settings)
    elements = model_elements(net)
    host = _read_host(structures, net)
    train_frames = _read_train(train, net)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs: dict[str, PathLike] = {"model": model_path, "structures": structures}
    if train is not None:
        inputs["train"] = train
    params = {"device": device, "skip": sorted(skip), **settings.to_dict()}

    with stage_manifest("audit", out, inputs, params) as rec:
        ranges = trusted_ranges(elements, float(net.r_max), train_frames, host, settings.default_trust_factor)
        run = _AuditRun(net, model_path, host, ranges, settings, device, progress, out, train_frames is not None)
        gates = _run_gates(run, skip)
        result = {
            "passed": all(v["passed"] for v in gates.values()),
            "gates": gates,
            "model": {"path": str(model_path), "elements": elements, "r_max_A": float(net.r_max),
                      "zbl": has_zbl(net)},
            "host": {"path": os.fspath(structures), "frames": len(host), "atoms": len(host[0])},
            "train": os.fspath(train) if train is not None else None,
            "settings": settings.to_dict(), "device": device, "out_dir": str(out),
            "wall_s": time.time() - t0, "outputs": run.outputs,
        }
        result["summary"] = summary_text(result)
        write_json(out / "audit.json", result)
        rec.outputs = run.outputs
        rec.extra = {"passed": result["passed"], "gates": {k: v["status"] for k, v in gates.items()}}
    return result
