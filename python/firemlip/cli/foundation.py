"""``firemlip foundation info|fetch``: inspect and download foundation models."""

from __future__ import annotations

import argparse

from firemlip.cli import command_group
from firemlip.errors import FiremlipError
from firemlip.foundation import FOUNDATIONS, load_model, model_info, resolve_foundation


def _cmd_info(args: argparse.Namespace) -> int:
    import json

    model = load_model(args.model, device="cpu", dtype=None)
    info = model_info(model)
    info["file"] = str(resolve_foundation(args.model, download=False))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"file        {info['file']}")
    print(f"class       {info['class']}")
    print(f"elements    {' '.join(info['elements'])} ({len(info['elements'])})")
    print(f"cut-off     {info['r_max_A']:.3f} Å")
    print(f"channels    {info['channels']}  (hidden irreps {info['hidden_irreps']})")
    print(f"L           {info['L']}  (max_ell {info['max_ell']}, correlation {info['correlation']}, "
          f"{info['num_interactions']} interactions)")
    print(f"heads       {', '.join(info['heads'])}")
    print(f"parameters  {info['parameters']:,}")
    print(f"dtype       {info['dtype']}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    for name in args.names:
        if name not in FOUNDATIONS:
            raise FiremlipError(f"{name}: unknown foundation (known: {', '.join(FOUNDATIONS)})")
        print(resolve_foundation(name))
    return 0


def register_cli(subparsers) -> None:
    """Add ``firemlip foundation info MODEL`` and ``firemlip foundation fetch NAME...`` (``foundation distill``
    is added to the same group by :mod:`firemlip.distill`, listed after this module in ``cli.COMMAND_MODULES``)."""
    group = command_group(subparsers, "foundation", "foundation models: inspect, download (and distill)")
    p = group.add_parser("info", help="print a model's elements, cut-off, channels, L, heads, parameters, dtype")
    p.add_argument("model", help=f"a .model path or a name ({', '.join(FOUNDATIONS)})")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)
    p = group.add_parser("fetch", help="download named foundation models into the cache (sha256-checked)")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=_cmd_fetch)
