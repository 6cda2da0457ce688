"""The ``firemlip`` command line: a thin layer over the stage modules' Python API.

One module per command in this package (``firemlip.cli.finetune``, ``firemlip.cli.select``, …), each with
``register_cli(subparsers)`` that adds its sub-command(s) with ``parser.set_defaults(func=callable(args) -> int |
None)``. Options that have a pydantic model in :mod:`firemlip.options` are generated from it (``add_options`` /
``options_from_args``), so the CLI, the YAML config and the Python API share one set of defaults. Stage modules
never import this package. User errors (:class:`FiremlipError`) and argument errors are printed as one line and
exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from firemlip import __version__
from firemlip.errors import FiremlipError

# Command modules in the order their commands are listed in ``firemlip --help``.
COMMAND_MODULES = tuple(f"firemlip.cli.{name}" for name in (
    "run", "structures", "label", "importing", "foundation", "distill", "finetune", "evaluate", "sample", "select",
    "lammps", "analyze", "audit", "report", "demo",
))


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``firemlip: error: …``) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def command_group(subparsers, name: str, help: str) -> argparse._SubParsersAction:  # noqa: A002
    """The nested sub-command action of top-level command ``name``, created on first use.

    Lets several modules add commands to one group (``firemlip foundation info`` here, ``firemlip foundation
    distill`` elsewhere): call ``command_group(subparsers, "foundation", ...)`` and ``add_parser`` on the result.
    """
    parser = subparsers.choices.get(name)
    if parser is None:
        parser = subparsers.add_parser(name, help=help, description=help)
        parser.set_defaults(func=lambda args, p=parser: (p.print_help(), 0)[1])
        return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", parser_class=OneLineParser)
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return action
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", parser_class=OneLineParser)


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def nonneg_float(text: str) -> float:
    """argparse type: a float ≥ 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {v}")
    return v


def key_value(text: str) -> tuple[str, object]:
    """argparse type: ``key=value`` with the value parsed as YAML (numbers, lists, booleans)."""
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k.strip(), yaml.safe_load(v)
    except yaml.YAMLError:
        return k.strip(), v


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="firemlip", description="FIRE fine-tuning of MACE potentials, LAMMPS-centric.")
    parser.add_argument("--version", action="version", version=f"firemlip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # stage not present in this build
            raise
        reg = getattr(mod, "register_cli", None)
        if reg is not None:
            reg(sub)
    return parser


#: Warnings of the dependencies that say nothing to a firemlip user (printed once per compiled module, dozens per
#: run): e3nn's TorchScript compilation of mace-torch blocks, and mace-torch copying a tensor when a model is built.
_KNOWN_WARNINGS = (
    "The TorchScript type system doesn't support instance-level annotations",
    "To copy construct from a tensor, it is recommended",
)


def _quiet_known_warnings() -> None:
    """Hide :data:`_KNOWN_WARNINGS` for this command (the CLI is the application; the library sets no filters)."""
    import re
    import warnings

    for text in _KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(text), category=UserWarning)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    _quiet_known_warnings()
    try:
        rc = func(args)
    except FiremlipError as exc:
        sys.stderr.write(f"firemlip: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("firemlip: interrupted; rerun the same command to resume\n")
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
