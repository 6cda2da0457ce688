"""Ready-to-run LAMMPS inputs for an example system (``lammps_inputs/<example>/``).

Every template is rendered with short, CPU-friendly settings next to a copy of the exported model and the
data file, with paths rewritten so that ``lmp -in lammps_inputs/<example>/in.<name>`` works from the
repository root: each input first changes into its own directory (``shell cd``), so dumps and logs land there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ase import Atoms

from firemlip.errors import FiremlipError

REPO = Path(__file__).resolve().parents[3]

#: Short settings for the shipped inputs (steps, temperatures in K, timestep in fs).
DEFAULTS: dict[str, dict[str, Any]] = {
    "sample": {"temperature_K": 600.0, "steps": 200, "dump_every": 20, "timestep_fs": 1.0},
    "diffusion": {"temperature_K": 800.0, "steps": 400, "equil_steps": 50, "dump_every": 10,
                  "timestep_fs": 1.0},
    "elastic": {"strain": 0.005, "temperature_K": 0, "timestep_fs": 1.0},
    "scaling": {"replicates": ["1 1 1", "2 1 1", "2 2 1"], "steps": 5, "warmup_steps": 2, "timestep_fs": 1.0},
}


def write_example_inputs(model: str | os.PathLike[str], structure: Atoms | str | os.PathLike[str],
                         out_dir: str | os.PathLike[str], repo_root: str | os.PathLike[str] = REPO,
                         templates: tuple[str, ...] = ("sample", "diffusion", "elastic", "scaling"),
                         seed: int = 1) -> list[Path]:
    """Render ``templates`` for ``structure`` with the exported ``model`` into ``out_dir``; return the inputs."""
    from firemlip.lammps.export import sidecar_path
    from firemlip.lammps.render import render

    out = Path(out_dir).resolve()
    root = Path(repo_root).resolve()
    try:
        rel_dir = out.relative_to(root)
    except ValueError:
        raise FiremlipError(f"{out}: example inputs must live inside the repository ({root})") from None
    out.mkdir(parents=True, exist_ok=True)
    model = Path(model)
    local_model = out / model.name
    if model.resolve() != local_model:
        shutil.copy2(model, local_model)
        shutil.copy2(sidecar_path(model), sidecar_path(local_model))
    written = []
    for name in templates:
        inp = render(name, out, structure, model=local_model, seed=seed, thermo_every=10, **DEFAULTS[name])
        text = inp.read_text()
        text = text.replace(str(out) + "/", "").replace(str(out), ".")
        plugin = _plugin_rel(out)
        lines = text.splitlines()
        lines = [_rewrite_plugin(line, plugin) for line in lines]
        header = [f"# run from the repository root:  lmp -in {rel_dir}/in.{name}",
                  f"shell cd {rel_dir}", f"log log.{name}"]
        inp.write_text("\n".join(header + lines) + "\n")
        written.append(inp)
    (out / "render.json").unlink(missing_ok=True)  # holds this machine's absolute paths
    return written


def _plugin_rel(out: Path) -> str:
    from firemlip.lammps.build import plugin_path

    return os.path.relpath(plugin_path(), out)


def _rewrite_plugin(line: str, rel: str) -> str:
    if line.strip().startswith("plugin load"):
        return f"plugin load {rel}"
    return line
