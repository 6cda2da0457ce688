"""``firemlip run CONFIG.yaml``: the whole pipeline, resumable."""

from __future__ import annotations

import argparse


def _cmd_run(args: argparse.Namespace) -> int:
    from firemlip.config import load_config
    from firemlip.workflow.run import run

    cfg = load_config(args.config)
    if args.device:
        cfg.device = args.device
    status = run(cfg, args.run_dir, args.from_stage, args.until)
    print(f"run finished in {status['wall_time_s']} s")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    from firemlip.workflow.run import stage_names

    p = sub.add_parser("run", help="run the FIRE pipeline described by a YAML config (resumable)")
    p.add_argument("config")
    p.add_argument("--run-dir", help="override the config's run_dir")
    p.add_argument("--from", dest="from_stage", metavar="STAGE",
                   help=f"rerun from this stage on ({', '.join(stage_names())})")
    p.add_argument("--until", metavar="STAGE", help="stop after this stage")
    p.add_argument("--device", choices=["cpu", "cuda"], help="override the config's device")
    p.set_defaults(func=_cmd_run)
