"""Scaling of MD cost with system size: ms/step and µs/atom/step vs atom count (log–log).

Inputs (mixed freely): LAMMPS run directories (their ``log.lammps``), LAMMPS log files — the last
``Loop time of X on P procs for S steps with A atoms`` line of each is used, so a warm-up run may precede the
timed one; a log of the ``scaling`` template gives one row per size (the timed run before each
``FIREMLIP_SCALING`` line) — and JSON or CSV tables of measured timings. JSON: a list of objects (or ``{"runs": [...]}``) with
``atoms`` and ``ms_per_step`` (or ``loop_time_s`` and ``steps``); CSV: a header with ``atoms`` and
``ms_per_step`` columns. Units: ms per MD step, µs per atom per step.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from firemlip.analysis._common import mpl, save_figure, write_result
from firemlip.errors import FiremlipError

_LOOP = re.compile(r"Loop time of\s+([0-9.eE+-]+)\s+on\s+(\d+)\s+procs?\s+for\s+(\d+)\s+steps\s+with\s+(\d+)\s+atoms")


def parse_lammps_log(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The timing of the last ``Loop time`` line of a LAMMPS log: seconds, procs, steps, atoms, ms/step."""
    p = Path(path)
    if not p.is_file():
        raise FiremlipError(f"{p}: LAMMPS log not found")
    loops = _LOOP.findall(p.read_text(errors="replace"))
    if not loops:
        raise FiremlipError(f"{p}: no 'Loop time of … on … procs for … steps with … atoms' line (did the run finish?)")
    t, procs, steps, atoms = loops[-1]
    t, steps, atoms = float(t), int(steps), int(atoms)
    if steps <= 0:
        raise FiremlipError(f"{p}: the timed run has 0 steps")
    return {"source": str(p), "atoms": atoms, "procs": int(procs), "steps": steps, "loop_time_s": t,
            "ms_per_step": 1000.0 * t / steps, "n_loops_in_log": len(loops)}


_MARK = re.compile(r"^FIREMLIP_SCALING natoms=(\d+) steps=(\d+)", re.MULTILINE)


def parse_scaling_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every size of a log written by the ``scaling`` template: the timed run before each ``FIREMLIP_SCALING`` line.

    Returns [] for a log without those lines (an ordinary run: use :func:`parse_lammps_log`).
    """
    p = Path(path)
    text = p.read_text(errors="replace")
    rows: list[dict[str, Any]] = []
    last = 0
    for m in _MARK.finditer(text):
        loops = _LOOP.findall(text[last:m.start()])
        last = m.end()
        if not loops:
            raise FiremlipError(f"{p}: no 'Loop time' line before '{m.group(0)}' (did the run finish?)")
        t, procs, steps, atoms = loops[-1]
        t, steps, atoms = float(t), int(steps), int(atoms)
        if steps <= 0:
            continue
        rows.append({"source": str(p), "atoms": atoms, "procs": int(procs), "steps": steps, "loop_time_s": t,
                     "ms_per_step": 1000.0 * t / steps})
    return rows


def _from_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FiremlipError(f"{path}: LAMMPS log not found")
    return parse_scaling_log(path) or [parse_lammps_log(path)]


def _from_table(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise FiremlipError(f"{path}: not valid JSON ({exc})") from None
        rows = data.get("runs") if isinstance(data, dict) else data
        if isinstance(data, dict) and rows is None and "atoms" in data:
            rows = [data]
        if not isinstance(rows, list):
            raise FiremlipError(f"{path}: expected a list of {{atoms, ms_per_step}} objects or {{'runs': [...]}}")
    else:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    out = []
    for i, r in enumerate(rows):
        try:
            atoms = int(float(r["atoms"]))
            if r.get("ms_per_step") not in (None, ""):
                ms = float(r["ms_per_step"])
            else:
                ms = 1000.0 * float(r["loop_time_s"]) / float(r["steps"])
        except (KeyError, TypeError, ValueError):
            raise FiremlipError(f"{path}: row {i + 1} needs 'atoms' and 'ms_per_step' (or 'loop_time_s' and "
                                "'steps')") from None
        if atoms <= 0 or ms <= 0:
            raise FiremlipError(f"{path}: row {i + 1}: atoms and ms_per_step must be positive")
        out.append({"source": str(path), "atoms": atoms, "ms_per_step": ms,
                    **{k: r[k] for k in ("procs", "device", "label") if k in r}})
    return out


def collect_timings(inputs: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Timings from run directories, LAMMPS logs and JSON/CSV tables, sorted by atom count."""
    rows: list[dict[str, Any]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            logs = sorted(p.glob("log.lammps")) or sorted(p.glob("*.log"))
            if not logs:
                raise FiremlipError(f"{p}: run directory has no log.lammps")
            rows.extend(_from_log(logs[0]))
        elif p.suffix.lower() in (".json", ".csv"):
            if not p.is_file():
                raise FiremlipError(f"{p}: timing table not found")
            rows.extend(_from_table(p))
        else:
            rows.extend(_from_log(p))
    if not rows:
        raise FiremlipError("scaling: no timings given")
    for r in rows:
        r["us_per_atom_step"] = 1000.0 * r["ms_per_step"] / r["atoms"]
    return sorted(rows, key=lambda r: r["atoms"])


def analyze_scaling(inputs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                    label: str | None = None) -> dict[str, Any]:
    """Scaling stage: writes ``scaling.json`` (table, fitted exponent of ms/step ∝ atoms^k) and ``scaling.png``
    (log–log ms/step vs atoms with ideal-linear and constant-cost guides, µs/atom/step on a second panel)."""
    rows = collect_timings(inputs)
    N = np.array([r["atoms"] for r in rows], float)
    ms = np.array([r["ms_per_step"] for r in rows], float)
    res: dict[str, Any] = {"analysis": "scaling", "label": label, "runs": rows,
                           "units": {"ms_per_step": "ms", "us_per_atom_step": "microseconds per atom per step"}}
    if len(np.unique(N)) >= 2:
        k, c = np.polyfit(np.log(N), np.log(ms), 1)
        res["exponent"] = float(k)
        res["note"] = ("exponent of ms/step ∝ atoms^k over the measured range: k ≈ 1 is linear (cost per atom "
                       "constant), k ≈ 0 is flat (a GPU not yet saturated)")
    else:
        res["exponent"] = None
    plt = mpl()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.loglog(N, ms, "o-", color="C0", label=label or "measured")
    grid = np.geomspace(N.min(), N.max(), 20) if N.max() > N.min() else np.array([N.min() / 2, N.min() * 2])
    a1.loglog(grid, ms[0] * grid / N[0], "k--", lw=1, label="ideal linear (∝ N)")
    a1.loglog(grid, np.full_like(grid, ms[0]), "k:", lw=1, label="constant cost")
    a1.set_xlabel("atoms")
    a1.set_ylabel("ms / step")
    a1.legend(fontsize=8)
    a2.loglog(N, 1000.0 * ms / N, "s-", color="C1")
    a2.set_xlabel("atoms")
    a2.set_ylabel("µs / atom / step")
    if res["exponent"] is not None:
        a1.set_title(f"ms/step ∝ N^{res['exponent']:.2f}")
    out = Path(out_dir)
    save_figure(fig, out / "scaling.png")
    res["plot"] = "scaling.png"
    write_result(out / "scaling.json", res)
    return res
