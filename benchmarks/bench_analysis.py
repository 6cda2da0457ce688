"""Timing of the analysis core: FFT MSD + bootstrap fit, and LAMMPS dump reading (MDAnalysis).

Usage: python benchmarks/bench_analysis.py [--frames 5000 --atoms 500] [-o bench_analysis.json]
Prints seconds per stage and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from firemlip.analysis.diffusion import read_dump, tracer_diffusion


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--atoms", type=int, default=500)
    ap.add_argument("--dump-frames", type=int, default=200)
    ap.add_argument("-o", "--out", default="bench_analysis.json")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    pos = rng.normal(0, 0.05, (a.frames, a.atoms, 3)).cumsum(0)
    t0 = time.perf_counter()
    r = tracer_diffusion(pos, 10.0, n_bootstrap=200)
    t_msd = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "bench.dump"
        with open(p, "w") as fh:
            for t in range(a.dump_frames):
                fh.write(f"ITEM: TIMESTEP\n{t * 10}\nITEM: NUMBER OF ATOMS\n{a.atoms}\n"
                         "ITEM: BOX BOUNDS pp pp pp\n0 30\n0 30\n0 30\nITEM: ATOMS id type element xu yu zu\n")
                np.savetxt(fh, np.c_[np.arange(1, a.atoms + 1), np.ones(a.atoms), pos[t]],
                           fmt="%d %d Li %.5f %.5f %.5f")
        t0 = time.perf_counter()
        read_dump(p)
        t_read = time.perf_counter() - t0
    res = {"frames": a.frames, "atoms": a.atoms, "msd_fit_bootstrap_s": t_msd,
           "dump_frames": a.dump_frames, "dump_read_s": t_read,
           "dump_read_us_per_atom_frame": 1e6 * t_read / (a.dump_frames * a.atoms),
           "D_cm2_s": r["fit"].diffusivity_cm2_s}
    print(json.dumps(res, indent=1))
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
