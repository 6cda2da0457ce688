"""Training cost of MACE student shapes: milliseconds per frame of one optimiser step (energy, forces, stress).

The distillation budget buys epochs; an epoch costs (frames × ms/frame). This times the shapes that were candidates
for the ``small`` preset on the frames of a distillation set (``pretrain.extxyz``, its ``train`` split), so the
choice of preset can be re-checked on another machine. Frames are a seeded sample; the first batch is a warm-up.

    python benchmarks/bench_student_shapes.py runs/bench_distill/distill/pretrain.extxyz [--frames 192]
        [--batch 8] [--threads 2] [--out runs/bench_student_shapes.json]

Prints ms/frame and parameters per shape and writes them to JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import numpy as np  # noqa: E402

from firemlip.models import PRESETS, MaceShape  # noqa: E402

_SMALL = PRESETS["small"]
#: name → shape; "small" is the current preset (128x0e, l ≤ 2), "small-v1" the 64x0e, l ≤ 3 it replaced.
SHAPES: dict[str, MaceShape] = {
    "small": _SMALL,
    "small-v1": dataclasses.replace(_SMALL, channels=64, max_ell=3),
    "64x0e-l2": dataclasses.replace(_SMALL, channels=64, max_ell=2),
    "64x0e-l3-corr2": dataclasses.replace(_SMALL, channels=64, max_ell=3, correlation=2),
    "32x0e+32x1o-l3": dataclasses.replace(_SMALL, channels=32, max_L=1, max_ell=3),
    "128x0e-l3": dataclasses.replace(_SMALL, channels=128, max_ell=3),
    "64x0e-l3-r4.5": dataclasses.replace(_SMALL, channels=64, max_ell=3, r_max=4.5),
}


def ms_per_frame(frames: list, shape: MaceShape, elements: list[str], batch: int) -> tuple[float, int]:
    """Mean wall time (ms) per frame of forward + backward + Adam step, float32; and the parameter count."""
    import torch

    from firemlip.models import build_mace
    from firemlip.training.data import frames_to_graphs, loader
    from firemlip.training.loop import _loss_terms

    model = build_mace(elements, shape, avg_num_neighbors=30.0, dtype="float32")
    graphs = frames_to_graphs(frames, model, dtype="float32")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0, n = 0.0, 0
    for i, b in enumerate(loader(graphs, batch)):
        if i == 1:  # the first batch pays TorchScript/e3nn warm-up
            t0, n = time.perf_counter(), 0
        out = model(b.to_dict(), training=True, compute_force=True, compute_stress=True)
        loss = _loss_terms(b, out, 10.0, 10.0, 1.0, True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += int(b.num_graphs)
    return 1000 * (time.perf_counter() - t0) / max(n, 1), sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pretrain", type=Path, help="a distillation set (pretrain.extxyz with distill_split)")
    ap.add_argument("--frames", type=int, default=192)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_student_shapes.json"))
    args = ap.parse_args(argv)

    import torch

    from firemlip.errors import FiremlipError
    from firemlip.io import read_frames, write_json

    torch.set_num_threads(args.threads)
    names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in names if s not in SHAPES]
    if unknown:
        raise SystemExit(f"bench_student_shapes: --shapes: unknown {', '.join(unknown)} (expected {', '.join(SHAPES)})")
    try:
        frames = [a for a in read_frames(args.pretrain) if a.info.get("distill_split", "train") == "train"]
    except FiremlipError as exc:
        raise SystemExit(f"bench_student_shapes: {exc}") from None
    pick = np.random.default_rng(0).permutation(len(frames))[:args.frames]
    frames = [frames[i] for i in pick]
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    rows = {}
    print(f"{len(frames)} frames, {np.mean([len(a) for a in frames]):.1f} atoms/frame, batch {args.batch}, "
          f"{args.threads} threads")
    for name in names:
        ms, n_par = ms_per_frame(frames, SHAPES[name], elements, args.batch)
        rows[name] = {"ms_per_frame": round(ms, 2), "parameters": n_par, "shape": dataclasses.asdict(SHAPES[name])}
        print(f"  {name:<16} {ms:7.1f} ms/frame  {n_par:>9,} parameters", flush=True)
    write_json(args.out, {"pretrain": str(args.pretrain), "n_frames": len(frames), "batch": args.batch,
                          "threads": args.threads, "torch": torch.__version__, "shapes": rows})
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
