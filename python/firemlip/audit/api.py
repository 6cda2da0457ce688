""":func:`audit`: run the gates on a model and write ``audit.json``, PNGs, ``holes.extxyz`` and the manifest."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
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


def _audit(model: PathLike, structures: PathLike, out_dir: PathLike, train: PathLike | None, device: str,
           skip: Sequence[str], progress: bool, settings: AuditSettings | None, thresholds: dict) -> dict:
    from firemlip.audit.coverage import coverage_gate, trusted_ranges
    from firemlip.audit.holes import hole_hunt
    from firemlip.audit.mdgrid import md_grid
    from firemlip.audit.pairs import host_scans, pair_scans
    from firemlip.audit.report import plot_holes, plot_host_scans, plot_md_grid, plot_pair_scans, summary_text
    from firemlip.audit.zbl import has_zbl
    from firemlip.foundation import check_elements, load_model, model_elements, resolve_foundation
    from firemlip.io import read_frames, write_frames, write_json
    from firemlip.workflow.manifest import stage_manifest

    if settings is None:
        settings = AuditSettings.from_kwargs(**thresholds)
    elif thresholds:
        raise FiremlipError("audit: give thresholds either as settings or as keywords, not both")
    else:
        settings.validate()
    unknown = sorted(set(skip) - set(GATES))
    if unknown:
        raise FiremlipError(f"audit: unknown gate(s) to skip {', '.join(unknown)} (gates: {', '.join(GATES)})")
    t0 = time.time()
    model_path = resolve_foundation(model)
    net = load_model(model_path, device=device, dtype="float64")
    net.eval()
    elements = model_elements(net)
    r_cut = float(net.r_max)
    if settings.scan_start_A >= r_cut:
        raise FiremlipError(f"audit: scan_start_A = {settings.scan_start_A:g} Å is not below the model's cut-off "
                            f"{r_cut:g} Å")
    host = _read_host(structures, net)
    train_frames = None
    if train is not None:
        train_frames = read_frames(train, what="training file")
        check_elements(net, train_frames, train)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs: dict[str, PathLike] = {"model": model_path, "structures": structures}
    if train is not None:
        inputs["train"] = train
    params = {"device": device, "skip": sorted(skip), **settings.to_dict()}

    with stage_manifest("audit", out, inputs, params) as rec:
        ranges = trusted_ranges(elements, r_cut, train_frames, host, settings.default_trust_factor)
        gates: dict[str, dict] = {}
        outputs = ["audit.json"]

        def skipped(reason: str = "skipped on request") -> dict:
            return {"status": "skipped", "passed": True, "reason": reason}

        g = coverage_gate(ranges, train_frames is not None)
        g["thresholds"] = {"trust_margin": settings.trust_margin,
                           "default_trust_factor": settings.default_trust_factor}
        gates["coverage"] = skipped() if "coverage" in skip else g
        curve_thr = {"trust_margin": settings.trust_margin, "wall_height_eV": settings.wall_height_eV,
                     "force_tolerance_eV_A": settings.force_tolerance_eV_A, "min_rise_eV": settings.min_rise_eV,
                     "scan_start_A": settings.scan_start_A}
        if "pair_scan" in skip:
            gates["pair_scan"] = skipped()
        else:
            t1 = time.time()
            g = pair_scans(net, ranges, settings, device)
            g["wall_s"] = time.time() - t1
            g["thresholds"] = {**curve_thr, "scan_step_A": settings.scan_step_A}
            gates["pair_scan"] = g
            plot_pair_scans(g, out / "pair_scans.png", settings.wall_height_eV)
            outputs.append("pair_scans.png")
        if "host_scan" in skip or settings.host_scan_frames == 0:
            gates["host_scan"] = skipped("skipped on request" if "host_scan" in skip else "host_scan_frames = 0")
        else:
            t1 = time.time()
            g = host_scans(net, host, ranges, settings, device)
            g["wall_s"] = time.time() - t1
            g["thresholds"] = {**curve_thr, "host_scan_step_A": settings.host_scan_step_A,
                               "host_scan_frames": settings.host_scan_frames}
            gates["host_scan"] = g
            if g["scans"]:
                plot_host_scans(g, out / "host_scans.png", settings.wall_height_eV)
                outputs.append("host_scans.png")
        holes_path = out / "holes.extxyz"
        if holes_path.exists():
            holes_path.unlink()  # a stale file from an earlier audit would mislead
        if "hole_hunt" in skip or settings.hole_trials == 0:
            gates["hole_hunt"] = skipped("skipped on request" if "hole_hunt" in skip else "hole_trials = 0")
        else:
            t1 = time.time()
            g, holes = hole_hunt(net, host, settings, device, progress)
            g["wall_s"] = time.time() - t1
            g["thresholds"] = {k: getattr(settings, k) for k in (
                "hole_factor", "hole_trials", "compression_range", "rattle_A", "insert_factor_range",
                "relax_steps", "relax_fmax_eV_A")}
            g["holes_file"] = None
            if holes:
                write_frames(holes_path, holes)
                g["holes_file"] = str(holes_path)
                outputs.append(holes_path.name)
            gates["hole_hunt"] = g
            plot_holes(g, out / "holes.png")
            outputs.append("holes.png")
        if "md_grid" in skip or settings.md_steps == 0:
            gates["md_grid"] = skipped("skipped on request" if "md_grid" in skip else "md_steps = 0")
        else:
            t1 = time.time()
            g = md_grid(model_path, host[0], settings, out / "md_grid", device, progress)
            g["wall_s"] = time.time() - t1
            g["thresholds"] = {k: getattr(settings, k) for k in (
                "md_temperatures_K", "md_seeds", "md_steps", "md_timestep_fs", "min_stable_fraction")}
            gates["md_grid"] = g
            plot_md_grid(g, out / "md_grid.png")
            outputs.append("md_grid.png")
        for v in gates.values():
            v.setdefault("status", "pass" if v["passed"] else "fail")
        result = {
            "passed": all(v["passed"] for v in gates.values()),
            "gates": gates,
            "model": {"path": str(model_path), "elements": elements, "r_max_A": r_cut, "zbl": has_zbl(net)},
            "host": {"path": os.fspath(structures), "frames": len(host), "atoms": len(host[0])},
            "train": os.fspath(train) if train is not None else None,
            "settings": settings.to_dict(), "device": device, "out_dir": str(out),
            "wall_s": time.time() - t0, "outputs": outputs,
        }
        result["summary"] = summary_text(result)
        write_json(out / "audit.json", result)
        rec.outputs = outputs
        rec.extra = {"passed": result["passed"], "gates": {k: v["status"] for k, v in gates.items()}}
    return result
