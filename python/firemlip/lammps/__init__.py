"""LAMMPS side of firemlip: model export, the ``pair_style mace`` plugin, input templates and the runner.

Python API (what other stages call):

- :func:`export_model(model_path, out_path=None, dtype="float64", head=None) -> Path` — ``*.lammps.pt`` + sidecar
- :func:`read_sidecar(lammps_model) -> dict` — ``elements``, ``r_max`` (Å), ``dtype``, ``head`` …
- :func:`plugin_path() -> Path` — the built ``maceplugin.so`` (FiremlipError: run ``make plugin``)
- :func:`render(template, out_dir, structure, model=None, pair_style=None, pair_coeff=None, **vars) -> Path`
- :func:`run_lammps(run_dir, input_name=None, np=1, timeout=None) -> dict` — parsed log, also ``log.json``
- :func:`parse_log(text) -> dict`, :func:`lammps_env`, :func:`lmp_command`, :func:`import_lammps`

CLI: ``firemlip export MODEL -o OUT.lammps.pt [--dtype] [--head]`` and
``firemlip lammps plugin-path | build | render | run``.
"""

from __future__ import annotations

from firemlip.lammps.build import build_plugin, plugin_path
from firemlip.lammps.env import import_lammps, lammps_env, lmp_command, mpirun_command
from firemlip.lammps.export import export_model, read_sidecar, sidecar_path
from firemlip.lammps.render import list_templates, render
from firemlip.lammps.runner import parse_log, run_lammps

__all__ = ["build_plugin", "export_model", "import_lammps", "lammps_env", "list_templates", "lmp_command",
           "mpirun_command", "parse_log", "plugin_path", "read_sidecar", "render", "run_lammps",
           "sidecar_path"]
