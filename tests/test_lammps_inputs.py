"""Every shipped input under lammps_inputs/ runs as `lmp -in lammps_inputs/<example>/in.<name>` from the repo root."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from firemlip.lammps.env import lammps_env, lmp_command

INPUTS = sorted((REPO / "lammps_inputs").glob("*/in.*"))


def _plugin_built() -> bool:
    try:
        from firemlip.lammps import plugin_path

        plugin_path()
        return True
    except Exception:
        return False


@pytest.mark.skipif(not INPUTS, reason="no shipped inputs")
@pytest.mark.parametrize("inp", [pytest.param(p, marks=pytest.mark.slow) if p.name == "in.elastic" else p
                                 for p in INPUTS], ids=[f"{p.parent.name}/{p.name}" for p in INPUTS])
def test_shipped_input_runs(inp: Path):
    if not _plugin_built():
        pytest.fail("the pair_style mace plugin is not built (make plugin)")
    rel = inp.relative_to(REPO)
    r = subprocess.run([*lmp_command(), "-in", str(rel), "-screen", "none", "-log", "none"], cwd=REPO,
                       env=lammps_env(threads=1), capture_output=True, text=True, timeout=600)
    log = inp.parent / f"log.{inp.name.split('.', 1)[1]}"
    text = log.read_text() if log.exists() else ""
    assert r.returncode == 0, (r.stdout + r.stderr + text)[-2000:]
    assert "Total wall time" in text
