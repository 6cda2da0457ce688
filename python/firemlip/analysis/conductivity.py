"""Ionic conductivity from diffusivities: the Nernst–Einstein relation with the Haven ratio.

σ = n q² D* / (k_B T H_R)   (S/cm), with n the number density of the mobile ions (cm⁻³, from the cell volume),
q = z e their formal charge, D* the tracer diffusivity (cm²/s) and H_R = D*/D_σ the Haven ratio. The
tracer-based σ uses H_R = 1; the charge-based σ uses the Haven ratio computed from the charge (centre-of-mass)
MSD when the run allowed it, else the user's value (reported as assumed). A result inherits the validity of
the diffusion result it comes from (``valid`` / ``invalid_reasons``, see
:func:`firemlip.analysis.diffusion.diffusion_validity`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from firemlip.analysis._common import (
    BOLTZMANN_J_K,
    ELEMENTARY_CHARGE_C,
    formal_charge,
    mpl,
    read_json,
    save_figure,
    write_result,
)
from firemlip.errors import FiremlipError


def nernst_einstein(number_density_cm3: float, charge_e: float, diffusivity_cm2_s: float, temperature_K: float,
                    haven: float = 1.0) -> float:
    """Nernst–Einstein conductivity in S/cm: n (cm⁻³) · (z e)² · D (cm²/s) / (k_B T · H_R).

    Units: C² cm⁻³ cm² s⁻¹ / J = A²s/(J cm) = S/cm.
    """
    if temperature_K <= 0:
        raise FiremlipError(f"temperature must be positive, got {temperature_K} K")
    if haven <= 0:
        raise FiremlipError(f"Haven ratio must be positive, got {haven}")
    q = charge_e * ELEMENTARY_CHARGE_C
    return number_density_cm3 * q * q * diffusivity_cm2_s / (BOLTZMANN_J_K * temperature_K * haven)


def conductivity_from_diffusion(diff: dict[str, Any], charge: float | None = None,
                                haven: float | None = None) -> dict[str, Any]:
    """Tracer- and charge-based σ (S/cm, with 1-sigma errors) from a ``diffusion.json`` content.

    The Haven ratio is the computed one when ``diff['haven_source']`` says so, else ``haven`` (or the value
    already recorded as assumed). Without any Haven ratio the charge-based σ is None.
    """
    for key in ("species", "temperature_K", "number_density_cm3", "diffusivity_cm2_s"):
        if diff.get(key) is None:
            raise FiremlipError(f"diffusion result has no {key!r}")
    z = formal_charge(diff["species"], charge)
    T = float(diff["temperature_K"])
    n = float(diff["number_density_cm3"])
    D = float(diff["diffusivity_cm2_s"])
    Derr = float(diff.get("diffusivity_err_cm2_s") or 0.0)
    s_tr = nernst_einstein(n, z, D, T, 1.0)
    out: dict[str, Any] = {
        "species": diff["species"], "charge_e": z, "temperature_K": T, "number_density_cm3": n,
        "sigma_tracer_S_cm": s_tr, "sigma_tracer_err_S_cm": s_tr * Derr / D if D else None,
    }
    computed = str(diff.get("haven_source", "")).startswith("computed")
    if computed and diff.get("charge_diffusivity_cm2_s"):
        Dc = float(diff["charge_diffusivity_cm2_s"])
        Dce = float(diff.get("charge_diffusivity_err_cm2_s") or 0.0)
        s_ch = nernst_einstein(n, z, Dc, T, 1.0)
        out.update(haven_ratio=diff.get("haven_ratio"), haven_ratio_err=diff.get("haven_ratio_err"),
                   haven_source="computed from the charge MSD", sigma_charge_S_cm=s_ch,
                   sigma_charge_err_S_cm=s_ch * Dce / Dc)
    else:
        h = haven if haven is not None else (diff.get("haven_ratio") if diff.get("haven_source", "").startswith(
            "assumed") else None)
        if h is None:
            src = str(diff.get("haven_source") or "")
            out.update(haven_ratio=None, haven_ratio_err=None,
                       haven_source=(src if src.startswith("not computed") else "not available")
                       + " (give --haven to assume one)",
                       sigma_charge_S_cm=None, sigma_charge_err_S_cm=None)
            if diff.get("haven_required_duration_ps") is not None:
                out["haven_required_duration_ps"] = diff["haven_required_duration_ps"]
        else:
            s_ch = nernst_einstein(n, z, D, T, float(h))
            out.update(haven_ratio=float(h), haven_ratio_err=None, haven_source="assumed (user value)",
                       sigma_charge_S_cm=s_ch, sigma_charge_err_S_cm=s_ch * Derr / D if D else None)
    out["units"] = {"sigma": "S/cm", "number_density": "cm^-3", "charge": "e", "temperature": "K"}
    return out


def analyze_conductivity(diffusion_json: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                         charge: float | None = None, haven: float | None = None,
                         measured: list[str | os.PathLike[str]] | None = None) -> dict[str, Any]:
    """Conductivity stage: read ``diffusion.json``, write ``conductivity.json`` and ``conductivity.png``.

    ``measured``: optional ``impedance.json`` files (from :func:`firemlip.analysis.impedance.analyze_impedance`)
    whose σ is put in the same table and plot as the simulated ones.
    """
    diff = read_json(diffusion_json, "diffusion result")
    if diff.get("temperature_K") is None:
        raise FiremlipError(f"{diffusion_json}: no temperature_K in the diffusion result")
    from firemlip.analysis.diffusion import diffusion_validity

    res = conductivity_from_diffusion(diff, charge=charge, haven=haven)
    res["analysis"] = "conductivity"
    res["diffusion_json"] = str(diffusion_json)
    # validity of the diffusion result it rests on (re-checked here with this σ)
    reasons = diffusion_validity({**diff, "conductivity": res})
    res["valid"] = not reasons
    res["invalid_reasons"] = reasons
    table = [{"source": "simulated (tracer, H_R = 1)", "temperature_K": res["temperature_K"],
              "sigma_S_cm": res["sigma_tracer_S_cm"], "sigma_err_S_cm": res["sigma_tracer_err_S_cm"]}]
    if res.get("sigma_charge_S_cm") is not None:
        table.append({"source": f"simulated (charge, H_R = {res['haven_ratio']:.3g}, {res['haven_source']})",
                      "temperature_K": res["temperature_K"], "sigma_S_cm": res["sigma_charge_S_cm"],
                      "sigma_err_S_cm": res["sigma_charge_err_S_cm"]})
    for m in measured or []:
        imp = read_json(m, "impedance result")
        if imp.get("sigma_S_cm") is None:
            raise FiremlipError(f"{m}: no sigma_S_cm in the impedance result")
        table.append({"source": f"measured ({Path(m).name})", "temperature_K": imp.get("temperature_K"),
                      "sigma_S_cm": imp["sigma_S_cm"], "sigma_err_S_cm": imp.get("sigma_err_S_cm")})
    res["table"] = table
    out = Path(out_dir)
    plt = mpl()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [r["source"] for r in table]
    vals = [r["sigma_S_cm"] for r in table]
    errs = [r["sigma_err_S_cm"] or 0.0 for r in table]
    ax.barh(range(len(vals)), vals, xerr=errs, color=[f"C{i}" for i in range(len(vals))])
    ax.set_yticks(range(len(vals)), labels, fontsize=7)
    if all(v and v > 0 for v in vals) and max(vals) / min(vals) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("σ (S/cm)")
    ax.set_title(f"{res['species']} conductivity at {res['temperature_K']:g} K" + (" — INVALID" if reasons else ""),
                 color="red" if reasons else "black")
    save_figure(fig, out / "conductivity.png")
    res["plot"] = "conductivity.png"
    write_result(out / "conductivity.json", res)
    return res

