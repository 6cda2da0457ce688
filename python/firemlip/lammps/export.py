"""Export a MACE ``.model`` to a TorchScript file for ``pair_style mace`` (``*.lammps.pt`` + sidecar JSON).

The TorchScript module is mace-torch's ``LAMMPS_MACE`` wrapper compiled with e3nn's ``jit.compile`` (the same
module ``mace_create_lammps_model`` writes), with the head chosen non-interactively. The sidecar
``<out>.json`` records the model's elements (in the model's atomic-number order), ``r_max`` (Å), the dtype,
the head and the number of interactions; the templates read it to write ``pair_coeff``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from firemlip.errors import FiremlipError, require_file
from firemlip.options import ExportOptions

DTYPES = ("float64", "float32")
#: version of the exported file format; the plugin reads it (a future torch.export/AOTInductor format will be -2)
FORMAT = "firemlip-mace-lammps-1"


def sidecar_path(lammps_model: str | os.PathLike[str]) -> Path:
    """``model.lammps.pt`` → ``model.lammps.json`` (the sidecar written by :func:`export_model`)."""
    p = Path(lammps_model)
    name = p.name
    if name.endswith(".pt"):
        name = name[: -len(".pt")]
    return p.with_name(name + ".json")


def read_sidecar(lammps_model: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of an exported model: ``elements``, ``r_max`` (Å), ``dtype``, ``head``, ``num_interactions``.

    Falls back to reading the TorchScript module itself when the sidecar is missing (e.g. a model written by
    ``mace_create_lammps_model``).
    """
    require_file(lammps_model, "LAMMPS model (.lammps.pt)")
    side = sidecar_path(lammps_model)
    if side.exists():
        try:
            meta = json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise FiremlipError(f"{side}: invalid JSON ({exc.msg})") from None
        for key in ("elements", "r_max"):
            if key not in meta:
                raise FiremlipError(f"{side}: field {key!r} missing")
        return meta
    return _inspect_torchscript(lammps_model)


def _inspect_torchscript(path: str | os.PathLike[str]) -> dict[str, Any]:
    import torch
    from ase.data import chemical_symbols

    try:
        from firemlip.lammps.mp import ensure_ghost_exchange_op

        ensure_ghost_exchange_op()  # models with forward_mp call firemlip::ghost_exchange
        m = torch.jit.load(os.fspath(path), map_location="cpu")
        zs = [int(z) for z in m.atomic_numbers.tolist()]
        r_max = float(m.r_max)
        nint = int(m.num_interactions)
        dtype = str(next(iter(m.parameters())).dtype).replace("torch.", "")
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FiremlipError(f"{path}: not a MACE LAMMPS TorchScript model ({msg})") from None
    return {"elements": [chemical_symbols[z] for z in zs], "atomic_numbers": zs, "r_max": r_max,
            "num_interactions": nint, "dtype": dtype, "head": None}


def _load_mace(model_path: str | os.PathLike[str]):
    import torch

    require_file(model_path, "MACE model")
    try:
        model = torch.load(os.fspath(model_path), map_location="cpu", weights_only=False)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FiremlipError(f"{model_path}: cannot load MACE model ({msg})") from None
    if not (hasattr(model, "atomic_numbers") and hasattr(model, "r_max")):
        raise FiremlipError(f"{model_path}: not a MACE model (no atomic_numbers/r_max)")
    return model


def export_model(model_path: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None,
                 dtype: str = ExportOptions.default("dtype"), head: str | None = None, mp: bool = True) -> Path:
    """Write ``out_path`` (``*.lammps.pt``, TorchScript) and its sidecar JSON; return ``out_path``.

    ``dtype`` is ``float64`` (reference precision) or ``float32`` (faster MD). ``head`` selects the head of a
    multi-head model (default: the last head, which mace-torch's fine-tuning uses for the new data); an unknown
    head is an error. ``mp`` adds the ``forward_mp`` entry point of ``pair_style mace mode mp`` (message passing
    between MPI ranks with a one-r_max ghost shell, see :mod:`firemlip.lammps.mp`) when the model can be split. Default ``out_path``: the model path with ``.lammps.pt`` replacing ``.model``.
    """
    import torch
    from ase.data import chemical_symbols
    from e3nn.util import jit
    from mace.calculators.lammps_mace import LAMMPS_MACE

    from firemlip.io import atomic_path, file_sha256, write_json

    if dtype not in DTYPES:
        raise FiremlipError(f"--dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    model_path = Path(model_path)
    if out_path is None:
        stem = model_path.name[: -len(".model")] if model_path.name.endswith(".model") else model_path.name
        out_path = model_path.with_name(stem + ".lammps.pt")
    out_path = Path(out_path)
    if not out_path.name.endswith(".pt"):
        raise FiremlipError(f"{out_path}: the exported model's name must end in .pt (e.g. model.lammps.pt)")

    model = _load_mace(model_path)
    model = (model.double() if dtype == "float64" else model.float()).to("cpu")
    heads = list(getattr(model, "heads", None) or [None])
    if head is None:
        head = heads[-1]
    elif head not in heads:
        raise FiremlipError(f"--head: {head!r} is not a head of {model_path} (heads: {', '.join(map(str, heads))})")
    compiled, mp_note = None, None
    if mp:
        from firemlip.lammps.mp import mp_wrapper, supports_mp

        mp_note = supports_mp(model)
        if mp_note is None:
            try:
                compiled = jit.compile(mp_wrapper(model, head=head))
            except Exception as exc:  # an architecture the split does not know: keep the plain export
                mp_note = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if mp_note is not None:
            print(f"firemlip export: {model_path}: no message-passing entry for pair_style mace mode mp "
                  f"({mp_note}); several MPI ranks will use mode ghost", file=sys.stderr)
    if compiled is None:
        wrapper = LAMMPS_MACE(model, head=head) if head is not None else LAMMPS_MACE(model)
        try:
            compiled = jit.compile(wrapper)
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FiremlipError(f"{model_path}: TorchScript compilation failed ({msg})") from None

    zs = [int(z) for z in model.atomic_numbers.tolist()]
    meta = {
        "format": FORMAT,
        "mp": mp_note is None and mp,
        "pair_style": "mace",
        "elements": [chemical_symbols[z] for z in zs],
        "atomic_numbers": zs,
        "r_max": float(model.r_max),
        "num_interactions": int(model.num_interactions),
        "dtype": dtype,
        "head": head,
        "heads": [h for h in heads if h is not None],
        "source_model": str(model_path.resolve()),
        "source_sha256": file_sha256(model_path),
        "torch": torch.__version__,
    }
    with atomic_path(out_path, suffix=".pt") as tmp:
        compiled.save(os.fspath(tmp))
    write_json(sidecar_path(out_path), meta)
    return out_path
