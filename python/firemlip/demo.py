"""``firemlip demo``: the FIRE pipeline on the bundled Li(110) | LiF(110) example.

The example's reference data (GPAW PBE labels, made by ``firemlip label``) ship under
``examples/li_lif/data/`` as a label cache, so the demo reuses them and runs no DFT unless ``--relabel``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from firemlip.errors import FiremlipError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "li_lif"


def run_demo(run_dir: str | Path = "runs/demo", quick: bool = True, relabel: bool = False,
             example: Path = EXAMPLE, foundation: str | None = None) -> dict:
    """Run the example's config into ``run_dir``; seeds the label cache from the bundled data."""
    from firemlip.config import load_config
    from firemlip.workflow.run import run

    cfg_path = example / "config.yaml"
    if not cfg_path.exists():
        raise FiremlipError(f"{cfg_path}: the bundled example is missing (is this a full checkout?)")
    cfg = load_config(cfg_path)
    rd = Path(run_dir).resolve()
    rd.mkdir(parents=True, exist_ok=True)
    bundled = example / "data" / "label-cache"
    if not relabel and bundled.is_dir():
        cache = rd / "label-cache"
        cache.mkdir(exist_ok=True)
        for f in bundled.glob("*.extxyz"):
            if not (cache / f.name).exists():
                shutil.copy2(f, cache / f.name)
    if relabel and cfg.stages.label_selected is not None:
        cfg.stages.label_selected.data = None  # label this run's own selection with the labeller
    if quick:
        _quick(cfg)
    want = foundation or (None if quick else "mace-mp-0-small")
    if want:
        _use_foundation(cfg, want, fallback=foundation is None)
    print(f"firemlip demo: {'quick' if quick else 'default'} profile, run directory {rd}")
    print("firemlip demo: expected time on 2 CPU cores: " + ("~5 minutes" if quick else
          "~15 minutes with the bundled foundation, hours with MACE-MP-0 (fine-tune it on a GPU)") +
          (" plus GPAW labelling (minutes per frame)" if relabel else ""))
    if relabel:
        print("firemlip demo: --relabel given: every frame is labelled with GPAW (minutes per frame)")
    return run(cfg, rd)


def _use_foundation(cfg, name: str, fallback: bool) -> None:
    """Start from ``name`` (a MACE-MP-0 family name or a .model path) with pseudo-label replay.

    The default profile asks for MACE-MP-0 small; without network (``fallback``) it keeps the bundled offline
    foundation distilled from SevenNet-0 and says so.
    """
    from firemlip.foundation import resolve_foundation

    try:
        path = resolve_foundation(name)
    except FiremlipError as exc:
        if not fallback:
            raise
        print(f"firemlip demo: {name} not available ({str(exc).split(';')[0]}); using the bundled offline "
              f"foundation distilled from SevenNet-0")
        return
    print(f"firemlip demo: foundation {name} ({path}); replay = pseudo-labels of the foundation")
    cfg.foundation.model = str(path)
    for st in (cfg.stages.prefit, cfg.stages.finetune):
        if st is not None:
            st.replay = None  # no MPtrj here: the foundation labels related structures itself


def _quick(cfg) -> None:
    """Shorter MD and training for the quick profile (same stages, same data)."""
    st = cfg.stages
    if st.prefit is not None:
        st.prefit.epochs = min(st.prefit.epochs, 8)
    if st.sample is not None:
        st.sample.steps = min(st.sample.steps, 600)
    if st.finetune is not None:
        st.finetune.epochs = min(st.finetune.epochs, 25)
    if st.md is not None and st.md.diffusion is not None:
        st.md.diffusion.steps = min(st.md.diffusion.steps, 2000)


def _cmd_demo(args: argparse.Namespace) -> int:
    status = run_demo(args.run_dir, quick=args.quick, relabel=args.relabel, foundation=args.foundation)
    print(f"demo finished in {status['wall_time_s']} s; outputs in {args.run_dir}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run FIRE on the bundled Li|LiF interface example")
    p.add_argument("--quick", action="store_true", help="the short profile (minutes on 2 cores)")
    p.add_argument("--relabel", action="store_true", help="recompute the DFT labels instead of the bundled ones")
    p.add_argument("--run-dir", default="runs/demo")
    p.add_argument("--foundation", help="foundation name (mace-mp-0-small …) or .model path; default: MACE-MP-0 "
                                        "small for the default profile when it can be downloaded, else (and for "
                                        "--quick) the bundled foundation distilled from SevenNet-0")
    p.set_defaults(func=_cmd_demo)
