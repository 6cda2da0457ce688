"""Rendering the Jinja2 LAMMPS templates (``templates/*.in.j2``) into a runnable directory.

Every template receives (see the template contract): ``data_file``, ``elements`` (symbols in LAMMPS type order),
``plugin_load``, ``pair_style``, ``pair_coeff``, ``seed``, ``timestep_fs`` (fs), ``thermo_every``, and its own
variables with units in their names (``temperature_K``, ``steps``, ``dump_every`` …). A directory gets
``in.<name>``, ``data.<name>`` and ``render.json`` (the variables used).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ase import Atoms

from firemlip.errors import FiremlipError

TEMPLATE_DIR = Path(__file__).resolve().parents[3] / "templates"
DEFAULTS: dict[str, Any] = {"seed": 12345, "timestep_fs": 1.0, "thermo_every": 10}


def template_dir() -> Path:
    """Directory of the bundled templates (``$FIREMLIP_TEMPLATES`` overrides)."""
    env = os.environ.get("FIREMLIP_TEMPLATES")
    return Path(env) if env else TEMPLATE_DIR


def list_templates() -> list[str]:
    """Names of the bundled templates (``sample``, ``diffusion`` …)."""
    d = template_dir()
    return sorted(p.name[: -len(".in.j2")] for p in d.glob("*.in.j2")) if d.is_dir() else []


def resolve_template(template: str | os.PathLike[str]) -> Path:
    """A template name (``sample``), file name (``sample.in.j2``) or path → the template file."""
    p = Path(template)
    if p.is_file():
        return p
    name = str(template)
    for cand in (template_dir() / name, template_dir() / f"{name}.in.j2"):
        if cand.is_file():
            return cand
    avail = ", ".join(list_templates()) or "none"
    raise FiremlipError(f"{template}: no such LAMMPS template (available: {avail})")


def template_name(path: Path) -> str:
    """``.../diffusion.in.j2`` → ``diffusion``."""
    n = path.name
    for suf in (".in.j2", ".j2", ".in"):
        if n.endswith(suf):
            return n[: -len(suf)]
    return path.stem


def _type_order(symbols: set[str], model_elements: list[str] | None) -> list[str]:
    from ase.data import atomic_numbers

    if model_elements:
        return [e for e in model_elements if e in symbols]
    return sorted(symbols, key=lambda s: atomic_numbers[s])


def _load_structure(structure: Atoms | str | os.PathLike[str]) -> Atoms:
    if isinstance(structure, Atoms):
        atoms = structure.copy()
    else:
        from firemlip.io import read_frames

        atoms = read_frames(structure, index=-1, what="structure")[0]
    # ASE's LAMMPS writer prefers a stored "type" array (from a data file or dump) over specorder
    for key in ("type", "id", "mol-id"):
        if key in atoms.arrays:
            del atoms.arrays[key]
    atoms.calc = None
    return atoms


def model_pair_lines(model: str | os.PathLike[str], elements: list[str]) -> tuple[str, str, str]:
    """``(plugin_load, pair_style, pair_coeff)`` for an exported ``*.lammps.pt`` and the types' elements."""
    from firemlip.lammps.build import plugin_path

    mp = Path(model).resolve()
    return f"plugin load {plugin_path()}", "mace", f"* * {mp} {' '.join(elements)}"


def render(template_name_or_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
           structure: Atoms | str | os.PathLike[str], model: str | os.PathLike[str] | None = None,
           pair_style: str | None = None, pair_coeff: str | None = None, plugin_load: str | None = None,
           name: str | None = None, **variables: Any) -> Path:
    """Render a template into ``out_dir``; return the path of the written ``in.<name>``.

    ``model``: an exported ``*.lammps.pt`` (its sidecar gives the elements; ``pair_style mace`` with the
    plugin). Without a model, give ``pair_style`` and ``pair_coeff`` (a built-in style, e.g. ``eam/alloy`` and
    ``* * Cu.eam.alloy Cu``). ``variables`` fill the template (``temperature_K=600, steps=1000`` …); a variable
    the template needs but nobody gave is an error naming it. ``name`` defaults to the template's name.
    """
    import jinja2

    from firemlip.io import atomic_path, write_json, write_text_atomic
    from firemlip.lammps.export import read_sidecar

    tpath = resolve_template(template_name_or_path)
    name = name or template_name(tpath)
    atoms = _load_structure(structure)
    if atoms.cell.rank < 3:
        raise FiremlipError(f"{structure if not isinstance(structure, Atoms) else 'structure'}: LAMMPS needs a "
                            "3-D cell (add vacuum around a molecule or cluster)")
    symbols = set(atoms.get_chemical_symbols())

    model_meta: dict[str, Any] | None = None
    if model is not None:
        model_meta = read_sidecar(model)
        missing = sorted(symbols - set(model_meta["elements"]))
        if missing:
            raise FiremlipError(f"{model}: model lacks element(s) {', '.join(missing)} of the structure "
                                f"(model elements: {', '.join(model_meta['elements'])})")
        elements = _type_order(symbols, model_meta["elements"])
        pl, ps, pc = model_pair_lines(model, elements)
        plugin_load = pl if plugin_load is None else plugin_load
        pair_style = pair_style or ps
        pair_coeff = pair_coeff or pc
    else:
        if not pair_style or not pair_coeff:
            raise FiremlipError("render: give --model (an exported .lammps.pt) or both pair_style and pair_coeff")
        elements = _type_order(symbols, None)
        plugin_load = plugin_load or ""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_path = (out / f"data.{name}").resolve()
    from ase.io import write

    with atomic_path(data_path, suffix=".data") as tmp:
        write(tmp, atoms, format="lammps-data", specorder=elements, masses=True, units="metal",
              atom_style="atomic")

    ctx: dict[str, Any] = dict(DEFAULTS)
    ctx.update(variables)
    ctx.update({"data_file": str(data_path), "elements": elements, "plugin_load": plugin_load,
                "pair_style": pair_style, "pair_coeff": pair_coeff, "natoms": len(atoms), "name": name,
                "boundary": " ".join("p" if b else "s" for b in atoms.pbc)})
    if model_meta is not None:
        ctx.setdefault("r_max_A", model_meta["r_max"])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(tpath.parent)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    try:
        text = env.get_template(tpath.name).render(**ctx)
    except jinja2.UndefinedError as exc:
        raise FiremlipError(f"{tpath}: template variable missing ({exc.message}); pass it with --set KEY=VALUE") from None
    except jinja2.TemplateError as exc:
        raise FiremlipError(f"{tpath}: template error ({exc})") from None
    inp = out / f"in.{name}"
    write_text_atomic(inp, text)
    write_json(out / "render.json", {"template": str(tpath.resolve()), "input": inp.name, "data_file": data_path.name,
                                     "model": str(Path(model).resolve()) if model else None,
                                     "variables": {k: v for k, v in ctx.items()}})
    return inp


def parse_sets(pairs: list[tuple[str, object]] | None) -> Mapping[str, object]:
    """``[("steps", 100), …]`` from ``--set`` → a dict (later keys win)."""
    return dict(pairs or [])
