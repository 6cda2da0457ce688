"""Benchmark of ``firemlip select`` (SOAP → PCA → K-means) on a synthetic Li–P–S–Cl pool, plus a coverage check.

1. Builds a synthetic pool of ``--n-frames`` (default 20,000) cells of 104 atoms: an approximate Li6PS5Cl argyrodite
   (F-43m, a ≈ 9.85 Å; Cl 4a, S 4c, P 4b, S 16e, Li 24g), doubled along x, strained (±3 % normal, ±1 % shear)
   and rattled with amplitudes 0.02–0.30 Å (no labels).
2. Runs ``firemlip select POOL -n 500 -n 2000 --method soap-kmeans --n-jobs 2`` as a subprocess and reports its wall
   time (s), the peak resident memory of its process tree (sampled every 0.2 s with psutil, GB) and the largest
   single-process ``ru_maxrss``. Targets: < 300 s and < 4 GB on 2 cores. The CPU time
   of the select process and its workers (s) is reported too: on a machine shared with other work, CPU time / cores
   estimates the wall time on idle cores.
3. Coverage (mean distance in PCA space from each pool frame to its nearest selected frame; lower is better) of
   ``soap-kmeans`` vs ``random`` (mean of 5 seeds) vs ``fps`` on a small labelled pool
   (``../shared/data/li_metal_mlearn/training.extxyz``) at the same sizes.

Writes ``OUT/bench_selection.json`` and prints a table. The machine's cores may be shared with other work: the
timings are then upper bounds; say so when quoting them.

Usage: ``python benchmarks/bench_selection.py [--n-frames 20000] [--sizes 500 2000] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def argyrodite(a: float = 9.85):
    """Approximate cubic Li6PS5Cl (52 atoms, F-43m): ordered Li on 24g; P–S 2.01 Å, Li–S ≈ 2.3 Å."""
    from ase.spacegroup import crystal

    return crystal(["Cl", "S", "P", "S", "Li"],
                   basis=[(0, 0, 0), (0.25, 0.25, 0.25), (0.5, 0.5, 0.5), (0.618, 0.618, 0.618), (0.02, 0.25, 0.25)],
                   spacegroup=216, cellpar=[a, a, a, 90, 90, 90])


def build_pool(path: Path, n_frames: int, seed: int = 0) -> float:
    """Write ``n_frames`` strained + rattled 104-atom argyrodite cells to ``path``; return seconds taken."""
    from tqdm import tqdm

    from firemlip.io import write_frames

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    base = argyrodite().repeat((2, 1, 1))
    frames = []
    amps = np.array([0.02, 0.06, 0.12, 0.2, 0.3])  # like MD at increasing temperature
    for k in tqdm(range(n_frames), desc="pool", unit="frame", mininterval=2):
        a = base.copy()
        eps = np.diag(rng.uniform(-0.03, 0.03, 3))
        shear = rng.uniform(-0.01, 0.01, 3)
        eps[0, 1] = eps[1, 0] = shear[0]
        eps[0, 2] = eps[2, 0] = shear[1]
        eps[1, 2] = eps[2, 1] = shear[2]
        a.set_cell(a.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        amp = amps[k % len(amps)] * rng.uniform(0.8, 1.2)
        a.positions += rng.normal(scale=amp, size=a.positions.shape)
        a.wrap()
        a.info["config_type"] = f"synthetic_rattle_{amps[k % len(amps)]:.2f}"
        a.info["source"] = "bench_selection"
        frames.append(a)
    write_frames(path, frames)
    return time.perf_counter() - t0


def run_select(pool: Path, sizes: list[int], out: Path, n_jobs: int, method: str = "soap-kmeans") -> dict:
    """Run ``firemlip select`` in a subprocess; wall time (s) and peak memory of its process tree (GB)."""
    import psutil

    cmd = [sys.executable, "-m", "firemlip", "select", str(pool), *sum((["-n", str(n)] for n in sizes), []),
           "--method", method, "--n-jobs", str(n_jobs), "--quiet", "-o", str(out)]
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", OMP_NUM_THREADS=str(n_jobs))
    peak = [0]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def watch() -> None:
        try:
            p = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                    peak[0] = max(peak[0], rss)
                except psutil.Error:
                    pass
                time.sleep(0.2)
        except psutil.Error:
            return

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    th.join(timeout=1)
    if proc.returncode != 0:
        raise SystemExit(f"firemlip select failed ({proc.returncode}):\n{stdout[-2000:]}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    maxrss_kb = ru1.ru_maxrss
    cpu_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)  # the select process and its workers
    summary = json.loads((out / "summary.json").read_text())
    return {"command": " ".join(cmd[2:]), "wall_s": round(wall, 2), "cpu_s": round(cpu_s, 1),
            "peak_rss_tree_GB": round(peak[0] / 1e9, 3),
            "max_single_process_rss_GB": round(maxrss_kb * 1024 / 1e9, 3), "stdout": stdout.strip().splitlines(),
            "timings": summary["timings"], "pca": {k: summary["pca"][k] for k in ("n_components", "variance_reached")},
            "metrics": summary["sizes"]}


def coverage_check(pool: Path, sizes: list[int], out: Path, n_jobs: int) -> dict:
    """Coverage of soap-kmeans, fps and random (mean ± sd over 5 seeds) on a small pool at the same sizes."""
    from firemlip.selection import select

    res: dict = {"pool": str(pool), "sizes": {}}
    for n in sizes:
        km = select(pool, [n], method="soap-kmeans", seed=0, out_dir=out, progress=False, n_jobs=n_jobs)
        fps = select(pool, [n], method="fps", seed=0, out_dir=out, progress=False, n_jobs=n_jobs)
        rnd = [select(pool, [n], method="random", seed=s, out_dir=out, progress=False, n_jobs=n_jobs)
               ["sizes"][str(n)]["metrics"]["coverage_mean"] for s in range(5)]
        res["pool_frames"] = km["pool_frames"]
        res["sizes"][str(n)] = {"soap-kmeans": km["sizes"][str(n)]["metrics"]["coverage_mean"],
                                "fps": fps["sizes"][str(n)]["metrics"]["coverage_mean"],
                                "random_mean": float(np.mean(rnd)), "random_sd": float(np.std(rnd)),
                                "random_seeds": rnd}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-frames", type=int, default=20000, help="synthetic pool size (default 20000)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000], help="selection sizes (default 500 2000)")
    ap.add_argument("--n-jobs", type=int, default=2, help="SOAP processes (default 2)")
    ap.add_argument("--small-pool", default=str(REPO.parent / "shared/data/li_metal_mlearn/training.extxyz"),
                    help="labelled pool for the coverage comparison")
    ap.add_argument("--small-sizes", type=int, nargs="+", default=[24, 50], help="sizes on the small pool")
    ap.add_argument("--out", default="/tmp/firemlip_bench_selection", help="work directory (pool, outputs, JSON)")
    ap.add_argument("--skip-large", action="store_true", help="only the small-pool coverage comparison")
    args = ap.parse_args(argv)
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
                    "targets": {"wall_s": 300, "peak_GB": 4.0}}
    if not args.skip_large:
        pool = out / f"pool_{args.n_frames}.extxyz"
        if not pool.exists():
            result["pool_build_s"] = round(build_pool(pool, args.n_frames), 1)
        result["pool"] = {"path": str(pool), "frames": args.n_frames, "atoms_per_frame": 104,
                          "size_MB": round(pool.stat().st_size / 1e6, 1)}
        sel_dir = out / f"select_{args.n_frames}"
        for f in (sel_dir / "descriptors.npy", sel_dir / "descriptors.json"):
            f.unlink(missing_ok=True)  # time the full pipeline, descriptors included
        result["large"] = run_select(pool, args.sizes, sel_dir, args.n_jobs)
        result["load_avg_after_large"] = os.getloadavg()
    small = Path(args.small_pool)
    if small.exists():
        result["small"] = coverage_check(small, args.small_sizes, out / "small", args.n_jobs)
    from firemlip.io import write_json

    write_json(out / "bench_selection.json", result)

    print(f"\nbench_selection — {os.cpu_count()} cores, load average at start {result['load_avg_at_start'][0]:.2f}")
    if "large" in result:
        L = result["large"]
        print(f"pool: {args.n_frames} frames × 104 atoms ({result['pool']['size_MB']} MB)")
        print(f"{'step':<28}{'value':>12}")
        print(f"{'wall time (s)':<28}{L['wall_s']:>12.1f}   target < 300")
        print(f"{'CPU time, all processes (s)':<28}{L['cpu_s']:>12.1f}   (÷ {args.n_jobs} cores ≈ idle-machine wall)")
        print(f"{'peak RSS, process tree (GB)':<28}{L['peak_rss_tree_GB']:>12.2f}   target < 4")
        print(f"{'max single-process RSS (GB)':<28}{L['max_single_process_rss_GB']:>12.2f}")
        for k, v in L["timings"].items():
            print(f"  {k:<26}{v:>12.1f}")
        print(f"  PCA components             {L['pca']['n_components']:>12d}  ({L['pca']['variance_reached']:.3f} var)")
        for n, m in L["metrics"].items():
            rb = m.get("random_baseline", {}).get("coverage_mean", float("nan"))
            print(f"  n={n:<6} coverage mean {m['coverage_mean']:.3f} (random {rb:.3f}), max {m['coverage_max']:.3f}, "
                  f"select {m['select_s']:.1f} s")
    if "small" in result:
        S = result["small"]
        print(f"\ncoverage on {S['pool']} ({S['pool_frames']} frames; mean PCA distance to nearest selected, lower "
              f"is better)")
        print(f"{'n':>5} {'soap-kmeans':>12} {'fps':>8} {'random (5 seeds)':>18}")
        for n, c in S["sizes"].items():
            print(f"{n:>5} {c['soap-kmeans']:>12.3f} {c['fps']:>8.3f} {c['random_mean']:>11.3f} ± {c['random_sd']:.3f}")
    print(f"\nJSON: {out / 'bench_selection.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
