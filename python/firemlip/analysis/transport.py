"""Transport over several MD temperatures: diffusion at each (cm²/s), then the Arrhenius fit (eV) and σ (S/cm).

:func:`analyze_temperatures` is what ``firemlip run`` does in its analyze stage; invalid runs (not diffusive,
D ≤ 0, a melted framework, …) are left out of the fit by :func:`firemlip.analysis.arrhenius.analyze_arrhenius` and
listed in ``left_out``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def run_name(T_K: float) -> str:
    """The directory name of the diffusion run at ``T_K`` (K): ``diffusion_<T>K``."""
    return f"diffusion_{T_K:g}K"


def analyze_temperatures(dumps: Mapping[float, str | os.PathLike[str]], species: str, timestep_fs: float,
                         out_dir: str | os.PathLike[str], *, reference: Any = None, region: str | None = None,
                         charge: float | None = None, haven: float | None = None,
                         diffusion: Mapping[str, Any] | None = None,
                         arrhenius: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Diffusion of ``species`` in each dump (temperature K → LAMMPS dump, time step ``timestep_fs`` fs), written
    to ``out_dir/diffusion_<T>K/``, then the Arrhenius fit over them in ``out_dir/arrhenius/`` (with two or more
    temperatures).

    ``diffusion`` / ``arrhenius``: fields of :class:`firemlip.options.DiffusionOptions` /
    :class:`firemlip.options.ArrheniusOptions`. Returns ``{run name: diffusion result, "arrhenius": fit,
    "left_out": [run names not used in the fit]}``.
    """
    from firemlip.analysis.arrhenius import analyze_arrhenius
    from firemlip.analysis.diffusion import analyze_diffusion

    out = Path(out_dir)
    results: dict[str, Any] = {}
    jsons = []
    for T, dump in dumps.items():
        name = run_name(T)
        results[name] = analyze_diffusion([dump], species, T, timestep_fs, out / name, charge=charge, haven=haven,
                                          reference=reference, region=region, **dict(diffusion or {}))
        jsons.append(out / name / "diffusion.json")
    results["left_out"] = [run_name(T) for T in dumps if not results[run_name(T)].get("valid")]
    if len(jsons) >= 2:
        results["arrhenius"] = analyze_arrhenius(jsons, out / "arrhenius", haven=haven, charge=charge,
                                                 **dict(arrhenius or {}))
    return results
