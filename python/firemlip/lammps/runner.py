"""Running ``lmp -in`` (optionally under ``mpirun -np N``) and parsing its log into JSON.

:func:`run_lammps` streams LAMMPS' output (a tqdm bar over the thermo steps), writes ``log.lammps`` and
``log.json`` (thermo tables, timings, warnings, errors) into the run directory, and turns a LAMMPS ``ERROR``
into a one-line :class:`FiremlipError` naming the offending input line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from firemlip.errors import FiremlipError

_LOOP_RE = re.compile(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")
_TASKS_RE = re.compile(r"with (\d+) MPI tasks x (\d+) OpenMP threads")
_PERF_RE = re.compile(r"Performance:\s*(.*)")
_BREAK_RE = re.compile(r"^(\w[\w ]*?)\s*\|\s*([\d.eE+-]+)\s*\|\s*([\d.eE+-]+)\s*\|\s*([\d.eE+-]+)\s*\|\s*"
                       r"([\d.eE+-]+)\s*\|\s*([\d.eE+-]+)\s*$")


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def parse_log(text: str) -> dict[str, Any]:
    """Parse a LAMMPS log/screen text.

    Returns ``{"thermo": [{"columns": [...], "rows": [[...], ...]}, ...] (one per run),
    "timing": [{"loop_time_s", "procs" (MPI×OpenMP), "mpi_tasks", "omp_threads", "steps", "atoms", "ms_per_step",
    "performance", "breakdown_s"}, ...],
    "warnings": [...], "errors": [...], "last_input_line": str | None, "version": str | None}``.
    """
    lines = text.splitlines()
    thermo: list[dict[str, Any]] = []
    timing: list[dict[str, Any]] = []
    warnings: list[str] = []
    errors: list[str] = []
    last_input: str | None = None
    version: str | None = None
    cur: dict[str, Any] | None = None
    for ln in lines:
        s = ln.strip()
        if version is None and s.startswith("LAMMPS ("):
            version = s[len("LAMMPS ("):].rstrip(")")
        if s.startswith("WARNING"):
            msg = s.split(":", 1)[1].strip() if ":" in s else s
            if msg not in warnings:
                warnings.append(msg)
            continue
        if s.startswith("ERROR"):
            msg = s.split(":", 1)[1].strip() if ":" in s else s
            msg = re.sub(r"\s*\((?:\.\./|src/)[^)]*\)\s*$", "", msg)
            if msg not in errors:
                errors.append(msg)
            continue
        if s.startswith("Last input line:") or s.startswith("Last command:"):
            last_input = s.split(":", 1)[1].strip()
            continue
        toks = s.split()
        if toks and toks[0] == "Step" and len(toks) > 1 and not any(_is_number(t) for t in toks):
            cur = {"columns": toks, "rows": []}
            thermo.append(cur)
            continue
        if cur is not None:
            if len(toks) == len(cur["columns"]) and all(_is_number(t) for t in toks):
                cur["rows"].append([float(t) if ("." in t or "e" in t.lower() or "n" in t.lower()) else int(t)
                                    for t in toks])
                continue
            if s.startswith("Loop time of"):
                cur = None
            elif toks and not s.startswith("WARNING"):
                cur = None
        m = _LOOP_RE.search(s)
        if m:
            t, procs, steps, atoms = float(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4))
            timing.append({"loop_time_s": t, "procs": procs, "steps": steps, "atoms": atoms,
                           "ms_per_step": (1000.0 * t / steps) if steps else None,
                           "performance": None, "breakdown_s": {}})
            continue
        m = _TASKS_RE.search(s)
        if m and timing:
            timing[-1]["mpi_tasks"], timing[-1]["omp_threads"] = int(m.group(1)), int(m.group(2))
            continue
        m = _PERF_RE.match(s)
        if m and timing:
            timing[-1]["performance"] = m.group(1).strip()
            continue
        m = _BREAK_RE.match(s)
        if m and timing and m.group(1).strip() not in ("Section",):
            timing[-1]["breakdown_s"][m.group(1).strip()] = float(m.group(3))
    return {"thermo": thermo, "timing": timing, "warnings": warnings, "errors": errors,
            "last_input_line": last_input, "version": version}


def _find_input(run_dir: Path, input_name: str | None) -> Path:
    if input_name:
        p = run_dir / input_name
        if not p.is_file():
            raise FiremlipError(f"{p}: LAMMPS input not found")
        return p
    cands = sorted(p for p in run_dir.glob("in.*") if p.is_file())
    if len(cands) != 1:
        what = "no in.* file" if not cands else f"several inputs ({', '.join(c.name for c in cands)}); pick one"
        raise FiremlipError(f"{run_dir}: {what}")
    return cands[0]


def _planned_steps(inp: Path) -> int | None:
    total = 0
    try:
        for ln in inp.read_text().splitlines():
            toks = ln.split("#", 1)[0].split()
            if len(toks) >= 2 and toks[0] == "run":
                if not toks[1].isdigit():
                    return None
                total += int(toks[1])
    except OSError:
        return None
    return total or None


def run_lammps(run_dir: str | os.PathLike[str], input_name: str | None = None, np: int = 1,
               timeout: float | None = None, threads: int | None = None, progress: bool = True,
               extra_args: list[str] | None = None) -> dict[str, Any]:
    """Run LAMMPS on ``run_dir/input_name`` (default: the only ``in.*`` there) in ``run_dir``; return the parsed log.

    ``np`` > 1 runs under the venv's ``mpirun -np np`` (OpenMP/torch threads default to cores/np). ``timeout``
    in seconds. Writes ``log.lammps`` and ``log.json`` (the returned dict plus command, return code and wall
    time in s). A LAMMPS error raises FiremlipError: ``<input>: LAMMPS error: <message> (input line: <line>)``.
    """
    from tqdm import tqdm

    from firemlip.io import write_json
    from firemlip.lammps.env import lammps_env, lmp_command, mpirun_command

    rd = Path(run_dir)
    if not rd.is_dir():
        raise FiremlipError(f"{rd}: run directory not found")
    inp = _find_input(rd, input_name)
    if np < 1:
        raise FiremlipError(f"--np: expected a positive integer, got {np}")
    if threads is None and np > 1:
        threads = max(1, (os.cpu_count() or 1) // np)
    env = lammps_env(threads=threads)
    cmd = (mpirun_command(np) if np > 1 else []) + lmp_command() + ["-in", inp.name, "-log", "log.lammps"]
    cmd += list(extra_args or [])

    planned = _planned_steps(inp)
    bar = tqdm(total=planned, desc=f"lmp {inp.name}", unit="step", disable=not progress, leave=False,
               file=sys.stderr)
    out_lines: list[str] = []
    t0 = time.perf_counter()
    ncols = 0
    done_before = 0
    last_step = 0
    try:
        proc = subprocess.Popen(cmd, cwd=rd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1)
    except OSError as exc:
        raise FiremlipError(f"cannot start LAMMPS ({exc})") from None
    try:
        assert proc.stdout is not None
        for ln in proc.stdout:
            out_lines.append(ln)
            toks = ln.split()
            if toks and toks[0] == "Step":
                ncols = len(toks)
                done_before += last_step
                last_step = 0
            elif ncols and len(toks) == ncols and toks[0].isdigit():
                step = int(toks[0])
                if step >= last_step:
                    bar.update(step - last_step)
                    last_step = step
                bar.set_postfix_str(" ".join(toks[1:4]), refresh=False)
            elif ln.startswith("Loop time"):
                ncols = 0
            if timeout is not None and time.perf_counter() - t0 > timeout:
                proc.kill()
                raise FiremlipError(f"{inp}: LAMMPS ran past the timeout of {timeout:g} s")
        proc.wait(timeout=None if timeout is None else max(1.0, timeout - (time.perf_counter() - t0)))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise FiremlipError(f"{inp}: LAMMPS ran past the timeout of {timeout:g} s") from None
    finally:
        bar.close()
        if proc.poll() is None:
            proc.kill()
    wall = time.perf_counter() - t0
    screen = "".join(out_lines)
    logf = rd / "log.lammps"
    text = logf.read_text(errors="replace") if logf.is_file() else screen
    result = parse_log(text)
    scr = parse_log(screen)
    for key in ("errors", "warnings"):  # errors on other ranks reach the screen only
        result[key] += [m for m in scr[key] if m not in result[key]]
    result["last_input_line"] = result["last_input_line"] or scr["last_input_line"]
    result.update({"input": inp.name, "command": cmd, "np": np, "returncode": proc.returncode,
                   "wall_s": wall})
    write_json(rd / "log.json", result)
    if proc.returncode != 0 or result["errors"]:
        if result["errors"]:
            msg = result["errors"][0]
        else:
            tail = [ln.strip() for ln in out_lines if ln.strip()][-1:]
            msg = f"exit status {proc.returncode}" + (f": {tail[0][:200]}" if tail else "")
        where = f" (input line: {result['last_input_line']})" if result["last_input_line"] else ""
        raise FiremlipError(f"{inp}: LAMMPS error: {msg}{where}")
    return result
