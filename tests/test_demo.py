"""`firemlip demo --quick` on the bundled Li|LiF example: no DFT (bundled labels hit the cache), full report."""

from __future__ import annotations

import json

import pytest

from conftest import REPO


@pytest.mark.slow
def test_quick_demo_runs_on_bundled_data(tmp_path, cli):
    r = cli("demo", "--quick", "--run-dir", tmp_path / "demo", cwd=REPO, timeout=1500,
            env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    rd = tmp_path / "demo"
    lab = json.loads(next(rd.glob("*_label")).joinpath("manifest.json").read_text())
    assert lab["wall_time_s"] < 30, "bundled GPAW labels were not found in the cache"
    comp = json.loads(next(rd.glob("*_evaluate")).joinpath("comparison.json").read_text())
    f = {k: v["test"]["overall"]["forces_rmse_meV_A"] if "overall" in v["test"] else v["test"]["forces_rmse_meV_A"]
         for k, v in comp.items()}
    assert set(f) == {"foundation", "fire", "vanilla", "scratch"}
    assert f["fire"] < f["foundation"]
    html = (rd / "report.html").read_text()
    for section in ("Foundation", "Accuracy on held-out DFT frames", "Selection", "Transport",
                    "Elastic constants", "Stages, timings and provenance"):
        assert section in html
