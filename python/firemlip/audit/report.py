"""Audit report: PNGs of the pair scans, host scans, hole hunt and MD grid, and the one-screen summary.

Energies in eV, distances in Å, temperatures in K.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

GATES = ("coverage", "pair_scan", "host_scan", "hole_hunt", "md_grid")


def _plt():
    from firemlip.runtime import pyplot

    plt = pyplot()

    return plt


def _save(fig, path: Path) -> None:
    from firemlip.io import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _plt().close(fig)


def _grid(n: int, width: float = 4.0, height: float = 3.2):
    plt = _plt()
    ncol = min(3, max(1, n))
    nrow = int(math.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(width * ncol, height * nrow), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _curve_panel(ax, r, e, rec: dict, title: str, zbl=None, wall_height: float = 10.0) -> None:
    r = np.asarray(r)
    e = np.asarray(e, dtype=float)
    ax.plot(r, e, "C0-", lw=1.5, label="model")
    if zbl is not None:
        ax.plot(r, zbl, "k--", lw=1.0, label="ZBL reference")
    rc, rs = rec.get("r_check_A"), rec.get("r_stop_A")
    if rc is not None:
        ax.axvspan(r[0], rc, color="0.9", zorder=0, label="below trusted range")
        ax.axvline(rc, color="C2", lw=0.8)
    if rs is not None:
        ax.axvline(rs, color="C3", lw=0.8, ls=":", label=f"ZBL = {wall_height:g} eV")
    for m in rec.get("spurious_minima", []):
        ax.plot([m["r_A"]], [np.interp(m["r_A"], r, e)], "rv")
    finite = e[np.isfinite(e)]
    lo = float(min(finite.min(), 0.0)) - 0.5 if finite.size else -1.0
    hi = max(3.0 * wall_height, float(np.interp(rs, r, e)) + 1.0 if rs is not None and finite.size else 1.0)
    ax.set_ylim(lo, hi)
    ax.set_xlim(r[0], r[-1])
    ok = rec.get("passed", True)
    flags = ", ".join(rec.get("flags", [])) or "ok"
    ax.set_title(f"{title}: {'PASS' if ok else 'FAIL'} ({flags})", color="k" if ok else "C3", fontsize=9)
    ax.set_xlabel("distance (Å)")
    ax.set_ylabel("energy (eV)")


def plot_pair_scans(rec: dict, path: Path, wall_height: float) -> None:
    """One panel per element pair: model dimer energy vs the ZBL reference, window and flags."""
    pairs = rec["pairs"]
    fig, axes = _grid(len(pairs))
    for ax, (key, p) in zip(axes, sorted(pairs.items()), strict=True):
        _curve_panel(ax, p["r_A"], p["energy_eV"], p, f"{key} dimer", zbl=p["zbl_eV"], wall_height=wall_height)
    if axes:
        axes[0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    _save(fig, path)


def plot_host_scans(rec: dict, path: Path, wall_height: float) -> None:
    """One panel per host scan: energy (relative to the host frame) vs the moved pair's distance."""
    scans = rec["scans"]
    if not scans:
        return
    fig, axes = _grid(len(scans))
    for ax, (key, s) in zip(axes, sorted(scans.items()), strict=True):
        _curve_panel(ax, s["r_A"], s["energy_eV"], s, f"host {key}", wall_height=wall_height)
    axes[0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    _save(fig, path)


def plot_holes(rec: dict, path: Path) -> None:
    """Smallest d/(r_cov(A)+r_cov(B)) before and after relaxation for each trial, with the hole threshold."""
    rows = rec["rows"]
    if not rows:
        return
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    t = [r["trial"] for r in rows]
    ax.plot(t, [r["start_min_ratio"] for r in rows], "o", mfc="none", color="0.5", label="start")
    colors = ["C3" if r["hole"] else "C0" for r in rows]
    ax.scatter(t, [r["min_ratio"] if np.isfinite(r["min_ratio"]) else 0.0 for r in rows], c=colors,
               label="after relaxation", zorder=3)
    ax.axhline(rec["hole_factor"], color="C3", ls="--", lw=1, label=f"hole threshold {rec['hole_factor']:g}")
    ax.set_xlabel("trial (even: compression, odd: insertion)")
    ax.set_ylabel("min d / (r_cov(A) + r_cov(B))")
    ax.set_title(f"hole hunt: {rec['holes']} hole(s) in {rec['trials']} trials", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_md_grid(rec: dict, path: Path) -> None:
    """Heat map temperature × seed of the fraction of the requested steps each run survived."""
    rows = rec["rows"]
    if not rows:
        return
    plt = _plt()
    temps = sorted({r["temperature_K"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    m = np.full((len(temps), len(seeds)), np.nan)
    for r in rows:
        done = r["steps_run"] if r["steps_run"] is not None else 0
        m[temps.index(r["temperature_K"]), seeds.index(r["seed"])] = 1.0 if r["stable"] else done / r["steps_requested"]
    fig, ax = plt.subplots(figsize=(1.2 * len(seeds) + 2.5, 0.6 * len(temps) + 1.8))
    im = ax.imshow(m, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for a in range(len(temps)):
        for b in range(len(seeds)):
            ax.text(b, a, f"{m[a, b]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(seeds)), [str(s) for s in seeds])
    ax.set_yticks(range(len(temps)), [f"{t:g} K" for t in temps])
    ax.set_xlabel("seed")
    ax.set_title(f"MD stability ({rec['engine']}): {rec['stable_runs']}/{rec['runs']} stable", fontsize=10)
    fig.colorbar(im, ax=ax, label="fraction of steps survived")
    fig.tight_layout()
    _save(fig, path)


def _curve_reason(v: dict) -> str:
    bits = []
    if "attractive" in v["flags"]:
        bits.append(f"attractive (dE/dr {v['max_slope_eV_A']:+.2f} eV/Å at {v['max_slope_at_A']:.2f} Å)")
    if "flat" in v["flags"]:
        bits.append(f"flat (rise {v['rise_eV']:.2f} eV from {v['r_check_A']:.2f} to {v['r_stop_A']:.2f} Å)")
    if "spurious_minimum" in v["flags"]:
        m = min(v["spurious_minima"], key=lambda x: x["depth_eV"])
        bits.append(f"minimum at {m['r_A']:.2f} Å ({m['depth_eV']:+.2f} eV)")
    if "non_finite" in v["flags"]:
        bits.append(f"non-finite energy at {v['non_finite_at_A']:.2f} Å")
    return "; ".join(bits)


def gate_lines(name: str, rec: dict) -> list[str]:
    """Short human-readable lines describing one gate's result."""
    if rec.get("status") == "skipped":
        return [rec.get("reason", "skipped")]
    if name == "coverage":
        lines = [", ".join(f"{k} ≥ {v['r_trust_A']:.2f} Å ({v['source']})" for k, v in sorted(rec["pairs"].items()))]
        if rec.get("host_pairs_without_training_data"):
            lines.append("no training data for host pair(s) " + ", ".join(rec["host_pairs_without_training_data"]))
        return lines
    if name == "pair_scan":
        bad = [f"{k}: {_curve_reason(rec['pairs'][k])}" for k in rec["failed_pairs"]]
        return bad[:4] + ([f"... {len(bad) - 4} more"] if len(bad) > 4 else []) or \
            [f"{len(rec['pairs'])} pair(s) repulsive down to the ZBL wall"]
    if name == "host_scan":
        bad = [f"{k}: {_curve_reason(rec['scans'][k])}" for k in rec["failed_scans"]]
        return bad[:3] + ([f"... {len(bad) - 3} more"] if len(bad) > 3 else []) or \
            [f"{len(rec['scans'])} scan(s) repulsive"]
    if name == "hole_hunt":
        w = rec.get("worst_min_ratio")
        line = (f"{rec['holes']}/{rec['trials']} trials collapsed below {rec['hole_factor']:g} × Σr_cov"
                + (f" (worst {w:.2f})" if w is not None else ""))
        return [line] + ([f"saved to {rec['holes_file']} — label it (firemlip label) and add it to the training "
                          f"data"] if rec.get("holes_file") else [])
    if name == "md_grid":
        lines = [f"{rec['stable_runs']}/{rec['runs']} runs stable ({rec['engine']}, {rec['steps']} steps × "
                 f"{rec['timestep_fs']:g} fs; need ≥ {rec['min_stable_fraction']:.0%})"]
        for r in [r for r in rec["rows"] if not r["stable"]][:3]:
            f = r["first_failure"] or {}
            lines.append(f"{r['temperature_K']:g} K seed {r['seed']}: step {f.get('step')} {f.get('message', '')}")
        return lines
    return []


def summary_text(result: dict) -> str:
    """The one-screen summary printed at the end of ``firemlip audit``."""
    m = result["model"]
    lines = [f"firemlip audit: {m['path']} ({', '.join(m['elements'])}, r_max {m['r_max_A']:g} Å"
             f"{', ZBL term' if m['zbl'] else ''}) on {result['host']['path']} ({result['host']['frames']} "
             f"frame(s), {result['host']['atoms']} atoms)"]
    for name in GATES:
        rec = result["gates"].get(name)
        if rec is None:
            continue
        status = rec.get("status") or ("pass" if rec["passed"] else "fail")
        detail = gate_lines(name, rec)
        lines.append(f"  {name:<10} {status.upper():<8} {detail[0] if detail else ''}")
        lines.extend(f"  {'':<10} {'':<8} {d}" for d in detail[1:])
    verdict = "PASS" if result["passed"] else "FAIL"
    lines.append(f"overall: {verdict}  ({result['wall_s']:.0f} s; details in {result['out_dir']}/audit.json)")
    if not result["passed"]:
        fixes = []
        if any(not result["gates"].get(g, {"passed": True})["passed"] for g in ("pair_scan", "host_scan",
                                                                                  "hole_hunt", "md_grid")):
            fixes.append("retrain with the ZBL wall: firemlip finetune --zbl ...")
        if result["gates"].get("hole_hunt", {}).get("holes_file"):
            fixes.append(f"label {result['gates']['hole_hunt']['holes_file']} and add it to the training data")
        if fixes:
            lines.append("remedies: " + "; ".join(fixes))
    return "\n".join(lines)
