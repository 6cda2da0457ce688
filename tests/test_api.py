"""The package-level Python API: every stage function importable from ``firemlip``, loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from ase.build import bulk

import firemlip


def test_public_names_resolve_to_the_stage_functions():
    for name in firemlip.__all__[1:]:
        fn = getattr(firemlip, name)
        assert callable(fn) and fn.__name__ == name, name
    assert set(firemlip.__all__) <= set(dir(firemlip))


def test_import_firemlip_stays_light():
    code = "import sys, firemlip; print(int(any(m.startswith(('torch', 'mace', 'lammps')) for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_select_in_memory_from_the_package(tmp_path):
    rng = np.random.default_rng(0)
    pool = []
    for k in range(8):
        a = bulk("Cu", "fcc", a=3.6, cubic=True)
        a.rattle(0.02 + 0.02 * k, rng=rng)
        pool.append(a)
    res = firemlip.select(pool, 3, out_dir=tmp_path / "sel", progress=False, r_cut=3.5, n_max=2, l_max=2, n_jobs=1)
    idx = res["sizes"]["3"]["indices"]
    assert len(idx) == 3 and len(set(idx)) == 3
