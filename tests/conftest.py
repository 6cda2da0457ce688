"""Shared test set-up: environment for mace/e3nn and helpers to run the CLI in-process or as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
os.environ.setdefault("GPAW_SETUP_PATH", "/usr/share/gpaw-setups")
os.environ.setdefault("OMP_NUM_THREADS", "2")

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def run_cli(*args: str, cwd: str | os.PathLike[str] | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m firemlip ARGS`` in a subprocess (tests' helper calculators importable)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), e.get("PYTHONPATH", "")])
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "firemlip", *map(str, args)], cwd=cwd, env=e,
                           capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
